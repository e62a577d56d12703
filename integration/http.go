package integration

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/bindtodev/bindtodev"
	"golang.org/x/net/http2"
)

// HTTPTransport returns a copy of http.DefaultTransport whose connections
// leave through d: plain and TLS, HTTP/1.1 and HTTP/2, and those to a proxy
// from the environment, with every host name looked up by d's Resolver.
// DialTLSContext stays nil: when set, it replaces DialContext for https and
// must then be bound itself, like HTTP2Transport's.
func HTTPTransport(d *bindtodev.Dialer, tlsConf *tls.Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = d.DialContext
	t.TLSClientConfig = tlsConf
	return t
}

// HTTP2Transport returns a golang.org/x/net/http2 Transport whose
// connections leave through d. Without DialTLSContext it dials with
// tls.Dial, unbound. (net/http's own Transport speaks HTTP/2 too: see
// HTTPTransport.)
//
//nolint:staticcheck // x/net/http2.Transport is deprecated, and still used.
func HTTP2Transport(d *bindtodev.Dialer, tlsConf *tls.Config) *http2.Transport {
	return &http2.Transport{
		TLSClientConfig: tlsConf,
		DialTLSContext: func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			td := tls.Dialer{NetDialer: d.NetDialer(), Config: cfg}
			return td.DialContext(ctx, network, addr)
		},
	}
}
