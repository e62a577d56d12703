package main

import (
	"encoding/binary"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// pktinfo is where a datagram arrived, from IP_PKTINFO or IPV6_PKTINFO.
type pktinfo struct {
	ifindex int
	dst     netip.Addr
	option  string // the option that carried it, for the output
}

// enablePktinfo asks the kernel to attach the arrival interface and
// destination address to each datagram of c. A dual-stack IPv6 socket gets
// IPV6_PKTINFO for IPv4 datagrams too, with an IPv4-mapped address.
func enablePktinfo(c syscall.RawConn) (ipv6 bool, err error) {
	var sockErr error
	err = c.Control(func(fd uintptr) {
		var domain int
		if domain, sockErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); sockErr != nil {
			sockErr = os.NewSyscallError("getsockopt", sockErr)
			return
		}
		ipv6 = domain == unix.AF_INET6
		if ipv6 {
			sockErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			sockErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
		sockErr = os.NewSyscallError("setsockopt", sockErr)
	})
	if err != nil {
		return false, err
	}
	return ipv6, sockErr
}

// parsePktinfo finds the packet information in a datagram's control
// messages.
func parsePktinfo(oob []byte) (pktinfo, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return pktinfo{}, false
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo: ifindex, spec_dst, addr.
			ifindex := int(int32(binary.NativeEndian.Uint32(m.Data)))
			return pktinfo{ifindex, netip.AddrFrom4([4]byte(m.Data[8:12])), "IP_PKTINFO"}, true
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo: addr, ifindex.
			ifindex := int(binary.NativeEndian.Uint32(m.Data[16:]))
			return pktinfo{ifindex, netip.AddrFrom16([16]byte(m.Data[:16])).Unmap(), "IPV6_PKTINFO"}, true
		}
	}
	return pktinfo{}, false
}

// replySource returns the control message that makes a reply leave from
// the address the datagram was sent to, so that the sender's connected
// socket accepts it. The interface index is left 0: the socket's binding
// decides the interface, and a different IPv4 index would override it.
func replySource(ipv6 bool, dst netip.Addr) []byte {
	if !dst.IsValid() {
		return nil
	}
	if ipv6 {
		// As16 maps an IPv4 address, which a dual-stack socket accepts.
		return unix.PktInfo6(&unix.Inet6Pktinfo{Addr: dst.As16()})
	}
	if !dst.Is4() {
		return nil
	}
	return unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: dst.As4()})
}
