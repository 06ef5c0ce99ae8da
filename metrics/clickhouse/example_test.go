package clickhouse_test

import (
	"context"
	"log"
	"time"

	"repute/metrics"
	"repute/metrics/clickhouse"
)

func ExampleOpen() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Open succeeds even while the server is down; calls then fail with an
	// error naming the address, and the first one that reaches it migrates.
	store, err := clickhouse.Open(ctx, clickhouse.Options{Addr: "127.0.0.1:9000", Database: "repute"})
	if err != nil {
		log.Fatal(err) // only invalid options
	}
	defer store.Close()
	now := time.Now().UTC()
	res, err := store.Stats(ctx, metrics.StatsQuery{From: now.Add(-24 * time.Hour), To: now,
		GroupBy: []metrics.GroupBy{metrics.GroupISP}})
	if err != nil {
		log.Print(err)
		return
	}
	log.Printf("%d sent", res.Totals.Sent)
}
