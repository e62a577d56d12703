package netlab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// dialTimeout bounds every connection attempt the lab makes itself.
const dialTimeout = 5 * time.Second

// Seed is the lab that shows why the package exists: the local host has
// interfaces A and B, with peer hosts PeerA and PeerB behind them, and both
// peers own the destination addresses Dest4 and Dest6. The routing table of
// the local host prefers B for the destination (metric 10 against 20 for A),
// so a plain dial, and a dial that only binds A's address, reach PeerB; only
// a socket bound to A reaches PeerA.
//
// Each peer runs a TCP and a UDP "who am I" server on port [WhoAmIPort] of
// every address it has, answering with its name and the source address it
// saw (see [ParseWhoAmI]).
type Seed struct {
	*Lab
	A, B         string // interface names in Local, unique per lab
	PeerA, PeerB *Host
	// Addresses of the local host on A and B, and of the peers.
	LocalA4, LocalB4, PeerA4, PeerB4 netip.Addr
	LocalA6, LocalB6, PeerA6, PeerB6 netip.Addr
	// Link-local addresses of the peers' ends of A and B.
	PeerALinkLocal, PeerBLinkLocal netip.Addr
	// Dest4 and Dest6 are owned by both peers.
	Dest4, Dest6 netip.Addr
}

// WhoAmIPort is the port of the peers' "who am I" servers.
const WhoAmIPort = 7

// Peer-side interface names: each peer namespace has its own.
const peerIf = "eth0"

// NewSeed builds the seed lab: see [Seed].
func NewSeed() (*Seed, error) {
	l, err := New()
	if err != nil {
		return nil, err
	}
	s, err := buildSeed(l)
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return s, nil
}

// NewSeedT is NewSeed for tests, with the skipping rules of [NewT].
func NewSeedT(t testing.TB) *Seed {
	t.Helper()
	l := NewT(t)
	s, err := buildSeed(l)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func buildSeed(l *Lab) (*Seed, error) {
	n := l.N
	s := &Seed{
		Lab: l,
		A:   fmt.Sprintf("a%d", n),
		B:   fmt.Sprintf("b%d", n),
		// 198.18.0.0/15 is reserved for benchmarking networks (RFC 2544)
		// and 2001:db8::/32 for documentation (RFC 3849): neither can be
		// anyone's real address.
		LocalA4: netip.AddrFrom4([4]byte{198, 18, byte(n), 1}),
		PeerA4:  netip.AddrFrom4([4]byte{198, 18, byte(n), 2}),
		LocalB4: netip.AddrFrom4([4]byte{198, 18, byte(n), 129}),
		PeerB4:  netip.AddrFrom4([4]byte{198, 18, byte(n), 130}),
		Dest4:   netip.AddrFrom4([4]byte{198, 19, byte(n), 1}),
		LocalA6: v6(n, 0xa, 1),
		PeerA6:  v6(n, 0xa, 2),
		LocalB6: v6(n, 0xb, 1),
		PeerB6:  v6(n, 0xb, 2),
		Dest6:   v6(n, 0xd, 1),
	}
	var err error
	if s.PeerA, err = l.NewHost("A"); err != nil {
		return nil, err
	}
	if s.PeerB, err = l.NewHost("B"); err != nil {
		return nil, err
	}
	type side struct {
		local         string
		peer          *Host
		local4, peer4 netip.Addr
		local6, peer6 netip.Addr
		metric        int
	}
	for _, sd := range []side{
		{s.A, s.PeerA, s.LocalA4, s.PeerA4, s.LocalA6, s.PeerA6, 20},
		{s.B, s.PeerB, s.LocalB4, s.PeerB4, s.LocalB6, s.PeerB6, 10},
	} {
		steps := []func() error{
			func() error { return l.Veth(sd.local, sd.peer, peerIf) },
			func() error { return l.Local.AddAddr(sd.local, netip.PrefixFrom(sd.local4, 25)) },
			func() error { return l.Local.AddAddr(sd.local, netip.PrefixFrom(sd.local6, 64)) },
			func() error { return sd.peer.AddAddr(peerIf, netip.PrefixFrom(sd.peer4, 25)) },
			func() error { return sd.peer.AddAddr(peerIf, netip.PrefixFrom(sd.peer6, 64)) },
			func() error { return sd.peer.AddAddr("lo", netip.PrefixFrom(s.Dest4, 32)) },
			func() error { return sd.peer.AddAddr("lo", netip.PrefixFrom(s.Dest6, 128)) },
			// Peers answer every source through the local host.
			func() error {
				return sd.peer.AddRoute(Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: sd.local4, Dev: peerIf})
			},
			func() error {
				return sd.peer.AddRoute(Route{Dst: netip.MustParsePrefix("::/0"), Gateway: sd.local6, Dev: peerIf})
			},
			func() error {
				return l.Local.AddRoute(Route{Dst: netip.PrefixFrom(s.Dest4, 32), Gateway: sd.peer4, Dev: sd.local, Metric: sd.metric})
			},
			func() error {
				return l.Local.AddRoute(Route{Dst: netip.PrefixFrom(s.Dest6, 128), Gateway: sd.peer6, Dev: sd.local, Metric: sd.metric})
			},
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return nil, err
			}
		}
	}
	if s.PeerALinkLocal, err = s.PeerA.LinkLocal(peerIf); err != nil {
		return nil, err
	}
	if s.PeerBLinkLocal, err = s.PeerB.LinkLocal(peerIf); err != nil {
		return nil, err
	}
	if err := ServeWhoAmI(s.PeerA, s.PeerA4, s.PeerA6, s.PeerALinkLocal.WithZone(peerIf), s.Dest4, s.Dest6); err != nil {
		return nil, err
	}
	if err := ServeWhoAmI(s.PeerB, s.PeerB4, s.PeerB6, s.PeerBLinkLocal.WithZone(peerIf), s.Dest4, s.Dest6); err != nil {
		return nil, err
	}
	return s, nil
}

