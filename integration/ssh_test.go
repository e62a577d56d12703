package integration_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/bindtodev/bindtodev/integration"
)

const sshPort = 2222

// serveSSH starts an SSH server (golang.org/x/crypto/ssh) in each peer that
// lets anyone in and answers the global request "peer" with the peer's name.
// Both peers share one host key, so that a client cannot tell them apart by
// it. It returns the client configuration that trusts the key.
func serveSSH(t *testing.T, l *lab) *ssh.ClientConfig {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(key)
	require.NoError(t, err)
	for _, h := range l.peers() {
		cfg := &ssh.ServerConfig{NoClientAuth: true}
		cfg.AddHostKey(signer)
		ln, err := h.Listen("tcp", ":"+strconv.Itoa(sshPort))
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go serveSSHConn(c, cfg, h.Name)
			}
		}()
	}
	return &ssh.ClientConfig{User: "lab", HostKeyCallback: ssh.FixedHostKey(signer.PublicKey())}
}

func serveSSHConn(c net.Conn, cfg *ssh.ServerConfig, name string) {
	defer c.Close()
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	go func() {
		for ch := range chans {
			_ = ch.Reject(ssh.Prohibited, "no channels here")
		}
	}()
	for req := range reqs {
		if req.Type == "peer" {
			_ = req.Reply(true, []byte(name))
		} else if req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
}

// askSSH sends the global request "peer" and returns the answer.
func askSSH(t *testing.T, c *ssh.Client) string {
	t.Helper()
	ok, payload, err := c.SendRequest("peer", true, nil)
	require.NoError(t, err)
	require.True(t, ok, "the server refused the request")
	return string(payload)
}

// Through the recipe (a bound connection handed to ssh.NewClientConn) an
// SSH client reaches A, with the name looked up through A; ssh.Dial reaches
// B.
func TestSSH(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	cfg := serveSSH(t, l)
	for _, f := range l.families() {
		t.Run(f.name, func(t *testing.T) {
			w := l.watch(t)
			d, devs := l.dialer(t, f)
			c, err := integration.DialSSH(testContext(t), d, f.hostPort(sshPort), cfg)
			require.NoError(t, err)
			assert.Equal(t, "A", askSSH(t, c))
			require.NoError(t, c.Close())
			w.requireNone(t)
			devs.requireAll(t, l.A)
			l.requireLookupsFromA(t, f)

			c, err = ssh.Dial("tcp", f.destPort(sshPort), cfg)
			require.NoError(t, err)
			assert.Equal(t, "B", askSSH(t, c), "ssh.Dial follows the routing table")
			require.NoError(t, c.Close())
			w.requireSeen(t, f.dest)
		})
	}
}
