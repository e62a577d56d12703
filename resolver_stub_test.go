//go:build !linux || bindtodev_stub

package bindtodev_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
)

// Without SO_BINDTODEVICE the resolver sends no query at all, not even to
// a loopback server that a bound socket would leave unbound.
func TestStubResolverFailsClosed(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	server := netip.MustParseAddrPort(pc.LocalAddr().String())
	for _, r := range []*net.Resolver{bindtodev.Resolver("eth0"), bindtodev.Resolver("eth0", server)} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := r.LookupNetIP(ctx, "ip4", "svc.bindtodev.test.")
		cancel()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "not supported on "+runtime.GOOS)
	}
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, _, err = pc.ReadFrom(make([]byte, 512))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "a query reached the server")
}
