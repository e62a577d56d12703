//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// Ways to move a bound socket to another interface after the hook has run,
// found by an adversarial review, and what the package does about each.

// localAddrs returns B's link-local address as a TCP and a UDP LocalAddr
// with B's zone: bind(2) with that scope ID moves a socket to B, without
// any privilege.
func zonedLocalAddrs(t *testing.T, s *netlab.Seed) map[string]net.Addr {
	t.Helper()
	llB, err := s.Local.LinkLocal(s.B)
	require.NoError(t, err)
	return map[string]net.Addr{
		"udp": &net.UDPAddr{IP: llB.AsSlice(), Zone: s.B},
		"tcp": &net.TCPAddr{IP: llB.AsSlice(), Zone: s.B},
	}
}

// A LocalAddr set on what NetDialer handed out, whose zone names another
// interface, is refused: net would bind it after the hook and so move the
// socket.
func TestHandedOutLocalAddrZoneRefused(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	w := watchOthers(t, s)
	for network, local := range zonedLocalAddrs(t, s) {
		for _, dest := range []string{whoAmIAddr(s.Dest6), whoAmIAddr(s.PeerBLinkLocal.WithZone(""))} {
			nd := (&bindtodev.Dialer{Interface: s.A}).NetDialer()
			nd.LocalAddr = local
			c, err := nd.DialContext(context.Background(), network, dest)
			if !assert.ErrorIs(t, err, syscall.EINVAL, "%s %s", network, dest) {
				t.Logf("device %q", deviceOf(t, c))
				c.Close()
				continue
			}
			var e *bindtodev.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, s.A, e.Interface)
			assert.ErrorContains(t, err, "names interface "+strconv.Quote(s.B))
		}
	}
	w.requireNoLeak(nil)
}

// With Control in the caller's own net.Dialer the hook cannot see
// LocalAddr, and the kernel lets its zone move the socket: a limit of the
// kernel, documented beside IP_PKTINFO as the caller's own override. This
// test shows it, so that the documentation stays true.
func TestControlLocalAddrZoneMovesSocket(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	local := zonedLocalAddrs(t, s)["udp"]
	d := &net.Dialer{Control: bindtodev.Control(s.A), LocalAddr: local}
	c, err := d.Dial("udp", whoAmIAddr(s.Dest6))
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, s.B, deviceOf(t, c), "bind(2) with B's scope ID moved the socket")
	assert.Equal(t, "B", ask(t, "udp", c).Peer)
}

// net reads a numeric zone as the name of an interface first; so does the
// zone check, which therefore refuses a zone that names an all-digit
// interface other than the bound one, even when the digits equal the bound
// interface's index. (net would bind the listener to the interface of that
// name, and move it there.)
func TestNumericZoneReadAsName(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	linkA, err := s.Local.Link(s.A)
	require.NoError(t, err)
	digits := strconv.Itoa(linkA.Index)
	peer, err := s.NewHost("N")
	require.NoError(t, err)
	require.NoError(t, s.Veth(digits, peer, "eth0"))
	llN, err := s.Local.LinkLocal(digits)
	require.NoError(t, err)
	address := net.JoinHostPort(llN.String()+"%"+digits, "0")
	lc := &bindtodev.ListenConfig{Interface: s.A}
	_, err = lc.ListenPacket(context.Background(), "udp6", address)
	assert.ErrorIs(t, err, syscall.EINVAL, "udp6 %s", address)
	_, err = lc.Listen(context.Background(), "tcp6", address)
	assert.ErrorIs(t, err, syscall.EINVAL, "tcp6 %s", address)

	// A numeric zone that names no interface is still an index:
	// TestLinkLocalZones.
}

