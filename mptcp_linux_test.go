//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// Multipath TCP would carry a bound connection's traffic over subflows that
// Linux does not bind: the tests below give the path manager every reason
// to open such subflows over B, and require that not one TCP segment of the
// exchange crosses B.

const (
	// mptcpBytes is what each side sends: enough for the path manager to
	// open and use its subflows while the data flows.
	mptcpBytes = 1 << 20
	// mptcpPort is the server's port, mptcpJoinPort the port the bound
	// server side announces for joins (see listenerScenario).
	mptcpPort     = 8700
	mptcpJoinPort = 8701
	// mptcpChildEnv holds the address a child process under
	// GODEBUG=multipathtcp=1 dials.
	mptcpChildEnv = "BINDTODEV_MPTCP_CHILD"
)

// dialerScenario prepares m for a bound client in Client: a path manager
// endpoint on B with the subflow flag, and the server announcing its B
// address, each of which opens a subflow over B for any Multipath TCP
// connection that Client makes. It returns the server's results.
func dialerScenario(t *testing.T, m *netlab.Multipath) <-chan netlab.BulkResult {
	t.Helper()
	for _, args := range [][]string{
		{"mptcp", "limits", "set", "subflow", "4", "add_addr_accepted", "4"},
		{"mptcp", "endpoint", "add", m.ClientB4.String(), "dev", m.B, "subflow"},
		{"mptcp", "endpoint", "add", m.ClientB6.String(), "dev", m.B, "subflow"},
	} {
		require.NoError(t, m.Client.IP(args...))
	}
	for _, args := range [][]string{
		{"mptcp", "limits", "set", "subflow", "4", "add_addr_accepted", "4"},
		{"mptcp", "endpoint", "add", m.ServerB4.String(), "dev", m.SB, "signal"},
		{"mptcp", "endpoint", "add", m.ServerB6.String(), "dev", m.SB, "signal"},
	} {
		require.NoError(t, m.Server.IP(args...))
	}
	_, results, err := netlab.ServeBulk(m.Server, fmt.Sprintf(":%d", mptcpPort), mptcpBytes)
	require.NoError(t, err)
	return results
}

// watchB captures Client's B until the test ends.
func watchB(t *testing.T, m *netlab.Multipath) *netlab.Capture {
	t.Helper()
	c, err := m.Client.Capture(m.B)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, stats, err := c.Stop()
		assert.NoError(t, err)
		assert.Zero(t, stats.Drops, "the capture on B lost frames: the record is incomplete")
	})
	return c
}

// requireNoTCPOnB waits until the capture on B has recorded everything
// the kernel queued for it (Capture.Sync); then not one TCP segment may be
// among the frames captured since from.
func requireNoTCPOnB(t *testing.T, m *netlab.Multipath, capB *netlab.Capture, from int) {
	t.Helper()
	require.NoError(t, capB.Sync())
	var tcp []netlab.Packet
	for _, p := range capB.Packets()[from:] {
		if p.Proto == unix.IPPROTO_TCP {
			tcp = append(tcp, p)
		}
	}
	if len(tcp) > 0 {
		t.Fatalf("%d TCP segments crossed B:\n%s", len(tcp), describe(map[string][]netlab.Packet{m.B: tcp}))
	}
}

// exchangeVia dials with dial inside m's Client, exchanges mptcpBytes each
// way with the server, and checks that the connection is bound to A, used
// plain TCP, and was served by a plain TCP connection.
func exchangeVia(t *testing.T, m *netlab.Multipath, results <-chan netlab.BulkResult, dest netip.Addr,
	dial func(ctx context.Context, network, address string) (net.Conn, error)) {
	t.Helper()
	var c net.Conn
	require.NoError(t, m.Client.Do(func() (err error) {
		c, err = dial(context.Background(), "tcp", netip.AddrPortFrom(dest, mptcpPort).String())
		return err
	}))
	defer c.Close()
	assert.Equal(t, m.A, deviceOf(t, c))
	multipath, err := c.(*net.TCPConn).MultipathTCP()
	require.NoError(t, err)
	assert.False(t, multipath, "the bound connection uses Multipath TCP")
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	if multipath {
		// Let the leak happen while the connection lives, so that the
		// capture shows it too.
		awaitSubflow(t, c.(*net.TCPConn))
	}
	require.NoError(t, netlab.Exchange(c, mptcpBytes))
	select {
	case r := <-results:
		require.NoError(t, r.Err)
		assert.False(t, r.Multipath, "the server saw a Multipath TCP connection")
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not finish the exchange")
	}
	require.NoError(t, netlab.AwaitEOF(c))
}

