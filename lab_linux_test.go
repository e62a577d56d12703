//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

func TestMain(m *testing.M) {
	netlab.Main(m)
}

// deviceOf reads back the device a connection's socket is bound to.
func deviceOf(t *testing.T, c any) string {
	t.Helper()
	sc, ok := c.(syscall.Conn)
	require.True(t, ok, "%T has no descriptor", c)
	name, err := bindtodev.Device(sc)
	require.NoError(t, err)
	return name
}

// ask dials with dial and returns the who-am-I answer of the peer reached.
func ask(t *testing.T, network string, c net.Conn) netlab.WhoAmI {
	t.Helper()
	defer c.Close()
	var who netlab.WhoAmI
	var err error
	if network == "udp" {
		who, err = netlab.AskUDP(c)
	} else {
		who, err = netlab.AskTCP(c)
	}
	require.NoError(t, err)
	return who
}

func whoAmIAddr(a netip.Addr) string {
	return netip.AddrPortFrom(a, netlab.WhoAmIPort).String()
}

// The seed scenario: the routing table sends the destination out of B.
// A plain dial and a dial that only bind()s A's address reach the peer
// behind B; every bound dial reaches the peer behind A.
func TestSeedScenario(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	for _, network := range []string{"tcp", "udp"} {
		for _, fam := range []struct {
			name         string
			dest, localA netip.Addr
		}{
			{"IPv4", s.Dest4, s.LocalA4},
			{"IPv6", s.Dest6, s.LocalA6},
		} {
			t.Run(network+"/"+fam.name, func(t *testing.T) {
				dest := whoAmIAddr(fam.dest)
				c, err := net.Dial(network, dest)
				require.NoError(t, err)
				assert.Equal(t, "B", ask(t, network, c).Peer, "plain dial follows the routing table")

				local := localAddr(network, fam.localA)
				c, err = (&net.Dialer{LocalAddr: local}).Dial(network, dest)
				require.NoError(t, err)
				who := ask(t, network, c)
				assert.Equal(t, "B", who.Peer, "bind() to A's address still leaves through B")
				assert.Equal(t, fam.localA, who.Source.Addr())

				bound := &bindtodev.Dialer{Interface: s.A}
				c, err = bound.Dial(network, dest)
				require.NoError(t, err)
				assert.Equal(t, s.A, deviceOf(t, c))
				assert.Equal(t, "A", ask(t, network, c).Peer, "Dialer")

				c, err = bindtodev.Dial(s.A, network, dest)
				require.NoError(t, err)
				assert.Equal(t, "A", ask(t, network, c).Peer, "Dial")

				c, err = bound.NetDialer().Dial(network, dest)
				require.NoError(t, err)
				assert.Equal(t, "A", ask(t, network, c).Peer, "NetDialer")

				c, err = (&net.Dialer{Control: bindtodev.Control(s.A)}).Dial(network, dest)
				require.NoError(t, err)
				assert.Equal(t, "A", ask(t, network, c).Peer, "Control")
			})
		}
	}
}

func localAddr(network string, a netip.Addr) net.Addr {
	if network == "udp" {
		return &net.UDPAddr{IP: a.AsSlice()}
	}
	return &net.TCPAddr{IP: a.AsSlice()}
}

// The kernel truncates a long name to 15 bytes and binds whatever interface
// carries that prefix; the package refuses such a name.
func TestLongNameNeverReachesKernel(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	short := fmt.Sprintf("trunc%d-abcdefgh", s.N)[:15]
	peer, err := s.NewHost("T")
	require.NoError(t, err)
	require.NoError(t, s.Veth(short, peer, "eth0"))
	long := short + "-other"

	// The trap itself, shown with the raw option.
	pc, err := net.ListenPacket("udp4", ":0")
	require.NoError(t, err)
	defer pc.Close()
	rc, err := pc.(*net.UDPConn).SyscallConn()
	require.NoError(t, err)
	var setErr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		setErr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, long)
	}))
	require.NoError(t, setErr, "the kernel accepts the long name")
	assert.Equal(t, short, deviceOf(t, pc), "and binds the 15-byte prefix")

	_, err = bindtodev.Dial(long, "udp", whoAmIAddr(s.Dest4))
	assert.ErrorIs(t, err, bindtodev.ErrInvalidName)
	_, err = bindtodev.Listen(long, "tcp", ":0")
	assert.ErrorIs(t, err, bindtodev.ErrInvalidName)
	pc2, err := net.ListenPacket("udp4", ":0")
	require.NoError(t, err)
	defer pc2.Close()
	assert.ErrorIs(t, bindtodev.Bind(pc2.(*net.UDPConn), long), bindtodev.ErrInvalidName)
	assert.Equal(t, "", deviceOf(t, pc2))
}

