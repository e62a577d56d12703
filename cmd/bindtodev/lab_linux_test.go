//go:build !bindtodev_stub

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
	"github.com/bindtodev/bindtodev/internal/progtest"
)

// newSeed builds the seed lab; see netlab.Seed.
func newSeed(t *testing.T) *netlab.Seed {
	t.Helper()
	return netlab.NewSeedT(t)
}

// parseWho parses the who-am-I answer that dial printed.
func parseWho(t *testing.T, out string) netlab.WhoAmI {
	t.Helper()
	who, err := netlab.ParseWhoAmI(out)
	require.NoError(t, err)
	return who
}

// dial reaches the peer behind A when bound to A, and the peer behind B,
// which the routing table prefers, when not bound; over TCP and UDP, IPv4
// and IPv6, with flags before or after the address.
func TestDial(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	for _, dest := range []netip.Addr{s.Dest4, s.Dest6} {
		localA, localB := s.LocalA4, s.LocalB4
		if dest.Is6() {
			localA, localB = s.LocalA6, s.LocalB6
		}
		for _, proto := range []struct {
			flags []string
			stdin string
		}{
			{nil, ""},
			{[]string{"-u", "-w", "300ms"}, "?\n"},
		} {
			target := whoAmIAddr(dest)
			args := append([]string{"dial", "-v", "-i", s.A}, append(proto.flags, target)...)
			code, out, errOut := runCLI(t, proto.stdin, args...)
			require.Equal(t, exitOK, code)
			who := parseWho(t, out)
			assert.Equal(t, "A", who.Peer, "bound to %s", s.A)
			assert.Equal(t, localA, who.Source.Addr())
			assert.Contains(t, errOut, fmt.Sprintf("socket bound to %s (SO_BINDTODEVICE read back)", s.A))

			// Flags after the address, as operators often type them.
			args = append([]string{"dial", target, "-i", s.A}, proto.flags...)
			code, out, _ = runCLI(t, proto.stdin, args...)
			require.Equal(t, exitOK, code)
			assert.Equal(t, "A", parseWho(t, out).Peer, "flags after the address")

			args = append([]string{"dial", "-v"}, append(proto.flags, target)...)
			code, out, errOut = runCLI(t, proto.stdin, args...)
			require.Equal(t, exitOK, code)
			who = parseWho(t, out)
			assert.Equal(t, "B", who.Peer, "unbound follows the routing table")
			assert.Equal(t, localB, who.Source.Addr())
			assert.Contains(t, errOut, "socket not bound")
		}
	}
}

// -s sets the source address, not the path: without -i, A's address still
// goes to B; with -i A it goes to A.
func TestDialSource(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	target := whoAmIAddr(s.Dest4)
	code, out, _ := runCLI(t, "", "dial", "-s", s.LocalA4.String(), target)
	require.Equal(t, exitOK, code)
	who := parseWho(t, out)
	assert.Equal(t, netlab.WhoAmI{Peer: "B", Source: netip.AddrPortFrom(s.LocalA4, who.Source.Port())}, who)

	code, out, _ = runCLI(t, "", "dial", "-i", s.A, "-s", s.LocalA4.String(), target)
	require.Equal(t, exitOK, code)
	who = parseWho(t, out)
	assert.Equal(t, netlab.WhoAmI{Peer: "A", Source: netip.AddrPortFrom(s.LocalA4, who.Source.Port())}, who)
}

// Data from stdin reaches the peer, and the command waits for its answer.
func TestDialCopiesBothWays(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	ln, err := s.PeerA.Listen("tcp", net.JoinHostPort(s.PeerA4.String(), "0"))
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		in, _ := io.ReadAll(c)
		time.Sleep(100 * time.Millisecond) // an answer that takes a while
		fmt.Fprintf(c, "got %q", in)
	}()
	code, out, _ := runCLI(t, "hello\nworld\n", "dial", "-i", s.A, ln.Addr().String())
	require.Equal(t, exitOK, code)
	assert.Equal(t, `got "hello\nworld\n"`, out)
}

// assertNoSuchDevice checks the message for an unknown interface: it names
// the interface and the cause, and lists an interface that does exist.
func assertNoSuchDevice(t *testing.T, errOut, missing, existing string) {
	t.Helper()
	assert.Contains(t, errOut, fmt.Sprintf(`interface %q`, missing))
	assert.Contains(t, errOut, syscall.ENODEV.Error())
	assert.Regexp(t, `this network namespace has: .*\b`+existing+`\b`, errOut, "the hint lists the interfaces that exist")
}

