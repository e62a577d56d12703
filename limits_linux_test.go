//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// datagramTo matches a UDP datagram sent to dest with the leak marker.
func datagramTo(dest netip.AddrPort) func(netlab.Packet) bool {
	return func(p netlab.Packet) bool {
		return p.Outgoing && p.Proto == unix.IPPROTO_UDP && p.Dst == dest.Addr().WithZone("") &&
			p.DstPort == dest.Port() && strings.HasPrefix(string(p.Payload), leakMarker)
	}
}

// Where the kernel's guarantee ends (documented in README.md and
// SECURITY.md, not guarded): an unconnected WriteTo an IPv6 link-local
// address whose zone names another interface leaves through that interface,
// although the socket is bound to A. Dials with such a zone are refused by
// the package (TestLinkLocalZones), and the kernel fails a connected send.
func TestZonedWriteToLeavesThroughZone(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	capB, err := s.Local.Capture(s.B)
	require.NoError(t, err)
	t.Cleanup(func() { _, _, _ = capB.Stop() })
	idxB, err := s.Local.Link(s.B)
	require.NoError(t, err)

	pc, err := bindtodev.ListenPacket(s.A, "udp6", ":0")
	require.NoError(t, err)
	defer pc.Close()
	require.Equal(t, s.A, deviceOf(t, pc))
	for _, zone := range []string{s.B, fmt.Sprint(idxB.Index)} {
		dest := netip.AddrPortFrom(s.PeerBLinkLocal.WithZone(zone), netlab.WhoAmIPort)
		mark := capB.Len()
		_, err = pc.WriteTo([]byte(leakMarker+" zoned"), net.UDPAddrFromAddrPort(dest))
		require.NoError(t, err, "the kernel accepts the zone %q", zone)
		assert.True(t, capB.WaitFor(mark, 3*time.Second, datagramTo(dest)),
			"the datagram leaves through B, the zone's interface (zone %q)", zone)
	}

	// A connected socket with the same zone is refused.
	_, err = bindtodev.Dial(s.A, "udp", whoAmIAddr(s.PeerLinkLocal(s.B)))
	assert.ErrorIs(t, err, syscall.EINVAL)
}

// Where the kernel's guarantee ends (documented, not guarded): an IPv4
// IP_PKTINFO control message with another interface's index sends the
// datagram out of that interface. The IPv6 equivalent is refused.
func TestPktinfoChoosesEgress(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	capB, err := s.Local.Capture(s.B)
	require.NoError(t, err)
	t.Cleanup(func() { _, _, _ = capB.Stop() })
	idxB, err := s.Local.Link(s.B)
	require.NoError(t, err)

	pc, err := bindtodev.ListenPacket(s.A, "udp4", ":0")
	require.NoError(t, err)
	defer pc.Close()
	dest := netip.AddrPortFrom(s.Dest4, netlab.WhoAmIPort)
	oob := (&ipv4.ControlMessage{IfIndex: idxB.Index}).Marshal()
	mark := capB.Len()
	_, _, err = pc.(*net.UDPConn).WriteMsgUDPAddrPort([]byte(leakMarker+" pktinfo"), oob, dest)
	require.NoError(t, err, "the kernel accepts IP_PKTINFO naming B")
	assert.True(t, capB.WaitFor(mark, 3*time.Second, datagramTo(dest)), "the datagram leaves through B")

	pc6, err := bindtodev.ListenPacket(s.A, "udp6", ":0")
	require.NoError(t, err)
	defer pc6.Close()
	oob6 := (&ipv6.ControlMessage{IfIndex: idxB.Index}).Marshal()
	_, _, err = pc6.(*net.UDPConn).WriteMsgUDPAddrPort([]byte(leakMarker+" pktinfo"), oob6, netip.AddrPortFrom(s.Dest6, netlab.WhoAmIPort))
	assert.ErrorIs(t, err, syscall.EINVAL, "IPV6_PKTINFO naming B is refused")
}

