//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// dnsName is the name every lab DNS server knows; each answers it with
// the address of its own peer.
const dnsName = "svc.bindtodev.test."

// dnsPair starts a DNS server with cfg on dest port 53 in each seed peer,
// A's answering dnsName with PeerA4 and PeerA6, B's with PeerB4 and PeerB6.
func dnsPair(t *testing.T, s *netlab.Seed, dest netip.Addr, cfg netlab.DNSConfig) (a, b *netlab.DNSServer) {
	t.Helper()
	start := func(h *netlab.Host, answers ...netip.Addr) *netlab.DNSServer {
		c := cfg
		c.Records = map[string][]netip.Addr{dnsName: answers}
		srv, err := netlab.StartDNS(h, netip.AddrPortFrom(dest, 53), c)
		require.NoError(t, err)
		return srv
	}
	return start(s.PeerA, s.PeerA4, s.PeerA6), start(s.PeerB, s.PeerB4, s.PeerB6)
}

func lookup(t *testing.T, r *net.Resolver, network string) []netip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, network, dnsName)
	require.NoError(t, err)
	return addrs
}

// assertFrom checks that srv received queries, each from src.
func assertFrom(t *testing.T, srv *netlab.DNSServer, src netip.Addr, network string) {
	t.Helper()
	require.NotZero(t, srv.Count(network), "%v got no %s query", srv, network)
	for _, q := range srv.Queries() {
		assert.Equal(t, src, q.From.Addr(), "%v: %s query for %s", srv, q.Network, q.Name)
	}
}

// Both peers run a DNS server on the same address, which the routing table
// sends to B. The bound resolver's queries reach only A's server, from A's
// address; a plain resolver's reach B's.
func TestResolverQueriesLeaveThroughInterface(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	for _, fam := range []struct {
		network       string
		dest, localA  netip.Addr
		wantA, wantB  netip.Addr
		localB        netip.Addr
		lookupNetwork string
	}{
		{"IPv4", s.Dest4, s.LocalA4, s.PeerA4, s.PeerB4, s.LocalB4, "ip4"},
		{"IPv6", s.Dest6, s.LocalA6, s.PeerA6, s.PeerB6, s.LocalB6, "ip6"},
	} {
		t.Run(fam.network, func(t *testing.T) {
			a, b := dnsPair(t, s, fam.dest, netlab.DNSConfig{})
			server := netip.AddrPortFrom(fam.dest, 53)

			got := lookup(t, bindtodev.Resolver(s.A, server), fam.lookupNetwork)
			assert.Equal(t, []netip.Addr{fam.wantA}, got, "bound resolver")
			assertFrom(t, a, fam.localA, "udp")
			assert.Empty(t, b.Queries(), "a bound query leaked to B")

			got = lookup(t, netlab.Resolver(server), fam.lookupNetwork)
			assert.Equal(t, []netip.Addr{fam.wantB}, got, "plain resolver follows the routing table")
			assertFrom(t, b, fam.localB, "udp")
		})
	}
}

// A Dialer given the bound resolver looks the name up and connects through
// the same interface.
func TestDialerWithBoundResolver(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	a, b := dnsPair(t, s, s.Dest4, netlab.DNSConfig{})
	d := &bindtodev.Dialer{Interface: s.A}
	d.Resolver = bindtodev.Resolver(s.A, netip.AddrPortFrom(s.Dest4, 53))
	d.Timeout = 5 * time.Second
	c, err := d.Dial("tcp4", fmt.Sprintf("%s:%d", dnsName, netlab.WhoAmIPort))
	require.NoError(t, err)
	who := ask(t, "tcp", c)
	assert.Equal(t, "A", who.Peer)
	assert.Equal(t, s.LocalA4, who.Source.Addr())
	assertFrom(t, a, s.LocalA4, "udp")
	assert.Empty(t, b.Queries())
}

// When the UDP answer is truncated, net asks again over TCP; that query is
// bound too. Only A's server sees a TCP query, so the address the
// resolver returns came from A over TCP.
func TestResolverTCPFallbackBound(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	a, b := dnsPair(t, s, s.Dest4, netlab.DNSConfig{TruncateUDP: true})
	server := netip.AddrPortFrom(s.Dest4, 53)

	assert.Equal(t, []netip.Addr{s.PeerA4}, lookup(t, bindtodev.Resolver(s.A, server), "ip4"))
	assertFrom(t, a, s.LocalA4, "tcp")
	assertFrom(t, a, s.LocalA4, "udp")
	assert.Empty(t, b.Queries(), "a bound query leaked to B")

	// The same servers, unbound: both transports follow the routing table.
	assert.Equal(t, []netip.Addr{s.PeerB4}, lookup(t, netlab.Resolver(server), "ip4"))
	assertFrom(t, b, s.LocalB4, "tcp")
}

