package spool_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"repute/spool"
)

// The intake appends and answers only after Append returned; Run drains
// into the store in the background; on shutdown, intake stops first, then
// Flush waits for the drain.
func Example() {
	dir, err := os.MkdirTemp("", "spool-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer sp.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sp.Run(ctx, func(ctx context.Context, payloads [][]byte) error {
		for _, p := range payloads {
			fmt.Printf("store %s\n", p) // an idempotent store write
		}
		return nil
	})

	for _, ev := range []string{`{"kind":"sent"}`, `{"kind":"delivered"}`} {
		switch err := sp.Append([]byte(ev)); {
		case errors.Is(err, spool.ErrFull):
			// HTTP 503 with Retry-After: the store is behind.
		case err != nil:
			log.Fatal(err)
		}
	}

	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := sp.Flush(fctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("undrained: %+v\n", sp.Stats())
	// Output:
	// store {"kind":"sent"}
	// store {"kind":"delivered"}
	// undrained: {Records:0 Bytes:0 Quarantined:0 Dead:0}
}
