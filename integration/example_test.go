package integration_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"net/netip"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/miekg/dns"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/bindtodev/bindtodev/integration"
)

// The interface and name server of the examples: eth1, and a name server
// reached through it.
var dnsServer = netip.MustParseAddrPort("192.0.2.53:53")

func ExampleBindPgx() {
	d := integration.NewDialer("eth1", dnsServer)
	cfg, err := pgx.ParseConfig("postgres://app@db.example.com:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	integration.BindPgx(&cfg.Config, d)
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(context.Background())

	// A pool: the same, on the pool's ConnConfig.
	pcfg, err := pgxpool.ParseConfig("postgres://app@db.example.com:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	integration.BindPgx(&pcfg.ConnConfig.Config, d)
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
}

func ExampleDialGRPC() {
	d := integration.NewDialer("eth1", dnsServer)
	cc, err := integration.DialGRPC(d, "api.example.com:443",
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
}

func ExampleQUICTransport() {
	ctx := context.Background()
	d := integration.NewDialer("eth1", dnsServer)
	tr, err := integration.QUICTransport(ctx, "eth1", ":0")
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Conn.Close()
	defer tr.Close()
	addr, err := integration.ResolveUDP(ctx, d, "quic.example.com:443")
	if err != nil {
		log.Fatal(err)
	}
	conn, err := tr.Dial(ctx, addr, &tls.Config{NextProtos: []string{"h3"}, MinVersion: tls.VersionTLS13}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = conn.CloseWithError(0, "") }()
}

func ExampleQUICTransport_server() {
	var serverTLS *tls.Config // the server's certificate and protocols
	tr, err := integration.QUICTransport(context.Background(), "eth1", ":443")
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Conn.Close()
	defer tr.Close()
	ln, err := tr.Listen(serverTLS, nil)
	if err != nil {
		log.Fatal(err)
	}
	for {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		go fmt.Println(conn.RemoteAddr())
	}
}

func ExampleDialSSH() {
	var hostKey ssh.PublicKey // the server's known host key
	cfg := &ssh.ClientConfig{
		User:            "deploy",
		Auth:            []ssh.AuthMethod{ssh.Password("secret")},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
	}
	d := integration.NewDialer("eth1", dnsServer)
	d.Timeout = 10 * time.Second // what cfg.Timeout would have been
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := integration.DialSSH(ctx, d, "host.example.com:22", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
}

func ExampleDNSClient() {
	d := integration.NewDialer("eth1", dnsServer)
	c := integration.DNSClient(d, "udp", 5*time.Second)
	q := new(dns.Msg).SetQuestion("example.com.", dns.TypeMX)
	r, _, err := c.Exchange(q, dnsServer.String())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Answer)
}

func ExampleHTTPTransport() {
	d := integration.NewDialer("eth1", dnsServer)
	client := &http.Client{Transport: integration.HTTPTransport(d, nil)}
	resp, err := client.Get("https://www.example.com/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Proto) // HTTP/2.0 where the server speaks it
}

func ExampleHTTP2Transport() {
	d := integration.NewDialer("eth1", dnsServer)
	client := &http.Client{Transport: integration.HTTP2Transport(d, nil)}
	resp, err := client.Get("https://www.example.com/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
}

func ExampleDialWebSocket() {
	d := integration.NewDialer("eth1", dnsServer)
	c, _, err := integration.DialWebSocket(context.Background(), d, "wss://ws.example.com/feed", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.CloseNow() }()
	_, msg, err := c.Read(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(msg))
	_ = c.Close(websocket.StatusNormalClosure, "")
}