// Without servers the resolver dials the servers of /etc/resolv.conf that
// net hands it, bound; with servers it dials those instead. A loopback
// server stays unbound: the documented trap.
func TestResolverDial(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	ctx := context.Background()
	resolvConf := netip.AddrPortFrom(s.Dest4, 53).String()
	for _, network := range []string{"udp", "tcp"} {
		if network == "tcp" {
			// Something must accept the TCP connection.
			dnsPair(t, s, s.Dest4, netlab.DNSConfig{})
		}
		c, err := bindtodev.Resolver(s.A).Dial(ctx, network, resolvConf)
		require.NoError(t, err, network)
		assert.Equal(t, s.A, deviceOf(t, c), network)
		assert.Equal(t, resolvConf, c.RemoteAddr().String())
		c.Close()
	}

	stub, err := net.ListenPacket("udp", "127.0.0.53:0")
	require.NoError(t, err)
	defer stub.Close()
	c, err := bindtodev.Resolver(s.A).Dial(ctx, "udp", stub.LocalAddr().String())
	require.NoError(t, err)
	assert.Equal(t, "lo", deviceOf(t, c), "a loopback server is queried through lo")
	c.Close()

	mine := netip.AddrPortFrom(s.PeerA4, 53)
	c, err = bindtodev.Resolver(s.A, mine).Dial(ctx, "udp", stub.LocalAddr().String())
	require.NoError(t, err)
	assert.Equal(t, mine.String(), c.RemoteAddr().String(), "the given server, not resolv.conf's")
	assert.Equal(t, s.A, deviceOf(t, c.(net.PacketConn)))
	c.Close()
}

// Servers are tried in order; a server that refuses, fails or stays silent
// hands the query to the next one, and every query is bound.
func TestResolverFailover(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	start := func(cfg netlab.DNSConfig, answer netip.Addr) *netlab.DNSServer {
		cfg.Records = map[string][]netip.Addr{dnsName: {answer}}
		srv, err := netlab.StartDNS(s.PeerA, netip.AddrPortFrom(s.PeerA4, 0), cfg)
		require.NoError(t, err)
		return srv
	}
	first := netip.MustParseAddr("198.18.255.1")
	second := netip.MustParseAddr("198.18.255.2")
	refused := netip.AddrPortFrom(s.PeerA4, 1) // nothing listens: ICMP port unreachable
	cases := []struct {
		name string
		cfg  netlab.DNSConfig
		// slow: the first server is silent and keeps the query for its
		// share of the time.
		slow bool
	}{
		{name: "answers"},
		{name: "SERVFAIL", cfg: netlab.DNSConfig{RCode: dnsmessage.RCodeServerFailure}},
		{name: "REFUSED", cfg: netlab.DNSConfig{RCode: dnsmessage.RCodeRefused}},
		{name: "silent", cfg: netlab.DNSConfig{Silent: true}, slow: true},
		{name: "refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			one := start(tc.cfg, first)
			two := start(netlab.DNSConfig{}, second)
			servers := []netip.AddrPort{one.Addr, two.Addr}
			want := second
			switch tc.name {
			case "answers":
				want = first
			case "refused":
				servers[0] = refused
			}
			begin := time.Now()
			assert.Equal(t, []netip.Addr{want}, lookup(t, bindtodev.Resolver(s.A, servers...), "ip4"))
			if !tc.slow {
				assert.Less(t, time.Since(begin), 2*time.Second, "failed over at once")
			}
			if tc.name != "refused" {
				assertFrom(t, one, s.LocalA4, "udp")
			}
			if want == second {
				assertFrom(t, two, s.LocalA4, "udp")
			} else {
				assert.Empty(t, two.Queries(), "the second server is asked only when the first fails")
			}
		})
	}
}

// After a truncated answer, the TCP query goes to the server that
// truncated it, not back to the first server in the list.
func TestResolverTCPFollowsUDPServer(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	failing, err := netlab.StartDNS(s.PeerA, netip.AddrPortFrom(s.PeerA4, 0),
		netlab.DNSConfig{RCode: dnsmessage.RCodeServerFailure})
	require.NoError(t, err)
	truncating, err := netlab.StartDNS(s.PeerA, netip.AddrPortFrom(s.PeerA4, 0),
		netlab.DNSConfig{TruncateUDP: true, Records: map[string][]netip.Addr{dnsName: {s.Dest4}}})
	require.NoError(t, err)

	r := bindtodev.Resolver(s.A, failing.Addr, truncating.Addr)
	assert.Equal(t, []netip.Addr{s.Dest4}, lookup(t, r, "ip4"))
	assert.Zero(t, failing.Count("tcp"), "TCP query went back to the failing server")
	assertFrom(t, truncating, s.LocalA4, "tcp")
}

// A resolver that cannot bind fails every query before a packet is sent.
func TestResolverFailsClosed(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	srv, err := netlab.StartDNS(s.PeerA, netip.AddrPortFrom(s.PeerA4, 53),
		netlab.DNSConfig{Records: map[string][]netip.Addr{dnsName: {s.PeerA4}}})
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		r       *net.Resolver
		message string
	}{
		{"empty name", bindtodev.Resolver("", srv.Addr), "invalid interface name"},
		{"invalid name", bindtodev.Resolver("a/b", srv.Addr), "invalid interface name"},
		{"truncated name", bindtodev.Resolver(s.A+"-but-longer-than-15", srv.Addr), "invalid interface name"},
		{"unknown interface", bindtodev.Resolver("nosuch0", srv.Addr), "no such device"},
		{"zero server", bindtodev.Resolver(s.A, srv.Addr, netip.AddrPort{}), "not an IP address and port"},
		{"unspecified server", bindtodev.Resolver(s.A, netip.MustParseAddrPort("0.0.0.0:53")), "not an IP address and port"},
		{"no port", bindtodev.Resolver(s.A, netip.AddrPortFrom(s.PeerA4, 0)), "not an IP address and port"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := tc.r.LookupNetIP(ctx, "ip4", dnsName)
		cancel()
		require.Error(t, err, tc.name)
		assert.Contains(t, err.Error(), tc.message, tc.name)
	}
	assert.Empty(t, srv.Queries(), "a query was sent")
}
