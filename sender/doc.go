// Package sender composes, stamps (Message-ID, tracking pixel, VERP return
// path, List-Unsubscribe, DKIM), paces and delivers messages.
package sender
