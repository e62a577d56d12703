//go:build !linux || bindtodev_stub

package bindtodev_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/bindtodev/bindtodev"
)

// Follow changes nothing on a platform that cannot bind: every entry point
// fails with ErrUnsupported, or ErrInvalidName for a bad name.
func TestFollowStubsFailClosed(t *testing.T) {
	ctx := context.Background()
	lc := &bindtodev.ListenConfig{Interface: "eth0", Follow: true}
	d := &bindtodev.Dialer{Interface: "eth0", Follow: true}
	_, err := lc.Listen(ctx, "tcp", ":0")
	assert.ErrorIs(t, err, bindtodev.ErrUnsupported)
	_, err = lc.ListenPacket(ctx, "udp", ":0")
	assert.ErrorIs(t, err, bindtodev.ErrUnsupported)
	_, err = d.DialContext(ctx, "tcp", "127.0.0.1:1")
	assert.ErrorIs(t, err, bindtodev.ErrUnsupported)
	_, err = d.NetDialer().DialContext(ctx, "tcp", "127.0.0.1:1")
	assert.ErrorIs(t, err, bindtodev.ErrUnsupported)
	assert.ErrorIs(t, bindtodev.WaitForInterface(ctx, "eth0"), bindtodev.ErrUnsupported)
	assert.ErrorIs(t, bindtodev.WaitForInterface(ctx, "a/b"), bindtodev.ErrInvalidName)
	lc.Interface = "a/b"
	_, err = lc.Listen(ctx, "tcp", ":0")
	assert.ErrorIs(t, err, bindtodev.ErrInvalidName)
}
