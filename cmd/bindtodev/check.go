package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/bindtodev/bindtodev"
)

// Exit codes of check besides the common ones.
const (
	// exitDiffer: the bound connection works, but an unbound one takes
	// another interface, or fails.
	exitDiffer = 3
	// exitLoopback: the destination is a loopback address or an address
	// of this host, so neither connection left the host and the interface
	// was not tested. It is neither 0, which would tell a script that the
	// routing table sends the destination through IFACE, nor 3, which
	// would tell it that IFACE works where the routing table does not.
	exitLoopback = 4
)

const checkHead = `usage: bindtodev check -i IFACE [-w TIMEOUT] HOST:PORT

Is my routing table lying to me? Opens two TCP connections to HOST:PORT,
one with its socket bound to IFACE (SO_BINDTODEVICE) and one not bound, as
any program would open it, closes both without sending data, and shows side
by side which interface and source address each one used:

  interface   bound: SO_BINDTODEVICE read back from the connected socket.
              unbound: the socket's binding is empty, so the interface is
              the kernel's route lookup (RTM_GETROUTE, as "ip route get")
              for the connection's own addresses, ports and protocol,
              made right after it connected.
  source      the connection's local address (getsockname).
  owner       the interface that owns the source address.
  next hop    the gateway of that route lookup ("on-link" without one).

A HOST name is resolved once, by the system's resolver, and the unbound
connection goes to the address the bound one reached.

Loopback destinations never leave the host: a socket whose destination is
a loopback address (127.0.0.0/8, ::1) is bound to lo, not IFACE, and the
kernel delivers a connection to any address of this host through lo,
whatever the socket is bound to. IFACE is then not tested, and the result
says LOOPBACK.

Exit status 0 when both connections leave through IFACE (result SAME),
3 when the bound one works but the unbound one leaves through another
interface or fails (DIFFERENT: the routing table does not send HOST:PORT
through IFACE), 4 when HOST is a loopback address or an address of this
host (LOOPBACK: neither connection left the host, so IFACE was not used),
1 when the bound connection fails (FAILED), 2 for bad flags or arguments.

Flags may come before or after HOST:PORT; "--" ends them.
`

// leg is what one of the two connections did.
type leg struct {
	name    string
	err     error
	iface   string // the interface the connection left through
	how     string // where iface was read from
	source  netip.AddrPort
	remote  netip.AddrPort
	owner   string // the interface that owns source
	nextHop string
	local   bool   // the destination is this host's own: the route is of type local
	note    string // why a value could not be found, if one could not
}

func runCheck(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("check")
	ifname := fs.String("i", "", "the interface `IFACE` to compare the routing table with (required)")
	wait := fs.Duration("w", 5*time.Second, "give up each connection after `TIMEOUT` (0: the system's limit)")
	pos, code, ok := parseArgs(fs, args, checkHead, stdout, stderr)
	if !ok {
		return code
	}
	if !flagGiven(fs, "i") {
		return usageError(fs, stderr, "-i IFACE is required")
	}
	if code, ok := checkIface(fs, stderr, *ifname); !ok {
		return code
	}
	target, code, ok := oneHostPort(fs, stderr, pos)
	if !ok {
		return code
	}
	if *wait < 0 {
		return usageError(fs, stderr, "-w: negative timeout %v", *wait)
	}

	bd := bindtodev.Dialer{Interface: *ifname}
	bd.Timeout = *wait
	bound := connectLeg("bound", target, func(address string) (net.Conn, error) { return bd.Dial("tcp", address) })
	if bound.err != nil && isConfigError(bound.err) {
		// An interface that does not exist or cannot be bound: there
		// is nothing to compare.
		return failure(stderr, "check", *ifname, bound.err)
	}
	unboundTarget := target
	if bound.err == nil {
		unboundTarget = bound.remote.String()
	}
	ud := net.Dialer{Timeout: *wait}
	unbound := connectLeg("unbound", unboundTarget, func(address string) (net.Conn, error) { return ud.Dial("tcp", address) })

	fmt.Fprintf(stdout, "bindtodev check: tcp to %s, bound to %s or not\n", target, *ifname)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tinterface\tread from\tsource\towner\tnext hop")
	for _, l := range []leg{bound, unbound} {
		if l.err != nil {
			fmt.Fprintf(tw, "%s\tfailed: %v\n", l.name, l.err)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.name, l.iface, l.how, l.source, l.owner, l.nextHop)
	}
	tw.Flush()
	for _, l := range []leg{bound, unbound} {
		if l.note != "" {
			fmt.Fprintf(stdout, "note: %s: %s\n", l.name, l.note)
		}
	}

	switch {
	case bound.err != nil:
		own := ""
		if what := ownDestination(target, *ifname, unbound); what != "" {
			own = " (" + what + ")"
		}
		fmt.Fprintf(stdout, "result: FAILED: %s does not reach %s%s\n", *ifname, target, own)
		return failure(stderr, "check", *ifname, bound.err)
	case (bound.local || bound.iface == "lo") && *ifname != "lo":
		what := fmt.Sprintf("%s is an address of this host", bound.remote.Addr())
		if bound.remote.Addr().IsLoopback() {
			what = fmt.Sprintf("%s is a loopback address", bound.remote.Addr())
		}
		fmt.Fprintf(stdout, "result: LOOPBACK: %s: the connection never leaves the host, so %s was not used\n", what, *ifname)
		return exitLoopback
	case unbound.err != nil:
		fmt.Fprintf(stdout, "result: DIFFERENT: only the connection bound to %s reaches %s; the unbound one failed\n", *ifname, bound.remote)
		return exitDiffer
	case unbound.iface != bound.iface:
		fmt.Fprintf(stdout, "result: DIFFERENT: the routing table sends %s through %s, not %s\n", bound.remote, unbound.iface, bound.iface)
		return exitDiffer
	default:
		fmt.Fprintf(stdout, "result: SAME: the routing table already sends %s through %s\n", bound.remote, bound.iface)
		return exitOK
	}
}

