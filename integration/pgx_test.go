package integration_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev/integration"
)

// clusterName asks the server which peer it runs in.
func clusterName(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) string {
	t.Helper()
	var name string
	require.NoError(t, q.QueryRow(testContext(t), "select current_setting('cluster_name')").Scan(&name))
	return name
}

// pgConnString is the connection string to the lab's servers at host.
func pgConnString(host string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres sslmode=disable connect_timeout=10", host)
}

// Against a real PostgreSQL server in each peer: pgx with the recipe
// reaches A, for a connection, the request that cancels its query, and a
// pgxpool, with the name looked up through A; pgx's default configuration
// reaches B. The trap: a bound DialFunc alone leaves the lookup to
// LookupFunc, which never asks the Dialer's Resolver.
func TestPgx(t *testing.T) {
	t.Parallel()
	pg := requirePostgres(t)
	l := newLab(t)
	data := postgresClusters(t, pg, l.PeerA.Name, l.PeerB.Name)
	for _, h := range l.peers() {
		startPostgres(t, pg, h, data[h.Name])
	}
	for _, f := range l.families() {
		t.Run(f.name, func(t *testing.T) {
			w := l.watch(t)
			d, devs := l.dialer(t, f)
			ctx := testContext(t)
			cfg, err := pgx.ParseConfig(pgConnString(f.host))
			require.NoError(t, err)
			integration.BindPgx(&cfg.Config, d)
			conn, err := pgx.ConnectConfig(ctx, cfg)
			require.NoError(t, err)
			assert.Equal(t, "A", clusterName(t, conn))
			assert.Equal(t, l.A, deviceOf(t, conn.PgConn().Conn()), "pgx's connection")
			requireCanceled(t, conn.PgConn())
			require.NoError(t, conn.Close(ctx))

			pcfg, err := pgxpool.ParseConfig(pgConnString(f.host))
			require.NoError(t, err)
			integration.BindPgx(&pcfg.ConnConfig.Config, d)
			pool, err := pgxpool.NewWithConfig(ctx, pcfg)
			require.NoError(t, err)
			assert.Equal(t, "A", clusterName(t, pool), "through pgxpool")
			pool.Close()
			w.requireNone(t)
			devs.requireAll(t, l.A)
			l.requireLookupsFromA(t, f)

			conn, err = pgx.Connect(ctx, pgConnString(f.dest.String()))
			require.NoError(t, err)
			assert.Equal(t, "B", clusterName(t, conn), "pgx's default dialer follows the routing table")
			require.NoError(t, conn.Close(ctx))
			w.requireSeen(t, f.dest)

			t.Run("DialFunc alone", func(t *testing.T) {
				a, _ := l.dnsServers(f)
				before := len(a.Queries())
				cfg, err := pgx.ParseConfig(pgConnString(f.host))
				require.NoError(t, err)
				cfg.DialFunc = d.DialContext
				conn, err := pgx.ConnectConfig(ctx, cfg)
				if err == nil {
					conn.Close(ctx)
				}
				require.Error(t, err, "pgx found the lab's name without the bound resolver")
				assert.Len(t, a.Queries(), before, "pgx asked the Dialer's Resolver after all")
			})
		})
	}
}

// requireCanceled runs a long query on c and cancels it with pgx's
// CancelRequest, which opens a connection of its own through DialFunc. The
// query ends as canceled only if that connection reached the server running
// it; a cancel request that reached the other server would be ignored.
func requireCanceled(t *testing.T, c *pgconn.PgConn) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(testContext(t), "select pg_sleep(60)").ReadAll()
		done <- err
	}()
	// A cancel request that arrives before the query starts is ignored;
	// send one until the query ends.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			var pgErr *pgconn.PgError
			require.True(t, errors.As(err, &pgErr), "the query did not end with a server error: %v", err)
			assert.Equal(t, "57014", pgErr.Code, "query_canceled")
			return
		case <-tick.C:
			require.NoError(t, c.CancelRequest(testContext(t)))
		}
	}
}
