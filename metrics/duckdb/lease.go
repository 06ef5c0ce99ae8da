package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// TryLease takes or renews the lease name for holder until now+ttl. It
// returns true when holder holds it afterwards: it was free, expired, or
// holder's already (then its expiry moves to now+ttl); false when another
// holder's lease has not expired. The check and the write are one
// transaction; expiry is the Go clock of the process, in UTC.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" {
		return false, errors.New("duckdb: lease: empty name or holder")
	}
	var held bool
	err := s.writeTx(ctx, func() error {
		held = false
		now := time.Now().UTC()
		var cur string
		var expires time.Time
		err := s.write.QueryRowContext(ctx, "SELECT holder, expires FROM leases WHERE name = $1", name).Scan(&cur, &expires)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case cur != holder && expires.After(now):
			return nil
		}
		if _, err := s.write.ExecContext(ctx, "INSERT OR REPLACE INTO leases (name, holder, expires) VALUES ($1, $2, $3)",
			name, holder, now.Add(ttl)); err != nil {
			return err
		}
		held = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("duckdb: lease %s: %w", name, err)
	}
	return held, nil
}

// ReleaseLease gives up the lease name if holder holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	err := s.writeTx(ctx, func() error {
		_, err := s.write.ExecContext(ctx, "DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("duckdb: release lease %s: %w", name, err)
	}
	return nil
}
