//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// 10,000 dials through one shared Dialer from hundreds of goroutines at
// once (run under -race in CI): every connection is bound to A, read back
// with Device, and reached the only listener, which is behind A. The
// number of goroutines in flight is bounded by the descriptor limit (each
// connection holds one descriptor here and one in the peer) and by the race
// detector's limit of 8,128 live goroutines.
func TestConcurrentDialsShareDialer(t *testing.T) { //nolint:paralleltest // uses many descriptors
	const dials = 10000
	s := netlab.NewSeedT(t)
	ln, err := s.PeerA.Listen("tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Closing first leaves TIME_WAIT with the peer, not in the
			// local namespace.
			c.Close()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	dests := []string{
		netip.AddrPortFrom(s.Dest4, port).String(),
		netip.AddrPortFrom(s.Dest6, port).String(),
	}

	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	workers := min(500, (int(lim.Cur)-256)/3)
	require.Positive(t, workers, "descriptor limit %d is too low", lim.Cur)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := &bindtodev.Dialer{Interface: s.A}
	var next, ok atomic.Int64
	var fails failures
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= dials || ctx.Err() != nil {
					return
				}
				c, err := d.DialContext(ctx, "tcp", dests[i%2])
				if err != nil {
					fails.add("dial %d: %v", i, err)
					continue
				}
				dev, err := bindtodev.Device(c.(*net.TCPConn))
				if err != nil || dev != s.A {
					fails.add("dial %d: bound to %q (%v)", i, dev, err)
				} else {
					ok.Add(1)
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	fails.check(t)
	assert.Equal(t, int64(dials), ok.Load())
	t.Logf("%d dials from %d goroutines sharing one Dialer in %v, all bound to %s", ok.Load(), workers,
		time.Since(start).Round(time.Millisecond), s.A)
}
