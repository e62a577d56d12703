//go:build !bindtodev_stub

package bindtodev_test

import (
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
		time.Sleep(50 * time.Millisecond)
	} else {
		require.True(t, capA.WaitFor(start, 5*time.Second, func(p netlab.Packet) bool {
			return p.Outgoing && p.SrcPort == local.Port() && p.TCPFlags&netlab.TCPRst != 0
		}), "linger 0 closes with a RST on A")
	}
	marks = map[string]int{}
	for _, c := range w.caps {
		marks[c.Ifname] = c.Len()
	}
	require.NoError(t, s.PeerA.SendTCP(netlab.Segment{
		Src: remote, Dst: local, Seq: 0x10000000, Ack: 0x20000000, Flags: netlab.TCPAck,
	}))
	require.True(t, capA.WaitFor(marks[s.A], 5*time.Second, func(p netlab.Packet) bool {
		return !p.Outgoing && p.DstPort == local.Port() && p.Seq == 0x10000000
	}), "the stray segment arrived on A")
	return local, remote, marks
}

// replyTo matches what the local host sends back for the stray segment.
func replyTo(local, remote netip.AddrPort) func(netlab.Packet) bool {
	return func(p netlab.Packet) bool {
		return p.Outgoing && p.Src == local.Addr() && p.SrcPort == local.Port() &&
			p.Dst == remote.Addr() && p.DstPort == remote.Port()
	}
}

// The kernel's own limit, shown: an IPv6 TCP socket bound to A that sits in
// TIME_WAIT answers a stray segment with a bare ACK that follows the routing
// table out of B. IPv4 answers through A.
func TestIPv6TimeWaitReplyLeaks(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	w := &watch{t: t}
	caps, err := s.Local.CaptureAll()
	require.NoError(t, err)
	w.caps = caps
	t.Cleanup(w.stop)

	local, remote, mark := timeWaitProbe(t, s, w, s.Dest6, false)
	reply := replyTo(local, remote)
	assert.True(t, w.capture(s.B).WaitFor(mark[s.B], 3*time.Second, reply), "the TIME_WAIT ACK leaves through B")
	assert.False(t, w.capture(s.A).WaitFor(mark[s.A], 100*time.Millisecond, reply), "and not through A")
	for _, p := range w.capture(s.B).Packets()[mark[s.B]:] {
		if reply(p) {
			assert.Equal(t, netlab.TCPAck, p.TCPFlags, "a bare ACK")
			assert.Zero(t, p.PayloadLen)
		}
	}

	local, remote, mark = timeWaitProbe(t, s, w, s.Dest4, false)
	reply = replyTo(local, remote)
	assert.True(t, w.capture(s.A).WaitFor(mark[s.A], 3*time.Second, reply), "IPv4: the TIME_WAIT ACK leaves through A")
	assert.False(t, w.capture(s.B).WaitFor(mark[s.B], 100*time.Millisecond, reply), "IPv4: not through B")
}