// multipathDialer is a net.Dialer that asks for Multipath TCP.
func multipathDialer(control func(string, string, syscall.RawConn) error) *net.Dialer {
	nd := &net.Dialer{Control: control, Timeout: 5 * time.Second}
	nd.SetMultipathTCP(true)
	return nd
}

// Every dialing entry point, with the path manager ready to open subflows
// over B: the connection is bound to A, uses plain TCP, and B sees no TCP.
func TestMultipathDialersStayOnInterface(t *testing.T) {
	t.Parallel()
	m := netlab.NewMultipathT(t)
	results := dialerScenario(t, m)
	capB := watchB(t, m)

	cases := []struct {
		name string
		dial func(ctx context.Context, network, address string) (net.Conn, error)
	}{
		{"Dialer.SetMultipathTCP", func(ctx context.Context, network, address string) (net.Conn, error) {
			d := &bindtodev.Dialer{Interface: m.A}
			d.SetMultipathTCP(true)
			d.Dialer.SetMultipathTCP(true)
			return d.DialContext(ctx, network, address)
		}},
		{"NetDialer then SetMultipathTCP", func(ctx context.Context, network, address string) (net.Conn, error) {
			nd := (&bindtodev.Dialer{Interface: m.A}).NetDialer()
			nd.SetMultipathTCP(true)
			return nd.DialContext(ctx, network, address)
		}},
		{"Control in a Multipath net.Dialer", func(ctx context.Context, network, address string) (net.Conn, error) {
			return multipathDialer(bindtodev.Control(m.A)).DialContext(ctx, network, address)
		}},
		{"Dialer.DialTCP", func(ctx context.Context, network, address string) (net.Conn, error) {
			d := &bindtodev.Dialer{Interface: m.A}
			d.Dialer.SetMultipathTCP(true)
			return d.DialTCP(ctx, network, netip.AddrPort{}, netip.MustParseAddrPort(address))
		}},
	}
	for _, tc := range cases {
		for _, dest := range []netip.Addr{m.Dest4, m.Dest6} {
			t.Run(tc.name+"/"+dest.String(), func(t *testing.T) {
				from := capB.Len()
				exchangeVia(t, m, results, dest, tc.dial)
				requireNoTCPOnB(t, m, capB, from)
			})
		}
	}
	// The lab works: an unbound Multipath TCP connection to the same
	// server opens subflows over B, so each case above could fail. It
	// runs last, since its subflows outlive it for a while.
	t.Run("control", func(t *testing.T) {
		from := capB.Len()
		var c net.Conn
		require.NoError(t, m.Client.Do(func() (err error) {
			c, err = multipathDialer(nil).Dial("tcp", netip.AddrPortFrom(m.Dest4, mptcpPort).String())
			return err
		}))
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
		awaitSubflow(t, c.(*net.TCPConn))
		require.NoError(t, netlab.Exchange(c, mptcpBytes))
		require.NoError(t, (<-results).Err)
		assert.True(t, capB.WaitFor(from, 5*time.Second, func(p netlab.Packet) bool {
			return p.Proto == unix.IPPROTO_TCP && p.DstPort == mptcpPort && p.TCPFlags&netlab.TCPSyn != 0
		}), "an unbound Multipath TCP dial joins a subflow over B")
	})
}

// GODEBUG=multipathtcp=1 makes every net.Dialer try Multipath TCP. It is
// read once per process, so the dials run in a child process inside the
// lab's client namespace.
func TestMultipathGODEBUG(t *testing.T) {
	if dest := os.Getenv(mptcpChildEnv); dest != "" {
		multipathChild(t, dest)
		return
	}
	t.Parallel()
	m := netlab.NewMultipathT(t)
	results := dialerScenario(t, m)
	capB := watchB(t, m)
	exe, err := os.Executable()
	require.NoError(t, err)
	for _, dest := range []netip.Addr{m.Dest4, m.Dest6} {
		from := capB.Len()
		var out []byte
		require.NoError(t, m.Client.Do(func() (err error) {
			cmd := exec.Command(exe, "-test.run=^TestMultipathGODEBUG$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "GODEBUG=multipathtcp=1",
				mptcpChildEnv+"="+netip.AddrPortFrom(dest, mptcpPort).String(), "BINDTODEV_MPTCP_IF="+m.A)
			out, err = cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%w\n%s", err, out)
			}
			return nil
		}))
		require.Contains(t, string(out), "--- PASS: TestMultipathGODEBUG", "the child ran its dials:\n%s", out)
		for range 3 { // Dialer, NetDialer, Control
			r := <-results
			require.NoError(t, r.Err)
			assert.False(t, r.Multipath, "the server saw a Multipath TCP connection")
		}
		requireNoTCPOnB(t, m, capB, from)
	}
}

