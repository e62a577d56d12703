package integration_test

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/integration"
)

// boundDial is the dialer of DialGRPC, for the trap that pairs it with
// another target scheme.
func boundDial(d *bindtodev.Dialer) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}
}

const grpcPort = 50051

// serveGRPC starts a gRPC server in each peer whose health service knows
// one service, named after the peer: a health check for "A" succeeds only
// on PeerA's server.
func serveGRPC(t *testing.T, l *lab) {
	t.Helper()
	for _, h := range l.peers() {
		ln, err := h.Listen("tcp", ":"+strconv.Itoa(grpcPort))
		require.NoError(t, err)
		srv := grpc.NewServer()
		hs := health.NewServer()
		hs.SetServingStatus(h.Name, healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(srv, hs)
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(srv.Stop)
	}
}

// peerOf asks the server behind cc which peer it is.
func peerOf(t *testing.T, cc *grpc.ClientConn) string {
	t.Helper()
	client := healthpb.NewHealthClient(cc)
	for _, name := range []string{"A", "B"} {
		resp, err := client.Check(testContext(t), &healthpb.HealthCheckRequest{Service: name})
		if status.Code(err) == codes.NotFound {
			continue
		}
		require.NoError(t, err)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
		return name
	}
	t.Fatal("the server knows neither peer")
	return ""
}

// Through the recipe (passthrough:/// and a bound dialer) gRPC reaches A,
// with the name looked up through A; gRPC's default, the dns scheme, reaches
// B. The trap: dns://SERVER/name queries SERVER through gRPC's own socket,
// which is not bound, even when the dialer is.
func TestGRPC(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	serveGRPC(t, l)
	insecureCreds := grpc.WithTransportCredentials(insecure.NewCredentials())
	for _, f := range l.families() {
		t.Run(f.name, func(t *testing.T) {
			w := l.watch(t)
			d, devs := l.dialer(t, f)
			cc, err := integration.DialGRPC(d, f.hostPort(grpcPort), insecureCreds)
			require.NoError(t, err)
			assert.Equal(t, "A", peerOf(t, cc))
			require.NoError(t, cc.Close())
			w.requireNone(t)
			devs.requireAll(t, l.A)
			l.requireLookupsFromA(t, f)

			cc, err = grpc.NewClient(f.destPort(grpcPort), insecureCreds)
			require.NoError(t, err)
			assert.Equal(t, "B", peerOf(t, cc), "gRPC's default dialer follows the routing table")
			require.NoError(t, cc.Close())
			w.requireSeen(t, f.dest)

			// Last, since it leaves a query at B's name server.
			t.Run("dns scheme", func(t *testing.T) {
				_, b := l.dnsServers(f)
				before := len(b.Queries())
				d, _ := l.dialer(t, f)
				cc, err := grpc.NewClient("dns://"+f.dns.String()+"/"+f.hostPort(grpcPort), insecureCreds,
					grpc.WithContextDialer(boundDial(d)))
				require.NoError(t, err)
				assert.Equal(t, "A", peerOf(t, cc), "the connection itself is bound")
				require.NoError(t, cc.Close())
				assert.Greater(t, len(b.Queries()), before, "gRPC's own lookup did not reach B's name server")
			})
		})
	}
}
