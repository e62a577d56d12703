// Command httpclient fetches a URL with both the DNS lookup and the HTTP
// connection going through one network interface, and reports the
// interface and addresses the connection used.
//
// Usage:
//
//	httpclient -i IFACE [-dns SERVER] [-timeout D] URL
//
// The response body goes to standard output; the connection and the
// status line go to standard error. Exit status: 0 when a response
// arrived (whatever its status code), 1 when the lookup, the connection
// or the request failed, 2 for a usage error.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/bindtodev/bindtodev"
)

const usage = `usage: httpclient -i IFACE [-dns SERVER] [-timeout D] URL

Fetches URL (http or https) with the DNS lookup and the connection both
bound to the network interface IFACE (Linux SO_BINDTODEVICE), so that
neither leaves through another interface whatever the routing table says.
The body goes to standard output; the interface and addresses the
connection used, and the status line, go to standard error.

Without -dns, the name servers of /etc/resolv.conf are asked through IFACE;
a server on a loopback address (such as a local stub at 127.0.0.53) cannot
be reached through an interface and is asked unbound, so give -dns a
server reachable through IFACE for a lookup that does not leak.

Exit status: 0 when a response arrived, 1 when the lookup, connection or
request failed, 2 for a usage error.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("httpclient", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	ifname := fs.String("i", "", "network interface for the lookup and the connection (required)")
	dns := fs.String("dns", "", "DNS server `ADDR[:PORT]` to ask through the interface (default: those of /etc/resolv.conf)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up on the whole request after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	target, servers, err := checkArgs(*ifname, *dns, fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "httpclient: %v\nRun 'httpclient -h' for usage.\n", err)
		return 2
	}
	if err := fetch(*ifname, servers, target, *timeout, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "httpclient: %v\n", err)
		return 1
	}
	return 0
}

// checkArgs finds every usage error before anything touches the network.
func checkArgs(ifname, dns string, rest []string) (*url.URL, []netip.AddrPort, error) {
	if ifname == "" {
		return nil, nil, errors.New("-i IFACE is required")
	}
	if err := bindtodev.ValidateName(ifname); err != nil {
		return nil, nil, fmt.Errorf("-i: %w", err)
	}
	var servers []netip.AddrPort
	if dns != "" {
		server, err := parseServer(dns)
		if err != nil {
			return nil, nil, err
		}
		servers = append(servers, server)
	}
	if len(rest) != 1 {
		return nil, nil, fmt.Errorf("want exactly one URL, got %d arguments", len(rest))
	}
	target, err := url.Parse(rest[0])
	if err != nil {
		return nil, nil, err
	}
	if target.Scheme != "http" && target.Scheme != "https" || target.Host == "" {
		return nil, nil, fmt.Errorf("url %q: want an http or https URL with a host", rest[0])
	}
	return target, servers, nil
}

// parseServer accepts an address with or without a port; DNS's is 53.
func parseServer(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("-dns %q: want an IP address, optionally with a port", s)
	}
	return netip.AddrPortFrom(a, 53), nil
}

func fetch(ifname string, servers []netip.AddrPort, target *url.URL, timeout time.Duration, stdout, stderr io.Writer) error {
	// An interface that does not exist would fail every dial with ENODEV;
	// saying so up front is clearer than a wrapped DNS error.
	if _, err := net.InterfaceByName(ifname); err != nil {
		return fmt.Errorf("interface %q: %w", ifname, err)
	}
	d := &bindtodev.Dialer{Interface: ifname}
	d.Resolver = bindtodev.Resolver(ifname, servers...)
	client := &http.Client{
		// Proxy is left nil: a proxy from the environment would change
		// the destination, and this program shows the direct path.
		Transport: &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: true},
		Timeout:   timeout,
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { describe(stderr, info.Conn) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, target.String(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("through interface %q: %w", ifname, err)
	}
	defer resp.Body.Close()
	fmt.Fprintf(stderr, "%s %s\n", resp.Proto, resp.Status)
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		return fmt.Errorf("read the body: %w", err)
	}
	return nil
}

// describe reports the interface the kernel has the connection bound to,
// read back from the socket rather than taken from the flag.
func describe(w io.Writer, c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	device := "?"
	if sc, ok := c.(syscall.Conn); ok {
		if name, err := bindtodev.Device(sc); err == nil {
			device = name
		}
	}
	fmt.Fprintf(w, "connected to %s from %s through %s\n", c.RemoteAddr(), c.LocalAddr(), device)
}
