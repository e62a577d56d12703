package bindtodev_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"

	"github.com/bindtodev/bindtodev"
)

// Dial is the one-line form of a Dialer with only Interface set.
func ExampleDial() {
	conn, err := bindtodev.Dial("eth1", "tcp", "192.0.2.10:22")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// Listen is the one-line form of a ListenConfig with only Interface set.
func ExampleListen() {
	ln, err := bindtodev.Listen("mgmt0", "tcp", ":9100")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, http.NotFoundHandler()))
}

// A lookup whose queries leave through eth1, to a name server reachable
// through eth1, with a second one to fail over to.
func ExampleResolver() {
	r := bindtodev.Resolver("eth1",
		netip.MustParseAddrPort("192.0.2.53:53"),
		netip.MustParseAddrPort("192.0.2.54:53"))
	addrs, err := r.LookupNetIP(context.Background(), "ip", "db.internal")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(addrs)
}

// A Dialer whose name lookups leave through the same interface as its
// connections. Without the Resolver, the lookup would follow the routing
// table.
func ExampleResolver_dialer() {
	d := &bindtodev.Dialer{Interface: "eth1"}
	d.Resolver = bindtodev.Resolver("eth1", netip.MustParseAddrPort("192.0.2.53:53"))
	conn, err := d.Dial("tcp", "db.internal:5432")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// NetListenConfig serves APIs that take exactly a *net.ListenConfig.
// Passing &lc.ListenConfig instead would listen unbound.
func ExampleListenConfig_NetListenConfig() {
	lc := &bindtodev.ListenConfig{Interface: "eth1"}
	ln, err := listenWith(lc.NetListenConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
}

// listenWith stands for a library function that takes a *net.ListenConfig.
func listenWith(lc *net.ListenConfig) (net.Listener, error) {
	return lc.Listen(context.Background(), "tcp", ":8443")
}

// Two DHCP-style UDP sockets on the same port, one per interface: each
// receives only what arrives on its own interface.
func ExampleListenConfig_ListenPacket() {
	for _, ifname := range []string{"eth1", "eth2"} {
		lc := &bindtodev.ListenConfig{Interface: ifname}
		pc, err := lc.ListenPacket(context.Background(), "udp4", ":67")
		if err != nil {
			log.Fatal(err)
		}
		defer pc.Close()
	}
}
