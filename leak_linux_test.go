//go:build !bindtodev_stub

package bindtodev_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// LongEnv, set to "1", runs the leak test at full count (see README.md).
const longEnv = "BINDTODEV_LONG"

// leakLoad is the leak test's load: reduced for CI, where it runs under the
// race detector, and full in long mode.
type leakLoad struct {
	tcp, udp, broadcast, workers int
}

func currentLeakLoad() leakLoad {
	if os.Getenv(longEnv) == "1" {
		return leakLoad{tcp: 5000, udp: 100000, broadcast: 1000, workers: 64}
	}
	return leakLoad{tcp: 1000, udp: 10000, broadcast: 200, workers: 32}
}

// failures collects the errors of worker goroutines, which must not call
// t.Fatal, keeping the first few for the report.
type failures struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (f *failures) add(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if len(f.first) < 10 {
		f.first = append(f.first, fmt.Sprintf(format, args...))
	}
}

func (f *failures) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n > 0 {
		t.Fatalf("%d failures, the first:\n  %s", f.n, strings.Join(f.first, "\n  "))
	}
}

// target is a destination of the leak test with the source address the peer
// behind A must see.
type target struct {
	dest   netip.AddrPort
	source netip.Addr
}

// The leak test: with the routing table preferring B, thousands of bound
// TCP connections and UDP datagrams, connected and not, over IPv4, IPv6 and
// IPv6 link-local, plus broadcast and multicast, all from many goroutines,
// while every other interface of the namespace is captured. Every request
// must be answered by the peer behind A and no captured packet may carry the
// bound sockets' traffic. The only exception is counted apart: the bare ACK
// or RST the kernel itself sends, from A's address, for a connection the
// test has already closed (see kernelReply), and the peer's RST answering
// it. BINDTODEV_LONG=1 runs it at full count.
//
// It runs twice: with the routing table alone, and with the oif rule that
// SECURITY.md recommends, under which not even the kernel's TIME_WAIT
// replies may leave through B.
func TestNoLeakUnderLoad(t *testing.T) { //nolint:paralleltest // captures every interface of the shared namespace
	t.Run("routing table", func(t *testing.T) { leakTest(t, false) })
	t.Run("with oif rule", func(t *testing.T) { leakTest(t, true) })
}

