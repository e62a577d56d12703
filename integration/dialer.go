package integration

import (
	"net/netip"

	"github.com/bindtodev/bindtodev"
)

// NewDialer returns a Dialer whose connections, and the lookups of the names
// it dials, leave through the interface named ifname. The lookups go to the
// name servers dns, tried in order, or with none to those of
// /etc/resolv.conf; a Dialer without a Resolver would look names up with
// net's default resolver, whose queries leave wherever the routing table
// points.
func NewDialer(ifname string, dns ...netip.AddrPort) *bindtodev.Dialer {
	d := &bindtodev.Dialer{Interface: ifname}
	d.Resolver = bindtodev.Resolver(ifname, dns...)
	return d
}
