package bindtodev_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/bindtodev/bindtodev"
)

// The examples need a real interface and so have no Output lines: they are
// compiled, not run.

// A net.Dialer or net.ListenConfig whose every socket is bound to eth0.
func ExampleControl() {
	d := &net.Dialer{Control: bindtodev.Control("eth0")}
	conn, err := d.Dial("tcp", "192.0.2.10:443")
	if err != nil {
		log.Fatal(err) // fails closed: nothing was sent unbound
	}
	defer conn.Close()
}

// A Dialer is a drop-in replacement for net.Dialer.
func ExampleDialer() {
	d := &bindtodev.Dialer{Interface: "eth1"}
	d.Timeout = 5 * time.Second
	conn, err := d.DialContext(context.Background(), "tcp", "db.internal:5432")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// Source picks the address the peer sees; Interface picks the path.
func ExampleDialer_source() {
	d := &bindtodev.Dialer{
		Interface: "mgmt0",
		Source:    netip.MustParseAddr("192.0.2.2"),
	}
	conn, err := d.Dial("udp", "192.0.2.1:514")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// NetDialer serves APIs that take exactly a *net.Dialer. Passing &d.Dialer
// instead would dial unbound.
func ExampleDialer_NetDialer() {
	d := &bindtodev.Dialer{Interface: "eth1"}
	td := &tls.Dialer{NetDialer: d.NetDialer()}
	conn, err := td.DialContext(context.Background(), "tcp", "api.internal:443")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// An HTTP client whose connections all leave through eth1.
func ExampleDialer_http() {
	d := &bindtodev.Dialer{Interface: "eth1"}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	resp, err := client.Get("http://192.0.2.10/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
}

// A server that accepts connections only from eth1, even on the wildcard
// address.
func ExampleListenConfig() {
	lc := &bindtodev.ListenConfig{Interface: "eth1"}
	ln, err := lc.Listen(context.Background(), "tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, http.NotFoundHandler()))
}

// A UDP socket that sends and receives only on eth1.
func ExampleListenPacket() {
	pc, err := bindtodev.ListenPacket("eth1", "udp4", ":68")
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
}

// Bind an existing socket, then read the binding back.
func ExampleBind() {
	pc, err := net.ListenPacket("udp", ":0")
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
	if err := bindtodev.Bind(pc.(syscall.Conn), "eth1"); err != nil {
		log.Fatal(err)
	}
	name, err := bindtodev.Device(pc.(syscall.Conn))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("bound to", name)
}

// Device reports the interface an accepted connection is bound to.
func ExampleDevice() {
	ln, err := bindtodev.Listen("eth1", "tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	conn, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	name, _ := bindtodev.Device(conn.(*net.TCPConn))
	fmt.Println(conn.RemoteAddr(), "arrived on", name)
}

// ValidateName rejects, at configuration time, a name no interface can
// have, such as one the kernel would truncate to another interface's name.
func ExampleValidateName() {
	err := bindtodev.ValidateName("eth0-management-vlan")
	fmt.Println(err)
	// Output: invalid interface name "eth0-management-vlan": the name is 20 bytes long and Linux allows at most 15
}

// Every error names its interface: errors.As finds it through net's own
// *net.OpError, and errors.Is still finds the cause.
func ExampleError() {
	_, err := bindtodev.Dial("wg0", "tcp", "192.0.2.10:443")
	var e *bindtodev.Error
	if errors.As(err, &e) {
		switch {
		case errors.Is(err, syscall.ENODEV):
			log.Printf("interface %s does not exist (yet)", e.Interface)
		case e.Op == "dial":
			log.Printf("bound to %s, the connection failed: %v", e.Interface, e.Err)
		}
	}
}
