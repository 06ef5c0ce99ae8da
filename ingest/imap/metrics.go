package imap

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a message (label outcome of repute_imap_messages_total).
const (
	OutcomeProcessed   = "processed"
	OutcomeIgnored     = "ignored"
	OutcomeQuarantined = "quarantined"
)

// Kinds of error (label kind of repute_imap_errors_total).
const (
	ErrKindConnect    = "connect"    // dial, TLS, login, or a lost connection
	ErrKindFolder     = "folder"     // a watched folder is missing or cannot be selected
	ErrKindEvidence   = "evidence"   // PutEvidence failed (retried)
	ErrKindSubmit     = "submit"     // Submit failed (retried)
	ErrKindLookup     = "lookup"     // the send lookup failed: the message stays for later
	ErrKindLease      = "lease"      // the lease store failed, or the lease was lost
	ErrKindNoExpunge  = "no_uidplus" // neither MOVE nor UIDPLUS: a message is left flagged \Deleted
	ErrKindQuarantine = "quarantine" // a message was quarantined (its reason in the log)
)

// readerMetrics are one reader's counters, curried with its mailbox.
type readerMetrics struct {
	messages *prometheus.CounterVec // outcome
	errors   *prometheus.CounterVec // kind
}

func newMetrics(reg prometheus.Registerer, mailbox string) (readerMetrics, error) {
	messages := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "repute_imap_messages_total",
		Help: "IMAP messages read and moved out of a watched folder, by mailbox and outcome (processed, ignored, quarantined).",
	}, []string{"mailbox", "outcome"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "repute_imap_errors_total",
		Help: "Errors of the IMAP reader by mailbox and kind (connect, folder, evidence, submit, lookup, lease, no_uidplus, quarantine).",
	}, []string{"mailbox", "kind"})
	if reg != nil {
		var err error
		if messages, err = register(reg, messages); err != nil {
			return readerMetrics{}, err
		}
		if errs, err = register(reg, errs); err != nil {
			return readerMetrics{}, err
		}
	}
	return readerMetrics{
		messages: messages.MustCurryWith(prometheus.Labels{"mailbox": mailbox}),
		errors:   errs.MustCurryWith(prometheus.Labels{"mailbox": mailbox}),
	}, nil
}

// register registers c, or returns the vector already registered under its
// name by another reader on the same registry.
func register(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing, nil
		}
	}
	return nil, fmt.Errorf("imap: register metrics: %w", err)
}
