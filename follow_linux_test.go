//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// The follow tests delete and re-create interfaces under live sockets. A
// follow lab has an interface A that comes and goes, with peer PeerA behind
// it, and an interface B that stays, with PeerB behind it; PeerB routes the
// local host's A addresses through B, so that it can try to reach the
// following sockets by the wrong way.
type followLab struct {
	*netlab.Lab
	t            *testing.T
	A, B         string
	PeerA, PeerB *netlab.Host
	// Addresses of the local ends and of the peers.
	LocalA4, PeerA4, LocalB4, PeerB4 netip.Addr
	LocalA6, PeerA6, LocalB6, PeerB6 netip.Addr
}

func newFollowLab(t *testing.T, withA bool) *followLab {
	t.Helper()
	l := netlab.NewT(t)
	n := byte(l.N)
	f := &followLab{
		Lab: l, t: t,
		A:       fmt.Sprintf("fa%d", l.N),
		B:       fmt.Sprintf("fb%d", l.N),
		LocalA4: netip.AddrFrom4([4]byte{198, 18, n, 1}),
		PeerA4:  netip.AddrFrom4([4]byte{198, 18, n, 2}),
		LocalB4: netip.AddrFrom4([4]byte{198, 18, n, 129}),
		PeerB4:  netip.AddrFrom4([4]byte{198, 18, n, 130}),
		LocalA6: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, n, 0, 0xa, 15: 1}),
		PeerA6:  netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, n, 0, 0xa, 15: 2}),
		LocalB6: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, n, 0, 0xb, 15: 1}),
		PeerB6:  netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, n, 0, 0xb, 15: 2}),
	}
	var err error
	f.PeerA, err = l.NewHost("A")
	require.NoError(t, err)
	f.PeerB, err = l.NewHost("B")
	require.NoError(t, err)
	steps := []func() error{
		func() error { return l.Veth(f.B, f.PeerB, "eth0") },
		func() error { return l.Local.AddAddr(f.B, netip.PrefixFrom(f.LocalB4, 25)) },
		func() error { return l.Local.AddAddr(f.B, netip.PrefixFrom(f.LocalB6, 64)) },
		func() error { return f.PeerB.AddAddr("eth0", netip.PrefixFrom(f.PeerB4, 25)) },
		func() error { return f.PeerB.AddAddr("eth0", netip.PrefixFrom(f.PeerB6, 64)) },
		func() error {
			return f.PeerB.AddRoute(netlab.Route{Dst: netip.PrefixFrom(f.LocalA4, 32), Gateway: f.LocalB4, Dev: "eth0"})
		},
		func() error {
			return f.PeerB.AddRoute(netlab.Route{Dst: netip.PrefixFrom(f.LocalA6, 128), Gateway: f.LocalB6, Dev: "eth0"})
		},
	}
	for _, step := range steps {
		require.NoError(t, step())
	}
	if withA {
		f.createA()
	}
	return f
}

// createA creates A, with its peer end and addresses, up.
func (f *followLab) createA() {
	f.t.Helper()
	require.NoError(f.t, f.createAErr())
}

