package integration

import (
	"context"
	"crypto/tls"
	"net/http"

	"github.com/bindtodev/bindtodev"
	"github.com/coder/websocket"
)

// DialWebSocket opens a WebSocket to url (ws:// or wss://) through d.
// websocket.Dial without options uses http.DefaultClient, which dials
// unbound; the HTTPClient option carries a bound Transport instead.
func DialWebSocket(ctx context.Context, d *bindtodev.Dialer, url string, tlsConf *tls.Config) (*websocket.Conn, *http.Response, error) {
	client := &http.Client{Transport: HTTPTransport(d, tlsConf)}
	return websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client})
}
