//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// A socket whose address is a loopback address is bound to lo: it reaches
// local peers at once, as an unbound one would (a socket bound to A would
// hang), and Device says so.
func TestLoopbackBoundToLo(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	for _, address := range []string{"127.0.0.1:0", "[::1]:0", "[::ffff:127.0.0.1]:0"} {
		ln, err := net.Listen("tcp", address)
		require.NoError(t, err)
		defer ln.Close()
		d := &bindtodev.Dialer{Interface: s.A}
		d.Timeout = 3 * time.Second
		for name, dial := range map[string]func(network, address string) (net.Conn, error){
			"Dialer":    d.Dial,
			"NetDialer": d.NetDialer().Dial,
			"Control":   (&net.Dialer{Control: bindtodev.Control(s.A), Timeout: 3 * time.Second}).Dial,
		} {
			start := time.Now()
			c, err := dial("tcp", ln.Addr().String())
			require.NoError(t, err, name)
			assert.Less(t, time.Since(start), time.Second, "%s: a socket bound to A would hang until the timeout", name)
			assert.Equal(t, "lo", deviceOf(t, c), name)
			c.Close()
		}

		bl, err := bindtodev.Listen(s.A, "tcp", address)
		require.NoError(t, err)
		assert.Equal(t, "lo", deviceOf(t, bl))
		c, err := net.DialTimeout("tcp", bl.Addr().String(), time.Second)
		require.NoError(t, err)
		c.Close()
		bl.Close()
	}
	// Unix domain sockets have no interface.
	path := filepath.Join(t.TempDir(), "sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	defer ln.Close()
	c, err := bindtodev.Dial(s.A, "unix", path)
	require.NoError(t, err)
	c.Close()
}

// A packet socket on [::1] that was left unbound could send to a global
// address, with source ::1, through whatever interface the route picked.
// Bound to lo, its datagrams never leave the host: IPv6 refuses to send
// them, and IPv4 loops them back, where they are dropped.
func TestLoopbackPacketSocketCannotLeave(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	s := netlab.NewSeedT(t)
	caps, err := s.Local.CaptureAll("lo")
	require.NoError(t, err)
	w := &watch{t: t, host: s.Local, caps: caps, ours: map[netip.Addr]bool{}, local: map[netip.Addr]bool{}}
	t.Cleanup(w.stop)
	listeners := map[string]func(network, address string) (net.PacketConn, error){
		"ListenPacket": func(network, address string) (net.PacketConn, error) {
			return bindtodev.ListenPacket(s.A, network, address)
		},
		"NetListenConfig": func(network, address string) (net.PacketConn, error) {
			lc := &bindtodev.ListenConfig{Interface: s.A}
			return lc.NetListenConfig().ListenPacket(context.Background(), network, address)
		},
		"Control": func(network, address string) (net.PacketConn, error) {
			lc := &net.ListenConfig{Control: bindtodev.Control(s.A)}
			return lc.ListenPacket(context.Background(), network, address)
		},
	}
	for name, listen := range listeners {
		for _, fam := range []struct{ local, dest string }{
			{"[::1]:0", whoAmIAddr(s.Dest6)},
			{"127.0.0.1:0", whoAmIAddr(s.Dest4)},
		} {
			pc, err := listen("udp", fam.local)
			require.NoError(t, err, name)
			assert.Equal(t, "lo", deviceOf(t, pc), name)
			dest, err := net.ResolveUDPAddr("udp", fam.dest)
			require.NoError(t, err)
			_, err = pc.WriteTo([]byte(leakMarker+" "+name), dest)
			if dest.IP.To4() == nil {
				assert.Error(t, err, "%s: a socket on %s sends to %s", name, fam.local, fam.dest)
			}
			pc.Close()
		}
	}
	w.requireNoLeak(nil)
	for _, c := range w.caps {
		for _, p := range c.Packets() {
			assert.False(t, p.Src.IsLoopback(), "a packet with a loopback source left through %s: %s", c.Ifname, p)
		}
	}
}

// With route_localnet=1 on B, as kube-proxy sets it, the kernel delivers
// to local sockets a packet that arrived on B for 127.0.0.1. A listener left
// unbound on 127.0.0.1 answered it; bound to lo, it does not. IPv6 never
// delivers ::1 from the wire, which the test shows as well.
func TestLoopbackListenerIgnoresOtherInterfaces(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	require.NoError(t, s.Local.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/"+s.B+"/route_localnet", []byte("1"), 0)
	}))
	capB, err := s.Local.Capture(s.B)
	require.NoError(t, err)
	t.Cleanup(func() { _, _, _ = capB.Stop() })
	linkB, err := s.Local.Link(s.B)
	require.NoError(t, err)

	listeners := map[string]func(address string) (net.Listener, error){
		"Listen": func(address string) (net.Listener, error) { return bindtodev.Listen(s.A, "tcp", address) },
		"ListenConfig": func(address string) (net.Listener, error) {
			return (&bindtodev.ListenConfig{Interface: s.A}).Listen(context.Background(), "tcp", address)
		},
		"Control": func(address string) (net.Listener, error) {
			return (&net.ListenConfig{Control: bindtodev.Control(s.A)}).Listen(context.Background(), "tcp", address)
		},
	}
	seq := uint32(0x51000000)
	for name, listen := range listeners {
		for _, fam := range []struct {
			listen   string
			from, to netip.Addr
		}{
			{"127.0.0.1:0", s.PeerB4, netip.MustParseAddr("127.0.0.1")},
			{"[::1]:0", s.PeerB6, netip.IPv6Loopback()},
		} {
			ln, err := listen(fam.listen)
			require.NoError(t, err, name)
			port := netip.MustParseAddrPort(ln.Addr().String()).Port()
			seq++
			syn := netlab.Segment{
				Src: netip.AddrPortFrom(fam.from, 40000), Dst: netip.AddrPortFrom(fam.to, port),
				Seq: seq, Flags: netlab.TCPSyn,
			}
			from := capB.Len()
			require.NoError(t, s.PeerB.InjectTCP("eth0", linkB.HardwareAddr, syn))
			require.True(t, capB.WaitFor(from, 5*time.Second, func(p netlab.Packet) bool {
				return !p.Outgoing && p.Seq == seq && p.TCPFlags == netlab.TCPSyn
			}), "%s: the SYN for %s arrived on B", name, syn.Dst)
			// What the local host sends back, if anything, follows the
			// SYN at once; an ARP-free exchange with peer B that comes
			// after it proves the capture has read that far.
			require.NoError(t, s.PeerB.Do(func() error {
				c, err := net.DialTimeout("tcp", netip.AddrPortFrom(s.LocalB4, 1).String(), time.Second)
				if err == nil {
					c.Close()
				}
				return nil
			}))
			require.True(t, capB.WaitFor(from, 5*time.Second, func(p netlab.Packet) bool {
				return p.Outgoing && p.SrcPort == 1 && p.TCPFlags&netlab.TCPRst != 0
			}), "the capture on B saw the refusal of a later connection")
			for _, p := range capB.Packets()[from:] {
				if p.Outgoing && p.DstPort == 40000 {
					assert.False(t, p.TCPFlags&netlab.TCPSyn != 0, "%s: the listener on %s answered a SYN that arrived on B: %s", name, fam.listen, p)
				}
			}
			ln.Close()
		}
	}
}
