// Package testenv tells tests where the real services started by
// scripts/testenv.sh (make test) are.
//
// Without the services a test skips, saying how to run it; under make test
// (REPUTE_TEST_REQUIRE_SERVICES=1) a missing service fails the test instead.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Environment variables set by scripts/test.sh from scripts/testenv.sh up.
const (
	ClickHouseVar      = "REPUTE_TEST_CLICKHOUSE"       // host:port of the native protocol
	IMAPVar            = "REPUTE_TEST_IMAP"             // host:port of Dovecot's IMAP, clear text
	IMAPUserVar        = "REPUTE_TEST_IMAP_USER"        // its one user
	IMAPPasswordVar    = "REPUTE_TEST_IMAP_PASSWORD"    // that user's password (made at every up)
	RequireServicesVar = "REPUTE_TEST_REQUIRE_SERVICES" // "1": a missing service is a failure
)

// ClickHouse returns the address of the test ClickHouse server, or skips
// (fails under make test) when none is configured.
func ClickHouse(t testing.TB) string {
	t.Helper()
	return lookup(t, ClickHouseVar, "ClickHouse")
}

// IMAPServer is the test Dovecot: where it listens (clear text, loopback)
// and the one user it lets in. Several tests, and several make test runs,
// share that user: each test works in folders of its own (IMAPFolder).
type IMAPServer struct {
	Addr     string // host:port
	User     string
	Password string
}

// IMAP returns the test IMAP server (Dovecot, with IDLE and MOVE), or skips
// (fails under make test) when none is configured.
func IMAP(t testing.TB) IMAPServer {
	t.Helper()
	return IMAPServer{
		Addr:     lookup(t, IMAPVar, "IMAP"),
		User:     lookup(t, IMAPUserVar, "IMAP"),
		Password: lookup(t, IMAPPasswordVar, "IMAP"),
	}
}

// Dial connects to s in clear text and logs in; the connection is closed
// when the test ends. Fails the test on error.
func (s IMAPServer) Dial(t testing.TB, options *imapclient.Options) *imapclient.Client {
	t.Helper()
	c, err := s.dial(options)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s IMAPServer) dial(options *imapclient.Options) (*imapclient.Client, error) {
	o := imapclient.Options{}
	if options != nil {
		o = *options
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{Timeout: 10 * time.Second}
	}
	c, err := imapclient.DialInsecure(s.Addr, &o)
	if err != nil {
		return nil, fmt.Errorf("dial IMAP %s: %w", s.Addr, err)
	}
	if err := c.Login(s.User, s.Password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("IMAP login to %s as %s: %w", s.Addr, s.User, err)
	}
	return c, nil
}

// IMAPFolder returns the test IMAP server and a fresh folder name of the
// test's own (repute_test_<random>), which the test creates. Every folder
// whose name starts with it is deleted when the test ends, so a test may
// make several (name+"_processed", ...). Skips or fails like IMAP.
func IMAPFolder(t testing.TB) (server IMAPServer, folder string) {
	t.Helper()
	server = IMAP(t)
	var b [6]byte
	rand.Read(b[:])
	folder = "repute_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		c, err := server.dial(nil)
		if err != nil {
			t.Errorf("testenv: delete IMAP folders %s*: %v", folder, err)
			return
		}
		defer c.Close()
		list, err := c.List("", folder+"*", nil).Collect()
		if err != nil {
			t.Errorf("testenv: delete IMAP folders %s*: %v", folder, err)
			return
		}
		// Children before their parents: longest names first.
		sort.Slice(list, func(i, j int) bool { return len(list[i].Mailbox) > len(list[j].Mailbox) })
		for _, m := range list {
			if err := c.Delete(m.Mailbox).Wait(); err != nil {
				t.Errorf("testenv: delete IMAP folder %s: %v", m.Mailbox, err)
			}
		}
		c.Logout().Wait()
	})
	return server, folder
}

func lookup(t testing.TB, variable, service string) string {
	t.Helper()
	if v := os.Getenv(variable); v != "" {
		return v
	}
	if os.Getenv(RequireServicesVar) == "1" {
		t.Fatalf("%s not configured (%s unset) although %s=1: scripts/testenv.sh up did not run or failed",
			service, variable, RequireServicesVar)
	}
	t.Skipf("%s not configured: run make test", service)
	return ""
}

// ClickHouseDatabase returns the address of the test ClickHouse server and a
// fresh database name of the test's own (repute_test_<random>), which the
// code under test creates (clickhouse.Open and Migrate do) and which is
// dropped when the test ends. Skips or fails like ClickHouse.
func ClickHouseDatabase(t testing.TB) (addr, database string) {
	t.Helper()
	addr = ClickHouse(t)
	var b [6]byte
	rand.Read(b[:])
	database = "repute_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		conn, err := ch.Open(&ch.Options{Addr: []string{addr}, DialTimeout: 10 * time.Second})
		if err != nil {
			t.Errorf("testenv: drop %s: %v", database, err)
			return
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+database); err != nil {
			t.Errorf("testenv: drop %s: %v", database, err)
		}
	})
	return addr, database
}

// AppendAll appends msgs to folder, as given, over 4 connections with up
// to 64 APPENDs in flight on each (a few thousand messages take seconds,
// not minutes). Fails the test on error.
func (s IMAPServer) AppendAll(t testing.TB, folder string, msgs [][]byte) {
	t.Helper()
	const conns, inFlight = 4, 64
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for w := range conns {
		c := s.Dial(t, nil)
		wg.Go(func() {
			var pending []*imapclient.AppendCommand
			flush := func() error {
				for _, cmd := range pending {
					if _, err := cmd.Wait(); err != nil {
						return err
					}
				}
				pending = pending[:0]
				return nil
			}
			for i := w; i < len(msgs); i += conns {
				cmd := c.Append(folder, int64(len(msgs[i])), nil)
				if _, err := cmd.Write(msgs[i]); err != nil {
					errs <- err
					return
				}
				if err := cmd.Close(); err != nil {
					errs <- err
					return
				}
				if pending = append(pending, cmd); len(pending) == inFlight {
					if err := flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := flush(); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("testenv: APPEND to %s: %v", folder, err)
	}
}
