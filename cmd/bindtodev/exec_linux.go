package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/cmd/bindtodev/internal/cgbind"
)

// forwardedSignals are passed on to the command. The wrapper stays its
// parent so that it can remove the cgroup afterwards; to a supervisor it
// must behave like the command itself.
var forwardedSignals = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT}

// runExec runs a command with all its sockets bound to one interface: see
// execUsage.
func runExec(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a, code, done := parseExecArgs(args, stdout, stderr)
	if done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "bindtodev exec: %v; the command was not run\n", err)
		return exitExecFailed
	}
	ifindex, err := interfaceIndex(a.ifname)
	if err != nil {
		return fail(err)
	}
	path, err := exec.LookPath(a.argv[0])
	if err != nil {
		fmt.Fprintf(stderr, "bindtodev exec: %v\n", err)
		if errors.Is(err, os.ErrPermission) {
			return exitCannotRun
		}
		return exitNotFound
	}
	parent := a.cgroup
	if parent == "" {
		if parent, err = cgbind.OwnCgroup(); err != nil {
			return fail(fmt.Errorf("find own cgroup: %w", err))
		}
	}
	g, err := cgbind.New(parent, ifindex)
	if err != nil {
		return fail(fmt.Errorf("bind sockets to %q: %w", a.ifname, err))
	}
	code = runInGroup(g, path, a.argv, stdin, stdout, stderr)
	switch err := g.Remove(); {
	case errors.Is(err, cgbind.ErrBusy):
		fmt.Fprintf(stderr, "bindtodev exec: processes started by %s still run in cgroup %s; their sockets stay bound to %q, and a later bindtodev exec removes the cgroup once they have exited\n",
			a.argv[0], g.Path, a.ifname)
	case err != nil:
		fmt.Fprintf(stderr, "bindtodev exec: %v\n", err)
	}
	return code
}

// runInGroup starts the command directly inside g's cgroup, so that its
// very first socket is bound, forwards signals to it and returns the exit
// code that reports its end.
func runInGroup(g *cgbind.Group, path string, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}

	tty := openTerminal()
	defer tty.close()
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, forwardedSignals...)
	defer signal.Stop(signals)

	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "bindtodev exec: %v\n", startError(err))
		var errno syscall.Errno
		switch {
		case errors.As(err, &errno) && errno == unix.ENOENT:
			return exitNotFound
		case errors.As(err, &errno) && (errno == unix.EACCES || errno == unix.ENOEXEC || errno == unix.EPERM || errno == unix.EISDIR):
			return exitCannotRun
		}
		return exitExecFailed
	}
	waited := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-signals:
				if !tty.deliveredToCommand(s) {
					_ = cmd.Process.Signal(s)
				}
			case <-waited:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(waited)
	state := cmd.ProcessState
	if state == nil {
		fmt.Fprintf(stderr, "bindtodev exec: %v\n", err)
		return exitExecFailed
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignalsBase + int(ws.Signal())
	}
	if err != nil && state.Success() {
		// The command succeeded but its standard streams could not be
		// copied: report the loss rather than success.
		fmt.Fprintf(stderr, "bindtodev exec: %v\n", err)
		return exitExecFailed
	}
	return state.ExitCode()
}

// startError adds the kernel requirement to a failure of clone3 itself.
func startError(err error) error {
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.E2BIG) {
		return fmt.Errorf("%w (starting a process inside a cgroup needs clone3 with CLONE_INTO_CGROUP, Linux 5.7 or later)", err)
	}
	return err
}

// interfaceIndex resolves ifname in the caller's network namespace.
func interfaceIndex(ifname string) (int, error) {
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return 0, fmt.Errorf("interface %q: %w", ifname, err)
	}
	// Any socket will do for the ioctl; a Unix one touches no network.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("interface %q: %w", ifname, os.NewSyscallError("ioctl(SIOCGIFINDEX)", err))
	}
	return int(ifr.Uint32()), nil
}

// terminal is the controlling terminal, or fd -1 without one.
type terminal struct{ fd int }

func openTerminal() terminal {
	fd, err := unix.Open("/dev/tty", unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return terminal{fd: -1}
	}
	return terminal{fd: fd}
}

func (t terminal) close() {
	if t.fd >= 0 {
		unix.Close(t.fd)
	}
}

// deliveredToCommand reports whether the command has most likely received
// signal s already: a terminal sends the keyboard's SIGINT (Ctrl-C) and
// SIGQUIT (Ctrl-\) to its whole foreground process group, which holds the
// command as well as the wrapper. Forwarding those would deliver them twice.
func (t terminal) deliveredToCommand(s os.Signal) bool {
	if t.fd < 0 || (s != unix.SIGINT && s != unix.SIGQUIT) {
		return false
	}
	pgrp, err := unix.IoctlGetInt(t.fd, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}
