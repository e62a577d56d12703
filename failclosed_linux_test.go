//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// watchEverything captures every interface of s's local namespace, A and
// lo included, and counts as the bound side's traffic what watchOthers
// does.
func watchEverything(t *testing.T, s *netlab.Seed) *watch {
	t.Helper()
	w := watchOthers(t, s)
	capA, err := s.Local.Capture(s.A)
	require.NoError(t, err)
	w.caps = append(w.caps, capA)
	return w
}

// attempt is one call that must fail before its socket sends anything.
type attempt struct {
	name string
	call func() error
}

// failClosedAttempts lists every entry point with interface name ifname,
// dialing and listening with s's addresses, the source address of A
// included, so that a fallback to that address (the dial the routing table
// would send out of B) would show on a capture.
func failClosedAttempts(s *netlab.Seed, ifname string) []attempt {
	ctx := context.Background()
	var as []attempt
	for _, network := range []string{"tcp", "udp"} {
		for _, fam := range []struct {
			dest, source netip.Addr
		}{{s.Dest4, s.LocalA4}, {s.Dest6, s.LocalA6}} {
			dest := whoAmIAddr(fam.dest)
			add := func(what string, call func() error) {
				as = append(as, attempt{fmt.Sprintf("%s %s %s", what, network, dest), call})
			}
			dial := func(dial func(context.Context, string, string) (net.Conn, error)) func() error {
				return func() error {
					c, err := dial(ctx, network, dest)
					if err == nil {
						// A UDP connect sends nothing: a socket that
						// connected must also write to show where it
						// would have sent.
						_, _ = c.Write([]byte(leakMarker))
						c.Close()
					}
					return err
				}
			}
			add("Dial", dial(func(_ context.Context, network, address string) (net.Conn, error) {
				return bindtodev.Dial(ifname, network, address)
			}))
			d := &bindtodev.Dialer{Interface: ifname, Source: fam.source}
			add("Dialer with Source", dial(d.DialContext))
			add("NetDialer with Source", dial(d.NetDialer().DialContext))
			ld := &bindtodev.Dialer{Interface: ifname}
			ld.LocalAddr = localAddr(network, fam.source)
			add("Dialer with LocalAddr", dial(ld.DialContext))
			add("NetDialer with LocalAddr", dial(ld.NetDialer().DialContext))
			add("Control", dial((&net.Dialer{Control: bindtodev.Control(ifname)}).DialContext))
			add("Control with LocalAddr", dial((&net.Dialer{Control: bindtodev.Control(ifname), LocalAddr: localAddr(network, fam.source)}).DialContext))
		}
	}
	lc := &bindtodev.ListenConfig{Interface: ifname}
	for _, address := range []string{":0", netip.AddrPortFrom(s.LocalA4, 0).String(), netip.AddrPortFrom(s.LocalA6, 0).String()} {
		as = append(as,
			attempt{"Listen " + address, func() error { return closeIfOK(bindtodev.Listen(ifname, "tcp", address)) }},
			attempt{"ListenPacket " + address, func() error { return closeIfOK(bindtodev.ListenPacket(ifname, "udp", address)) }},
			attempt{"NetListenConfig.Listen " + address, func() error { return closeIfOK(lc.NetListenConfig().Listen(ctx, "tcp", address)) }},
			attempt{"NetListenConfig.ListenPacket " + address, func() error {
				return closeIfOK(lc.NetListenConfig().ListenPacket(ctx, "udp", address))
			}},
			attempt{"Control in net.ListenConfig " + address, func() error {
				return closeIfOK((&net.ListenConfig{Control: bindtodev.Control(ifname)}).ListenPacket(ctx, "udp", address))
			}},
		)
	}
	return as
}

func closeIfOK[T interface{ Close() error }](c T, err error) error {
	if err == nil {
		c.Close()
	}
	return err
}

