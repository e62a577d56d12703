package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/internal/netlab"
)

// probeSocket creates a TCP socket of family 4 or 6, as socket(2) does, and
// reads back the device it is bound to by name and by index: "ok NAME
// INDEX", "ok - INDEX" when the index names no interface (the read-back of
// the name fails with ENODEV), or "err ERRNO" when socket() fails.
func probeSocket(family string) string {
	domain := unix.AF_INET
	if family == "6" {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "err " + errnoName(err)
	}
	defer unix.Close(fd)
	index, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
	if err != nil {
		return "err getsockopt SO_BINDTOIFINDEX " + errnoName(err)
	}
	name, err := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
	switch {
	case errors.Is(err, unix.ENODEV):
		name = "-"
	case err != nil:
		return "err getsockopt SO_BINDTODEVICE " + errnoName(err)
	case name == "":
		name = "unbound"
	}
	return fmt.Sprintf("ok %s %d", name, index)
}

func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// followProbe is the probe under "bindtodev exec" with flags, with what
// the wrapper says on its standard error, line by line.
type followProbe struct {
	*wrapped
	t      *testing.T
	stderr chan string
}

func startFollowProbe(t *testing.T, flags ...string) *followProbe {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	p := &followProbe{t: t, stderr: make(chan string, 64)}
	go func() {
		defer close(p.stderr)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.stderr <- sc.Text()
		}
	}()
	t.Cleanup(func() { r.Close() })
	p.wrapped = startProbeErr(t, flags, nil, w)
	w.Close()
	return p
}

// ask sends one command to the probe and returns its answer.
func (p *followProbe) ask(format string, args ...any) string {
	p.t.Helper()
	return p.wrapped.ask(p.t, fmt.Sprintf(format, args...))
}

// said waits for the wrapper to write a line containing want on its
// standard error.
func (p *followProbe) said(want string) {
	p.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case l, ok := <-p.stderr:
			if !ok {
				p.t.Fatalf("the wrapper closed its standard error before saying %q", want)
			}
			p.t.Logf("wrapper: %s", l)
			if strings.Contains(l, want) {
				return
			}
		case <-timeout:
			p.t.Fatalf("the wrapper did not say %q within 5 s", want)
		}
	}
}

// finish ends the probe and returns the wrapper's exit code.
func (p *followProbe) finish() int {
	p.t.Helper()
	_, _ = fmt.Fprintln(p.in, "quit")
	_ = p.cmd.Wait()
	return p.cmd.ProcessState.ExitCode()
}

// recreateA creates the seed lab's interface A again, as VethReady brings
// an interface (addresses first, then up), with the routes the seed lab
// gave it and its peer, and returns its new index.
func recreateA(t *testing.T, s *netlab.Seed) int {
	t.Helper()
	require.NoError(t, s.VethReady(s.A, s.PeerA, "eth0",
		[]netip.Prefix{netip.PrefixFrom(s.LocalA4, 25), netip.PrefixFrom(s.LocalA6, 64)},
		[]netip.Prefix{netip.PrefixFrom(s.PeerA4, 25), netip.PrefixFrom(s.PeerA6, 64)}))
	for _, r := range []struct {
		h *netlab.Host
		r netlab.Route
	}{
		{s.PeerA, netlab.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: s.LocalA4, Dev: "eth0"}},
		{s.PeerA, netlab.Route{Dst: netip.MustParsePrefix("::/0"), Gateway: s.LocalA6, Dev: "eth0"}},
		{s.Local, netlab.Route{Dst: netip.PrefixFrom(s.Dest4, 32), Gateway: s.PeerA4, Dev: s.A, Metric: 20}},
		{s.Local, netlab.Route{Dst: netip.PrefixFrom(s.Dest6, 128), Gateway: s.PeerA6, Dev: s.A, Metric: 20}},
	} {
		require.NoError(t, r.h.AddRoute(r.r))
	}
	link, err := s.Local.Link(s.A)
	require.NoError(t, err)
	return link.Index
}

// checkBoundTo asks the probe for new sockets of both families, which must
// be bound to A with index, and for connections over TCP and UDP, IPv4 and
// IPv6, which must reach the peer behind A from A's addresses.
func checkBoundTo(t *testing.T, s *netlab.Seed, p *followProbe, index int) {
	t.Helper()
	for _, fam := range []string{"4", "6"} {
		assert.Equal(t, fmt.Sprintf("ok %s %d", s.A, index), p.ask("sock %s", fam), "new IPv%s socket", fam)
	}
	for _, d := range []struct{ dest, local netip.Addr }{{s.Dest4, s.LocalA4}, {s.Dest6, s.LocalA6}} {
		for _, network := range []string{"tcp", "udp"} {
			got := p.ask("dial %s %s", network, whoAmIAddr(d.dest))
			f := strings.Fields(got)
			if assert.Len(t, f, 4, "dial %s %s: %s", network, d.dest, got) {
				assert.Equal(t, "A", f[1], "peer reached by %s to %s", network, d.dest)
				src, err := netip.ParseAddrPort(f[2])
				assert.NoError(t, err)
				assert.Equal(t, d.local, src.Addr(), "source of %s to %s", network, d.dest)
				assert.Equal(t, s.A, f[3], "device of %s to %s", network, d.dest)
			}
		}
	}
}

