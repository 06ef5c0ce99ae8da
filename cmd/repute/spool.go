package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"repute/metrics"
	"repute/spool"
)

func init() {
	commands["spool"] = command{"inspect the spool: repute spool dead lists dead-lettered events", runSpool}
}

const spoolUsage = `Usage: repute spool dead [flags]

Commands:
  dead    list the events the store refused for good (dead-lettered)

Run ` + "`repute spool dead --help`" + ` for its flags.
`

const spoolDeadUsage = `Usage: repute spool dead [flags]

Lists the dead-letter files of the spool (<data>/spool/dead): the events the
store refused, alone, while it took other writes, set aside so that the
drain goes on. One line per event: when it was set aside, its account,
kind, event_id and recipient, the store's error and where it was in the
spool. --json prints one JSON object per dead-letter file instead, with
the events in full (as POST /v1/events takes them). Nothing is changed: to
try an event again, fix what the store objects to and post it again.
It reads the directory without the spool's lock, so it may run beside
repute serve.

` + configHelp

// spoolDeadFlags are the flags of serve that spool dead takes.
var spoolDeadFlags = []string{"config", "data"}

func runSpool(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "dead" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help") {
			fmt.Fprint(stdout, spoolUsage)
			return 0
		}
		if len(args) > 0 {
			fmt.Fprintf(stderr, "repute spool: unknown command %q\n\n", args[0])
		}
		fmt.Fprint(stderr, spoolUsage)
		return 2
	}
	return runSpoolDead(args[1:], stdout, stderr)
}

// deadJSON is one dead-letter file in the output of --json.
type deadJSON struct {
	Time     time.Time       `json:"time"`
	Error    string          `json:"error"`
	Segment  uint64          `json:"segment"`
	Offset   int64           `json:"offset"`
	Part     int             `json:"part"`
	Attempts int             `json:"attempts"`
	Events   []metrics.Event `json:"events"`
	// DecodeError says why the payload could not be read as events
	// (Payload then holds it, base64).
	DecodeError string `json:"decode_error,omitempty"`
	Payload     []byte `json:"payload,omitempty"`
}

func runSpoolDead(args []string, stdout, stderr io.Writer) int {
	var asJSON bool
	spec := configSpec{command: "spool dead", help: spoolDeadUsage, flags: spoolDeadFlags,
		extra: func(fs *flag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, "print one JSON object per dead-letter file, with its events in full")
		}}
	cfg, code, ok := loadCommandConfig(spec, args, stdout, stderr)
	if !ok {
		return code
	}
	dir := filepath.Join(cfg.Data, "spool")
	dead, err := spool.ReadDead(dir)
	status := 0
	if err != nil {
		fmt.Fprintln(stderr, "repute spool dead:", err)
		status = 1
	}
	enc := json.NewEncoder(stdout)
	for _, d := range dead {
		events, derr := metrics.DecodeEvents(d.Payload)
		if asJSON {
			out := deadJSON{Time: d.Time, Error: d.Error, Segment: d.Segment, Offset: d.Offset,
				Part: d.Part, Attempts: d.Attempts, Events: events}
			if derr != nil {
				out.Events, out.DecodeError, out.Payload = []metrics.Event{}, derr.Error(), d.Payload
			}
			if err := enc.Encode(out); err != nil {
				fmt.Fprintln(stderr, "repute spool dead:", err)
				return 1
			}
			continue
		}
		where := fmt.Sprintf("segment=%d offset=%d part=%d attempts=%d", d.Segment, d.Offset, d.Part, d.Attempts)
		if derr != nil {
			fmt.Fprintf(stdout, "%s  (%d bytes, unreadable: %v)  error=%q  %s\n",
				d.Time.UTC().Format(time.RFC3339), len(d.Payload), derr, d.Error, where)
			continue
		}
		for _, e := range events {
			fmt.Fprintf(stdout, "%s  account=%s kind=%s event_id=%s recipient=%s  error=%q  %s\n",
				d.Time.UTC().Format(time.RFC3339), e.Account, e.Kind, e.EventID, e.Recipient, d.Error, where)
		}
	}
	if len(dead) == 0 && !asJSON && status == 0 {
		fmt.Fprintf(stderr, "repute spool dead: no dead-lettered events in %s\n", dir)
	}
	return status
}
