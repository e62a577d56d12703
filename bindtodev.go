package bindtodev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// ErrInvalidName is wrapped by the error returned for a name that can never
// be an interface name. Linux gives an interface a name of 1 to 15 bytes that
// is not "." or ".." and holds no '/', ':', NUL or white space; the package
// refuses any other name before it makes a system call, because the kernel
// would truncate a longer name to 15 bytes and bind the socket to whichever
// interface carries that prefix.
var ErrInvalidName = errors.New("invalid interface name")

// ErrUnsupported is wrapped by every error the package returns on a platform
// that cannot bind a socket to a device, which is every platform but Linux.
// Its text names the operating system, and errors.Is(ErrUnsupported,
// errors.ErrUnsupported) is true.
var ErrUnsupported = fmt.Errorf("binding a socket to a network interface is not supported on %s: %w",
	runtime.GOOS, errors.ErrUnsupported)

// ErrMultipathTCP is wrapped by the error returned for a Multipath TCP
// socket (IPPROTO_MPTCP). Linux applies SO_BINDTODEVICE to such a socket's
// first subflow only: the path manager opens further subflows through
// whatever interface its endpoints or the routing table pick. The package
// therefore never binds one; see the package documentation, "Multipath TCP".
var ErrMultipathTCP = errors.New("multipath TCP sockets cannot be pinned to an interface: Linux binds only their first subflow")

// errControlSkipped reports a syscall.RawConn whose Control returned
// without running the function: the socket must not count as bound.
var errControlSkipped = errors.New("the socket's RawConn.Control returned without running the function")

// errNoSocket reports a Control hook called without a socket.
var errNoSocket = errors.New("no socket: the syscall.RawConn is nil")

// loopbackDevice is the interface that sockets with a loopback address are
// bound to, so that they reach only the host itself.
const loopbackDevice = "lo"

// maxNameLen is the longest interface name Linux accepts: IFNAMSIZ (16)
// less the terminating NUL.
const maxNameLen = 15

// ValidateName reports whether ifname can be the name of a Linux network
// interface, following the kernel's own rule (dev_valid_name): 1 to 15 bytes,
// not "." or "..", and no '/', ':', NUL or white space. It does not check that
// the interface exists. The error is an [*Error] with Op "validate" that
// wraps [ErrInvalidName] and quotes the name.
//
// ValidateName lets a program reject a bad name when it reads its
// configuration; every function of the package applies the same check
// before it touches a socket.
func ValidateName(ifname string) error {
	reason := ""
	switch {
	case ifname == "":
		reason = "the name is empty"
	case len(ifname) > maxNameLen:
		reason = fmt.Sprintf("the name is %d bytes long and Linux allows at most %d", len(ifname), maxNameLen)
	case ifname == "." || ifname == "..":
		reason = "the name is reserved"
	default:
		for i := 0; i < len(ifname); i++ {
			if c := ifname[i]; c == '/' || c == ':' || c == 0 || isKernelSpace(c) {
				reason = fmt.Sprintf("the name contains %q", c)
				break
			}
		}
	}
	if reason == "" {
		return nil
	}
	return &Error{Op: "validate", Interface: ifname, Err: nameError{reason}}
}

// isKernelSpace mirrors the kernel's isspace(), which also counts 0xA0
// (Latin-1 no-break space) as white space.
func isKernelSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r') || c == 0xa0
}

// checkName validates ifname and the platform before any socket exists.
func checkName(ifname string) error {
	if err := ValidateName(ifname); err != nil {
		return err
	}
	if !supported {
		return &Error{Op: "bind", Interface: ifname, Err: ErrUnsupported}
	}
	return nil
}

// Control returns a function for [net.Dialer.Control] and
// [net.ListenConfig.Control] that binds each socket to the interface named
// ifname (SO_BINDTODEVICE, see socket(7)) before Go binds or connects it.
//
// The function fails, and so the dial or listen fails before a packet is
// sent, when the socket cannot be bound: an invalid name fails with
// [ErrInvalidName], an unknown interface with an error for which
// errors.Is(err, syscall.ENODEV) holds, and a missing privilege with one for
// which errors.Is(err, os.ErrPermission) holds. An address with an IPv6 zone
// that names another interface is refused with an error wrapping
// syscall.EINVAL.
//
// Every IP socket is bound. A socket whose address is a loopback address
// (127.0.0.0/8, ::1) is bound to the loopback interface, lo, instead of
// ifname: it then reaches only the host itself, as a socket bound to a real
// interface could not. Unix domain sockets have no interface and are left
// alone.
//
// A Multipath TCP socket is refused with an error wrapping
// [ErrMultipathTCP], because Linux would bind its first subflow only. net
// retries a failed Multipath TCP attempt with plain TCP, so a net.Dialer or
// net.ListenConfig that uses the function, including a listener under Go's
// default, gets a bound TCP socket.
//
// The function keeps no state, so one may serve many concurrent dials.
func Control(ifname string) func(network, address string, c syscall.RawConn) error {
	b := binding{ifname: ifname, err: checkName(ifname)}
	return b.control
}