func TestBindAndDevice(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	pc, err := net.ListenPacket("udp", ":0")
	require.NoError(t, err)
	defer pc.Close()
	udp := pc.(*net.UDPConn)
	assert.Equal(t, "", deviceOf(t, udp))
	require.NoError(t, bindtodev.Bind(udp, s.A))
	assert.Equal(t, s.A, deviceOf(t, udp))
	// With CAP_NET_RAW a socket may be re-bound.
	require.NoError(t, bindtodev.Bind(udp, s.B))
	assert.Equal(t, s.B, deviceOf(t, udp))

	// net.Listen would make a Multipath TCP listener, which Bind refuses
	// (TestMultipathRefused).
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	require.NoError(t, bindtodev.Bind(ln.(*net.TCPListener), s.A))
	assert.Equal(t, s.A, deviceOf(t, ln))

	// A closed socket reports the failure to reach its descriptor.
	require.NoError(t, pc.Close())
	err = bindtodev.Bind(udp, s.A)
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorContains(t, err, fmt.Sprintf("%q", s.A), "the error names the interface")
	_, err = bindtodev.Device(udp)
	assert.Error(t, err)
}
func TestDialerRefusesSourceAndLocalAddr(t *testing.T) {
	t.Parallel()
	d := &bindtodev.Dialer{Interface: "eth0", Source: netip.MustParseAddr("192.0.2.1")}
	d.LocalAddr = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2)}
	_, err := d.Dial("tcp", "127.0.0.1:1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Source")
	assert.Contains(t, err.Error(), "LocalAddr")
	_, err = d.NetDialer().Dial("tcp", "127.0.0.1:1")
	require.Error(t, err, "NetDialer must carry the error to every dial")
	assert.Contains(t, err.Error(), "LocalAddr")
}

// A nil *net.TCPAddr (or UDPAddr, IPAddr) in LocalAddr is a wildcard
// address to net; the Dialer must read it the same way, not panic.
func TestDialerTypedNilLocalAddr(t *testing.T) {
	t.Parallel()
	for _, local := range []net.Addr{(*net.TCPAddr)(nil), (*net.UDPAddr)(nil), (*net.IPAddr)(nil)} {
		d := &bindtodev.Dialer{Interface: "eth0"}
		d.LocalAddr = local
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		c, err := d.Dial("tcp", ln.Addr().String())
		if assert.NoError(t, err, "LocalAddr %T(nil)", local) {
			c.Close()
		}
		c, err = d.NetDialer().Dial("tcp", ln.Addr().String())
		if assert.NoError(t, err, "NetDialer, LocalAddr %T(nil)", local) {
			c.Close()
		}
		ln.Close()
	}
}

// readDevice reads SO_BINDTODEVICE through the RawConn a Control hook gets.
func readDevice(c syscall.RawConn) (string, error) {
	var name string
	var err error
	if cerr := c.Control(func(fd uintptr) {
		name, err = unix.GetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
	}); cerr != nil {
		return "", cerr
	}
	return name, err
}

