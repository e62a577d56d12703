// Command bindtodev lets an operator check what a network path really does:
// it dials, listens and compares bound and unbound connections through one
// interface, and runs unmodified programs with every socket bound to it.
//
// Usage:
//
//	bindtodev dial   [-i IFACE] [-s SOURCE] [-u] [-v] [-w TIMEOUT] HOST:PORT
//	bindtodev listen -i IFACE [-u] [-c COUNT] [ADDR]:PORT
//	bindtodev check  -i IFACE [-w TIMEOUT] HOST:PORT
//	bindtodev exec   -i IFACE [-follow] [-confine] [-cgroup DIR] [-allow-bpf TYPE,...] [--] CMD [ARGS...]
//	bindtodev help   [COMMAND]
//	bindtodev version
//
// Run "bindtodev help COMMAND" or "bindtodev COMMAND -h" for the flags of
// each command. exec's -follow binds the command's new sockets to the
// interface of that name after it is deleted and re-created, -confine keeps
// even a root command from undoing the binding, and -allow-bpf accepts inherited cgroup BPF programs of the
// attach types it names, which exec otherwise refuses because they could
// change the binding. "bindtodev version" (or --version) prints the
// module's version, VCS revision and Go release, read from the build
// information.
//
// The exit status is 0 on success, 1 for a failure at run time and 2 for
// bad flags or arguments. check also exits 3 when the routing table sends
// the destination through another interface than the one given, and 4
// when the destination is a loopback address or an address of this host,
// which no connection leaves the host to reach, so that the interface was
// not tested. exec instead passes the command's own exit status through,
// or 128+N when it dies of signal N, and exits 125 when it fails itself and
// does not run the command (bad flags included), 126 when the command
// cannot be run and 127 when it is not found.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
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
	run func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"dial":    {runDial},
	"listen":  {runListen},
	"check":   {runCheck},
	"exec":    {runExec},
	"version": {runVersion},
}

// topHelp is the help of the command itself. Every synopsis in it is the
// first line of that command's own -h text, which a test checks.
const topHelp = `usage: bindtodev COMMAND [flags] [args]

Commands:
  bindtodev dial   [-i IFACE] [-s SOURCE] [-u] [-v] [-w TIMEOUT] HOST:PORT
      connect through one interface, netcat style
  bindtodev listen -i IFACE [-u] [-c COUNT] [ADDR]:PORT
      accept or receive only on one interface
  bindtodev check  -i IFACE [-w TIMEOUT] HOST:PORT
      compare a bound and an unbound connection side by side
  bindtodev exec   -i IFACE [-follow] [-confine] [-cgroup DIR] [-allow-bpf TYPE,...] [--] CMD [ARGS...]
      run a program with all its sockets bound to one interface; -follow
      binds its new sockets to the interface of that name when it is
      re-created, -confine keeps even a root command from undoing the
      binding, -allow-bpf accepts
      inherited cgroup BPF programs of the attach types named, which could
      change the binding and are otherwise refused
  bindtodev help   [COMMAND]
      print this help, or COMMAND's (as "bindtodev COMMAND -h" does)
  bindtodev version
      print the version, VCS revision and Go release (also --version)

`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	case "help":
		return runHelp(args[1:], stdin, stdout, stderr)
	case "-version", "--version":
		name = "version"
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "bindtodev: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	return cmd.run(args[1:], stdin, stdout, stderr)
}

// runHelp prints the top-level help, or with a command's name that
// command's -h text.
func runHelp(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0 || len(args) == 1 && args[0] == "help":
		usage(stdout)
		return exitOK
	case len(args) > 1:
		fmt.Fprintf(stderr, "bindtodev help: want at most one COMMAND, got %d\nRun \"bindtodev help\" for the list of commands.\n", len(args))
		return exitUsage
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "bindtodev help: unknown command %q: the commands are dial, listen, check, exec, help and version\nRun \"bindtodev help\" for help.\n", args[0])
		return exitUsage
	}
	// exec's bad flags exit 125, its help 0 like everyone's: whatever the
	// command, -h alone asks for its help and nothing else.
	return cmd.run([]string{"-h"}, stdin, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprint(w, topHelp)
	fmt.Fprintln(w, exitCodesHelp)
	fmt.Fprintln(w, "\"bindtodev check\" exits 3 when the unbound path differs from the bound one, 4 when\nthe destination is this host's own (see \"bindtodev help check\").")
	fmt.Fprintln(w, "\"bindtodev exec\" exits with the command's status, or 125-127 (see \"bindtodev help exec\").")
}

const versionHead = `usage: bindtodev version

Prints the version of bindtodev, read from the build information that the go
command writes into the program: the main module's version ("(devel)" when
it was built without one), its path, the VCS revision it was built from and
whether the checkout had uncommitted changes (when the go command could
read them), and the Go release and platform it was built with.
"bindtodev --version" does the same.
`

func runVersion(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprint(stdout, versionHead+"\n"+exitCodesHelp+"\n")
		return exitOK
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "bindtodev version: takes no arguments, got %q\nRun \"bindtodev version -h\" for help.\n", args)
		return exitUsage
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintf(stdout, "bindtodev (unknown version: the program carries no build information)\ngo:       %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	}
	fmt.Fprint(stdout, versionText(bi))
	return exitOK
}

// versionText formats what the build information says about the program.
func versionText(bi *debug.BuildInfo) string {
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	revision := "unknown (built without VCS information)"
	if rev := settings["vcs.revision"]; rev != "" {
		revision = rev
		if t := settings["vcs.time"]; t != "" {
			revision += " (" + t + ")"
		}
		switch settings["vcs.modified"] {
		case "true":
			revision += ", with uncommitted changes"
		case "false":
			revision += ", unmodified"
		}
	}
	platform := settings["GOOS"] + "/" + settings["GOARCH"]
	if platform == "/" {
		platform = runtime.GOOS + "/" + runtime.GOARCH
	}
	module := bi.Main.Path
	if module == "" {
		module = "unknown"
	}
	return fmt.Sprintf("bindtodev %s\nmodule:   %s\nrevision: %s\ngo:       %s %s\n", version, module, revision, bi.GoVersion, platform)
}
