package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// signalled is a running "bindtodev exec" whose command is the signals
// role, which prints the number of every signal it gets.
type signalled struct {
	cmd   *exec.Cmd
	lines chan string // closed at the end of the output
	pid   int         // the command's
}

func startSignalled(t *testing.T, ifname string, attr *syscall.SysProcAttr, stdin *os.File) *signalled {
	t.Helper()
	cmd := bindtodevCmd(t, "exec", "-i", ifname, "--", testBinary(t), roleArg, "signals")
	cmd.SysProcAttr, cmd.Stdin, cmd.Stderr = attr, stdin, os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	w := &signalled{cmd: cmd, lines: make(chan string, 64)}
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
	}()
	line := w.line(t)
	if _, err := fmt.Sscanf(line, "ready %d", &w.pid); err != nil {
		t.Fatalf("command did not start: %q", line)
	}
	return w
}

// line returns the command's next line, or "(none)" if none comes within
// five seconds: a signal that is not forwarded prints nothing.
func (w *signalled) line(t *testing.T) string {
	t.Helper()
	select {
	case line, ok := <-w.lines:
		if !ok {
			t.Fatal("the command's output ended")
		}
		return strings.TrimSpace(line)
	case <-time.After(5 * time.Second):
		return "(none)"
	}
}

// expect checks that the command got exactly signal want next. A sentinel
// (SIGUSR1, forwarded by the wrapper after anything sent before it) must
// follow, so that a second delivery of want would show before it.
func (w *signalled) expect(t *testing.T, what string, want syscall.Signal) {
	t.Helper()
	if got := w.line(t); got != strconv.Itoa(int(want)) {
		t.Fatalf("%s: the command got signal %s, want %d", what, got, want)
	}
	if err := w.cmd.Process.Signal(unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if got := w.line(t); got != strconv.Itoa(int(unix.SIGUSR1)) {
		t.Errorf("%s: after signal %d the command got %s, want only the sentinel %d", what, want, got, unix.SIGUSR1)
	}
}

func (w *signalled) terminate(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := w.line(t); got != strconv.Itoa(int(unix.SIGTERM)) {
		t.Errorf("SIGTERM: the command got %s", got)
	}
	if err := w.cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// Every catchable signal sent to the wrapper reaches the command once,
// without a terminal: the wrapper runs in a session of its own.
func TestExecForwardsSignals(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	w := startSignalled(t, s.A, &syscall.SysProcAttr{Setsid: true}, nil)
	for _, sig := range []syscall.Signal{
		unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR2, unix.SIGPIPE, unix.SIGALRM,
		unix.SIGWINCH, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGIO,
		unix.SIGPWR, unix.SIGXCPU, unix.SIGVTALRM, 35, 40, 64,
	} {
		if err := w.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		w.expect(t, fmt.Sprintf("kill -%d wrapper", sig), sig)
	}
	// A supervisor that signals the wrapper's whole process group: the
	// command, in a group of its own, gets it once, from the wrapper.
	if err := unix.Kill(-w.cmd.Process.Pid, unix.SIGINT); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "kill -INT -PGID", unix.SIGINT)
	w.terminate(t)
}

// openPty returns a pseudo-terminal's master and slave.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// On a terminal whose foreground the wrapper has, the command gets the
// terminal: Ctrl-C and a window change reach it once, from the terminal,
// and a kill -INT sent to the wrapper by someone else reaches it once,
// from the wrapper.
func TestExecTerminalSignals(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	master, slave := openPty(t)
	w := startSignalled(t, s.A, &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}, slave)
	if fg, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPGRP); err != nil || fg != w.pid {
		t.Errorf("the terminal's foreground group is %d (%v), want the command's, %d", fg, err, w.pid)
	}
	if _, err := master.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	w.expect(t, "Ctrl-C", unix.SIGINT)
	if err := w.cmd.Process.Signal(unix.SIGINT); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "kill -INT wrapper", unix.SIGINT)
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 100}); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "window change", unix.SIGWINCH)
	w.terminate(t)
}

// Ctrl-Z stops the command, and then the wrapper, so that a shell sees its
// job stopped and has its terminal back; continuing the wrapper gives the
// terminal back to the command and continues it.
func TestExecTerminalStop(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	master, slave := openPty(t)
	cmd := bindtodevCmd(t, "exec", "-i", s.A, "--", "sh", "-c", `echo ready $$; while :; do read line && echo "read $line"; done`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	cmd.Stdin, cmd.Stderr = slave, os.Stderr
	outR, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	out := bufio.NewReader(outR)
	var pid int
	if line, _ := out.ReadString('\n'); func() bool { _, err := fmt.Sscanf(line, "ready %d", &pid); return err != nil }() {
		t.Fatalf("command did not start: %q", line)
	}
	foreground := func() int {
		fg, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPGRP)
		if err != nil {
			t.Fatal(err)
		}
		return fg
	}
	if _, err := master.Write([]byte{26}); err != nil { // Ctrl-Z
		t.Fatal(err)
	}
	// The wrapper stops too, within a few seconds.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WSTOPPED|unix.WNOHANG, nil); err != nil {
			t.Fatal(err)
		}
		if info.Signo != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the wrapper did not stop after the command did")
		}
	}
	if fg := foreground(); fg != cmd.Process.Pid {
		t.Errorf("with the job stopped the foreground group is %d, want the wrapper's, %d", fg, cmd.Process.Pid)
	}
	if err := cmd.Process.Signal(unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for foreground() != pid && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if fg := foreground(); fg != pid {
		t.Fatalf("after SIGCONT the foreground group is %d, want the command's, %d", fg, pid)
	}
	// Running again, in the foreground: it reads the terminal.
	if _, err := master.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := out.ReadString('\n'); line != "read hello\n" {
		t.Errorf("after SIGCONT the command read %q, %v", line, err)
	}
	if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 128+int(unix.SIGTERM) {
		t.Errorf("exit %d, want %d", code, 128+int(unix.SIGTERM))
	}
}
