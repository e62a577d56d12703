package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/bindtodev/bindtodev"
	"github.com/quic-go/quic-go"
)

// QUICTransport returns a quic-go Transport on a UDP socket at address
// that is bound to the interface named ifname, for clients (Dial) and
// servers (Listen) alike: it sends and receives through ifname only.
// quic.DialAddr and quic.ListenAddr make sockets of their own, unbound. The
// socket is a *net.UDPConn, so quic-go still uses GSO, ECN and path MTU
// discovery on it. The Transport does not close a socket it was given:
// close tr.Conn after tr.
//
// A QUIC server answers through the interface a packet arrived on even when
// its socket is unbound; binding it is what stops a client behind another
// interface from reaching it at all.
func QUICTransport(ctx context.Context, ifname, address string) (*quic.Transport, error) {
	lc := bindtodev.ListenConfig{Interface: ifname}
	pc, err := lc.ListenPacket(ctx, "udp", address)
	if err != nil {
		return nil, err
	}
	return &quic.Transport{Conn: pc}, nil
}

// ResolveUDP looks up hostport with d's Resolver, for Transport.Dial, which
// takes an address rather than a name: quic.DialAddr would look the name up
// with net's default resolver.
func ResolveUDP(ctx context.Context, d *bindtodev.Dialer, hostport string) (*net.UDPAddr, error) {
	host, service, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	port, err := d.Resolver.LookupPort(ctx, "udp", service)
	if err != nil {
		return nil, err
	}
	ips, err := d.Resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("lookup %s: no addresses", host)
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(port))), nil
}
