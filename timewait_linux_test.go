//go:build !bindtodev_stub

package bindtodev_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// timeWaitProbe opens a bound TCP connection from A to dest's who-am-I
// server, closes it first so that the local socket sits in TIME_WAIT, then
// has peer A send a stray ACK to that 4-tuple, as a late duplicate would.
// It returns the 4-tuple, seen from the local side, and the number of
// frames each capture held before the stray segment was sent.
func timeWaitProbe(t *testing.T, s *netlab.Seed, w *watch, dest netip.Addr, linger0 bool) (local, remote netip.AddrPort, marks map[string]int) {
	t.Helper()
	c, err := bindtodev.Dial(s.A, "tcp", whoAmIAddr(dest))
	require.NoError(t, err)
	who, err := netlab.AskTCP(c)
	require.NoError(t, err)
	require.Equal(t, "A", who.Peer)
	local, remote = who.Source, netip.AddrPortFrom(dest, netlab.WhoAmIPort)
	if linger0 {
		require.NoError(t, c.(*net.TCPConn).SetLinger(0))
	}
	capA := w.capture(s.A)
	start := capA.Len()
	require.NoError(t, c.Close())
	if !linger0 {
		// The server closes once it sees our FIN; its FIN puts our
		// socket in TIME_WAIT. (Our ACK of it may itself leave through
		// B: see TestIPv6FinalAckAfterCloseLeaks.)
		require.True(t, capA.WaitFor(start, 5*time.Second, func(p netlab.Packet) bool {
			return !p.Outgoing && p.Dst == local.Addr() && p.DstPort == local.Port() && p.TCPFlags&netlab.TCPFin != 0
		}), "the server's FIN arrived on A")
		// TIME_WAIT is entered after the ACK of that FIN was sent.
		waitTCPState(t, s.Local, local, remote, netlab.TCPTimeWait)
	} else {
		require.True(t, capA.WaitFor(start, 5*time.Second, func(p netlab.Packet) bool {
			return p.Outgoing && p.SrcPort == local.Port() && p.TCPFlags&netlab.TCPRst != 0
		}), "linger 0 closes with a RST on A")
	}
	marks = w.marks()
	require.NoError(t, s.PeerA.SendTCP(netlab.Segment{
		Src: remote, Dst: local, Seq: 0x10000000, Ack: 0x20000000, Flags: netlab.TCPAck,
	}))
	require.True(t, capA.WaitFor(marks[s.A], 5*time.Second, func(p netlab.Packet) bool {
		return !p.Outgoing && p.DstPort == local.Port() && p.Seq == 0x10000000
	}), "the stray segment arrived on A")
	return local, remote, marks
}

// waitTCPState waits until h lists the TCP socket local -> remote in state.
func waitTCPState(t *testing.T, h *netlab.Host, local, remote netip.AddrPort, state netlab.TCPState) {
	t.Helper()
	waitTCP(t, h, local, remote, "reach "+state.String(), func(socks []netlab.TCPSocket) bool {
		for _, sk := range socks {
			if sk.State == state {
				return true
			}
		}
		return false
	})
}

// waitNoTCPSocket waits until h lists no TCP socket local -> remote, not
// even in TIME_WAIT.
func waitNoTCPSocket(t *testing.T, h *netlab.Host, local, remote netip.AddrPort) {
	t.Helper()
	waitTCP(t, h, local, remote, "go away", func(socks []netlab.TCPSocket) bool { return len(socks) == 0 })
}