func TestDialFailures(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	missing := fmt.Sprintf("nosuch%d", s.N)
	code, out, errOut := runCLI(t, "", "dial", "-i", missing, whoAmIAddr(s.Dest4))
	assert.Equal(t, exitFailure, code)
	assert.Empty(t, out)
	assertNoSuchDevice(t, errOut, missing, s.A)

	// Nothing listens on port 9: TCP is reset, UDP gets ICMP port
	// unreachable, and both say so.
	target := netip.AddrPortFrom(s.Dest4, 9).String()
	code, _, errOut = runCLI(t, "", "dial", "-i", s.A, target)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, syscall.ECONNREFUSED.Error())
	assert.Contains(t, errOut, fmt.Sprintf(`interface %q`, s.A))
	code, _, errOut = runCLI(t, "?\n", "dial", "-u", "-i", s.A, target)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "nothing listens on "+target)

	// A down interface fails the dial; it never falls back to another.
	require.NoError(t, s.Local.SetDown(s.A))
	code, _, errOut = runCLI(t, "", "dial", "-i", s.A, whoAmIAddr(s.Dest4))
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, syscall.ENETUNREACH.Error())
	assert.Contains(t, errOut, "is down")
}

// outputLines collects what a command writes, line by line, so that a test
// can wait for a line while the command runs.
type outputLines struct {
	mu    sync.Mutex
	buf   strings.Builder
	added chan struct{}
}

func newOutputLines() *outputLines { return &outputLines{added: make(chan struct{}, 1)} }

func (o *outputLines) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	select {
	case o.added <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (o *outputLines) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits for output matching re and returns its submatches.
func (o *outputLines) waitFor(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if m := re.FindStringSubmatch(o.String()); m != nil {
			return m
		}
		select {
		case <-o.added:
		case <-deadline:
			t.Fatalf("no output matching %q; got:\n%s", re, o.String())
		}
	}
}

var listeningLine = regexp.MustCompile(`listening on (\S+) \((tcp|udp)\), bound to (\S+) \(SO_BINDTODEVICE read back\)\n`)

// startListen runs listen in-process and returns its output, the port it
// listens on and a channel with its exit code.
func startListen(t *testing.T, args ...string) (*outputLines, uint16, chan int) {
	t.Helper()
	out, errOut := newOutputLines(), newOutputLines()
	done := make(chan int, 1)
	go func() { done <- run(append([]string{"listen"}, args...), strings.NewReader(""), out, errOut) }()
	t.Cleanup(func() { t.Logf("listen %q\nstdout:\n%s\nstderr:\n%s", args, out, errOut) })
	m := out.waitFor(t, listeningLine)
	ap, err := netip.ParseAddrPort(m[1])
	require.NoError(t, err)
	return out, ap.Port(), done
}

func exitCode(t *testing.T, done chan int) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(5 * time.Second):
		t.Fatal("the command did not exit")
		return -1
	}
}

// listen -i A accepts from the peer behind A and refuses the peer behind B,
// which can otherwise reach the same host and port.
func TestListenTCP(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	for _, fam := range []struct{ localA, localB, peerA netip.Addr }{
		{s.LocalA4, s.LocalB4, s.PeerA4},
		{s.LocalA6, s.LocalB6, s.PeerA6},
	} {
		out, port, done := startListen(t, "-i", s.A, "-c", "1", ":0")

		// Control: a plain listener on B's address is reachable from B,
		// so the refusal below is the binding's doing.
		plain, err := net.Listen("tcp", netip.AddrPortFrom(fam.localB, 0).String())
		require.NoError(t, err)
		c, err := s.PeerB.Dial("tcp", plain.Addr().String())
		require.NoError(t, err, "peer B reaches a plain listener")
		c.Close()
		plain.Close()

		_, err = s.PeerB.Dial("tcp", netip.AddrPortFrom(fam.localB, port).String())
		require.ErrorIs(t, err, syscall.ECONNREFUSED, "peer B is refused by a listener bound to %s", s.A)

		c, err = s.PeerA.Dial("tcp", netip.AddrPortFrom(fam.localA, port).String())
		require.NoError(t, err)
		answer, err := io.ReadAll(c)
		require.NoError(t, err)
		peer := c.LocalAddr().(*net.TCPAddr).AddrPort()
		c.Close()
		local := netip.AddrPortFrom(fam.localA, port)
		assert.Equal(t, fmt.Sprintf("bindtodev listen: you are %s, you reached %s on %s\n", peer, local, s.A), string(answer))

		require.Equal(t, exitOK, exitCode(t, done))
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		require.Len(t, lines, 2, "one line for listening, one for peer A, none for peer B")
		assert.Equal(t, fmt.Sprintf("tcp from %s to %s on %s (SO_BINDTODEVICE of the accepted socket)", peer, local, s.A), lines[1])
	}
}

