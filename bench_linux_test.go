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
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// The benchmarks measure the package against the physical floor: every
// connection goes through a veth pair to a peer namespace, never over
// loopback, which the package leaves unbound.
//
// On a shared machine the time of the same operation swings by half from one
// quarter second to the next, so variants measured one after the other
// cannot be compared to a few percent. Each sub-benchmark therefore pairs its
// variant with the group's baseline inside every iteration, in alternating
// order, and reports besides its own ns/op the median over the iterations of
// the ratio of the two ("time/plain" for dials, "rate/unbound" for
// throughput): drift hits both sides of every ratio alike. The baseline
// paired with itself shows the noise floor. allocs/op and B/op are counted
// for the variant alone, over calls made before the timed loop.

// sinkPort is where the peer's sinks listen: a TCP server that resets
// every connection it accepts, and a UDP socket that never reads.
const sinkPort = 9

// benchNet is the local namespace joined by one veth pair to a peer.
type benchNet struct {
	lab    *netlab.Lab
	peer   *netlab.Host
	ifname string     // the local end of the veth
	local  netip.Addr // the local end's address
	remote netip.Addr // the peer's address
}

func newBenchNet(b testing.TB) *benchNet {
	b.Helper()
	lab := netlab.NewT(b)
	n := &benchNet{
		lab:    lab,
		ifname: fmt.Sprintf("p%d", lab.N),
		local:  netip.AddrFrom4([4]byte{198, 18, byte(lab.N), 1}),
		remote: netip.AddrFrom4([4]byte{198, 18, byte(lab.N), 2}),
	}
	var err error
	if n.peer, err = lab.NewHost("peer"); err != nil {
		b.Fatal(err)
	}
	steps := []func() error{
		func() error { return lab.Veth(n.ifname, n.peer, "eth0") },
		func() error { return lab.Local.AddAddr(n.ifname, netip.PrefixFrom(n.local, 24)) },
		func() error { return n.peer.AddAddr("eth0", netip.PrefixFrom(n.remote, 24)) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// sink returns the address of the peer's sinks.
func (n *benchNet) sink() netip.AddrPort { return netip.AddrPortFrom(n.remote, sinkPort) }

// abort is SO_LINGER with a zero timeout: close(2) sends a reset and the
// socket leaves no TIME_WAIT behind.
var abort = unix.Linger{Onoff: 1, Linger: 0}

// serveResets starts the peer's TCP sink. It accepts with raw system calls
// on a blocking socket, so that it allocates nothing that -benchmem would
// charge to the dialer, and resets each connection once the client has
// closed it: no TIME_WAIT builds up
// on either side, however many dials a run makes (left to pile up, TIME_WAIT
// fills after about 130,000 dials and stalls them for a 1 s retransmit).
func (n *benchNet) serveResets(b testing.TB) {
	b.Helper()
	var lfd int
	err := n.peer.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		lfd = fd
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: sinkPort, Addr: n.remote.As4()}); err != nil {
			return os.NewSyscallError("bind", err)
		}
		return os.NewSyscallError("listen", unix.Listen(fd, 4096))
	})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var buf [64]byte
		for {
			fd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
			switch errno {
			case 0:
				// Reset only once the client has closed: a reset that
				// overtook the end of the client's connect would fail
				// the dial being measured.
				for {
					if _, err := unix.Read(int(fd), buf[:]); err != unix.EINTR {
						break
					}
				}
				_ = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &abort)
				_ = unix.Close(int(fd))
			case unix.EINTR, unix.ECONNABORTED:
			default:
				return // shut down
			}
		}
	}()
	b.Cleanup(func() {
		// shutdown wakes the blocked accept; close alone would not.
		_ = unix.Shutdown(lfd, unix.SHUT_RDWR)
		<-done
		_ = unix.Close(lfd)
	})
}

// dialFunc is the signature shared by net.Dialer.DialContext and ours.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

type dialVariant struct {
	name string
	dial dialFunc
	// bound is true when the variant's sockets must be bound to the
	// interface; the benchmark checks it before it measures.
	bound bool
}

