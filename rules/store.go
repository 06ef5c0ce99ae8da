package rules

import (
	"sync"
	"time"
)

// DefaultHistory is MemoryStore's default bound of each log.
const DefaultHistory = 10000

// FlagEvent is a change of a flag: raised (Active) or cleared.
type FlagEvent struct {
	Flag   Flag      `json:"flag"`
	Active bool      `json:"active"`
	At     time.Time `json:"at"`
}

// AuditEntry is one operator action: who, when, why.
type AuditEntry struct {
	At       time.Time `json:"at"`
	Who      string    `json:"who"`    // "admin", or the account
	Action   string    `json:"action"` // "cancel" or "override"
	Decision string    `json:"decision"`
	Target   string    `json:"target,omitempty"` // the cancelled decision's id
	Scope    Scope     `json:"scope"`
	Reason   string    `json:"reason"`
}

// MemoryStore is the history of decisions, flags and operator actions, in
// memory: each log keeps its latest max entries (older ones are dropped,
// and a reader asking for them learns it). It is what the API serves and
// the stream follows. With a Shared store (see Shared) it is this
// process's copy of the shared history: the evaluator numbers its
// decisions here, on from the highest stored, and writes them to the
// store; a follower fills it from the store, numbers kept. Sequence
// numbers are strictly increasing from 1. Safe for concurrent use.
type MemoryStore struct {
	max int

	mu        sync.Mutex
	seq       int64
	decisions []Decision // oldest first; decisions[i].Seq increasing
	flags     []FlagEvent
	audit     []AuditEntry
	notify    chan struct{} // closed and replaced on each new decision
}

// NewMemoryStore returns a store keeping max entries per log (0:
// DefaultHistory).
func NewMemoryStore(max int) *MemoryStore {
	if max <= 0 {
		max = DefaultHistory
	}
	return &MemoryStore{max: max, notify: make(chan struct{})}
}

// bound keeps the latest max entries of s, trimming only when s has
// grown to twice that: amortized O(1) per append.
func bound[T any](s []T, max int) []T {
	if len(s) >= 2*max {
		n := copy(s, s[len(s)-max:])
		clear(s[n:])
		s = s[:n]
	}
	return s
}

// latest is the last max entries of s.
func latest[T any](s []T, max int) []T {
	if len(s) > max {
		return s[len(s)-max:]
	}
	return s
}

// AppendDecision numbers d, keeps it and wakes the watchers; it returns
// d with its Seq.
func (m *MemoryStore) AppendDecision(d Decision) Decision {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	d.Seq = m.seq
	m.decisions = bound(append(m.decisions, d), m.max)
	close(m.notify)
	m.notify = make(chan struct{})
	return d
}

// DecisionsSince returns the decisions with Seq > seq, oldest first;
// complete is false when some of them were dropped already.
func (m *MemoryStore) DecisionsSince(seq int64) (ds []Decision, complete bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := latest(m.decisions, m.max)
	i := len(kept)
	for i > 0 && kept[i-1].Seq > seq {
		i--
	}
	oldest := m.seq + 1
	if len(kept) > 0 {
		oldest = kept[0].Seq
	}
	complete = seq >= oldest-1
	return append([]Decision(nil), kept[i:]...), complete
}

// Page is DecisionsSince with the latest sequence number and a channel
// closed at the next AppendDecision, read together: a stream that waits
// on watch after sending ds misses nothing.
func (m *MemoryStore) Page(seq int64) (ds []Decision, latest int64, complete bool, watch <-chan struct{}) {
	m.mu.Lock()
	watch, latest = m.notify, m.seq
	m.mu.Unlock()
	ds, complete = m.DecisionsSince(seq)
	return ds, latest, complete, watch
}

// Decision returns the decision with id from the history.
func (m *MemoryStore) Decision(id string) (Decision, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := latest(m.decisions, m.max)
	for i := len(kept) - 1; i >= 0; i-- {
		if kept[i].ID == id {
			return kept[i], true
		}
	}
	return Decision{}, false
}

// Watch returns a channel closed at the next AppendDecision.
func (m *MemoryStore) Watch() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.notify
}

// LastSeq is the sequence number of the latest decision (0: none).
func (m *MemoryStore) LastSeq() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seq
}

// AppendFlag keeps a flag change.
func (m *MemoryStore) AppendFlag(e FlagEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flags = bound(append(m.flags, e), m.max)
}

// Flags returns the flag changes kept, oldest first.
func (m *MemoryStore) Flags() []FlagEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]FlagEvent(nil), latest(m.flags, m.max)...)
}

// AppendAudit keeps an operator action.
func (m *MemoryStore) AppendAudit(e AuditEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.audit = bound(append(m.audit, e), m.max)
}

// Audit returns the operator actions kept, oldest first.
func (m *MemoryStore) Audit() []AuditEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]AuditEntry(nil), latest(m.audit, m.max)...)
}

// put keeps d, numbered already (read from the shared history), and wakes
// the watchers; a d not after the latest kept is ignored (false).
func (m *MemoryStore) put(d Decision) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d.Seq <= m.seq {
		return false
	}
	m.seq = d.Seq
	m.decisions = bound(append(m.decisions, d), m.max)
	close(m.notify)
	m.notify = make(chan struct{})
	return true
}

// advance moves the sequence number on to seq (when higher) without a
// decision: the decisions before it are not kept here, and a reader asking
// for them learns that its page is incomplete.
func (m *MemoryStore) advance(seq int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq = max(m.seq, seq)
}

// truncate drops the decisions after seq and numbers on from there: they
// were never stored in the shared history (this process lost the lease
// before it could write them), and the new evaluator numbers its own from
// seq.
func (m *MemoryStore) truncate(seq int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := len(m.decisions)
	for i > 0 && m.decisions[i-1].Seq > seq {
		i--
	}
	clear(m.decisions[i:])
	m.decisions = m.decisions[:i]
	m.seq = min(m.seq, seq)
}
