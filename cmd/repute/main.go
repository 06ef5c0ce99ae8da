// Command repute is the deliverability analytics and feedback processor:
// one binary with subcommands (see `repute --help`).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand: run gets the arguments after its name.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func usage(w io.Writer) {
	fmt.Fprintln(w, "repute — deliverability analytics and feedback processor")
	fmt.Fprintln(w, "\nUsage: repute <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun `repute <command> --help` for a command's flags; `repute --version` for the version.")
}

// exitStatus is the exit status for an error of loadConfig: 2 for the
// command line, 1 for anything else (an unreadable or wrong config file, a
// secret that cannot be read).
func exitStatus(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	case "--version", "-version", "-v":
		args = []string{"version"}
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "repute: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd.run(args[1:], stdout, stderr)
}