func (f *followLab) createAErr() error {
	steps := []func() error{
		func() error { return f.Veth(f.A, f.PeerA, "eth0") },
		func() error { return f.Local.AddAddr(f.A, netip.PrefixFrom(f.LocalA4, 25)) },
		func() error { return f.Local.AddAddr(f.A, netip.PrefixFrom(f.LocalA6, 64)) },
		func() error { return f.PeerA.AddAddr("eth0", netip.PrefixFrom(f.PeerA4, 25)) },
		func() error { return f.PeerA.AddAddr("eth0", netip.PrefixFrom(f.PeerA6, 64)) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// createAReady creates A with its addresses assigned before it comes up.
func (f *followLab) createAReady() {
	f.t.Helper()
	require.NoError(f.t, f.VethReady(f.A, f.PeerA, "eth0",
		[]netip.Prefix{netip.PrefixFrom(f.LocalA4, 25), netip.PrefixFrom(f.LocalA6, 64)},
		[]netip.Prefix{netip.PrefixFrom(f.PeerA4, 25), netip.PrefixFrom(f.PeerA6, 64)}))
}

// deleteA deletes A and, with it, its peer end.
func (f *followLab) deleteA() {
	f.t.Helper()
	require.NoError(f.t, f.Local.Delete(f.A))
}

// dialRetry dials address from h until it connects, for up to 5 s: a
// following listener re-listens moments after its interface is back.
func dialRetry(h *netlab.Host, address string) (net.Conn, int, error) {
	deadline := time.Now().Add(5 * time.Second)
	for tries := 1; ; tries++ {
		c, err := h.Dial("tcp", address)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			return c, tries, err
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// acceptAll accepts from ln until it fails, and hands each connection on.
func acceptAll(ln net.Listener) (<-chan net.Conn, <-chan error) {
	conns := make(chan net.Conn, 16)
	errc := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				errc <- err
				close(conns)
				return
			}
			conns <- c
		}
	}()
	return conns, errc
}

func recvConn(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c, ok := <-conns:
		require.True(t, ok, "the listener stopped accepting")
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted within 5 s")
		return nil
	}
}

// readReturns reports how long a Read blocked on c takes to return once
// trigger has run, or fails t after limit.
func readReturns(t *testing.T, c net.Conn, limit time.Duration, trigger func()) (time.Duration, error) {
	t.Helper()
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		close(started)
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	<-started
	// Let the reader block in the kernel; a Read that returns at once
	// would be caught below either way.
	time.Sleep(10 * time.Millisecond)
	start := time.Now()
	trigger()
	select {
	case err := <-done:
		return time.Since(start), err
	case <-time.After(limit):
		return limit, errStillBlocked
	}
}

var errStillBlocked = errors.New("Read still blocked")

// A following listener and a following dial started before the interface
// exists succeed once it appears; without Follow both fail with ENODEV at
// once.
func TestFollowStartup(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, false)
	ctx := context.Background()

	_, err := bindtodev.Listen(f.A, "tcp", ":0")
	require.ErrorIs(t, err, syscall.ENODEV, "without Follow")
	_, err = bindtodev.Dial(f.A, "tcp", netip.AddrPortFrom(f.PeerA4, 1).String())
	require.ErrorIs(t, err, syscall.ENODEV, "without Follow")

	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	start := time.Now()
	ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(f.LocalA4, 0).String())
	require.NoError(t, err)
	defer ln.Close()
	pc, err := lc.ListenPacket(ctx, "udp", ":0")
	require.NoError(t, err)
	defer pc.Close()
	assert.Less(t, time.Since(start), time.Second, "Listen returns at once")
	assert.Equal(t, netip.AddrPortFrom(f.LocalA4, 0).String(), ln.Addr().String(), "the port is chosen by the first socket")

	// WriteTo while A is absent sends nothing and says why.
	_, err = pc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.PeerA4, 9)))
	require.ErrorIs(t, err, syscall.ENODEV)

	// A server behind A for the dial, listening before A exists.
	peerLn, err := f.PeerA.Listen("tcp", ":7070")
	require.NoError(t, err)
	defer peerLn.Close()
	served := make(chan error, 1)
	go func() {
		c, err := peerLn.Accept()
		if err == nil {
			c.Close()
		}
		served <- err
	}()
	dialed := make(chan net.Conn, 1)
	dialErr := make(chan error, 1)
	go func() {
		d := &bindtodev.Dialer{Interface: f.A, Follow: true}
		d.Timeout = 20 * time.Second
		c, err := d.Dial("tcp", netip.AddrPortFrom(f.PeerA4, 7070).String())
		dialErr <- err
		dialed <- c
	}()
	conns, _ := acceptAll(ln)

	// Nothing happens before A exists.
	select {
	case err := <-dialErr:
		t.Fatalf("the dial ended before the interface existed: %v", err)
	case <-time.After(100 * time.Millisecond):
	}

	// A comes up with its addresses: the dial, waiting for IFF_UP, finds
	// them (see TestFollowAddressAfterUp for the other order).
	f.createAReady()
	require.NoError(t, <-dialErr)
	c := <-dialed
	defer c.Close()
	assert.Equal(t, f.A, deviceOf(t, c))
	require.NoError(t, <-served)

	port := portOfAddr(t, ln.Addr())
	require.NotZero(t, port, "Addr reports the port once a socket listens")
	pc2, _, err := dialRetry(f.PeerA, netip.AddrPortFrom(f.LocalA4, port).String())
	require.NoError(t, err)
	defer pc2.Close()
	acc := recvConn(t, conns)
	defer acc.Close()
	_, isTCP := acc.(*net.TCPConn)
	assert.True(t, isTCP, "accepted connections stay *net.TCPConn, got %T", acc)
	assert.Equal(t, f.A, deviceOf(t, acc))

	// The packet socket listens too, on A only.
	udpPort := portOfAddr(t, pc.LocalAddr())
	require.NotZero(t, udpPort)
	peerUDP, err := f.PeerA.ListenPacket("udp", netip.AddrPortFrom(f.PeerA4, 0).String())
	require.NoError(t, err)
	defer peerUDP.Close()
	_, err = pc.WriteTo([]byte("hello"), peerUDP.LocalAddr())
	require.NoError(t, err)
	buf := make([]byte, 16)
	require.NoError(t, peerUDP.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, from, err := peerUDP.ReadFrom(buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:n]))
	assert.Equal(t, udpPort, portOfAddr(t, from))
}

