// Command bindtodev lets an operator check what a network path really does:
// it dials, listens and compares bound and unbound connections through one
// interface, and runs unmodified programs with every socket bound to it.
//
// Usage:
//
//	bindtodev dial   [-i IFACE] [-s SOURCE] [-u] HOST:PORT
//	bindtodev listen -i IFACE [-u] [ADDR]:PORT
//	bindtodev check  -i IFACE HOST:PORT
//	bindtodev exec   -i IFACE [--] CMD [ARGS...]
//
// Run "bindtodev COMMAND -h" for the flags of each command. The exit status
// is 0 on success, 1 for a failure at run time and 2 for bad flags or
// arguments; check also exits 3 when the routing table sends the
// destination through another interface than the one given. exec instead
// passes the command's own exit status through, or 128+N when it dies of
// signal N, and exits 125 when it fails itself and does not run the
// command (bad flags included), 126 when the command cannot be run and 127
// when it is not found.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes shared by the subcommands.
const (
	exitOK      = 0
	exitFailure = 1 // the operation failed at run time
	exitUsage   = 2 // bad flags or arguments
)

// command is one subcommand. run gets the arguments after the command's name
// and returns the process's exit code.
type command struct {
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"dial":   {"connect through one interface, netcat style", runDial},
	"listen": {"accept or receive only on one interface", runListen},
	"check":  {"compare a bound and an unbound connection side by side", runCheck},
	"exec":   {"run a program with all its sockets bound to one interface", runExec},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	if name == "-h" || name == "-help" || name == "--help" || name == "help" {
		usage(stdout)
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "bindtodev: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	return cmd.run(args[1:], stdin, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: bindtodev COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, name := range []string{"dial", "listen", "check", "exec"} {
		fmt.Fprintf(w, "  %-7s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, "\nRun \"bindtodev COMMAND -h\" for a command's flags.")
	fmt.Fprintln(w, "\n"+exitCodesHelp+"\n\"bindtodev check\" exits 3 when the unbound path differs from the bound one.")
	fmt.Fprintln(w, "\"bindtodev exec\" exits with the command's status, or 125-127 (see \"bindtodev exec -h\").")
}
