package bindtodev

import (
	"context"
	"net"
	"net/netip"
)

// Dialer is a drop-in replacement for [net.Dialer]: every socket it creates
// is bound to Interface before it connects.
//
// The embedded net.Dialer is the unbound configuration: Timeout, Deadline,
// KeepAlive, Resolver, FallbackDelay, LocalAddr, Control and ControlContext
// keep their meaning, but passing &d.Dialer to another API would dial
// unbound. Use [Dialer.NetDialer] wherever an API needs a *net.Dialer.
//
// A host name is looked up with Resolver, or net's default resolver when
// it is nil, and that resolver's queries are not bound: they leave through
// whatever interface the routing table picks for the name server, even
// though the connection then leaves through Interface. Set Resolver to
// [Resolver](Interface, servers...) to send the lookups through Interface
// too.
//
// A Dialer may be used by many goroutines at once, as long as its fields are
// not changed meanwhile.
type Dialer struct {
	net.Dialer

	// Interface names the interface every socket is bound to. It is
	// required: an empty name fails the dial, it never means "unbound".
	// A dial to a loopback destination (127.0.0.0/8, ::1) binds its
	// socket to lo instead, which reaches only the host, so such a dial
	// succeeds even when Interface names no existing interface (its name
	// is still checked). Naming "lo" here pins every dial to the host.
	Interface string

	// Source, when valid, is bind(2)-ed as the socket's source address,
	// for TCP and UDP alike. It sets the address the peer sees, not the
	// path, which Interface decides; a source address of another interface
	// is allowed but rarely what a network wants. For TCP the port is left
	// to connect(2) (IP_BIND_ADDRESS_NO_PORT), so connections from one
	// source to many destinations are not limited by one ephemeral port
	// range. An IPv6 link-local Source may carry a zone only if it names
	// Interface. Setting both Source and LocalAddr is an error.
	//
	// Dialing an address of the other family than Source fails with an
	// error naming both addresses; when a name resolves to both families,
	// the attempts of Source's family still connect.
	Source netip.Addr

	// Follow makes dials wait for the interface while no interface has the
	// name, within the context, Timeout and Deadline, instead of failing
	// with ENODEV at once, and makes every connection end when its
	// interface is deleted: a blocked Read returns and Write fails, within
	// moments. Connections stay *net.TCPConn, *net.UDPConn or *net.IPConn.
	// NetDialer with Follow waits the same way inside its Control hook, but
	// does not end the connections of its dials. See docs/lifecycle.md in
	// the repository.
	Follow bool
}

// Dial connects to address on the named network through a socket bound to
// Interface. See [net.Dialer.Dial] for the networks and addresses.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address on the named network using ctx, through
// a socket bound to Interface. It checks the configuration before it
// resolves any name, so a bad Interface fails without a DNS query. See
// [net.Dialer.DialContext].
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if d.Follow {
		return d.dialFollow(ctx, network, address)
	}
	var nd net.Dialer
	if err := d.netDialer(&nd, nil); err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, afterBind("dial", d.Interface, err)
	}
	return c, nil
}

// NetDialer returns a *net.Dialer configured like d whose sockets are bound
// to Interface, for APIs that need exactly a *net.Dialer, such as
// tls.Dialer.NetDialer and tls.DialWithDialer.
//
// Its ControlContext binds the socket, then runs d's own ControlContext or
// Control, then binds Source or LocalAddr; its LocalAddr is therefore nil
// when d's was an IP, TCP or UDP address. Multipath TCP is off, and stays
// off in effect: a later SetMultipathTCP(true) on the returned Dialer makes
// net try Multipath TCP, the hook refuses that socket, and net falls back
// to a bound TCP socket.
//
// A configuration error, such as an invalid Interface, is returned by
// every dial of the returned Dialer rather than by NetDialer, so the
// returned Dialer never dials unbound, and its Resolver fails every lookup
// with that error before a query is sent. net keeps only the text of a
// resolver's dial error in the *net.DNSError it returns, so for a host name
// errors.Is(err, ErrInvalidName) does not hold, although the message names
// the interface and the rule; for an IP address it holds.
func (d *Dialer) NetDialer() *net.Dialer {
	nd := new(net.Dialer)
	if err := d.netDialer(nd, nd); err != nil {
		*nd = d.Dialer
		nd.LocalAddr, nd.Control = nil, nil
		nd.ControlContext = binding{err: err}.controlContext
		nd.Resolver = failingResolver(err)
		nd.SetMultipathTCP(false)
	} else if d.Follow {
		nd.ControlContext = followHook(d.Interface, nd.ControlContext)
	}
	return nd
}

