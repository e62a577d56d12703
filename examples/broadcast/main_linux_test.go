//go:build !bindtodev_stub

package main

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
	"github.com/bindtodev/bindtodev/internal/progtest"
)

// The program runs as a child of the test and so inside the test's lab
// namespace, on the lab's interfaces.
func TestMain(m *testing.M) {
	netlab.Main(m)
}

const port = 6767

var broadcastAddr = &net.UDPAddr{IP: net.IPv4bcast, Port: port}

// heard records what a peer's broadcast listener received.
type heard struct {
	mu      sync.Mutex
	sources []netip.Addr
}

func (h *heard) list() []netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]netip.Addr(nil), h.sources...)
}

// answerBroadcasts runs a listener on the port in peer that answers
// "peer NAME got MESSAGE".
func answerBroadcasts(t *testing.T, peer *netlab.Host) *heard {
	t.Helper()
	pc, err := peer.ListenPacket("udp4", fmt.Sprintf(":%d", port))
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	h := &heard{}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ap := from.(*net.UDPAddr).AddrPort()
			h.mu.Lock()
			h.sources = append(h.sources, ap.Addr().Unmap())
			h.mu.Unlock()
			_, _ = pc.WriteTo(fmt.Appendf(nil, "peer %s got %s", peer.Name, buf[:n]), from)
		}
	}()
	return h
}

// A broadcast sent with -i X reaches only the peer on X's link, and only
// that peer's reply is printed; each interface in turn.
func TestSend(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	bin := progtest.Build(t)
	a, b := answerBroadcasts(t, s.PeerA), answerBroadcasts(t, s.PeerB)

	r := progtest.Run(t, bin, 10*time.Second, "-i", s.A, "-port", fmt.Sprint(port), "-wait", "500ms", "send", "hello")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, fmt.Sprintf("reply from %s:%d: peer A got hello\n", s.PeerA4, port))
	assert.NotContains(t, r.Stdout, "peer B")
	assert.Equal(t, []netip.Addr{s.LocalA4}, a.list())
	assert.Empty(t, b.list(), "the broadcast left through B")

	r = progtest.Run(t, bin, 10*time.Second, "-i", s.B, "-port", fmt.Sprint(port), "-wait", "500ms", "send", "again")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, fmt.Sprintf("reply from %s:%d: peer B got again\n", s.PeerB4, port))
	assert.NotContains(t, r.Stdout, "peer A")
	assert.Equal(t, []netip.Addr{s.LocalB4}, b.list())
	assert.Len(t, a.list(), 1, "the second broadcast left through A")
}

// No reply within -wait is a runtime failure.
func TestSendNoReply(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	bin := progtest.Build(t)
	r := progtest.Run(t, bin, 10*time.Second, "-i", s.A, "-port", fmt.Sprint(port), "-wait", "200ms", "send", "anyone?")
	assert.Equal(t, 1, r.Code)
	assert.Contains(t, r.Stderr, fmt.Sprintf("no reply through %q within 200ms", s.A))
}

// broadcastFrom sends message to 255.255.255.255 from peer and returns
// the socket, for the answer.
func broadcastFrom(t *testing.T, peer *netlab.Host, message string) net.PacketConn {
	t.Helper()
	pc, err := peer.ListenPacket("udp4", ":0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	_, err = pc.WriteTo([]byte(message), broadcastAddr)
	require.NoError(t, err)
	return pc
}

// A listener bound to A hears and answers peer A's broadcast, never peer
// B's, although B's reaches the host: a socket bound to B on the same port
// receives it.
func TestListen(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	bin := progtest.Build(t)
	p := progtest.Start(t, bin, "-i", s.A, "-port", fmt.Sprint(port), "-n", "1", "listen")
	p.WaitFor(t, "listening on 0.0.0.0:6767 through "+s.A, 10*time.Second)
	witness, err := bindtodev.ListenPacket(s.B, "udp4", fmt.Sprintf(":%d", port))
	require.NoError(t, err, "a socket bound to B shares the port")
	defer witness.Close()

	broadcastFrom(t, s.PeerB, "from B")
	require.NoError(t, witness.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 1500)
	n, _, err := witness.ReadFrom(buf)
	require.NoError(t, err, "B's broadcast did not reach the host")
	assert.Equal(t, "from B", string(buf[:n]))

	pc := broadcastFrom(t, s.PeerA, "from A")
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, from, err := pc.ReadFrom(buf)
	require.NoError(t, err, "no answer to A's broadcast")
	assert.Equal(t, "heard from A on "+s.A, string(buf[:n]))
	assert.Equal(t, s.LocalA4, from.(*net.UDPAddr).AddrPort().Addr().Unmap())

	r := p.Wait(t, 10*time.Second)
	assert.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, fmt.Sprintf("from %s:", s.PeerA4))
	assert.Contains(t, r.Stdout, " on "+s.A+": from A\n")
	assert.NotContains(t, r.Stdout, "from B", "the listener heard B's broadcast")
}