// requireSilent runs every attempt, checks each error with check, and
// fails the test if any interface of the namespace, A and lo included,
// carried a packet of the bound side.
func requireSilent(t *testing.T, w *watch, attempts []attempt, check func(t *testing.T, what string, err error)) {
	t.Helper()
	marks := w.marks()
	for _, a := range attempts {
		check(t, a.name, a.call())
	}
	w.settle()
	w.syncAll()
	for _, c := range w.caps {
		var sent []netlab.Packet
		for _, p := range c.Packets()[marks[c.Ifname]:] {
			if sentByAttempt(p) {
				sent = append(sent, p)
			}
		}
		assert.Empty(t, sent, "packets of the failed attempts on %s", c.Ifname)
	}
}

// sentByAttempt reports whether p is something a dial or listen that went
// ahead would have sent, whatever its interface and source: a TCP or UDP
// packet, or the neighbour resolution (ARP, or ICMPv6 to a solicited-node
// address) that precedes the first packet to a new next hop. The test runs
// alone, so no other socket of the process sends meanwhile; the kernel's
// own background traffic (MLD reports, router solicitations) is none of
// these.
func sentByAttempt(p netlab.Packet) bool {
	if !p.Outgoing {
		return false
	}
	switch {
	case p.EtherType == unix.ETH_P_ARP, p.Proto == unix.IPPROTO_TCP, p.Proto == unix.IPPROTO_UDP:
		return true
	case p.Proto == unix.IPPROTO_ICMPV6:
		return solicitedNode.Contains(p.Dst)
	}
	return false
}

var solicitedNode = netip.MustParsePrefix("ff02::1:ff00:0/104")

// requireWatched shows that the captures see what a bound attempt that
// works sends, so that the silence above means something.
func requireWatched(t *testing.T, s *netlab.Seed, w *watch) {
	t.Helper()
	for _, dest := range []netip.Addr{s.Dest4, s.Dest6} {
		mark := w.capture(s.A).Len()
		c, err := bindtodev.Dial(s.A, "udp", whoAmIAddr(dest))
		require.NoError(t, err)
		assert.Equal(t, "A", ask(t, "udp", c).Peer)
		require.NoError(t, w.capture(s.A).Sync())
		assert.True(t, w.capture(s.A).WaitFor(mark, 0, sentByAttempt), "the capture on A sees a working bound dial to %s", dest)
	}
}

// An unknown interface fails every entry point with ENODEV and an error
// that names the interface, before the socket sends anything: captures on
// every interface, A and lo included, see no packet of any attempt, also
// when the attempt gives A's address as its source, which the routing
// table would send out of B if the package fell back to the address.
func TestUnknownInterface(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	const name = "nosuch0"
	w := watchEverything(t, s)
	requireSilent(t, w, failClosedAttempts(s, name), func(t *testing.T, what string, err error) {
		t.Helper()
		assert.ErrorIs(t, err, syscall.ENODEV, what)
		assert.ErrorContains(t, err, fmt.Sprintf("%q", name), what)
	})
	requireWatched(t, s, w)

	dest := whoAmIAddr(s.Dest4)
	_, err := bindtodev.Dial(name, "tcp", dest)
	var opErr *net.OpError
	require.ErrorAs(t, err, &opErr)
	assert.Equal(t, "dial", opErr.Op)
	assert.Equal(t, fmt.Sprintf("dial tcp %s: bind to device %q: setsockopt: no such device", dest, name), err.Error())

	pc, err := net.ListenPacket("udp", ":0")
	require.NoError(t, err)
	defer pc.Close()
	err = bindtodev.Bind(pc.(*net.UDPConn), name)
	assert.ErrorIs(t, err, syscall.ENODEV)
	assert.Equal(t, "", deviceOf(t, pc), "a failed Bind leaves the socket as it was")
}

// An invalid name fails every entry point with ErrInvalidName before any
// socket exists, and nothing is sent anywhere.
func TestInvalidNameSendsNothing(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	w := watchEverything(t, s)
	for _, name := range []string{"", "a/b", ".", "a b", s.A + "-longer-than-15", s.A + "\x00"} {
		requireSilent(t, w, failClosedAttempts(s, name), func(t *testing.T, what string, err error) {
			t.Helper()
			assert.ErrorIs(t, err, bindtodev.ErrInvalidName, "%s with %q", what, name)
		})
	}
	requireWatched(t, s, w)
}