// SO_BINDTOIFINDEX accepts an index that no interface has; the socket then
// fails only when it sends. The package binds by name, which the kernel
// checks at once; anything that binds by index must check the index itself.
func TestBindToIfindexAcceptsNonexistent(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	const nosuch = 99999
	for _, link := range []string{s.A, s.B, "lo"} {
		attrs, err := s.Local.Link(link)
		require.NoError(t, err)
		require.NotEqual(t, nosuch, attrs.Index)
	}
	c, err := net.ListenPacket("udp4", ":0")
	require.NoError(t, err)
	defer c.Close()
	rc, err := c.(*net.UDPConn).SyscallConn()
	require.NoError(t, err)
	var setErr, sendErr error
	var readBack int
	require.NoError(t, rc.Control(func(fd uintptr) {
		setErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, nosuch)
		readBack, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
		sendErr = unix.Sendto(int(fd), []byte("x"), 0, &unix.SockaddrInet4{Port: netlab.WhoAmIPort, Addr: s.Dest4.As4()})
	}))
	require.NoError(t, setErr, "the kernel accepts a nonexistent index")
	assert.Equal(t, nosuch, readBack)
	assert.ErrorIs(t, sendErr, syscall.ENODEV, "and fails only at the first send")
	_, err = bindtodev.Device(c.(*net.UDPConn))
	assert.ErrorIs(t, err, syscall.ENODEV, "Device reports the binding as broken")
}

// The truncation trap from every entry point, including a name of exactly
// 16 bytes, with a 15-byte interface that carries the prefix (the core
// test TestLongNameNeverReachesKernel shows the kernel's behaviour itself).
func TestLongNameEveryEntryPoint(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	short := fmt.Sprintf("tr%d-abcdefghijklm", s.N)[:15]
	peer, err := s.NewHost("T")
	require.NoError(t, err)
	require.NoError(t, s.Veth(short, peer, "eth0"))
	ctx := context.Background()
	for _, long := range []string{short + "x", short + "0", short + "-and-more"} {
		d := &bindtodev.Dialer{Interface: long}
		lc := &bindtodev.ListenConfig{Interface: long}
		for what, call := range map[string]func() error{
			"Dialer":    func() error { _, err := d.Dial("udp", whoAmIAddr(s.Dest4)); return err },
			"NetDialer": func() error { _, err := d.NetDialer().Dial("tcp", whoAmIAddr(s.Dest4)); return err },
			"Control": func() error {
				_, err := (&net.Dialer{Control: bindtodev.Control(long)}).Dial("udp", whoAmIAddr(s.Dest4))
				return err
			},
			"Listen":          func() error { _, err := lc.Listen(ctx, "tcp", ":0"); return err },
			"ListenPacket":    func() error { _, err := lc.ListenPacket(ctx, "udp", ":0"); return err },
			"NetListenConfig": func() error { _, err := lc.NetListenConfig().ListenPacket(ctx, "udp", ":0"); return err },
		} {
			err := call()
			assert.ErrorIs(t, err, bindtodev.ErrInvalidName, "%s(%q)", what, long)
		}
	}
}

// Alternative interface names (ip link property add altname) are found by
// SO_BINDTODEVICE too, but the kernel does not hold them to its rule for
// names. The package accepts an alternative name that obeys the rule,
// including '%', which no primary name can hold, and refuses the others
// (fail closed); a 16-byte name whose first 15 bytes are an alternative
// name is the truncation trap again, and is refused.
func TestAltNames(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	alt15 := fmt.Sprintf("alt%d-abcdefghijk", s.N)[:15]
	percent := fmt.Sprintf("p%%d-%d", s.N)
	colon := fmt.Sprintf("alt:%d", s.N)
	for _, alt := range []string{alt15, percent, colon} {
		require.NoError(t, s.Local.AddAltName(s.A, alt))
	}
	for _, alt := range []string{alt15, percent} {
		c, err := bindtodev.Dial(alt, "tcp", whoAmIAddr(s.Dest4))
		require.NoError(t, err, alt)
		assert.Equal(t, s.A, deviceOf(t, c), "bound to the interface that has the alternative name %q", alt)
		assert.Equal(t, "A", ask(t, "tcp", c).Peer)
	}
	for _, name := range []string{colon, alt15 + "x"} {
		// The kernel binds both to A.
		pc, err := net.ListenPacket("udp4", ":0")
		require.NoError(t, err)
		defer pc.Close()
		rc, err := pc.(*net.UDPConn).SyscallConn()
		require.NoError(t, err)
		var setErr error
		require.NoError(t, rc.Control(func(fd uintptr) {
			setErr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name)
		}))
		require.NoError(t, setErr, name)
		assert.Equal(t, s.A, deviceOf(t, pc), name)
		// The package refuses them.
		_, err = bindtodev.Dial(name, "tcp", whoAmIAddr(s.Dest4))
		assert.ErrorIs(t, err, bindtodev.ErrInvalidName, name)
	}
}
