package integration_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/integration"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

const (
	quicPort  = 4433
	quicProto = "bindtodev-lab"
)

// serveQUIC answers every stream of every connection on ln with name.
func serveQUIC(ln *quic.Listener, name string) {
	for {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		go func() {
			for {
				s, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, s)
				_, _ = s.Write([]byte(name))
				_ = s.Close()
			}
		}()
	}
}

// askQUIC opens a stream on conn and returns the server's answer.
func askQUIC(t *testing.T, conn *quic.Conn) string {
	t.Helper()
	s, err := conn.OpenStreamSync(testContext(t))
	require.NoError(t, err)
	_, err = s.Write([]byte("?"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_ = s.SetReadDeadline(time.Now().Add(testTimeout))
	got, err := io.ReadAll(s)
	require.NoError(t, err)
	return string(got)
}

// listenPeerUDP opens a UDP socket in h's namespace.
func listenPeerUDP(t *testing.T, h *netlab.Host, address string) net.PacketConn {
	t.Helper()
	pc, err := h.ListenPacket("udp", address)
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	return pc
}

// A quic-go client on the recipe's Transport reaches the QUIC server behind
// A, with the name looked up through A; quic.DialAddr reaches B.
func TestQUICClient(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	cert := newCertificate(t, l)
	for _, h := range l.peers() {
		tr := &quic.Transport{Conn: listenPeerUDP(t, h, ":"+strconv.Itoa(quicPort))}
		ln, err := tr.Listen(cert.serverConfig(quicProto), nil)
		require.NoError(t, err)
		t.Cleanup(func() { tr.Close() })
		go serveQUIC(ln, h.Name)
	}
	for _, f := range l.families() {
		t.Run(f.name, func(t *testing.T) {
			w := l.watch(t)
			d, _ := l.dialer(t, f)
			ctx := testContext(t)
			tr, err := integration.QUICTransport(ctx, l.A, ":0")
			require.NoError(t, err)
			defer tr.Conn.Close()
			defer tr.Close()
			assert.Equal(t, l.A, deviceOf(t, tr.Conn), "the Transport's socket")
			addr, err := integration.ResolveUDP(ctx, d, f.hostPort(quicPort))
			require.NoError(t, err)
			conn, err := tr.Dial(ctx, addr, cert.clientConfig(quicProto), nil)
			require.NoError(t, err)
			assert.Equal(t, "A", askQUIC(t, conn))
			require.NoError(t, conn.CloseWithError(0, ""))
			require.NoError(t, tr.Close())
			w.requireNone(t)
			l.requireLookupsFromA(t, f)

			conn, err = quic.DialAddr(ctx, f.destPort(quicPort), cert.clientConfig(quicProto), nil)
			require.NoError(t, err)
			assert.Equal(t, "B", askQUIC(t, conn), "quic.DialAddr follows the routing table")
			require.NoError(t, conn.CloseWithError(0, ""))
			w.requireSeen(t, f.dest)
		})
	}
}

// A QUIC server on the recipe's Transport serves the client behind A, and a
// client behind B cannot reach it at all, while an unbound server serves
// both. (Replies staying on A would prove nothing: quic-go answers through
// the interface a packet arrived on even when unbound.)
func TestQUICServer(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	cert := newCertificate(t, l)
	ctx := testContext(t)
	const boundPort, unboundPort = 4434, 4435
	tr, err := integration.QUICTransport(ctx, l.A, ":"+strconv.Itoa(boundPort))
	require.NoError(t, err)
	t.Cleanup(func() { tr.Conn.Close() })
	t.Cleanup(func() { tr.Close() })
	assert.Equal(t, l.A, deviceOf(t, tr.Conn), "the server's socket")
	ln, err := tr.Listen(cert.serverConfig(quicProto), nil)
	require.NoError(t, err)
	go serveQUIC(ln, "bound")
	unbound, err := quic.ListenAddr(":"+strconv.Itoa(unboundPort), cert.serverConfig(quicProto), nil)
	require.NoError(t, err)
	t.Cleanup(func() { unbound.Close() })
	go serveQUIC(unbound, "unbound")

	// dial connects from h to the server on port, at the local host's
	// address on A.
	dial := func(t *testing.T, h *netlab.Host, server netip.Addr, port int, timeout time.Duration) (*quic.Conn, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ctr := &quic.Transport{Conn: listenPeerUDP(t, h, ":0")}
		t.Cleanup(func() { ctr.Close() })
		return ctr.Dial(ctx, net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, uint16(port))), cert.clientConfig(quicProto), nil)
	}
	for _, fam := range []struct {
		name   string
		server netip.Addr
	}{{"IPv4", l.LocalA4}, {"IPv6", l.LocalA6}} {
		t.Run(fam.name, func(t *testing.T) {
			w := l.watch(t)
			conn, err := dial(t, l.PeerA, fam.server, boundPort, testTimeout)
			require.NoError(t, err)
			assert.Equal(t, "bound", askQUIC(t, conn))
			require.NoError(t, conn.CloseWithError(0, ""))
			w.requireNone(t)

			from := w.capture(l.B).Len()
			_, err = dial(t, l.PeerB, fam.server, boundPort, time.Second)
			require.Error(t, err, "a client behind B reached the bound server")
			w.settle(t)
			for _, p := range w.capture(l.B).Packets()[from:] {
				if p.Outgoing && p.Proto == unix.IPPROTO_UDP && p.SrcPort == boundPort {
					t.Errorf("the bound server answered through %s: %s", l.B, p)
				}
			}

			conn, err = dial(t, l.PeerB, fam.server, unboundPort, testTimeout)
			require.NoError(t, err, "the unbound server is reachable from B")
			assert.Equal(t, "unbound", askQUIC(t, conn))
			require.NoError(t, conn.CloseWithError(0, ""))
			// The control: the capture sees a server's answers on B.
			w.settle(t)
			answered := false
			for _, p := range w.capture(l.B).Packets()[from:] {
				answered = answered || (p.Outgoing && p.Proto == unix.IPPROTO_UDP && p.SrcPort == unboundPort)
			}
			assert.True(t, answered, "the capture on %s missed the unbound server's answers", l.B)
		})
	}
}
