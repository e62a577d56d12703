//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// The benchmarks measure the package against the physical floor: every
// connection goes through a veth pair to a peer namespace, never over
// loopback, which the package leaves unbound. Sub-benchmarks are named
// .../variant=NAME so that `benchstat -col /variant` puts the variants side
// by side; scripts/bench.sh runs them in interleaved rounds.

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
	bound := &bindtodev.Dialer{Interface: ifname}
	boundSource := &bindtodev.Dialer{Interface: ifname, Source: source}
	control := &net.Dialer{Control: bindtodev.Control(ifname)}
	naive := &naiveDialer{ifname: ifname}
	all := []dialVariant{
		{"plain", plain.DialContext, false},
		{"empty-control", empty.DialContext, false},
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

// benchDial measures TCP dial and close. The sink resets the connection
// after the client's FIN, so nothing waits in TIME_WAIT.
func benchDial(b *testing.B, v dialVariant, address string) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c, err := v.dial(ctx, "tcp", address)
		if err != nil {
			b.Fatalf("%s: %v", v.name, err)
		}
		c.Close()
	}
}

// BenchmarkDial compares a TCP dial through a veth pair with net.Dialer,
// with an empty Control hook, with the package's Dialer (with and without
// Source), with its Control hook in a net.Dialer, and with the naive
// pattern.
func BenchmarkDial(b *testing.B) {
	n := newBenchNet(b)
	n.serveResets(b)
	address := n.sink().String()
	for _, v := range dialVariants(n.ifname, n.local) {
		checkDial(b, v, address, n.ifname)
		b.Run("variant="+v.name, func(b *testing.B) { benchDial(b, v, address) })
	}
}

// BenchmarkListenAccept compares the accept rate of a bound and an unbound
// listener. A connector in the peer namespace keeps a window of connection
// attempts open and aborts each one once established, so that the accept
// queue never overflows (a dropped SYN costs a 1 s retransmit) and nothing
// enters TIME_WAIT.
func BenchmarkListenAccept(b *testing.B) {
	n := newBenchNet(b)
	listeners := []struct {
		name   string
		config interface {
			Listen(context.Context, string, string) (net.Listener, error)
		}
	}{
		{"unbound", &net.ListenConfig{}},
		{"bound", &bindtodev.ListenConfig{Interface: n.ifname}},
	}
	for _, l := range listeners {
		b.Run("variant="+l.name, func(b *testing.B) {
			ln, err := l.config.Listen(context.Background(), "tcp4", netip.AddrPortFrom(n.local, 0).String())
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			dev, err := bindtodev.Device(ln.(*net.TCPListener))
			if err != nil {
				b.Fatal(err)
			}
			if want := map[bool]string{true: n.ifname}[l.name == "bound"]; dev != want {
				b.Fatalf("listener bound to %q, want %q", dev, want)
			}
			port := netip.MustParseAddrPort(ln.Addr().String()).Port()
			const window = 32
			tokens := make(chan struct{}, window)
			for range window {
				tokens <- struct{}{}
			}
			stop := make(chan struct{})
			connErr := make(chan error, 1)
			go func() {
				connErr <- n.peer.Do(func() error { return connectLoop(n.local, port, tokens, stop) })
			}()
			b.ReportAllocs()
			for b.Loop() {
				c, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
				tokens <- struct{}{}
			}
			close(stop)
			if err := <-connErr; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// connectLoop connects to to:port once per token, with raw system calls so
// that it allocates nothing, and aborts each connection at once.
func connectLoop(to netip.Addr, port uint16, tokens <-chan struct{}, stop <-chan struct{}) error {
	sa := &unix.SockaddrInet4{Port: int(port), Addr: to.As4()}
	for {
		select {
		case <-stop:
			return nil
		case <-tokens:
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
	open := map[string]map[bool]func() (*net.UDPConn, error){
		"connected": {
			false: func() (*net.UDPConn, error) { return udp(net.Dial("udp4", dst.String())) },
			true:  func() (*net.UDPConn, error) { return udp(bound.Dial("udp4", dst.String())) },
		},
		"unconnected": {
			false: func() (*net.UDPConn, error) { return udp(net.ListenPacket("udp4", ":0")) },
			true: func() (*net.UDPConn, error) {
				return udp(boundLC.ListenPacket(context.Background(), "udp4", ":0"))
			},
		},
	}
	for _, size := range []int{64, 1400} {
		for _, mode := range []string{"connected", "unconnected"} {
			for _, isBound := range []bool{false, true} {
				name := map[bool]string{false: "unbound", true: "bound"}[isBound]
				b.Run(fmt.Sprintf("size=%d/mode=%s/variant=%s", size, mode, name), func(b *testing.B) {
					c, err := open[mode][isBound]()
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					dev, err := bindtodev.Device(c)
					if err != nil {
						b.Fatal(err)
					}
					if want := map[bool]string{true: n.ifname}[isBound]; dev != want {
						b.Fatalf("socket bound to %q, want %q", dev, want)
					}
					buf := make([]byte, size)
					write := func() (int, error) { return c.Write(buf) }
					if mode == "unconnected" {
						write = func() (int, error) { return c.WriteToUDPAddrPort(buf, dst) }
					}
					b.SetBytes(int64(size))
					b.ReportAllocs()
					for b.Loop() {
						if _, err := write(); err != nil {
							b.Fatal(err)
						}
					}
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
		for _, v := range dialVariants(n.ifname, n.local, "plain", "empty-control", "bound", "naive") {
			checkDial(b, v, address, n.ifname)
			b.Run(fmt.Sprintf("ifaces=%d/variant=%s", want, v.name), func(b *testing.B) { benchDial(b, v, address) })
		}
	}
}
