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

// Dialers for A and for B dial at once from many goroutines, TCP and UDP,
// IPv4 and IPv6, to the destination both peers own: every connection must
// be bound to its own Dialer's interface, read back with Device, and reach
// that interface's peer, so that the per-call state the hook reuses
// between sockets never carries one dial's interface into another.
func TestConcurrentDialersForAAndB(t *testing.T) {
	t.Parallel()
	const dials = 4000
	s := netlab.NewSeedT(t)
	type job struct {
		d       *bindtodev.Dialer
		peer    string
		network string
		dest    string
	}
	var jobs []job
	for _, side := range []struct {
		ifname, peer string
	}{{s.A, "A"}, {s.B, "B"}} {
		d := &bindtodev.Dialer{Interface: side.ifname}
		d.Timeout = 5 * time.Second
		for _, network := range []string{"tcp", "udp"} {
			for _, dest := range []netip.Addr{s.Dest4, s.Dest6} {
				jobs = append(jobs, job{d, side.peer, network, whoAmIAddr(dest)})
			}
		}
	}
	var next, ok atomic.Int64
	var fails failures
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= dials {
					return
				}
				// Neighbouring dials differ in interface.
				j := jobs[(i%2)*len(jobs)/2+(i/2)%(len(jobs)/2)]
				c, err := j.d.Dial(j.network, j.dest)
				if err != nil {
					fails.add("dial %d %s %s via %s: %v", i, j.network, j.dest, j.d.Interface, err)
					continue
				}
				dev, err := bindtodev.Device(c.(syscall.Conn))
				var who netlab.WhoAmI
				if err == nil {
					if j.network == "udp" {
						who, err = netlab.AskUDP(c)
					} else {
						who, err = netlab.AskTCP(c)
					}
				}
				c.Close()
				switch {
				case err != nil:
					fails.add("dial %d %s %s via %s: %v", i, j.network, j.dest, j.d.Interface, err)
				case dev != j.d.Interface || who.Peer != j.peer:
					fails.add("dial %d %s %s via %s: bound to %q, answered by %s", i, j.network, j.dest, j.d.Interface, dev, who.Peer)
				default:
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	fails.check(t)
	assert.Equal(t, int64(dials), ok.Load())
}