func leakTest(t *testing.T, withRule bool) {
	load := currentLeakLoad()
	s := netlab.NewSeedT(t)
	var closed closedConns
	excuse := func(p netlab.Packet) bool { return kernelReply(s, &closed, p) || answerToKernelReply(s, &closed, p) }
	if withRule {
		table := 1000 + s.N
		require.NoError(t, s.Local.AddTableRoute(table, netlab.Route{
			Dst: netip.MustParsePrefix("::/0"), Gateway: s.PeerA6, Dev: s.A,
		}))
		require.NoError(t, s.Local.AddRule(netlab.Rule{IPv6: true, Oif: s.A, Table: table, Priority: 100}))
		excuse = nil
	}
	localLL, err := s.Local.LinkLocal(s.A)
	require.NoError(t, err)
	group4 := netip.AddrFrom4([4]byte{239, 18, byte(s.N), 1})
	group6 := netip.AddrFrom16([16]byte{0xff, 0x15, 14: 0x18, 15: byte(s.N)})
	const bcastPort, mcast4Port, mcast6Port = 9999, 9998, 9997

	received := map[string]*atomic.Int64{}
	for _, peer := range []*netlab.Host{s.PeerA, s.PeerB} {
		for _, kind := range []string{"broadcast", "multicast4", "multicast6"} {
			received[peer.Name+" "+kind] = receiveMarked(t, peer, kind, group4, group6)
		}
	}

	w := watchOthers(t, s, group4, group6)
	start := time.Now()
	targets := []target{
		{netip.AddrPortFrom(s.Dest4, netlab.WhoAmIPort), s.LocalA4},
		{netip.AddrPortFrom(s.Dest6, netlab.WhoAmIPort), s.LocalA6},
		{netip.AddrPortFrom(s.PeerLinkLocal(s.A), netlab.WhoAmIPort), localLL},
	}
	var fails failures
	var tcpOK, udpConnOK, udpUnconnOK atomic.Int64
	var wg sync.WaitGroup
	d := &bindtodev.Dialer{Interface: s.A}
	d.Timeout = 5 * time.Second

	tcpJobs := make(chan int)
	for range load.workers {
		wg.Go(func() {
			for i := range tcpJobs {
				tg := targets[i%len(targets)]
				if err := tcpRequest(d, tg, &closed); err != nil {
					fails.add("tcp %d to %s: %v", i, tg.dest, err)
					continue
				}
				tcpOK.Add(1)
			}
		})
	}
	// Each UDP worker sends its share through one socket at a time, in
	// lock step, so that no datagram can be lost to a full buffer and
	// every one must be answered.
	for wk := range load.workers {
		tg := targets[wk%len(targets)]
		connected := wk%2 == 0
		share := load.udp / load.workers
		if wk < load.udp%load.workers {
			share++
		}
		wg.Go(func() {
			var err error
			if connected {
				err = udpConnected(d, tg, share, &udpConnOK)
			} else {
				err = udpUnconnected(s.A, tg, share, &udpUnconnOK)
			}
			if err != nil {
				fails.add("udp worker %d (connected %v) to %s: %v", wk, connected, tg.dest, err)
			}
		})
	}
	wg.Go(func() {
		sends := []struct {
			network string
			dest    netip.AddrPort
		}{
			{"udp4", netip.AddrPortFrom(netip.MustParseAddr("255.255.255.255"), bcastPort)},
			{"udp4", netip.AddrPortFrom(group4, mcast4Port)},
			{"udp6", netip.AddrPortFrom(group6, mcast6Port)},
		}
		for _, sd := range sends {
			if err := sendMarked(s.A, sd.network, sd.dest, load.broadcast); err != nil {
				fails.add("send to %s: %v", sd.dest, err)
			}
		}
	})
	for i := range load.tcp {
		tcpJobs <- i
	}
	close(tcpJobs)
	wg.Wait()
	elapsed := time.Since(start)
	fails.check(t)

	assert.Equal(t, int64(load.tcp), tcpOK.Load(), "TCP requests answered by A")
	assert.Equal(t, int64(load.udp), udpConnOK.Load()+udpUnconnOK.Load(), "UDP requests answered by A")
	for _, kind := range []string{"broadcast", "multicast4", "multicast6"} {
		got := received["A "+kind]
		require.Eventually(t, func() bool { return got.Load() == int64(load.broadcast) }, 5*time.Second, 10*time.Millisecond,
			"%s datagrams received by A: %d of %d", kind, got.Load(), load.broadcast)
	}
	for _, kind := range []string{"broadcast", "multicast4", "multicast6"} {
		assert.Zero(t, received["B "+kind].Load(), "%s datagrams received by B", kind)
	}

	w.requireNoLeak(excuse)
	_, excused := w.leaks(excuse)
	watched, total := 0, 0
	for _, c := range w.caps {
		watched++
		total += c.Len()
	}
	t.Logf("in %v: %d TCP connections, %d connected and %d unconnected UDP requests (IPv4, IPv6, IPv6 link-local), all answered by A",
		elapsed.Round(time.Millisecond), tcpOK.Load(), udpConnOK.Load(), udpUnconnOK.Load())
	t.Logf("broadcast, IPv4 and IPv6 multicast: %d datagrams each, received by A: %d, %d, %d; by B: 0",
		load.broadcast, received["A broadcast"].Load(), received["A multicast4"].Load(), received["A multicast6"].Load())
	var replies, answers int
	for _, ps := range excused {
		for _, p := range ps {
			if p.Outgoing {
				replies++
			} else {
				answers++
			}
		}
	}
	t.Logf("%d other interfaces watched, %d frames captured, 0 carrying bound traffic; counted apart: %d kernel replies for closed connections, %d RSTs of peer B answering them",
		watched, total, replies, answers)

	// The captures work: an unbound request, which follows the routing
	// table, is seen on B.
	mark := w.capture(s.B).Len()
	c, err := net.Dial("udp", whoAmIAddr(s.Dest4))
	require.NoError(t, err)
	assert.Equal(t, "B", ask(t, "udp", c).Peer)
	assert.True(t, w.capture(s.B).WaitFor(mark, 2*time.Second, w.carries), "the capture on B sees unbound traffic")
}

