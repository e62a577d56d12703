//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// fdConn hands a bare descriptor to a Control hook, as net does.
type fdConn int

func (c fdConn) Control(f func(fd uintptr)) error  { f(uintptr(c)); return nil }
func (c fdConn) Read(func(fd uintptr) bool) error  { return errors.New("not used") }
func (c fdConn) Write(func(fd uintptr) bool) error { return errors.New("not used") }

// FuzzControl feeds the Control hook arbitrary networks and addresses, on
// a real socket of the family the network names, with an interface of the
// lab, and judges the outcome by what the kernel itself does with the
// address, never by the package's own parsing or loopback test:
//
//   - A Unix socket is left alone: no device, no error.
//   - Every IP socket the hook accepts is bound, never left unbound.
//   - It is bound to lo when the kernel delivers the address by loopback,
//     and to the interface otherwise. The kernel is asked in a namespace of
//     its own whose only interface is lo: an unbound UDP socket of the
//     address's family, with SO_BROADCAST, connect()s to the address
//     exactly when lo delivers it (there is no other route). Exception:
//     the unspecified addresses (and an empty host), which the kernel also
//     connects to through lo, are listening wildcards and must get the
//     interface.
//   - A zone is judged by the kernel too, on the link-local form
//     fe80::1%zone: a UDP socket bound to the device the hook should have
//     chosen, with a bare setsockopt, is net.Dial-ed to it (net turns the
//     zone into a scope ID). The hook must refuse, with EINVAL naming the
//     zone, exactly the zones the kernel refuses, whatever the address.
//
// The address is parsed with net.SplitHostPort and net.ParseIP, not with
// the package's parser. Leniencies, each because net never hands such an
// input to a hook or the kernel ignores it: an address that does not parse
// may be refused or must be bound to the interface; a non-canonical form
// (an IPv4 address in brackets or with a zone, a port that is not 0 to
// 65535, an empty zone after '%') may get the interface even when the
// kernel delivers it by loopback; a zone on such a form, or on an address
// the kernel routes as IPv4, may be refused or ignored; and a zone that
// names no interface, which net turns into scope 0 and the kernel then
// accepts, may be refused.
//
// The family of the hook's socket: tcp4, udp4 and ip4… give AF_INET; tcp6,
// udp6 and ip6… AF_INET6; unix, unixgram and unixpacket AF_UNIX; anything
// else, which net never passes, AF_INET6, the family of net's dual-stack
// sockets. In the inputs "@IF" and "@IDX" stand for the lab interface's
// name and index, so that seeds can name it.
func FuzzControl(f *testing.F) {
	for _, seed := range [][2]string{
		{"tcp4", "198.18.0.1:80"}, {"tcp6", "[2001:db8::1]:443"}, {"udp6", "[fe80::1%@IF]:53"},
		{"udp6", "[fe80::1%@IDX]:53"}, {"tcp6", "[fe80::1%eth0]:22"}, {"tcp6", "[fe80::1%1]:22"},
		{"udp6", "[fe80::1%]:1"}, {"udp4", "127.0.0.1:53"}, {"tcp6", "[::1]:80"}, {"tcp6", "[::ffff:127.0.0.1]:8"},
		{"tcp6", "[::ffff:127.0.0.1%@IF]:8"}, {"ip6", "::1"}, {"ip4", "127.255.255.254"}, {"unix", "/tmp/s"},
		{"unixgram", ""}, {"tcp", "garbage"}, {"udp4", "127.0.0.1%lo:1"}, {"tcp6", "[::1%lo]:1"}, {"tcp4", ":0"},
		{"udp6", "[%@IF]:0"}, {"tcp6", "[fe80::1%-1]:1"}, {"tcp6", "[fe80::1%99999999999999999999]:1"},
		{"udp6", "[::1%@IF]:53"}, {"tcp4", "0.0.0.0:0"}, {"udp4", "255.255.255.255:67"}, {"udp4", "127.255.255.255:9"},
		{"tcp6", "[::]:0"}, {"tcp6", "[::ffff:0.0.0.0]:1"}, {"ip4:icmp4", "127.0.0.1"}, {"udp6", "[ff02::1%@IF]:9"},
		{"udp4", "224.0.0.1:9"}, {"tcp6", "[::127.0.0.1]:1"}, {"unixpacket", "@x"}, {"tcp4", "[127.0.0.1]:80"},
	} {
		f.Add(seed[0], seed[1])
	}
	lab, ifname, index := fuzzLab(f, "fc")
	if lab == nil {
		f.Skip("the Control hook needs a lab interface")
	}
	onlyLo, err := lab.NewHost("O")
	if err != nil {
		f.Fatal(err)
	}
	oracle := startNSWorker(f, onlyLo)
	control := bindtodev.Control(ifname)
	idx := strconv.Itoa(index)
	f.Fuzz(func(t *testing.T, network, address string) {
		address = strings.ReplaceAll(strings.ReplaceAll(address, "@IF", ifname), "@IDX", idx)
		fd, err := hookSocket(network)
		if err != nil {
			t.Fatalf("socket for %q: %v", network, err)
		}
		defer unix.Close(fd)
		err = control(network, address, fdConn(fd))
		dev, derr := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
		if derr != nil {
			t.Fatal(derr)
		}
		call := "Control(" + strconv.Quote(network) + ", " + strconv.Quote(address) + ")"

		if strings.HasPrefix(network, "unix") {
			if dev != "" || err != nil {
				t.Fatalf("%s bound a Unix socket to %q (err %v); it must be left alone", call, dev, err)
			}
			return
		}
		a, ok := oracleParse(address)
		if !ok {
			if err == nil && dev != ifname {
				t.Fatalf("%s accepted an address it cannot read and bound the socket to %q, not %q", call, dev, ifname)
			}
			return
		}
		loop := !a.wildcard && oracle.loopback(a.ip)
		want := ifname
		if loop {
			want = "lo"
		}
		allowed := map[string]bool{want: true}
		if !a.canonical {
			allowed[ifname] = true
		}
		if a.zone == "" {
			switch {
			case err != nil:
				t.Fatalf("%s = %v; want the socket bound to %q", call, err, want)
			case !allowed[dev] && a.wildcard:
				t.Fatalf("%s bound the socket to %q; want %q: a wildcard address is bound to the interface", call, dev, want)
			case !allowed[dev]:
				t.Fatalf("%s bound the socket to %q; want %q (the kernel delivers %s by loopback: %v)", call, dev, want, a.ip, loop)
			}
			return
		}
		if a.ip.To4() != nil || !a.canonical {
			// The kernel has no zones for IPv4, and net never passes
			// a non-canonical form: the hook may refuse the zone or
			// ignore it, but a socket it accepts is bound right.
			if err == nil && !allowed[dev] {
				t.Fatalf("%s bound the socket to %q; want %q", call, dev, want)
			}
			return
		}
		if err == nil {
			if !allowed[dev] {
				t.Fatalf("%s bound the socket to %q; want %q", call, dev, want)
			}
			if v := zoneVerdict(dev, a.zone); v == kernelRefusesZone {
				t.Fatalf("%s accepted zone %q, which the kernel refuses on a socket bound to %q", call, a.zone, dev)
			}
			return
		}
		if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), strconv.Quote(a.zone)) {
			t.Fatalf("%s = %v; the only refusal allowed is EINVAL naming the zone %q", call, err, a.zone)
		}
		// Refused: right if the kernel refuses the zone on a device the
		// hook may choose, or the zone names no interface.
		for d := range allowed {
			if v := zoneVerdict(d, a.zone); v != kernelAcceptsZone {
				return
			}
		}
		t.Fatalf("%s = %v, but the kernel accepts zone %q, which names an interface, on a socket bound to %q", call, err, a.zone, want)
	})
}

