// Package kafka reads feedback and events from Kafka topics in a consumer
// group (github.com/segmentio/kafka-go) and hands them to intake.
//
// Three kinds of topic:
//   - event topics: a record's value is one event, a JSON array of events,
//     or NDJSON, as POST /v1/events takes;
//   - KumoMTA topics: a record's value is one KumoMTA JSON log record,
//     mapped to events by KumoEvents;
//   - raw topics: a record's value is one RFC 5322 message (a bounce or a
//     complaint), turned into events and evidence by Options.Raw (an
//     ingest.Processor, run on the records of a batch concurrently); the
//     evidence is stored (Options.Evidence) before the events are submitted,
//     and a failing send lookup (ingest.ErrLookup) is retried, not
//     dead-lettered.
//
// Delivery: a record's offset is committed only after its events are
// durable (Submitter.Submit returned nil) or, for a record that cannot be
// read, after it is on the dead-letter topic with the error and its origin
// in headers (HeaderError, HeaderTopic, HeaderPartition, HeaderOffset).
// A refused Submit or dead-letter write is retried with backoff and
// consumption pauses meanwhile; nothing is skipped. Records are read at
// least once; event ids are deterministic, so intake counts a record read
// twice once.
//
// Events read from Kafka get Source "kafka" and SourceRef
// "topic/partition/offset" when they carry none, and Options.Account when
// they name no account; they are normalized before Submit, and an event
// that fails validation sends its record to the dead-letter topic (the
// other events of the record are still submitted).
package kafka
