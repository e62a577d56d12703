// Package bindtodev pins sockets to one network interface with the Linux
// socket option SO_BINDTODEVICE, and fails closed when it cannot.
//
// A Dialer is a net.Dialer whose every socket leaves through one interface,
// and a ListenConfig a net.ListenConfig that hears only one:
//
//	d := &bindtodev.Dialer{Interface: "eth1"}
//	conn, err := d.DialContext(ctx, "tcp", "192.0.2.10:5432")
//	if err != nil {
//		return err // names eth1, and fails before a packet is sent
//	}
//
//	lc := &bindtodev.ListenConfig{Interface: "mgmt0"}
//	ln, err := lc.Listen(ctx, "tcp", ":8080") // accepts only from mgmt0
//
// # Why binding an address is not enough
//
// bind(2) to an interface's address decides which source address a socket
// uses, not which interface its packets leave through: the routing table
// decides that. A socket bound to eth0's address still sends out of eth1 when
// the routes say so. SO_BINDTODEVICE (socket(7)) constrains the path itself:
// the kernel routes the socket's traffic only through the bound device,
// whatever the routing table prefers, and delivers to it only packets that
// arrived on that device.
//
// # How it works
//
// [Control] returns a hook for [net.Dialer] and [net.ListenConfig] that sets
// SO_BINDTODEVICE on every socket before Go binds or connects it. [Dialer]
// and [ListenConfig] are drop-in replacements for their net counterparts
// built on that hook; [Dialer.NetDialer] and [ListenConfig.NetListenConfig]
// hand the bound configuration to APIs that need exactly a *net.Dialer or
// *net.ListenConfig. [Bind] and [Device] set and read the binding of a socket
// that already exists. [Resolver] binds the sockets of Go's DNS resolver the
// same way (see DNS below). The dial path costs one setsockopt(2) per
// socket: no interface lookup or address listing happens per dial.
//
// # Guarantees
//
//   - Fail closed: when a socket cannot be bound, the dial or listen fails
//     before a packet is sent. The package never falls back to binding an
//     address and never logs and carries on.
//   - Interface names are checked before any system call, on every platform:
//     a name the kernel would reject or silently truncate to another
//     interface's name fails with [ErrInvalidName].
//   - Errors keep their cause and name the interface: every error the
//     package makes for a name or a socket is, or wraps, an [*Error] that
//     errors.As finds through net's *net.OpError, with the interface and
//     the operation that failed. An unknown interface satisfies
//     errors.Is(err, syscall.ENODEV), a missing privilege
//     errors.Is(err, os.ErrPermission). A [Dialer]'s dial that fails after
//     its socket was bound (refused, unreachable, timed out) says through
//     which interface, so a log tells a bound dial from an unbound one.
//   - Every socket is bound exactly once, so an unprivileged process can use
//     the package on Linux 5.7 and later.
//   - Every IP socket is bound: to the interface, or to the loopback
//     interface lo when its address is a loopback address, so that it
//     reaches only the host itself. Unix domain sockets have no interface
//     and are left alone.
//   - No socket the package binds uses Multipath TCP (see below).
//
// # Multipath TCP
//
// Linux applies SO_BINDTODEVICE to the first subflow of a Multipath TCP
// connection only; the path manager opens further subflows, and accepts
// them, through whatever interface its endpoints or the routing table
// pick. Bound sockets therefore use plain TCP. The package's own
// configurations turn Multipath TCP off, and its hook refuses any Multipath
// TCP socket it is handed, with [ErrMultipathTCP]: net retries a failed
// Multipath TCP attempt with plain TCP, so a net.Dialer or net.ListenConfig
// that uses [Control], or had Multipath TCP turned back on after
// [Dialer.NetDialer] handed it out, still gets a bound TCP socket. Since Go
// 1.24 net.ListenConfig listeners try Multipath TCP by default, and
// GODEBUG=multipathtcp=1 makes dialers try it; neither changes this.
// [Dialer.SetMultipathTCP] and [ListenConfig.SetMultipathTCP] have no
// effect.
//
// # Limits
//
// Some packets escape any socket option. For IPv6 TCP, the replies the
// kernel itself sends for a socket in TIME_WAIT, including the last ACK of a
// connection closed locally first, follow the routing table. On a bound
// packet socket, an unconnected WriteTo an IPv6 link-local address whose
// zone names another interface, and an IPv4 IP_PKTINFO control message
// naming another interface, send through that interface. SECURITY.md in the
// repository describes these limits and their tested mitigations.
//
// # Interfaces that come and go
//
// A bound socket stays bound to the index its interface had. With
// [ListenConfig.Follow] a listener outlives its interface and listens again
// when an interface of the same name appears; with [Dialer.Follow] a dial
// waits for the interface and its connection ends when the interface is
// deleted; [WaitForInterface] waits for an interface to exist and be up.
// One rtnetlink subscription per process serves them all, while any exists.
// docs/lifecycle.md in the repository has the details.
//
// # Platforms
//
// SO_BINDTODEVICE exists only on Linux. On every other platform the package
// builds, and every function that would bind a socket returns an error that
// wraps [ErrUnsupported] and names the operating system, so that a program
// never runs unbound by accident.
//
// # Privileges
//
// Since Linux 5.7 an unprivileged process may bind a socket that is not yet
// bound; re-binding or unbinding needs CAP_NET_RAW. Before 5.7 every bind
// needs CAP_NET_RAW. The package binds each socket it creates once; [Bind]
// on a socket that is already bound is a re-bind.
//
// # DNS
//
// Binding a connection does not bind the name lookup before it: a
// [Dialer] given a host name asks its Resolver, and net's default resolver
// sends its queries wherever the routing table says, so the name leaks out
// of the default interface even when the connection does not. [Resolver]
// returns Go's own resolver with every query socket, UDP and TCP, bound to
// the interface; give it to the Dialer as its Resolver. Name servers on a
// loopback address, such as a local stub resolver, are queried through lo,
// and the stub forwards the query over any route it likes: use name servers
// reachable through the interface for lookups that stay on it. The system
// (cgo) resolver cannot be bound at all.
package bindtodev
