//go:build !linux || bindtodev_stub

package bindtodev

import (
	"context"
	"net"
	"syscall"
)

// Without SO_BINDTODEVICE nothing can follow an interface: every entry
// point fails as its unfollowing counterpart does, with ErrInvalidName or
// ErrUnsupported.

func (lc *ListenConfig) listenFollow(_ context.Context, network, _ string) (net.Listener, error) {
	return nil, &net.OpError{Op: "listen", Net: network, Err: checkName(lc.Interface)}
}

func (lc *ListenConfig) listenPacketFollow(_ context.Context, network, _ string) (net.PacketConn, error) {
	return nil, &net.OpError{Op: "listen", Net: network, Err: checkName(lc.Interface)}
}

func (d *Dialer) dialFollow(_ context.Context, network, _ string) (net.Conn, error) {
	return nil, &net.OpError{Op: "dial", Net: network, Err: checkName(d.Interface)}
}

func followHook(_ string, inner func(context.Context, string, string, syscall.RawConn) error) func(context.Context, string, string, syscall.RawConn) error {
	return inner
}

func waitForInterface(context.Context, string) error { return ErrUnsupported }
