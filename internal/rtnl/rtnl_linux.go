package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14), missing from x/sys/unix:
// 71 in asm-generic/socket.h and on every architecture Go supports.
const soNetnsCookie = 71

// Link is what the package keeps of an RTM_NEWLINK or RTM_DELLINK message.
type Link struct {
	Index int32
	Name  string
	Up    bool // IFF_UP
}

// Event is one message of a subscription.
type Event struct {
	Kind  uint16 // unix.RTM_NEWLINK, unix.RTM_DELLINK or unix.RTM_NEWADDR
	Link  Link   // for RTM_NEWLINK and RTM_DELLINK
	Index int32  // the interface of an RTM_NEWADDR
}

// Subscribe opens a netlink socket in the calling thread's network
// namespace, joined to the multicast groups (unix.RTMGRP_LINK and the like).
// The socket is non-blocking, for the runtime's poller, and close-on-exec.
// Whoever reads it must re-read the state it follows when a read fails with
// ENOBUFS: events were lost.
func Subscribe(groups uint32) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	// A burst of events (hundreds of interfaces going at once) must not
	// overrun the queue often. Forcing a larger buffer needs
	// CAP_NET_ADMIN.
	_ = SetRcvbuf(fd, 1<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("bind", err)
	}
	return fd, nil
}

// SetRcvbuf sets the receive buffer of fd, beyond the system's limit when
// the process may (CAP_NET_ADMIN).
func SetRcvbuf(fd, bytes int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes) == nil {
		return nil
	}
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bytes))
}

// FromKernel reports whether a message of a subscription, received from
// from, was sent by the kernel: any process may send to a netlink group
// socket, and only the kernel speaks for the kernel.
func FromKernel(from unix.Sockaddr) bool {
	sa, ok := from.(*unix.SockaddrNetlink)
	return ok && sa.Pid == 0
}

// DumpLinks reads the whole link table through a socket of its own, opened
// in the calling thread's namespace. A dump that a change interrupted is
// read again.
func DumpLinks() ([]Link, error) {
	for {
		links, err := dumpLinksOnce()
		if !errors.Is(err, errDumpInterrupted) {
			return links, err
		}
	}
}

var errDumpInterrupted = errors.New("link dump interrupted by a change")