// tcpRequest makes one bound connection, reads the who-am-I answer and
// checks that the peer behind A answered and saw the expected source. It
// records the connection in closed before it closes it.
func tcpRequest(d *bindtodev.Dialer, tg target, closed *closedConns) error {
	c, err := d.Dial("tcp", tg.dest.String())
	if err != nil {
		return err
	}
	defer func() {
		closed.add(c)
		c.Close()
	}()
	who, err := netlab.AskTCP(c)
	if err != nil {
		return err
	}
	return checkWho(who, tg)
}

func checkWho(who netlab.WhoAmI, tg target) error {
	if who.Peer != "A" || who.Source.Addr().WithZone("") != tg.source {
		return fmt.Errorf("answered by %s, which saw source %s; want A and %s", who.Peer, who.Source, tg.source)
	}
	return nil
}

// udpConnected sends n requests through connected bound sockets, dialing a
// new one every 100 requests.
func udpConnected(d *bindtodev.Dialer, tg target, n int, ok *atomic.Int64) error {
	buf := make([]byte, 512)
	var c net.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for i := range n {
		if i%100 == 0 {
			if c != nil {
				c.Close()
			}
			var err error
			if c, err = d.Dial("udp", tg.dest.String()); err != nil {
				return err
			}
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "%s %d", leakMarker, i); err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		m, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		who, err := netlab.ParseWhoAmI(string(buf[:m]))
		if err != nil {
			return err
		}
		if err := checkWho(who, tg); err != nil {
			return err
		}
		ok.Add(1)
	}
	return nil
}

// udpUnconnected sends n requests with WriteTo from one bound packet
// socket.
func udpUnconnected(ifname string, tg target, n int, ok *atomic.Int64) error {
	pc, err := bindtodev.ListenPacket(ifname, "udp", ":0")
	if err != nil {
		return err
	}
	defer pc.Close()
	to := net.UDPAddrFromAddrPort(tg.dest)
	buf := make([]byte, 512)
	for i := range n {
		_ = pc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := pc.WriteTo(fmt.Appendf(nil, "%s %d", leakMarker, i), to); err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		m, from, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		if got := from.(*net.UDPAddr).AddrPort(); got.Addr().Unmap().WithZone("") != tg.dest.Addr().WithZone("") {
			return fmt.Errorf("request %d: answer from %s", i, got)
		}
		who, err := netlab.ParseWhoAmI(string(buf[:m]))
		if err != nil {
			return err
		}
		if err := checkWho(who, tg); err != nil {
			return err
		}
		ok.Add(1)
	}
	return nil
}

// sendMarked sends n marked datagrams to dest from a socket bound to
// ifname, pausing now and then so that the receivers keep up.
func sendMarked(ifname, network string, dest netip.AddrPort, n int) error {
	pc, err := bindtodev.ListenPacket(ifname, network, ":0")
	if err != nil {
		return err
	}
	defer pc.Close()
	to := net.UDPAddrFromAddrPort(dest)
	for i := range n {
		if _, err := pc.WriteTo(fmt.Appendf(nil, "%s %d", leakMarker, i), to); err != nil {
			return fmt.Errorf("datagram %d: %w", i, err)
		}
		if i%20 == 19 {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// receiveMarked counts the marked datagrams peer receives as broadcast or
// as a member of a multicast group on its interface.
func receiveMarked(t *testing.T, peer *netlab.Host, kind string, group4, group6 netip.Addr) *atomic.Int64 {
	t.Helper()
	var pc net.PacketConn
	err := peer.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		switch kind {
		case "broadcast":
			pc, err = net.ListenPacket("udp4", ":9999")
		case "multicast4":
			pc, err = net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: group4.AsSlice(), Port: 9998})
		case "multicast6":
			pc, err = net.ListenMulticastUDP("udp6", ifi, &net.UDPAddr{IP: group6.AsSlice(), Port: 9997})
		default:
			err = errors.New("unknown kind " + kind)
		}
		return err
	})
	require.NoError(t, err, "%s receiver in %s", kind, peer.Name)
	t.Cleanup(func() { pc.Close() })
	var n atomic.Int64
	go func() {
		buf := make([]byte, 512)
		for {
			m, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if strings.HasPrefix(string(buf[:m]), leakMarker) {
				n.Add(1)
			}
		}
	}()
	return &n
}
