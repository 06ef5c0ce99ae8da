package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"repute/api"
	"repute/metrics"
)

func init() {
	commands["evidence"] = command{"print a stored report (an event's evidence_id)", runEvidence}
}

const evidenceUsage = `Usage: repute evidence [flags] ID

Prints the stored report whose id is ID (an event's evidence_id): the
message as it was kept (a report over 256 KiB keeps its header, its report
parts and the returned headers), or with --json its record as GET
/v1/evidence/ID answers it (id, account, stored, source, source_ref, size,
truncated, message).

With --server URL --key KEY it asks a running repute serve (an account key
sees only its account's reports). Without, it reads the data directory's
store (the same --config and --data as serve); a running repute serve
holds that directory, so use --server then.

` + configHelp

// evidenceFlags are the flags of serve that evidence takes.
var evidenceFlags = []string{"config", "data", "clickhouse", "clickhouse-database", "clickhouse-user", "clickhouse-password"}

func runEvidence(args []string, stdout, stderr io.Writer) int {
	var server, key string
	var asJSON bool
	spec := configSpec{command: "evidence", help: evidenceUsage, flags: evidenceFlags, positional: 1,
		extra: func(fs *flag.FlagSet) {
			fs.StringVar(&server, "server", "", "a running repute serve's base `URL`")
			fs.StringVar(&key, "key", "", "the API key for --server (an account's or the admin's)")
			fs.BoolVar(&asJSON, "json", false, "print the record as JSON, the message in it")
		}}
	cfg, code, ok := loadCommandConfig(spec, args, stdout, stderr)
	if !ok {
		return code
	}
	id := ""
	if rest := cfg.args; len(rest) == 1 {
		id = rest[0]
	}
	if id == "" {
		fmt.Fprintln(stderr, "repute evidence: name the evidence ID (an event's evidence_id)")
		return 2
	}
	if !metrics.ValidEvidenceID(id) {
		fmt.Fprintf(stderr, "repute evidence: %q is not an evidence id: want 32 lower-case hex digits\n", id)
		return 2
	}
	if (server == "") != (key == "") {
		fmt.Fprintln(stderr, "repute evidence: --server and --key go together")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if server != "" {
		return evidenceFromServer(ctx, server, key, id, asJSON, stdout, stderr)
	}
	return evidenceFromStore(ctx, cfg, id, asJSON, stdout, stderr)
}

func evidenceFromServer(ctx context.Context, server, key, id string, asJSON bool, stdout, stderr io.Writer) int {
	if _, err := url.ParseRequestURI(server); err != nil {
		fmt.Fprintf(stderr, "repute evidence: --server %q: want a URL such as http://127.0.0.1:8080\n", server)
		return 2
	}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(server, "/")+"/v1/evidence/"+id, nil)
	if err != nil {
		fmt.Fprintln(stderr, "repute evidence:", err)
		return 2
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if !asJSON {
		req.Header.Set("Accept", "message/rfc822")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "repute evidence:", err)
		return 1
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		fmt.Fprintf(stderr, "repute evidence: %s: %s\n", res.Status, e.Error)
		return 1
	}
	if _, err := io.Copy(stdout, res.Body); err != nil {
		fmt.Fprintln(stderr, "repute evidence:", err)
		return 1
	}
	return 0
}

func evidenceFromStore(ctx context.Context, cfg serveConfig, id string, asJSON bool, stdout, stderr io.Writer) int {
	if cfg.ClickHouse == "" {
		if _, err := os.Stat(duckdbPath(cfg)); err != nil {
			fmt.Fprintf(stderr, "repute evidence: no store in the data directory %s (%v); set --data, or --server URL --key KEY\n",
				cfg.Data, plainErr(err))
			return 1
		}
	}
	log, _ := newLogger(stderr, "warn")
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		if inUse(err) {
			err = errDataInUse(cfg.Data)
		}
		fmt.Fprintln(stderr, "repute evidence:", err)
		return 1
	}
	defer st.Close()
	ev, found, err := st.Evidence(ctx, "", id)
	if err != nil {
		fmt.Fprintln(stderr, "repute evidence:", err)
		return 1
	}
	if !found {
		fmt.Fprintf(stderr, "repute evidence: no evidence %s\n", id)
		return 1
	}
	if asJSON {
		out, err := api.NewEvidenceResponse(ev)
		if err != nil {
			fmt.Fprintln(stderr, "repute evidence:", err)
			return 1
		}
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			fmt.Fprintln(stderr, "repute evidence:", err)
			return 1
		}
		return 0
	}
	msg, err := ev.Message()
	if err != nil {
		fmt.Fprintln(stderr, "repute evidence:", err)
		return 1
	}
	if _, err := stdout.Write(msg); err != nil {
		fmt.Fprintln(stderr, "repute evidence:", err)
		return 1
	}
	return 0
}