// dialVariants lists what BenchmarkDial compares, plain first: benchstat
// takes the first column as the base of its ratios.
func dialVariants(ifname string, source netip.Addr, only ...string) []dialVariant {
	plain := &net.Dialer{}
	// The floor for any Control hook: net allocates for the hook even
	// when it does nothing.
	empty := &net.Dialer{Control: func(string, string, syscall.RawConn) error { return nil }}
	// The floor for binding: the empty hook plus the one setsockopt, with
	// nothing allocated per dial and no error handling.
	setDevice := func(fd uintptr) {
		_ = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
	}
	floor := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error { return c.Control(setDevice) }}
	bound := &bindtodev.Dialer{Interface: ifname}
	boundSource := &bindtodev.Dialer{Interface: ifname, Source: source}
	control := &net.Dialer{Control: bindtodev.Control(ifname)}
	naive := &naiveDialer{ifname: ifname}
	all := []dialVariant{
		{"plain", plain.DialContext, false},
		{"empty-control", empty.DialContext, false},
		{"floor", floor.DialContext, true},
		{"bound", bound.DialContext, true},
		{"bound-source", boundSource.DialContext, true},
		{"control", control.DialContext, true},
		{"naive", naive.DialContext, true},
	}
	if len(only) == 0 {
		return all
	}
	var picked []dialVariant
	for _, v := range all {
		for _, name := range only {
			if v.name == name {
				picked = append(picked, v)
			}
		}
	}
	return picked
}

// naiveDialer is the common pattern the package is measured against, kept
// here only: it looks the interface up by name and lists its addresses on
// every dial (net.InterfaceByName and Interface.Addrs each dump the
// kernel's whole table over netlink), and only then sets SO_BINDTODEVICE.
type naiveDialer struct{ ifname string }

func (d *naiveDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ifi, err := net.InterfaceByName(d.ifname)
	if err != nil {
		return nil, err
	}
	if ifi.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("interface %s is down", ifi.Name)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("interface %s has no address", ifi.Name)
	}
	nd := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name)
		}); err != nil {
			return err
		}
		return os.NewSyscallError("setsockopt", serr)
	}}
	return nd.DialContext(ctx, network, address)
}

// checkDial dials once and fails b unless the socket is bound as the
// variant promises, so that no benchmark measures an unbound path by
// mistake.
func checkDial(b *testing.B, v dialVariant, address, ifname string) {
	b.Helper()
	c, err := v.dial(context.Background(), "tcp", address)
	if err != nil {
		b.Fatalf("%s: %v", v.name, err)
	}
	defer c.Close()
	dev, err := bindtodev.Device(c.(*net.TCPConn))
	if err != nil {
		b.Fatalf("%s: %v", v.name, err)
	}
	if want := map[bool]string{true: ifname}[v.bound]; dev != want {
		b.Fatalf("%s: socket bound to %q, want %q", v.name, dev, want)
	}
}

// allocCount is how many operations the untimed allocation count spans.
const allocCount = 64

