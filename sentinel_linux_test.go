//go:build !bindtodev_stub

package bindtodev_test

import (
	"errors"
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

// Sync returns once the capture recorded its sentinel, so a frame sent just
// before is in the record without any waiting; sentinels are recorded by no
// capture, including a second capture of the same interface; and an
// interface that cannot pass frames, or a capture that no longer sees its
// interface, is reported rather than taken for an empty record.
func TestCaptureSync(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	capB, other := captureOn(t, s.Local, s.B), captureOn(t, s.Local, s.B)

	dest := netip.AddrPortFrom(s.Dest4, netlab.WhoAmIPort)
	for i := range 20 {
		c, err := net.Dial("udp", dest.String()) // unbound: through B
		require.NoError(t, err)
		msg := fmt.Sprintf("%s sync %d", leakMarker, i)
		_, err = c.Write([]byte(msg))
		require.NoError(t, err)
		c.Close()
		require.NoError(t, capB.Sync())
		assert.True(t, hasPayload(capB.Packets(), msg), "round %d: the datagram sent before Sync is recorded", i)
	}
	require.NoError(t, other.Sync())
	for _, c := range []*netlab.Capture{capB, other} {
		for _, p := range c.Packets() {
			assert.NotEqual(t, uint16(netlab.SentinelEtherType), p.EtherType, "a sentinel was recorded as traffic on %s: %s", c.Ifname, p)
		}
	}

	// Interfaces that pass no frames, on a pair of the test's own.
	peer, err := s.NewHost("S")
	require.NoError(t, err)
	name := fmt.Sprintf("sy%d", s.N)
	require.NoError(t, s.Veth(name, peer, "eth0"))
	capS := captureOn(t, s.Local, name)
	require.NoError(t, capS.Sync(), "up, with carrier")

	require.NoError(t, s.Local.SetDown(name))
	assert.ErrorIs(t, capS.Sync(), netlab.ErrNotRunning, "down")
	require.NoError(t, s.Local.SetUp(name))
	require.NoError(t, peer.SetDown("eth0"))
	// The kernel swaps the queue for one that drops everything shortly
	// after the carrier goes (linkwatch); from then on nothing passes.
	assert.Eventually(t, func() bool { return errors.Is(capS.Sync(), netlab.ErrNotRunning) }, 5*time.Second, 10*time.Millisecond,
		"no carrier: the kernel drops the sentinel before the capture")
	require.NoError(t, peer.SetUp("eth0"))
	var lastErr error
	require.Eventually(t, func() bool { lastErr = capS.Sync(); return lastErr == nil }, 5*time.Second, 10*time.Millisecond, "carrier back: %v", lastErr)

	require.NoError(t, s.Local.Delete(name))
	assert.ErrorIs(t, capS.Sync(), netlab.ErrNotRunning, "deleted")

	// The same name again, on a new interface the old capture cannot see.
	peer2, err := s.NewHost("S2")
	require.NoError(t, err)
	require.NoError(t, s.Veth(name, peer2, "eth0"))
	err = capS.Sync()
	require.Error(t, err, "a capture of a replaced interface is not a record of the new one")
	assert.NotErrorIs(t, err, netlab.ErrNotRunning)
	assert.ErrorContains(t, err, "replaced")

	_, _, err = other.Stop()
	require.NoError(t, err)
	assert.Error(t, other.Sync(), "a stopped capture")
}

func hasPayload(ps []netlab.Packet, msg string) bool {
	for _, p := range ps {
		if string(p.Payload) == msg {
			return true
		}
	}
	return false
}

// The absence check waits for evidence, not for a while: here the peer
// closes its side a second after the bound IPv6 connection was closed, and
// only then does the kernel send the connection's last ACK, out of B (see
// TestIPv6FinalAckAfterCloseLeaks). A check that slept 100 ms and read the
// captures found nothing and passed; checkNoLeak waits until the socket
// has left FIN_WAIT2, syncs the captures and reports the ACK.
func TestNoLeakCheckWaitsForTheKernel(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	ln, err := s.PeerA.Listen("tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	remote := netip.AddrPortFrom(s.Dest6, uint16(ln.Addr().(*net.TCPAddr).Port))
	w := watchOthers(t, s)

	c, err := bindtodev.Dial(s.A, "tcp", remote.String())
	require.NoError(t, err)
	server, err := ln.Accept()
	require.NoError(t, err)
	defer server.Close()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	closed := make(chan error, 1)
	go func() {
		_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := server.Read(make([]byte, 1))
		if !errors.Is(err, io.EOF) {
			closed <- err
			return
		}
		// A peer slow to close (test traffic, not a wait for the
		// check).
		time.Sleep(time.Second)
		closed <- server.Close()
	}()
	require.NoError(t, c.Close())

	leaked := w.checkNoLeak(nil)
	require.NoError(t, <-closed)
	lastAck := replyTo(local, remote)
	var found bool
	for _, p := range leaked[s.B] {
		found = found || lastAck(p)
	}
	assert.True(t, found, "the last ACK out of B is reported; leaked: %s", describe(leaked))
}
