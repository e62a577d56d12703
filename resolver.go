package bindtodev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Resolver returns a DNS resolver whose queries leave through the interface
// named ifname: it is Go's own resolver (PreferGo), and every UDP and TCP
// socket it queries with is bound to ifname like a [Dialer]'s. Give it to a
// Dialer as its Resolver so that a host name is looked up through the same
// interface the connection then uses:
//
//	d := &bindtodev.Dialer{Interface: "eth1"}
//	d.Resolver = bindtodev.Resolver("eth1", netip.MustParseAddrPort("192.0.2.53:53"))
//
// With no servers, the resolver queries the name servers of
// /etc/resolv.conf. With servers, it queries those instead, in order: a
// server that refuses the query (ICMP port unreachable), does not answer
// in its share of the query's time, or answers SERVFAIL, REFUSED or
// NOTIMP hands the query to the next one. When an answer over UDP is
// truncated, the resolver repeats the query over TCP, first to the server
// that answered last over UDP. Everything else /etc/resolv.conf says, such
// as search domains, ndots, timeout and attempts, still applies, and names
// in /etc/hosts are answered from that file without a query.
//
// The resolver fails closed: when ifname is invalid, a server is not a
// valid address and port, or the platform cannot bind sockets, every query
// fails before a packet is sent.
//
// Two traps remain. A name server on a loopback address, such as the
// 127.0.0.53 stub of systemd-resolved, is queried through a socket bound
// to lo (see [Control]), since no other interface reaches it; that stub
// then forwards the query over whatever route it likes. For lookups that do not leak, use name servers reachable through
// ifname. And only Go's resolver can be bound: the system (cgo) resolver
// that a plain [net.Resolver] may use makes its queries in the C library,
// out of reach of any Go socket option.
func Resolver(ifname string, servers ...netip.AddrPort) *net.Resolver {
	err := checkName(ifname)
	if err == nil {
		if err = checkServers(servers); err != nil {
			err = &Error{Op: "resolve", Interface: ifname, Err: err}
		}
	}
	if err != nil {
		return failingResolver(err)
	}
	r := &net.Resolver{PreferGo: true}
	d := &Dialer{Interface: ifname}
	if len(servers) == 0 {
		r.Dial = d.DialContext
		return r
	}
	f := &failover{dialer: d, servers: slices.Clone(servers)}
	r.Dial = f.dial
	return r
}

// failingResolver returns Go's resolver with every query failing with err
// before a socket exists. Names in /etc/hosts still resolve, without a
// query.
func failingResolver(err error) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(_ context.Context, network, _ string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}}
}

// checkServers refuses a server address that could only fail later, or
// that net would read as "any address".
func checkServers(servers []netip.AddrPort) error {
	for i, s := range servers {
		if !s.Addr().IsValid() || s.Addr().IsUnspecified() || s.Port() == 0 {
			return fmt.Errorf("DNS server %d (%s) is not an IP address and port: %w", i+1, s, syscall.EINVAL)
		}
	}
	return nil
}

// failover dials the resolver's queries to its own list of servers,
// ignoring the server from /etc/resolv.conf that net asks for.
type failover struct {
	dialer  *Dialer
	servers []netip.AddrPort
	// lastUDP is the index of the server that answered the last query
	// over UDP. net falls back to TCP in a separate dial when that answer
	// was truncated, and the TCP query should go to the same server.
	lastUDP atomic.Int32
}

func (f *failover) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	if strings.HasPrefix(network, "tcp") {
		return f.dialTCP(ctx, network)
	}
	c := &udpFailover{f: f, ctx: ctx, network: network, next: 0}
	if err := c.advance(); err != nil {
		return nil, err
	}
	return c, nil
}

