package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/cmd/bindtodev/internal/cgbind"
)

// confineEnv marks the process that "bindtodev exec -confine" starts in the
// command's cgroup: bindtodev itself, which confines itself (see
// cgbind.Confine) and then executes the command, whose path the variable
// holds, in its own place. The variable is removed before the command runs.
const confineEnv = "BINDTODEV_EXEC_CONFINED_PATH"

// init runs before main, and before any test's TestMain, so that the
// confined process never does anything else.
func init() {
	if path, ok := os.LookupEnv(confineEnv); ok {
		os.Exit(confineAndExec(path))
	}
}

// confineCommand makes cmd start bindtodev itself as the confining
// process, in new cgroup and mount namespaces: the child is already in the
// command's cgroup (CLONE_INTO_CGROUP) when it unshares, so its cgroup
// namespace is rooted there, and Go makes its mounts private, so that
// what it unmounts stays its own.
func confineCommand(cmd *exec.Cmd, attr *syscall.SysProcAttr, path string) {
	cmd.Path = "/proc/self/exe"
	cmd.Env = append(os.Environ(), confineEnv+"="+path)
	attr.Unshareflags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP
}

// confineAndExec confines the process and executes path with the
// process's arguments; it returns only on failure, with exec's exit code.
func confineAndExec(path string) int {
	// Capabilities and no_new_privs belong to a thread: the one that
	// confines itself must be the one that calls execve.
	runtime.LockOSThread()
	if err := os.Unsetenv(confineEnv); err != nil {
		fmt.Fprintf(os.Stderr, "bindtodev exec: -confine: %v; the command was not run\n", err)
		return exitExecFailed
	}
	if err := cgbind.Confine(); err != nil {
		fmt.Fprintf(os.Stderr, "bindtodev exec: -confine: %v; the command was not run\n", err)
		return exitExecFailed
	}
	err := unix.Exec(path, os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "bindtodev exec: %s: %v\n", path, err)
	switch {
	case errors.Is(err, unix.ENOENT):
		return exitNotFound
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOEXEC), errors.Is(err, unix.EPERM), errors.Is(err, unix.EISDIR):
		return exitCannotRun
	}
	return exitExecFailed
}
