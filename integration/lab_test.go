package integration_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/integration"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

func TestMain(m *testing.M) {
	netlab.Main(m)
}

// testTimeout bounds every exchange of a test, so that a client that hangs
// on a leaked path fails the test instead of stalling the run.
const testTimeout = 15 * time.Second

// The names the lab's DNS servers know. Both peers answer them with the
// same address, owned by both, so that only the path decides which peer a
// client reaches.
const (
	name4 = "svc4.bindtodev.test"
	name6 = "svc6.bindtodev.test"
)

// lab is the seed lab with a DNS server in each peer on port 53 of Dest4
// and Dest6, answering name4 with Dest4 and name6 with Dest6.
type lab struct {
	*netlab.Seed
	dnsA, dnsB []*netlab.DNSServer
}

func newLab(t *testing.T) *lab {
	t.Helper()
	s := netlab.NewSeedT(t)
	l := &lab{Seed: s}
	records := map[string][]netip.Addr{name4 + ".": {s.Dest4}, name6 + ".": {s.Dest6}}
	for _, dest := range []netip.Addr{s.Dest4, s.Dest6} {
		a, err := netlab.StartDNS(s.PeerA, netip.AddrPortFrom(dest, 53), netlab.DNSConfig{Records: records})
		require.NoError(t, err)
		b, err := netlab.StartDNS(s.PeerB, netip.AddrPortFrom(dest, 53), netlab.DNSConfig{Records: records})
		require.NoError(t, err)
		l.dnsA, l.dnsB = append(l.dnsA, a), append(l.dnsB, b)
	}
	return l
}

// family is one address family of the lab: the name that resolves to the
// shared destination, the name server that answers it, and the local
// address on A that bound traffic must come from.
type family struct {
	name   string
	host   string // the name the client dials
	dest   netip.Addr
	dns    netip.AddrPort
	localA netip.Addr
}

func (l *lab) families() []family {
	return []family{
		{"IPv4", name4, l.Dest4, netip.AddrPortFrom(l.Dest4, 53), l.LocalA4},
		{"IPv6", name6, l.Dest6, netip.AddrPortFrom(l.Dest6, 53), l.LocalA6},
	}
}

// hostPort joins the family's name and port.
func (f family) hostPort(port int) string {
	return net.JoinHostPort(f.host, strconv.Itoa(port))
}

// destPort joins the family's destination address and port, for the
// clients' default configurations, which cannot look up lab names.
func (f family) destPort(port int) string {
	return netip.AddrPortFrom(f.dest, uint16(port)).String()
}

// dialer returns the recipe's Dialer for family f, with a hook that reads
// back, from the kernel, the device of every socket the Dialer makes.
func (l *lab) dialer(t *testing.T, f family) (*bindtodev.Dialer, *devices) {
	t.Helper()
	d := integration.NewDialer(l.A, f.dns)
	d.Timeout = testTimeout
	devs := &devices{}
	d.ControlContext = devs.record
	return d, devs
}

// dnsServers returns A's and B's name servers of family f.
func (l *lab) dnsServers(f family) (a, b *netlab.DNSServer) {
	for i, srv := range l.dnsA {
		if srv.Addr == f.dns {
			return srv, l.dnsB[i]
		}
	}
	panic("no lab DNS server on " + f.dns.String())
}

// requireLookupsFromA checks that the lookups of the bound exchange reached
// A's name server, each from A's address, and never B's.
func (l *lab) requireLookupsFromA(t *testing.T, f family) {
	t.Helper()
	a, b := l.dnsServers(f)
	queries := a.Queries()
	require.NotEmpty(t, queries, "%v got no query: the client did not look %s up through the recipe", a, f.host)
	for _, q := range queries {
		assert.Equal(t, f.localA, q.From.Addr(), "%v: %s query for %s", a, q.Network, q.Name)
	}
	assert.Empty(t, b.Queries(), "a lookup reached B's name server")
}

// devices records the device each socket of a Dialer is bound to, as the
// kernel reports it once the Dialer has bound it (the user's ControlContext
// runs after the binding).
type devices struct {
	mu    sync.Mutex
	names []string
}

