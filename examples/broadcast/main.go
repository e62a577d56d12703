// Command broadcast sends and receives UDP broadcasts to 255.255.255.255
// on one chosen network interface: the DHCP-style case that binding an
// address cannot solve, since a limited broadcast has no route to pick an
// interface by and a socket on 0.0.0.0 hears every interface.
//
// Usage:
//
//	broadcast -i IFACE [-port N] [-wait D] send MESSAGE
//	broadcast -i IFACE [-port N] [-n COUNT] listen
//
// send broadcasts MESSAGE out of IFACE and prints every reply that comes
// back through IFACE within -wait. listen prints every broadcast that
// arrives on IFACE and answers its sender. Exit status: 0 on success, 1 on
// a runtime failure (including send getting no reply), 2 for a usage
// error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/bindtodev/bindtodev"
)

const usage = `usage: broadcast -i IFACE [-port N] [-wait D] send MESSAGE
       broadcast -i IFACE [-port N] [-n COUNT] listen

Sends or receives UDP broadcasts to 255.255.255.255 on the network interface
IFACE only, through a socket bound to it (Linux SO_BINDTODEVICE).

  send MESSAGE  broadcasts MESSAGE to port N out of IFACE, and prints each
                reply that comes back through IFACE within -wait; it fails
                when none does.
  listen        receives broadcasts (and unicasts) to port N that arrive on
                IFACE, prints each, and answers its sender with
                "heard MESSAGE on IFACE". Broadcasts that arrive on other
                interfaces never reach it, and listeners bound to different
                interfaces can share the port, as a DHCP server needs.

Exit status: 0 on success, 1 on a runtime failure (including send getting
no reply), 2 for a usage error.

Flags:
`

// limited is the IPv4 limited broadcast address: never routed, sent on
// whichever link the socket's interface is.
var limited = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broadcast", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	ifname := fs.String("i", "", "network interface to send and receive on (required)")
	port := fs.Int("port", 6767, "UDP port to broadcast to or listen on")
	wait := fs.Duration("wait", 2*time.Second, "send: how long to collect replies")
	count := fs.Int("n", 0, "listen: stop after COUNT datagrams (0: run until SIGINT or SIGTERM)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cmd, err := checkArgs(*ifname, *port, *wait, *count, fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "broadcast: %v\nRun 'broadcast -h' for usage.\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd == "send" {
		err = send(ctx, *ifname, *port, fs.Arg(1), *wait, stdout)
	} else {
		err = listen(ctx, *ifname, *port, *count, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "broadcast: %v\n", err)
		return 1
	}
	return 0
}

func checkArgs(ifname string, port int, wait time.Duration, count int, rest []string) (string, error) {
	if ifname == "" {
		return "", errors.New("-i IFACE is required")
	}
	if err := bindtodev.ValidateName(ifname); err != nil {
		return "", fmt.Errorf("-i: %w", err)
	}
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("-port %d: want 1 to 65535", port)
	}
	if wait <= 0 {
		return "", fmt.Errorf("-wait %v: want a positive duration", wait)
	}
	if count < 0 {
		return "", fmt.Errorf("-n %d: want 0 or more", count)
	}
	if len(rest) == 0 {
		return "", errors.New("want a command: send or listen")
	}
	switch rest[0] {
	case "send":
		if len(rest) != 2 {
			return "", errors.New("send wants exactly one MESSAGE")
		}
	case "listen":
		if len(rest) != 1 {
			return "", fmt.Errorf("listen takes no arguments, got %q", rest[1:])
		}
	default:
		return "", fmt.Errorf("unknown command %q: want send or listen", rest[0])
	}
	return rest[0], nil
}

// open returns a UDP socket bound to ifname on port (0: any). Go turns
// SO_BROADCAST on for every UDP socket, so it may send to 255.255.255.255.
func open(ctx context.Context, ifname string, port int) (net.PacketConn, error) {
	lc := &bindtodev.ListenConfig{Interface: ifname}
	pc, err := lc.ListenPacket(ctx, "udp4", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	// Closing the socket ends a read that waits when ctx is done.
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	return &stoppable{PacketConn: pc, stop: stop}, nil
}

type stoppable struct {
	net.PacketConn
	stop func() bool
}

func (s *stoppable) Close() error {
	s.stop()
	return s.PacketConn.Close()
}

func send(ctx context.Context, ifname string, port int, message string, wait time.Duration, stdout io.Writer) error {
	pc, err := open(ctx, ifname, 0)
	if err != nil {
		return err
	}
	defer pc.Close()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(limited, uint16(port)))
	if _, err := pc.WriteTo([]byte(message), to); err != nil {
		return fmt.Errorf("broadcast through %q: %w", ifname, err)
	}
	fmt.Fprintf(stdout, "sent %q to %s through %s\n", message, to, ifname)
	if err := pc.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	replies := 0
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return fmt.Errorf("read replies on %q: %w", ifname, err)
		}
		replies++
		fmt.Fprintf(stdout, "reply from %s: %s\n", from, buf[:n])
	}
	if replies == 0 {
		return fmt.Errorf("no reply through %q within %v", ifname, wait)
	}
	return nil
}

func listen(ctx context.Context, ifname string, port, count int, stdout io.Writer) error {
	pc, err := open(ctx, ifname, port)
	if err != nil {
		return err
	}
	defer pc.Close()
	fmt.Fprintf(stdout, "listening on %s through %s\n", pc.LocalAddr(), ifname)
	buf := make([]byte, 64<<10)
	for seen := 0; count == 0 || seen < count; seen++ {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive on %q: %w", ifname, err)
		}
		fmt.Fprintf(stdout, "from %s on %s: %s\n", from, ifname, buf[:n])
		if _, err := pc.WriteTo(fmt.Appendf(nil, "heard %s on %s", buf[:n], ifname), from); err != nil {
			return fmt.Errorf("answer %s through %q: %w", from, ifname, err)
		}
	}
	return nil
}
