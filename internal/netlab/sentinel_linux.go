package netlab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SentinelEtherType is the EtherType of the frames [Capture.Sync] sends:
// 0x88b5, "local experimental" (IEEE 802), which no IP stack, ARP or
// neighbour discovery handles, so the frame reaches no socket but packet
// captures and the receiving host drops it.
const SentinelEtherType = 0x88b5

// sentinelMagic opens the payload of every sentinel frame. A frame of
// SentinelEtherType that carries it is never recorded by any capture, whether
// it is waiting for that frame or not, so that captures of one interface
// made by tests running in parallel (lo is shared by every lab of the
// process) do not count each other's sentinels as traffic.
var sentinelMagic = []byte("bindtodev-netlab-sentinel")

// ErrNotRunning is wrapped by the error [Capture.Sync] returns when its
// interface is down, has no carrier or no longer exists.
var ErrNotRunning = errors.New("the interface is not running")

// syncTimeout bounds how long Sync waits for its sentinel on a running
// interface; a live capture sees it within microseconds.
const syncTimeout = 10 * time.Second

// syncPoll is how often Sync checks, while it waits, that the interface is
// still running.
const syncPoll = 20 * time.Millisecond

var sentinelTokens atomic.Uint64

// syncState is the part of a Capture that Sync uses. Its map is guarded by
// the Capture's mu.
type syncState struct {
	waiting map[uint64]chan struct{}

	senderMu sync.Mutex
	sender   int // AF_PACKET socket in the capture's namespace, or 0
}

// Sync proves that c is live and drained: it sends a uniquely marked frame
// of [SentinelEtherType] through c's interface with a socket of its own,
// and returns nil once c has recorded it. The capture socket receives
// frames in the order the kernel hands them over, so every frame it was
// given before the sentinel left is then recorded and visible in Packets.
// A capture that no longer receives what passes through its interface (its
// socket failed, or the interface was replaced by another of the same name)
// makes Sync fail instead of letting an absence check pass on an empty
// record.
//
// Sync covers frames the kernel has already made, not those it will make:
// a test must first wait for evidence that the exchange that could produce
// them is over (a reply seen, a socket out of its closing states).
//
// When the interface is down, has no carrier or is gone, nothing can pass
// through it: the kernel drops a frame sent on a down or carrier-less
// interface at its queue, before any capture sees it, and a deleted one has
// no queue at all. Sync then reads what the capture socket had queued and
// returns an error wrapping [ErrNotRunning]; the record is complete as it
// stands, so an absence check may accept that error, while a test that
// expected traffic through the interface must not.
func (c *Capture) Sync() error {
	token := uint64(os.Getpid())<<40 ^ sentinelTokens.Add(1)
	seen := make(chan struct{})
	c.mu.Lock()
	if c.sync.waiting == nil {
		c.sync.waiting = map[uint64]chan struct{}{}
	}
	c.sync.waiting[token] = seen
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.sync.waiting, token)
		c.mu.Unlock()
	}()
	if err := c.sendSentinel(token); err != nil {
		// The kernel refuses a send on a down interface (ENETDOWN), a
		// deleted one (ENXIO, ENODEV) and one without carrier, whose
		// queue drops everything (ENOBUFS).
		if rerr := c.replaced(); rerr != nil {
			return rerr
		}
		if why := c.notRunning(); why != "" {
			c.Flush()
			return fmt.Errorf("netlab: sync capture on %s: %w: %s (%w)", c.Ifname, ErrNotRunning, why, err)
		}
		return fmt.Errorf("netlab: sync capture on %s: %w", c.Ifname, err)
	}
	timeout := time.NewTimer(syncTimeout)
	defer timeout.Stop()
	poll := time.NewTicker(syncPoll)
	defer poll.Stop()
	for {
		select {
		case <-seen:
			return nil
		case <-c.done:
			c.mu.Lock()
			err := c.err
			c.mu.Unlock()
			if err == nil {
				err = errors.New("stopped")
			}
			return fmt.Errorf("netlab: sync capture on %s: the capture ended before its sentinel arrived: %w", c.Ifname, err)
		case <-poll.C:
			// A frame can be lost without an error, for instance
			// while the kernel activates the queue of an interface
			// whose carrier just came back: send it again. Any copy
			// left after Sync was called, which is all it proves.
			_ = c.sendSentinel(token)
			if err := c.replaced(); err != nil {
				return err
			}
			if why := c.notRunning(); why != "" {
				// The sentinel was dropped, or is still queued
				// ahead of its capture: either way nothing more
				// passes, and Flush reads what was queued.
				c.Flush()
				return fmt.Errorf("netlab: sync capture on %s: %w: %s", c.Ifname, ErrNotRunning, why)
			}
		case <-timeout.C:
			return fmt.Errorf("netlab: sync capture on %s: its sentinel frame was not captured within %v: the capture is not live", c.Ifname, syncTimeout)
		}
	}
}

