package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// defaultLeaseSettle is Options.LeaseSettle's default.
const defaultLeaseSettle = 300 * time.Millisecond

// A lease is the latest claim of its name in the lease_claims table
// (sql/migrations/0006_leases.sql); ClickHouse has no transactions, so
// taking one is: read the latest claim; if another holder's has not expired,
// refuse; otherwise insert our claim, wait Options.LeaseSettle, and read the
// latest claim again: we hold the lease only if it is ours. Two claimants
// racing for a free or expired lease both insert; the claim with the highest
// version (the claimant's clock in nanoseconds) wins, and the loser sees it
// on reading back, as long as its insert and the winner's both landed within
// the settle time. So the window in which both may believe they hold the
// lease is bounded by the settle time (and by the clocks' skew, since
// expiry and versions are the claimants' own clocks); consumers of a lease
// must stay idempotent anyway. Renewing a lease still held needs no settle:
// nobody else claims a lease that has not expired.

// claim is one row of lease_claims.
type claim struct {
	holder  string
	expires time.Time
	version uint64
}

// versions hands out claim versions: the clock in nanoseconds, strictly
// increasing within the process.
var versions struct {
	sync.Mutex
	last uint64
}

func nextVersion(now time.Time) uint64 {
	versions.Lock()
	defer versions.Unlock()
	v := max(uint64(now.UnixNano()), versions.last+1)
	versions.last = v
	return v
}

func (s *Store) latestClaim(ctx context.Context, name string) (claim, bool, error) {
	conn, err := s.ready(ctx)
	if err != nil {
		return claim{}, false, err
	}
	rows, err := conn.Query(ctx, "SELECT holder, expires, version FROM lease_claims WHERE name = ? ORDER BY version DESC LIMIT 1", name)
	if err != nil {
		return claim{}, false, s.errorf("lease "+name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return claim{}, false, rows.Err()
	}
	var c claim
	var expires int64
	if err := rows.Scan(&c.holder, &expires, &c.version); err != nil {
		return claim{}, false, s.errorf("lease "+name, err)
	}
	c.expires = time.Unix(0, expires)
	return c, true, nil
}

func (s *Store) insertClaim(ctx context.Context, name string, c claim) error {
	conn, err := s.ready(ctx)
	if err != nil {
		return err
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO lease_claims (name, holder, expires, version)")
	if err != nil {
		return s.errorf("lease "+name, err)
	}
	defer batch.Abort() //nolint:errcheck // a no-op once sent
	var expires int64
	if !c.expires.IsZero() {
		expires = c.expires.UnixNano()
	}
	if err := batch.Append(name, c.holder, expires, c.version); err != nil {
		return s.errorf("lease "+name, err)
	}
	if err := batch.Send(); err != nil {
		return s.errorf("lease "+name, err)
	}
	return nil
}

// TryLease takes or renews the lease name for holder until now+ttl (the Go
// clock). It returns true when holder holds it afterwards: it was free,
// expired, or holder's already (then its expiry moves to now+ttl); false
// when another holder's lease has not expired or another claimant won the
// race for it. Taking a lease that was not holder's lasts at least
// Options.LeaseSettle.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" {
		return false, errors.New("clickhouse: lease: empty name or holder")
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	cur, found, err := s.latestClaim(ctx, name)
	if err != nil {
		return false, err
	}
	now := time.Now()
	valid := found && cur.holder != "" && cur.expires.After(now)
	if valid && cur.holder != holder {
		return false, nil
	}
	mine := claim{holder: holder, expires: now.Add(ttl), version: nextVersion(now)}
	if err := s.insertClaim(ctx, name, mine); err != nil {
		return false, err
	}
	if valid {
		return true, nil // renewed
	}
	select {
	case <-ctx.Done():
		return false, fmt.Errorf("clickhouse: lease %s: %w", name, ctx.Err())
	case <-time.After(s.opts.LeaseSettle):
	}
	cur, found, err = s.latestClaim(ctx, name)
	if err != nil {
		return false, err
	}
	return found && cur.holder == holder && cur.version == mine.version, nil
}

// ReleaseLease gives up the lease name if holder holds it, by a claim of
// no holder.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	cur, found, err := s.latestClaim(ctx, name)
	if err != nil || !found || cur.holder != holder {
		return err
	}
	return s.insertClaim(ctx, name, claim{version: nextVersion(time.Now())})
}
