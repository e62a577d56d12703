package integration

import (
	"github.com/bindtodev/bindtodev"
	"github.com/jackc/pgx/v5/pgconn"
)

// BindPgx makes pgx connect through d and look host names up with d's
// Resolver. pgx resolves a host name itself, with LookupFunc, before it
// dials the address, so d's Resolver alone would never be asked and the
// lookup would follow the routing table. DialFunc also serves the
// connection that cancels a running query (CancelRequest), the fallback
// hosts of a connection string, and every connection of a pgxpool made from
// the configuration. Pass &cfg.Config of a pgx.ConnConfig, or
// &cfg.ConnConfig.Config of a pgxpool.Config.
func BindPgx(cfg *pgconn.Config, d *bindtodev.Dialer) {
	cfg.DialFunc = d.DialContext
	cfg.LookupFunc = d.Resolver.LookupHost
}
