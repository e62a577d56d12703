//go:build !bindtodev_stub

package bindtodev_test

import (
	"errors"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/bindtodev/bindtodev"
)

// skippingConn is a syscall.RawConn whose Control reports success without
// running the function, as a broken or hostile wrapper might.
type skippingConn struct{}

func (skippingConn) Control(func(fd uintptr)) error    { return nil }
func (skippingConn) Read(func(fd uintptr) bool) error  { return errors.New("not used") }
func (skippingConn) Write(func(fd uintptr) bool) error { return errors.New("not used") }

func (skippingConn) SyscallConn() (syscall.RawConn, error) { return skippingConn{}, nil }

// A socket counts as bound only when the function that binds it ran.
func TestBindNeverAssumed(t *testing.T) {
	t.Parallel()
	for _, address := range []string{"198.18.0.1:80", "127.0.0.1:80", "[fe80::1%eth0]:80"} {
		err := bindtodev.Control("eth0")("tcp4", address, skippingConn{})
		assert.ErrorContains(t, err, `bind to device`, address)
		assert.ErrorContains(t, err, "without running the function", address)
	}
	err := bindtodev.Bind(skippingConn{}, "eth0")
	assert.ErrorContains(t, err, `bind to device "eth0"`)
	assert.ErrorContains(t, err, "without running the function")
	_, err = bindtodev.Device(skippingConn{})
	assert.ErrorContains(t, err, "without running the function")

	// A nil RawConn, which net never passes, fails instead of panicking.
	err = bindtodev.Control("eth0")("tcp4", "198.18.0.1:80", nil)
	assert.ErrorContains(t, err, `bind to device "eth0": no socket`)
}
