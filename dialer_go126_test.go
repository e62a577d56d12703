//go:build go1.26 && linux && !bindtodev_stub

package bindtodev_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// net.Dialer gained DialTCP, DialUDP, DialIP and DialUnix in Go 1.26;
// promoted from the embedded Dialer they would dial unbound.
func TestGo126DialMethodsBound(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	ctx := context.Background()
	d := &bindtodev.Dialer{Interface: s.A}
	raddr := netip.AddrPortFrom(s.Dest4, netlab.WhoAmIPort)

	tc, err := d.DialTCP(ctx, "tcp", netip.AddrPort{}, raddr)
	require.NoError(t, err)
	assert.Equal(t, s.A, deviceOf(t, tc))
	assert.Equal(t, "A", ask(t, "tcp", tc).Peer)

	uc, err := d.DialUDP(ctx, "udp", netip.AddrPortFrom(s.LocalA4, 0), raddr)
	require.NoError(t, err)
	assert.Equal(t, s.A, deviceOf(t, uc))
	who := ask(t, "udp", uc)
	assert.Equal(t, "A", who.Peer)
	assert.Equal(t, s.LocalA4, who.Source.Addr())

	ic, err := d.DialIP(ctx, "ip4:icmp", netip.Addr{}, s.Dest4)
	require.NoError(t, err)
	assert.Equal(t, s.A, deviceOf(t, ic))
	ic.Close()

	withSource := &bindtodev.Dialer{Interface: s.A, Source: s.LocalA4}
	_, err = withSource.DialTCP(ctx, "tcp", netip.AddrPortFrom(s.LocalA4, 0), raddr)
	assert.ErrorContains(t, err, "LocalAddr", "laddr and Source together")

	bad := &bindtodev.Dialer{Interface: "a/b"}
	_, err = bad.DialUnix(ctx, "unix", nil, &net.UnixAddr{Name: "/nonexistent", Net: "unix"})
	assert.ErrorIs(t, err, bindtodev.ErrInvalidName)
}
