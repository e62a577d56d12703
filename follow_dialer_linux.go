//go:build !bindtodev_stub

package bindtodev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"
)

// dialFollow is DialContext with Follow set: it waits for the interface
// while it is absent, and makes the connection end when it is deleted.
func (d *Dialer) dialFollow(ctx context.Context, network, address string) (net.Conn, error) {
	var nd net.Dialer
	if err := d.netDialer(&nd, nil); err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	if addr, _, _ := parseAddr(address); strings.HasPrefix(network, "unix") || addr.Unmap().IsLoopback() {
		// Bound to lo, or to nothing: Interface plays no part.
		c, err := nd.DialContext(ctx, network, address)
		if err != nil {
			return nil, afterBind("dial", d.Interface, err)
		}
		return c, nil
	}
	w, err := acquireWatcher(false)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	start := time.Now()
	checked := false
	for {
		st, epoch, _ := w.snapshot(d.Interface)
		if st.usable() {
			c, err := nd.DialContext(ctx, network, address)
			if err == nil {
				// The connection inherits the reference to w.
				followConn(w, c, d.Interface, st.index, epoch)
				return c, nil
			}
			if !errors.Is(err, syscall.ENODEV) {
				w.releaseLater()
				return nil, err
			}
			// Gone since the table was read: wait for the news.
		}
		if !checked {
			// A wait for a name of another namespace would never end,
			// and neither would one for an alternative name, which the
			// table never holds: a name it holds needs neither check.
			err := w.checkThread()
			if err == nil {
				err = w.refuseAltName(d.Interface)
			}
			if err != nil {
				w.release()
				return nil, &net.OpError{Op: "dial", Net: network, Err: err}
			}
			checked = true
		}
		deadline := d.deadline(start)
		if err := d.wait(ctx, w, deadline, st.usable(), epoch); err != nil {
			w.release()
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		// The dial after the wait gets what is left of the time.
		nd.Timeout, nd.Deadline = 0, deadline
	}
}

// deadline is the earliest of Deadline and Timeout from start, or zero.
func (d *Dialer) deadline(start time.Time) time.Time {
	deadline := d.Deadline
	if d.Timeout > 0 {
		if t := start.Add(d.Timeout); deadline.IsZero() || t.Before(deadline) {
			deadline = t
		}
	}
	return deadline
}

func (d *Dialer) wait(ctx context.Context, w *watcher, deadline time.Time, after bool, epoch uint64) error {
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if err := w.waitUsable(ctx, d.Interface, after, epoch); err != nil {
		return &absentError{ifname: d.Interface, cause: err}
	}
	return nil
}

// followConn tracks a dialed connection, which holds the caller's
// reference to w from then on; loopback connections do not depend on the
// interface and are not tracked.
func followConn(w *watcher, c net.Conn, ifname string, index int32, epoch uint64) {
	switch c := c.(type) {
	case *net.TCPConn:
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
			track(w, c, ifname, index, epoch)
			return
		}
	case *net.UDPConn:
		if a, ok := c.RemoteAddr().(*net.UDPAddr); ok && !a.IP.IsLoopback() {
			track(w, c, ifname, index, epoch)
			return
		}
	case *net.IPConn:
		if a, ok := c.RemoteAddr().(*net.IPAddr); ok && !a.IP.IsLoopback() {
			track(w, c, ifname, index, epoch)
			return
		}
	}
	w.releaseLater()
}

// followHook is the ControlContext of NetDialer with Follow set: when the
// interface does not exist, it waits for it within the dial's context and
// binds the same socket again. It has no connection to end later.
func followHook(ifname string, inner func(ctx context.Context, network, address string, c syscall.RawConn) error) func(ctx context.Context, network, address string, c syscall.RawConn) error {
	return func(ctx context.Context, network, address string, c syscall.RawConn) error {
		err := inner(ctx, network, address, c)
		if err == nil || !errors.Is(err, syscall.ENODEV) {
			return err
		}
		w, werr := acquireWatcher(true)
		if werr != nil {
			return errors.Join(err, werr)
		}
		defer w.release()
		if werr := w.refuseAltName(ifname); werr != nil {
			return werr
		}
		for errors.Is(err, syscall.ENODEV) {
			st, epoch, _ := w.snapshot(ifname)
			if werr := w.waitUsable(ctx, ifname, st.usable(), epoch); werr != nil {
				return &absentError{ifname: ifname, cause: werr}
			}
			err = inner(ctx, network, address, c)
		}
		return err
	}
}

// waitForInterface is WaitForInterface once the name is valid.
func waitForInterface(ctx context.Context, ifname string) error {
	w, err := acquireWatcher(true)
	if err != nil {
		return err
	}
	defer w.release()
	if err := w.refuseAltName(ifname); err != nil {
		return err
	}
	if err := w.waitUsable(ctx, ifname, false, 0); err != nil {
		return &absentError{ifname: ifname, cause: err}
	}
	return nil
}

// absentError is the failure of a wait for an interface: ctx's error, and
// ENODEV, which is what the socket would have failed with.
type absentError struct {
	ifname string
	cause  error
}

func (e *absentError) Error() string {
	return fmt.Sprintf("wait for interface %q: %v", e.ifname, e.cause)
}

func (e *absentError) Unwrap() []error { return []error{e.cause, syscall.ENODEV} }

// Timeout makes a dial that ran out of time while waiting a timeout, as
// net's own dials are.
func (e *absentError) Timeout() bool { return errors.Is(e.cause, context.DeadlineExceeded) }