// The caller's own hook runs after the device is bound and before the
// source address is, so options such as SO_MARK or SO_REUSEPORT keep
// working.
func TestUserControlChained(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	type seen struct {
		device string
		local  unix.Sockaddr
		err    error
	}
	var mu sync.Mutex
	var calls []seen
	record := func(network, address string, c syscall.RawConn) error {
		var sv seen
		sv.device, sv.err = readDevice(c)
		_ = c.Control(func(fd uintptr) {
			sv.local, _ = unix.Getsockname(int(fd))
			if sv.err == nil {
				sv.err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, 42)
			}
		})
		mu.Lock()
		calls = append(calls, sv)
		mu.Unlock()
		return sv.err
	}
	d := &bindtodev.Dialer{Interface: s.A, Source: s.LocalA4}
	d.Control = record
	c, err := d.Dial("tcp", whoAmIAddr(s.Dest4))
	require.NoError(t, err)
	mark, err := sockoptInt(c, unix.SOL_SOCKET, unix.SO_MARK)
	require.NoError(t, err)
	assert.Equal(t, 42, mark, "the user's option reached the socket")
	assert.Equal(t, "A", ask(t, "tcp", c).Peer)
	require.Len(t, calls, 1)
	assert.Equal(t, s.A, calls[0].device, "the device is bound before the user's hook")
	assert.Equal(t, [4]byte{}, calls[0].local.(*unix.SockaddrInet4).Addr, "the source is bound after it")

	// ControlContext wins over Control, as in net.Dialer.
	calls = nil
	var withContext atomic.Int32
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		withContext.Add(1)
		return nil
	}
	c, err = d.Dial("tcp", whoAmIAddr(s.Dest4))
	require.NoError(t, err)
	c.Close()
	assert.Equal(t, int32(1), withContext.Load())
	assert.Empty(t, calls)

	// A failing user hook fails the dial.
	d.ControlContext = func(context.Context, string, string, syscall.RawConn) error { return errors.New("refused by policy") }
	_, err = d.Dial("tcp", whoAmIAddr(s.Dest4))
	assert.ErrorContains(t, err, "refused by policy")

	// ListenConfig: SO_REUSEPORT set by the user lets two bound listeners
	// share a port.
	lc := &bindtodev.ListenConfig{Interface: s.A}
	lc.Control = func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}
	ln1, err := lc.Listen(context.Background(), "tcp", ":0")
	require.NoError(t, err)
	defer ln1.Close()
	ln2, err := lc.Listen(context.Background(), "tcp", ln1.Addr().String())
	require.NoError(t, err)
	defer ln2.Close()
	assert.Equal(t, s.A, deviceOf(t, ln2))
}

func sockoptInt(c any, level, opt int) (int, error) {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		return 0, err
	}
	return v, gerr
}

// Source sets the address the peer sees, for TCP and UDP alike, through
// every entry point; the path stays the bound interface's.
func TestSource(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	for _, network := range []string{"tcp", "udp"} {
		for _, tc := range []struct {
			name         string
			dest, source netip.Addr
		}{
			{"IPv4", s.Dest4, s.LocalA4},
			{"IPv6", s.Dest6, s.LocalA6},
			// Unusual but allowed: B's address, while bound to A.
			{"OtherInterfaceAddress", s.Dest4, s.LocalB4},
		} {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				d := &bindtodev.Dialer{Interface: s.A, Source: tc.source}
				c, err := d.Dial(network, whoAmIAddr(tc.dest))
				require.NoError(t, err)
				if network == "tcp" {
					noPort, err := sockoptInt(c, unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT)
					require.NoError(t, err)
					assert.Equal(t, 1, noPort, "TCP defers the port to connect")
				}
				who := ask(t, network, c)
				assert.Equal(t, "A", who.Peer)
				assert.Equal(t, tc.source, who.Source.Addr())
				assert.NotZero(t, who.Source.Port())

				c, err = d.NetDialer().Dial(network, whoAmIAddr(tc.dest))
				require.NoError(t, err)
				who = ask(t, network, c)
				assert.Equal(t, "A", who.Peer, "NetDialer")
				assert.Equal(t, tc.source, who.Source.Addr(), "NetDialer")

				// LocalAddr of either type works for either network.
				for _, local := range []net.Addr{
					&net.TCPAddr{IP: tc.source.AsSlice()},
					&net.UDPAddr{IP: tc.source.AsSlice()},
				} {
					ld := &bindtodev.Dialer{Interface: s.A}
					ld.LocalAddr = local
					c, err = ld.Dial(network, whoAmIAddr(tc.dest))
					require.NoError(t, err, "LocalAddr %T", local)
					who = ask(t, network, c)
					assert.Equal(t, "A", who.Peer)
					assert.Equal(t, tc.source, who.Source.Addr())
				}
			})
		}
	}
	t.Run("explicit port", func(t *testing.T) {
		ld := &bindtodev.Dialer{Interface: s.A}
		probe, err := net.ListenPacket("udp4", net.JoinHostPort(s.LocalA4.String(), "0"))
		require.NoError(t, err)
		port := probe.LocalAddr().(*net.UDPAddr).Port
		probe.Close()
		ld.LocalAddr = &net.UDPAddr{IP: s.LocalA4.AsSlice(), Port: port}
		c, err := ld.Dial("udp", whoAmIAddr(s.Dest4))
		require.NoError(t, err)
		assert.Equal(t, netip.AddrPortFrom(s.LocalA4, uint16(port)), ask(t, "udp", c).Source)
	})
}

