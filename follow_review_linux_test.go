//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
)

// Cases an adversarial review of Follow found.

// The kernel announces links by their own names only, so a follower of an
// alternative name would never hear of its deletion and would keep its
// socket on a dead index, which another interface may take. Follow refuses
// an alternative name at once, on every entry point; the interface's own
// name works.
func TestFollowRefusesAltName(t *testing.T) { //nolint:paralleltest // deletes and creates interfaces
	f := newFollowLab(t, true)
	alt := fmt.Sprintf("alt%d-f", f.N)
	require.NoError(t, f.Local.AddAltName(f.A, alt))
	port, _ := serveEcho(t, f.PeerA)
	dst := netip.AddrPortFrom(f.PeerA4, port).String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &bindtodev.Dialer{Interface: alt, Follow: true}
	lc := &bindtodev.ListenConfig{Interface: alt, Follow: true}
	for name, call := range map[string]func() error{
		"Dialer.Dial": func() error { _, err := d.DialContext(ctx, "tcp", dst); return err },
		"NetDialer": func() error {
			// Its hook waits only when the bind fails, which it does
			// not here: the plain bind to an alternative name works.
			c, err := d.NetDialer().DialContext(ctx, "tcp", dst)
			if err == nil {
				c.Close()
				return errRefused
			}
			return err
		},
		"WaitForInterface":          func() error { return bindtodev.WaitForInterface(ctx, alt) },
		"ListenConfig.Listen":       func() error { _, err := lc.Listen(ctx, "tcp", ":0"); return err },
		"ListenConfig.ListenPacket": func() error { _, err := lc.ListenPacket(ctx, "udp", ":0"); return err },
	} {
		start := time.Now()
		err := call()
		if name == "NetDialer" {
			assert.ErrorIs(t, err, errRefused, "NetDialer binds the alternative name as Control does")
			continue
		}
		require.Error(t, err, name)
		assert.Less(t, time.Since(start), time.Second, "%s waited for an interface that is there", name)
		assert.ErrorContains(t, err, fmt.Sprintf("it is an alternative name of %q", f.A), name)
		var e *bindtodev.Error
		if assert.ErrorAs(t, err, &e, name) {
			assert.Equal(t, alt, e.Interface, name)
		}
	}
	own := &bindtodev.Dialer{Interface: f.A, Follow: true}
	c, err := own.DialContext(ctx, "tcp", dst)
	require.NoError(t, err, "the interface's own name")
	c.Close()
}

// errRefused marks a call that succeeded where the test expected the
// package to let it through unchecked.
var errRefused = errors.New("the call succeeded")

// A dial to a loopback destination is bound to lo, so Follow has nothing
// to wait for even while Interface does not exist.
func TestFollowLoopbackDialDoesNotWait(t *testing.T) {
	t.Parallel()
	f := newFollowLab(t, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	d := &bindtodev.Dialer{Interface: f.A, Follow: true}
	d.Timeout = 2 * time.Second
	start := time.Now()
	c, err := d.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	assert.Less(t, time.Since(start), time.Second, "the dial waited for an interface it does not use")
	assert.Equal(t, "lo", deviceOf(t, c))
}

// A failure to listen again on an interface that was is no longer the
// reason once the interface is gone: WriteTo then fails with ENODEV.
func TestFollowWriteToAbsentAfterFailure(t *testing.T) { //nolint:paralleltest // deletes and creates interfaces
	f := newFollowLab(t, true)
	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	pc, err := lc.ListenPacket(context.Background(), "udp4", ":0")
	require.NoError(t, err)
	defer pc.Close()
	port := portOfAddr(t, pc.LocalAddr())
	f.deleteA()
	squatter, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
	require.NoError(t, err)
	defer squatter.Close()
	f.createAReady()
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, _, err = pc.ReadFrom(make([]byte, 10))
	require.ErrorIs(t, err, syscall.EADDRINUSE, "the failure to listen again reaches ReadFrom")
	f.deleteA()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.PeerA4, 9))
	// The watcher learns of the deletion from the kernel's event; until
	// then WriteTo still gives the old reason, and afterwards ENODEV.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = pc.WriteTo([]byte(leakMarker), to)
		if errors.Is(err, syscall.ENODEV) || time.Now().After(deadline) {
			break
		}
		require.ErrorIs(t, err, syscall.EADDRINUSE)
		time.Sleep(5 * time.Millisecond)
	}
	require.ErrorIs(t, err, syscall.ENODEV, "WriteTo while the interface is absent")
}

// The grace an interface that came up without its address gets ends when
// the interface is deleted: no EADDRNOTAVAIL reaches Accept while it is
// absent.
func TestFollowGraceEndsWithDeletion(t *testing.T) { //nolint:paralleltest // deletes and creates interfaces
	f := newFollowLab(t, true)
	lc := &bindtodev.ListenConfig{Interface: f.A, Follow: true}
	ln, err := lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(f.LocalA4, 0).String())
	require.NoError(t, err)
	defer ln.Close()
	f.deleteA()
	require.NoError(t, f.Veth(f.A, f.PeerA, "eth0")) // up, without the address
	time.Sleep(500 * time.Millisecond)
	f.deleteA()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if c != nil {
			c.Close()
		}
		errc <- err
	}()
	// The grace is 3 s from the interface coming up; wait past it.
	select {
	case err := <-errc:
		t.Fatalf("Accept returned while the interface is absent: %v", err)
	case <-time.After(4 * time.Second):
	}
}
