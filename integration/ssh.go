package integration

import (
	"context"
	"time"

	"github.com/bindtodev/bindtodev"
	"golang.org/x/crypto/ssh"
)

// DialSSH connects to the SSH server at addr through d. ssh.Dial dials with
// net.DialTimeout, unbound; ssh.NewClientConn runs the same handshake on a
// connection d made. cfg.Timeout is applied only by ssh.Dial, so here d's
// Timeout and ctx bound the connect, and ctx's deadline the handshake.
func DialSSH(ctx context.Context, d *bindtodev.Dialer, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(deadline)
	}
	conn, chans, reqs, err := ssh.NewClientConn(c, addr, cfg)
	if err != nil {
		return nil, err // NewClientConn closed c
	}
	_ = c.SetDeadline(time.Time{})
	return ssh.NewClient(conn, chans, reqs), nil
}
