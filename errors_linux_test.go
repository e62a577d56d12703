//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// errorCase is one way a user can make the package fail, with everything a
// program can read from the error.
type errorCase struct {
	name    string
	err     func() error
	message string  // the whole text
	op      string  // bindtodev.Error.Op
	iface   string  // bindtodev.Error.Interface
	causes  []error // each must hold for errors.Is
	netOp   string  // the Op of the outermost *net.OpError, "" when there is none
	timeout bool    // the error is a net.Error that reports a timeout
}

func (tc errorCase) check(t *testing.T) {
	t.Helper()
	err := tc.err()
	require.Error(t, err)
	assert.Equal(t, tc.message, err.Error())
	var e *bindtodev.Error
	if assert.ErrorAs(t, err, &e) {
		assert.Equal(t, tc.op, e.Op)
		assert.Equal(t, tc.iface, e.Interface)
	}
	for _, cause := range tc.causes {
		assert.ErrorIs(t, err, cause)
	}
	if tc.netOp != "" {
		op, ok := err.(*net.OpError) //nolint:errorlint // net's error must stay outermost
		if assert.True(t, ok, "%T is not a *net.OpError", err) {
			assert.Equal(t, tc.netOp, op.Op)
		}
	}
	var ne net.Error
	if tc.timeout && assert.ErrorAs(t, err, &ne) {
		assert.True(t, ne.Timeout(), "the error reports a timeout")
		assert.True(t, errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded),
			"the error is a deadline's")
	}
}

