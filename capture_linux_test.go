//go:build !bindtodev_stub

package bindtodev_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/internal/netlab"
)

// leakMarker starts the payload of every datagram the leak tests send, so
// that a capture recognises it whatever its addresses.
const leakMarker = "bindtodev-leak"

// watch captures every interface of the lab's local namespace except the
// bound one, and says which captured packets belong to the bound sockets:
// those with an address of the bound side, or the marker in their payload.
type watch struct {
	t    *testing.T
	host *netlab.Host
	caps []*netlab.Capture
	ours map[netip.Addr]bool
	// local holds the bound side's own addresses, whose TCP sockets
	// settle waits for.
	local map[netip.Addr]bool
}

// watchOthers starts captures on every interface of s.Local but s.A.
// extra names further addresses (groups, for instance) that only the bound
// sockets use.
func watchOthers(t *testing.T, s *netlab.Seed, extra ...netip.Addr) *watch {
	t.Helper()
	localLL, err := s.Local.LinkLocal(s.A)
	require.NoError(t, err)
	w := &watch{t: t, host: s.Local, ours: map[netip.Addr]bool{}, local: map[netip.Addr]bool{}}
	for _, a := range append([]netip.Addr{
		s.LocalA4, s.LocalA6, localLL, s.PeerA4, s.PeerA6, s.PeerALinkLocal, s.Dest4, s.Dest6,
	}, extra...) {
		w.ours[a.WithZone("")] = true
	}
	for _, a := range []netip.Addr{s.LocalA4, s.LocalA6, localLL} {
		w.local[a.WithZone("")] = true
	}
	w.caps, err = s.Local.CaptureAll(s.A)
	require.NoError(t, err)
	require.NotEmpty(t, w.caps)
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *watch) carries(p netlab.Packet) bool {
	return w.ours[p.Src] || w.ours[p.Dst] || bytes.HasPrefix(p.Payload, []byte(leakMarker))
}

// closedConns records the 4-tuples of the TCP connections a test has
// closed, without zones, as a capture shows them.
type closedConns struct {
	mu sync.Mutex
	m  map[[2]netip.AddrPort]bool
}

// add records c's 4-tuple; call it before closing c.
func (cc *closedConns) add(c net.Conn) {
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	key := [2]netip.AddrPort{unzoned(local), unzoned(remote)}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.m == nil {
		cc.m = map[[2]netip.AddrPort]bool{}
	}
	cc.m[key] = true
}

func (cc *closedConns) has(local, remote netip.AddrPort) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.m[[2]netip.AddrPort{local, remote}]
}

func unzoned(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// kernelReply reports whether p is what the kernel itself sends, for
// either family, for a connection of the bound side that the test has
// already closed, and which can follow the routing table: a bare ACK or
// RST, without payload, from one of the bound side's global addresses. The
// ACK comes from the TIME_WAIT machinery (TestIPv6TimeWaitReplyLeaks,
// TestIPv6FinalAckAfterCloseLeaks), the RST from a socket that no longer
// exists (TestTLSCloseResetLeaks). Nothing else is excused: not a SYN or a
// FIN, not a byte of data, not a connection still open.
func kernelReply(s *netlab.Seed, closed *closedConns, p netlab.Packet) bool {
	return p.Outgoing && p.Proto == unix.IPPROTO_TCP && (p.Src == s.LocalA6 || p.Src == s.LocalA4) &&
		p.PayloadLen == 0 && p.TCPFlags != 0 && p.TCPFlags&^(netlab.TCPAck|netlab.TCPRst) == 0 &&
		closed.has(netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort))
}

// answerToKernelReply reports whether p is the RST with which the peer
// behind another interface answers a kernelReply that reached it: it knows
// no such connection.
func answerToKernelReply(s *netlab.Seed, closed *closedConns, p netlab.Packet) bool {
	return !p.Outgoing && p.Proto == unix.IPPROTO_TCP && (p.Src == s.Dest6 || p.Src == s.Dest4) &&
		p.TCPFlags&netlab.TCPRst != 0 && p.PayloadLen == 0 &&
		closed.has(netip.AddrPortFrom(p.Dst, p.DstPort), netip.AddrPortFrom(p.Src, p.SrcPort))
}

