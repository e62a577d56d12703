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
// Interface. A listener on a loopback address is left unbound, since only
// the host itself can reach it. See [net.ListenConfig.Listen].
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	if lc.Follow {
		return lc.listenFollow(ctx, network, address)
	}
	nl, err := lc.netListenConfig()
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	return nl.Listen(ctx, network, address)
}

// ListenPacket announces on the local network address through a packet
// socket bound to Interface: it receives only datagrams that arrived on
// Interface and sends only through it. See [net.ListenConfig.ListenPacket].
func (lc *ListenConfig) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	if lc.Follow {
		return lc.listenPacketFollow(ctx, network, address)
	}
	nl, err := lc.netListenConfig()
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	return nl.ListenPacket(ctx, network, address)
}

// NetListenConfig returns a *net.ListenConfig configured like lc whose
// sockets are bound to Interface, for APIs that need exactly a
// *net.ListenConfig. Its Control binds the socket, then runs lc's own
// Control. A configuration error, such as an invalid Interface, is returned
// by every listen of the returned ListenConfig, which never listens unbound.
func (lc *ListenConfig) NetListenConfig() *net.ListenConfig {
	nl, err := lc.netListenConfig()
	if err != nil {
		nl = new(net.ListenConfig)
		*nl = lc.ListenConfig
		nl.Control = binding{err: err}.control
	}
	return nl
}

func (lc *ListenConfig) netListenConfig() (*net.ListenConfig, error) {
	if err := checkName(lc.Interface); err != nil {
		return nil, err
	}
	b := binding{ifname: lc.Interface, user: ignoreContext(lc.Control)}
	nl := new(net.ListenConfig)
	*nl = lc.ListenConfig
	nl.Control = b.control
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