// With IP_BIND_ADDRESS_NO_PORT the local port is chosen per destination,
// so one source address is not limited to one port range across
// destinations. The test leaves two ephemeral ports and opens more
// connections than that from one source.
func TestSourceDoesNotReservePorts(t *testing.T) { //nolint:paralleltest // changes a sysctl of the shared namespace
	s := netlab.NewSeedT(t)
	const key = "/proc/sys/net/ipv4/ip_local_port_range"
	old, err := os.ReadFile(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(key, []byte("40000 40001"), 0))
	t.Cleanup(func() { _ = os.WriteFile(key, old, 0) })

	d := &bindtodev.Dialer{Interface: s.A, Source: s.LocalA4}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, dest := range []netip.Addr{s.Dest4, s.PeerA4} {
		for range 2 {
			c, err := d.Dial("tcp", whoAmIAddr(dest))
			require.NoError(t, err, "connection %d", len(conns)+1)
			conns = append(conns, c)
		}
	}
	assert.Len(t, conns, 4)
}

// A Source of one family never breaks a name that also has addresses of
// the other; a destination only of the other family fails at once with an
// error naming both addresses.
func TestSourceFamily(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	dns, err := netlab.StartDNS(s.Local, netip.MustParseAddrPort("127.0.0.1:0"), netlab.DNSConfig{Records: map[string][]netip.Addr{
		"both.lab.": {s.Dest6, s.Dest4},
		"v6.lab.":   {s.Dest6},
	}})
	require.NoError(t, err)
	d := &bindtodev.Dialer{Interface: s.A, Source: s.LocalA4}
	d.Resolver = netlab.Resolver(dns.Addr)
	d.Timeout = 5 * time.Second
	for _, network := range []string{"tcp", "udp"} {
		c, err := d.Dial(network, fmt.Sprintf("both.lab:%d", netlab.WhoAmIPort))
		require.NoError(t, err, network)
		who := ask(t, network, c)
		assert.Equal(t, "A", who.Peer)
		assert.Equal(t, s.LocalA4, who.Source.Addr())

		start := time.Now()
		_, err = d.Dial(network, fmt.Sprintf("v6.lab:%d", netlab.WhoAmIPort))
		require.Error(t, err, network)
		assert.Less(t, time.Since(start), 2*time.Second, "no timeout")
		assert.Contains(t, err.Error(), s.LocalA4.String())
		assert.Contains(t, err.Error(), s.Dest6.String())
	}
}

// Happy eyeballs: every attempt's socket is bound, whichever family wins.
func TestDualStackAttemptsAllBound(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	// Nobody owns this address on A's link, so the IPv6 attempt hangs in
	// neighbor discovery and IPv4 wins after the fallback delay.
	silent := netip.MustParseAddr(fmt.Sprintf("2001:db8:%x:a::99", s.N))
	dns, err := netlab.StartDNS(s.Local, netip.MustParseAddrPort("127.0.0.1:0"), netlab.DNSConfig{Records: map[string][]netip.Addr{
		"dual.lab.": {silent, s.Dest4},
	}})
	require.NoError(t, err)
	var mu sync.Mutex
	attempts := map[string]string{}
	d := &bindtodev.Dialer{Interface: s.A}
	d.Resolver = netlab.Resolver(dns.Addr)
	d.FallbackDelay = 50 * time.Millisecond
	d.Control = func(network, address string, c syscall.RawConn) error {
		dev, err := readDevice(c)
		mu.Lock()
		attempts[network] = dev
		mu.Unlock()
		return err
	}
	c, err := d.Dial("tcp", fmt.Sprintf("dual.lab:%d", netlab.WhoAmIPort))
	require.NoError(t, err)
	assert.Equal(t, "A", ask(t, "tcp", c).Peer)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]string{"tcp6": s.A, "tcp4": s.A}, attempts)
}

