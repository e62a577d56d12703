//go:build !linux || bindtodev_stub

package bindtodev_test

import (
	"context"
	"net"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
)

// Without SO_BINDTODEVICE every entry point fails with ErrUnsupported,
// naming the platform; none silently works unbound, not even for loopback.
func TestStubsFailClosed(t *testing.T) {
	ctx := context.Background()
	d := &bindtodev.Dialer{Interface: "eth0"}
	lc := &bindtodev.ListenConfig{Interface: "eth0"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	target := ln.Addr().String()
	calls := map[string]func() error{
		"Dial":                         func() error { _, err := bindtodev.Dial("eth0", "tcp", target); return err },
		"Dialer.Dial":                  func() error { _, err := d.Dial("tcp", target); return err },
		"Dialer.DialContext":           func() error { _, err := d.DialContext(ctx, "udp", target); return err },
		"Dialer.NetDialer":             func() error { _, err := d.NetDialer().Dial("tcp", target); return err },
		"Listen":                       func() error { _, err := bindtodev.Listen("eth0", "tcp", "127.0.0.1:0"); return err },
		"ListenPacket":                 func() error { _, err := bindtodev.ListenPacket("eth0", "udp", "127.0.0.1:0"); return err },
		"ListenConfig.Listen":          func() error { _, err := lc.Listen(ctx, "tcp", "127.0.0.1:0"); return err },
		"ListenConfig.ListenPacket":    func() error { _, err := lc.ListenPacket(ctx, "udp", "127.0.0.1:0"); return err },
		"ListenConfig.NetListenConfig": func() error { _, err := lc.NetListenConfig().Listen(ctx, "tcp", "127.0.0.1:0"); return err },
		"Control": func() error {
			_, err := (&net.Dialer{Control: bindtodev.Control("eth0")}).Dial("tcp", target)
			return err
		},
		"Bind": func() error {
			c, err := net.Dial("tcp", target)
			require.NoError(t, err)
			defer c.Close()
			return bindtodev.Bind(c.(*net.TCPConn), "eth0")
		},
		"Device": func() error {
			c, err := net.Dial("tcp", target)
			require.NoError(t, err)
			defer c.Close()
			_, err = bindtodev.Device(c.(*net.TCPConn))
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if assert.ErrorIs(t, err, bindtodev.ErrUnsupported, name) {
			assert.Contains(t, err.Error(), runtime.GOOS, name)
		}
		// Device knows no interface to name.
		var e *bindtodev.Error
		if name != "Device" && assert.ErrorAs(t, err, &e, name) {
			assert.Equal(t, "eth0", e.Interface, name)
		}
	}
	// Name checks still come first, so configuration errors read the same
	// everywhere.
	_, err = bindtodev.Dial("a/b", "tcp", target)
	assert.ErrorIs(t, err, bindtodev.ErrInvalidName)
}
