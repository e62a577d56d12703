package bindtodev

import "context"

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