// SetMultipathTCP has no effect, and exists so that code written for a
// net.Dialer keeps compiling: every socket of a Dialer uses plain TCP,
// because Linux binds only the first subflow of a Multipath TCP connection
// to the interface, and the path manager sends the other subflows wherever
// its endpoints or the routing table say.
func (d *Dialer) SetMultipathTCP(bool) {}

// MultipathTCP reports false: a Dialer never uses Multipath TCP (see
// [Dialer.SetMultipathTCP]).
func (d *Dialer) MultipathTCP() bool { return false }

// netDialer fills nd with the bound configuration. It writes into the
// caller's net.Dialer because net.Dialer's methods do not keep their
// receiver: a dial keeps it on the stack and copies it once. handedOut is
// nd when NetDialer hands it out, and nil when nd never leaves the package,
// so that no one can turn Multipath TCP back on or set its LocalAddr and
// its sockets need no check. (A separate parameter keeps a private nd on
// the caller's stack.)
func (d *Dialer) netDialer(nd, handedOut *net.Dialer) error {
	if err := checkName(d.Interface); err != nil {
		return err
	}
	b := binding{ifname: d.Interface, user: d.ControlContext, multipathOff: handedOut == nil, handedOut: handedOut}
	if b.user == nil {
		b.user = ignoreContext(d.Control)
	}
	src, fromLocal, err := d.sourceAddr()
	if err != nil {
		return &Error{Op: "config", Interface: d.Interface, Err: err}
	}
	*nd = d.Dialer
	if fromLocal {
		nd.LocalAddr = nil
	}
	b.source = src
	b.sourceSet = src.Addr().IsValid() || src.Port() != 0
	nd.Control = nil
	nd.ControlContext = b.controlContext
	nd.SetMultipathTCP(false)
	return nil
}

// sourceAddr merges Source and LocalAddr into the address the hook binds.
// fromLocal reports that LocalAddr was taken over, so net must not bind it
// a second time.
func (d *Dialer) sourceAddr() (src netip.AddrPort, fromLocal bool, err error) {
	if d.LocalAddr == nil {
		if d.Source.IsValid() {
			return netip.AddrPortFrom(d.Source.Unmap(), 0), false, nil
		}
		return netip.AddrPort{}, false, nil
	}
	var ip net.IP
	var zone string
	var port int
	// A nil *net.TCPAddr and the like is a wildcard address to net, and
	// must not panic here.
	switch a := d.LocalAddr.(type) {
	case *net.TCPAddr:
		if a != nil {
			ip, zone, port = a.IP, a.Zone, a.Port
		}
	case *net.UDPAddr:
		if a != nil {
			ip, zone, port = a.IP, a.Zone, a.Port
		}
	case *net.IPAddr:
		if a != nil {
			ip, zone = a.IP, a.Zone
		}
	default:
		// Unix addresses and the like: net checks them against the
		// network itself.
		if d.Source.IsValid() {
			return netip.AddrPort{}, false, ErrSourceAndLocalAddr
		}
		return netip.AddrPort{}, false, nil
	}
	if d.Source.IsValid() {
		return netip.AddrPort{}, false, ErrSourceAndLocalAddr
	}
	addr, _ := netip.AddrFromSlice(ip)
	if addr.IsValid() {
		addr = addr.Unmap().WithZone(zone)
	}
	return netip.AddrPortFrom(addr, uint16(port)), true, nil
}

// Dial connects to address on the named network through a socket bound to
// the interface named ifname. It is short for a [Dialer] with Interface set
// and nothing else.
func Dial(ifname, network, address string) (net.Conn, error) {
	d := Dialer{Interface: ifname}
	return d.Dial(network, address)
}
