//go:build !bindtodev_stub

package bindtodev_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
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
	caps []*netlab.Capture
	ours map[netip.Addr]bool
}

// watchOthers starts captures on every interface of s.Local but s.A.
// extra names further addresses (groups, for instance) that only the bound
// sockets use.
func watchOthers(t *testing.T, s *netlab.Seed, extra ...netip.Addr) *watch {
	t.Helper()
	localLL, err := s.Local.LinkLocal(s.A)
	require.NoError(t, err)
	w := &watch{t: t, ours: map[netip.Addr]bool{}}
	for _, a := range append([]netip.Addr{
		s.LocalA4, s.LocalA6, localLL, s.PeerA4, s.PeerA6, s.PeerALinkLocal, s.Dest4, s.Dest6,
	}, extra...) {
		w.ours[a.WithZone("")] = true
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

// timeWaitReply reports whether p is what the kernel itself sends for an
// IPv6 TCP socket in TIME_WAIT: a bare ACK or RST, without payload, from
// the bound side's global address. See TestIPv6TimeWaitReplyLeaks.
func timeWaitReply(s *netlab.Seed, p netlab.Packet) bool {
	return p.Outgoing && p.Proto == unix.IPPROTO_TCP && p.Src == s.LocalA6 && p.PayloadLen == 0 &&
		p.TCPFlags&^(netlab.TCPAck|netlab.TCPRst) == 0
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
// sockets' traffic, listing what it saw.
func (w *watch) requireNoLeak(excuse func(netlab.Packet) bool) {
	w.t.Helper()
	// The kernel may still be sending for the last exchanges; then every
	// frame queued in a capture socket is read, however busy the machine.
	time.Sleep(100 * time.Millisecond)
	for _, c := range w.caps {
		c.Flush()
	}
	leaked, _ := w.leaks(excuse)
	if len(leaked) > 0 {
		w.t.Fatalf("bound traffic left through other interfaces:\n%s", describe(leaked))
	}
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
