package netlab

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// TCP header flag bits, as in a [Packet]'s TCPFlags and a [Segment]'s Flags.
const (
	TCPFin uint8 = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
)

// Segment is one TCP segment to be sent by [Host.SendTCP], outside any TCP
// connection of the sending host.
type Segment struct {
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Flags    uint8
	Window   uint16
	Payload  []byte
}

// SendTCP sends seg from h through a raw socket, so that a test can put a
// segment on the wire that no socket of h would send, such as a stray
// segment for a connection its peer has closed. Src must be an address of
// h; the kernel adds the IP header and routes the segment by its table.
func (h *Host) SendTCP(seg Segment) error {
	if seg.Src.Addr().Is4() != seg.Dst.Addr().Is4() {
		return fmt.Errorf("netlab: segment %s -> %s mixes address families", seg.Src, seg.Dst)
	}
	b := tcpSegment(seg)
	err := h.Do(func() error {
		family, src, dst := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Addr: seg.Src.Addr().As16()}), unix.Sockaddr(&unix.SockaddrInet6{Addr: seg.Dst.Addr().As16()})
		if seg.Src.Addr().Is4() {
			family, src, dst = unix.AF_INET, &unix.SockaddrInet4{Addr: seg.Src.Addr().As4()}, &unix.SockaddrInet4{Addr: seg.Dst.Addr().As4()}
		}
		fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, src); err != nil {
			return os.NewSyscallError("bind", err)
		}
		return os.NewSyscallError("sendto", unix.Sendto(fd, b, 0, dst))
	})
	if err != nil {
		return fmt.Errorf("netlab: %s: send TCP segment %s -> %s: %w", h.Name, seg.Src, seg.Dst, err)
	}
	return nil
}

// tcpSegment encodes seg with its checksum, which raw sockets leave to the
// sender for TCP.
func tcpSegment(seg Segment) []byte {
	b := make([]byte, 20+len(seg.Payload))
	binary.BigEndian.PutUint16(b[0:], seg.Src.Port())
	binary.BigEndian.PutUint16(b[2:], seg.Dst.Port())
	binary.BigEndian.PutUint32(b[4:], seg.Seq)
	binary.BigEndian.PutUint32(b[8:], seg.Ack)
	b[12] = 5 << 4
	b[13] = seg.Flags
	window := seg.Window
	if window == 0 {
		window = 65535
	}
	binary.BigEndian.PutUint16(b[14:], window)
	copy(b[20:], seg.Payload)

	var pseudo []byte
	src, dst := seg.Src.Addr().AsSlice(), seg.Dst.Addr().AsSlice()
	pseudo = append(pseudo, src...)
	pseudo = append(pseudo, dst...)
	if seg.Src.Addr().Is4() {
		pseudo = append(pseudo, 0, unix.IPPROTO_TCP)
		pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(b)))
	} else {
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(b)))
		pseudo = append(pseudo, 0, 0, 0, unix.IPPROTO_TCP)
	}
	binary.BigEndian.PutUint16(b[16:], checksum(append(pseudo, b...)))
	return b
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
