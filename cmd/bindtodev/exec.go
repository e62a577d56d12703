package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/bindtodev/bindtodev"
)

// Exit codes of "bindtodev exec", after env(1) and timeout(1), so that they
// cannot be mistaken for common exit codes of the command itself. Otherwise
// the command's own exit code is passed through, or 128+N when it was
// killed by signal N.
const (
	exitExecFailed  = 125 // bindtodev itself failed; the command was not run
	exitCannotRun   = 126 // the command exists but could not be run
	exitNotFound    = 127 // the command was not found
	exitSignalsBase = 128 // the command died of signal N: 128+N
)

const execUsage = `usage: bindtodev exec -i IFACE [-cgroup DIR] [--] CMD [ARGS...]

Runs CMD with every IPv4 and IPv6 socket of it and of all its descendants
bound to IFACE, as SO_BINDTODEVICE would, through a BPF program attached to a
fresh cgroup v2 directory. If the binding cannot be set up, CMD is not run.

Needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN), and write access to a
cgroup2 directory.

Exit status: CMD's own, or 128+N if CMD was killed by signal N;
125 if bindtodev failed (CMD did not run), 126 if CMD could not be run,
127 if CMD was not found.

flags:
`

// execArgs are the parsed arguments of "bindtodev exec".
type execArgs struct {
	ifname string
	cgroup string   // parent cgroup directory; "" for the wrapper's own
	argv   []string // the command and its arguments
}

// parseExecArgs parses the arguments of "bindtodev exec". done is true
// when the process should exit with code without running anything.
func parseExecArgs(args []string, stdout, stderr io.Writer) (a execArgs, code int, done bool) {
	fs := flag.NewFlagSet("bindtodev exec", flag.ContinueOnError)
	fs.StringVar(&a.ifname, "i", "", "the interface every socket is bound to (required)")
	fs.StringVar(&a.cgroup, "cgroup", "", "cgroup2 `DIR` below which the command's cgroup is created (default: bindtodev's own cgroup)")
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), execUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return a, exitOK, true
		}
		return a, exitExecFailed, true
	}
	a.argv = fs.Args()
	switch {
	case a.ifname == "":
		fmt.Fprintln(stderr, "bindtodev exec: -i IFACE is required")
	case len(a.argv) == 0:
		fmt.Fprintln(stderr, "bindtodev exec: no command given")
	default:
		if err := bindtodev.ValidateName(a.ifname); err != nil {
			fmt.Fprintf(stderr, "bindtodev exec: %v; the command was not run\n", err)
			return a, exitExecFailed, true
		}
		return a, 0, false
	}
	fmt.Fprintf(stderr, "usage: bindtodev exec -i IFACE [-cgroup DIR] [--] CMD [ARGS...]\n")
	return a, exitExecFailed, true
}
