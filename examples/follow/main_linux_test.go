//go:build !bindtodev_stub

package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev/internal/netlab"
	"github.com/bindtodev/bindtodev/internal/progtest"
)

func TestMain(m *testing.M) {
	netlab.Main(m)
}

// get asks the server at addr from peer, retrying while it is refused: the
// server listens moments after its interface comes up.
func get(t *testing.T, peer *netlab.Host, addr netip.AddrPort) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := peer.Dial("tcp", addr.String())
		if err == nil {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = io.WriteString(c, "GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
			require.NoError(t, err)
			b, err := io.ReadAll(c)
			require.NoError(t, err)
			return string(b)
		}
		require.True(t, time.Now().Before(deadline), "the server never answered at %s: %v", addr, err)
		time.Sleep(5 * time.Millisecond)
	}
}

// The server starts before its interface exists, serves once it appears,
// and keeps serving, on the same port, while the interface is deleted and
// created again three times.
func TestServesWhileBounced(t *testing.T) {
	l := netlab.NewT(t)
	peer, err := l.NewHost("peer")
	require.NoError(t, err)
	ifname := fmt.Sprintf("fo%d", l.N)
	local := netip.AddrFrom4([4]byte{198, 18, byte(l.N), 1})
	remote := netip.AddrFrom4([4]byte{198, 18, byte(l.N), 2})
	p := progtest.Start(t, progtest.Build(t), "-i", ifname, "-addr", ":18080")
	line := p.WaitFor(t, "following", 10*time.Second)
	assert.Contains(t, line, "following "+ifname)
	addr := netip.AddrPortFrom(local, 18080)
	for round := range 4 {
		if round > 0 {
			require.NoError(t, l.Local.Delete(ifname))
		}
		require.NoError(t, l.VethReady(ifname, peer, "eth0",
			[]netip.Prefix{netip.PrefixFrom(local, 24)}, []netip.Prefix{netip.PrefixFrom(remote, 24)}))
		resp := get(t, peer, addr)
		assert.Contains(t, resp, "served through "+ifname, "round %d", round)
	}
	p.Signal(t, os.Interrupt)
	r := p.Wait(t, 10*time.Second)
	assert.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, fmt.Sprintf("to %s on %s", addr, ifname))
}