// ownDestination says, after a bound connection failed, why target is this
// host's own, or "" when it is not known to be: target is a loopback
// address, or the unbound connection's route is local.
func ownDestination(target, ifname string, unbound leg) string {
	if ifname == "lo" {
		return ""
	}
	addr := unbound.remote.Addr()
	if unbound.err != nil {
		ap, err := netip.ParseAddrPort(target)
		if err != nil {
			return ""
		}
		addr = ap.Addr().Unmap()
	}
	switch {
	case addr.IsLoopback():
		return fmt.Sprintf("%s is a loopback address: the socket was bound to lo, not %s, and the connection never leaves the host", addr, ifname)
	case unbound.err == nil && unbound.local:
		return fmt.Sprintf("%s is an address of this host: the connection never leaves the host", addr)
	}
	return ""
}

// isConfigError reports an error that no destination can change: the
// interface is unknown, cannot be bound, or the platform cannot bind.
func isConfigError(err error) bool {
	return errors.Is(err, syscall.ENODEV) || errors.Is(err, os.ErrPermission) || errors.Is(err, bindtodev.ErrUnsupported)
}

// connectLeg opens one connection, reads back what it did and closes it.
func connectLeg(name, address string, dial func(string) (net.Conn, error)) leg {
	l := leg{name: name}
	c, err := dial(address)
	if err != nil {
		l.err = err
		return l
	}
	defer c.Close()
	l.source, l.remote = addrPortOf(c.LocalAddr()), addrPortOf(c.RemoteAddr())
	l.owner = addressOwner(l.source.Addr())
	dev, err := deviceOf(c)
	if err != nil {
		l.err = fmt.Errorf("read back the socket's binding: %w", err)
		return l
	}
	oif := 0
	if dev == "lo" && name == "bound" {
		l.note = "the destination is a loopback address: the library binds such a socket to lo, and the connection never leaves the host"
	}
	if dev != "" {
		l.iface, l.how = dev, "SO_BINDTODEVICE"
		if ifc, err := net.InterfaceByName(dev); err == nil {
			oif = ifc.Index
		}
	}
	r, err := lookupRoute(l.source, l.remote, oif)
	switch {
	case err != nil && dev == "":
		l.iface, l.how, l.nextHop = "?", fmt.Sprintf("%s failed: %v", routeLookupName, err), "?"
	case err != nil:
		l.nextHop, l.note = "?", fmt.Sprintf("%s: %v", routeLookupName, err)
	case r.local:
		l.local, l.nextHop = true, "local"
		if dev == "" {
			l.iface, l.how = interfaceName(r.ifindex), routeLookupName
		} else if dev != "lo" {
			l.note = fmt.Sprintf("%s is an address of this host: the kernel delivers the connection through %s, although the socket is bound to %s",
				l.remote.Addr(), interfaceName(r.ifindex), dev)
		}
	case dev != "" && r.ifindex != oif:
		// IPv6 takes the interface of a route lookup only as a
		// preference, while a bound socket's own lookup is strict: the
		// answer is another interface's route, not this connection's.
		l.nextHop = "?"
		l.note = fmt.Sprintf("the kernel's %s for %s answered with a route through %s, not %s (IPv6 lookups treat the interface only as a preference), so the next hop of the connection bound to %s is unknown",
			routeLookupName, l.remote.Addr(), interfaceName(r.ifindex), dev, dev)
	default:
		if dev == "" {
			l.iface, l.how = interfaceName(r.ifindex), routeLookupName
		}
		l.nextHop = "on-link"
		if r.gateway.IsValid() {
			l.nextHop = r.gateway.String()
		}
	}
	return l
}

// addressOwner names the interface that has addr, or "none" (the address
// of no interface, such as a NAT's) or "?" when the interfaces cannot be
// listed.
func addressOwner(addr netip.Addr) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return "?"
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr.WithZone("") {
					return ifc.Name
				}
			}
		}
	}
	return "none"
}