func (d *devices) record(_ context.Context, _, _ string, c syscall.RawConn) error {
	name, err := bindtodev.Device(rawConn{c})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.names = append(d.names, name)
	d.mu.Unlock()
	return nil
}

// requireAll checks that the Dialer made at least one socket, and that every
// one was bound to ifname.
func (d *devices) requireAll(t *testing.T, ifname string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	require.NotEmpty(t, d.names, "the client made no socket through the recipe's Dialer")
	for i, name := range d.names {
		assert.Equal(t, ifname, name, "socket %d of the Dialer", i+1)
	}
}

// rawConn lends a Control hook's RawConn to bindtodev.Device.
type rawConn struct{ c syscall.RawConn }

func (r rawConn) SyscallConn() (syscall.RawConn, error) { return r.c, nil }

// deviceOf reads back the device of a connection the client exposes.
func deviceOf(t *testing.T, c any) string {
	t.Helper()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	require.True(t, ok, "%T has no descriptor", c)
	name, err := bindtodev.Device(sc)
	require.NoError(t, err)
	return name
}

// watch captures every interface of the lab's host but A while a bound
// exchange runs.
type watch struct {
	l    *lab
	caps []*netlab.Capture
	ours map[netip.Addr]bool
}

// sentinel is the payload of the datagram that proves a capture live and
// drained.
const sentinel = "bindtodev-integration-sentinel"

func (l *lab) watch(t *testing.T) *watch {
	t.Helper()
	w := &watch{l: l, ours: map[netip.Addr]bool{}}
	for _, a := range []netip.Addr{l.LocalA4, l.LocalA6, l.PeerA4, l.PeerA6, l.Dest4, l.Dest6} {
		w.ours[a] = true
	}
	var err error
	w.caps, err = l.Local.CaptureAll(l.A)
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, c := range w.caps {
			_, stats, err := c.Stop()
			if err != nil {
				t.Errorf("capture on %s: %v", c.Ifname, err)
			}
			if stats.Drops > 0 {
				t.Errorf("capture on %s dropped %d of %d frames: the record is incomplete", c.Ifname, stats.Drops, stats.Packets)
			}
		}
	})
	return w
}

// leak reports whether p, seen on interface ifname, belongs to an exchange
// that should have stayed on A. On B that is every TCP and UDP packet but
// the sentinel's exchange with PeerB (no client talks to PeerB's own
// address); elsewhere, whatever carries an address of A's side or of the
// destination.
func (w *watch) leak(ifname string, p netlab.Packet) bool {
	if ifname == w.l.B && (p.Proto == unix.IPPROTO_TCP || p.Proto == unix.IPPROTO_UDP) {
		sentinelPath := (p.Src == w.l.LocalB4 && p.Dst == w.l.PeerB4) || (p.Src == w.l.PeerB4 && p.Dst == w.l.LocalB4)
		return !sentinelPath
	}
	return w.ours[p.Src.WithZone("")] || w.ours[p.Dst.WithZone("")]
}

// kernelReply reports whether p is what the kernel itself sends for an IPv6
// TCP connection of A's address that its socket has closed, or that no
// longer exists: a bare ACK or RST, without payload. No socket option
// reaches these packets; the root package's TestIPv6TimeWaitReplyLeaks and
// TestIPv6SourceRuleCoversKernelResets measure them, and they are counted
// apart here as in its TestNoLeakUnderLoad. Anything a client sends itself,
// a SYN or a segment with data, is never excused.
func (w *watch) kernelReply(p netlab.Packet) bool {
	return p.Outgoing && p.Proto == unix.IPPROTO_TCP && p.Src == w.l.LocalA6 && p.PayloadLen == 0 &&
		p.TCPFlags&^(netlab.TCPAck|netlab.TCPRst) == 0
}

