package main

import (
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// forwardedSignals returns every signal the wrapper catches and passes on
// to the command: all but those that cannot be caught (SIGKILL, SIGSTOP),
// SIGCHLD, which tells the wrapper about its own child, SIGURG, which the
// Go runtime sends itself to preempt goroutines and so cannot be told
// apart from one sent by someone else, SIGPROF, which the Go runtime takes
// for its profiler and never passes on, and signals 32 to 34, which the Go
// runtime reserves for C libraries (glibc's thread cancellation and setxid,
// musl's SIGSYNCCALL) and lets no program catch.
func forwardedSignals() []os.Signal {
	var sigs []os.Signal
	for s := syscall.Signal(1); s <= 64; s++ {
		switch {
		case s == unix.SIGKILL, s == unix.SIGSTOP, s == unix.SIGCHLD, s == unix.SIGURG, s == unix.SIGPROF,
			s >= 32 && s <= 34:
			continue
		}
		sigs = append(sigs, s)
	}
	return sigs
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

// foregroundGroup returns the terminal's foreground process group, or -1.
func (t terminal) foregroundGroup() int {
	if t.fd < 0 {
		return -1
	}
	pgrp, err := unix.IoctlGetInt(t.fd, unix.TIOCGPGRP)
	if err != nil {
		return -1
	}
	return pgrp
}

// foreground reports whether the wrapper's process group is the
// terminal's foreground group.
func (t terminal) foreground() bool {
	return t.fd >= 0 && t.foregroundGroup() == unix.Getpgrp()
}

// give makes pgrp the terminal's foreground process group. A process
// outside the foreground group that asks would get SIGTTOU (and, catching
// it, loop), unless the signal is blocked on its thread.
func (t terminal) give(pgrp int) {
	if t.fd < 0 {
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var block, old unix.Sigset_t
	block.Val[(unix.SIGTTOU-1)/64] |= 1 << ((uint(unix.SIGTTOU) - 1) % 64)
	if unix.PthreadSigmask(unix.SIG_BLOCK, &block, &old) != nil {
		return
	}
	_ = unix.IoctlSetPointerInt(t.fd, unix.TIOCSPGRP, pgrp)
	_ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
}

// jobControl keeps the wrapper and the command, which has a process group
// of its own (its ID is the command's PID), acting as one job for a shell:
// when the command stops (Ctrl-Z), the wrapper takes the terminal back and
// stops too; when the wrapper is continued, it gives the terminal back to
// the command, if the shell gave it to the wrapper, and continues it.
type jobControl struct {
	tty terminal
	pid int

	mu sync.Mutex // serializes terminal hand-overs
}

// forward passes signal s on to the command; SIGCONT goes to its whole
// process group, which the terminal stopped as a whole.
func (j *jobControl) forward(s syscall.Signal) {
	if s != unix.SIGCONT {
		_ = unix.Kill(j.pid, s)
		return
	}
	j.mu.Lock()
	if j.tty.foreground() {
		j.tty.give(j.pid)
	}
	j.mu.Unlock()
	_ = unix.Kill(-j.pid, unix.SIGCONT)
}

// followStops stops the wrapper whenever the command stops, while a
// terminal makes that a shell's job. It returns when the command is gone.
func (j *jobControl) followStops() {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, j.pid, &info, unix.WSTOPPED, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		if j.tty.fd < 0 {
			// No shell to hand the job to: a command stopped by
			// someone is continued by someone.
			continue
		}
		j.mu.Lock()
		if j.tty.foregroundGroup() == j.pid {
			j.tty.give(unix.Getpgrp())
		}
		j.mu.Unlock()
		_ = unix.Kill(unix.Getpid(), unix.SIGSTOP)
	}
}

// takeTerminal gives the terminal back to the wrapper's process group
// once the command has exited, if the command still had it.
func (j *jobControl) takeTerminal() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.tty.foregroundGroup() == j.pid {
		j.tty.give(unix.Getpgrp())
	}
}
