//go:build go1.26

package bindtodev

import (
	"context"
	"net"
	"net/netip"
	"strings"
)

// These methods shadow the ones net.Dialer gained in Go 1.26: promoted from
// the embedded, unbound net.Dialer they would dial without binding. They
// dial through DialContext, because net's own versions bind a wildcard local
// address after the Control hook, which would collide with a bound Source.

// DialTCP is like [net.Dialer.DialTCP] through a socket bound to Interface.
// A valid laddr is bound as the source address, as Source would be, and may
// not be combined with Source or LocalAddr.
func (d *Dialer) DialTCP(ctx context.Context, network string, laddr, raddr netip.AddrPort) (*net.TCPConn, error) {
	var local net.Addr
	if laddr.IsValid() {
		local = net.TCPAddrFromAddrPort(laddr)
	}
	c, err := d.dialAs(ctx, "tcp", network, local, raddr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// DialUDP is like [net.Dialer.DialUDP] through a socket bound to Interface.
// A valid laddr is bound as the source address, as Source would be, and may
// not be combined with Source or LocalAddr.
func (d *Dialer) DialUDP(ctx context.Context, network string, laddr, raddr netip.AddrPort) (*net.UDPConn, error) {
	var local net.Addr
	if laddr.IsValid() {
		local = net.UDPAddrFromAddrPort(laddr)
	}
	c, err := d.dialAs(ctx, "udp", network, local, raddr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// DialIP is like [net.Dialer.DialIP] through a socket bound to Interface.
// A valid laddr is bound as the source address, as Source would be, and may
// not be combined with Source or LocalAddr.
func (d *Dialer) DialIP(ctx context.Context, network string, laddr, raddr netip.Addr) (*net.IPConn, error) {
	var local net.Addr
	if laddr.IsValid() {
		local = &net.IPAddr{IP: laddr.AsSlice(), Zone: laddr.Zone()}
	}
	c, err := d.dialAs(ctx, "ip", network, local, raddr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.IPConn), nil
}

// DialUnix is like [net.Dialer.DialUnix]. Unix domain sockets never leave
// the host and are not bound, but an invalid Interface still fails the dial.
func (d *Dialer) DialUnix(ctx context.Context, network string, laddr, raddr *net.UnixAddr) (*net.UnixConn, error) {
	var nd net.Dialer
	if err := d.netDialer(&nd); err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	return nd.DialUnix(ctx, network, laddr, raddr)
}

// dialAs dials a network of the given kind ("tcp", "udp" or "ip") with
// local, when not nil, as the source address.
func (d *Dialer) dialAs(ctx context.Context, kind, network string, local net.Addr, address string) (net.Conn, error) {
	fail := func(err error) error { return &net.OpError{Op: "dial", Net: network, Err: err} }
	if !strings.HasPrefix(network, kind) {
		return nil, fail(net.UnknownNetworkError(network))
	}
	c := *d
	if local != nil {
		if d.LocalAddr != nil || d.Source.IsValid() {
			return nil, fail(errBothSources)
		}
		c.LocalAddr = local
	}
	if c.Follow {
		return c.dialFollow(ctx, network, address)
	}
	var nd net.Dialer
	if err := c.netDialer(&nd); err != nil {
		return nil, fail(err)
	}
	return nd.DialContext(ctx, network, address)
}