// Bind binds an existing socket to the interface named ifname. c is any
// socket that exposes its descriptor, such as a *net.TCPConn, *net.UDPConn,
// *net.TCPListener or *net.IPConn.
//
// Binding a socket that is already bound, or was accepted from a bound
// listener, is a re-bind: it needs CAP_NET_RAW, and fails without it with an
// error for which errors.Is(err, os.ErrPermission) holds. Unlike [Control],
// Bind binds to ifname whatever the socket's address, loopback included: the
// caller chose this socket and this interface. A Multipath TCP socket is
// refused, and left as it was, with an error wrapping [ErrMultipathTCP].
func Bind(c syscall.Conn, ifname string) error {
	if err := checkName(ifname); err != nil {
		return err
	}
	// A socket that cannot be reached (nil, closed) fails with the
	// interface named as well.
	return deviceError(ifname, withFD(c, func(fd uintptr) error {
		if err := refuseMultipath(fd); err != nil {
			return err
		}
		return setDevice(fd, ifname)
	}))
}

// Device reports the name of the interface the socket c is bound to, read
// back from the kernel (getsockopt SO_BINDTODEVICE), or "" when the socket is
// not bound. It fails with an error for which errors.Is(err, syscall.ENODEV)
// holds when the interface the socket was bound to no longer exists.
func Device(c syscall.Conn) (string, error) {
	if !supported {
		return "", ErrUnsupported
	}
	var name string
	err := withFD(c, func(fd uintptr) error {
		var err error
		name, err = device(fd)
		return err
	})
	return name, err
}

// withFD runs fn with the descriptor of c.
func withFD(c syscall.Conn, fn func(fd uintptr) error) error {
	if c == nil {
		return errors.New("bindtodev: nil connection")
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return withRaw(rc, fn)
}

// deviceError gives a failure to bind a socket to ifname the interface's
// name and, for a Multipath TCP socket or a permission failure, the rule
// that caused it.
func deviceError(ifname string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrMultipathTCP):
		err = fmt.Errorf("%w (make the socket with SetMultipathTCP(false), as Dialer and ListenConfig do)", err)
	case errors.Is(err, os.ErrPermission):
		err = fmt.Errorf("%w (re-binding a bound socket needs CAP_NET_RAW, as does every bind before Linux 5.7)", err)
	}
	return &Error{Op: "bind", Interface: ifname, Err: err}
}

// binding is what a Control hook applies to each socket: the device, then
// the caller's own hook, then the optional source address.
type binding struct {
	ifname string
	// err is a configuration error found when the hook was made; the hook
	// returns it for every socket so that nothing is sent unbound.
	err error
	// source, when valid, is bind(2)-ed after the device; a zero port lets
	// TCP pick the port at connect time (IP_BIND_ADDRESS_NO_PORT).
	source netip.AddrPort
	// sourceSet is true when source holds only a port, to be bound to the
	// unspecified address of the socket's family.
	sourceSet bool
	// handedOut is the net.Dialer that NetDialer returned, whose
	// LocalAddr the caller may set after the fact (see checkLocalZone).
	handedOut *net.Dialer
	// multipathOff is true when the package made the net.Dialer or
	// net.ListenConfig itself, with Multipath TCP turned off, and no one
	// else can reach it: its sockets need no check.
	multipathOff bool
	user         func(ctx context.Context, network, address string, c syscall.RawConn) error
}

func (b binding) control(network, address string, c syscall.RawConn) error {
	return b.controlContext(context.Background(), network, address, c)
}