// waitTCP polls h's TCP sockets local -> remote until done holds for them.
func waitTCP(t *testing.T, h *netlab.Host, local, remote netip.AddrPort, what string, done func([]netlab.TCPSocket) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, err := h.TCPSockets()
		require.NoError(t, err)
		var socks []netlab.TCPSocket
		for _, sk := range all {
			if sk.Local == local && sk.Remote == remote {
				socks = append(socks, sk)
			}
		}
		if done(socks) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s -> %s did not %s: %v", local, remote, what, socks)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// replyTo matches what the local host sends back for the stray segment.
func replyTo(local, remote netip.AddrPort) func(netlab.Packet) bool {
	return func(p netlab.Packet) bool {
		return p.Outgoing && p.Src == local.Addr() && p.SrcPort == local.Port() &&
			p.Dst == remote.Addr() && p.DstPort == remote.Port()
	}
}

// watchAll captures every interface of s's local namespace until the test
// ends.
func watchAll(t *testing.T, s *netlab.Seed) *watch {
	t.Helper()
	caps, err := s.Local.CaptureAll()
	require.NoError(t, err)
	w := &watch{t: t, host: s.Local, caps: caps}
	t.Cleanup(w.stop)
	return w
}

// routeIPv6ViaA adds the mitigation SECURITY.md documents: a routing table
// whose default route goes through A, and rule, which chooses the lookups
// that use that table.
func routeIPv6ViaA(t *testing.T, s *netlab.Seed, rule netlab.Rule) {
	t.Helper()
	table := 1000 + s.N
	require.NoError(t, s.Local.AddTableRoute(table, netlab.Route{
		Dst: netip.MustParsePrefix("::/0"), Gateway: s.PeerA6, Dev: s.A,
	}))
	rule.IPv6, rule.Table, rule.Priority = true, table, 100
	require.NoError(t, s.Local.AddRule(rule))
}

// expectEgress asserts that a packet matching reply, sent after the capture
// marks, leaves through via and not through other.
func expectEgress(t *testing.T, w *watch, marks map[string]int, reply func(netlab.Packet) bool, via, other, what string) {
	t.Helper()
	assert.True(t, w.capture(via).WaitFor(marks[via], 3*time.Second, reply), "%s leaves through %s", what, via)
	// The kernel made its one reply, seen on via; once other's capture
	// is synced, a copy through other would be recorded.
	assert.Empty(t, w.since(other, marks, reply), "%s does not leave through %s", what, other)
}

// since syncs the capture of name and returns the packets matching match
// that it recorded after marks[name].
func (w *watch) since(name string, marks map[string]int, match func(netlab.Packet) bool) []netlab.Packet {
	w.t.Helper()
	c := w.capture(name)
	require.NoError(w.t, c.Sync())
	var got []netlab.Packet
	for _, p := range c.Packets()[marks[name]:] {
		if match(p) {
			got = append(got, p)
		}
	}
	return got
}

// The kernel's own limit, shown: an IPv6 TCP socket bound to A that sits in
// TIME_WAIT answers a stray segment with a bare ACK that follows the routing
// table out of B. IPv4 answers through A.
func TestIPv6TimeWaitReplyLeaks(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	w := watchAll(t, s)

	local, remote, mark := timeWaitProbe(t, s, w, s.Dest6, false)
	reply := replyTo(local, remote)
	expectEgress(t, w, mark, reply, s.B, s.A, "the TIME_WAIT ACK")
	for _, p := range w.capture(s.B).Packets()[mark[s.B]:] {
		if reply(p) {
			assert.Equal(t, netlab.TCPAck, p.TCPFlags, "a bare ACK")
			assert.Zero(t, p.PayloadLen)
		}
	}

	local, remote, mark = timeWaitProbe(t, s, w, s.Dest4, false)
	reply = replyTo(local, remote)
	expectEgress(t, w, mark, reply, s.A, s.B, "IPv4: the TIME_WAIT ACK")
}

// The mitigation documented in SECURITY.md: a rule that sends lookups for
// output interface A to a table whose routes use A keeps the kernel's
// TIME_WAIT reply on A.
func TestIPv6TimeWaitRuleMitigation(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	routeIPv6ViaA(t, s, netlab.Rule{Oif: s.A})
	w := watchAll(t, s)

	local, remote, mark := timeWaitProbe(t, s, w, s.Dest6, false)
	reply := replyTo(local, remote)
	expectEgress(t, w, mark, reply, s.A, s.B, "with the rule the TIME_WAIT ACK")

	local, remote, mark = finWait2Close(t, s, w, s.Dest6)
	reply = replyTo(local, remote)
	expectEgress(t, w, mark, reply, s.A, s.B, "with the rule the last ACK")

	// The rule changes nothing for unbound sockets: they still follow
	// the main table.
	c, err := net.Dial("tcp", whoAmIAddr(s.Dest6))
	require.NoError(t, err)
	assert.Equal(t, "B", ask(t, "tcp", c).Peer)
}

// Closing with linger 0 leaves no TIME_WAIT socket: the close itself is a
// RST through A. A segment arriving later finds no socket at all and is
// answered like any unknown connection, by a RST that follows the routing
// table; the oif rule does not cover that case, a source rule would.
func TestIPv6LingerZeroLeavesNoTimeWait(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	w := watchAll(t, s)

	local, remote, mark := timeWaitProbe(t, s, w, s.Dest6, true)
	reply := replyTo(local, remote)
	require.True(t, w.capture(s.B).WaitFor(mark[s.B], 3*time.Second, reply), "the stray segment is answered")
	for _, p := range w.capture(s.B).Packets()[mark[s.B]:] {
		if reply(p) {
			assert.NotZero(t, p.TCPFlags&netlab.TCPRst, "with a RST, since no socket exists: %s", p)
		}
	}
	assert.Empty(t, w.since(s.A, mark, func(p netlab.Packet) bool {
		return reply(p) && p.TCPFlags&netlab.TCPRst == 0
	}), "no TIME_WAIT ACK on A either")
}

// finWait2Close closes a bound connection to a server of peer A before the
// server closes its side, so that the local socket, closed and orphaned in
// FIN_WAIT2, is handed to the kernel's TIME_WAIT machinery; then it lets the
// server close. It returns the 4-tuple and the capture marks taken just
// before the server's FIN.
func finWait2Close(t *testing.T, s *netlab.Seed, w *watch, dest netip.Addr) (local, remote netip.AddrPort, marks map[string]int) {
	t.Helper()
	ln, err := s.PeerA.Listen("tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	remote = netip.AddrPortFrom(dest, uint16(ln.Addr().(*net.TCPAddr).Port))
	c, err := bindtodev.Dial(s.A, "tcp", remote.String())
	require.NoError(t, err)
	server, err := ln.Accept()
	require.NoError(t, err)
	defer server.Close()
	local = c.LocalAddr().(*net.TCPAddr).AddrPort()
	require.NoError(t, c.Close())
	// The server reads our FIN but keeps its side open until later.
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = server.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
	// The server's ACK of our FIN moves the orphaned socket to FIN_WAIT2.
	waitTCPState(t, s.Local, local, remote, netlab.TCPFinWait2)
	marks = w.marks()
	require.NoError(t, server.Close())
	require.True(t, w.capture(s.A).WaitFor(marks[s.A], 5*time.Second, func(p netlab.Packet) bool {
		return !p.Outgoing && p.DstPort == local.Port() && p.TCPFlags&netlab.TCPFin != 0
	}), "the server's FIN arrived on A")
	return local, remote, marks
}

// The same kernel path serves an ordinary close: when the local side closes
// first and the peer's FIN arrives after the socket was closed, the last ACK
// of the connection is sent by the TIME_WAIT machinery and, for IPv6, leaves
// through B; the peer behind A never gets it and retransmits its FIN. IPv4
// stays on A.
func TestIPv6FinalAckAfterCloseLeaks(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	w := watchAll(t, s)

	local, remote, mark := finWait2Close(t, s, w, s.Dest6)
	reply := replyTo(local, remote)
	expectEgress(t, w, mark, reply, s.B, s.A, "IPv6: the last ACK")

	local, remote, mark = finWait2Close(t, s, w, s.Dest4)
	reply = replyTo(local, remote)
	expectEgress(t, w, mark, reply, s.A, s.B, "IPv4: the last ACK")
}

// A rule on the source address covers what the oif rule cannot: the RST
// the kernel sends for a segment of a connection that no longer exists,
// which carries A's address but belongs to no socket.
func TestIPv6SourceRuleCoversKernelResets(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	routeIPv6ViaA(t, s, netlab.Rule{Src: netip.PrefixFrom(s.LocalA6, 128)})
	w := watchAll(t, s)

	for _, linger0 := range []bool{false, true} {
		local, remote, mark := timeWaitProbe(t, s, w, s.Dest6, linger0)
		reply := replyTo(local, remote)
		expectEgress(t, w, mark, reply, s.A, s.B, fmt.Sprintf("with linger 0 %v, the reply", linger0))
	}
	local, remote, mark := finWait2Close(t, s, w, s.Dest6)
	reply := replyTo(local, remote)
	expectEgress(t, w, mark, reply, s.A, s.B, "the last ACK")
}