// listen -u -i A receives from the peer behind A and reads the interface
// from each datagram; a datagram from B, sent first, never arrives.
func TestListenUDP(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	for _, tc := range []struct {
		listen         string
		localA, localB netip.Addr
		option         string
	}{
		// A dual-stack socket reports IPv4 datagrams with IPV6_PKTINFO.
		{":0", s.LocalA4, s.LocalB4, "IPV6_PKTINFO"},
		{":0", s.LocalA6, s.LocalB6, "IPV6_PKTINFO"},
		{"0.0.0.0:0", s.LocalA4, s.LocalB4, "IPV6_PKTINFO"}, // Go opens udp "0.0.0.0" dual-stack too
		{s.LocalA4.String() + ":0", s.LocalA4, s.LocalB4, "IP_PKTINFO"},
	} {
		out, port, done := startListen(t, "-u", "-i", s.A, "-c", "1", tc.listen)

		fromB, err := s.PeerB.Dial("udp", netip.AddrPortFrom(tc.localB, port).String())
		require.NoError(t, err)
		_, err = fromB.Write([]byte("from B"))
		require.NoError(t, err)
		fromB.Close()

		c, err := s.PeerA.Dial("udp", netip.AddrPortFrom(tc.localA, port).String())
		require.NoError(t, err)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Write([]byte("from A"))
		require.NoError(t, err)
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		require.NoError(t, err, "the answer comes from the address peer A sent to")
		peer := c.LocalAddr().(*net.UDPAddr).AddrPort()
		c.Close()
		local := netip.AddrPortFrom(tc.localA, port)
		assert.Equal(t, fmt.Sprintf("bindtodev listen: you are %s, you reached %s on %s\n", peer, local, s.A), string(buf[:n]))

		require.Equal(t, exitOK, exitCode(t, done))
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		require.Len(t, lines, 2, "%s: the first datagram to arrive is peer A's", tc.listen)
		assert.Equal(t, fmt.Sprintf("udp from %s to %s on %s (%s of the datagram), 6 bytes", peer, local, s.A, tc.option), lines[1])
	}
}

func TestListenFailures(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	missing := fmt.Sprintf("nosuch%d", s.N)
	for _, proto := range [][]string{nil, {"-u"}} {
		code, out, errOut := runCLI(t, "", append(append([]string{"listen"}, proto...), "-i", missing, ":0")...)
		assert.Equal(t, exitFailure, code)
		assert.Empty(t, out)
		assertNoSuchDevice(t, errOut, missing, s.A)
	}
	// The port is taken on A's address by an unbound socket.
	taken, err := net.Listen("tcp", netip.AddrPortFrom(s.LocalA4, 0).String())
	require.NoError(t, err)
	defer taken.Close()
	code, _, errOut := runCLI(t, "", "listen", "-i", s.A, taken.Addr().String())
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, syscall.EADDRINUSE.Error())
}

// checkRow is one row of check's table.
type checkRow struct {
	iface, how, source, owner, nextHop string
}

func parseCheck(t *testing.T, out string) map[string]checkRow {
	t.Helper()
	rows := map[string]checkRow{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || (f[0] != "bound" && f[0] != "unbound") {
			continue
		}
		n := len(f)
		rows[f[0]] = checkRow{f[1], strings.Join(f[2:n-3], " "), f[n-3], f[n-2], f[n-1]}
	}
	return rows
}

// acceptLog records the connections a peer accepts, by remote address.
func acceptLog(t *testing.T, h *netlab.Host, addr netip.AddrPort) chan netip.AddrPort {
	t.Helper()
	ln, err := h.Listen("tcp", addr.String())
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	got := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			got <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
			c.Close()
		}
	}()
	return got
}

func received(t *testing.T, got chan netip.AddrPort) netip.AddrPort {
	t.Helper()
	select {
	case ap := <-got:
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case <-time.After(5 * time.Second):
		t.Fatal("the peer accepted nothing")
		return netip.AddrPort{}
	}
}

// check -i A shows the bound connection on A and the unbound one on B, the
// interface the routing table prefers, and exits 3; both peers confirm
// which connection reached them. check -i B agrees with the routing table
// and exits 0.
func TestCheck(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	for _, fam := range []struct {
		dest, localA, localB, peerA, peerB netip.Addr
	}{
		{s.Dest4, s.LocalA4, s.LocalB4, s.PeerA4, s.PeerB4},
		{s.Dest6, s.LocalA6, s.LocalB6, s.PeerA6, s.PeerB6},
	} {
		dest := netip.AddrPortFrom(fam.dest, 9)
		atA, atB := acceptLog(t, s.PeerA, dest), acceptLog(t, s.PeerB, dest)

		code, out, _ := runCLI(t, "", "check", "-i", s.A, dest.String())
		require.Equal(t, exitDiffer, code)
		rows := parseCheck(t, out)
		boundSrc, unboundSrc := received(t, atA), received(t, atB)
		// The kernel cannot be asked for a bound IPv6 socket's route
		// (see leg.note); the column may say it does not know, never
		// show B's gateway.
		wantHop := fam.peerA.String()
		if fam.dest.Is6() && rows["bound"].nextHop == "?" {
			wantHop = "?"
			assert.Contains(t, out, "note: bound: the kernel's route lookup (RTM_GETROUTE) for "+fam.dest.String()+" answered with a route through "+s.B)
		}
		assert.Equal(t, checkRow{s.A, "SO_BINDTODEVICE", boundSrc.String(), s.A, wantHop}, rows["bound"])
		assert.Equal(t, checkRow{s.B, routeLookupName, unboundSrc.String(), s.B, fam.peerB.String()}, rows["unbound"])
		assert.Equal(t, fam.localA, boundSrc.Addr())
		assert.Equal(t, fam.localB, unboundSrc.Addr())
		assert.Contains(t, out, fmt.Sprintf("result: DIFFERENT: the routing table sends %s through %s, not %s\n", dest, s.B, s.A))

		code, out, _ = runCLI(t, "", "check", dest.String(), "-i", s.B)
		require.Equal(t, exitOK, code)
		rows = parseCheck(t, out)
		assert.Equal(t, s.B, rows["bound"].iface)
		assert.Equal(t, s.B, rows["unbound"].iface)
		assert.Equal(t, received(t, atB), netip.MustParseAddrPort(rows["bound"].source))
		assert.Equal(t, received(t, atB), netip.MustParseAddrPort(rows["unbound"].source))
		assert.Contains(t, out, "result: SAME")
	}
}

