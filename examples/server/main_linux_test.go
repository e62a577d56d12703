//go:build !bindtodev_stub

package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev/internal/netlab"
	"github.com/bindtodev/bindtodev/internal/progtest"
)

// The program runs as a child of the test and so inside the test's lab
// namespace, on the lab's interfaces.
func TestMain(m *testing.M) {
	netlab.Main(m)
}

// get sends an HTTP request from peer to addr and returns the response.
func get(peer *netlab.Host, addr netip.AddrPort) (string, error) {
	c, err := peer.Dial("tcp", addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: lab\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// A server bound to A on the wildcard address answers peer A, over IPv4
// and IPv6, and says A; peer B is refused, whether it dials the host's
// address on B or on A.
func TestServeOnlyOnInterface(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	bin := progtest.Build(t)
	p := progtest.Start(t, bin, "-i", s.A, "-addr", ":0")
	line := p.WaitFor(t, "listening on", 10*time.Second)
	_, port, err := net.SplitHostPort(strings.Fields(line)[2])
	require.NoError(t, err, line)
	assert.Contains(t, line, "through "+s.A)
	addr := func(a netip.Addr) netip.AddrPort {
		return netip.MustParseAddrPort(net.JoinHostPort(a.String(), port))
	}

	for _, local := range []netip.Addr{s.LocalA4, s.LocalA6} {
		resp, err := get(s.PeerA, addr(local))
		require.NoError(t, err)
		assert.Contains(t, resp, fmt.Sprintf("you reached %s on interface %s", addr(local), s.A))
		logged := p.WaitFor(t, "connection from", 5*time.Second)
		assert.Regexp(t, fmt.Sprintf(`^connection from \S+ to %s on %s$`, regexp.QuoteMeta(addr(local).String()), s.A), logged)
	}
	for _, local := range []netip.Addr{s.LocalB4, s.LocalA4, s.LocalB6} {
		_, err := get(s.PeerB, addr(local))
		assert.ErrorIs(t, err, syscall.ECONNREFUSED, "peer B reached the server at %s", local)
	}

	p.Signal(t, os.Interrupt)
	r := p.Wait(t, 10*time.Second)
	assert.Equal(t, 0, r.Code, r.Stderr)
	assert.NotContains(t, r.Stdout, s.PeerB4.String())
}
