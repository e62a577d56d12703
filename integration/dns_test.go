package integration_test

import (
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/integration"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

const (
	miekgPort = 5353
	// whoName is answered by the peers' miekg/dns servers with a TXT
	// record holding the peer's name.
	whoName = "who.bindtodev.test."
)

// miekgServer is a miekg/dns server in a peer, over UDP and TCP on every
// address, that records the source of every query.
type miekgServer struct {
	mu    sync.Mutex
	froms []netip.Addr
}

// reset forgets the queries received so far.
func (s *miekgServer) reset() {
	s.mu.Lock()
	s.froms = nil
	s.mu.Unlock()
}

func (s *miekgServer) sources() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.froms)
}

func serveMiekg(t *testing.T, l *lab) map[string]*miekgServer {
	t.Helper()
	servers := map[string]*miekgServer{}
	for _, h := range l.peers() {
		rec := &miekgServer{}
		servers[h.Name] = rec
		handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			if from, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
				rec.mu.Lock()
				rec.froms = append(rec.froms, from.Addr().Unmap())
				rec.mu.Unlock()
			}
			m := new(dns.Msg).SetReply(q)
			if len(q.Question) == 1 && q.Question[0].Name == whoName && q.Question[0].Qtype == dns.TypeTXT {
				m.Answer = append(m.Answer, &dns.TXT{
					Hdr: dns.RR_Header{Name: whoName, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
					Txt: []string{h.Name},
				})
			} else {
				m.Rcode = dns.RcodeNameError
			}
			_ = w.WriteMsg(m)
		})
		// A UDP server per address, so that each answers from the
		// address it was asked on.
		for _, a := range []netip.Addr{l.Dest4, l.Dest6} {
			pc := listenPeerUDP(t, h, netip.AddrPortFrom(a, miekgPort).String())
			srv := &dns.Server{PacketConn: pc, Handler: handler}
			go func() { _ = srv.ActivateAndServe() }()
			t.Cleanup(func() { _ = srv.Shutdown() })
		}
		ln, err := h.Listen("tcp", ":"+strconv.Itoa(miekgPort))
		require.NoError(t, err)
		srv := &dns.Server{Listener: ln, Handler: handler}
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return servers
}

// whoAnswered returns the TXT answer of a who query.
func whoAnswered(t *testing.T, r *dns.Msg) string {
	t.Helper()
	require.Equal(t, dns.RcodeSuccess, r.Rcode)
	require.Len(t, r.Answer, 1)
	txt, ok := r.Answer[0].(*dns.TXT)
	require.True(t, ok, "answer %v", r.Answer[0])
	require.Len(t, txt.Txt, 1)
	return txt.Txt[0]
}

// Through the recipe's client a miekg/dns query over UDP and TCP reaches
// the server behind A, the server's own name looked up through A too; a
// default dns.Client reaches B.
func TestMiekgDNS(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	servers := serveMiekg(t, l)
	for _, f := range l.families() {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(f.name+"/"+network, func(t *testing.T) {
				servers["A"].reset()
				servers["B"].reset()
				w := l.watch(t)
				d, devs := l.dialer(t, f)
				c := integration.DNSClient(d, network, 5*time.Second)
				q := new(dns.Msg).SetQuestion(whoName, dns.TypeTXT)
				r, _, err := c.ExchangeContext(testContext(t), q, f.hostPort(miekgPort))
				require.NoError(t, err)
				assert.Equal(t, "A", whoAnswered(t, r))
				w.requireNone(t)
				devs.requireAll(t, l.A)
				l.requireLookupsFromA(t, f)
				require.NotEmpty(t, servers["A"].sources())
				for _, from := range servers["A"].sources() {
					assert.Equal(t, f.localA, from, "A's server was asked from another address")
				}
				assert.Empty(t, servers["B"].sources(), "a bound query reached B's server")

				dflt := &dns.Client{Net: network, Timeout: 5 * time.Second}
				r, _, err = dflt.ExchangeContext(testContext(t), q, f.destPort(miekgPort))
				require.NoError(t, err)
				assert.Equal(t, "B", whoAnswered(t, r), "dns.Client follows the routing table")
				w.requireSeen(t, f.dest)
			})
		}
	}
}

// bindtodev.Resolver against the miekg/dns servers: its queries reach A's;
// a resolver that is not bound reaches B's.
func TestResolverWithMiekgServers(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	serveMiekg(t, l)
	for _, f := range l.families() {
		t.Run(f.name, func(t *testing.T) {
			w := l.watch(t)
			server := netip.AddrPortFrom(f.dest, miekgPort)
			txt, err := bindtodev.Resolver(l.A, server).LookupTXT(testContext(t), whoName)
			require.NoError(t, err)
			assert.Equal(t, []string{"A"}, txt)
			w.requireNone(t)

			txt, err = netlab.Resolver(server).LookupTXT(testContext(t), whoName)
			require.NoError(t, err)
			assert.Equal(t, []string{"B"}, txt, "an unbound resolver follows the routing table")
			w.requireSeen(t, f.dest)
		})
	}
}