// An IPv4-mapped loopback address with a zone reaches the hook as IPv4
// with a zone ("127.0.0.1%lo:80"); it is loopback all the same.
func TestMappedZonedLoopbackBoundToLo(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	for name, listen := range map[string]func(string) (net.Listener, error){
		"ListenConfig": func(a string) (net.Listener, error) {
			return (&bindtodev.ListenConfig{Interface: s.A}).Listen(context.Background(), "tcp", a)
		},
		"Control": func(a string) (net.Listener, error) {
			return (&net.ListenConfig{Control: bindtodev.Control(s.A)}).Listen(context.Background(), "tcp", a)
		},
	} {
		ln, err := listen("[::ffff:127.0.0.1%lo]:0")
		require.NoError(t, err, name)
		assert.Equal(t, "lo", deviceOf(t, ln), name)
		port := ln.Addr().(*net.TCPAddr).Port
		c, err := bindtodev.Dial(s.A, "tcp", net.JoinHostPort("::ffff:127.0.0.1%lo", strconv.Itoa(port)))
		require.NoError(t, err, name)
		assert.Equal(t, "lo", deviceOf(t, c), name)
		c.Close()
		ln.Close()
	}
	_, err := bindtodev.Dial(s.A, "udp", net.JoinHostPort("::ffff:"+s.PeerB4.String()+"%"+s.B, "7"))
	assert.ErrorIs(t, err, syscall.EINVAL, "a mapped address with another interface's zone")
}

// An IPv4 listener's half-open connection (a request socket, SYN_RECV)
// answers an out-of-window segment with an ACK that the kernel sends
// without the listener's device, so the routing table picks its interface:
// one more kernel reply that no socket option reaches (limit A in docs/guarantees.md).
// IPv6 keeps the device. The rule on the source address keeps it on A.
func TestRequestSocketAckFollowsRoutes(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	w := watchAll(t, s)
	link, err := s.Local.Link(s.A)
	require.NoError(t, err)
	// A client that the routing table reaches through B first.
	client4, client6 := netip.MustParseAddr("198.19.255.98"), netip.MustParseAddr("2001:db8:ff::98")
	for _, r := range []netlab.Route{
		{Dst: netip.PrefixFrom(client4, 32), Gateway: s.PeerA4, Dev: s.A, Metric: 20},
		{Dst: netip.PrefixFrom(client4, 32), Gateway: s.PeerB4, Dev: s.B, Metric: 10},
		{Dst: netip.PrefixFrom(client6, 128), Gateway: s.PeerA6, Dev: s.A, Metric: 20},
		{Dst: netip.PrefixFrom(client6, 128), Gateway: s.PeerB6, Dev: s.B, Metric: 10},
	} {
		require.NoError(t, s.Local.AddRoute(r))
	}
	seq := uint32(0x61000000)
	probe := func(t *testing.T, local, client netip.Addr) (onA, onB int) {
		t.Helper()
		ln, err := bindtodev.Listen(s.A, "tcp", netip.AddrPortFrom(local, 0).String())
		require.NoError(t, err)
		defer ln.Close()
		laddr := netip.AddrPortFrom(local, uint16(ln.Addr().(*net.TCPAddr).Port))
		seq += 0x100000
		raddr := netip.AddrPortFrom(client, uint16(40000+seq>>20))
		marks := w.marks()
		require.NoError(t, s.PeerA.InjectTCP("eth0", link.HardwareAddr, netlab.Segment{Src: raddr, Dst: laddr, Seq: seq, Flags: netlab.TCPSyn}))
		var synAck netlab.Packet
		require.True(t, w.capture(s.A).WaitFor(marks[s.A], 5e9, func(p netlab.Packet) bool {
			if p.Outgoing && p.SrcPort == laddr.Port() && p.DstPort == raddr.Port() && p.TCPFlags == netlab.TCPSyn|netlab.TCPAck {
				synAck = p
				return true
			}
			return false
		}), "the SYN-ACK leaves through A")
		marks = w.marks()
		require.NoError(t, s.PeerA.InjectTCP("eth0", link.HardwareAddr, netlab.Segment{
			Src: raddr, Dst: laddr, Seq: seq + 1 + 5_000_000, Ack: synAck.Seq + 1, Flags: netlab.TCPAck,
		}))
		require.True(t, w.capture(s.A).WaitFor(marks[s.A], 5e9, func(p netlab.Packet) bool {
			return !p.Outgoing && p.DstPort == laddr.Port() && p.Seq == seq+1+5_000_000
		}), "the out-of-window segment arrived on A")
		for _, c := range w.caps {
			require.NoError(t, c.Sync())
		}
		reply := replyTo(laddr, raddr)
		for _, p := range w.capture(s.A).Packets()[marks[s.A]:] {
			if reply(p) {
				onA++
			}
		}
		for _, p := range w.capture(s.B).Packets()[marks[s.B]:] {
			if reply(p) {
				onB++
			}
		}
		return onA, onB
	}
	t.Run("IPv4 leaks", func(t *testing.T) {
		onA, onB := probe(t, s.LocalA4, client4)
		assert.Equal(t, [2]int{0, 1}, [2]int{onA, onB}, "the request socket's ACK follows the routing table out of B")
	})
	t.Run("IPv6 stays", func(t *testing.T) {
		onA, onB := probe(t, s.LocalA6, client6)
		assert.Equal(t, [2]int{1, 0}, [2]int{onA, onB})
	})
	t.Run("IPv4 with the source rule", func(t *testing.T) {
		table := 2000 + s.N
		require.NoError(t, s.Local.AddTableRoute(table, netlab.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: s.PeerA4, Dev: s.A}))
		require.NoError(t, s.Local.AddRule(netlab.Rule{Src: netip.PrefixFrom(s.LocalA4, 32), Table: table, Priority: 100}))
		onA, onB := probe(t, s.LocalA4, client4)
		assert.Equal(t, [2]int{1, 0}, [2]int{onA, onB})
	})
}

