//go:build !bindtodev_stub

package bindtodev_test

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
)

// fdConn hands a bare descriptor to a Control hook, as net does.
type fdConn int

func (c fdConn) Control(f func(fd uintptr)) error  { f(uintptr(c)); return nil }
func (c fdConn) Read(func(fd uintptr) bool) error  { return errors.New("not used") }
func (c fdConn) Write(func(fd uintptr) bool) error { return errors.New("not used") }

// FuzzControl feeds the Control hook arbitrary networks and addresses, as
// net would pass them, on real sockets, with an interface of the lab: it
// must never panic; it binds every socket but a Unix socket, to lo when
// its address is a loopback address; and it fails only for an IPv6 zone
// that names another interface, with EINVAL. In the inputs "@IF"
// and "@IDX" stand for the lab interface's name and index, so that seeds can
// name it.
func FuzzControl(f *testing.F) {
	for _, seed := range [][2]string{
		{"tcp4", "198.18.0.1:80"}, {"tcp6", "[2001:db8::1]:443"}, {"udp6", "[fe80::1%@IF]:53"},
		{"udp6", "[fe80::1%@IDX]:53"}, {"tcp6", "[fe80::1%eth0]:22"}, {"tcp6", "[fe80::1%1]:22"},
		{"udp6", "[fe80::1%]:1"}, {"udp4", "127.0.0.1:53"}, {"tcp6", "[::1]:80"}, {"tcp6", "[::ffff:127.0.0.1]:8"},
		{"tcp6", "[::ffff:127.0.0.1%@IF]:8"}, {"ip6", "::1"}, {"ip4", "127.255.255.254"}, {"unix", "/tmp/s"},
		{"unixgram", ""}, {"tcp", "garbage"}, {"udp4", "127.0.0.1%lo:1"}, {"tcp6", "[::1%lo]:1"}, {"tcp4", ":0"},
		{"udp6", "[%@IF]:0"}, {"tcp6", "[fe80::1%-1]:1"}, {"tcp6", "[fe80::1%99999999999999999999]:1"},
	} {
		f.Add(seed[0], seed[1])
	}
	lab, ifname, index := fuzzLab(f, "fc")
	if lab == nil {
		f.Skip("the Control hook needs a lab interface")
	}
	control := bindtodev.Control(ifname)
	idx := strconv.Itoa(index)
	f.Fuzz(func(t *testing.T, network, address string) {
		address = strings.ReplaceAll(strings.ReplaceAll(address, "@IF", ifname), "@IDX", idx)
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		err = control(network, address, fdConn(fd))
		dev, derr := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
		if derr != nil {
			t.Fatal(derr)
		}

		addr, parsed := fuzzParse(address)
		zone := addr.Zone()
		wantDev, wantIndex := ifname, index
		if parsed && addr.Unmap().IsLoopback() {
			wantDev, wantIndex = "lo", 1
		}
		switch {
		case strings.HasPrefix(network, "unix"):
			if dev != "" {
				t.Fatalf("Control(%q, %q) bound a Unix socket to %q", network, address, dev)
			}
			if err != nil {
				t.Fatalf("Control(%q, %q) = %v for a socket it leaves alone", network, address, err)
			}
		case dev != wantDev:
			t.Fatalf("Control(%q, %q) left the socket bound to %q, want %q (err %v)", network, address, dev, wantDev, err)
		case zone != "" && zone != wantDev && !decimalIs(zone, wantIndex):
			if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), strconv.Quote(zone)) {
				t.Fatalf("Control(%q, %q) = %v; want EINVAL naming the zone", network, address, err)
			}
		case err != nil:
			t.Fatalf("Control(%q, %q) = %v", network, address, err)
		}
	})
}

// decimalIs reports whether zone is index written in decimal digits, with
// any leading zeros, which is how net reads a numeric zone.
func decimalIs(zone string, index int) bool {
	trimmed := strings.TrimLeft(zone, "0")
	if trimmed == "" {
		trimmed = "0"
	}
	for _, c := range trimmed {
		if c < '0' || c > '9' {
			return false
		}
	}
	return trimmed == strconv.Itoa(index)
}

// fuzzParse reads an address as net hands it to a Control hook, the same
// two forms the package accepts, written again here so that the check does
// not trust the code under test.
func fuzzParse(address string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(address); err == nil {
		return ap.Addr(), true
	}
	a, err := netip.ParseAddr(address)
	return a, err == nil
}
