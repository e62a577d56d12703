//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// tlsClosePort is the port of the TLS server closeNotifyRace talks to.
const tlsClosePort = 8443

// serveTLSCloseNotify starts a TLS server on every address of peer that
// reads until the client's close_notify and FIN, and then closes too,
// sending its own close_notify and then its FIN.
//
// Over a real network the server's FIN leaves before the client's RST for
// that close_notify comes back, a round trip later. In the lab the round
// trip is shorter than the server's two system calls: the RST would reset
// the server's socket before close(2) and no FIN would leave. A socket
// filter on the server (inherited by accepted sockets) stands in for the
// round trip: it drops RSTs before TCP sees them, so the server sends its
// FIN as it would have.
func serveTLSCloseNotify(t *testing.T, peer *netlab.Host) {
	t.Helper()
	var ln net.Listener
	require.NoError(t, peer.Do(func() (err error) {
		// Plain TCP: an MPTCP socket takes no socket filter.
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		ln, err = lc.Listen(context.Background(), "tcp", fmt.Sprintf(":%d", tlsClosePort))
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	require.NoError(t, dropRSTs(ln.(*net.TCPListener)))
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte("hello"))
				// Up to the client's close_notify, then up to its
				// FIN: the server's close_notify leaves after the
				// client closed, as it would a round trip away.
				_, _ = io.Copy(io.Discard, c)
				_, _ = io.Copy(io.Discard, c.(*tls.Conn).NetConn())
			}()
		}
	}()
}

// dropRSTs attaches a classic BPF socket filter to c that drops every TCP
// segment with the RST flag. TCP runs a socket's filter on the segment
// with the data starting at the TCP header, whose byte 13 holds the flags.
func dropRSTs(c syscall.Conn) error {
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 13},
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: uint32(netlab.TCPRst), Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt", serr)
}

// closeNotifyRace makes one TLS connection bound to A to dest and closes
// it as Go's TLS client does: close_notify, then close(2) at once. The
// server's close_notify arrives at a socket already closed, so the kernel
// aborts it with a RST through A and destroys it; the server's FIN then
// finds no socket at all. It returns the connection's 4-tuple, once the
// local side holds no socket for it, and the capture marks taken before
// the close.
func closeNotifyRace(t *testing.T, s *netlab.Seed, w *watch, dest netip.Addr) (local, remote netip.AddrPort, marks map[string]int) {
	t.Helper()
	remote = netip.AddrPortFrom(dest, tlsClosePort)
	d := &bindtodev.Dialer{Interface: s.A}
	c, err := tls.DialWithDialer(d.NetDialer(), "tcp", remote.String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed lab server
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf))
	local = c.LocalAddr().(*net.TCPAddr).AddrPort()
	marks = w.marks()
	require.NoError(t, c.Close())
	// The server's FIN, after its close_notify, arrived on A: by then the
	// kernel has answered both.
	require.True(t, w.capture(s.A).WaitFor(marks[s.A], 5*time.Second, func(p netlab.Packet) bool {
		return !p.Outgoing && p.Src == dest && p.SrcPort == tlsClosePort && p.DstPort == local.Port() && p.TCPFlags&netlab.TCPFin != 0
	}), "the server's FIN arrived on A")
	waitNoTCPSocket(t, s.Local, local, remote)
	return local, remote, marks
}

// bareRST matches a RST without payload, and without ACK, that the local
// host sent for the 4-tuple: both the abort of the closed socket and the
// answer to a segment for which no socket is left look like that.
func bareRST(local, remote netip.AddrPort) func(netlab.Packet) bool {
	return func(p netlab.Packet) bool {
		return replyTo(local, remote)(p) && p.TCPFlags == netlab.TCPRst && p.PayloadLen == 0
	}
}

// The kernel's own limit, shown for both families: the RST that answers a
// segment for a connection whose socket no longer exists is routed by the
// table alone, since no socket, and so no bound device, is left. Go's TLS
// client makes that case every time it closes first: the server's
// close_notify aborts the closed socket (a RST through A), and the server's
// FIN is answered by a bare RST from A's address out of B.
func TestTLSCloseResetLeaks(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	serveTLSCloseNotify(t, s.PeerA)
	w := watchAll(t, s)
	for _, dest := range []netip.Addr{s.Dest4, s.Dest6} {
		local, remote, marks := closeNotifyRace(t, s, w, dest)
		assert.NotEmpty(t, w.since(s.A, marks, bareRST(local, remote)), "%s: the abort of the closed socket leaves through A", dest)
		assert.NotEmpty(t, w.since(s.B, marks, bareRST(local, remote)), "%s: the RST for the FIN leaves through B", dest)
	}
}

// routeViaA adds the source-address rule SECURITY.md recommends for the
// family of addr: lookups for packets from addr use a table whose default
// route goes through A.
func routeViaA(t *testing.T, s *netlab.Seed, addr netip.Addr) {
	t.Helper()
	table, gw, dst := 2000+s.N, s.PeerA4, netip.MustParsePrefix("0.0.0.0/0")
	if addr.Is6() {
		table, gw, dst = 3000+s.N, s.PeerA6, netip.MustParsePrefix("::/0")
	}
	require.NoError(t, s.Local.AddTableRoute(table, netlab.Route{Dst: dst, Gateway: gw, Dev: s.A}))
	require.NoError(t, s.Local.AddRule(netlab.Rule{IPv6: addr.Is6(), Src: netip.PrefixFrom(addr, addr.BitLen()), Table: table, Priority: 100}))
}

