package integration

import (
	"context"
	"net"
	"slices"

	"github.com/bindtodev/bindtodev"
	"google.golang.org/grpc"
)

// DialGRPC returns a gRPC client for hostport whose connections leave
// through d, the lookup of the host name included. The passthrough scheme
// hands hostport to the dialer as it is, and d looks it up with its
// Resolver; gRPC's default dns scheme, even as dns://SERVER/name, would
// query the name server through gRPC's own unbound socket. A custom dialer
// also turns off gRPC's use of an HTTPS proxy from the environment.
func DialGRPC(d *bindtodev.Dialer, hostport string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}
	opts = append(slices.Clip(opts), grpc.WithContextDialer(dial))
	return grpc.NewClient("passthrough:///"+hostport, opts...)
}
