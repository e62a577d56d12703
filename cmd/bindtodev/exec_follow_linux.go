package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/cmd/bindtodev/internal/cgbind"
	"github.com/bindtodev/bindtodev/internal/rtnl"
)

// linkFollower keeps the program of an exec cgroup bound to whichever
// interface has the name now (exec -follow). It subscribes to the link
// events of the wrapper's network namespace before exec looks the name up
// for the first time, so that no change between the lookup and the
// attachment is missed: one made meanwhile is queued on the socket.
//
// An event is only a reason to ask the kernel again: a rename arrives as
// RTM_NEWLINK on an index already bound, a veth peer moved away as
// RTM_DELLINK under another name, and a lost burst as ENOBUFS. Each time,
// the kernel's own answer for the name (SIOCGIFINDEX) is compared with the
// index the program binds to, and the program is replaced when they
// differ. The follower keeps no table, so re-reading after ENOBUFS is the
// same lookup.
type linkFollower struct {
	name   string
	file   *os.File // the subscription socket
	rc     syscall.RawConn
	stderr io.Writer
	done   chan struct{}
}

// subscribeLinks opens the subscription of a follower of name.
func subscribeLinks(name string, stderr io.Writer) (*linkFollower, error) {
	fd, err := rtnl.Subscribe(unix.RTMGRP_LINK)
	if err != nil {
		return nil, fmt.Errorf("watch interface %q: %w", name, err)
	}
	file := os.NewFile(uintptr(fd), "rtnetlink")
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("watch interface %q: %w", name, err)
	}
	return &linkFollower{name: name, file: file, rc: rc, stderr: stderr, done: make(chan struct{})}, nil
}

// start follows the interface for g, whose program binds to index.
func (f *linkFollower) start(g *cgbind.Group, index int32) {
	go f.run(g, index)
}

// stop ends the following and waits for it. The program attached last
// stays: processes left in the cgroup keep it.
func (f *linkFollower) stop() {
	f.file.Close()
	<-f.done
}

func (f *linkFollower) run(g *cgbind.Group, bound int32) {
	defer close(f.done)
	buf := make([]byte, 64<<10)
	for {
		var from unix.Sockaddr
		var rerr error
		err := f.rc.Read(func(fd uintptr) bool {
			_, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		switch {
		case err != nil:
			return // closed by stop
		case errors.Is(rerr, unix.ENOBUFS):
			// Events were lost: the lookup below reads the truth.
		case errors.Is(rerr, unix.EINTR):
			continue
		case rerr != nil:
			f.fail(g, os.NewSyscallError("recvfrom", rerr))
			return
		case !rtnl.FromKernel(from):
			continue
		}
		bound = f.sync(g, bound)
	}
}

// sync asks the kernel which index has the name now and replaces g's
// program when it is not the one it binds to (bound, 0 for the denying
// program). It returns the index the program binds to afterwards: on
// failure, the old program stays, which binds to a dead index or denies,
// and the next event tries again.
func (f *linkFollower) sync(g *cgbind.Group, bound int32) int32 {
	var index int32
	var lerr error
	if err := f.rc.Control(func(fd uintptr) { index, lerr = rtnl.LinkIndex(int(fd), f.name) }); err != nil {
		lerr = err
	}
	if lerr != nil {
		fmt.Fprintf(f.stderr, "bindtodev exec: -follow: look up interface %q: %v; the command's sockets stay as they were\n", f.name, lerr)
		return bound
	}
	if index == bound {
		return bound
	}
	if index == 0 {
		if err := g.Deny(); err != nil {
			fmt.Fprintf(f.stderr, "bindtodev exec: -follow: interface %q is gone, and refusing the command's new sockets failed: %v; they stay bound to the old index %d and fail with ENODEV\n", f.name, err, bound)
			return bound
		}
		fmt.Fprintf(f.stderr, "bindtodev exec: interface %q is gone; the command's new sockets are refused (EPERM) until it is back\n", f.name)
		return 0
	}
	if err := g.Rebind(int(index)); err != nil {
		fmt.Fprintf(f.stderr, "bindtodev exec: -follow: interface %q is back with index %d, and binding the command's new sockets to it failed: %v; they still fail\n", f.name, index, err)
		return bound
	}
	fmt.Fprintf(f.stderr, "bindtodev exec: interface %q is back (index %d); the command's new sockets are bound to it\n", f.name, index)
	return index
}

// fail ends the following after the subscription broke: the command's new
// sockets are refused from then on, since no change of the interface
// would be seen any more.
func (f *linkFollower) fail(g *cgbind.Group, err error) {
	if derr := g.Deny(); derr != nil {
		fmt.Fprintf(f.stderr, "bindtodev exec: -follow: watching interface %q failed (%v), and refusing the command's new sockets failed too: %v\n", f.name, err, derr)
		return
	}
	fmt.Fprintf(f.stderr, "bindtodev exec: -follow: watching interface %q failed: %v; the command's new sockets are refused from now on\n", f.name, err)
}