// countAllocs counts the allocations of op alone over allocCount calls.
// The peer's servers allocate nothing, so the count is op's own.
func countAllocs(b *testing.B, op func() error) (allocs, bytes float64) {
	b.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range allocCount {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / allocCount, float64(after.TotalAlloc-before.TotalAlloc) / allocCount
}

// paired times op and base alternately, each batch times per iteration and
// base first on every other one. It reports op's mean ns/op, and the median
// over the iterations of the ratio of the two: "time/"+baseName, or with
// rate "rate/"+baseName, its inverse, for throughput. A median, because a
// single preemption or retransmit can cost more than thousands of dials.
// allocs/op and B/op are replaced by op's alone, counted before the timed
// loop, since -benchmem would count both sides of the pair.
func paired(b *testing.B, baseName string, rate bool, batch int, op, base func() error) {
	b.Helper()
	allocs, bytes := countAllocs(b, op)
	timed := func(f func() error) (time.Duration, error) {
		start := time.Now()
		for range batch {
			if err := f(); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	var total time.Duration
	var ratios []float64
	for n := 0; b.Loop(); n++ {
		first, second := op, base
		if n%2 == 1 {
			first, second = base, op
		}
		d1, err := timed(first)
		if err != nil {
			b.Fatal(err)
		}
		d2, err := timed(second)
		if err != nil {
			b.Fatal(err)
		}
		if n%2 == 1 {
			d1, d2 = d2, d1
		}
		total += d1
		if rate {
			ratios = append(ratios, float64(d2)/float64(d1))
		} else {
			ratios = append(ratios, float64(d1)/float64(d2))
		}
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(len(ratios)*batch), "ns/op")
	unit := "time/" + baseName
	if rate {
		unit = "rate/" + baseName
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], unit)
	b.ReportMetric(allocs, "allocs/op")
	b.ReportMetric(bytes, "B/op")
}

// dialOnce returns an operation that dials address with dial and closes
// the connection at once; the sink resets it after the client's FIN, so
// nothing waits in TIME_WAIT.
func dialOnce(dial dialFunc, address string) func() error {
	ctx := context.Background()
	return func() error {
		c, err := dial(ctx, "tcp", address)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// benchDials runs a sub-benchmark for each variant, paired with plain.
func benchDials(b *testing.B, prefix string, variants []dialVariant, address, ifname string) {
	b.Helper()
	plain := dialOnce(variants[0].dial, address)
	for _, v := range variants {
		checkDial(b, v, address, ifname)
		b.Run(prefix+"variant="+v.name, func(b *testing.B) {
			paired(b, "plain", false, 1, dialOnce(v.dial, address), plain)
		})
	}
}

// BenchmarkDial compares a TCP dial through a veth pair with net.Dialer,
// with an empty Control hook, with the package's Dialer (with and without
// Source), with its Control hook in a net.Dialer, and with the naive
// pattern.
func BenchmarkDial(b *testing.B) {
	n := newBenchNet(b)
	n.serveResets(b)
	benchDials(b, "", dialVariants(n.ifname, n.local), n.sink().String(), n.ifname)
}

// BenchmarkDialFloor pairs the package's dials with the floor itself (an
// empty hook plus the one setsockopt) rather than with a plain dial, so
// that what the package adds above the system call it cannot avoid is
// measured directly: "bound" is a Dialer, which makes its own net.Dialer
// with Multipath TCP off and skips the Multipath TCP check; "netdialer"
// and "control" run that check, one getsockopt more.
func BenchmarkDialFloor(b *testing.B) {
	n := newBenchNet(b)
	n.serveResets(b)
	address := n.sink().String()
	variants := dialVariants(n.ifname, n.local, "floor", "bound", "control")
	netDialer := (&bindtodev.Dialer{Interface: n.ifname}).NetDialer()
	variants = append(variants, dialVariant{"netdialer", netDialer.DialContext, true})
	floor := dialOnce(variants[0].dial, address)
	for _, v := range variants[1:] {
		checkDial(b, v, address, n.ifname)
		b.Run("variant="+v.name, func(b *testing.B) {
			paired(b, "floor", false, 1, dialOnce(v.dial, address), floor)
		})
	}
}

// BenchmarkKernelConnect measures the floor beneath every Go dial: raw
// socket, connect and close system calls on a blocking socket, plain, with
// a setsockopt(SO_BINDTODEVICE) that names no device (the cost of the
// system call alone) and with one that binds the veth (that cost plus what
// a bound socket costs the kernel in connect).
func BenchmarkKernelConnect(b *testing.B) {
	n := newBenchNet(b)
	n.serveResets(b)
	sa := &unix.SockaddrInet4{Port: sinkPort, Addr: n.remote.As4()}
	connect := func(device *string) func() error {
		return func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return os.NewSyscallError("socket", err)
			}
			defer unix.Close(fd)
			if device != nil {
				if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, *device); err != nil {
					return os.NewSyscallError("setsockopt", err)
				}
			}
			return os.NewSyscallError("connect", unix.Connect(fd, sa))
		}
	}
	none := ""
	plain := connect(nil)
	for _, v := range []struct {
		name string
		op   func() error
	}{
		{"plain", plain},
		{"setsockopt-no-device", connect(&none)},
		{"bound", connect(&n.ifname)},
	} {
		b.Run("variant="+v.name, func(b *testing.B) { paired(b, "plain", false, 1, v.op, plain) })
	}
}

// BenchmarkListenAccept compares the accept rate of a bound and an unbound
// listener. A connector in the peer namespace keeps a window of connections
// open to each listener and aborts each one once established, so that the
// accept queue never overflows (a dropped SYN costs a 1 s retransmit) and
// nothing enters TIME_WAIT.
func BenchmarkListenAccept(b *testing.B) {
	n := newBenchNet(b)
	const window = 16 // connections queued per listener
	tokens := make(chan uint16, 2*window)
	configs := map[string]interface {
		Listen(context.Context, string, string) (net.Listener, error)
	}{
		"unbound": &net.ListenConfig{},
		"bound":   &bindtodev.ListenConfig{Interface: n.ifname},
	}
	accept := map[string]func() error{}
	for name, lc := range configs {
		ln, err := lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(n.local, 0).String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		dev, err := bindtodev.Device(ln.(*net.TCPListener))
		if err != nil {
			b.Fatal(err)
		}
		if want := map[bool]string{true: n.ifname}[name == "bound"]; dev != want {
			b.Fatalf("%s listener bound to %q, want %q", name, dev, want)
		}
		port := netip.MustParseAddrPort(ln.Addr().String()).Port()
		for range window {
			tokens <- port
		}
		accept[name] = func() error {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			tokens <- port
			return c.Close()
		}
	}
	stop := make(chan struct{})
	connErr := make(chan error, 1)
	go func() {
		connErr <- n.peer.Do(func() error { return connectLoop(n.local, tokens, stop) })
	}()
	for _, name := range []string{"unbound", "bound"} {
		b.Run("variant="+name, func(b *testing.B) {
			paired(b, "unbound", true, 1, accept[name], accept["unbound"])
		})
	}
	close(stop)
	if err := <-connErr; err != nil {
		b.Fatal(err)
	}
}

// connectLoop connects to a port of to for each token, with raw system
// calls so that it allocates nothing, and aborts each connection at once.
func connectLoop(to netip.Addr, tokens <-chan uint16, stop <-chan struct{}) error {
	sa := &unix.SockaddrInet4{Addr: to.As4()}
	for {
		select {
		case <-stop:
			return nil
		case port := <-tokens:
			sa.Port = int(port)
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		err = unix.Connect(fd, sa)
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &abort)
		_ = unix.Close(fd)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return os.NewSyscallError("connect", err)
		}
	}
}

