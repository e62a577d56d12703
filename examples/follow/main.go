// Command follow is an HTTP server on one network interface that keeps
// serving while the interface comes and goes: started before the interface
// exists, it listens once the interface appears, and when the interface is
// deleted and created again (a VPN reconnecting, wg-quick down and up), it
// listens again on the same address and port. Connections of an interface
// that was deleted end at once instead of hanging until TCP gives up.
//
// Usage:
//
//	follow -i IFACE [-addr ADDR]
//
// It prints "following IFACE on ADDR" at once, whether IFACE exists or
// not, then one line per connection. SIGINT or SIGTERM shut it down. Exit status: 0 after a signal, 1 when it cannot serve, 2
// for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bindtodev/bindtodev"
)

const usage = `usage: follow -i IFACE [-addr ADDR]

Serves HTTP on ADDR through the network interface IFACE (Linux
SO_BINDTODEVICE), following the interface: the server starts even when
IFACE does not exist yet, and listens again, on the same address and port,
whenever an interface of that name is created again.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("follow", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	ifname := fs.String("i", "", "network interface to serve on (required)")
	addr := fs.String("addr", ":8080", "`ADDR:PORT` to listen on; port 0 picks a free port once, kept across bounces")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *ifname == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "follow: -i IFACE is required and takes no arguments\nRun 'follow -h' for usage.\n")
		return 2
	}
	if err := bindtodev.ValidateName(*ifname); err != nil {
		fmt.Fprintf(stderr, "follow: -i: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *ifname, *addr, stdout); err != nil {
		fmt.Fprintf(stderr, "follow: %v\n", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, ifname, addr string, stdout io.Writer) error {
	lc := &bindtodev.ListenConfig{Interface: ifname, Follow: true}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "following %s on %s\n", ifname, ln.Addr())
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			fmt.Fprintf(stdout, "connection from %s to %s on %s\n", c.RemoteAddr(), c.LocalAddr(), ifname)
			return ctx
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "served through %s\n", ifname)
		}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		// A socket that could not listen again (the port was taken
		// meanwhile, say) ends Serve with the cause.
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