// A bound listener accepts only what arrives on its interface; accepted
// sockets inherit the binding; listeners bound to different interfaces
// share a port.
func TestListenerIngress(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	ln, err := bindtodev.Listen(s.A, "tcp", ":0") // dual-stack wildcard
	require.NoError(t, err)
	defer ln.Close()
	assert.Equal(t, s.A, deviceOf(t, ln))
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for _, local := range []netip.Addr{s.LocalA4, s.LocalA6} {
		c, err := s.PeerA.Dial("tcp", netip.AddrPortFrom(local, port).String())
		require.NoError(t, err, "from A to %s", local)
		c.Close()
		a := <-accepted
		assert.Equal(t, s.A, deviceOf(t, a), "accepted sockets are bound")
		a.Close()
	}
	for _, local := range []netip.Addr{s.LocalB4, s.LocalA4, s.LocalB6} {
		_, err := s.PeerB.Dial("tcp", netip.AddrPortFrom(local, port).String())
		assert.ErrorIs(t, err, syscall.ECONNREFUSED, "from B to %s", local)
	}

	lnB, err := bindtodev.Listen(s.B, "tcp", fmt.Sprintf(":%d", port))
	require.NoError(t, err, "a second listener on the same port, bound to B")
	defer lnB.Close()
	c, err := s.PeerB.Dial("tcp", netip.AddrPortFrom(s.LocalB4, port).String())
	require.NoError(t, err)
	defer c.Close()
	b, err := lnB.Accept()
	require.NoError(t, err)
	assert.Equal(t, s.B, deviceOf(t, b))
	b.Close()
	select {
	case a := <-accepted:
		t.Errorf("A's listener accepted %v", a.RemoteAddr())
	default:
	}
}

// A packet socket bound to A receives only what arrives on A.
func TestPacketIngress(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	pa, err := bindtodev.ListenPacket(s.A, "udp", ":0")
	require.NoError(t, err)
	defer pa.Close()
	port := uint16(pa.LocalAddr().(*net.UDPAddr).Port)
	pb, err := bindtodev.ListenPacket(s.B, "udp", fmt.Sprintf(":%d", port))
	require.NoError(t, err, "a second socket on the same port, bound to B")
	defer pb.Close()

	send := func(h *netlab.Host, to netip.Addr, msg string) {
		c, err := h.Dial("udp", netip.AddrPortFrom(to, port).String())
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte(msg))
		require.NoError(t, err)
	}
	fromB := []netip.Addr{s.LocalB4, s.LocalA4, s.LocalB6, s.LocalA6}
	for _, to := range fromB {
		send(s.PeerB, to, "from B to "+to.String())
	}
	send(s.PeerA, s.LocalA4, "from A")
	send(s.PeerA, s.LocalA6, "from A")

	read := func(pc net.PacketConn) (string, error) {
		buf := make([]byte, 100)
		_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		return string(buf[:n]), err
	}
	// B's socket saw every datagram from B, so they did reach the host.
	for range fromB {
		msg, err := read(pb)
		require.NoError(t, err)
		assert.Contains(t, msg, "from B")
	}
	for range 2 {
		msg, err := read(pa)
		require.NoError(t, err)
		assert.Equal(t, "from A", msg)
	}
	_ = pa.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, _, err = pa.ReadFrom(make([]byte, 100))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "nothing from B reached A's socket")
}

// With A down, a bound dial fails; it does not fail over to B.
func TestInterfaceDown(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	require.NoError(t, s.Local.SetDown(s.A))
	for _, network := range []string{"tcp", "udp"} {
		for _, dest := range []netip.Addr{s.Dest4, s.Dest6} {
			_, err := bindtodev.Dial(s.A, network, whoAmIAddr(dest))
			assert.ErrorIs(t, err, syscall.ENETUNREACH, "%s %s", network, dest)
		}
	}
	require.NoError(t, s.Local.SetUp(s.A))
	c, err := bindtodev.Dial(s.A, "tcp", whoAmIAddr(s.Dest4))
	require.NoError(t, err)
	assert.Equal(t, "A", ask(t, "tcp", c).Peer)
}

