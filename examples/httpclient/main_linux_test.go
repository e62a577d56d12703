//go:build !bindtodev_stub

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
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

// Both peers serve HTTP and DNS on the same address, which the routing
// table sends to B, and their DNS servers give the name different
// addresses. With -i A, the lookup reaches only A's DNS server and the
// request only A's web server.
func TestFetchThroughInterface(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	bin := progtest.Build(t)
	const name = "web.bindtodev.test."
	dns := map[string]*netlab.DNSServer{}
	for _, peer := range []struct {
		h      *netlab.Host
		answer netip.Addr
	}{{s.PeerA, s.Dest4}, {s.PeerB, s.PeerB4}} {
		ln, err := peer.h.Listen("tcp", netip.AddrPortFrom(s.Dest4, 80).String())
		require.NoError(t, err)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s to %s\n", peer.h.Name, r.RemoteAddr)
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
		dns[peer.h.Name], err = netlab.StartDNS(peer.h, netip.AddrPortFrom(s.Dest4, 53),
			netlab.DNSConfig{Records: map[string][]netip.Addr{name: {peer.answer}}})
		require.NoError(t, err)
	}

	r := progtest.Run(t, bin, 20*time.Second, "-i", s.A, "-dns", s.Dest4.String(), "http://"+name+"/")
	require.Equal(t, 0, r.Code, r.Stderr)
	local := net.JoinHostPort(s.LocalA4.String(), "")
	assert.Contains(t, r.Stdout, "hello from A to "+local, "the request reached A from A's address")
	assert.Contains(t, r.Stderr, fmt.Sprintf("connected to %s:80 from %s", s.Dest4, local))
	assert.Contains(t, r.Stderr, "through "+s.A+"\n", "the socket reads back as bound to A")
	assert.Contains(t, r.Stderr, "200 OK")
	require.NotEmpty(t, dns["A"].Queries(), "the lookup did not reach A's DNS server")
	for _, q := range dns["A"].Queries() {
		assert.Equal(t, s.LocalA4, q.From.Addr())
	}
	assert.Empty(t, dns["B"].Queries(), "the lookup leaked to B")
}

// An interface that exists but cannot carry the request is a runtime
// failure that names it.
func TestInterfaceDown(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	bin := progtest.Build(t)
	require.NoError(t, s.Local.SetDown(s.A))
	r := progtest.Run(t, bin, 20*time.Second, "-i", s.A, "-dns", s.Dest4.String(), "http://web.bindtodev.test/")
	assert.Equal(t, 1, r.Code, r.Stderr)
	assert.Contains(t, r.Stderr, fmt.Sprintf("%q", s.A))
	assert.Contains(t, r.Stderr, "network is unreachable")
}
