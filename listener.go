package bindtodev

import (
	"context"
	"net"
)

// ListenConfig is a drop-in replacement for [net.ListenConfig]: every
// listener and packet socket it creates is bound to Interface, so it accepts
// connections and receives datagrams only from that interface, and sockets
// accepted from it are bound to Interface too.
//
// The embedded net.ListenConfig is the unbound configuration: its Control
// still runs, after the socket is bound, but passing &lc.ListenConfig to
// another API would listen unbound. Use [ListenConfig.NetListenConfig]
// wherever an API needs a *net.ListenConfig.
type ListenConfig struct {
	net.ListenConfig

	// Interface names the interface every socket is bound to. It is
	// required: an empty name fails the listen, it never means "unbound".
	// A listener on a loopback address (127.0.0.0/8, ::1) is bound to lo
	// instead, so that only the host itself can reach it.
	Interface string

	// Follow makes listeners and packet sockets outlive the interface and
	// follow it: Listen and ListenPacket return at once even while no
	// interface has the name, and when one is deleted and another of the
	// same name appears, with any index, a new socket listens on the same
	// address and port. The returned values are therefore not
	// *net.TCPListener or *net.UDPConn; accepted connections stay
	// *net.TCPConn, and end when their interface is deleted. See
	// docs/lifecycle.md in the repository, and [WaitForInterface] for the
	// watch it shares. NetListenConfig ignores Follow: a net.ListenConfig
	// has one socket per listen and its Control hook no context to wait in.
	Follow bool
}

// Listen announces on the local network address through a socket bound to
// Interface, or to lo when the address is a loopback address, since only
// the host itself can reach it. The listener uses plain TCP, never
// Multipath TCP (see [ListenConfig.SetMultipathTCP]). See
// [net.ListenConfig.Listen].
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	if lc.Follow {
		return lc.listenFollow(ctx, network, address)
	}
	nl, err := lc.netListenConfig(true)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	ln, err := nl.Listen(ctx, network, address)
	if err != nil {
		return nil, afterBind("listen", lc.Interface, err)
	}
	return ln, nil
}

// ListenPacket announces on the local network address through a packet
// socket bound to Interface: it receives only datagrams that arrived on
// Interface and sends only through it. See [net.ListenConfig.ListenPacket].
func (lc *ListenConfig) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	if lc.Follow {
		return lc.listenPacketFollow(ctx, network, address)
	}
	nl, err := lc.netListenConfig(true)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	pc, err := nl.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, afterBind("listen", lc.Interface, err)
	}
	return pc, nil
}

// NetListenConfig returns a *net.ListenConfig configured like lc whose
// sockets are bound to Interface, for APIs that need exactly a
// *net.ListenConfig. Its Control binds the socket, then runs lc's own
// Control. Multipath TCP is off, and a later SetMultipathTCP(true) on the
// returned ListenConfig cannot bring it back: the hook refuses the
// Multipath TCP socket, and net falls back to a bound TCP listener.
//
// A configuration error, such as an invalid Interface, is returned by
// every listen of the returned ListenConfig, which never listens unbound.
// A net.ListenConfig has no resolver of its own, so a host name in the
// address is looked up with net's default resolver before that error is
// returned: listen on IP addresses, or use [ListenConfig.Listen], which
// checks the configuration first.
func (lc *ListenConfig) NetListenConfig() *net.ListenConfig {
	nl, err := lc.netListenConfig(false)
	if err != nil {
		nl = new(net.ListenConfig)
		*nl = lc.ListenConfig
		nl.Control = binding{err: err}.control
		nl.SetMultipathTCP(false)
	}
	return nl
}

// SetMultipathTCP has no effect, and exists so that code written for a
// net.ListenConfig keeps compiling: every listener of a ListenConfig uses
// plain TCP, because Linux would bind only the first subflow of each
// Multipath TCP connection to the interface, and would accept further
// subflows that arrive on other interfaces.
func (lc *ListenConfig) SetMultipathTCP(bool) {}

// MultipathTCP reports false: a ListenConfig never uses Multipath TCP (see
// [ListenConfig.SetMultipathTCP]).
func (lc *ListenConfig) MultipathTCP() bool { return false }

// netListenConfig returns the bound configuration; private says that it
// never leaves the package (see Dialer.netDialer).
func (lc *ListenConfig) netListenConfig(private bool) (*net.ListenConfig, error) {
	if err := checkName(lc.Interface); err != nil {
		return nil, err
	}
	b := binding{ifname: lc.Interface, user: ignoreContext(lc.Control), multipathOff: private}
	nl := new(net.ListenConfig)
	*nl = lc.ListenConfig
	nl.Control = b.control
	nl.SetMultipathTCP(false)
	return nl, nil
}

// Listen announces on the local network address through a socket bound to
// the interface named ifname. It is short for a [ListenConfig] with
// Interface set and nothing else.
func Listen(ifname, network, address string) (net.Listener, error) {
	lc := ListenConfig{Interface: ifname}
	return lc.Listen(context.Background(), network, address)
}

// ListenPacket announces on the local network address through a packet
// socket bound to the interface named ifname. It is short for a
// [ListenConfig] with Interface set and nothing else.
func ListenPacket(ifname, network, address string) (net.PacketConn, error) {
	lc := ListenConfig{Interface: ifname}
	return lc.ListenPacket(context.Background(), network, address)
}
