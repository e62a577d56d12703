//go:build !linux

package main

import (
	"fmt"
	"io"
	"runtime"
)

// riskyTypesHelp names, in the help, the attach types -allow-bpf takes.
const riskyTypesHelp = "see the Linux help"

// checkAllowBPF accepts any -allow-bpf list: nothing runs here anyway.
func checkAllowBPF(string) error { return nil }

// runExec refuses to run anything: only Linux can bind a program's sockets
// through a cgroup.
func runExec(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if _, code, done := parseExecArgs(args, stdout, stderr); done {
		return code
	}
	fmt.Fprintf(stderr, "bindtodev exec: binding a program's sockets needs Linux, not %s; the command was not run\n", runtime.GOOS)
	return exitExecFailed
}
