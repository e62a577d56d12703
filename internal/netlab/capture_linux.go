package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Packet is what a [Capture] saw of one frame: the network-layer addresses
// and, for TCP and UDP, the ports, flags and the start of the payload.
type Packet struct {
	// Outgoing is true for a frame the capturing host sent.
	Outgoing bool
	// EtherType is the frame's protocol: unix.ETH_P_IP, ETH_P_IPV6,
	// ETH_P_ARP, or another.
	EtherType uint16
	// Src and Dst are the IP addresses, or for ARP the sender and target
	// protocol addresses.
	Src, Dst netip.Addr
	// Proto is the IP protocol of the first header after the fixed IP
	// header (unix.IPPROTO_TCP, IPPROTO_UDP, ...).
	Proto            uint8
	SrcPort, DstPort uint16
	// TCPFlags holds the flag bits of a TCP header (see TCPAck etc.),
	// Seq and Ack its sequence and acknowledgment numbers.
	TCPFlags uint8
	Seq, Ack uint32
	// Payload is the start of the TCP or UDP payload (at most 256 bytes),
	// and PayloadLen its full length.
	Payload    []byte
	PayloadLen int
}

// String describes p in one line for test logs.
func (p Packet) String() string {
	dir := "in"
	if p.Outgoing {
		dir = "out"
	}
	switch p.Proto {
	case unix.IPPROTO_TCP:
		return fmt.Sprintf("%s tcp %s -> %s flags %s len %d", dir,
			netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort), tcpFlagString(p.TCPFlags), p.PayloadLen)
	case unix.IPPROTO_UDP:
		return fmt.Sprintf("%s udp %s -> %s len %d", dir,
			netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort), p.PayloadLen)
	}
	return fmt.Sprintf("%s ethertype %#04x proto %d %s -> %s", dir, p.EtherType, p.Proto, p.Src, p.Dst)
}

func tcpFlagString(f uint8) string {
	const names = "FSRPAU"
	out := []byte{}
	for i := range len(names) {
		if f&(1<<i) != 0 {
			out = append(out, names[i])
		}
	}
	return string(out)
}

// Capture records every frame one interface of a host sends or receives,
// through an AF_PACKET socket (packet(7)) bound to that interface. It keeps
// running until Stop.
type Capture struct {
	// Ifname is the captured interface.
	Ifname string

	host  *Host
	index int
	fd    int
	stop  chan struct{}
	done  chan struct{}
	flush chan chan struct{}

	mu      sync.Mutex
	packets []Packet
	err     error
	sync    syncState // see sentinel_linux.go
}

// CaptureStats is the kernel's count of what a capture received and what
// it lost because its buffer was full.
type CaptureStats struct {
	Packets, Drops uint32
}

// Capture starts capturing on h's interface ifname. A capture that lost
// frames says so in Stop's statistics, so that a test can refuse to draw a
// conclusion from an incomplete record.
func (h *Host) Capture(ifname string) (*Capture, error) {
	link, err := h.Link(ifname)
	if err != nil {
		return nil, err
	}
	c := &Capture{Ifname: ifname, host: h, index: link.Index, fd: -1, stop: make(chan struct{}), done: make(chan struct{}), flush: make(chan chan struct{})}
	err = h.Do(func() error {
		// SOCK_DGRAM strips the link-layer header, which differs
		// between veth and lo; the protocol comes with the address.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		// A large buffer keeps bursts; without the privilege to force it
		// the default is used and drops are reported instead.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<20)
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link.Index}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return os.NewSyscallError("bind", err)
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: capture on %s: %w", h.Name, ifname, err)
	}
	go c.run()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) run() {
	defer close(c.done)
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-c.stop:
			// Whatever was queued before Stop is read before the end.
			c.drain(buf)
			return
		case ack := <-c.flush:
			ok := c.drain(buf)
			close(ack)
			if !ok {
				return
			}
		default:
		}
		fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 20); err != nil && !errors.Is(err, unix.EINTR) {
			c.fail(os.NewSyscallError("poll", err))
			return
		}
		if fds[0].Revents != 0 && !c.drain(buf) {
			return
		}
	}
}

// drain reads every queued frame; it reports false when the socket failed.
func (c *Capture) drain(buf []byte) bool {
	for {
		n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			return true
		case errors.Is(err, unix.ENETDOWN):
			// The interface went down or away: the kernel reports it
			// once, and the capture goes on if it comes back.
			continue
		case err != nil:
			c.fail(os.NewSyscallError("recvfrom", err))
			return false
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || c.sentinel(htons(ll.Protocol), buf[:n]) {
			continue
		}
		p := parsePacket(htons(ll.Protocol), buf[:n])
		p.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		c.mu.Lock()
		c.packets = append(c.packets, p)
		c.mu.Unlock()
	}
}