func (b binding) controlContext(ctx context.Context, network, address string, c syscall.RawConn) error {
	if b.err != nil {
		return b.err
	}
	if c == nil {
		return deviceError(b.ifname, errNoSocket)
	}
	if !strings.HasPrefix(network, "unix") {
		addr, zone, _ := parseAddr(address)
		ifname := b.ifname
		if addr.Unmap().IsLoopback() {
			ifname = loopbackDevice
		}
		// Only a stream socket can be Multipath TCP; net names the
		// others udp and ip.
		multipath := !b.multipathOff && !strings.HasPrefix(network, "udp") && !strings.HasPrefix(network, "ip")
		if err := bindDevice(c, ifname, zone, address, multipath); err != nil {
			return err
		}
		if b.handedOut != nil {
			if err := checkLocalZone(c, ifname, b.handedOut.LocalAddr); err != nil {
				return deviceError(ifname, err)
			}
		}
	}
	if b.user != nil {
		if err := b.user(ctx, network, address, c); err != nil {
			return err
		}
	}
	if b.sourceSet {
		return b.bindSource(network, address, c)
	}
	return nil
}

// deviceCall carries the binding of one socket through RawConn.Control,
// which takes a func(fd uintptr): a closure would hold the inputs and the
// error, and cost three allocations on every dial. A deviceCall holds them
// instead, its method value is made once, and the pool reuses it, so that
// binding the device allocates nothing.
type deviceCall struct {
	run                   func(fd uintptr) // bind, bound to this deviceCall
	ifname, zone, address string
	// multipath asks for the socket to be refused when it is Multipath
	// TCP; ran records that RawConn.Control called run at all.
	multipath, ran bool
	err            error
}

var deviceCalls = sync.Pool{New: func() any {
	dc := new(deviceCall)
	dc.run = dc.bind
	return dc
}}

func (dc *deviceCall) bind(fd uintptr) {
	dc.ran = true
	dc.err = setDevice(fd, dc.ifname)
	if dc.err == nil && dc.multipath {
		dc.err = refuseMultipath(fd)
	}
	dc.err = deviceError(dc.ifname, dc.err)
	if dc.err == nil && dc.zone != "" {
		dc.err = deviceError(dc.ifname, checkZone(fd, dc.zone, dc.ifname, dc.address))
	}
}

// bindDevice binds the socket of c to ifname, refuses it when multipath is
// set and it is Multipath TCP, and checks the IPv6 zone of the address, if
// any, against ifname.
func bindDevice(c syscall.RawConn, ifname, zone, address string, multipath bool) error {
	dc := deviceCalls.Get().(*deviceCall)
	dc.ifname, dc.zone, dc.address, dc.multipath = ifname, zone, address, multipath
	err := c.Control(dc.run)
	if err == nil {
		err = dc.err
		if !dc.ran {
			err = deviceError(ifname, errControlSkipped)
		}
	}
	*dc = deviceCall{run: dc.run}
	deviceCalls.Put(dc)
	return err
}

// refuseMultipath fails for a Multipath TCP socket.
func refuseMultipath(fd uintptr) error {
	multipath, err := isMultipath(fd)
	if err != nil {
		return err
	}
	if multipath {
		return ErrMultipathTCP
	}
	return nil
}

func (b binding) bindSource(network, address string, c syscall.RawConn) error {
	ipv6 := strings.HasSuffix(network, "6")
	src := b.source
	if !src.Addr().IsValid() {
		unspecified := netip.IPv4Unspecified()
		if ipv6 {
			unspecified = netip.IPv6Unspecified()
		}
		src = netip.AddrPortFrom(unspecified, src.Port())
	}
	if src.Addr().Is4() == ipv6 {
		return &Error{Op: "source", Interface: b.ifname,
			Err: fmt.Errorf("source address %s cannot reach %s: one is IPv4, the other IPv6", src.Addr(), address)}
	}
	tcp := strings.HasPrefix(network, "tcp")
	err := withRaw(c, func(fd uintptr) error {
		zone := src.Addr().Zone()
		if zone != "" {
			if err := checkZone(fd, zone, b.ifname, src.String()); err != nil {
				return err
			}
		}
		if err := bindAddr(fd, src, tcp && src.Port() == 0); err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		return nil
	})
	if err != nil {
		return &Error{Op: "source", Interface: b.ifname, Err: err}
	}
	return nil
}

// ignoreContext adapts a Control hook without a context to the form that
// binding chains.
func ignoreContext(control func(network, address string, c syscall.RawConn) error) func(context.Context, string, string, syscall.RawConn) error {
	if control == nil {
		return nil
	}
	return func(_ context.Context, network, address string, c syscall.RawConn) error {
		return control(network, address, c)
	}
}

// withRaw is withFD for the RawConn that net hands to a Control hook.
func withRaw(c syscall.RawConn, fn func(fd uintptr) error) error {
	var fnErr error
	ran := false
	if err := c.Control(func(fd uintptr) { ran, fnErr = true, fn(fd) }); err != nil {
		return err
	}
	if !ran {
		return errControlSkipped
	}
	return fnErr
}
