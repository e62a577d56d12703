//go:build !bindtodev_stub

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev/internal/netlab"
)

// newSeed builds the seed lab; see netlab.Seed.
func newSeed(t *testing.T) *netlab.Seed {
	t.Helper()
	return netlab.NewSeedT(t)
}

func whoAmIAddr(a netip.Addr) string {
	return netip.AddrPortFrom(a, netlab.WhoAmIPort).String()
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
	require.Equal(t, exitOK, code)
	rows := parseCheck(t, out)
	assert.Equal(t, checkRow{"lo", "SO_BINDTODEVICE", rows["bound"].source, "lo", "on-link"}, rows["bound"])
	assert.Equal(t, "lo", rows["unbound"].iface)
	assert.Contains(t, out, "note: bound: the destination is a loopback address: the library binds such a socket to lo")
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
