package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"repute/rules"
)

func init() {
	commands["rules"] = command{"check a rules file, or backtest rules over stored events", runRules}
}

// rulesSubcommands are the subcommands of `repute rules`.
var rulesSubcommands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"check":    runRulesCheck,
	"backtest": runRulesBacktest,
}

const rulesUsage = `Usage:
  repute rules check FILE
  repute rules backtest --from DATE --to DATE [--every DURATION] [--rules FILE] [--json] [flags]

check validates a rules file (the format of the built-in rules,
rules/defaults.yaml): it prints each problem with its line, FILE:LINE:
problem, and exits with 1; a valid file gets a summary and exit status 0.
FILE - reads the standard input. A wrong command line exits with 2.

backtest replays the rules over the stored events day by day and prints the
flags raised and cleared and the decisions issued (repute rules backtest
--help says more).
`

func runRules(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, rulesUsage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, rulesUsage)
		return 0
	}
	run, ok := rulesSubcommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "repute rules: unknown subcommand %q\n\n%s", args[0], rulesUsage)
		return 2
	}
	return run(args[1:], stdout, stderr)
}

func runRulesCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rules check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, rulesUsage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "repute rules check: name one FILE\n\n%s", rulesUsage)
		return 2
	}
	name := fs.Arg(0)
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "repute rules check: %v\n", err)
			return 1
		}
		defer f.Close()
		r = f
	}
	rs, err := rules.Load(r)
	var le *rules.LoadError
	switch {
	case errors.As(err, &le):
		problems := le.Problems
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		for _, p := range problems {
			if p.Line > 0 {
				fmt.Fprintf(stdout, "%s:%d: %s\n", name, p.Line, p.Msg)
			} else {
				fmt.Fprintf(stdout, "%s: %s\n", name, p.Msg)
			}
		}
		fmt.Fprintf(stderr, "repute rules check: %s: %d problem(s)\n", name, len(problems))
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "repute rules check: %v\n", err)
		return 1
	}
	ids := func(n int, id func(int) string) string {
		out := make([]string, n)
		for i := range out {
			out[i] = id(i)
		}
		return strings.Join(out, ", ")
	}
	fmt.Fprintf(stdout, "%s: ok: %d rate rules (%s), %d pattern rules (%s)\n", name,
		len(rs.Rates), ids(len(rs.Rates), func(i int) string { return rs.Rates[i].ID }),
		len(rs.Patterns), ids(len(rs.Patterns), func(i int) string { return rs.Patterns[i].ID }))
	return 0
}