// udpBatch is how many datagrams each side of a pair writes between two
// readings of the clock, which cost a few percent of one write.
const udpBatch = 16

// BenchmarkUDPWrite compares datagram writes of 64 and 1400 bytes from a
// bound and an unbound socket, connected (Write) and unconnected
// (WriteToUDPAddrPort). The peer's socket never reads: once its buffer is
// full the kernel drops datagrams silently, without the ICMP error that a
// closed port would send back.
func BenchmarkUDPWrite(b *testing.B) {
	n := newBenchNet(b)
	pc, err := n.peer.ListenPacket("udp4", n.sink().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pc.Close() })
	dst := n.sink()
	bound := &bindtodev.Dialer{Interface: n.ifname}
	boundLC := &bindtodev.ListenConfig{Interface: n.ifname}
	open := map[string]map[string]func() (*net.UDPConn, error){
		"connected": {
			"unbound": func() (*net.UDPConn, error) { return udp(net.Dial("udp4", dst.String())) },
			"bound":   func() (*net.UDPConn, error) { return udp(bound.Dial("udp4", dst.String())) },
		},
		"unconnected": {
			"unbound": func() (*net.UDPConn, error) { return udp(net.ListenPacket("udp4", ":0")) },
			"bound": func() (*net.UDPConn, error) {
				return udp(boundLC.ListenPacket(context.Background(), "udp4", ":0"))
			},
		},
	}
	for _, size := range []int{64, 1400} {
		buf := make([]byte, size)
		for _, mode := range []string{"connected", "unconnected"} {
			write := map[string]func() error{}
			for _, name := range []string{"unbound", "bound"} {
				c, err := open[mode][name]()
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { c.Close() })
				dev, err := bindtodev.Device(c)
				if err != nil {
					b.Fatal(err)
				}
				if want := map[bool]string{true: n.ifname}[name == "bound"]; dev != want {
					b.Fatalf("socket bound to %q, want %q", dev, want)
				}
				write[name] = func() error {
					_, err := c.Write(buf)
					return err
				}
				if mode == "unconnected" {
					write[name] = func() error {
						_, err := c.WriteToUDPAddrPort(buf, dst)
						return err
					}
				}
			}
			for _, name := range []string{"unbound", "bound"} {
				b.Run(fmt.Sprintf("size=%d/mode=%s/variant=%s", size, mode, name), func(b *testing.B) {
					paired(b, "unbound", true, udpBatch, write[name], write["unbound"])
				})
			}
		}
	}
}

// udp narrows what net returns to the UDP socket it is.
func udp[T any](c T, err error) (*net.UDPConn, error) {
	if err != nil {
		return nil, err
	}
	u, ok := any(c).(*net.UDPConn)
	if !ok {
		return nil, fmt.Errorf("got %T, want *net.UDPConn", c)
	}
	return u, nil
}

// BenchmarkDialManyInterfaces repeats the plain, bound and naive dials in a
// namespace holding 1, 200 and 1,000 interfaces (loopback not counted).
// The fillers are veth pairs whose other ends live in a namespace of their
// own, so that closing the lab removes them all in one batch.
func BenchmarkDialManyInterfaces(b *testing.B) {
	n := newBenchNet(b)
	n.serveResets(b)
	address := n.sink().String()
	sink, err := n.lab.NewHost("fillers")
	if err != nil {
		b.Fatal(err)
	}
	have := 1 // the veth to the peer
	for _, want := range []int{1, 200, 1000} {
		if err := n.lab.Local.AddFillers(sink, fmt.Sprintf("f%dx", n.lab.N), have, want-have); err != nil {
			b.Fatal(err)
		}
		have = want
		links, err := n.lab.Local.Links()
		if err != nil {
			b.Fatal(err)
		}
		if links != want+1 {
			b.Fatalf("the namespace holds %d interfaces besides loopback, want %d", links-1, want)
		}
		variants := dialVariants(n.ifname, n.local, "plain", "empty-control", "floor", "bound", "naive")
		benchDials(b, fmt.Sprintf("ifaces=%d/", want), variants, address, n.ifname)
	}
}
