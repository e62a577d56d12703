//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
)

// A following packet socket: ReadFrom waits while the interface is
// absent, through a deletion, and receives on the new interface at the
// port chosen first; WriteTo while absent fails with ENODEV and sends
// nothing; the read deadline holds while waiting.
func TestFollowPacket(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, false)
	f.createAReady()
	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	pc, err := lc.ListenPacket(context.Background(), "udp", ":0")
	require.NoError(t, err)
	defer pc.Close()
	port := portOfAddr(t, pc.LocalAddr())
	type read struct {
		msg  string
		from net.Addr
		err  error
	}
	reads := make(chan read, 4)
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			reads <- read{string(buf[:n]), from, err}
			if err != nil {
				return
			}
		}
	}()
	f.deleteA()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.PeerA4, 9))
	_, err = pc.WriteTo([]byte(leakMarker), dst)
	require.ErrorIs(t, err, syscall.ENODEV, "WriteTo while absent")
	select {
	case r := <-reads:
		t.Fatalf("ReadFrom returned while the interface was absent: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	f.createAReady()
	// Send until the new socket receives: it opens moments after up.
	sender, err := f.PeerA.Dial("udp", netip.AddrPortFrom(f.LocalA4, port).String())
	require.NoError(t, err)
	defer sender.Close()
	var r read
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		_, _ = sender.Write([]byte("back"))
		select {
		case r = <-reads:
			got = true
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			listening, dropped := bindtodev.FollowState(pc)
			buf := make([]byte, 1<<20)
			t.Fatalf("the packet socket did not receive on the new interface (listening %v, dropped %d, local %v, %s)\n%s",
				listening, dropped, pc.LocalAddr(), bindtodev.WatcherUsers(), buf[:runtime.Stack(buf, true)])
		}
	}
	require.NoError(t, r.err)
	assert.Equal(t, "back", r.msg)
	assert.Equal(t, port, portOfAddr(t, pc.LocalAddr()), "the first port is kept")
	// The read deadline applies while the interface is absent too.
	f.deleteA()
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	for {
		select {
		case r := <-reads:
			if r.err == nil {
				continue // one of the datagrams sent above
			}
			require.ErrorIs(t, r.err, os.ErrDeadlineExceeded)
		case <-time.After(5 * time.Second):
			t.Fatal("the read deadline did not end the wait")
		}
		break
	}
}

// A failure to listen again reaches Accept within 5 s as an error that
// wraps its cause: here the port was taken, while the interface was away,
// by an unbound socket. The listener goes on following: once the port is
// free, the next change of the interface (down and up) listens again.
func TestFollowRelistenFailure(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, true)
	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	ln, err := lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(f.LocalA4, 0).String())
	require.NoError(t, err)
	defer ln.Close()
	port := portOfAddr(t, ln.Addr())
	f.deleteA()
	squatter, err := net.Listen("tcp4", fmt.Sprintf(":%d", port))
	require.NoError(t, err)
	f.createAReady()
	accepted := make(chan error, 1)
	start := time.Now()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	select {
	case err := <-accepted:
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		assert.Contains(t, err.Error(), fmt.Sprintf("%q", f.A))
		t.Logf("Accept returned after %v: %v", time.Since(start), err)
	case <-time.After(5 * time.Second):
		t.Fatal("the failure did not reach Accept within 5 s")
	}
	squatter.Close()
	require.NoError(t, f.Local.SetDown(f.A))
	require.NoError(t, f.Local.SetUp(f.A))
	// Attempts made while the port was still taken may report again.
	conns := make(chan net.Conn, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			if err == nil {
				conns <- c
			}
			close(conns)
			return
		}
	}()
	c, _, err := dialRetry(f.PeerA, netip.AddrPortFrom(f.LocalA4, port).String())
	require.NoError(t, err)
	c.Close()
	recvConn(t, conns).Close()
}