// multipathChild is TestMultipathGODEBUG in the child process.
func multipathChild(t *testing.T, address string) {
	require.Equal(t, "1", godebug("multipathtcp"), "the child runs under GODEBUG=multipathtcp=1")
	ifname := os.Getenv("BINDTODEV_MPTCP_IF")
	require.True(t, (&net.Dialer{}).MultipathTCP(), "GODEBUG=multipathtcp=1 turns net.Dialer's Multipath TCP on")
	d := &bindtodev.Dialer{Interface: ifname}
	for _, dial := range []func(network, address string) (net.Conn, error){
		d.Dial,
		d.NetDialer().Dial,
		(&net.Dialer{Control: bindtodev.Control(ifname)}).Dial,
	} {
		c, err := dial("tcp", address)
		require.NoError(t, err)
		assert.Equal(t, ifname, deviceOf(t, c))
		multipath, err := c.(*net.TCPConn).MultipathTCP()
		require.NoError(t, err)
		assert.False(t, multipath)
		require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
		require.NoError(t, netlab.Exchange(c, mptcpBytes))
		require.NoError(t, netlab.AwaitEOF(c))
		c.Close()
	}
}

// godebug returns the value of key in GODEBUG, or "".
func godebug(key string) string {
	for _, kv := range strings.Split(os.Getenv("GODEBUG"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// listenerScenario prepares m for a bound server in Client: Client's path
// manager announces its B address with a port of its own, on which the
// kernel accepts joins for any Multipath TCP connection the server has, and
// Server, the client side, accepts announcements and dials with Multipath
// TCP.
func listenerScenario(t *testing.T, m *netlab.Multipath) {
	t.Helper()
	port := strconv.Itoa(mptcpJoinPort)
	for _, args := range [][]string{
		{"mptcp", "limits", "set", "subflow", "4", "add_addr_accepted", "4"},
		{"mptcp", "endpoint", "add", m.ClientB4.String(), "dev", m.B, "signal", "port", port},
		{"mptcp", "endpoint", "add", m.ClientB6.String(), "dev", m.B, "signal", "port", port},
	} {
		require.NoError(t, m.Client.IP(args...))
	}
	require.NoError(t, m.Server.IP("mptcp", "limits", "set", "subflow", "4", "add_addr_accepted", "4"))
}

// Every listening entry point, under Go's default of Multipath TCP
// listeners and with the path manager announcing B: the listener is bound
// to A and plain TCP, and B sees no TCP.
func TestMultipathListenersStayOnInterface(t *testing.T) {
	t.Parallel()
	m := netlab.NewMultipathT(t)
	listenerScenario(t, m)
	capB := watchB(t, m)
	require.True(t, (&net.ListenConfig{}).MultipathTCP(), "Go's default listener uses Multipath TCP")

	cases := []struct {
		name   string
		listen func(address string) (net.Listener, error)
	}{
		{"ListenConfig", func(address string) (net.Listener, error) {
			lc := &bindtodev.ListenConfig{Interface: m.A}
			lc.SetMultipathTCP(true)
			lc.ListenConfig.SetMultipathTCP(true)
			return lc.Listen(context.Background(), "tcp", address)
		}},
		{"NetListenConfig then SetMultipathTCP", func(address string) (net.Listener, error) {
			nl := (&bindtodev.ListenConfig{Interface: m.A}).NetListenConfig()
			nl.SetMultipathTCP(true)
			return nl.Listen(context.Background(), "tcp", address)
		}},
		{"Listen", func(address string) (net.Listener, error) {
			return bindtodev.Listen(m.A, "tcp", address)
		}},
		{"Control in a default net.ListenConfig", func(address string) (net.Listener, error) {
			return (&net.ListenConfig{Control: bindtodev.Control(m.A)}).Listen(context.Background(), "tcp", address)
		}},
		// Last, since its subflows outlive it for a while.
		{"control: unbound", func(address string) (net.Listener, error) {
			return net.Listen("tcp", address)
		}},
	}
	for _, tc := range cases {
		for _, fam := range []struct{ client, server netip.Addr }{{m.ClientA4, m.ServerA4}, {m.ClientA6, m.ServerA6}} {
			t.Run(tc.name+"/"+fam.client.String(), func(t *testing.T) {
				from := capB.Len()
				var ln net.Listener
				require.NoError(t, m.Client.Do(func() (err error) {
					ln, err = tc.listen(":0") // a port of its own: a bound listener before it may still hold its port
					return err
				}))
				defer ln.Close()
				served := make(chan error, 1)
				go func() {
					c, err := ln.Accept()
					if err != nil {
						served <- err
						return
					}
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(20 * time.Second))
					err = netlab.Exchange(c, mptcpBytes)
					if err == nil {
						// The client closes first (see AwaitEOF).
						err = netlab.AwaitEOF(c)
					}
					served <- err
				}()
				var c net.Conn
				require.NoError(t, m.Server.Do(func() (err error) {
					c, err = multipathDialer(nil).Dial("tcp", netip.AddrPortFrom(fam.client, uint16(ln.Addr().(*net.TCPAddr).Port)).String())
					return err
				}))
				clientMultipath, err := c.(*net.TCPConn).MultipathTCP()
				require.NoError(t, err)
				require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
				if clientMultipath {
					// The server side spoke Multipath TCP: let the join
					// over B happen while the connection lives.
					awaitSubflow(t, c.(*net.TCPConn))
				}
				require.NoError(t, netlab.Exchange(c, mptcpBytes))
				require.NoError(t, c.Close())
				require.NoError(t, <-served)
				if tc.name == "control: unbound" {
					// The lab works: an unbound listener takes a join
					// over B for the connection it serves.
					assert.True(t, capB.WaitFor(from, 5*time.Second, func(p netlab.Packet) bool {
						return p.Proto == unix.IPPROTO_TCP && p.DstPort == mptcpJoinPort && p.TCPFlags&netlab.TCPSyn != 0
					}), "a join arrives on B for an unbound Multipath TCP listener")
					return
				}
				assert.Equal(t, m.A, deviceOf(t, ln))
				assert.False(t, clientMultipath, "the bound listener's connection uses Multipath TCP")
				requireNoTCPOnB(t, m, capB, from)
			})
		}
	}
}

// Bind refuses a Multipath TCP socket and leaves it as it was; the hook
// refuses one that is handed to it outside net's fallback.
func TestMultipathRefused(t *testing.T) {
	t.Parallel()
	m := netlab.NewMultipathT(t)
	var ln net.Listener
	require.NoError(t, m.Client.Do(func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}))
	defer ln.Close()
	require.Equal(t, unix.IPPROTO_MPTCP, socketProtocol(t, ln.(*net.TCPListener)), "Go's default listener is Multipath TCP")
	err := bindtodev.Bind(ln.(*net.TCPListener), m.A)
	require.ErrorIs(t, err, bindtodev.ErrMultipathTCP)
	assert.Contains(t, err.Error(), strconv.Quote(m.A))
	assert.Equal(t, "", deviceOf(t, ln), "a refused socket is left as it was")

	var fd int
	require.NoError(t, m.Client.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_MPTCP)
		return err
	}))
	defer unix.Close(fd)
	err = bindtodev.Control(m.A)("tcp4", netip.AddrPortFrom(m.Dest4, 80).String(), fdConn(fd))
	require.ErrorIs(t, err, bindtodev.ErrMultipathTCP)
	assert.Contains(t, err.Error(), strconv.Quote(m.A))
}

// socketProtocol reads SO_PROTOCOL of c's socket.
func socketProtocol(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	var proto int
	var perr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		proto, perr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	}))
	require.NoError(t, perr)
	return proto
}

// awaitSubflow waits until the Multipath TCP connection c has an extra
// subflow, as the kernel counts them (MPTCP_INFO, mptcpi_subflows), so
// that a test that needs the path manager to have acted does not rely on
// how long the exchange took. The peer must be sending: the path manager
// acts once the connection is fully established.
func awaitSubflow(t *testing.T, c *net.TCPConn) {
	t.Helper()
	const mptcpInfo = 1 // MPTCP_INFO in include/uapi/linux/mptcp.h
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var info [64]byte
		var gerr error
		require.NoError(t, rc.Control(func(fd uintptr) {
			size := uint32(len(info))
			_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_MPTCP, mptcpInfo,
				uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
			if errno != 0 {
				gerr = errno
			}
		}))
		require.NoError(t, gerr, "MPTCP_INFO")
		if info[0] > 0 { // mptcpi_subflows: subflows besides the first
			return
		}
		require.True(t, time.Now().Before(deadline), "the path manager opened no subflow in 5 s")
		time.Sleep(5 * time.Millisecond)
	}
}
