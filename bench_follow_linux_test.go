//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/bindtodev/bindtodev"
)

// The Follow benchmarks. Latencies are taken from just before the system
// call that changes the interface, so they include the kernel's own work
// before it sends the event: an upper bound on the time from the event.

// recreateDown deletes n's veth, if it exists, and creates it again with
// its addresses, down, and the peer's end up; the caller sets the local end
// up.
func (n *benchNet) recreateDown(b *testing.B) {
	b.Helper()
	if _, err := n.lab.Local.Link(n.ifname); err == nil {
		if err := n.lab.Local.Delete(n.ifname); err != nil {
			b.Fatal(err)
		}
	}
	err := n.lab.VethDown(n.ifname, n.peer, "eth0",
		[]netip.Prefix{netip.PrefixFrom(n.local, 24)}, []netip.Prefix{netip.PrefixFrom(n.remote, 24)})
	if err == nil {
		err = n.peer.SetUp("eth0")
	}
	if err != nil {
		b.Fatal(err)
	}
}

func reportMedian(b *testing.B, samples []time.Duration, unit string) {
	b.Helper()
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, unit)
}

// BenchmarkFollowRelisten measures the time from setting a re-created
// interface up (RTM_NEWLINK with IFF_UP) to a following listener on its
// address listening again. It reports the median in ms/relisten; the
// sub-millisecond bookkeeping of the poll that notices is included.
func BenchmarkFollowRelisten(b *testing.B) {
	n := newBenchNet(b)
	lc := &bindtodev.ListenConfig{Interface: n.ifname, Follow: true}
	ln, err := lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(n.local, 0).String())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var samples []time.Duration
	for b.Loop() {
		b.StopTimer()
		n.recreateDown(b)
		b.StartTimer()
		start := time.Now()
		if err := n.lab.Local.SetUp(n.ifname); err != nil {
			b.Fatal(err)
		}
		deadline := start.Add(5 * time.Second)
		for listening, _ := bindtodev.FollowState(ln); !listening; listening, _ = bindtodev.FollowState(ln) {
			if time.Now().After(deadline) {
				b.Fatal("no listener 5 s after the interface came up")
			}
		}
		samples = append(samples, time.Since(start))
	}
	reportMedian(b, samples, "ms/relisten")
}

// BenchmarkFollowDeleteRead measures the time from deleting an interface
// (RTM_DELLINK) to a Read blocked on a following connection through it
// returning. It reports the median in ms/read-return.
func BenchmarkFollowDeleteRead(b *testing.B) {
	n := newBenchNet(b)
	// The peer holds every connection open without a word.
	peerLn, err := n.peer.Listen("tcp4", ":7071")
	if err != nil {
		b.Fatal(err)
	}
	defer peerLn.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := peerLn.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	d := &bindtodev.Dialer{Interface: n.ifname, Follow: true}
	d.Timeout = 5 * time.Second
	address := netip.AddrPortFrom(n.remote, 7071).String()
	var samples []time.Duration
	for b.Loop() {
		b.StopTimer()
		c, err := d.Dial("tcp4", address)
		if err != nil {
			b.Fatal(err)
		}
		returned := make(chan time.Time, 1)
		go func() {
			_, _ = c.Read(make([]byte, 1))
			returned <- time.Now()
		}()
		time.Sleep(time.Millisecond) // the reader blocks
		b.StartTimer()
		start := time.Now()
		if err := n.lab.Local.Delete(n.ifname); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-returned:
			samples = append(samples, at.Sub(start))
		case <-time.After(5 * time.Second):
			b.Fatal("Read still blocked 5 s after the deletion")
		}
		b.StopTimer()
		c.Close()
		n.recreateDown(b)
		if err := n.lab.Local.SetUp(n.ifname); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportMedian(b, samples, "ms/read-return")
}

// BenchmarkFollowDial compares a following dial with a bound one, paired
// as BenchmarkDial pairs its variants; "bound" paired with itself is the
// noise floor.
func BenchmarkFollowDial(b *testing.B) {
	n := newBenchNet(b)
	n.serveResets(b)
	address := n.sink().String()
	bound := &bindtodev.Dialer{Interface: n.ifname}
	follow := &bindtodev.Dialer{Interface: n.ifname, Follow: true}
	base := dialOnce(bound.DialContext, address)
	for _, v := range []dialVariant{
		{"bound", bound.DialContext, true},
		{"follow", follow.DialContext, true},
	} {
		checkDial(b, v, address, n.ifname)
		b.Run("variant="+v.name, func(b *testing.B) {
			paired(b, "bound", false, 1, dialOnce(v.dial, address), base)
		})
	}
}
