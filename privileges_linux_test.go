//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// Without CAP_NET_RAW every entry point works, because the package binds
// each socket it creates exactly once: Dialer with Source, NetDialer,
// Control, Listen (and the sockets it accepts, which inherit the binding),
// ListenPacket. Only an explicit re-bind with Bind fails, with a permission
// error that explains the rule.
func TestWithoutNetRawEveryEntryPoint(t *testing.T) {
	t.Parallel()
	s := netlab.NewSeedT(t)
	type result struct {
		what string
		err  error
		peer string
		dev  string
	}
	var results []result
	var rebindAccepted, rawRebind error
	withoutNetRaw(t, func() {
		add := func(what string, err error, peer, dev string) {
			results = append(results, result{what, err, peer, dev})
		}
		// The thread really lacks the capability: a raw re-bind fails.
		pc0, err := net.ListenPacket("udp", ":0")
		if err != nil {
			add("probe", err, "", "")
			return
		}
		defer pc0.Close()
		rc, _ := pc0.(*net.UDPConn).SyscallConn()
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, s.A)
			rawRebind = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, s.B)
		})

		d := &bindtodev.Dialer{Interface: s.A, Source: s.LocalA4}
		for _, network := range []string{"tcp", "udp"} {
			c, err := d.Dial(network, whoAmIAddr(s.Dest4))
			if err != nil {
				add("Dialer with Source "+network, err, "", "")
				continue
			}
			who, err := askNoT(network, c)
			add("Dialer with Source "+network, err, who.Peer, "")
		}
		c, err := d.NetDialer().Dial("tcp", whoAmIAddr(s.PeerA4))
		if err == nil {
			who, aerr := askNoT("tcp", c)
			add("NetDialer", aerr, who.Peer, "")
		} else {
			add("NetDialer", err, "", "")
		}
		c, err = (&net.Dialer{Control: bindtodev.Control(s.A)}).Dial("udp", whoAmIAddr(s.Dest6))
		if err == nil {
			who, aerr := askNoT("udp", c)
			add("Control", aerr, who.Peer, "")
		} else {
			add("Control", err, "", "")
		}

		lc := &bindtodev.ListenConfig{Interface: s.A}
		ln, err := lc.Listen(context.Background(), "tcp", ":0")
		if err != nil {
			add("Listen", err, "", "")
			return
		}
		defer ln.Close()
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		peerConn, err := s.PeerA.Dial("tcp", netip.AddrPortFrom(s.LocalA4, port).String())
		if err != nil {
			add("Listen: peer dial", err, "", "")
			return
		}
		defer peerConn.Close()
		a, err := ln.Accept()
		if err != nil {
			add("Accept", err, "", "")
			return
		}
		defer a.Close()
		dev, err := bindtodev.Device(a.(*net.TCPConn))
		add("Accept", err, "", dev)
		rebindAccepted = bindtodev.Bind(a.(*net.TCPConn), s.A)

		p, err := lc.ListenPacket(context.Background(), "udp", ":0")
		if err != nil {
			add("ListenPacket", err, "", "")
			return
		}
		defer p.Close()
		dev, err = bindtodev.Device(p.(*net.UDPConn))
		add("ListenPacket", err, "", dev)
	})
	require.ErrorIs(t, rawRebind, syscall.EPERM, "the thread lacks CAP_NET_RAW")
	require.Len(t, results, 6)
	for _, r := range results {
		if !assert.NoError(t, r.err, r.what) {
			continue
		}
		if r.peer != "" {
			assert.Equal(t, "A", r.peer, r.what)
		}
		if r.dev != "" {
			assert.Equal(t, s.A, r.dev, r.what)
		}
	}
	require.ErrorIs(t, rebindAccepted, os.ErrPermission, "an accepted socket is already bound")
	assert.ErrorContains(t, rebindAccepted, "CAP_NET_RAW")
	assert.ErrorContains(t, rebindAccepted, fmt.Sprintf("%q", s.A))
}

// askNoT is ask for code that runs where t must not be used.
func askNoT(network string, c net.Conn) (netlab.WhoAmI, error) {
	defer c.Close()
	if network == "udp" {
		return netlab.AskUDP(c)
	}
	return netlab.AskTCP(c)
}