func dumpLinksOnce() ([]Link, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("bind", err)
	}
	const seq = 1
	req := make([]byte, unix.SizeofNlMsghdr+unix.SizeofIfInfomsg)
	hdr := (*unix.NlMsghdr)(unsafe.Pointer(&req[0]))
	hdr.Len = uint32(len(req))
	hdr.Type = unix.RTM_GETLINK
	hdr.Flags = unix.NLM_F_REQUEST | unix.NLM_F_DUMP
	hdr.Seq = seq
	req[unix.SizeofNlMsghdr] = unix.AF_UNSPEC
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("sendto", err)
	}
	var links []Link
	buf := make([]byte, 64<<10)
	interrupted := false
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("recvfrom", err)
		}
		done := false
		err = eachMessage(buf[:n], func(h *unix.NlMsghdr, body []byte) error {
			if h.Seq != seq {
				return nil
			}
			if h.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch h.Type {
			case unix.NLMSG_DONE:
				done = true
			case unix.NLMSG_ERROR:
				return netlinkError(body)
			case unix.RTM_NEWLINK:
				if l, ok := parseLink(body); ok {
					links = append(links, l)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if done {
			if interrupted {
				return nil, errDumpInterrupted
			}
			return links, nil
		}
	}
}

// netlinkError reads the errno of an NLMSG_ERROR message.
func netlinkError(body []byte) error {
	if len(body) < 4 {
		return errors.New("netlink: short error message")
	}
	if code := int32(binary.NativeEndian.Uint32(body)); code != 0 {
		return os.NewSyscallError("netlink", unix.Errno(-code))
	}
	return nil
}

// ParseEvents decodes a datagram of a subscription, appending its link and
// address events to out.
func ParseEvents(b []byte, out []Event) []Event {
	_ = eachMessage(b, func(h *unix.NlMsghdr, body []byte) error {
		switch h.Type {
		case unix.RTM_NEWLINK, unix.RTM_DELLINK:
			if l, ok := parseLink(body); ok {
				out = append(out, Event{Kind: h.Type, Link: l})
			}
		case unix.RTM_NEWADDR:
			if len(body) >= unix.SizeofIfAddrmsg {
				ifa := (*unix.IfAddrmsg)(unsafe.Pointer(&body[0]))
				out = append(out, Event{Kind: h.Type, Index: int32(ifa.Index)})
			}
		}
		return nil
	})
	return out
}

// eachMessage calls fn with the header and body of every message in b.
func eachMessage(b []byte, fn func(h *unix.NlMsghdr, body []byte) error) error {
	for len(b) >= unix.SizeofNlMsghdr {
		h := (*unix.NlMsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return fmt.Errorf("netlink: malformed message of %d bytes in %d", l, len(b))
		}
		if err := fn(h, b[unix.SizeofNlMsghdr:l]); err != nil {
			return err
		}
		b = b[min(nlAlign(l), len(b)):]
	}
	return nil
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// parseLink reads an ifinfomsg and its IFLA_IFNAME attribute.
func parseLink(body []byte) (Link, bool) {
	if len(body) < unix.SizeofIfInfomsg {
		return Link{}, false
	}
	ifi := (*unix.IfInfomsg)(unsafe.Pointer(&body[0]))
	l := Link{Index: ifi.Index, Up: ifi.Flags&unix.IFF_UP != 0}
	attrs := body[unix.SizeofIfInfomsg:]
	for len(attrs) >= unix.SizeofRtAttr {
		a := (*unix.RtAttr)(unsafe.Pointer(&attrs[0]))
		al := int(a.Len)
		if al < unix.SizeofRtAttr || al > len(attrs) {
			break
		}
		if a.Type == unix.IFLA_IFNAME {
			v := attrs[unix.SizeofRtAttr:al]
			for i, c := range v {
				if c == 0 {
					v = v[:i]
					break
				}
			}
			l.Name = string(v)
		}
		attrs = attrs[min(nlAlign(al), len(attrs)):]
	}
	return l, l.Name != "" && l.Index > 0
}

// SocketNetns returns the cookie of the network namespace of socket fd, or
// 0 when the kernel is older than 5.14 and cannot tell.
func SocketNetns(fd int) (uint64, error) {
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, soNetnsCookie)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return 0, nil
	}
	return v, os.NewSyscallError("getsockopt", err)
}

// ThreadNetns returns the cookie of the calling thread's network namespace,
// through a throwaway socket.
func ThreadNetns() (uint64, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	return SocketNetns(fd)
}

// LinkUp asks the kernel, through socket fd, which decides the namespace,
// whether an interface named name exists and is up (SIOCGIFFLAGS).
func LinkUp(fd int, name string) (bool, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return false, err
	}
	err = unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr)
	if errors.Is(err, unix.ENODEV) {
		return false, nil
	}
	if err != nil {
		return false, os.NewSyscallError("ioctl", err)
	}
	if primary, err := PrimaryName(fd, name); err != nil || primary != name {
		// An alternative name is not the name Follow watches: the
		// kernel's events carry only the interface's own.
		return false, nil
	}
	return ifr.Uint16()&unix.IFF_UP != 0, nil
}

// PrimaryName returns the interface's own name for name, which is name
// itself unless name is one of its alternative names (ip link property
// add altname); it asks the kernel through socket fd (SIOCGIFINDEX, then
// SIOCGIFNAME).
func PrimaryName(fd int, name string) (string, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return "", err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return "", os.NewSyscallError("ioctl", err)
	}
	index := ifr.Uint32()
	byIndex, err := unix.NewIfreq("")
	if err != nil {
		return "", err
	}
	byIndex.SetUint32(index)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFNAME, byIndex); err != nil {
		return "", os.NewSyscallError("ioctl", err)
	}
	return byIndex.Name(), nil
}

// LinkIndex asks the kernel, through socket fd, which decides the
// namespace, for the index of the interface named name now
// (SIOCGIFINDEX), or 0 when there is none.
func LinkIndex(fd int, name string) (int32, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	err = unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr)
	if errors.Is(err, unix.ENODEV) {
		return 0, nil
	}
	if err != nil {
		return 0, os.NewSyscallError("ioctl", err)
	}
	return int32(ifr.Uint32()), nil
}