func portOfAddr(t *testing.T, a net.Addr) uint16 {
	t.Helper()
	switch a := a.(type) {
	case *net.TCPAddr:
		return uint16(a.Port)
	case *net.UDPAddr:
		return uint16(a.Port)
	}
	t.Fatalf("%T has no port", a)
	return 0
}

// A re-created interface is announced up before it has addresses: a
// following listener on one of its addresses waits for the address
// (EADDRNOTAVAIL until then, never reported within the grace period) and
// listens once it is assigned, for IPv4 and IPv6.
func TestFollowAddressAfterUp(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, false)
	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	var lns []net.Listener
	for _, a := range []netip.Addr{f.LocalA4, f.LocalA6} {
		ln, err := lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(a, 0).String())
		require.NoError(t, err)
		defer ln.Close()
		lns = append(lns, ln)
	}
	require.NoError(t, f.Veth(f.A, f.PeerA, "eth0"))
	require.NoError(t, f.PeerA.AddAddr("eth0", netip.PrefixFrom(f.PeerA4, 25)))
	require.NoError(t, f.PeerA.AddAddr("eth0", netip.PrefixFrom(f.PeerA6, 64)))
	// Up, no address yet: a socket on the address cannot exist.
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, f.Local.AddAddr(f.A, netip.PrefixFrom(f.LocalA4, 25)))
	require.NoError(t, f.Local.AddAddr(f.A, netip.PrefixFrom(f.LocalA6, 64)))
	for i, a := range []netip.Addr{f.LocalA4, f.LocalA6} {
		conns, _ := acceptAll(lns[i])
		var port uint16
		deadline := time.Now().Add(5 * time.Second)
		for port = portOfAddr(t, lns[i].Addr()); port == 0 && time.Now().Before(deadline); port = portOfAddr(t, lns[i].Addr()) {
			time.Sleep(2 * time.Millisecond)
		}
		require.NotZero(t, port, "no socket on %s", a)
		c, _, err := dialRetry(f.PeerA, netip.AddrPortFrom(a, port).String())
		require.NoError(t, err)
		c.Close()
		acc := recvConn(t, conns)
		acc.Close()
	}
}

