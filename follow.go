package bindtodev

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// WaitForInterface blocks until an interface named ifname exists and is up
// (IFF_UP), or ctx is done. It returns nil at once when the interface is
// already there, and otherwise an error that wraps ctx's error and
// syscall.ENODEV. An invalid name fails at once with [ErrInvalidName].
//
// It watches the kernel's link events (rtnetlink(7)) rather than polling:
// see [ListenConfig.Follow] for the subscription that it shares with every
// follower of the process, and for the network namespace it watches.
func WaitForInterface(ctx context.Context, ifname string) error {
	if err := checkName(ifname); err != nil {
		return err
	}
	return waitForInterface(ctx, ifname)
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
