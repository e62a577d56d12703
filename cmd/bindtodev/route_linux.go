package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// routeLookupName says in the output where an unbound socket's interface
// came from.
const routeLookupName = "route lookup (RTM_GETROUTE)"

// route is the kernel's answer to a route lookup.
type route struct {
	ifindex int
	gateway netip.Addr // invalid when the destination is on-link
	// local is true for a route of type local (RTN_LOCAL): the
	// destination is an address of this host, which the kernel delivers
	// through lo whatever the socket is bound to.
	local bool
}

// lookupRoute asks the kernel which route it takes for a TCP packet from
// src to dst, as ip route get does, restricted to interface oif when oif is
// not 0. The ports and protocol are part of the question (Linux 4.17 and
// later use them) so that policy rules that match them answer as they did
// for the connection. The socket's mark is not: the command never sets one.
func lookupRoute(src, dst netip.AddrPort, oif int) (route, error) {
	if dst.Addr().Zone() != "" && oif == 0 {
		oif = zoneIndex(dst.Addr().Zone())
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return route{}, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Sendto(fd, getRouteRequest(src, dst, oif), 0, kernel); err != nil {
		return route{}, os.NewSyscallError("sendto", err)
	}
	buf := make([]byte, 16<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return route{}, os.NewSyscallError("recvfrom", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return route{}, fmt.Errorf("parse the kernel's answer: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != routeSeq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return route{}, fmt.Errorf("short netlink error message")
				}
				if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
					return route{}, os.NewSyscallError("RTM_GETROUTE", unix.Errno(errno))
				}
			case unix.RTM_NEWROUTE:
				return parseRoute(&m)
			}
		}
	}
}

const routeSeq = 1

func getRouteRequest(src, dst netip.AddrPort, oif int) []byte {
	family, bits := unix.AF_INET, 32
	if dst.Addr().Is6() {
		family, bits = unix.AF_INET6, 128
	}
	var attrs []byte
	attrs = appendAttr(attrs, unix.RTA_DST, dst.Addr().AsSlice())
	rtm := unix.RtMsg{Family: uint8(family), Dst_len: uint8(bits)}
	if src.Addr().IsValid() {
		attrs = appendAttr(attrs, unix.RTA_SRC, src.Addr().AsSlice())
		rtm.Src_len = uint8(bits)
	}
	if oif != 0 {
		attrs = appendAttr(attrs, unix.RTA_OIF, binary.NativeEndian.AppendUint32(nil, uint32(oif)))
	}
	attrs = appendAttr(attrs, unix.RTA_IP_PROTO, []byte{unix.IPPROTO_TCP})
	attrs = appendAttr(attrs, unix.RTA_SPORT, binary.BigEndian.AppendUint16(nil, src.Port()))
	attrs = appendAttr(attrs, unix.RTA_DPORT, binary.BigEndian.AppendUint16(nil, dst.Port()))

	length := unix.SizeofNlMsghdr + unix.SizeofRtMsg + len(attrs)
	b := make([]byte, 0, length)
	b = binary.NativeEndian.AppendUint32(b, uint32(length))
	b = binary.NativeEndian.AppendUint16(b, unix.RTM_GETROUTE)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint32(b, routeSeq)
	b = binary.NativeEndian.AppendUint32(b, 0) // to the kernel
	b = append(b, rtm.Family, rtm.Dst_len, rtm.Src_len, rtm.Tos, rtm.Table, rtm.Protocol, rtm.Scope, rtm.Type)
	b = binary.NativeEndian.AppendUint32(b, rtm.Flags)
	return append(b, attrs...)
}

// appendAttr appends a route attribute, padded to 4 bytes as netlink wants.
func appendAttr(b []byte, typ uint16, value []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofRtAttr+len(value)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, value...)
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

func parseRoute(m *syscall.NetlinkMessage) (route, error) {
	attrs, err := syscall.ParseNetlinkRouteAttr(m)
	if err != nil {
		return route{}, fmt.Errorf("parse the kernel's route: %w", err)
	}
	var r route
	if len(m.Data) >= unix.SizeofRtMsg {
		r.local = m.Data[7] == unix.RTN_LOCAL // rtm_type, after family, lengths, tos, table, protocol and scope
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_OIF:
			if len(a.Value) >= 4 {
				r.ifindex = int(binary.NativeEndian.Uint32(a.Value))
			}
		case unix.RTA_GATEWAY:
			r.gateway, _ = netip.AddrFromSlice(a.Value)
		}
	}
	if r.ifindex == 0 {
		return route{}, fmt.Errorf("the kernel's route names no interface")
	}
	return r, nil
}

// zoneIndex turns an IPv6 zone into an interface index, 0 if unknown.
func zoneIndex(zone string) int {
	if i, err := strconv.Atoi(zone); err == nil {
		return i
	}
	if ifc, err := net.InterfaceByName(zone); err == nil {
		return ifc.Index
	}
	return 0
}
