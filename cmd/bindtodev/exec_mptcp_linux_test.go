package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/internal/netlab"
)

// Go's default listener asks for Multipath TCP, whose subflows the cgroup
// program cannot bind. Under exec the MPTCP socket is refused, Go falls
// back to TCP, and the bound listener refuses a connection that arrives on
// B (no SYN-ACK leaves through B) while it serves one through A.
func TestExecMPTCPServer(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	cmd := bindtodevCmd(t, "exec", "-i", s.A, "--", testBinary(t), roleArg, "mptcpserve")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(unix.SIGTERM); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	var port, proto int
	if _, serr := fmt.Sscan(line, &port, &proto); err != nil || serr != nil || port == 0 {
		t.Fatalf("server did not start: %q, %v", line, err)
	}
	t.Logf("the wrapped server's listening socket has protocol %d (%d is MPTCP)", proto, unix.IPPROTO_MPTCP)

	for _, fam := range []struct {
		name         string
		localA, locB netip.Addr
	}{{"4", s.LocalA4, s.LocalB4}, {"6", s.LocalA6, s.LocalB6}} {
		t.Run(fam.name, func(t *testing.T) {
			capB, err := s.Local.Capture(s.B)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _, _, _ = capB.Stop() }()
			viaB := netip.AddrPortFrom(fam.locB, uint16(port)).String()
			if c, err := s.PeerB.Dial("tcp", viaB); err == nil {
				got, _ := io.ReadAll(c)
				c.Close()
				t.Errorf("a connection to %s arriving on %s was accepted (read %q)", viaB, s.B, got)
			}
			fromServer := func(p netlab.Packet) bool { return p.Outgoing && p.SrcPort == uint16(port) }
			// The refusal, a RST through B, shows the capture live.
			if !capB.WaitFor(0, 5*time.Second, func(p netlab.Packet) bool { return fromServer(p) && p.TCPFlags&netlab.TCPRst != 0 }) {
				t.Errorf("no RST from the server on %s: the connection was not refused", s.B)
			}
			capB.Flush()
			for _, p := range capB.Packets() {
				if fromServer(p) && p.TCPFlags&(netlab.TCPSyn|netlab.TCPAck) == netlab.TCPSyn|netlab.TCPAck {
					t.Errorf("the wrapped server answered on %s: %v", s.B, p)
				}
			}

			viaA := netip.AddrPortFrom(fam.localA, uint16(port)).String()
			c, err := s.PeerA.Dial("tcp", viaA)
			if err != nil {
				t.Fatalf("through %s: %v", s.A, err)
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if got, err := bufio.NewReader(c).ReadString('\n'); got != "served\n" {
				t.Errorf("through %s: read %q, %v; want served", s.A, got, err)
			}
		})
	}
}

// A program that asks for IPPROTO_MPTCP itself (here Python) gets EPERM
// instead of sockets whose subflows would leave through B unbound, and its
// plain TCP sockets reach A: not one of its packets is seen on B.
func TestExecMPTCPClient(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	py := needTool(t, "python3")
	// SO_LINGER 0 closes with a RST: no TIME_WAIT, whose IPv6 ACKs may
	// follow the routing table (a kernel leak of its own, see the README).
	script := fmt.Sprintf(`import socket, struct
for fam, dst in ((socket.AF_INET, %q), (socket.AF_INET6, %q)):
    for proto in (262, 0):
        try:
            s = socket.socket(fam, socket.SOCK_STREAM, proto)
        except OSError as e:
            print(proto, "refused", e.errno)
            continue
        s.settimeout(5)
        s.connect((dst, %d))
        print(proto, "reached", s.recv(100).decode().split()[0])
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
`, s.Dest4, s.Dest6, netlab.WhoAmIPort)
	capB, err := s.Local.Capture(s.B)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _, _ = capB.Stop() }()
	r := runCmd(t, bindtodevCmd(t, "exec", "-i", s.A, "--", py, "-c", script), "")
	want := fmt.Sprintf("262 refused %d\n0 reached A\n", unix.EPERM)
	if r.code != 0 || r.stdout != want+want {
		t.Errorf("python3: exit %d, stdout %q, stderr %q; want %q twice", r.code, r.stdout, r.stderr, want)
	}

	// A sentinel datagram, unbound, leaves through B: once the capture has
	// it, it has everything sent before.
	const sentinelPort = 9
	err = s.Local.Do(func() error {
		c, err := net.Dial("udp", netip.AddrPortFrom(s.Dest4, sentinelPort).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("sentinel"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !capB.WaitFor(0, 5*time.Second, func(p netlab.Packet) bool { return p.Outgoing && p.DstPort == sentinelPort }) {
		t.Fatalf("the sentinel never showed on %s: the capture is not live", s.B)
	}
	capB.Flush()
	var leaked []string
	for _, p := range capB.Packets() {
		if p.Outgoing && (p.Dst == s.Dest4 || p.Dst == s.Dest6) && p.DstPort != sentinelPort {
			leaked = append(leaked, p.String())
		}
	}
	if len(leaked) != 0 {
		t.Errorf("%d packets of the wrapped MPTCP client on %s, want 0; first: %s", len(leaked), s.B, leaked[0])
	}
}
