//go:build go1.26

package bindtodev_test

import (
	"context"
	"log"
	"net/netip"

	"github.com/bindtodev/bindtodev"
)

// Go 1.26's typed dial methods, bound like every other dial of a Dialer.
func ExampleDialer_DialTCP() {
	d := &bindtodev.Dialer{Interface: "eth1"}
	conn, err := d.DialTCP(context.Background(), "tcp", netip.AddrPort{}, netip.MustParseAddrPort("192.0.2.10:443"))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

func ExampleDialer_DialUDP() {
	d := &bindtodev.Dialer{Interface: "eth1"}
	conn, err := d.DialUDP(context.Background(), "udp", netip.AddrPort{}, netip.MustParseAddrPort("192.0.2.1:514"))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}
