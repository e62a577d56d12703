package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bindtodev/bindtodev"
)

const dialHead = `usage: bindtodev dial [-i IFACE] [-s SOURCE] [-u] [-v] [-w TIMEOUT] HOST:PORT

Connects to HOST:PORT and copies standard input to the connection and the
connection to standard output, like netcat.

With -i, the socket is bound to IFACE (SO_BINDTODEVICE) before it connects:
its packets leave only through IFACE, whatever the routing table prefers,
and the dial fails rather than go anywhere else. WITHOUT -i THE SOCKET IS
NOT BOUND: it follows the routing table like any program, which is what you
compare against (see also "bindtodev check").

TCP by default: when standard input ends, the sending half is closed and
the command keeps printing what arrives until the peer closes, or until
TIMEOUT passes without data. With -u, each line of standard input (or each
64 KiB of a longer line) is sent as one UDP datagram, each datagram
received is written to standard output, and the command ends when nothing
has arrived for TIMEOUT after standard input ended.

A HOST name is resolved by the system's resolver, whose queries follow the
routing table, not IFACE: give an IP address to keep lookups out of the
test. With -i, a socket whose destination is a loopback address is bound
to lo instead of IFACE: loopback traffic never leaves the host.

Flags may come before or after HOST:PORT; "--" ends them.
`

// maxDatagram is the largest UDP payload over IPv4.
const maxDatagram = 65507

func runDial(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("dial")
	ifname := fs.String("i", "", "bind the socket to interface `IFACE` (default: not bound, the routing table decides)")
	source := fs.String("s", "", "send from source `ADDRESS`, an IP address of this host (it sets the address, not the path)")
	udp := fs.Bool("u", false, "use UDP instead of TCP")
	verbose := fs.Bool("v", false, "report the connection's interface, source and destination on standard error")
	wait := fs.Duration("w", 5*time.Second, "give up connecting after `TIMEOUT`, and stop waiting TIMEOUT after standard input ends and nothing arrives (0: no limit)")
	pos, code, ok := parseArgs(fs, args, dialHead, stdout, stderr)
	if !ok {
		return code
	}
	target, code, ok := oneHostPort(fs, stderr, pos)
	if !ok {
		return code
	}
	bound := flagGiven(fs, "i")
	if bound {
		if code, ok := checkIface(fs, stderr, *ifname); !ok {
			return code
		}
	}
	var src netip.Addr
	if *source != "" {
		var err error
		if src, err = netip.ParseAddr(*source); err != nil {
			return usageError(fs, stderr, "-s: %q is not an IP address", *source)
		}
	}
	if *wait < 0 {
		return usageError(fs, stderr, "-w: negative timeout %v", *wait)
	}

	network := "tcp"
	if *udp {
		network = "udp"
	}
	var conn net.Conn
	var err error
	if bound {
		d := bindtodev.Dialer{Interface: *ifname, Source: src}
		d.Timeout = *wait
		conn, err = d.Dial(network, target)
	} else {
		d := net.Dialer{Timeout: *wait}
		if src.IsValid() {
			if *udp {
				d.LocalAddr = &net.UDPAddr{IP: src.AsSlice(), Zone: src.Zone()}
			} else {
				d.LocalAddr = &net.TCPAddr{IP: src.AsSlice(), Zone: src.Zone()}
			}
		}
		conn, err = d.Dial(network, target)
	}
	if err != nil {
		return failure(stderr, "dial", *ifname, err)
	}
	defer conn.Close()
	if *verbose {
		fmt.Fprintf(stderr, "bindtodev dial: %s\n", describeConn(network, conn))
	}

	s := &session{conn: conn, wait: *wait}
	var copyErr error
	if *udp {
		copyErr = s.runUDP(stdin, stdout)
	} else {
		copyErr = s.runTCP(stdin, stdout)
	}
	if copyErr != nil {
		return failure(stderr, "dial", *ifname, copyErr)
	}
	return exitOK
}

// describeConn says where a connection goes and what it is bound to, read
// back from the kernel.
func describeConn(network string, c net.Conn) string {
	binding := "socket not bound (SO_BINDTODEVICE is empty): the routing table decides the interface"
	if dev, err := deviceOf(c); err != nil {
		binding = fmt.Sprintf("cannot read the socket's binding: %v", err)
	} else if dev != "" {
		binding = fmt.Sprintf("socket bound to %s (SO_BINDTODEVICE read back)", dev)
	}
	return fmt.Sprintf("%s from %s to %s, %s", network, addrPortOf(c.LocalAddr()), addrPortOf(c.RemoteAddr()), binding)
}

// session copies between the standard streams and one connection.
type session struct {
	conn net.Conn
	wait time.Duration
	// inputDone is set once standard input has ended; from then on
	// silence for wait ends the session.
	inputDone atomic.Bool
}

// endInput marks standard input as ended and arms the final wait, which
// also cuts short a read that is already waiting.
func (s *session) endInput() {
	s.inputDone.Store(true)
	s.armWait()
}

func (s *session) armWait() {
	if s.wait > 0 && s.inputDone.Load() {
		_ = s.conn.SetReadDeadline(time.Now().Add(s.wait))
	}
}

// receive copies the connection to stdout until the peer closes it (nil),
// the final wait passes (nil), or an error.
func (s *session) receive(stdout io.Writer, buf []byte) error {
	for {
		n, err := s.conn.Read(buf)
		if n > 0 {
			if _, werr := stdout.Write(buf[:n]); werr != nil {
				return fmt.Errorf("write standard output: %w", werr)
			}
			s.armWait()
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded) && s.inputDone.Load():
			return nil
		default:
			return s.refused(err)
		}
	}
}

// refused explains a refused connection or datagram.
func (s *session) refused(err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (the peer answered that nothing listens on %s)", err, s.conn.RemoteAddr())
	}
	return err
}

// runTCP ends when the peer closes the connection, even if standard input
// is still open; a goroutine blocked reading standard input is left behind,
// which is harmless since the process exits.
func (s *session) runTCP(stdin io.Reader, stdout io.Writer) error {
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(s.conn, stdin)
		if err == nil {
			// Half-close, so the peer sees the end of the input and
			// can answer and close in turn.
			if tc, ok := s.conn.(*net.TCPConn); ok {
				err = tc.CloseWrite()
			}
		}
		s.endInput()
		sent <- err
	}()
	err := s.receive(stdout, make([]byte, 32<<10))
	if err != nil {
		return err
	}
	select {
	case err := <-sent:
		return err
	default:
		return nil
	}
}

// runUDP sends each line of stdin as one datagram and writes every
// datagram received to stdout. A refused datagram (ICMP port unreachable)
// ends it at once, even while standard input is still open.
func (s *session) runUDP(stdin io.Reader, stdout io.Writer) error {
	received := make(chan error, 1)
	go func() { received <- s.receive(stdout, make([]byte, 64<<10)) }()
	sent := make(chan error, 1)
	go func() { sent <- s.sendLines(stdin) }()
	select {
	case err := <-received:
		return err
	case err := <-sent:
		if err != nil {
			return err
		}
		return <-received
	}
}

func (s *session) sendLines(stdin io.Reader) error {
	in := bufio.NewReaderSize(stdin, maxDatagram)
	for {
		line, err := in.ReadSlice('\n')
		if len(line) > 0 {
			if _, werr := s.conn.Write(line); werr != nil {
				return s.refused(werr)
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			s.endInput()
			return nil
		default:
			return fmt.Errorf("read standard input: %w", err)
		}
	}
}