func v6(n int, link byte, host byte) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(n), 0, link, 15: host})
}

// PeerLinkLocal returns the link-local address of the peer behind the local
// interface name, with the zone that reaches it.
func (s *Seed) PeerLinkLocal(name string) netip.Addr {
	if name == s.A {
		return s.PeerALinkLocal.WithZone(name)
	}
	return s.PeerBLinkLocal.WithZone(name)
}

// ServeWhoAmI starts "who am I" servers in h on port WhoAmIPort: one for
// TCP on every address, and one for UDP on each of udpAddrs, since a UDP
// socket on the wildcard address would answer from whichever address the
// kernel picks rather than the one the client asked. They stop when the lab
// closes h.
func ServeWhoAmI(h *Host, udpAddrs ...netip.Addr) error {
	ln, err := h.Listen("tcp", fmt.Sprintf(":%d", WhoAmIPort))
	if err != nil {
		return err
	}
	h.onClose(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(dialTimeout))
				fmt.Fprintf(c, "%s %s\n", h.Name, c.RemoteAddr())
				// Wait for the client to close first, so that the
				// server side holds no TIME_WAIT.
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	for _, a := range udpAddrs {
		pc, err := h.ListenPacket("udp", netip.AddrPortFrom(a, WhoAmIPort).String())
		if err != nil {
			return err
		}
		h.onClose(func() { pc.Close() })
		go func() {
			buf := make([]byte, 64<<10)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s\n", h.Name, from)), from)
			}
		}()
	}
	return nil
}

// WhoAmI is a "who am I" server's answer.
type WhoAmI struct {
	Peer   string         // name of the host that answered
	Source netip.AddrPort // the source address the peer saw
}

// ParseWhoAmI parses a "who am I" answer.
func ParseWhoAmI(line string) (WhoAmI, error) {
	name, addr, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok {
		return WhoAmI{}, fmt.Errorf("netlab: malformed who-am-I answer %q", line)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return WhoAmI{}, fmt.Errorf("netlab: malformed who-am-I answer %q: %w", line, err)
	}
	return WhoAmI{Peer: name, Source: ap}, nil
}

// AskTCP reads the who-am-I answer from a connection to a peer's server.
func AskTCP(c net.Conn) (WhoAmI, error) {
	_ = c.SetReadDeadline(time.Now().Add(dialTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return WhoAmI{}, fmt.Errorf("netlab: read who-am-I answer: %w", err)
	}
	return ParseWhoAmI(line)
}

// AskUDP sends a datagram on a connected UDP socket and parses the answer.
func AskUDP(c net.Conn) (WhoAmI, error) {
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := c.Write([]byte("?")); err != nil {
		return WhoAmI{}, fmt.Errorf("netlab: ask: %w", err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return WhoAmI{}, fmt.Errorf("netlab: read who-am-I answer: %w", err)
	}
	return ParseWhoAmI(string(buf[:n]))
}
