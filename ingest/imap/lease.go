package imap

import (
	"context"
	"sync"
	"time"
)

// Leaser keeps the leases that let one process at a time read a mailbox
// (the stores implement it in a table of their own).
type Leaser interface {
	// TryLease takes the named lease for holder, or renews it when holder
	// has it, for ttl from now; false when another holder has it and its
	// ttl has not run out.
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives the lease up when holder has it, so that another
	// may take it at once; otherwise it does nothing.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// MemoryLeases is a Leaser in memory: for one process (several readers on
// one mailbox in a test, or a single-node setup). The zero value is ready.
type MemoryLeases struct {
	mu     sync.Mutex
	leases map[string]memoryLease
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

type memoryLease struct {
	holder  string
	expires time.Time
}

var _ Leaser = (*MemoryLeases)(nil)

func (m *MemoryLeases) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// TryLease implements Leaser.
func (m *MemoryLeases) TryLease(_ context.Context, name, holder string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if l, ok := m.leases[name]; ok && l.holder != holder && now.Before(l.expires) {
		return false, nil
	}
	if m.leases == nil {
		m.leases = map[string]memoryLease{}
	}
	m.leases[name] = memoryLease{holder: holder, expires: now.Add(ttl)}
	return true, nil
}

// ReleaseLease implements Leaser.
func (m *MemoryLeases) ReleaseLease(_ context.Context, name, holder string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[name]; ok && l.holder == holder {
		delete(m.leases, name)
	}
	return nil
}

// Holder returns who holds the named lease now, "" when nobody does.
func (m *MemoryLeases) Holder(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[name]; ok && m.now().Before(l.expires) {
		return l.holder
	}
	return ""
}
