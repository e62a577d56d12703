package netlab

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// InjectTCP puts seg on the wire of h's interface ifname as one IP packet
// in an Ethernet frame addressed to dst, through an AF_PACKET socket
// (packet(7)): no routing table is consulted, so a test can deliver to the
// other end a packet that no IP stack would send, such as one addressed to
// 127.0.0.1.
func (h *Host) InjectTCP(ifname string, dst net.HardwareAddr, seg Segment) error {
	link, err := h.Link(ifname)
	if err != nil {
		return err
	}
	etherType, packet := uint16(unix.ETH_P_IPV6), ipPacket(seg)
	if seg.Src.Addr().Is4() {
		etherType = unix.ETH_P_IP
	}
	err = h.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: link.Index, Halen: uint8(len(dst))}
		copy(sa.Addr[:], dst)
		return os.NewSyscallError("sendto", unix.Sendto(fd, packet, 0, sa))
	})
	if err != nil {
		return fmt.Errorf("netlab: %s: inject TCP segment %s -> %s on %s: %w", h.Name, seg.Src, seg.Dst, ifname, err)
	}
	return nil
}

// ipPacket wraps seg in an IPv4 or IPv6 header.
func ipPacket(seg Segment) []byte {
	tcp := tcpSegment(seg)
	src, dst := seg.Src.Addr().AsSlice(), seg.Dst.Addr().AsSlice()
	if seg.Src.Addr().Is4() {
		h := make([]byte, 20)
		h[0] = 4<<4 | 5
		binary.BigEndian.PutUint16(h[2:], uint16(len(h)+len(tcp)))
		h[8] = 64 // TTL
		h[9] = unix.IPPROTO_TCP
		copy(h[12:], src)
		copy(h[16:], dst)
		binary.BigEndian.PutUint16(h[10:], checksum(h))
		return append(h, tcp...)
	}
	h := make([]byte, 40)
	h[0] = 6 << 4
	binary.BigEndian.PutUint16(h[4:], uint16(len(tcp)))
	h[6] = unix.IPPROTO_TCP
	h[7] = 64 // hop limit
	copy(h[8:], src)
	copy(h[24:], dst)
	return append(h, tcp...)
}
