package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bindtodev/bindtodev"
)

const listenHead = `usage: bindtodev listen -i IFACE [-u] [-c COUNT] [ADDR]:PORT

Listens on [ADDR]:PORT with a socket bound to IFACE (SO_BINDTODEVICE), so it
accepts connections (or, with -u, receives datagrams) only when they arrive
on IFACE, even on the wildcard address. For what arrives on another
interface the kernel finds no socket, and answers as if nothing listened
on PORT: a connection is refused with a TCP reset, and a datagram gets an
ICMP (or ICMPv6) port unreachable message back, which the sender's
connected UDP socket reports as "connection refused". Neither is dropped
silently; a firewall rule can do that.

It prints one line when it listens, then one line for each connection or
datagram: the peer, the local address it reached and the interface it
arrived on, and where that interface was read from:
  TCP  SO_BINDTODEVICE read back from the accepted socket;
  UDP  IP_PKTINFO or IPV6_PKTINFO, which the kernel attaches to each
       datagram.
Each peer gets a one-line answer saying what was seen, then the connection
is closed, so "bindtodev dial" (or netcat) on the other side shows it too.

Without ADDR it listens on every address (IPv4 and IPv6). PORT 0 picks a
free port, shown on the first line. A loopback ADDR is bound to lo instead
of IFACE, as loopback traffic never leaves the host: only this host can
reach it. Flags may come before or after [ADDR]:PORT; "--" ends them.
`

func runListen(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("listen")
	ifname := fs.String("i", "", "accept or receive only on interface `IFACE` (required)")
	udp := fs.Bool("u", false, "receive UDP datagrams instead of accepting TCP connections")
	count := fs.Int("c", 0, "exit after `COUNT` connections or datagrams (0: run until interrupted)")
	pos, code, ok := parseArgs(fs, args, listenHead, stdout, stderr)
	if !ok {
		return code
	}
	if !flagGiven(fs, "i") {
		return usageError(fs, stderr, "-i IFACE is required: listening on every interface is what plain tools do")
	}
	if code, ok := checkIface(fs, stderr, *ifname); !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "want one [ADDR]:PORT argument, got %d", len(pos))
	}
	addr, err := listenAddr(pos[0])
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if *count < 0 {
		return usageError(fs, stderr, "-c: negative count %d", *count)
	}
	l := &listener{ifname: *ifname, count: *count, out: &lockedWriter{w: stdout}}
	lc := bindtodev.ListenConfig{Interface: *ifname}
	if *udp {
		err = l.serveUDP(&lc, addr)
	} else {
		err = l.serveTCP(&lc, addr)
	}
	if err != nil {
		return failure(stderr, "listen", *ifname, err)
	}
	return exitOK
}

// listenAddr checks [ADDR]:PORT, and takes a bare port for ":PORT".
func listenAddr(arg string) (string, error) {
	if _, err := strconv.ParseUint(arg, 10, 16); err == nil {
		return ":" + arg, nil
	}
	host, port, err := net.SplitHostPort(arg)
	if err != nil {
		return "", fmt.Errorf("%q is not [ADDR]:PORT (such as :8080, 198.51.100.7:8080 or [2001:db8::7]:8080): %w", arg, err)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return "", fmt.Errorf("%q: ADDR must be an IP address of this host, not %q", arg, host)
		}
	}
	if err := checkPort(port); err != nil {
		return "", fmt.Errorf("%q: %w", arg, err)
	}
	return arg, nil
}

type listener struct {
	ifname string
	count  int
	out    *lockedWriter
}

// lockedWriter keeps lines written from several goroutines whole.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) printf(format string, a ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.w, format, a...)
}

// listening prints the first line, with the binding read back from the
// kernel rather than assumed.
func (l *listener) listening(network string, c any, local net.Addr) error {
	dev, err := deviceOf(c)
	if err != nil {
		return fmt.Errorf("read back the listening socket's binding: %w", err)
	}
	if dev == "" {
		// The library binds every listener, to lo for a loopback
		// address: an empty binding would accept from any interface.
		return fmt.Errorf("the listening socket on %s reads back as not bound to any interface; refusing to serve", local)
	}
	l.out.printf("listening on %s (%s), bound to %s (SO_BINDTODEVICE read back)\n", local, network, dev)
	return nil
}

func (l *listener) serveTCP(lc *bindtodev.ListenConfig, addr string) error {
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := l.listening("tcp", ln, ln.Addr()); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 0; l.count == 0 || n < l.count; n++ {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		peer, local := addrPortOf(c.RemoteAddr()), addrPortOf(c.LocalAddr())
		on := "?"
		if dev, err := deviceOf(c); err != nil {
			on = fmt.Sprintf("? (cannot read the accepted socket's binding: %v)", err)
		} else if dev != "" {
			on = dev + " (SO_BINDTODEVICE of the accepted socket)"
		} else {
			on = "NOT-BOUND (the accepted socket's binding is empty)"
		}
		l.out.printf("tcp from %s to %s on %s\n", peer, local, on)
		wg.Add(1)
		go func() {
			defer wg.Done()
			answer(c, fmt.Sprintf("bindtodev listen: you are %s, you reached %s on %s\n", peer, local, firstWord(on)))
		}()
	}
	return nil
}

// answer sends the peer its line, then waits briefly for the peer to close
// first: closing with unread data would reset the connection, and the
// reset could overtake the answer.
func answer(c net.Conn, line string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, line); err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, c)
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

func (l *listener) serveUDP(lc *bindtodev.ListenConfig, addr string) error {
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return err
	}
	defer pc.Close()
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("unexpected packet socket %T", pc)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	ipv6, err := enablePktinfo(rc)
	if err != nil {
		return fmt.Errorf("ask for the arrival interface of datagrams: %w", err)
	}
	if err := l.listening("udp", uc, uc.LocalAddr()); err != nil {
		return err
	}
	boundDev, err := deviceOf(uc)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, 256)
	for n := 0; l.count == 0 || n < l.count; n++ {
		size, oobn, _, from, err := uc.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			return err
		}
		peer := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		local := addrPortOf(uc.LocalAddr())
		on := boundDev + " (the socket's binding: the datagram carried no packet information)"
		info, ok := parsePktinfo(oob[:oobn])
		if ok {
			local = netip.AddrPortFrom(info.dst, local.Port())
			on = fmt.Sprintf("%s (%s of the datagram)", interfaceName(info.ifindex), info.option)
		}
		l.out.printf("udp from %s to %s on %s, %d bytes\n", peer, local, on, size)
		reply := fmt.Sprintf("bindtodev listen: you are %s, you reached %s on %s\n", peer, local, firstWord(on))
		if _, _, err := uc.WriteMsgUDPAddrPort([]byte(reply), replySource(ipv6, info.dst), from); err != nil {
			l.out.printf("answer to %s failed: %v\n", peer, err)
		}
	}
	return nil
}

// interfaceName names the interface with the given index, or gives the
// index when it has no name any more.
func interfaceName(index int) string {
	ifc, err := net.InterfaceByIndex(index)
	if err != nil {
		return fmt.Sprintf("ifindex=%d", index)
	}
	return ifc.Name
}
