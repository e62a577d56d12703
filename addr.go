package bindtodev

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// The addresses a Control hook is handed, and the IPv6 zones in them: a
// zone names an interface, and one that names another than the bound one
// would move the socket or its datagrams there.

// parseAddr extracts the IP address and its zone from the address that net
// passes to a Control hook: "host:port" for TCP and UDP, a bare address for
// IP networks. net writes an IPv4-mapped IPv6 address with a zone as IPv4
// with that zone ("127.0.0.1%lo:80"), which netip refuses; it is read too.
func parseAddr(address string) (addr netip.Addr, zone string, ok bool) {
	if ap, err := netip.ParseAddrPort(address); err == nil {
		return ap.Addr(), ap.Addr().Zone(), true
	}
	if a, err := netip.ParseAddr(address); err == nil {
		return a, a.Zone(), true
	}
	if ip, rest, found := strings.Cut(address, "%"); found {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
			if i := strings.LastIndexByte(rest, ':'); i >= 0 {
				rest = rest[:i]
			}
			return a, rest, true
		}
	}
	return netip.Addr{}, "", false
}

// checkZone refuses an IPv6 zone that names another interface than the
// bound one: the kernel would fail the connect with a bare EINVAL, or, for
// an unconnected UDP send, obey the zone and leave through that interface.
func checkZone(fd uintptr, zone, ifname, address string) error {
	if zone == ifname {
		return nil
	}
	if index, ok := zoneIndex(zone); ok {
		// net reads a numeric zone as an interface's name first, and
		// as an index only when no interface has that name.
		if named, err := nameIndex(fd, zone); err == nil {
			index = named
		}
		bound, err := boundIndex(fd)
		if err != nil {
			return fmt.Errorf("read back the index of device %q: %w", ifname, err)
		}
		if bound == index {
			return nil
		}
	}
	return fmt.Errorf("address %s names interface %q but the socket is bound to %q: %w",
		address, zone, ifname, syscall.EINVAL)
}

// checkLocalZone refuses a LocalAddr whose IPv6 zone names another
// interface than ifname: net binds LocalAddr after the hook, and bind(2)
// with a scope ID moves the socket to that interface, without any
// privilege.
func checkLocalZone(c syscall.RawConn, ifname string, local net.Addr) error {
	var zone string
	switch a := local.(type) {
	case *net.TCPAddr:
		if a != nil {
			zone = a.Zone
		}
	case *net.UDPAddr:
		if a != nil {
			zone = a.Zone
		}
	case *net.IPAddr:
		if a != nil {
			zone = a.Zone
		}
	}
	if zone == "" {
		return nil
	}
	return withRaw(c, func(fd uintptr) error {
		return checkZone(fd, zone, ifname, "LocalAddr "+local.String())
	})
}

// zoneIndex reads a numeric zone the way net turns one into a scope ID:
// decimal digits only, leading zeros allowed.
func zoneIndex(zone string) (int, bool) {
	if zone == "" {
		return 0, false
	}
	if zone = strings.TrimLeft(zone, "0"); len(zone) > 9 {
		return 0, false // larger than any interface index
	}
	n := 0
	for i := 0; i < len(zone); i++ {
		c := zone[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