// hookSocket opens a socket of the family and type network names, as net
// would for it.
func hookSocket(network string) (int, error) {
	family, typ, proto := unix.AF_INET6, unix.SOCK_DGRAM, 0
	switch {
	case strings.HasPrefix(network, "tcp4"), strings.HasPrefix(network, "udp4"), strings.HasPrefix(network, "ip4"):
		family = unix.AF_INET
	case strings.HasPrefix(network, "unix"):
		family = unix.AF_UNIX
	}
	switch {
	case strings.HasPrefix(network, "tcp"):
		typ = unix.SOCK_STREAM
	case strings.HasPrefix(network, "ip"):
		typ, proto = unix.SOCK_RAW, unix.IPPROTO_ICMP
		if family == unix.AF_INET6 {
			proto = unix.IPPROTO_ICMPV6
		}
	case network == "unix":
		typ = unix.SOCK_STREAM
	case network == "unixpacket":
		typ = unix.SOCK_SEQPACKET
	}
	return unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
}

// oracleAddr is an address as the oracle reads it.
type oracleAddr struct {
	ip   net.IP
	zone string
	// wildcard is true for the unspecified addresses and an empty host.
	wildcard bool
	// canonical is false for forms net never hands to a hook.
	canonical bool
}

// oracleParse reads address with net's own parsers: "host:port" for TCP
// and UDP, a bare host for IP networks, the host perhaps with a zone.
func oracleParse(address string) (oracleAddr, bool) {
	host, port, err := net.SplitHostPort(address)
	bracketed := err == nil && strings.HasPrefix(address, "[")
	canonical := true
	if err != nil {
		host = address
	} else if _, perr := strconv.ParseUint(port, 10, 16); perr != nil {
		canonical = false
	}
	ipText, zone, zoned := strings.Cut(host, "%")
	if zoned && zone == "" {
		canonical = false
	}
	if ipText == "" && !zoned && err == nil {
		return oracleAddr{wildcard: true, canonical: canonical}, true
	}
	ip := net.ParseIP(ipText)
	if ip == nil {
		return oracleAddr{}, false
	}
	if ip.To4() != nil && !strings.Contains(ipText, ":") && (zone != "" || bracketed) {
		canonical = false
	}
	return oracleAddr{ip: ip, zone: zone, wildcard: ip.IsUnspecified(), canonical: canonical}, true
}

