package ingest

import (
	"context"
	"strings"
	"sync"
)

// MemorySends is a SendLookup in memory, for tests and examples; the stores
// implement SendLookup over their sent events. The zero value is empty and
// ready; it is safe for concurrent use.
type MemorySends struct {
	mu   sync.Mutex
	all  []memSend
	errs error
}

type memSend struct {
	ref, envid string
	send       Send
}

var _ SendLookup = (*MemorySends)(nil)

// Add records a send with its reference (correlate.Ref text) and the
// ENVID it was sent with; either may be "".
func (m *MemorySends) Add(ref, envid string, s Send) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.all = append(m.all, memSend{ref: strings.ToLower(ref), envid: envid, send: s})
}

// Fail makes every lookup return err (nil: lookups work again).
func (m *MemorySends) Fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs = err
}

func (m *MemorySends) find(match func(memSend) bool, recipient string) (Send, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.errs != nil {
		return Send{}, false, m.errs
	}
	for _, s := range m.all {
		if match(s) && (recipient == "" || s.send.Recipient == "" || strings.EqualFold(s.send.Recipient, recipient)) {
			return s.send, true, nil
		}
	}
	return Send{}, false, nil
}

// SendByRef implements SendLookup.
func (m *MemorySends) SendByRef(_ context.Context, ref string) (Send, bool, error) {
	ref = strings.ToLower(ref)
	return m.find(func(s memSend) bool { return ref != "" && s.ref == ref }, "")
}

// SendByMessageID implements SendLookup.
func (m *MemorySends) SendByMessageID(_ context.Context, messageID, recipient string) (Send, bool, error) {
	id := strings.Trim(strings.TrimSpace(messageID), "<>")
	return m.find(func(s memSend) bool {
		return id != "" && strings.Trim(s.send.MessageID, "<>") == id
	}, recipient)
}

// SendByEnvID implements SendLookup.
func (m *MemorySends) SendByEnvID(_ context.Context, envid, recipient string) (Send, bool, error) {
	return m.find(func(s memSend) bool { return envid != "" && s.envid == envid }, recipient)
}