// NetDialer with Follow waits for the interface inside its hook, within
// the dial's context, and its connections do not end with the interface,
// as documented; NetListenConfig ignores Follow and fails with ENODEV at
// once.
func TestFollowNetTypes(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, false)
	d := &bindtodev.Dialer{Interface: f.A, Follow: true}
	nd := d.NetDialer()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := nd.DialContext(ctx, "tcp", netip.AddrPortFrom(f.PeerA4, 7).String())
	cancel()
	require.ErrorIs(t, err, syscall.ENODEV)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the hook waited for the dial's context")

	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	start := time.Now()
	_, err = lc.NetListenConfig().Listen(context.Background(), "tcp", ":0")
	require.ErrorIs(t, err, syscall.ENODEV)
	assert.Less(t, time.Since(start), time.Second)

	port, _ := serveEcho(t, f.PeerA)
	dialed := make(chan error, 1)
	var c net.Conn
	go func() {
		var err error
		c, err = nd.DialContext(context.Background(), "tcp", netip.AddrPortFrom(f.PeerA4, port).String())
		dialed <- err
	}()
	time.Sleep(50 * time.Millisecond)
	f.createAReady()
	select {
	case err := <-dialed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the NetDialer's dial did not connect once the interface appeared")
	}
	defer c.Close()
	assert.Equal(t, f.A, deviceOf(t, c))
	d2, err := readReturns(t, c, 500*time.Millisecond, f.deleteA)
	assert.ErrorIs(t, err, errStillBlocked, "a NetDialer connection is not ended (returned after %v)", d2)
}

// WaitForInterface returns at once for an interface that exists and is
// up, waits for one that is absent or down, and fails with the context's
// error and ENODEV; an invalid name fails before anything.
func TestWaitForInterface(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, false)
	err := bindtodev.WaitForInterface(context.Background(), "bad/name")
	require.ErrorIs(t, err, bindtodev.ErrInvalidName)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err = bindtodev.WaitForInterface(ctx, f.A)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, syscall.ENODEV)
	assert.Contains(t, err.Error(), fmt.Sprintf("%q", f.A))

	waited := make(chan error, 1)
	go func() { waited <- bindtodev.WaitForInterface(context.Background(), f.A) }()
	require.NoError(t, f.Veth(f.A, f.PeerA, "eth0"))
	select {
	case err := <-waited:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForInterface did not return when the interface appeared")
	}
	require.NoError(t, bindtodev.WaitForInterface(context.Background(), f.A), "present and up")

	require.NoError(t, f.Local.SetDown(f.A))
	go func() { waited <- bindtodev.WaitForInterface(context.Background(), f.A) }()
	select {
	case err := <-waited:
		t.Fatalf("WaitForInterface returned for a down interface: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, f.Local.SetUp(f.A))
	select {
	case err := <-waited:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForInterface did not return when the interface came up")
	}
}

// A rename is the old name's deletion: a following listener closes its
// socket and a following connection ends; a new interface of the name is
// followed again.
func TestFollowRename(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, true)
	port, _ := serveEcho(t, f.PeerA)
	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	ln, err := lc.Listen(context.Background(), "tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	d := &bindtodev.Dialer{Interface: f.A, Follow: true}
	c, err := d.Dial("tcp", netip.AddrPortFrom(f.PeerA4, port).String())
	require.NoError(t, err)
	defer c.Close()
	other := fmt.Sprintf("fr%d", f.N)
	took, err := readReturns(t, c, time.Second, func() {
		require.NoError(t, f.Local.SetDown(f.A))
		require.NoError(t, f.Local.RenameLink(f.A, other))
	})
	require.NotErrorIs(t, err, errStillBlocked, "the connection outlived the rename by %v", took)
	deadline := time.Now().Add(5 * time.Second)
	for listening, _ := bindtodev.FollowState(ln); listening && time.Now().Before(deadline); listening, _ = bindtodev.FollowState(ln) {
		time.Sleep(time.Millisecond)
	}
	listening, dropped := bindtodev.FollowState(ln)
	assert.False(t, listening)
	assert.Equal(t, uint64(1), dropped)
	require.NoError(t, f.Local.Delete(other))
	f.createAReady()
	conns, _ := acceptAll(ln)
	pc, _, err := dialRetry(f.PeerA, netip.AddrPortFrom(f.LocalA4, portOfAddr(t, ln.Addr())).String())
	require.NoError(t, err)
	pc.Close()
	recvConn(t, conns).Close()
}

// After an overrun (ENOBUFS) the watcher reads the link table again: an
// interface deleted and re-created while its events were lost is
// followed as if they had arrived.
func TestFollowResync(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, true)
	port, _ := serveEcho(t, f.PeerA)
	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	ln, err := lc.Listen(context.Background(), "tcp4", ":0")
	require.NoError(t, err)
	defer ln.Close()
	d := &bindtodev.Dialer{Interface: f.A, Follow: true}
	c, err := d.Dial("tcp", netip.AddrPortFrom(f.PeerA4, port).String())
	require.NoError(t, err)
	defer c.Close()
	before := bindtodev.Resyncs()
	sink, err := f.NewHost("sink")
	require.NoError(t, err)

	resume := bindtodev.StallWatcher(4096)
	require.NotNil(t, resume)
	took, rerr := readReturns(t, c, 5*time.Second, func() {
		// Far more events than the shrunken queue holds.
		require.NoError(t, f.Local.AddFillers(sink, fmt.Sprintf("fz%d-", f.N), 0, 20))
		f.deleteA()
		f.createAReady()
		resume()
	})
	require.NotErrorIs(t, rerr, errStillBlocked, "the connection outlived its interface by %v", took)
	assert.Greater(t, bindtodev.Resyncs(), before, "no overrun was provoked")
	conns, _ := acceptAll(ln)
	pc, _, err := dialRetry(f.PeerA, netip.AddrPortFrom(f.LocalA4, portOfAddr(t, ln.Addr())).String())
	require.NoError(t, err)
	pc.Close()
	recvConn(t, conns).Close()
}

