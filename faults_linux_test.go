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
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// The fault tests change the bound interface under live sockets and
// capture every other interface, so they run one at a time.

// serveEcho starts a TCP echo server in h and returns its port and a
// function that stops it, closing its connections too: when a link is
// deleted, the server's side never learns that the client is gone.
func serveEcho(t *testing.T, h *netlab.Host) (uint16, func()) {
	t.Helper()
	ln, err := h.Listen("tcp", ":0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	stop := func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port), stop
}

// echo writes msg on c and reads it back within timeout.
func echo(c net.Conn, msg string, timeout time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	return readN(c, len(msg), timeout)
}

func readN(c net.Conn, n int, timeout time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

// A bound interface that is down fails every dial with ENETUNREACH; nothing
// fails over to B, and no packet leaves through another interface.
func TestInterfaceDownNoFailover(t *testing.T) { //nolint:paralleltest // changes the bound interface; captures every interface
	s := netlab.NewSeedT(t)
	w := watchOthers(t, s)
	pc, err := bindtodev.ListenPacket(s.A, "udp", ":0")
	require.NoError(t, err)
	defer pc.Close()
	require.NoError(t, s.Local.SetDown(s.A))
	for _, network := range []string{"tcp", "udp"} {
		for _, dest := range []netip.Addr{s.Dest4, s.Dest6} {
			_, err := bindtodev.Dial(s.A, network, whoAmIAddr(dest))
			assert.ErrorIs(t, err, syscall.ENETUNREACH, "%s %s", network, dest)
		}
	}
	for _, dest := range []netip.Addr{s.Dest4, s.Dest6} {
		_, err := pc.WriteTo([]byte(leakMarker), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dest, netlab.WhoAmIPort)))
		assert.ErrorIs(t, err, syscall.ENETUNREACH, "unconnected WriteTo %s", dest)
	}
	w.requireNoLeak(nil)
}

// An established connection survives its interface going down and up:
// what was written meanwhile is buffered and delivered after up, through A.
// That holds for IPv4, where a bound socket without a route assumes its
// destination is on link. IPv6 is different: Linux removes the interface's
// global IPv6 addresses (unless keep_addr_on_down) and its IPv6 routes when
// it goes down, and does not restore them, so an IPv6 connection stalls and
// new bound IPv6 dials fail with ENETUNREACH until they are restored; the
// test checks that nothing moves to B meanwhile.
func TestEstablishedAcrossDownUp(t *testing.T) { //nolint:paralleltest // changes the bound interface; captures every interface
	s := netlab.NewSeedT(t)
	port, _ := serveEcho(t, s.PeerA)
	w := watchOthers(t, s)
	d := &bindtodev.Dialer{Interface: s.A}
	c, err := d.Dial("tcp", netip.AddrPortFrom(s.Dest4, port).String())
	require.NoError(t, err)
	defer c.Close()
	c6, err := d.Dial("tcp", netip.AddrPortFrom(s.Dest6, port).String())
	require.NoError(t, err)
	defer c6.Close()
	for _, conn := range []net.Conn{c, c6} {
		got, err := echo(conn, "before", 5*time.Second)
		require.NoError(t, err)
		require.Equal(t, "before", got)
	}

	require.NoError(t, s.Local.SetDown(s.A))
	_, err = c.Write([]byte("while down"))
	require.NoError(t, err, "the write is buffered")
	_, err = readN(c, 1, 300*time.Millisecond)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "nothing is delivered while A is down")
	_, _ = c6.Write([]byte("while down"))
	require.NoError(t, s.Local.SetUp(s.A))
	got, err := readN(c, len("while down"), 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "while down", got, "delivered after up")
	got, err = echo(c, "after", 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "after", got)
	assert.Equal(t, s.A, deviceOf(t, c))
	_, err = readN(c6, 1, 500*time.Millisecond)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "IPv6 lost its source address with the down")

	// It is gone for new dials too: the bound dial fails rather than
	// use B.
	_, err = d.Dial("tcp", netip.AddrPortFrom(s.Dest6, port).String())
	assert.ErrorIs(t, err, syscall.ENETUNREACH, "no IPv6 address or route on A after down and up")

	w.requireNoLeak(nil)
}