// The bounce test: a following listener survives 100 deletions and
// re-creations of its interface. After each, a peer behind the new
// interface connects, on the port chosen first, and the connection
// accepted before the deletion has ended; a peer behind B never gets in,
// and nothing of the listener's leaves through B.
func TestFollowBounces(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	const cycles = 100
	f := newFollowLab(t, true)
	capB, err := f.Local.Capture(f.B)
	require.NoError(t, err)
	defer func() { _, _, _ = capB.Stop() }()

	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	ln, err := lc.Listen(context.Background(), "tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	port := portOfAddr(t, ln.Addr())
	conns, _ := acceptAll(ln)

	var probes []netip.AddrPort // peer B's sources
	probeB := func(dst netip.Addr) {
		t.Helper()
		from := capB.Len()
		c, err := f.PeerB.Dial("tcp", netip.AddrPortFrom(dst, port).String())
		if err == nil {
			c.Close()
			t.Fatalf("peer B connected to %s through B", dst)
		}
		require.ErrorIs(t, err, syscall.ECONNREFUSED, "peer B's SYN is refused by the kernel")
		// The capture saw the refusal, so it is live up to here.
		require.True(t, capB.WaitFor(from, 5*time.Second, func(p netlab.Packet) bool {
			return p.Outgoing && p.TCPFlags&netlab.TCPRst != 0 && p.SrcPort == port
		}), "the capture on B did not see the refusal")
		for _, p := range capB.Packets()[from:] {
			if !p.Outgoing && p.DstPort == port {
				probes = append(probes, netip.AddrPortFrom(p.Src, p.SrcPort))
			}
		}
	}

	start := time.Now()
	totalTries := 0
	var prev net.Conn
	for i := range cycles {
		peerConn, tries, err := dialRetry(f.PeerA, netip.AddrPortFrom(f.LocalA4, port).String())
		require.NoError(t, err, "cycle %d", i)
		totalTries += tries
		acc := recvConn(t, conns)
		require.Equal(t, f.A, deviceOf(t, acc), "cycle %d", i)
		if i%10 == 0 {
			probeB(f.LocalA4)
			probeB(f.LocalB4)
		}
		if prev != nil {
			prev.Close()
		}
		peerConn.Close()
		// The accepted connection ends with its interface.
		d, err := readReturns(t, acc, time.Second, f.deleteA)
		require.NotErrorIs(t, err, errStillBlocked, "cycle %d: Read on an accepted connection still blocked %v after the deletion", i, d)
		prev = acc
		f.createA()
	}
	if prev != nil {
		prev.Close()
	}
	elapsed := time.Since(start)
	t.Logf("%d cycles in %v (%v each); %d connection attempts", cycles, elapsed, elapsed/cycles, totalTries)
	assert.Equal(t, port, portOfAddr(t, ln.Addr()), "the first port is kept")

	// Sentinel: a datagram from peer B seen on B's capture proves that
	// the capture has read up to now.
	from := capB.Len()
	sentinel, err := f.PeerB.Dial("udp", netip.AddrPortFrom(f.LocalB4, 9).String())
	require.NoError(t, err)
	_, _ = sentinel.Write([]byte(leakMarker))
	sentinel.Close()
	require.True(t, capB.WaitFor(from, 5*time.Second, func(p netlab.Packet) bool {
		return !p.Outgoing && p.Proto == unix.IPPROTO_UDP && p.DstPort == 9
	}), "sentinel not seen on B")
	capB.Flush()
	isProbe := map[netip.AddrPort]bool{}
	for _, p := range probes {
		isProbe[p] = true
	}
	var leaks []netlab.Packet
	for _, p := range capB.Packets() {
		switch {
		case !p.Outgoing:
		case p.Proto != unix.IPPROTO_TCP && p.Proto != unix.IPPROTO_UDP:
			// ARP, neighbour discovery and ICMP: the kernel's own.
		case p.Proto == unix.IPPROTO_UDP && p.DstPort == 9:
		case p.TCPFlags&netlab.TCPRst != 0 && p.PayloadLen == 0 && isProbe[netip.AddrPortFrom(p.Dst, p.DstPort)]:
			// The kernel's refusal of peer B's own attempts.
		default:
			leaks = append(leaks, p)
		}
	}
	assert.Empty(t, leaks, "packets left through B")
	assert.NotEmpty(t, probes)
	_, stats, err := capB.Stop()
	require.NoError(t, err)
	assert.Zero(t, stats.Drops)
}

// A long-lived connection with a blocked Read: when its interface is
// deleted, the Read of a following connection returns within 1 s, and
// Write fails; the same connection without Follow stays blocked (shown
// here for 1.5 s). TCP over IPv4 and IPv6, and connected UDP.
func TestFollowDeletion(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, false)
	f.createAReady()
	echoPort, _ := serveEcho(t, f.PeerA)
	udpPeer, err := f.PeerA.ListenPacket("udp", ":0")
	require.NoError(t, err)
	defer udpPeer.Close()
	udpPort := portOfAddr(t, udpPeer.LocalAddr())

	type conn struct {
		name   string
		c      net.Conn
		follow bool
	}
	var conns []conn
	for _, follow := range []bool{true, false} {
		d := &bindtodev.Dialer{Interface: f.A, Follow: follow}
		for _, dst := range []netip.Addr{f.PeerA4, f.PeerA6} {
			c, err := d.Dial("tcp", netip.AddrPortFrom(dst, echoPort).String())
			require.NoError(t, err)
			defer c.Close()
			got, err := echo(c, "before", 5*time.Second)
			require.NoError(t, err)
			require.Equal(t, "before", got)
			require.NoError(t, c.SetReadDeadline(time.Time{}))
			conns = append(conns, conn{fmt.Sprintf("tcp %s follow=%v", dst, follow), c, follow})
		}
		c, err := d.Dial("udp", netip.AddrPortFrom(f.PeerA4, udpPort).String())
		require.NoError(t, err)
		defer c.Close()
		conns = append(conns, conn{fmt.Sprintf("udp follow=%v", follow), c, follow})
	}
	type result struct {
		err  error
		took time.Duration
	}
	results := make([]chan result, len(conns))
	var deleted time.Time
	deletedSet := make(chan struct{})
	for i, c := range conns {
		results[i] = make(chan result, 1)
		go func() {
			_, err := c.c.Read(make([]byte, 16))
			<-deletedSet
			results[i] <- result{err, time.Since(deleted)}
		}()
	}
	time.Sleep(20 * time.Millisecond) // the readers block in the kernel
	deleted = time.Now()
	f.deleteA()
	close(deletedSet)
	for i, c := range conns {
		limit := time.Second
		if !c.follow {
			limit = 1500 * time.Millisecond
		}
		select {
		case r := <-results[i]:
			if !c.follow {
				t.Errorf("%s: Read returned after %v (%v) without Follow", c.name, r.took, r.err)
				continue
			}
			assert.Less(t, r.took, time.Second, c.name)
			t.Logf("%s: Read returned %v after %v", c.name, r.err, r.took)
			if c.name[:3] == "tcp" {
				assert.ErrorIs(t, r.err, io.EOF, c.name)
				_, err := c.c.Write([]byte("after"))
				assert.ErrorIs(t, err, syscall.EPIPE, "%s: Write after the end", c.name)
			} else {
				assert.ErrorIs(t, r.err, os.ErrDeadlineExceeded, c.name)
				_, err := c.c.Write([]byte("after"))
				// The kernel: the route or the device is gone.
				assert.True(t, errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENETUNREACH),
					"%s: Write after the end: %v", c.name, err)
			}
			_, err := bindtodev.Device(c.c.(syscall.Conn))
			assert.ErrorIs(t, err, syscall.ENODEV, "%s: Device tells a deleted interface from a closed peer", c.name)
		case <-time.After(limit):
			if c.follow {
				t.Errorf("%s: Read still blocked %v after the deletion", c.name, limit)
			}
		}
	}
	for _, c := range conns {
		c.c.Close() // ends the readers without Follow
	}
}

