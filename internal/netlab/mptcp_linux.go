package netlab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
)

// Multipath is a lab for Multipath TCP, whose path manager opens and
// accepts subflows on its own. Host Client has two interfaces, A and B,
// each a veth to host Server, which owns Dest4 and Dest6 on its loopback
// interface. Client's routes prefer B for the destinations (metric 10
// against 20 for A), as in [Seed], so a socket bound to A that the path
// manager extends shows up on B.
//
// Both hosts are namespaces of their own, apart from the process's: path
// manager endpoints and limits set there ([Host.IP]) touch no other test.
// Create the sockets under test in Client with [Host.Do].
type Multipath struct {
	*Lab
	Client, Server *Host
	// A and B are Client's interfaces; Server's ends are SA and SB.
	A, B, SA, SB string
	// Addresses of Client and Server on each link.
	ClientA4, ClientB4, ServerA4, ServerB4 netip.Addr
	ClientA6, ClientB6, ServerA6, ServerB6 netip.Addr
	// Dest4 and Dest6 are Server's, reachable through both links.
	Dest4, Dest6 netip.Addr
}

// NewMultipathT builds the Multipath lab for a test, with the skipping
// rules of [NewT].
func NewMultipathT(t testing.TB) *Multipath {
	t.Helper()
	l := NewT(t)
	m, err := buildMultipath(l)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func buildMultipath(l *Lab) (*Multipath, error) {
	n := l.N
	m := &Multipath{
		Lab: l, A: "ma", B: "mb", SA: "sa", SB: "sb",
		ClientA4: netip.AddrFrom4([4]byte{198, 18, byte(n), 1}),
		ServerA4: netip.AddrFrom4([4]byte{198, 18, byte(n), 2}),
		ClientB4: netip.AddrFrom4([4]byte{198, 18, byte(n), 129}),
		ServerB4: netip.AddrFrom4([4]byte{198, 18, byte(n), 130}),
		Dest4:    netip.AddrFrom4([4]byte{198, 19, byte(n), 1}),
		ClientA6: v6(n, 0xa, 1), ServerA6: v6(n, 0xa, 2),
		ClientB6: v6(n, 0xb, 1), ServerB6: v6(n, 0xb, 2),
		Dest6: v6(n, 0xd, 1),
	}
	var err error
	if m.Client, err = l.NewHost("client"); err != nil {
		return nil, err
	}
	if m.Server, err = l.NewHost("server"); err != nil {
		return nil, err
	}
	type side struct {
		client, server string
		client4, srv4  netip.Addr
		client6, srv6  netip.Addr
		metric         int
	}
	for _, sd := range []side{
		{m.A, m.SA, m.ClientA4, m.ServerA4, m.ClientA6, m.ServerA6, 20},
		{m.B, m.SB, m.ClientB4, m.ServerB4, m.ClientB6, m.ServerB6, 10},
	} {
		steps := []func() error{
			func() error { return vethBetween(m.Client, sd.client, m.Server, sd.server) },
			func() error { return m.Client.AddAddr(sd.client, netip.PrefixFrom(sd.client4, 25)) },
			func() error { return m.Client.AddAddr(sd.client, netip.PrefixFrom(sd.client6, 64)) },
			func() error { return m.Server.AddAddr(sd.server, netip.PrefixFrom(sd.srv4, 25)) },
			func() error { return m.Server.AddAddr(sd.server, netip.PrefixFrom(sd.srv6, 64)) },
			func() error {
				return m.Client.AddRoute(Route{Dst: netip.PrefixFrom(m.Dest4, 32), Gateway: sd.srv4, Dev: sd.client, Metric: sd.metric})
			},
			func() error {
				return m.Client.AddRoute(Route{Dst: netip.PrefixFrom(m.Dest6, 128), Gateway: sd.srv6, Dev: sd.client, Metric: sd.metric})
			},
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range []netip.Prefix{netip.PrefixFrom(m.Dest4, 32), netip.PrefixFrom(m.Dest6, 128)} {
		if err := m.Server.AddAddr("lo", p); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// vethBetween creates a veth pair with end aName in a and bName in b, both
// up. It goes away with the namespaces.
func vethBetween(a *Host, aName string, b *Host, bName string) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(int(b.ns)),
	}
	if err := a.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("netlab: add veth %s/%s-%s/%s: %w", a.Name, aName, b.Name, bName, err)
	}
	if err := a.SetUp(aName); err != nil {
		return err
	}
	return b.SetUp(bName)
}

// IP runs the ip(8) command of iproute2 with args inside h's namespace,
// for what the netlink library does not speak, such as the Multipath TCP
// path manager ("ip mptcp endpoint add ...").
func (h *Host) IP(args ...string) error {
	path, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("netlab: the ip command of iproute2 is needed: %w", err)
	}
	var out []byte
	err = h.Do(func() error {
		// The child is forked from this thread, and so starts in h.
		out, err = exec.Command(path, args...).CombinedOutput()
		return err
	})
	if err != nil {
		return fmt.Errorf("netlab: %s: ip %v: %w: %s", h.Name, args, err, out)
	}
	return nil
}

// ServeBulk starts a TCP server in h on address that, for every
// connection, reads n bytes, writes n bytes back and closes. Its listener
// is net's default, which uses Multipath TCP when the client does. Each
// accepted connection is sent on the returned channel once served and
// closed, with the error, if any, of serving it.
func ServeBulk(h *Host, address string, n int) (net.Listener, <-chan BulkResult, error) {
	ln, err := h.Listen("tcp", address)
	if err != nil {
		return nil, nil, err
	}
	h.onClose(func() { ln.Close() })
	results := make(chan BulkResult, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				r := BulkResult{Remote: c.RemoteAddr()}
				if tc, ok := c.(*net.TCPConn); ok {
					r.Multipath, _ = tc.MultipathTCP()
				}
				r.Err = Exchange(c, n)
				// The server closes first, so that the client's socket
				// is still open when the FIN arrives (see AwaitEOF).
				c.Close()
				results <- r
			}()
		}
	}()
	return ln, results, nil
}

// BulkResult is what [ServeBulk] saw of one connection.
type BulkResult struct {
	Remote    net.Addr
	Multipath bool // the connection used Multipath TCP
	Err       error
}

// Exchange writes n bytes on c while it reads n bytes from it, so that
// both directions carry data at once.
func Exchange(c net.Conn, n int) error {
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for left := n; left > 0; {
			k, err := c.Write(buf[:min(left, len(buf))])
			if err != nil {
				werr <- err
				return
			}
			left -= k
		}
		werr <- nil
	}()
	buf := make([]byte, 64<<10)
	var rerr error
	for got := 0; got < n; {
		k, err := c.Read(buf)
		got += k
		if err != nil {
			if got < n {
				rerr = fmt.Errorf("netlab: read %d of %d bytes: %w", got, n, err)
			}
			break
		}
	}
	return errors.Join(rerr, <-werr)
}

// AwaitEOF reads c until the peer has closed it. A bound socket closed
// before its peer's FIN arrives answers that FIN from a socket that no
// longer exists, and the kernel routes such replies by the table, through
// any interface (see SECURITY.md); one that waits for the FIN first does
// not.
func AwaitEOF(c net.Conn) error {
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("netlab: wait for the peer to close: %w", err)
		}
	}
}