// The library binds a socket with a loopback destination to lo, and check
// says so instead of claiming the interface.
func TestCheckLoopback(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	code, out, _ := runCLI(t, "", "check", "-i", s.A, ln.Addr().String())
	require.Equal(t, 4, code, "LOOPBACK has its own exit status")
	rows := parseCheck(t, out)
	assert.Equal(t, checkRow{"lo", "SO_BINDTODEVICE", rows["bound"].source, "lo", "local"}, rows["bound"])
	assert.Equal(t, checkRow{"lo", routeLookupName, rows["unbound"].source, "lo", "local"}, rows["unbound"])
	assert.Contains(t, out, "note: bound: the destination is a loopback address: the library binds such a socket to lo")
	assert.Contains(t, out, "result: LOOPBACK: 127.0.0.1 is a loopback address: the connection never leaves the host, so "+s.A+" was not used\n")
	assert.NotContains(t, out, "SAME")

	// IPv6 too.
	ln6, err := net.Listen("tcp", "[::1]:0")
	require.NoError(t, err)
	defer ln6.Close()
	go acceptAndClose(ln6)
	code, out, _ = runCLI(t, "", "check", "-i", s.A, ln6.Addr().String())
	assert.Equal(t, 4, code)
	assert.Contains(t, out, "result: LOOPBACK: ::1 is a loopback address")

	// An address of this host is delivered through lo as well, even on a
	// socket bound to the interface that has the address.
	own, err := net.Listen("tcp", netip.AddrPortFrom(s.LocalA4, 0).String())
	require.NoError(t, err)
	defer own.Close()
	go acceptAndClose(own)
	code, out, _ = runCLI(t, "", "check", "-i", s.A, own.Addr().String())
	assert.Equal(t, 4, code)
	rows = parseCheck(t, out)
	assert.Equal(t, s.A, rows["bound"].iface, "the socket is bound to %s", s.A)
	assert.Equal(t, "local", rows["bound"].nextHop)
	assert.Equal(t, "lo", rows["unbound"].iface)
	assert.Contains(t, out, "note: bound: "+s.LocalA4.String()+" is an address of this host: the kernel delivers the connection through lo, although the socket is bound to "+s.A)
	assert.Contains(t, out, "result: LOOPBACK: "+s.LocalA4.String()+" is an address of this host: the connection never leaves the host, so "+s.A+" was not used\n")

	// -i lo is what a loopback destination uses: SAME.
	code, out, _ = runCLI(t, "", "check", "-i", "lo", ln.Addr().String())
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "result: SAME")

	// Nothing listens: FAILED, and it says why IFACE was not involved.
	closed := ln.Addr().String()
	ln.Close()
	code, out, _ = runCLI(t, "", "check", "-i", s.A, closed)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, out, "result: FAILED: "+s.A+" does not reach "+closed+" (127.0.0.1 is a loopback address: the socket was bound to lo, not "+s.A+", and the connection never leaves the host)\n")
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// A listener bound to A does not answer what arrives on B with silence:
// the kernel, finding no socket, refuses a TCP connection with a reset and
// answers a datagram with ICMP (ICMPv6) port unreachable, both sent back
// through B, as listen -h says.
func TestListenOtherInterfaceAnswers(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	_, help, _ := runCLI(t, "", "listen", "-h")
	assert.Contains(t, strings.Join(strings.Fields(help), " "), "a datagram gets an ICMP (or ICMPv6) port unreachable message back")
	for _, fam := range []struct {
		localA, localB, peerB netip.Addr
		icmp                  uint8
	}{
		{s.LocalA4, s.LocalB4, s.PeerB4, unix.IPPROTO_ICMP},
		{s.LocalA6, s.LocalB6, s.PeerB6, unix.IPPROTO_ICMPV6},
	} {
		capB, err := s.Local.Capture(s.B)
		require.NoError(t, err)
		out, port, done := startListen(t, "-u", "-i", s.A, "-c", "1", ":0")

		fromB, err := s.PeerB.Dial("udp", netip.AddrPortFrom(fam.localB, port).String())
		require.NoError(t, err)
		_ = fromB.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = fromB.Write([]byte("from B"))
		require.NoError(t, err)
		// A connected UDP socket reports ICMP port unreachable, and only
		// that ICMP message, as ECONNREFUSED.
		_, err = fromB.Read(make([]byte, 64))
		require.ErrorIs(t, err, syscall.ECONNREFUSED, "peer B's datagram to %s is answered with port unreachable", fam.localB)
		fromB.Close()
		icmpOut := func(p netlab.Packet) bool {
			return p.Outgoing && p.Proto == fam.icmp && p.Src == fam.localB && p.Dst == fam.peerB
		}
		assert.True(t, capB.WaitFor(0, 5*time.Second, icmpOut), "the ICMP answer leaves through %s", s.B)

		// TCP: the same port has no bound TCP listener on B; a bound one
		// on A refuses B with a reset through B.
		tcpOut, tcpPort, tcpDone := startListen(t, "-i", s.A, "-c", "1", ":0")
		_, err = s.PeerB.Dial("tcp", netip.AddrPortFrom(fam.localB, tcpPort).String())
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		rstOut := func(p netlab.Packet) bool {
			return p.Outgoing && p.Proto == unix.IPPROTO_TCP && p.Src == fam.localB && p.SrcPort == tcpPort && p.TCPFlags&netlab.TCPRst != 0
		}
		assert.True(t, capB.WaitFor(0, 5*time.Second, rstOut), "the reset leaves through %s", s.B)
		packets, stats, err := capB.Stop()
		require.NoError(t, err)
		assert.Zero(t, stats.Drops)
		t.Logf("on %s:\n%v", s.B, packets)

		// Neither reached the command, which still serves A.
		c, err := s.PeerA.Dial("udp", netip.AddrPortFrom(fam.localA, port).String())
		require.NoError(t, err)
		_, err = c.Write([]byte("from A"))
		require.NoError(t, err)
		c.Close()
		require.Equal(t, exitOK, exitCode(t, done))
		assert.NotContains(t, out.String(), fam.peerB.String())
		c, err = s.PeerA.Dial("tcp", netip.AddrPortFrom(fam.localA, tcpPort).String())
		require.NoError(t, err)
		_, _ = io.ReadAll(c)
		c.Close()
		require.Equal(t, exitOK, exitCode(t, tcpDone))
		assert.NotContains(t, tcpOut.String(), fam.peerB.String())
	}
}