// Every error a user can cause names the interface, is a *bindtodev.Error
// for errors.As (through net's *net.OpError where net made one), keeps its
// causes for errors.Is, and reads as this test spells it out.
func TestErrorsNameTheInterface(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	dest4, dest6 := whoAmIAddr(s.Dest4), whoAmIAddr(s.Dest6)
	closed := netip.AddrPortFrom(s.PeerA4, 9).String() // nothing listens there
	// An address on A's link that nobody has: its connect times out.
	silent := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(s.N), 100}), 7).String()

	taken, err := bindtodev.Listen(s.A, "tcp", "0.0.0.0:0")
	require.NoError(t, err)
	defer taken.Close()
	takenPort := netip.MustParseAddrPort(taken.Addr().String()).Port()

	var plainLC net.ListenConfig
	plainLC.SetMultipathTCP(true)
	multipath, err := plainLC.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer multipath.Close()

	dialer := func(mod func(d *bindtodev.Dialer)) *bindtodev.Dialer {
		d := &bindtodev.Dialer{Interface: s.A}
		if mod != nil {
			mod(d)
		}
		return d
	}
	cases := []errorCase{
		{
			name:    "invalid name",
			err:     func() error { return bindtodev.ValidateName("a/b") },
			message: `invalid interface name "a/b": the name contains '/'`,
			op:      "validate", iface: "a/b", causes: []error{bindtodev.ErrInvalidName},
		},
		{
			name:    "invalid name, dial",
			err:     func() error { _, err := bindtodev.Dial("", "tcp", dest4); return err },
			message: `dial tcp: invalid interface name "": the name is empty`,
			op:      "validate", iface: "", causes: []error{bindtodev.ErrInvalidName}, netOp: "dial",
		},
		{
			name:    "name too long, listen",
			err:     func() error { _, err := bindtodev.Listen("eth0-with-a-long-name", "tcp", ":0"); return err },
			message: `listen tcp: invalid interface name "eth0-with-a-long-name": the name is 21 bytes long and Linux allows at most 15`,
			op:      "validate", iface: "eth0-with-a-long-name", causes: []error{bindtodev.ErrInvalidName}, netOp: "listen",
		},
		{
			name:    "unknown interface, dial",
			err:     func() error { _, err := bindtodev.Dial("nosuch0", "tcp", dest4); return err },
			message: fmt.Sprintf(`dial tcp %s: bind to device "nosuch0": setsockopt: no such device`, dest4),
			op:      "bind", iface: "nosuch0", causes: []error{syscall.ENODEV}, netOp: "dial",
		},
		{
			name: "unknown interface, Control",
			err: func() error {
				_, err := (&net.Dialer{Control: bindtodev.Control("nosuch0")}).Dial("udp", dest6)
				return err
			},
			message: fmt.Sprintf(`dial udp %s: bind to device "nosuch0": setsockopt: no such device`, dest6),
			op:      "bind", iface: "nosuch0", causes: []error{syscall.ENODEV}, netOp: "dial",
		},
		{
			name:    "unknown interface, listen",
			err:     func() error { _, err := bindtodev.ListenPacket("nosuch0", "udp", "0.0.0.0:0"); return err },
			message: `listen udp 0.0.0.0:0: bind to device "nosuch0": setsockopt: no such device`,
			op:      "bind", iface: "nosuch0", causes: []error{syscall.ENODEV}, netOp: "listen",
		},
		{
			name: "unknown interface, Bind",
			err: func() error {
				pc, err := net.ListenPacket("udp", "0.0.0.0:0")
				require.NoError(t, err)
				defer pc.Close()
				return bindtodev.Bind(pc.(*net.UDPConn), "nosuch0")
			},
			message: `bind to device "nosuch0": setsockopt: no such device`,
			op:      "bind", iface: "nosuch0", causes: []error{syscall.ENODEV},
		},
		{
			name:    "Multipath TCP socket, Bind",
			err:     func() error { return bindtodev.Bind(multipath.(*net.TCPListener), s.A) },
			message: fmt.Sprintf(`bind to device %q: multipath TCP sockets cannot be pinned to an interface: Linux binds only their first subflow (make the socket with SetMultipathTCP(false), as Dialer and ListenConfig do)`, s.A),
			op:      "bind", iface: s.A, causes: []error{bindtodev.ErrMultipathTCP},
		},
		{
			name:    "zone of another interface",
			err:     func() error { _, err := bindtodev.Dial(s.A, "udp", whoAmIAddr(s.PeerLinkLocal(s.B))); return err },
			message: fmt.Sprintf(`dial udp %s: bind to device %q: address %s names interface %q but the socket is bound to %q: invalid argument`, whoAmIAddr(s.PeerLinkLocal(s.B)), s.A, whoAmIAddr(s.PeerLinkLocal(s.B)), s.B, s.A),
			op:      "bind", iface: s.A, causes: []error{syscall.EINVAL}, netOp: "dial",
		},
		{
			name: "source of the other family",
			err: func() error {
				_, err := dialer(func(d *bindtodev.Dialer) { d.Source = s.LocalA4 }).Dial("tcp", dest6)
				return err
			},
			message: fmt.Sprintf(`dial tcp %s: bind the source address for device %q: source address %s cannot reach %s: one is IPv4, the other IPv6`, dest6, s.A, s.LocalA4, dest6),
			op:      "source", iface: s.A, netOp: "dial",
		},
		{
			name: "source of another host",
			err: func() error {
				_, err := dialer(func(d *bindtodev.Dialer) { d.Source = s.PeerA4 }).Dial("udp", dest4)
				return err
			},
			message: fmt.Sprintf(`dial udp %s: bind the source address for device %q: %s:0: bind: cannot assign requested address`, dest4, s.A, s.PeerA4),
			op:      "source", iface: s.A, causes: []error{syscall.EADDRNOTAVAIL}, netOp: "dial",
		},
		{
			name: "Source and LocalAddr",
			err: func() error {
				_, err := dialer(func(d *bindtodev.Dialer) {
					d.Source = s.LocalA4
					d.LocalAddr = &net.TCPAddr{IP: s.LocalA4.AsSlice()}
				}).Dial("tcp", dest4)
				return err
			},
			message: fmt.Sprintf(`dial tcp: configure device %q: both Dialer.Source and Dialer.LocalAddr are set; set one`, s.A),
			op:      "config", iface: s.A, causes: []error{bindtodev.ErrSourceAndLocalAddr}, netOp: "dial",
		},
		{
			name:    "connection refused after binding",
			err:     func() error { _, err := bindtodev.Dial(s.A, "tcp", closed); return err },
			message: fmt.Sprintf(`dial tcp %s: through device %q: connect: connection refused`, closed, s.A),
			op:      "dial", iface: s.A, causes: []error{syscall.ECONNREFUSED}, netOp: "dial",
		},
		{
			name: "connection refused through lo",
			err: func() error {
				_, err := bindtodev.Dial(s.A, "tcp", "127.0.0.1:9")
				return err
			},
			message: `dial tcp 127.0.0.1:9: through device "lo": connect: connection refused`,
			op:      "dial", iface: "lo", causes: []error{syscall.ECONNREFUSED}, netOp: "dial",
		},
		{
			name: "timeout after binding",
			err: func() error {
				_, err := dialer(func(d *bindtodev.Dialer) { d.Timeout = 200 * time.Millisecond }).Dial("tcp", silent)
				return err
			},
			message: fmt.Sprintf(`dial tcp %s: through device %q: i/o timeout`, silent, s.A),
			// net reports the socket's deadline or the context's,
			// whichever fired first: os.ErrDeadlineExceeded or
			// context.DeadlineExceeded.
			op: "dial", iface: s.A, netOp: "dial", timeout: true,
		},
		{
			name: "context cancelled after binding",
			err: func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				_, err := dialer(nil).DialContext(ctx, "tcp", silent)
				return err
			},
			message: fmt.Sprintf(`dial tcp %s: through device %q: i/o timeout`, silent, s.A),
			op:      "dial", iface: s.A, netOp: "dial", timeout: true,
		},
		{
			name: "port taken on the interface",
			err: func() error {
				_, err := bindtodev.Listen(s.A, "tcp", fmt.Sprintf("0.0.0.0:%d", takenPort))
				return err
			},
			message: fmt.Sprintf(`listen tcp 0.0.0.0:%d: on device %q: bind: address already in use`, takenPort, s.A),
			op:      "listen", iface: s.A, causes: []error{syscall.EADDRINUSE}, netOp: "listen",
		},
		{
			name: "resolver with a bad server",
			err: func() error {
				r := bindtodev.Resolver(s.A, netip.MustParseAddrPort("0.0.0.0:53"))
				_, err := r.Dial(context.Background(), "udp", "198.18.0.53:53")
				return err
			},
			message: fmt.Sprintf(`dial udp: resolve through device %q: DNS server 1 (0.0.0.0:53) is not an IP address and port: invalid argument`, s.A),
			op:      "resolve", iface: s.A, causes: []error{syscall.EINVAL}, netOp: "dial",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.check)
	}

	// An interface that is down: every dial fails, and says where.
	require.NoError(t, s.Local.SetDown(s.A))
	defer func() { require.NoError(t, s.Local.SetUp(s.A)) }()
	errorCase{
		name:    "interface down",
		err:     func() error { _, err := bindtodev.Dial(s.A, "tcp", dest4); return err },
		message: fmt.Sprintf(`dial tcp %s: through device %q: connect: network is unreachable`, dest4, s.A),
		op:      "dial", iface: s.A, causes: []error{syscall.ENETUNREACH}, netOp: "dial",
	}.check(t)
}

// Errors that come before any socket exists are net's own, and do not
// claim an interface.
func TestErrorsBeforeAnySocket(t *testing.T) {
	t.Parallel()
	d := &bindtodev.Dialer{Interface: "eth0"}
	for _, address := range []string{"no-port", "198.18.0.1:http-nonexistent-service"} {
		_, err := d.Dial("tcp", address)
		require.Error(t, err)
		var e *bindtodev.Error
		assert.False(t, errors.As(err, &e), "%q: %v", address, err)
	}
}
