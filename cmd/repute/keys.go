package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"repute/api"
)

func init() {
	commands["keys"] = command{"make a new account key: repute keys new --account NAME", runKeys}
}

const keysUsage = `Usage: repute keys new --account NAME

Prints a new random API key for the account, and the line to paste under
that account's keys: in the configuration file. Only the hash goes in the
file; give the key to the account's client, it is not shown again.

Flags:
`

func runKeys(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, keysUsage)
		fs.PrintDefaults()
	}
	account := fs.String("account", "", "the account (tenant) the key is for")
	if len(args) == 0 || args[0] != "new" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, keysUsage)
			fs.PrintDefaults()
			return 0
		}
		fs.Usage()
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "repute keys new: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *account == "" {
		fmt.Fprintln(stderr, "repute keys new: --account NAME is required")
		return 2
	}
	key := newKey()
	fmt.Fprintf(stdout, "key: %s\n", key)
	fmt.Fprintf(stdout, "\n# paste under accounts: in the configuration file (the key itself is not kept):\n")
	fmt.Fprintf(stdout, "  - name: %s\n    keys:\n      - %q\n", *account, api.HashKey(key))
	return 0
}
