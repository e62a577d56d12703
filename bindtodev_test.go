package bindtodev_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/bindtodev/bindtodev"
)

func TestValidateName(t *testing.T) {
	t.Parallel()
	valid := []string{"a", "eth0", "veth-1.2_x@y", "br-0123456789ab", strings.Repeat("x", 15), "..a", "\xff\x80", "a#b"}
	for _, name := range valid {
		assert.NoError(t, bindtodev.ValidateName(name), "%q", name)
	}
	invalid := []struct{ name, reason string }{
		{"", "empty"},
		{strings.Repeat("x", 16), "16 bytes"},
		{"eth0-with-a-long-name", "21 bytes"},
		{".", "reserved"},
		{"..", "reserved"},
		{"a/b", `'/'`},
		{"eth0:1", `':'`},
		{"a b", `' '`},
		{"a\tb", `'\t'`},
		{"\n", `'\n'`},
		{"a\vb", `'\v'`},
		{"a\fb", `'\f'`},
		{"a\rb", `'\r'`},
		{"a\x00garbage", `'\x00'`},
		{"a\xa0b", `'\u00a0'`}, // the kernel's isspace() counts Latin-1 no-break space
	}
	for _, tc := range invalid {
		err := bindtodev.ValidateName(tc.name)
		if assert.ErrorIs(t, err, bindtodev.ErrInvalidName, "%q", tc.name) {
			assert.Contains(t, err.Error(), fmt.Sprintf("%q", tc.name), "the error names the value")
			assert.Contains(t, err.Error(), tc.reason)
		}
	}
}

func TestErrUnsupported(t *testing.T) {
	t.Parallel()
	assert.ErrorIs(t, bindtodev.ErrUnsupported, errors.ErrUnsupported)
	assert.Contains(t, bindtodev.ErrUnsupported.Error(), runtime.GOOS)
}

// Invalid names fail every entry point before any socket or DNS query
// exists, on every platform.
func TestInvalidNameFailsEveryEntryPoint(t *testing.T) {
	t.Parallel()
	var queries atomic.Int32
	resolver := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		queries.Add(1)
		return nil, errors.New("no DNS in this test")
	}}
	ctx := context.Background()
	for _, name := range []string{"", "eth0-with-a-long-name", "a/b"} {
		d := &bindtodev.Dialer{Interface: name}
		d.Resolver = resolver
		lc := &bindtodev.ListenConfig{Interface: name}
		calls := map[string]func() error{
			"Dialer.Dial": func() error { _, err := d.Dial("tcp", "db.invalid:80"); return err },
			"Dialer.DialContext": func() error {
				_, err := d.DialContext(ctx, "udp", "db.invalid:53")
				return err
			},
			"Dialer.NetDialer": func() error { _, err := d.NetDialer().DialContext(ctx, "tcp", "127.0.0.1:1"); return err },
			"Dialer.NetDialer, then a host name": func() error {
				// net keeps only the text of the resolver's error.
				nd := d.NetDialer()
				_, err := nd.DialContext(ctx, "tcp", "db.invalid:80")
				if err == nil || !strings.Contains(err.Error(), bindtodev.ErrInvalidName.Error()) || !strings.Contains(err.Error(), strconv.Quote(name)) {
					return fmt.Errorf("the error does not name the interface and the rule: %w", err)
				}
				return bindtodev.ErrInvalidName
			},
			"Dial":         func() error { _, err := bindtodev.Dial(name, "tcp", "127.0.0.1:1"); return err },
			"Listen":       func() error { _, err := bindtodev.Listen(name, "tcp", "127.0.0.1:0"); return err },
			"ListenPacket": func() error { _, err := bindtodev.ListenPacket(name, "udp", "127.0.0.1:0"); return err },
			"ListenConfig.Listen": func() error {
				_, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
				return err
			},
			"ListenConfig.NetListenConfig": func() error {
				_, err := lc.NetListenConfig().ListenPacket(ctx, "udp", "127.0.0.1:0")
				return err
			},
			"Control": func() error {
				// A loopback address is bound to lo; a bad name must fail
				// even so.
				nl := net.ListenConfig{Control: bindtodev.Control(name)}
				_, err := nl.Listen(ctx, "tcp", "127.0.0.1:0")
				return err
			},
			"Bind": func() error { return bindtodev.Bind(noConn{}, name) },
		}
		for what, call := range calls {
			err := call()
			assert.ErrorIs(t, err, bindtodev.ErrInvalidName, "%s(%q)", what, name)
		}
	}
	assert.Zero(t, queries.Load(), "a bad name must fail before any DNS query")
}

// noConn stands for a socket the test must never reach.
type noConn struct{}

func (noConn) SyscallConn() (syscall.RawConn, error) { panic("the socket was reached") }