// The watch follows the namespace of the thread that starts it: a
// following listener started in a peer's namespace listens again there
// after a bounce, and a follower from another namespace is refused while
// that watch is open.
func TestFollowNamespace(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, true)
	requireNoWatcher(t)
	var ln net.Listener
	require.NoError(t, f.PeerA.Do(func() error {
		var err error
		lc := &bindtodev.ListenConfig{Interface: "eth0", Follow: true}
		ln, err = lc.Listen(context.Background(), "tcp4", ":0")
		return err
	}))
	defer ln.Close()
	port := portOfAddr(t, ln.Addr())
	err := bindtodev.WaitForInterface(context.Background(), f.A)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "namespace")

	f.deleteA() // the peer's eth0 goes with it
	f.createAReady()
	conns, _ := acceptAll(ln)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(f.PeerA4, uint16(port)).String(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		// Refused until the listener is back; lost while the new
		// veth's carrier is still coming up.
		require.True(t, time.Now().Before(deadline), "no listener in the peer's namespace after the bounce: %v", err)
		time.Sleep(2 * time.Millisecond)
	}
	acc := recvConn(t, conns)
	acc.Close()
}

// requireNoWatcher waits until no follower of earlier tests keeps the
// watch open: connections are forgotten once collected.
func requireNoWatcher(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for bindtodev.WatcherRunning() {
		require.True(t, time.Now().Before(deadline), "a watch is still open: %s", bindtodev.WatcherUsers())
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
}

// openFDs counts the process's descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

// Without Follow nothing of this machinery exists: no watch, no
// goroutine. With it, goroutine and descriptor counts are back where they
// were once every follower is closed (and its connections collected).
func TestFollowResources(t *testing.T) { //nolint:paralleltest // counts the process's goroutines and descriptors
	f := newFollowLab(t, true)
	port, stopEcho := serveEcho(t, f.PeerA)
	requireNoWatcher(t)
	// The lab's own goroutines settle first.
	time.Sleep(20 * time.Millisecond)
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)

	d := &bindtodev.Dialer{Interface: f.A}
	lc := &bindtodev.ListenConfig{Interface: f.A}
	c, err := d.Dial("tcp", netip.AddrPortFrom(f.PeerA4, port).String())
	require.NoError(t, err)
	ln, err := lc.Listen(context.Background(), "tcp", ":0")
	require.NoError(t, err)
	pc, err := lc.ListenPacket(context.Background(), "udp", ":0")
	require.NoError(t, err)
	c2, err := d.NetDialer().Dial("tcp", netip.AddrPortFrom(f.PeerA4, port).String())
	require.NoError(t, err)
	assert.False(t, bindtodev.WatcherRunning(), "a path without Follow opened the watch")
	for _, x := range []interface{ Close() error }{c, ln, pc, c2} {
		x.Close()
	}

	d.Follow, lc.Follow = true, true
	ln, err = lc.Listen(context.Background(), "tcp", ":0")
	require.NoError(t, err)
	pc, err = lc.ListenPacket(context.Background(), "udp", ":0")
	require.NoError(t, err)
	conns, _ := acceptAll(ln)
	var dialed []net.Conn
	for range 5 {
		c, err := d.Dial("tcp", netip.AddrPortFrom(f.PeerA4, port).String())
		require.NoError(t, err)
		dialed = append(dialed, c)
	}
	in, err := f.PeerA.Dial("tcp", netip.AddrPortFrom(f.LocalA4, portOfAddr(t, ln.Addr())).String())
	require.NoError(t, err)
	acc := recvConn(t, conns)
	assert.True(t, bindtodev.WatcherRunning())
	f.deleteA()
	f.createAReady()
	waitCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	require.NoError(t, bindtodev.WaitForInterface(waitCtx, f.A))
	cancel()
	for _, c := range dialed {
		c.Close()
	}
	acc.Close()
	in.Close()
	ln.Close()
	pc.Close()
	stopEcho()

	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		g, n := runtime.NumGoroutine(), openFDs(t)
		if g <= goroutines && n <= fds && !bindtodev.WatcherRunning() {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines %d (before %d), descriptors %d (before %d), watch open %v\n%s",
				g, goroutines, n, fds, bindtodev.WatcherRunning(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Closing following connections while their interface is deleted and
// re-created, from many goroutines under the race detector: the sockets
// the same goroutines open meanwhile, which take the descriptor numbers
// just freed, are never touched.
func TestFollowCloseRace(t *testing.T) { //nolint:paralleltest // creates and deletes interfaces of its own
	f := newFollowLab(t, true)
	port, _ := serveEcho(t, f.PeerA)
	local, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer local.Close()
	go func() {
		for {
			c, err := local.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()

	d := &bindtodev.Dialer{Interface: f.A, Follow: true}
	d.Timeout = 300 * time.Millisecond
	stop := make(chan struct{})
	var dialed atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var unrelated []net.Conn
	var fails failures
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := d.Dial("tcp", netip.AddrPortFrom(f.PeerA4, port).String())
				if err == nil {
					dialed.Add(1)
					if i%2 == 0 {
						_, _ = c.Write([]byte("x"))
					}
					c.Close()
				}
				// Takes the number just freed.
				u, err := net.Dial("tcp", local.Addr().String())
				if err != nil {
					fails.add("worker %d: unrelated dial: %v", w, err)
					return
				}
				mu.Lock()
				unrelated = append(unrelated, u)
				mu.Unlock()
			}
		}()
	}
	for range 15 {
		f.deleteA()
		f.createAReady()
		// Let dials through before the next deletion.
		for start := dialed.Load(); dialed.Load() < start+8; {
			time.Sleep(time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	fails.check(t)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, unrelated)
	broken := 0
	for _, u := range unrelated {
		if got, err := echo(u, "ok", 5*time.Second); err != nil || got != "ok" {
			broken++
		}
		u.Close()
	}
	assert.Zero(t, broken, "of %d unrelated connections, some were shut down", len(unrelated))
	t.Logf("%d unrelated connections checked, %d following connections dialed", len(unrelated), dialed.Load())
}