// replaced fails when c's interface was deleted and another of the same
// name took its place: c, bound to the old index, sees none of the new
// interface's frames, so it must not pass for a record of them.
func (c *Capture) replaced() error {
	link, err := c.host.nl.LinkByName(c.Ifname)
	if err != nil || link.Attrs().Index == c.index {
		return nil
	}
	return fmt.Errorf("netlab: sync capture on %s: the interface was replaced by another of the same name (index %d, the capture's was %d), which the capture does not see",
		c.Ifname, link.Attrs().Index, c.index)
}

// notRunning says why c's interface cannot pass frames, or "" when it can.
func (c *Capture) notRunning() string {
	link, err := c.host.nl.LinkByIndex(c.index)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) || errors.Is(err, unix.ENODEV) {
			return "it was deleted"
		}
		return "" // unknown: keep waiting for the sentinel or the timeout
	}
	flags := link.Attrs().RawFlags
	switch {
	case flags&unix.IFF_UP == 0:
		return "it is down"
	case flags&unix.IFF_LOWER_UP == 0:
		return "it has no carrier"
	}
	return ""
}

// sendSentinel sends the sentinel frame carrying token through c's
// interface, to the broadcast address.
func (c *Capture) sendSentinel(token uint64) error {
	c.sync.senderMu.Lock()
	defer c.sync.senderMu.Unlock()
	if c.sync.sender == 0 {
		err := c.host.Do(func() error {
			// Protocol 0: the socket only sends, it receives nothing.
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return os.NewSyscallError("socket", err)
			}
			c.sync.sender = fd
			return nil
		})
		if err != nil {
			return err
		}
	}
	frame := make([]byte, 0, 64)
	frame = append(frame, sentinelMagic...)
	frame = binary.BigEndian.AppendUint64(frame, token)
	to := &unix.SockaddrLinklayer{
		Protocol: htons(SentinelEtherType),
		Ifindex:  c.index,
		Halen:    6,
		Addr:     [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	return os.NewSyscallError("sendto", unix.Sendto(c.sync.sender, frame, 0, to))
}

func (c *Capture) closeSender() {
	c.sync.senderMu.Lock()
	defer c.sync.senderMu.Unlock()
	if c.sync.sender != 0 {
		unix.Close(c.sync.sender)
		c.sync.sender = 0
	}
}

// sentinel reports whether the frame of etherType with payload b is a
// sentinel, of this capture or another, and wakes the Sync waiting for it.
// Sentinels are never recorded.
func (c *Capture) sentinel(etherType uint16, b []byte) bool {
	if etherType != SentinelEtherType || !bytes.HasPrefix(b, sentinelMagic) {
		return false
	}
	rest := b[len(sentinelMagic):]
	if len(rest) < 8 {
		return true
	}
	token := binary.BigEndian.Uint64(rest)
	c.mu.Lock()
	if seen, ok := c.sync.waiting[token]; ok {
		close(seen)
		delete(c.sync.waiting, token)
	}
	c.mu.Unlock()
	return true
}
