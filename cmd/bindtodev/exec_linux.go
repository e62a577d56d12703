package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/cmd/bindtodev/internal/cgbind"
)

// riskyTypesHelp names, in the help, the attach types -allow-bpf takes.
var riskyTypesHelp = strings.Join(cgbind.RiskyAttachTypes(), ", ")

func checkAllowBPF(list string) error {
	_, err := cgbind.ParseAttachTypes(list)
	return err
}

// runExec runs a command with all its sockets bound to one interface: see
// execUsage.
func runExec(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a, code, done := parseExecArgs(args, stdout, stderr)
	if done {
		return code
	}
	var err error
	fail := func(err error, hint string) int {
		fmt.Fprintf(stderr, "bindtodev exec: %v; the command was not run\n", err)
		if hint != "" {
			fmt.Fprintf(stderr, "bindtodev exec: %s\n", hint)
		}
		return exitExecFailed
	}
	var follower *linkFollower
	if a.follow {
		// Subscribed before the lookup: a change in between is queued.
		if follower, err = subscribeLinks(a.ifname, stderr); err != nil {
			return fail(err, "")
		}
		defer func() {
			if follower != nil {
				follower.file.Close()
			}
		}()
	}
	ifindex, up, err := interfaceState(a.ifname)
	if err != nil {
		return fail(err, hintFor(a.ifname, err))
	}
	if !up {
		// Not an error: an interface may come up later, and the
		// command's connections fail (ENETUNREACH) rather than leave
		// elsewhere until then.
		fmt.Fprintf(stderr, "bindtodev exec: warning: interface %q is down; the command runs, but its connections fail until the interface is up\n", a.ifname)
	}
	path, err := exec.LookPath(a.argv[0])
	if err != nil {
		fmt.Fprintf(stderr, "bindtodev exec: %v\n", err)
		if errors.Is(err, os.ErrPermission) {
			return exitCannotRun
		}
		return exitNotFound
	}
	var allowed []cgbind.AttachType
	if a.allow != "" {
		if allowed, err = cgbind.ParseAttachTypes(a.allow); err != nil {
			return fail(err, "")
		}
	}
	parent := a.cgroup
	if parent == "" {
		if parent, err = cgbind.OwnCgroup(); err != nil {
			return fail(fmt.Errorf("find own cgroup: %w", err), "")
		}
	}
	g, err := cgbind.New(parent, ifindex, allowed...)
	if err != nil {
		hint := ""
		var foreign *cgbind.ForeignProgramError
		if errors.As(err, &foreign) {
			hint = fmt.Sprintf("if that program is known not to change sockets' devices or destinations, accept it with -allow-bpf %s", foreign.Type)
		}
		return fail(fmt.Errorf("bind sockets to %q: %w", a.ifname, err), hint)
	}
	if follower != nil {
		follower.start(g, int32(ifindex))
	}
	code = runInGroup(g, path, a, stdin, stdout, stderr)
	if follower != nil {
		follower.stop()
		follower = nil
	}
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
// code that reports its end. The command runs in a process group of its
// own, which gets the terminal when the wrapper had it: a terminal's
// signals (Ctrl-C, Ctrl-Z, a window change) then reach the command alone,
// once, and every signal the wrapper gets was meant for it and is
// forwarded.
func runInGroup(g *cgbind.Group, path string, a execArgs, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := exec.Command(path, a.argv[1:]...)
	cmd.Args[0] = a.argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	attr := &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD(), Setpgid: true}
	if a.confine {
		confineCommand(cmd, attr, path)
	}
	tty := openTerminal()
	defer tty.close()
	if tty.foreground() {
		attr.Foreground, attr.Ctty = true, tty.fd
	}
	cmd.SysProcAttr = attr

	signals := make(chan os.Signal, 64)
	signal.Notify(signals, forwardedSignals()...)
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
	jc := &jobControl{tty: tty, pid: cmd.Process.Pid}
	go jc.followStops()
	waited := make(chan struct{})
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		for {
			select {
			case s := <-signals:
				jc.forward(s.(syscall.Signal))
			case <-waited:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(waited)
	<-forwarded
	jc.takeTerminal()
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

// interfaceState resolves ifname in the caller's network namespace and
// reports whether it is up.
func interfaceState(ifname string) (index int, up bool, err error) {
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return 0, false, fmt.Errorf("interface %q: %w", ifname, err)
	}
	// Any socket will do for the ioctl; a Unix one touches no network.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, false, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, false, fmt.Errorf("interface %q: %w", ifname, os.NewSyscallError("ioctl(SIOCGIFINDEX)", err))
	}
	index = int(ifr.Uint32())
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return 0, false, fmt.Errorf("interface %q: %w", ifname, os.NewSyscallError("ioctl(SIOCGIFFLAGS)", err))
	}
	return index, ifr.Uint16()&unix.IFF_UP != 0, nil
}