// settle sends a sentinel datagram out of every watched interface, waits
// until each capture has seen its own, and then flushes it: whatever the
// exchange sent before the sentinel is then recorded.
func (w *watch) settle(t *testing.T) {
	t.Helper()
	for _, c := range w.caps {
		from := c.Len()
		dst := netip.MustParseAddrPort("127.0.0.1:9")
		if c.Ifname == w.l.B {
			dst = netip.AddrPortFrom(w.l.PeerB4, netlab.WhoAmIPort)
		} else if c.Ifname != "lo" {
			continue // an interface of another lab: its own addresses are watched
		}
		conn, err := net.Dial("udp", dst.String())
		require.NoError(t, err)
		_, err = conn.Write([]byte(sentinel))
		conn.Close()
		require.NoError(t, err)
		seen := c.WaitFor(from, testTimeout, func(p netlab.Packet) bool {
			return p.Outgoing && string(p.Payload) == sentinel
		})
		require.True(t, seen, "the capture on %s never saw the sentinel sent to %s", c.Ifname, dst)
		c.Flush()
	}
}

// requireNone fails the test when the bound exchange left a packet on an
// interface other than A. Call it after the client's connections are
// closed.
func (w *watch) requireNone(t *testing.T) {
	t.Helper()
	w.settle(t)
	var leaked []string
	for _, c := range w.caps {
		packets := c.Packets()
		// The peer behind B knows nothing of the connection a kernel
		// reply belongs to, and answers it with a RST.
		replied := map[[2]netip.AddrPort]bool{}
		for _, p := range packets {
			if w.kernelReply(p) {
				replied[[2]netip.AddrPort{netip.AddrPortFrom(p.Dst, p.DstPort), netip.AddrPortFrom(p.Src, p.SrcPort)}] = true
			}
		}
		for _, p := range packets {
			switch {
			case !w.leak(c.Ifname, p):
			case w.kernelReply(p):
				t.Logf("%s: %s: the kernel's own IPv6 reply, which follows the routing table (the README's limit A; SECURITY.md's rules remove it)", c.Ifname, p)
			case !p.Outgoing && p.Proto == unix.IPPROTO_TCP && p.TCPFlags == netlab.TCPRst && p.PayloadLen == 0 &&
				replied[[2]netip.AddrPort{netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort)}]:
				t.Logf("%s: %s: the answer of the peer behind %s to that reply", c.Ifname, p, w.l.B)
			default:
				leaked = append(leaked, c.Ifname+": "+p.String())
			}
		}
	}
	if len(leaked) > 0 {
		t.Fatalf("%d packets of the bound exchange left through other interfaces than %s:\n  %s",
			len(leaked), w.l.A, strings.Join(leaked[:min(len(leaked), 20)], "\n  "))
	}
}

// requireSeen is the control of requireNone: once the client's default
// configuration has run, the capture on B must show its packets to dest,
// or the capture could not have seen a leak either.
func (w *watch) requireSeen(t *testing.T, dest netip.Addr) {
	t.Helper()
	w.settle(t)
	for _, c := range w.caps {
		if c.Ifname != w.l.B {
			continue
		}
		for _, p := range c.Packets() {
			if p.Outgoing && p.Dst == dest {
				return
			}
		}
	}
	t.Fatalf("the capture on %s saw nothing sent to %s by the default configuration", w.l.B, dest)
}

// certificate is a self-signed certificate for the lab's names, its
// destination addresses and the local host's addresses on A (for the QUIC
// server), and the pool that trusts it.
type certificate struct {
	tls.Certificate
	pool *x509.CertPool
}

func newCertificate(t *testing.T, l *lab) certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bindtodev lab"},
		DNSNames:              []string{name4, name6},
		IPAddresses:           []net.IP{l.Dest4.AsSlice(), l.Dest6.AsSlice(), l.LocalA4.AsSlice(), l.LocalA6.AsSlice()},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return certificate{tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool}
}

// serverConfig is the TLS configuration of the peers' servers.
func (c certificate) serverConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.Certificate}, NextProtos: nextProtos, MinVersion: tls.VersionTLS12}
}

// clientConfig trusts only the lab's certificate.
func (c certificate) clientConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{RootCAs: c.pool, NextProtos: nextProtos, MinVersion: tls.VersionTLS12}
}

// peers returns the lab's two peers.
func (l *lab) peers() []*netlab.Host { return []*netlab.Host{l.PeerA, l.PeerB} }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// capture returns the watch's capture of interface name.
func (w *watch) capture(name string) *netlab.Capture {
	for _, c := range w.caps {
		if c.Ifname == name {
			return c
		}
	}
	panic("interface " + name + " is not watched")
}
