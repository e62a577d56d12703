package bindtodev

import (
	"errors"
	"net"
	"strconv"
)

// Error is the error the package makes for an interface name, a socket it
// binds, or a bound socket's dial or listen that failed. Every error the
// package returns for a name or a socket is, or wraps, an *Error, so that
// errors.As finds the interface even through the *net.OpError that net
// wraps around a dial or listen:
//
//	var e *bindtodev.Error
//	if errors.As(err, &e) {
//		log.Printf("interface %s: %s failed: %v", e.Interface, e.Op, e.Err)
//	}
//
// The causes stay reachable with errors.Is: [ErrInvalidName],
// [ErrUnsupported], [ErrMultipathTCP], [ErrSourceAndLocalAddr],
// syscall.ENODEV, os.ErrPermission, syscall.ENETUNREACH and so on.
type Error struct {
	// Op says what failed:
	//   - "validate": the name can never be an interface's;
	//   - "bind": binding the socket to the interface;
	//   - "source": binding Source or LocalAddr after the interface;
	//   - "config": the configuration contradicts itself;
	//   - "resolve": the Resolver's configuration;
	//   - "dial", "listen": a socket bound to the interface failed to
	//     connect or to listen.
	Op string
	// Interface is the interface name as the caller gave it.
	Interface string
	// Err is the cause.
	Err error
}

var _ net.Error = (*Error)(nil)

// opPhrases makes the messages read as sentences; an Op not listed is
// written as it is.
var opPhrases = map[string]string{
	"validate": "invalid interface name",
	"bind":     "bind to device",
	"source":   "bind the source address for device",
	"config":   "configure device",
	"resolve":  "resolve through device",
	"dial":     "through device",
	"listen":   "on device",
}

// Error returns the cause with what failed and the interface before it,
// such as `bind to device "eth1": setsockopt: no such device`.
func (e *Error) Error() string {
	phrase, ok := opPhrases[e.Op]
	if !ok {
		phrase = e.Op
	}
	if e.Err == nil {
		return phrase + " " + strconv.Quote(e.Interface)
	}
	return phrase + " " + strconv.Quote(e.Interface) + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the cause is a timeout, so that a *net.OpError
// around an Error still reports one.
func (e *Error) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.Err, &t) && t.Timeout()
}

// Temporary reports whether the cause says it is temporary, as
// [net.Error] asks; see its deprecation note.
func (e *Error) Temporary() bool {
	var t interface{ Temporary() bool }
	return errors.As(e.Err, &t) && t.Temporary()
}

// ErrSourceAndLocalAddr is wrapped by the error of a [Dialer] that sets
// both Source and LocalAddr: only one source address can be bound.
var ErrSourceAndLocalAddr = errors.New("both Dialer.Source and Dialer.LocalAddr are set; set one")

// nameError is why a name can never be an interface's; it is
// [ErrInvalidName] for errors.Is.
type nameError struct{ reason string }

func (e nameError) Error() string        { return e.reason }
func (e nameError) Is(target error) bool { return target == ErrInvalidName }

// afterBind names the interface in the error of a dial or listen whose
// socket was made and bound (to lo for a loopback address), keeping net's
// *net.OpError outermost. Errors
// that come before any socket (a lookup, an address that does not parse)
// and errors that already name the interface are returned as they are.
func afterBind(op, ifname string, err error) error {
	opErr, ok := err.(*net.OpError) //nolint:errorlint // only net's outermost error is rewritten
	var ours *Error
	if !ok || errors.As(err, &ours) {
		return err
	}
	var dnsErr *net.DNSError
	var addrErr *net.AddrError
	var parseErr *net.ParseError
	var unknown net.UnknownNetworkError
	var invalid net.InvalidAddrError
	if errors.As(opErr.Err, &dnsErr) || errors.As(opErr.Err, &addrErr) || errors.As(opErr.Err, &parseErr) ||
		errors.As(opErr.Err, &unknown) || errors.As(opErr.Err, &invalid) {
		return err
	}
	if opErr.Addr != nil {
		if addr, _, ok := parseAddr(opErr.Addr.String()); ok && addr.Unmap().IsLoopback() {
			ifname = loopbackDevice
		}
	}
	wrapped := *opErr
	wrapped.Err = &Error{Op: op, Interface: ifname, Err: opErr.Err}
	return &wrapped
}