// leaks returns, per interface, the captured packets that carry the bound
// sockets' traffic, apart from those for which excuse holds.
func (w *watch) leaks(excuse func(netlab.Packet) bool) (leaked, excused map[string][]netlab.Packet) {
	leaked, excused = map[string][]netlab.Packet{}, map[string][]netlab.Packet{}
	for _, c := range w.caps {
		for _, p := range c.Packets() {
			switch {
			case !w.carries(p):
			case excuse != nil && excuse(p):
				excused[c.Ifname] = append(excused[c.Ifname], p)
			default:
				leaked[c.Ifname] = append(leaked[c.Ifname], p)
			}
		}
	}
	return leaked, excused
}

// requireNoLeak fails the test when a watched interface carried the bound
// sockets' traffic, listing what it saw. It looks only once the evidence
// says the record is complete: see checkNoLeak.
func (w *watch) requireNoLeak(excuse func(netlab.Packet) bool) {
	w.t.Helper()
	leaked := w.checkNoLeak(excuse)
	if len(leaked) > 0 {
		w.t.Fatalf("bound traffic left through other interfaces:\n%s", describe(leaked))
	}
}

// checkNoLeak returns what requireNoLeak would report. It first waits until
// no TCP socket of the bound side is still opening or closing, since the
// kernel sends the last segments of a teardown on its own, after the
// program has closed; then it syncs every capture, so that everything sent
// until then is recorded.
func (w *watch) checkNoLeak(excuse func(netlab.Packet) bool) map[string][]netlab.Packet {
	w.t.Helper()
	w.settle()
	w.syncAll()
	leaked, _ := w.leaks(excuse)
	return leaked
}

// settleTimeout bounds how long settle waits for the bound side's TCP
// sockets; a teardown with a responsive peer takes milliseconds.
const settleTimeout = 30 * time.Second

// settle waits until no TCP socket with an address of the bound side is in
// a state in which the kernel will still send for it.
func (w *watch) settle() {
	w.t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		socks, err := w.host.TCPSockets()
		require.NoError(w.t, err)
		var busy []netlab.TCPSocket
		for _, sk := range socks {
			if w.local[sk.Local.Addr().WithZone("")] && sk.State.Transient() {
				busy = append(busy, sk)
			}
		}
		if len(busy) == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("after %v, %d TCP sockets of the bound side are still opening or closing, e.g. %s", settleTimeout, len(busy), busy[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncAll syncs every capture (see netlab.Capture.Sync). An interface that
// went down or away, which other labs' tests do to their own, passes no
// frame, so its record is complete as it is.
func (w *watch) syncAll() {
	w.t.Helper()
	for _, c := range w.caps {
		w.sync(c)
	}
}

func (w *watch) sync(c *netlab.Capture) {
	w.t.Helper()
	err := c.Sync()
	if errors.Is(err, netlab.ErrNotRunning) {
		w.t.Logf("capture on %s: %v", c.Ifname, err)
		return
	}
	require.NoError(w.t, err)
}

// captureOn starts a capture on h's interface name, stopped when the test
// ends.
func captureOn(t *testing.T, h *netlab.Host, name string) *netlab.Capture {
	t.Helper()
	c, err := h.Capture(name)
	require.NoError(t, err)
	t.Cleanup(func() { _, _, _ = c.Stop() })
	return c
}

// marks syncs every capture and returns how many frames each holds, so
// that what a test does next is told apart from what came before.
func (w *watch) marks() map[string]int {
	w.t.Helper()
	w.syncAll()
	marks := map[string]int{}
	for _, c := range w.caps {
		marks[c.Ifname] = c.Len()
	}
	return marks
}

// capture returns the capture of interface name.
func (w *watch) capture(name string) *netlab.Capture {
	for _, c := range w.caps {
		if c.Ifname == name {
			return c
		}
	}
	w.t.Fatalf("interface %s is not watched", name)
	return nil
}

// stop ends the captures and fails the test if one of them lost frames,
// since a capture with gaps proves nothing.
func (w *watch) stop() {
	for _, c := range w.caps {
		_, stats, err := c.Stop()
		if err != nil {
			w.t.Errorf("capture on %s: %v", c.Ifname, err)
		}
		if stats.Drops > 0 {
			w.t.Errorf("capture on %s dropped %d of %d frames: the record is incomplete", c.Ifname, stats.Drops, stats.Packets)
		}
	}
}

func describe(byIf map[string][]netlab.Packet) string {
	var b strings.Builder
	for name, ps := range byIf {
		fmt.Fprintf(&b, "  %s: %d packets\n", name, len(ps))
		for i, p := range ps {
			if i == 10 {
				fmt.Fprintf(&b, "    ...\n")
				break
			}
			fmt.Fprintf(&b, "    %s\n", p)
		}
	}
	return b.String()
}
