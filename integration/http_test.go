package integration_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	"github.com/bindtodev/bindtodev"

	"github.com/bindtodev/bindtodev/integration"
)

const httpsPort = 8443

// serveHTTPS starts an HTTPS server on port httpsPort of every address of
// each peer, speaking HTTP/1.1 and HTTP/2. "/" answers with the peer's name
// and the protocol of the request; "/ws" accepts a WebSocket and sends the
// peer's name as its first message.
func serveHTTPS(t *testing.T, l *lab, cert certificate) {
	t.Helper()
	for _, h := range l.peers() {
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, h.Name+" "+r.Proto)
		})
		mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer func() { _ = c.CloseNow() }()
			if c.Write(r.Context(), websocket.MessageText, []byte(h.Name)) == nil {
				// Wait for the client to close first.
				_, _, _ = c.Read(r.Context())
			}
		})
		ln, err := h.Listen("tcp", ":"+strconv.Itoa(httpsPort))
		require.NoError(t, err)
		srv := &http.Server{Handler: mux, TLSConfig: cert.serverConfig("h2", "http/1.1")}
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		t.Cleanup(func() { srv.Close() })
	}
}

// connTrace records the connection that served a request, as the client
// library exposes it.
type connTrace struct {
	mu   sync.Mutex
	conn net.Conn
}

func (c *connTrace) context(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			c.mu.Lock()
			c.conn = info.Conn
			c.mu.Unlock()
		},
	})
}

func (c *connTrace) get() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// roundTripper is what both HTTP recipes return.
type roundTripper interface {
	http.RoundTripper
	CloseIdleConnections()
}

// get fetches url with rt and returns the body and the device of the
// connection used, read while the connection is open.
func get(t *testing.T, rt roundTripper, url string) (body, device string) {
	t.Helper()
	defer rt.CloseIdleConnections()
	var trace connTrace
	req, err := http.NewRequestWithContext(trace.context(testContext(t)), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	conn := trace.get()
	require.NotNil(t, conn, "the client reported no connection")
	return string(b), deviceOf(t, conn)
}

// HTTP/1.1 and HTTP/2 over TLS, through net/http's Transport and through
// golang.org/x/net/http2's: the recipes reach A, with the name looked up
// through A; the default configurations, and a DialTLSContext that is not
// bound, reach B.
func TestHTTP(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	cert := newCertificate(t, l)
	serveHTTPS(t, l, cert)
	for _, f := range l.families() {
		t.Run(f.name, func(t *testing.T) {
			for _, tc := range []struct {
				name, proto string
				recipe      func(d *bindtodev.Dialer) roundTripper
				dflt        func() roundTripper
			}{
				{
					"HTTP/1.1", "HTTP/1.1",
					func(d *bindtodev.Dialer) roundTripper {
						tr := integration.HTTPTransport(d, cert.clientConfig())
						tr.Protocols = new(http.Protocols)
						tr.Protocols.SetHTTP1(true)
						return tr
					},
					func() roundTripper {
						tr := defaultTransport(cert)
						tr.Protocols = new(http.Protocols)
						tr.Protocols.SetHTTP1(true)
						return tr
					},
				},
				{
					"HTTP/2", "HTTP/2.0",
					func(d *bindtodev.Dialer) roundTripper { return integration.HTTPTransport(d, cert.clientConfig()) },
					func() roundTripper { return defaultTransport(cert) },
				},
				{
					"x/net/http2", "HTTP/2.0",
					func(d *bindtodev.Dialer) roundTripper { return integration.HTTP2Transport(d, cert.clientConfig()) },
					func() roundTripper { return &http2.Transport{TLSClientConfig: cert.clientConfig()} }, //nolint:staticcheck // the client under test
				},
			} {
				t.Run(tc.name, func(t *testing.T) {
					w := l.watch(t)
					d, devs := l.dialer(t, f)
					body, device := get(t, tc.recipe(d), "https://"+f.hostPort(httpsPort)+"/")
					assert.Equal(t, "A "+tc.proto, body)
					assert.Equal(t, l.A, device, "the connection the client used")
					w.requireNone(t)
					devs.requireAll(t, l.A)
					l.requireLookupsFromA(t, f)

					body, _ = get(t, tc.dflt(), "https://"+f.destPort(httpsPort)+"/")
					assert.Equal(t, "B "+tc.proto, body, "the default configuration follows the routing table")
					w.requireSeen(t, f.dest)
				})
			}
			// The trap: a DialTLSContext that is not bound replaces the
			// bound DialContext for https.
			t.Run("unbound DialTLSContext", func(t *testing.T) {
				d, _ := l.dialer(t, f)
				tr := integration.HTTPTransport(d, cert.clientConfig())
				tr.DialTLSContext = (&tls.Dialer{Config: cert.clientConfig("h2", "http/1.1")}).DialContext
				body, _ := get(t, tr, "https://"+f.destPort(httpsPort)+"/")
				assert.Equal(t, "B HTTP/2.0", body)
			})
		})
	}
}

// Through coder/websocket, with the recipe's HTTPClient: the WebSocket
// reaches A; websocket.Dial without options reaches B.
func TestWebSocket(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	cert := newCertificate(t, l)
	serveHTTPS(t, l, cert)
	for _, f := range l.families() {
		t.Run(f.name, func(t *testing.T) {
			w := l.watch(t)
			d, devs := l.dialer(t, f)
			var trace connTrace
			ctx := trace.context(testContext(t))
			c, resp, err := integration.DialWebSocket(ctx, d, "wss://"+f.hostPort(httpsPort)+"/ws", cert.clientConfig())
			require.NoError(t, err)
			assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			require.NotNil(t, trace.get(), "the client reported no connection")
			assert.Equal(t, l.A, deviceOf(t, trace.get()), "the connection the WebSocket runs on")
			assert.Equal(t, "A", readMessage(t, c))
			require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
			w.requireNone(t)
			devs.requireAll(t, l.A)
			l.requireLookupsFromA(t, f)

			// websocket.Dial's default client is http.DefaultClient; the
			// lab's certificate is trusted through a copy of it that
			// dials the same way.
			c, _, err = websocket.Dial(testContext(t), "wss://"+f.destPort(httpsPort)+"/ws", &websocket.DialOptions{
				HTTPClient: &http.Client{Transport: defaultTransport(cert)},
			})
			require.NoError(t, err)
			assert.Equal(t, "B", readMessage(t, c), "the default client follows the routing table")
			require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
			w.requireSeen(t, f.dest)
		})
	}
}

func readMessage(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	_, msg, err := c.Read(testContext(t))
	require.NoError(t, err)
	return string(msg)
}

// defaultTransport is http.DefaultTransport trusting the lab's certificate.
func defaultTransport(cert certificate) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cert.clientConfig()
	return tr
}