// A loopback ADDR is bound to lo, and listen says so.
func TestListenLoopback(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	out, port, done := startListen(t, "-i", s.A, "-c", "1", "127.0.0.1:0")
	m := listeningLine.FindStringSubmatch(out.String())
	require.NotNil(t, m)
	assert.Equal(t, "lo", m[3])
	c, err := net.Dial("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String())
	require.NoError(t, err)
	answer, err := io.ReadAll(c)
	require.NoError(t, err)
	c.Close()
	assert.Contains(t, string(answer), " on lo\n")
	require.Equal(t, exitOK, exitCode(t, done))
	assert.Contains(t, out.String(), "on lo (SO_BINDTODEVICE of the accepted socket)")
}

func TestCheckFailures(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	missing := fmt.Sprintf("nosuch%d", s.N)
	code, out, errOut := runCLI(t, "", "check", "-i", missing, whoAmIAddr(s.Dest4))
	assert.Equal(t, exitFailure, code)
	assert.Empty(t, out, "nothing to compare")
	assertNoSuchDevice(t, errOut, missing, s.A)

	// Peer B's address is not behind A: the bound connection fails
	// (exit 1) while the unbound one works and is still shown.
	code, out, errOut = runCLI(t, "", "check", "-w", "500ms", "-i", s.A, whoAmIAddr(s.PeerB4))
	assert.Equal(t, exitFailure, code)
	rows := parseCheck(t, out)
	assert.Equal(t, s.B, rows["unbound"].iface)
	assert.Contains(t, out, "result: FAILED")
	assert.Contains(t, errOut, fmt.Sprintf(`interface %q`, s.A))

	// With peer B unreachable, only the bound connection works: exit 3.
	require.NoError(t, s.PeerB.SetDown("eth0"))
	code, out, _ = runCLI(t, "", "check", "-w", "500ms", "-i", s.A, whoAmIAddr(s.Dest4))
	assert.Equal(t, exitDiffer, code)
	assert.Equal(t, s.A, parseCheck(t, out)["bound"].iface)
	assert.Regexp(t, `unbound\s+failed: .*timeout`, out)
	assert.Contains(t, out, "result: DIFFERENT: only the connection bound to "+s.A)
}

// The installed command behaves like the in-process one: build it and run
// it as a child process, which inherits the lab's network namespace.
func TestBinary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the command with the go command")
	}
	s := newSeed(t)
	// go test puts its own toolchain first on PATH.
	gocmd, err := exec.LookPath("go")
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "bindtodev")
	build := exec.Command(gocmd, "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOPROXY=off")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build:\n%s", out)

	// start runs the binary from a thread inside the lab's own namespace.
	start := func(stdin string, args ...string) (*exec.Cmd, *strings.Builder, *strings.Builder) {
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, s.Local.Do(cmd.Start))
		return cmd, &stdout, &stderr
	}
	runBin := func(stdin string, args ...string) (int, string, string) {
		cmd, stdout, stderr := start(stdin, args...)
		err := cmd.Wait()
		var exit *exec.ExitError
		if err != nil && !assert.ErrorAs(t, err, &exit) {
			return -1, "", ""
		}
		t.Logf("%q -> %d\nstdout:\n%s\nstderr:\n%s", args, cmd.ProcessState.ExitCode(), stdout, stderr)
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}

	code, out2, _ := runBin("", "dial", "-h")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out2, "usage: bindtodev dial")
	code, _, errOut := runBin("", "listen", ":80")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "-i IFACE is required")
	code, _, errOut = runBin("", "dial", "-i", "bad/name", whoAmIAddr(s.Dest4))
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "invalid interface name")
	code, _, errOut = runBin("", "check", "-i", "nosuch", whoAmIAddr(s.Dest4))
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, syscall.ENODEV.Error())

	code, out2, _ = runBin("", "dial", whoAmIAddr(s.Dest4), "-i", s.A)
	assert.Equal(t, exitOK, code)
	who := parseWho(t, out2)
	assert.Equal(t, netlab.WhoAmI{Peer: "A", Source: netip.AddrPortFrom(s.LocalA4, who.Source.Port())}, who)

	code, out2, _ = runBin("", "check", "-i", s.A, whoAmIAddr(s.Dest4))
	assert.Equal(t, exitDiffer, code)
	rows := parseCheck(t, out2)
	assert.Equal(t, s.A, rows["bound"].iface)
	assert.Equal(t, s.B, rows["unbound"].iface)

	// listen as a child: its first line gives the port; peer B is
	// refused, peer A accepted.
	cmd, stdout, _ := startPiped(t, s, bin, "listen", "-i", s.A, "-c", "1", ":0")
	line, err := stdout.ReadString('\n')
	require.NoError(t, err)
	m := listeningLine.FindStringSubmatch(line)
	require.NotNil(t, m, "first line %q", line)
	port := netip.MustParseAddrPort(m[1]).Port()
	_, err = s.PeerB.Dial("tcp", netip.AddrPortFrom(s.LocalB4, port).String())
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	c, err := s.PeerA.Dial("tcp", netip.AddrPortFrom(s.LocalA4, port).String())
	require.NoError(t, err)
	answer, err := io.ReadAll(c)
	c.Close()
	require.NoError(t, err)
	assert.Contains(t, string(answer), "you reached "+netip.AddrPortFrom(s.LocalA4, port).String()+" on "+s.A)
	rest, err := io.ReadAll(stdout)
	require.NoError(t, err)
	assert.Contains(t, string(rest), "tcp from "+s.PeerA4.String())
	require.NoError(t, cmd.Wait())
}

