// Package ingest turns feedback sources (IMAP mailboxes, Kafka topics, HTTP
// uploads) into events: it parses each message with dsn or arf, correlates it
// to the original send, and acknowledges the source only after the events are
// durable.
package ingest
