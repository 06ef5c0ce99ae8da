package duckdb_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"repute/metrics"
	"repute/metrics/duckdb"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "repute")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := duckdb.Open(filepath.Join(dir, "repute.duckdb"), duckdb.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx := context.Background()
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	var events []metrics.Event
	for _, kind := range []metrics.Kind{metrics.KindSent, metrics.KindDelivered, metrics.KindOpened} {
		e := metrics.Event{Time: at, Kind: kind, Account: "acme", Recipient: "someone@gmail.com",
			MessageID: "<1@acme.test>"}
		if err := e.Normalize(metrics.ISPMap{}, at); err != nil {
			log.Fatal(err)
		}
		events = append(events, e)
	}
	// The second call changes nothing: the events are already stored.
	for range 2 {
		if err := s.Append(ctx, events); err != nil {
			log.Fatal(err)
		}
	}
	r, err := s.Stats(ctx, metrics.StatsQuery{From: at.Add(-time.Hour), To: at.Add(time.Hour),
		GroupBy: []metrics.GroupBy{metrics.GroupISP}})
	if err != nil {
		log.Fatal(err)
	}
	for _, g := range r.Groups {
		fmt.Printf("%s: sent %d, delivered %d, opened %d, open rate %.2f\n", g.Key[metrics.GroupISP],
			g.Sent, g.Delivered, g.OpenedHuman, *g.Rates().OpenRate)
	}
	// Output: gmail: sent 1, delivered 1, opened 1, open rate 1.00
}