// The mitigation, for both families: with `ip rule add from <A's address>
// table N` and a default route via A in table N, the kernel's RSTs for
// connections that no longer exist leave through A, and not one packet of
// the bound side reaches B.
func TestSourceRuleKeepsResetsOnA(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	serveTLSCloseNotify(t, s.PeerA)
	routeViaA(t, s, s.LocalA4)
	routeViaA(t, s, s.LocalA6)
	w := watchAll(t, s)
	fromA := func(p netlab.Packet) bool { return p.Src == s.LocalA4 || p.Src == s.LocalA6 }
	for _, dest := range []netip.Addr{s.Dest4, s.Dest6} {
		local, remote, marks := closeNotifyRace(t, s, w, dest)
		assert.NotEmpty(t, w.since(s.A, marks, bareRST(local, remote)), "%s: the bare RST for the FIN leaves through A", dest)
		assert.Empty(t, w.since(s.B, marks, fromA), "%s: nothing from A's addresses on B", dest)
	}
}

// The leak tests excuse only kernel replies for connections the test has
// closed: the same bare ACK or RST for a connection still open, from
// another address, with data, or with other flags is a leak.
func TestKernelReplyClassIsNarrow(t *testing.T) {
	t.Parallel()
	s := &netlab.Seed{
		LocalA4: netip.MustParseAddr("198.18.9.1"), LocalA6: netip.MustParseAddr("2001:db8:9:a::1"),
		LocalB4: netip.MustParseAddr("198.18.9.129"), LocalB6: netip.MustParseAddr("2001:db8:9:b::1"),
		Dest4: netip.MustParseAddr("198.19.9.1"), Dest6: netip.MustParseAddr("2001:db8:9:d::1"),
	}
	var closed closedConns
	for _, fam := range []struct{ local, other, dest netip.Addr }{
		{s.LocalA4, s.LocalB4, s.Dest4}, {s.LocalA6, s.LocalB6, s.Dest6},
	} {
		done := netip.AddrPortFrom(fam.local, 40000)
		open := netip.AddrPortFrom(fam.local, 40001)
		remote := netip.AddrPortFrom(fam.dest, 7)
		closed.add(fakeConn{done, remote})
		pkt := func(from, to netip.AddrPort, flags uint8, n int) netlab.Packet {
			return netlab.Packet{Outgoing: true, Proto: unix.IPPROTO_TCP, Src: from.Addr(), SrcPort: from.Port(),
				Dst: to.Addr(), DstPort: to.Port(), TCPFlags: flags, PayloadLen: n}
		}
		for _, tc := range []struct {
			what string
			p    netlab.Packet
			want bool
		}{
			{"bare ACK of a closed connection", pkt(done, remote, netlab.TCPAck, 0), true},
			{"bare RST of a closed connection", pkt(done, remote, netlab.TCPRst, 0), true},
			{"RST+ACK of a closed connection", pkt(done, remote, netlab.TCPRst|netlab.TCPAck, 0), true},
			{"bare ACK of an open connection", pkt(open, remote, netlab.TCPAck, 0), false},
			{"data of a closed connection", pkt(done, remote, netlab.TCPAck|netlab.TCPPsh, 1), false},
			{"FIN of a closed connection", pkt(done, remote, netlab.TCPFin|netlab.TCPAck, 0), false},
			{"SYN", pkt(done, remote, netlab.TCPSyn, 0), false},
			{"from another address", pkt(netip.AddrPortFrom(fam.other, 40000), remote, netlab.TCPAck, 0), false},
		} {
			assert.Equal(t, tc.want, kernelReply(s, &closed, tc.p), "%s, %s", tc.what, fam.local)
		}
		in := netlab.Packet{Proto: unix.IPPROTO_TCP, Src: remote.Addr(), SrcPort: remote.Port(), Dst: done.Addr(), DstPort: done.Port(), TCPFlags: netlab.TCPRst}
		assert.True(t, answerToKernelReply(s, &closed, in), "the peer's RST for a closed connection")
		in.DstPort = open.Port()
		assert.False(t, answerToKernelReply(s, &closed, in), "the peer's RST for an open connection")
	}
}

// fakeConn is a net.Conn with only addresses, for closedConns.
type fakeConn struct{ local, remote netip.AddrPort }

func (c fakeConn) LocalAddr() net.Addr            { return net.TCPAddrFromAddrPort(c.local) }
func (c fakeConn) RemoteAddr() net.Addr           { return net.TCPAddrFromAddrPort(c.remote) }
func (fakeConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (fakeConn) Write(b []byte) (int, error)      { return len(b), nil }
func (fakeConn) Close() error                     { return nil }
func (fakeConn) SetDeadline(time.Time) error      { return nil }
func (fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (fakeConn) SetWriteDeadline(time.Time) error { return nil }