// checkRefused asks the probe for new sockets and connections while A is
// absent: socket() must fail with EPERM, the denying program's answer.
func checkRefused(t *testing.T, s *netlab.Seed, p *followProbe) {
	t.Helper()
	for _, fam := range []string{"4", "6"} {
		assert.Equal(t, "err EPERM", p.ask("sock %s", fam), "new IPv%s socket while %s is absent", fam, s.A)
	}
	for _, d := range []netip.Addr{s.Dest4, s.Dest6} {
		for _, network := range []string{"tcp", "udp"} {
			got := p.ask("dial %s %s 1s", network, whoAmIAddr(d))
			assert.Contains(t, got, "socket: operation not permitted", "dial %s %s while %s is absent", network, d, s.A)
		}
	}
}

// With -follow, a running command's new sockets are refused while its
// interface is deleted and bound to the interface of that name once it is
// created again, with its new index, over several bounces; not one packet
// of the command leaves through B meanwhile, though the routing table
// prefers B for the destination.
func TestExecFollowBounces(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	capB, err := s.Local.Capture(s.B)
	require.NoError(t, err)
	defer func() { _, _, _ = capB.Stop() }()
	link, err := s.Local.Link(s.A)
	require.NoError(t, err)

	p := startFollowProbe(t, "-follow", "-i", s.A)
	checkBoundTo(t, s, p, link.Index)
	indexes := []int{link.Index}
	for bounce := range 3 {
		require.NoError(t, s.Local.Delete(s.A))
		p.said(fmt.Sprintf("interface %q is gone", s.A))
		checkRefused(t, s, p)
		index := recreateA(t, s)
		require.NotContains(t, indexes, index, "bounce %d: the kernel gave A an index it had before", bounce)
		indexes = append(indexes, index)
		p.said(fmt.Sprintf("interface %q is back (index %d)", s.A, index))
		checkBoundTo(t, s, p, index)
	}
	assert.Equal(t, 0, p.finish(), "exit status of the command")

	// Every exchange above ended with an answer, so the capture has all
	// there is once it is synced.
	require.NoError(t, capB.Sync())
	for _, pkt := range capB.Packets() {
		if pkt.Dst != s.Dest4 && pkt.Dst != s.Dest6 {
			continue
		}
		if pkt.Proto == unix.IPPROTO_TCP && pkt.PayloadLen == 0 && pkt.TCPFlags&^(netlab.TCPAck|netlab.TCPRst) == 0 &&
			(pkt.Src == s.LocalA4 || pkt.Src == s.LocalA6) {
			// A bare ACK or RST from A's address: the kernel's reply for
			// a connection of the command that is already closed, which
			// follows the routing table (docs/guarantees.md, limit A).
			t.Logf("the kernel's reply for a closed connection, through %s: %v", s.B, pkt)
			continue
		}
		t.Errorf("the command's packet left through %s: %v", s.B, pkt)
	}
	// The capture would have seen a leak: an unbound dial goes through B.
	c, err := s.Local.Dial("tcp", whoAmIAddr(s.Dest4))
	require.NoError(t, err)
	_, err = netlab.AskTCP(c)
	require.NoError(t, err)
	c.Close()
	require.NoError(t, capB.Sync())
	seen := 0
	for _, pkt := range capB.Packets() {
		if pkt.Dst == s.Dest4 {
			seen++
		}
	}
	assert.Positive(t, seen, "the capture on %s saw no packet of an unbound dial", s.B)
}

// A rename arrives as RTM_NEWLINK on an index already bound, not as a
// deletion: with -follow, the name renamed away is gone (new sockets are
// refused), and the interface renamed back to it has it again. Down and up
// change nothing.
func TestExecFollowRename(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	link, err := s.Local.Link(s.A)
	require.NoError(t, err)
	p := startFollowProbe(t, "-follow", "-i", s.A)
	require.NoError(t, s.Local.SetDown(s.A))
	// Down is not gone: the program stays, and a socket is bound to A.
	assert.Equal(t, fmt.Sprintf("ok %s %d", s.A, link.Index), p.ask("sock 4"), "new socket while %s is down", s.A)
	other := s.A + "r"
	require.NoError(t, s.Local.RenameLink(s.A, other))
	p.said(fmt.Sprintf("interface %q is gone", s.A))
	checkRefused(t, s, p)
	require.NoError(t, s.Local.RenameLink(other, s.A))
	p.said(fmt.Sprintf("interface %q is back (index %d)", s.A, link.Index))
	require.NoError(t, s.Local.SetUp(s.A))
	// Down flushed A's IPv6 addresses and routes; IPv4 ones stay.
	for _, fam := range []string{"4", "6"} {
		assert.Equal(t, fmt.Sprintf("ok %s %d", s.A, link.Index), p.ask("sock %s", fam), "new IPv%s socket", fam)
	}
	got := strings.Fields(p.ask("dial tcp %s", whoAmIAddr(s.Dest4)))
	if assert.Len(t, got, 4, "dial tcp %s", s.Dest4) {
		assert.Equal(t, []string{"ok", "A", s.A}, []string{got[0], got[1], got[3]})
	}
	assert.Equal(t, 0, p.finish(), "exit status of the command")
}