// The mitigation documented in SECURITY.md: a rule that sends lookups for
// output interface A to a table whose routes use A keeps the kernel's
// TIME_WAIT reply on A.
func TestIPv6TimeWaitRuleMitigation(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	table := 1000 + s.N
	require.NoError(t, s.Local.AddTableRoute(table, netlab.Route{
		Dst: netip.MustParsePrefix("::/0"), Gateway: s.PeerA6, Dev: s.A,
	}))
	require.NoError(t, s.Local.AddRule(netlab.Rule{IPv6: true, Oif: s.A, Table: table, Priority: 100}))
	w := &watch{t: t}
	caps, err := s.Local.CaptureAll()
	require.NoError(t, err)
	w.caps = caps
	t.Cleanup(w.stop)

	local, remote, mark := timeWaitProbe(t, s, w, s.Dest6, false)
	reply := replyTo(local, remote)
	assert.True(t, w.capture(s.A).WaitFor(mark[s.A], 3*time.Second, reply), "with the rule the TIME_WAIT ACK leaves through A")
	assert.False(t, w.capture(s.B).WaitFor(mark[s.B], 200*time.Millisecond, reply), "and not through B")

	local, remote, mark = finWait2Close(t, s, w, s.Dest6)
	reply = replyTo(local, remote)
	assert.True(t, w.capture(s.A).WaitFor(mark[s.A], 3*time.Second, reply), "with the rule the last ACK leaves through A")
	assert.False(t, w.capture(s.B).WaitFor(mark[s.B], 200*time.Millisecond, reply), "and not through B")

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
	w := &watch{t: t}
	caps, err := s.Local.CaptureAll()
	require.NoError(t, err)
	w.caps = caps
	t.Cleanup(w.stop)

	local, remote, mark := timeWaitProbe(t, s, w, s.Dest6, true)
	reply := replyTo(local, remote)
	require.True(t, w.capture(s.B).WaitFor(mark[s.B], 3*time.Second, reply), "the stray segment is answered")
	for _, p := range w.capture(s.B).Packets()[mark[s.B]:] {
		if reply(p) {
			assert.NotZero(t, p.TCPFlags&netlab.TCPRst, "with a RST, since no socket exists: %s", p)
		}
	}
	assert.False(t, w.capture(s.A).WaitFor(mark[s.A], 100*time.Millisecond, func(p netlab.Packet) bool {
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
	time.Sleep(50 * time.Millisecond)
	marks = map[string]int{}
	for _, c := range w.caps {
		marks[c.Ifname] = c.Len()
	}
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
	w := &watch{t: t}
	caps, err := s.Local.CaptureAll()
	require.NoError(t, err)
	w.caps = caps
	t.Cleanup(w.stop)

	local, remote, mark := finWait2Close(t, s, w, s.Dest6)
	reply := replyTo(local, remote)
	assert.True(t, w.capture(s.B).WaitFor(mark[s.B], 3*time.Second, reply), "IPv6: the last ACK leaves through B")
	assert.False(t, w.capture(s.A).WaitFor(mark[s.A], 100*time.Millisecond, reply), "IPv6: and not through A")

	local, remote, mark = finWait2Close(t, s, w, s.Dest4)
	reply = replyTo(local, remote)
	assert.True(t, w.capture(s.A).WaitFor(mark[s.A], 3*time.Second, reply), "IPv4: the last ACK leaves through A")
	assert.False(t, w.capture(s.B).WaitFor(mark[s.B], 100*time.Millisecond, reply), "IPv4: not through B")
}

// A rule on the source address covers what the oif rule cannot: the RST
// the kernel sends for a segment of a connection that no longer exists,
// which carries A's address but belongs to no socket.
func TestIPv6SourceRuleCoversKernelResets(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	table := 1000 + s.N
	require.NoError(t, s.Local.AddTableRoute(table, netlab.Route{
		Dst: netip.MustParsePrefix("::/0"), Gateway: s.PeerA6, Dev: s.A,
	}))
	require.NoError(t, s.Local.AddRule(netlab.Rule{IPv6: true, Src: netip.PrefixFrom(s.LocalA6, 128), Table: table, Priority: 100}))
	w := &watch{t: t}
	caps, err := s.Local.CaptureAll()
	require.NoError(t, err)
	w.caps = caps
	t.Cleanup(w.stop)

	for _, linger0 := range []bool{false, true} {
		local, remote, mark := timeWaitProbe(t, s, w, s.Dest6, linger0)
		reply := replyTo(local, remote)
		assert.True(t, w.capture(s.A).WaitFor(mark[s.A], 3*time.Second, reply), "linger 0 %v: the reply leaves through A", linger0)
		assert.False(t, w.capture(s.B).WaitFor(mark[s.B], 200*time.Millisecond, reply), "linger 0 %v: and not through B", linger0)
	}
	local, remote, mark := finWait2Close(t, s, w, s.Dest6)
	reply := replyTo(local, remote)
	assert.True(t, w.capture(s.A).WaitFor(mark[s.A], 3*time.Second, reply), "the last ACK leaves through A")
	assert.False(t, w.capture(s.B).WaitFor(mark[s.B], 200*time.Millisecond, reply), "and not through B")
}
