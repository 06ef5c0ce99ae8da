package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"repute/ingest"
)

func init() {
	commands["parse"] = command{
		summary: "parse bounces and complaint reports, print results as JSON",
		run:     runParse,
	}
}

// parseOutput is one line of output when several inputs are given.
type parseOutput struct {
	File    string          `json:"file"`
	Results []ingest.Result `json:"results"`
}

// runParse implements `repute parse [FILE|-]...`: with one input it prints
// a JSON array of results; with several, one JSON object per line. Only
// results go to stdout; an unreadable input is reported on stderr, the
// others are still processed, and the exit status is 1.
func runParse(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	explain := fs.Bool("explain", false, "add to each bounce result the evidence that decided its reason (phase, codes, lexicon phrase and entry)")
	configFile := fs.String("config", "", "YAML configuration `file` whose bounce_phrases extend the lexicon (default $REPUTE_CONFIG)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: repute parse [--explain] [--config FILE] [FILE|-]...")
		fmt.Fprintln(stderr, "\nParses each input (a message, or several in mbox form; - or none is stdin)")
		fmt.Fprintln(stderr, "and prints one result per recipient of every bounce, delay, success DSN,")
		fmt.Fprintln(stderr, "automatic reply or complaint it holds, with the bounce corpus label names.")
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	parser := ingest.Parser{Explain: *explain}
	if *configFile == "" {
		*configFile = os.Getenv("REPUTE_CONFIG")
	}
	if *configFile != "" {
		cfg := defaultServeConfig()
		if err := readConfigFile(*configFile, &cfg); err != nil {
			fmt.Fprintf(stderr, "repute parse: %v\n", err)
			return 2
		}
		lex, err := cfg.lexicon()
		if err != nil {
			fmt.Fprintf(stderr, "repute parse: config %s: %v\n", *configFile, err)
			return 2
		}
		parser.Lexicon = lex
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	status := 0
	for _, name := range files {
		res, odd, err := parseInput(parser, name)
		if err != nil {
			fmt.Fprintf(stderr, "repute parse: %s: %v\n", name, err)
			status = 1
			if len(files) == 1 {
				return status
			}
			continue
		}
		if odd != nil {
			// A warning: the results are usable.
			fmt.Fprintf(stderr, "repute parse: %s: warning: %v\n", name, odd)
		}
		if res == nil {
			res = []ingest.Result{}
		}
		var v any = res
		if len(files) > 1 {
			v = parseOutput{File: name, Results: res}
		}
		if err := enc.Encode(v); err != nil {
			fmt.Fprintf(stderr, "repute parse: write: %v\n", err)
			return 1
		}
	}
	return status
}

// parseInput reads one input and parses it. It returns the results, what
// was odd about the content (a warning: the results are still usable) and
// the error that made the input unreadable.
func parseInput(parser ingest.Parser, name string) (res []ingest.Result, odd, err error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, ingest.MaxMessageSize+1))
	if err != nil {
		return nil, nil, err
	}
	if !looksLikeEmail(b) {
		// Not an error: the exit status stays 0, the output is [].
		return nil, errNotEmail, nil
	}
	res, odd = parser.ParseBytes(b)
	return res, odd, nil
}

// errNotEmail is the warning for an input with no header block: a JSON
// file, a binary, an empty file.
var errNotEmail = errors.New("not an email message (no header fields)")

// looksLikeEmail reports whether b starts as a message (or an mbox) does
// (ingest.LooksLikeMessage).
func looksLikeEmail(b []byte) bool { return ingest.LooksLikeMessage(b) }
