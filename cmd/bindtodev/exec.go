package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

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

const execUsage = `usage: bindtodev exec -i IFACE [-follow] [-confine] [-cgroup DIR] [-allow-bpf TYPE,...] [--] CMD [ARGS...]

Runs CMD with every IPv4 and IPv6 socket of it and of all its descendants
bound to IFACE, as SO_BINDTODEVICE would, through a BPF program attached to a
fresh cgroup v2 directory. Multipath TCP sockets, which cannot be bound this
way, are refused (socket() fails with EPERM; Go programs fall back to TCP).
If the binding cannot be set up, CMD is not run.

The binding is to the interface's index when exec starts: if the interface
is deleted and re-created, CMD's new sockets fail with ENODEV. With -follow,
exec watches the interfaces (rtnetlink) while CMD runs: while no interface
has the name, CMD's new IPv4 and IPv6 sockets are refused (socket() fails
with EPERM), and once one has it again, whatever its index, its new sockets
are bound to it. At no moment is a socket created unbound. Sockets created
before keep their old, dead interface. The interface must exist when exec
starts.

A command with CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF or CAP_SYS_ADMIN, or a
root command that can write cgroup.procs files, can undo the binding; run it
as an ordinary user, or with -confine.

Needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN), and write access to a
cgroup2 directory.

Exit status: CMD's own, or 128+N if CMD was killed by signal N;
125 if bindtodev failed (CMD did not run), 126 if CMD could not be run,
127 if CMD was not found.

Flags:
`

// execArgs are the parsed arguments of "bindtodev exec".
type execArgs struct {
	ifname  string
	cgroup  string   // parent cgroup directory; "" for the wrapper's own
	allow   string   // -allow-bpf: risky attach types accepted
	confine bool     // -confine
	follow  bool     // -follow
	argv    []string // the command and its arguments
}

// parseExecArgs parses the arguments of "bindtodev exec". done is true
// when the process should exit with code without running anything. The
// flags end at the command's name, so that its own flags stay its own.
func parseExecArgs(args []string, stdout, stderr io.Writer) (a execArgs, code int, done bool) {
	fs := flag.NewFlagSet("bindtodev exec", flag.ContinueOnError)
	fs.StringVar(&a.ifname, "i", "", "the `IFACE` every socket is bound to (required)")
	fs.StringVar(&a.cgroup, "cgroup", "", "cgroup2 `DIR` below which the command's cgroup is created (default: bindtodev's own cgroup)")
	fs.StringVar(&a.allow, "allow-bpf", "", "accept inherited BPF programs of these attach `TYPES` (comma-separated: "+riskyTypesHelp+"), which could change the binding")
	fs.BoolVar(&a.follow, "follow", false, "when the interface is deleted, refuse the command's new sockets (EPERM) until an interface of that name exists again, then bind them to it")
	fs.BoolVar(&a.confine, "confine", false, "keep the command, even as root, from undoing the binding: no_new_privs, no capability that could, a cgroup and mount namespace that show only its own cgroup")
	// The flag package would print the whole help on every mistake, and
	// on stderr for -h: the messages below are written here instead.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			b.WriteString(execUsage)
			fs.SetOutput(&b)
			fs.PrintDefaults()
			fmt.Fprint(stdout, b.String())
			return a, exitOK, true
		}
		fmt.Fprintf(stderr, "bindtodev exec: %v\n", err)
		return a, usage125(stderr), true
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
		if a.allow != "" {
			if err := checkAllowBPF(a.allow); err != nil {
				fmt.Fprintf(stderr, "bindtodev exec: -allow-bpf: %v; the command was not run\n", err)
				return a, exitExecFailed, true
			}
		}
		return a, 0, false
	}
	return a, usage125(stderr), true
}

// usage125 points at the help after a usage mistake; exec's bad flags exit
// 125, like env(1)'s, so that they cannot pass for the command's own status.
func usage125(stderr io.Writer) int {
	fmt.Fprintln(stderr, "usage: bindtodev exec -i IFACE [-follow] [-confine] [-cgroup DIR] [-allow-bpf TYPE,...] [--] CMD [ARGS...]")
	fmt.Fprintln(stderr, "Run \"bindtodev exec -h\" for help.")
	return exitExecFailed
}