// nsWorker runs functions on one OS thread kept in a namespace, so that
// asking the kernel costs no thread per input.
type nsWorker struct{ jobs chan func() }

func startNSWorker(f *testing.F, h *netlab.Host) *nsWorker {
	w := &nsWorker{jobs: make(chan func())}
	go func() {
		_ = h.Do(func() error {
			for job := range w.jobs {
				job()
			}
			return nil
		})
	}()
	f.Cleanup(func() { close(w.jobs) })
	return w
}

// loopback reports whether the kernel of w's namespace, where lo is the
// only interface, connects an unbound UDP socket of ip's family to ip.
func (w *nsWorker) loopback(ip net.IP) bool {
	done := make(chan bool)
	w.jobs <- func() {
		family := unix.AF_INET6
		var sa unix.Sockaddr
		if v4 := ip.To4(); v4 != nil {
			family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: 9, Addr: [4]byte(v4)}
		} else {
			sa = &unix.SockaddrInet6{Port: 9, Addr: [16]byte(ip.To16())}
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			panic(err)
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
			panic(err)
		}
		done <- unix.Connect(fd, sa) == nil
	}
	return <-done
}

// zoneVerdictKind is the kernel's verdict on a zone.
type zoneVerdictKind int

const (
	kernelAcceptsZone zoneVerdictKind = iota // the zone names an interface the kernel accepts
	kernelRefusesZone                        // connect fails with EINVAL
	zoneNamesNothing                         // accepted, as scope 0 or not at all: names no interface
)

// noDNS keeps the zone check from looking anything up.
var noDNS = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("no DNS in FuzzControl")
}}

// zoneVerdict asks the kernel what it does with zone on a UDP socket bound
// to dev with a bare setsockopt, connected to fe80::1%zone by net.
func zoneVerdict(dev, zone string) zoneVerdictKind {
	d := &net.Dialer{Resolver: noDNS, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("udp6", net.JoinHostPort("fe80::1%"+zone, "9"))
	switch {
	case errors.Is(err, syscall.EINVAL):
		return kernelRefusesZone
	case err != nil:
		// net could not read the zone as part of an address.
		return zoneNamesNothing
	}
	c.Close()
	if _, err := net.InterfaceByName(zone); err == nil {
		return kernelAcceptsZone
	}
	if n, err := strconv.ParseUint(zone, 10, 31); err == nil && n > 0 {
		if _, err := net.InterfaceByIndex(int(n)); err == nil {
			return kernelAcceptsZone
		}
	}
	return zoneNamesNothing
}
