package bindtodev

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"unsafe"
)

// deviceForSlow is what deviceFor decides, by the full parse alone.
func deviceForSlow(network, address string) (bool, string) {
	addr, parsed := parseAddr(address)
	return wantsDevice(network, addr, parsed), addr.Zone()
}

// FuzzDeviceFor checks that the shortcut for plain IPv4 addresses decides
// exactly as the full parse does. Its seeds run with every go test.
func FuzzDeviceFor(f *testing.F) {
	for _, network := range []string{"tcp4", "udp6", "ip4:icmp", "unix"} {
		for _, address := range []string{
			"198.18.1.2:9", "198.18.1.2", "0.0.0.0:0", ":0", "", "1sock",
			"127.0.0.1:80", "127.1.2.3", "127.1:80", "0127.0.0.1:1", "1.2.3.4%eth0", "12.0.0.1%1:5",
			"[::1]:80", "::1", "0:0:0:0:0:0:0:1", "0::1", "1::1", "[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1",
			"[fe80::1%eth0]:80", "fe80::1%2", "2001:db8::1", "1.2.3.4:5:6", "9.9.9.9:http",
		} {
			f.Add(network, address)
		}
	}
	f.Fuzz(func(t *testing.T, network, address string) {
		gotBind, gotZone := deviceFor(network, address)
		wantBind, wantZone := deviceForSlow(network, address)
		if gotBind != wantBind || gotZone != wantZone {
			t.Errorf("deviceFor(%q, %q) = %v, %q; the full parse says %v, %q",
				network, address, gotBind, gotZone, wantBind, wantZone)
		}
	})
}

// TestSharedHook checks that Dialers that only bind share one hook per
// interface name, that anything more gets a hook of its own, and that names
// beyond the cache's bound still get a working hook.
func TestSharedHook(t *testing.T) {
	if !supported {
		t.Skip("the hook is made only where binding is supported")
	}
	hook := func(d *Dialer) unsafe.Pointer {
		t.Helper()
		var nd net.Dialer
		if err := d.netDialer(&nd); err != nil {
			t.Fatal(err)
		}
		if nd.ControlContext == nil {
			t.Fatalf("Dialer{Interface: %q} got no hook", d.Interface)
		}
		// The closure's own address: every method value of a binding
		// shares its code pointer.
		return *(*unsafe.Pointer)(unsafe.Pointer(&nd.ControlContext))
	}
	first, second := &Dialer{Interface: "hk0"}, &Dialer{Interface: "hk0"}
	if hook(first) != hook(second) {
		t.Error("two Dialers binding hk0 do not share their hook")
	}
	if hook(&Dialer{Interface: "hk0"}) == hook(&Dialer{Interface: "hk1"}) {
		t.Error("Dialers binding hk0 and hk1 share a hook")
	}
	own := &Dialer{Interface: "hk0", Source: netip.MustParseAddr("198.18.0.1")}
	if hook(own) == hook(&Dialer{Interface: "hk0"}) {
		t.Error("a Dialer with a Source shares the hook that only binds")
	}
	own = &Dialer{Interface: "hk0"}
	own.ControlContext = func(context.Context, string, string, syscall.RawConn) error { return nil }
	if hook(own) == hook(&Dialer{Interface: "hk0"}) {
		t.Error("a Dialer with its own ControlContext shares the hook that only binds")
	}
	for i := range 2 * maxDeviceHooks {
		hook(&Dialer{Interface: fmt.Sprintf("hk%d", i)})
	}
	if n := deviceHookCount.Load(); n > maxDeviceHooks {
		t.Errorf("%d hooks cached, want at most %d", n, maxDeviceHooks)
	}
}