// startPiped starts the binary with its stdout on a pipe, from a thread
// inside the lab's own namespace.
func startPiped(t *testing.T, s *netlab.Seed, bin string, args ...string) (*exec.Cmd, *bufio.Reader, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, s.Local.Do(cmd.Start))
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		t.Logf("%q stderr:\n%s", args, &stderr)
	})
	return cmd, bufio.NewReader(pipe), &stderr
}

// nobody is the unprivileged user the command runs as below.
const nobody = 65534

// runAsNobody runs the built command as uid and gid 65534 with no
// supplementary groups, inside the lab's namespace, and returns its exit
// code and output. The binary is copied where that user can run it.
func runAsNobody(t *testing.T, s *netlab.Seed, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, s.Local.Do(cmd.Start))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("%q as uid %d: %v", args, nobody, err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		err := <-done
		t.Fatalf("%q as uid %d did not exit (%v)\nstdout:\n%s\nstderr:\n%s", args, nobody, err, &stdout, &stderr)
	}
	t.Logf("%q as uid %d -> %d\nstdout:\n%s\nstderr:\n%s", args, nobody, cmd.ProcessState.ExitCode(), &stdout, &stderr)
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// nobodyBinary builds the command and copies it into a directory that uid
// 65534 can enter (t.TempDir's are the test user's alone).
func nobodyBinary(t *testing.T) string {
	t.Helper()
	built := progtest.Build(t)
	dir, err := os.MkdirTemp("", "bindtodev-nobody-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	b, err := os.ReadFile(built)
	require.NoError(t, err)
	bin := filepath.Join(dir, "bindtodev")
	require.NoError(t, os.WriteFile(bin, b, 0o755))
	return bin
}

// Run as an ordinary user, listen on a privileged port fails because of
// the port, and the hint says so, with the threshold the kernel of this
// network namespace uses; CAP_NET_RAW, which binding to the interface does
// not need since Linux 5.7, is not blamed. A port above the threshold
// works for the same user. The test changes the lab namespace's
// net.ipv4.ip_unprivileged_port_start, so it does not run in parallel.
func TestListenUnprivileged(t *testing.T) {
	s := newSeed(t)
	bin := nobodyBinary(t)
	for _, proto := range [][]string{nil, {"-u"}} {
		for _, addr := range []string{":80", s.LocalA4.String() + ":80", "[" + s.LocalA6.String() + "]:80"} {
			args := append(append([]string{"listen", "-c", "1"}, proto...), "-i", s.A, addr)
			code, out, errOut := runAsNobody(t, s, bin, args...)
			assert.Equal(t, exitFailure, code, "%q", args)
			assert.Empty(t, out)
			assert.Contains(t, errOut, fmt.Sprintf("bindtodev listen: interface %q: listen ", s.A))
			assert.Contains(t, errOut, "bind: permission denied\n")
			assert.Contains(t, errOut, "bindtodev listen: port 80 is a privileged port: listening on it needs CAP_NET_BIND_SERVICE (run as root, or grant the capability), or a port from 1024 up (net.ipv4.ip_unprivileged_port_start is 1024 in this network namespace; it applies to IPv6 too)\n", "%q", args)
			assert.NotContains(t, errOut, "CAP_NET_RAW", "%q", args)
		}
	}

	// The threshold is read from the kernel, not assumed.
	const sysctl = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
	var before []byte
	require.NoError(t, s.Local.Do(func() (err error) { before, err = os.ReadFile(sysctl); return err }))
	require.Equal(t, "1024", strings.TrimSpace(string(before)), "a fresh namespace starts at Linux's default")
	require.NoError(t, s.Local.Do(func() error { return os.WriteFile(sysctl, []byte("3000"), 0) }))
	t.Cleanup(func() {
		assert.NoError(t, s.Local.Do(func() error { return os.WriteFile(sysctl, before, 0) }))
	})
	code, _, errOut := runAsNobody(t, s, bin, "listen", "-i", s.A, ":2000")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "port 2000 is a privileged port: listening on it needs CAP_NET_BIND_SERVICE (run as root, or grant the capability), or a port from 3000 up (net.ipv4.ip_unprivileged_port_start is 3000 in this network namespace")
	require.NoError(t, s.Local.Do(func() error { return os.WriteFile(sysctl, before, 0) }))

	// The same user can bind the interface and listen on an ordinary
	// port: the failure above was the port's.
	cmd := exec.Command(bin, "listen", "-c", "1", "-i", s.A, netip.AddrPortFrom(s.LocalA4, 0).String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, s.Local.Do(cmd.Start))
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(pipe).ReadString('\n')
	require.NoError(t, err, "stderr: %s", &stderr)
	m := listeningLine.FindStringSubmatch(line)
	require.NotNil(t, m, "first line %q", line)
	assert.Equal(t, s.A, m[3])
	c, err := s.PeerA.Dial("tcp", m[1])
	require.NoError(t, err)
	_, _ = io.ReadAll(c)
	c.Close()
	require.NoError(t, cmd.Wait())
}