// An IPv4 multicast join that names no interface (ifindex 0, as
// golang.org/x/net/ipv4's JoinGroup(nil, group) asks) joins on the
// interface the routing table picks for the group, and the kernel's IGMP
// reports leave through it, whatever the socket is bound to: the caller's
// own override, like IP_PKTINFO. Naming the bound interface keeps them on
// it.
func TestMulticastJoinNamesTheInterface(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	require.NoError(t, s.Local.AddRoute(netlab.Route{Dst: netip.MustParsePrefix("239.0.0.0/8"), Dev: s.B}))
	w := watchAll(t, s)
	linkA, err := s.Local.Link(s.A)
	require.NoError(t, err)
	// IGMPv3 reports go to 224.0.0.22, whatever the group.
	igmpFor := func(netip.Addr) func(netlab.Packet) bool {
		return func(p netlab.Packet) bool { return p.Outgoing && p.Proto == unix.IPPROTO_IGMP }
	}
	join := func(group netip.Addr, ifindex int) {
		pc, err := bindtodev.ListenPacket(s.A, "udp4", "0.0.0.0:0")
		require.NoError(t, err)
		t.Cleanup(func() { pc.Close() })
		rc, err := pc.(*net.UDPConn).SyscallConn()
		require.NoError(t, err)
		var jerr error
		require.NoError(t, rc.Control(func(fd uintptr) {
			jerr = unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP,
				&unix.IPMreqn{Multiaddr: group.As4(), Ifindex: int32(ifindex)})
		}))
		require.NoError(t, jerr)
	}

	unnamed := netip.MustParseAddr("239.1.2.3")
	marks := w.marks()
	join(unnamed, 0)
	assert.True(t, w.capture(s.B).WaitFor(marks[s.B], 5e9, igmpFor(unnamed)), "a join without an interface reports through B")

	named := netip.MustParseAddr("239.1.2.4")
	marks = w.marks()
	join(named, linkA.Index)
	require.True(t, w.capture(s.A).WaitFor(marks[s.A], 5e9, igmpFor(named)), "a join naming A reports through A")
	require.NoError(t, w.capture(s.B).Sync())
	for _, p := range w.capture(s.B).Packets()[marks[s.B]:] {
		assert.False(t, igmpFor(named)(p), "a join naming A reported through B: %s", p)
	}
}
