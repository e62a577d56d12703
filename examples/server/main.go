// Command server is an HTTP server that accepts connections only from one
// network interface, even on the wildcard address, and reports for each
// connection the interface and the local address it came in on.
//
// Usage:
//
//	server -i IFACE [-addr ADDR]
//
// It prints "listening on ADDR through IFACE" once it accepts, then one
// line per connection. SIGINT or SIGTERM shut it down gracefully. Exit
// status: 0 after a graceful shutdown, 1 when it cannot listen or serve,
// 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bindtodev/bindtodev"
)

const usage = `usage: server -i IFACE [-addr ADDR]

Serves HTTP on ADDR through a listener bound to the network interface IFACE
(Linux SO_BINDTODEVICE): connections that arrive on any other interface are
refused by the kernel, even when ADDR is the wildcard address or an address
of another interface. Each connection is logged with the interface the
kernel bound it to, read back from the socket, and the local address it
came in on; the response says the same.

Exit status: 0 after SIGINT or SIGTERM, 1 when it cannot listen or serve,
2 for a usage error.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	ifname := fs.String("i", "", "network interface to accept connections from (required)")
	addr := fs.String("addr", ":8080", "`ADDR:PORT` to listen on; port 0 picks a free port")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := checkArgs(*ifname, *addr, fs.Args()); err != nil {
		fmt.Fprintf(stderr, "server: %v\nRun 'server -h' for usage.\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *ifname, *addr, stdout); err != nil {
		fmt.Fprintf(stderr, "server: %v\n", err)
		return 1
	}
	return 0
}

func checkArgs(ifname, addr string, rest []string) error {
	if ifname == "" {
		return errors.New("-i IFACE is required")
	}
	if err := bindtodev.ValidateName(ifname); err != nil {
		return fmt.Errorf("-i: %w", err)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("unexpected arguments %q", rest)
	}
	return nil
}

// connInfo is what ConnContext learns about a connection for the handler.
type connInfo struct {
	device string
	local  string
}

type connInfoKey struct{}

func serve(ctx context.Context, ifname, addr string, stdout io.Writer) error {
	lc := &bindtodev.ListenConfig{Interface: ifname}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening on %s through %s\n", ln.Addr(), ifname)
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		// ConnContext sees every accepted connection once, before its
		// first request: the place to ask the kernel about its socket.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			info := connInfo{device: "?", local: unmapped(c.LocalAddr())}
			if sc, ok := c.(syscall.Conn); ok {
				if name, err := bindtodev.Device(sc); err == nil && name != "" {
					info.device = name
				} else if err == nil {
					info.device = "(unbound)"
				}
			}
			fmt.Fprintf(stdout, "connection from %s to %s on %s\n", unmapped(c.RemoteAddr()), info.local, info.device)
			return context.WithValue(ctx, connInfoKey{}, info)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			info, _ := r.Context().Value(connInfoKey{}).(connInfo)
			fmt.Fprintf(w, "you reached %s on interface %s from %s\n", info.local, info.device, r.RemoteAddr)
		}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// unmapped prints an IPv4 client of a dual-stack listener as IPv4.
func unmapped(a net.Addr) string {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	return a.String()
}
