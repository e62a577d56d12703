// Command demo shows, on a real kernel, why binding a socket's address does
// not pin it to an interface and SO_BINDTODEVICE does.
//
// It needs no interface of the machine it runs on: it re-executes itself in
// a private network namespace (as root, or in a user namespace where
// unprivileged user namespaces are allowed) and builds a host with two
// interfaces, A and B, and a peer behind each. Both peers own the same
// destination address, and the host's routing table prefers B for it. The
// demo dials that destination three ways and prints which peer answered.
//
// Usage:
//
//	go run ./examples/demo
//
// It exits with status 1 if any dial ends somewhere the demonstration does
// not expect.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s\n\n"+
			"Builds a private two-interface network and shows that bind() to an\n"+
			"address follows the routing table while bindtodev stays on its interface.\n"+
			"Needs root or unprivileged user namespaces.\n", os.Args[0])
	}
	flag.Parse()
	if err := netlab.Enter(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	s, err := netlab.NewSeed()
	if err != nil {
		return err
	}
	defer s.Close()
	dest := netip.AddrPortFrom(s.Dest4, netlab.WhoAmIPort).String()
	fmt.Printf("Host interfaces: %s (peer A) and %s (peer B). Both peers own %s;\n", s.A, s.B, s.Dest4)
	fmt.Printf("the host's routing table sends %s out of %s.\n\n", s.Dest4, s.B)

	bindOnly := &net.Dialer{LocalAddr: &net.TCPAddr{IP: s.LocalA4.AsSlice()}}
	bound := &bindtodev.Dialer{Interface: s.A}
	dials := []struct {
		what string
		dial func() (net.Conn, error)
		want string
	}{
		{"net.Dial", func() (net.Conn, error) { return net.Dial("tcp", dest) }, "B"},
		{fmt.Sprintf("bind() to %s's address %s", s.A, s.LocalA4), func() (net.Conn, error) { return bindOnly.Dial("tcp", dest) }, "B"},
		{fmt.Sprintf("bindtodev.Dialer{Interface: %q}", s.A), func() (net.Conn, error) { return bound.Dial("tcp", dest) }, "A"},
	}
	failed := false
	for _, d := range dials {
		c, err := d.dial()
		if err != nil {
			return fmt.Errorf("%s: %w", d.what, err)
		}
		who, err := netlab.AskTCP(c)
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", d.what, err)
		}
		note := ""
		if who.Peer != d.want {
			note, failed = fmt.Sprintf("  UNEXPECTED: wanted peer %s", d.want), true
		}
		fmt.Printf("%-38s reached peer %s from %s%s\n", d.what, who.Peer, who.Source.Addr(), note)
	}
	if failed {
		return fmt.Errorf("the kernel did not behave as the demonstration expects")
	}
	fmt.Printf("\nOnly SO_BINDTODEVICE kept the connection on %s.\n", s.A)
	return nil
}