func (c *Capture) fail(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// Flush returns once every frame the kernel had queued for c when Flush
// was called is recorded, so that a test that checks Packets does not
// depend on how soon the capture's goroutine gets to run.
func (c *Capture) Flush() {
	ack := make(chan struct{})
	select {
	case c.flush <- ack:
		<-ack
	case <-c.done:
	}
}

// Packets returns the frames captured so far.
func (c *Capture) Packets() []Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Packet(nil), c.packets...)
}

// Stop ends the capture after reading what the kernel had queued, and
// returns every frame captured with the kernel's statistics. It returns an
// error when the capture socket failed.
func (c *Capture) Stop() ([]Packet, CaptureStats, error) {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	var stats CaptureStats
	if c.fd >= 0 {
		if st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			stats = CaptureStats{Packets: st.Packets, Drops: st.Drops}
		} else {
			c.fail(os.NewSyscallError("getsockopt", err))
		}
		unix.Close(c.fd)
		c.fd = -1
	}
	c.closeSender()
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Packet(nil), c.packets...), stats, c.err
}

// CaptureAll starts a capture on every interface of h except those named in
// except, so that a test can watch every path but one.
func (h *Host) CaptureAll(except ...string) ([]*Capture, error) {
	links, err := h.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: list interfaces: %w", h.Name, err)
	}
	skip := map[string]bool{}
	for _, name := range except {
		skip[name] = true
	}
	var caps []*Capture
	for _, link := range links {
		name := link.Attrs().Name
		if skip[name] {
			continue
		}
		c, err := h.Capture(name)
		if err != nil {
			if _, lerr := h.nl.LinkByName(name); lerr != nil {
				// Deleted since the listing (another lab closing):
				// nothing can leave through it any more.
				continue
			}
			for _, c := range caps {
				_, _, _ = c.Stop()
			}
			return nil, err
		}
		caps = append(caps, c)
	}
	return caps, nil
}

// Len returns the number of frames captured so far, to be passed to
// WaitFor as the point from which to look.
func (c *Capture) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.packets)
}

// WaitFor polls c until it has captured, from the from-th frame on, a
// frame for which match holds, or until timeout; it reports whether one was
// seen.
func (c *Capture) WaitFor(from int, timeout time.Duration, match func(Packet) bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		seen := c.packets[min(from, len(c.packets)):]
		found := false
		for _, p := range seen {
			if match(p) {
				found = true
				break
			}
		}
		c.mu.Unlock()
		if found {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// parsePacket decodes what the tests look at; anything it does not know is
// kept with its EtherType alone.
func parsePacket(etherType uint16, b []byte) Packet {
	p := Packet{EtherType: etherType}
	var l4 []byte
	switch etherType {
	case unix.ETH_P_IP:
		if len(b) < 20 || b[0]>>4 != 4 {
			return p
		}
		ihl := int(b[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl || len(b) < total {
			return p
		}
		p.Proto = b[9]
		p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		l4 = b[ihl:total]
	case unix.ETH_P_IPV6:
		if len(b) < 40 || b[0]>>4 != 6 {
			return p
		}
		plen := int(binary.BigEndian.Uint16(b[4:6]))
		if len(b) < 40+plen {
			return p
		}
		p.Proto = b[6]
		p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40 : 40+plen]
	case unix.ETH_P_ARP:
		// Ethernet/IPv4 ARP: sender protocol address at 14, target at 24.
		if len(b) >= 28 && b[4] == 6 && b[5] == 4 {
			p.Src = netip.AddrFrom4([4]byte(b[14:18]))
			p.Dst = netip.AddrFrom4([4]byte(b[24:28]))
		}
		return p
	default:
		return p
	}
	var payload []byte
	switch p.Proto {
	case unix.IPPROTO_TCP:
		if len(l4) < 20 {
			return p
		}
		off := int(l4[12]>>4) * 4
		if off < 20 || off > len(l4) {
			return p
		}
		p.TCPFlags = l4[13] & 0x3f
		p.Seq = binary.BigEndian.Uint32(l4[4:8])
		p.Ack = binary.BigEndian.Uint32(l4[8:12])
		payload = l4[off:]
	case unix.IPPROTO_UDP:
		if len(l4) < 8 {
			return p
		}
		payload = l4[8:]
	default:
		return p
	}
	p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
	p.DstPort = binary.BigEndian.Uint16(l4[2:4])
	p.PayloadLen = len(payload)
	p.Payload = append([]byte(nil), payload[:min(len(payload), 256)]...)
	return p
}