// Down and up is not deletion: a following listener keeps its socket,
// and its accepted connection and a following dialed connection carry
// data after up (IPv4; see TestEstablishedAcrossDownUp for IPv6).
func TestFollowDownUp(t *testing.T) { //nolint:paralleltest // changes the interface under live sockets
	f := newFollowLab(t, false)
	f.createAReady()
	echoPort, _ := serveEcho(t, f.PeerA)
	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	ln, err := lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(f.LocalA4, 0).String())
	require.NoError(t, err)
	defer ln.Close()
	pc, err := lc.ListenPacket(context.Background(), "udp", netip.AddrPortFrom(f.LocalA4, 0).String())
	require.NoError(t, err)
	defer pc.Close()
	conns, _ := acceptAll(ln)
	address := netip.AddrPortFrom(f.LocalA4, portOfAddr(t, ln.Addr())).String()
	peer, err := f.PeerA.Dial("tcp", address)
	require.NoError(t, err)
	defer peer.Close()
	acc := recvConn(t, conns)
	defer acc.Close()
	d := &bindtodev.Dialer{Interface: f.A, Follow: true}
	out, err := d.Dial("tcp", netip.AddrPortFrom(f.PeerA4, echoPort).String())
	require.NoError(t, err)
	defer out.Close()

	require.NoError(t, f.Local.SetDown(f.A))
	// While A is down, nothing is delivered and nothing ends.
	_, err = readN(acc, 1, 300*time.Millisecond)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the accepted connection lives on while A is down")
	_, err = out.Write([]byte("while down"))
	require.NoError(t, err, "buffered")
	require.NoError(t, f.Local.SetUp(f.A))

	got, err := readN(out, len("while down"), 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "while down", got)
	_, err = peer.Write([]byte("ping"))
	require.NoError(t, err)
	got, err = readN(acc, 4, 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "ping", got)
	for _, c := range []any{ln, pc} {
		listening, dropped := bindtodev.FollowState(c)
		assert.True(t, listening)
		assert.Zero(t, dropped, "%T: down and up closed the socket", c)
	}
	peer2, err := f.PeerA.Dial("tcp", address)
	require.NoError(t, err)
	peer2.Close()
	recvConn(t, conns).Close()
}