// An IPv6 zone must name the bound interface: the kernel would otherwise
// fail with a bare EINVAL, or send an unconnected datagram out of the zone's
// interface.
func TestLinkLocalZones(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	idxA, err := s.Local.Link(s.A)
	require.NoError(t, err)
	for _, network := range []string{"tcp", "udp"} {
		c, err := bindtodev.Dial(s.A, network, whoAmIAddr(s.PeerLinkLocal(s.A)))
		require.NoError(t, err)
		assert.Equal(t, "A", ask(t, network, c).Peer)

		numeric := s.PeerALinkLocal.WithZone(fmt.Sprint(idxA.Index))
		c, err = bindtodev.Dial(s.A, network, whoAmIAddr(numeric))
		require.NoError(t, err, "a numeric zone naming A")
		assert.Equal(t, "A", ask(t, network, c).Peer)

		other := whoAmIAddr(s.PeerLinkLocal(s.B))
		_, err = bindtodev.Dial(s.A, network, other)
		assert.ErrorIs(t, err, syscall.EINVAL)
		assert.ErrorContains(t, err, fmt.Sprintf("names interface %q but the socket is bound to %q", s.B, s.A))
	}
	// A link-local Source with another interface's zone is refused too.
	d := &bindtodev.Dialer{Interface: s.A}
	d.LocalAddr = &net.UDPAddr{IP: s.PeerALinkLocal.AsSlice(), Zone: s.B}
	_, err = d.Dial("udp", whoAmIAddr(s.PeerLinkLocal(s.A)))
	assert.ErrorIs(t, err, syscall.EINVAL)
}

// tls.Dialer takes exactly a *net.Dialer: NetDialer's connections are bound.
func TestTLSThroughNetDialer(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	cert := selfSigned(t)
	for _, peer := range []*netlab.Host{s.PeerA, s.PeerB} {
		ln, err := peer.Listen("tcp", ":8443")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		go func() {
			for {
				c, err := tln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte(peer.Name))
				c.Close()
			}
		}()
	}
	d := &bindtodev.Dialer{Interface: s.A}
	td := &tls.Dialer{NetDialer: d.NetDialer(), Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // self-signed lab server
	c, err := td.DialContext(context.Background(), "tcp", netip.AddrPortFrom(s.Dest4, 8443).String())
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, s.A, deviceOf(t, c.(*tls.Conn).NetConn()))
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "A", string(got))

	c2, err := tls.DialWithDialer(d.NetDialer(), "tcp", netip.AddrPortFrom(s.Dest4, 8443).String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed lab server
	require.NoError(t, err)
	defer c2.Close()
	got, err = io.ReadAll(c2)
	require.NoError(t, err)
	assert.Equal(t, "A", string(got))
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "lab"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// withoutNetRaw runs fn on an OS thread whose effective capabilities lack
// CAP_NET_RAW (capabilities are per thread), then discards the thread.
func withoutNetRaw(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		data[unix.CAP_NET_RAW/32].Effective &^= 1 << (unix.CAP_NET_RAW % 32)
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	require.NoError(t, <-done, "drop CAP_NET_RAW")
}

// Since Linux 5.7 the first bind of a socket needs no privilege, and the
// package binds each socket once; a re-bind fails with a permission error
// that explains the rule.
func TestWithoutNetRaw(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	var firstBind, rebind, dialErr error
	var who netlab.WhoAmI
	withoutNetRaw(t, func() {
		pc, err := net.ListenPacket("udp", ":0")
		if err != nil {
			firstBind = err
			return
		}
		defer pc.Close()
		firstBind = bindtodev.Bind(pc.(*net.UDPConn), s.A)
		rebind = bindtodev.Bind(pc.(*net.UDPConn), s.B)
		// A literal address keeps the dial on this goroutine and thread.
		c, err := bindtodev.Dial(s.A, "tcp", whoAmIAddr(s.Dest4))
		if err != nil {
			dialErr = err
			return
		}
		who, dialErr = netlab.AskTCP(c)
		c.Close()
	})
	require.NoError(t, firstBind)
	require.NoError(t, dialErr)
	assert.Equal(t, "A", who.Peer)
	require.ErrorIs(t, rebind, os.ErrPermission)
	assert.ErrorIs(t, rebind, syscall.EPERM)
	assert.ErrorContains(t, rebind, fmt.Sprintf("bind to device %q", s.B))
	assert.ErrorContains(t, rebind, "CAP_NET_RAW")
}