// A real failure of SO_BINDTODEVICE for lack of CAP_NET_RAW (a re-bind,
// which still needs it) gets the CAP_NET_RAW hint, and the privileged-port
// hint only for a port.
func TestBindPermissionHint(t *testing.T) {
	t.Parallel()
	s := newSeed(t)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		data[unix.CAP_NET_RAW/32].Effective &^= 1 << (unix.CAP_NET_RAW % 32)
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		pc, err := net.ListenPacket("udp", netip.AddrPortFrom(s.LocalA4, 0).String())
		if err != nil {
			done <- err
			return
		}
		defer pc.Close()
		if err := bindtodev.Bind(pc.(*net.UDPConn), s.A); err != nil {
			done <- fmt.Errorf("first bind: %w", err)
			return
		}
		done <- bindtodev.Bind(pc.(*net.UDPConn), s.B)
	}()
	err := <-done
	require.ErrorIs(t, err, os.ErrPermission)
	var e *bindtodev.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, "bind", e.Op)
	var errOut strings.Builder
	assert.Equal(t, exitFailure, failure(&errOut, "listen", s.B, err))
	t.Log(errOut.String())
	assert.Contains(t, errOut.String(), fmt.Sprintf("bindtodev listen: binding to %q (SO_BINDTODEVICE) needs CAP_NET_RAW before Linux 5.7", s.B))
	assert.NotContains(t, errOut.String(), "CAP_NET_BIND_SERVICE")
}