// dialTCP connects to the servers in turn, starting with the one that
// answered last over UDP, giving each a fair share of the time left.
func (f *failover) dialTCP(ctx context.Context, network string) (net.Conn, error) {
	first := int(f.lastUDP.Load())
	var errs []error
	for k := range f.servers {
		i := (first + k) % len(f.servers)
		sctx, cancel := shareOf(ctx, len(f.servers)-k)
		c, err := f.dialer.DialContext(sctx, network, f.servers[i].String())
		cancel()
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, joinErrors(errs)
}

// shareOf gives one of n remaining tries its share of ctx's time.
func shareOf(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || n <= 1 {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, time.Now().Add(time.Until(deadline)/time.Duration(n)))
}

// udpFailover is the connection net's resolver sends one UDP query on. It
// sends the query to the first server, and moves it to the next one when
// that server refuses, stays silent for its share of the time, or answers
// with a failure code. It implements net.PacketConn because net reads DNS
// over a packet connection without the TCP length prefix. net uses it from
// one goroutine at a time.
type udpFailover struct {
	f        *failover
	ctx      context.Context
	network  string
	next     int      // index of the server to try next
	conn     net.Conn // connected to f.servers[next-1]
	query    []byte   // the query, sent again to each next server
	deadline time.Time
	switchAt time.Time // when the current server's share of time ends
}

// advance closes the current server's socket and opens one to the next
// server that can be dialed, sending it the query when there is one.
func (c *udpFailover) advance() error {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	var errs []error
	for c.next < len(c.f.servers) {
		i := c.next
		c.next++
		conn, err := c.f.dialer.DialContext(c.ctx, c.network, c.f.servers[i].String())
		if err == nil && c.query != nil {
			if err = conn.SetWriteDeadline(c.deadline); err == nil {
				_, err = conn.Write(c.query)
			}
			if err != nil {
				conn.Close()
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.conn = conn
		c.startShare()
		return nil
	}
	return joinErrors(errs)
}

// startShare gives the current server its share of the time left.
func (c *udpFailover) startShare() {
	c.switchAt = time.Time{}
	left := len(c.f.servers) - c.next + 1
	if !c.deadline.IsZero() && left > 1 {
		c.switchAt = time.Now().Add(time.Until(c.deadline) / time.Duration(left))
	}
}

func (c *udpFailover) last() bool { return c.next >= len(c.f.servers) }

func (c *udpFailover) Write(b []byte) (int, error) {
	if c.conn == nil {
		return 0, net.ErrClosed
	}
	c.query = slices.Clone(b)
	c.startShare()
	n, err := c.conn.Write(b)
	for err != nil && !c.last() {
		if aerr := c.advance(); aerr != nil {
			return 0, joinErrors([]error{err, aerr})
		}
		n, err = len(b), nil
	}
	return n, err
}

func (c *udpFailover) Read(b []byte) (int, error) {
	for {
		if c.conn == nil {
			return 0, net.ErrClosed
		}
		readBy := c.deadline
		if !c.switchAt.IsZero() && !c.last() {
			readBy = c.switchAt
		}
		if err := c.conn.SetReadDeadline(readBy); err != nil {
			return 0, err
		}
		n, err := c.conn.Read(b)
		if err == nil && !c.last() && c.failed(b[:n]) {
			err = errServerFailed
		}
		if err == nil {
			c.f.lastUDP.Store(int32(c.next - 1))
			return n, nil
		}
		if c.last() || !c.movesOn(err) {
			return n, err
		}
		if aerr := c.advance(); aerr != nil {
			return 0, joinErrors([]error{err, aerr})
		}
	}
}

var errServerFailed = errors.New("DNS server answered with a failure code")

// failed reports whether b answers the query with a code that asks for
// another server: SERVFAIL, NOTIMP or REFUSED.
func (c *udpFailover) failed(b []byte) bool {
	const headerLen = 12
	const response = 0x80
	if len(b) < headerLen || len(c.query) < 2 || b[0] != c.query[0] || b[1] != c.query[1] || b[2]&response == 0 {
		return false
	}
	switch rcode := b[3] & 0x0f; rcode {
	case 2, 4, 5:
		return true
	}
	return false
}

// movesOn reports whether a failed read should hand the query to the next
// server: the server refused it, or its share of the time is over while
// the query's is not.
func (c *udpFailover) movesOn(err error) bool {
	if errors.Is(err, errServerFailed) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	return errors.Is(err, os.ErrDeadlineExceeded) && (c.deadline.IsZero() || time.Now().Before(c.deadline))
}

func (c *udpFailover) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := c.Read(b)
	return n, c.RemoteAddr(), err
}

func (c *udpFailover) WriteTo(b []byte, _ net.Addr) (int, error) { return c.Write(b) }

func (c *udpFailover) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// LocalAddr and RemoteAddr are those of the current server's socket, or
// nil once every server has failed.
func (c *udpFailover) LocalAddr() net.Addr {
	if c.conn == nil {
		return nil
	}
	return c.conn.LocalAddr()
}

func (c *udpFailover) RemoteAddr() net.Addr {
	if c.conn == nil {
		return nil
	}
	return c.conn.RemoteAddr()
}

// SyscallConn reaches the current server's socket, so that [Device] can
// read its binding back.
func (c *udpFailover) SyscallConn() (syscall.RawConn, error) {
	if c.conn == nil {
		return nil, net.ErrClosed
	}
	return c.conn.(syscall.Conn).SyscallConn()
}

func (c *udpFailover) SetDeadline(t time.Time) error {
	c.deadline = t
	if c.conn == nil {
		return net.ErrClosed
	}
	return c.conn.SetDeadline(t)
}

func (c *udpFailover) SetReadDeadline(t time.Time) error {
	c.deadline = t
	if c.conn == nil {
		return net.ErrClosed
	}
	return c.conn.SetReadDeadline(t)
}

func (c *udpFailover) SetWriteDeadline(t time.Time) error {
	if c.conn == nil {
		return net.ErrClosed
	}
	return c.conn.SetWriteDeadline(t)
}

// joinErrors keeps every error for errors.Is and errors.As, on one line:
// net puts the text into a DNSError.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	format := strings.Repeat("%w; ", len(errs)-1) + "%w"
	args := make([]any, len(errs))
	for i, err := range errs {
		args[i] = err
	}
	return fmt.Errorf(format, args...)
}
