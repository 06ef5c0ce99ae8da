package duckdb_test

import (
	"path/filepath"
	"testing"

	"repute/metrics"
	"repute/metrics/duckdb"
	"repute/metrics/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) metrics.Store {
			return open(t, filepath.Join(t.TempDir(), "repute.duckdb"))
		},
		Reopen: func(t *testing.T, s metrics.Store) metrics.Store {
			st := s.(*duckdb.Store)
			if err := st.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, st.Path())
		},
	})
}

func open(t *testing.T, path string) *duckdb.Store {
	t.Helper()
	s, err := duckdb.Open(path, duckdb.Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}