// --version and version print what the go command recorded in the binary,
// as "go version -m" reads it: the main module's version, the VCS revision
// and whether the tree was modified, and the Go release.
func TestVersion(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the command with the go command")
	}
	gocmd, err := exec.LookPath("go")
	require.NoError(t, err)
	// recorded reads the build information back with the go command.
	recorded := func(bin string) (goVersion, modVersion string, settings map[string]string) {
		out, err := exec.Command(gocmd, "version", "-m", bin).CombinedOutput()
		require.NoError(t, err, "go version -m:\n%s", out)
		settings = map[string]string{}
		for i, line := range strings.Split(string(out), "\n") {
			f := strings.Split(strings.TrimSpace(line), "\t")
			switch {
			case i == 0:
				goVersion = strings.TrimSpace(line[strings.LastIndex(line, " ")+1:])
			case f[0] == "mod" && len(f) >= 3:
				modVersion = f[2]
			case f[0] == "build" && len(f) == 2:
				k, v, _ := strings.Cut(f[1], "=")
				settings[k] = v
			}
		}
		return goVersion, modVersion, settings
	}
	check := func(bin string) string {
		goVersion, modVersion, settings := recorded(bin)
		var out string
		for _, flag := range []string{"--version", "version", "-version"} {
			r := progtest.Run(t, bin, 30*time.Second, flag)
			require.Equal(t, exitOK, r.Code, flag)
			if out != "" {
				assert.Equal(t, out, r.Stdout, "%s prints what the others print", flag)
			}
			out = r.Stdout
		}
		assert.Contains(t, out, "bindtodev "+modVersion+"\n")
		assert.Contains(t, out, "module:   github.com/bindtodev/bindtodev\n")
		assert.Contains(t, out, "go:       "+goVersion+" "+settings["GOOS"]+"/"+settings["GOARCH"]+"\n")
		if rev := settings["vcs.revision"]; rev != "" {
			state := map[string]string{"true": ", with uncommitted changes", "false": ", unmodified"}[settings["vcs.modified"]]
			assert.Contains(t, out, "revision: "+rev+" ("+settings["vcs.time"]+")"+state+"\n")
		} else {
			assert.Contains(t, out, "revision: unknown (built without VCS information)\n")
		}
		return out
	}
	t.Logf("as built here:\n%s", check(progtest.Build(t)))

	// A copy of the module in a repository of its own makes the go
	// command record a known revision, then a modified tree, then none.
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed: the VCS fields cannot be produced")
	}
	root := copyModule(t)
	runIn := func(dir string, env []string, name string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s %q:\n%s", name, args, out)
	}
	gitEnv := []string{"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid"}
	runIn(root, gitEnv, git, "init", "-q")
	runIn(root, gitEnv, git, "add", "-A")
	runIn(root, gitEnv, git, "commit", "-q", "-m", "copy")
	head, err := exec.Command(git, "-C", root, "rev-parse", "HEAD").Output()
	require.NoError(t, err)
	rev := strings.TrimSpace(string(head))
	build := func(buildvcs string) string {
		bin := filepath.Join(t.TempDir(), "bindtodev")
		runIn(filepath.Join(root, "cmd", "bindtodev"), append(gitEnv, "GOFLAGS=-mod=readonly -buildvcs="+buildvcs, "GOPROXY=off"), gocmd, "build", "-o", bin, ".")
		return bin
	}
	out := check(build("true"))
	assert.Regexp(t, `^bindtodev v0\.0\.0-\d{14}-`+rev[:12]+"\n", out)
	assert.Contains(t, out, "revision: "+rev+" (")
	assert.Contains(t, out, ", unmodified\n")

	require.NoError(t, os.WriteFile(filepath.Join(root, "untracked.txt"), []byte("x"), 0o644))
	out = check(build("true"))
	assert.Regexp(t, `^bindtodev v0\.0\.0-\d{14}-`+rev[:12]+`\+dirty`+"\n", out)
	assert.Contains(t, out, ", with uncommitted changes\n")

	out = check(build("false"))
	assert.Equal(t, "bindtodev (devel)\n", out[:strings.Index(out, "\n")+1])
	assert.Contains(t, out, "revision: unknown (built without VCS information)\n")
}

// copyModule copies the module that holds the working directory, without
// its VCS metadata and nested modules, into a temporary directory.
func copyModule(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	require.NoError(t, err)
	src := filepath.Dir(filepath.Dir(wd)) // cmd/bindtodev -> the module
	_, err = os.Stat(filepath.Join(src, "go.mod"))
	require.NoError(t, err)
	dst := t.TempDir()
	err = filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel != "." {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil || d.Name() == ".git" {
					return filepath.SkipDir
				}
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() || d.Name() == ".git" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	require.NoError(t, err)
	return dst
}