// settleGoroutines waits until at most n goroutines run, and returns the
// count it saw last.
func settleGoroutines(n int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := runtime.NumGoroutine()
		if got <= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A deleted interface: new dials fail with ENODEV naming it; established
// connections whose peer is gone report an error instead of hanging (with
// TCP keepalive, or TCP_USER_TIMEOUT for unacknowledged data); a listener
// blocks in Accept without error and is never re-bound; no packet leaves
// through another interface, nothing panics and no goroutine is left.
func TestInterfaceDeleted(t *testing.T) { //nolint:paralleltest // deletes the bound interface; counts goroutines
	s := netlab.NewSeedT(t)
	before := runtime.NumGoroutine()
	port, stopEcho := serveEcho(t, s.PeerA)
	w := watchOthers(t, s)

	// Keepalive finds an idle connection's peer gone.
	kd := &bindtodev.Dialer{Interface: s.A}
	kd.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: 500 * time.Millisecond, Count: 2}
	idle, err := kd.Dial("tcp", netip.AddrPortFrom(s.Dest4, port).String())
	require.NoError(t, err)
	defer idle.Close()
	// TCP_USER_TIMEOUT bounds how long written data may stay
	// unacknowledged.
	ud := &bindtodev.Dialer{Interface: s.A}
	ud.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 1500)
		}); err != nil {
			return err
		}
		return serr
	}
	busy, err := ud.Dial("tcp", netip.AddrPortFrom(s.Dest6, port).String())
	require.NoError(t, err)
	defer busy.Close()
	for _, c := range []net.Conn{idle, busy} {
		got, err := echo(c, "hello", 5*time.Second)
		require.NoError(t, err)
		require.Equal(t, "hello", got)
	}
	ln, err := bindtodev.Listen(s.A, "tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	pc, err := bindtodev.ListenPacket(s.A, "udp", ":0")
	require.NoError(t, err)
	defer pc.Close()

	idleErr := make(chan error, 1)
	go func() {
		_, err := idle.Read(make([]byte, 1)) // no deadline: must end by itself
		idleErr <- err
	}()

	require.NoError(t, s.Local.Delete(s.A))

	for _, network := range []string{"tcp", "udp"} {
		for _, dest := range []netip.Addr{s.Dest4, s.Dest6} {
			_, err := bindtodev.Dial(s.A, network, whoAmIAddr(dest))
			assert.ErrorIs(t, err, syscall.ENODEV, "%s %s", network, dest)
			assert.ErrorContains(t, err, fmt.Sprintf("%q", s.A), "the error names the interface")
		}
	}
	_, err = bindtodev.Listen(s.A, "tcp", ":0")
	assert.ErrorIs(t, err, syscall.ENODEV)
	for _, c := range []syscall.Conn{idle.(*net.TCPConn), ln.(*net.TCPListener), pc.(*net.UDPConn)} {
		_, err := bindtodev.Device(c)
		assert.ErrorIs(t, err, syscall.ENODEV, "Device of %T reports the interface gone", c)
	}
	_, err = pc.WriteTo([]byte(leakMarker), net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.Dest4, netlab.WhoAmIPort)))
	assert.ErrorIs(t, err, syscall.ENODEV, "an old packet socket cannot send")

	// Written data is buffered, then the user timeout ends the
	// connection.
	_, err = busy.Write([]byte("lost"))
	require.NoError(t, err, "the write is buffered")
	_, err = readN(busy, 1, 20*time.Second)
	// The kernel reports the timeout, or the routing failure of its last
	// retransmission.
	assert.True(t, errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.ENETUNREACH),
		"TCP_USER_TIMEOUT ends a connection whose peer is gone: %v", err)

	select {
	case err := <-idleErr:
		assert.ErrorIs(t, err, syscall.ETIMEDOUT, "keepalive ends an idle connection whose peer is gone")
	case <-time.After(20 * time.Second):
		t.Fatal("a read on an idle connection hangs after its interface was deleted")
	}

	// The listener neither fails nor wakes up: Accept blocks.
	require.NoError(t, ln.(*net.TCPListener).SetDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = ln.Accept()
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "Accept blocks on a listener whose interface is gone")

	w.requireNoLeak(nil)
	idle.Close()
	busy.Close()
	ln.Close()
	pc.Close()
	stopEcho()
	w.stop()
	w.caps = nil
	after := settleGoroutines(before)
	assert.LessOrEqual(t, after, before, "goroutines before and after")
	t.Logf("goroutines: %d before, %d after", before, after)
}

// An interface deleted and created again with the same name has a new
// index: sockets bound before stay dead, a listener bound before refuses
// connections arriving on the new interface (it is never re-bound), and new
// dials work through the new interface.
func TestInterfaceRecreated(t *testing.T) { //nolint:paralleltest // deletes the bound interface; captures every interface
	s := netlab.NewSeedT(t)
	old, err := s.Local.Link(s.A)
	require.NoError(t, err)
	ln, err := bindtodev.Listen(s.A, "tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	lport := uint16(ln.Addr().(*net.TCPAddr).Port)
	pc, err := bindtodev.ListenPacket(s.A, "udp", ":0")
	require.NoError(t, err)
	defer pc.Close()

	require.NoError(t, s.Local.Delete(s.A))
	peer, err := s.NewHost("A2")
	require.NoError(t, err)
	require.NoError(t, s.Veth(s.A, peer, "eth0"))
	require.NoError(t, s.Local.AddAddr(s.A, netip.PrefixFrom(s.LocalA4, 25)))
	require.NoError(t, peer.AddAddr("eth0", netip.PrefixFrom(s.PeerA4, 25)))
	require.NoError(t, netlab.ServeWhoAmI(peer, s.PeerA4))
	recreated, err := s.Local.Link(s.A)
	require.NoError(t, err)
	require.NotEqual(t, old.Index, recreated.Index, "a new index")
	w := watchOthers(t, s)

	_, err = bindtodev.Device(pc.(*net.UDPConn))
	assert.ErrorIs(t, err, syscall.ENODEV, "the old socket stays bound to the old index")
	_, err = pc.WriteTo([]byte(leakMarker), net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.PeerA4, netlab.WhoAmIPort)))
	assert.ErrorIs(t, err, syscall.ENODEV, "the old socket cannot send")
	_, err = peer.Dial("tcp", netip.AddrPortFrom(s.LocalA4, lport).String())
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the old listener does not accept from the new interface")

	for _, network := range []string{"tcp", "udp"} {
		c, err := bindtodev.Dial(s.A, network, whoAmIAddr(s.PeerA4))
		require.NoError(t, err, network)
		assert.Equal(t, s.A, deviceOf(t, c))
		assert.Equal(t, "A2", ask(t, network, c).Peer, "a new dial goes through the new interface")
	}
	lc := &bindtodev.ListenConfig{Interface: s.A}
	ln2, err := lc.Listen(context.Background(), "tcp", fmt.Sprintf(":%d", lport))
	require.NoError(t, err, "a re-created listener works")
	defer ln2.Close()
	c, err := peer.Dial("tcp", netip.AddrPortFrom(s.LocalA4, lport).String())
	require.NoError(t, err)
	c.Close()
	a, err := ln2.Accept()
	require.NoError(t, err)
	a.Close()
	w.requireNoLeak(nil)
}
