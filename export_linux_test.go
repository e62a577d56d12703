//go:build !bindtodev_stub

package bindtodev

import (
	"fmt"

	"github.com/bindtodev/bindtodev/internal/rtnl"
)

// Test hooks into the watcher, for the external tests.

// WatcherRunning reports whether the process has an interface watch open.
func WatcherRunning() bool {
	watchers.mu.Lock()
	defer watchers.mu.Unlock()
	return watchers.w != nil
}

// StallWatcher holds the watcher's table, so that its goroutine stops at
// the next event and the kernel's queue fills, and shrinks the queue to
// bytes; the returned function lets it go on. It returns nil when no watch
// is open.
func StallWatcher(bytes int) func() {
	watchers.mu.Lock()
	w := watchers.w
	watchers.mu.Unlock()
	if w == nil {
		return nil
	}
	rc := w.rc
	_ = rc.Control(func(fd uintptr) { _ = rtnl.SetRcvbuf(int(fd), bytes) })
	w.mu.Lock()
	return func() {
		_ = rc.Control(func(fd uintptr) { _ = rtnl.SetRcvbuf(int(fd), 1<<20) })
		w.mu.Unlock()
	}
}

// Resyncs counts the watcher's re-reads of the link table after overruns.
func Resyncs() int {
	return int(resyncs.Load())
}

// FollowState reports, for a following listener or packet socket, whether
// it has a socket now and how many sockets it closed because their
// interface went away.
func FollowState(c any) (listening bool, dropped uint64) {
	var f *follow
	switch c := c.(type) {
	case followListener:
		f = c.f
	case followPacketConn:
		f = c.f
	default:
		panic("not a follower")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sock != nil, f.gen
}

// WatcherUsers describes who keeps the watch open, for failure messages.
func WatcherUsers() string {
	watchers.mu.Lock()
	w := watchers.w
	refs := 0
	if w != nil {
		refs = w.refs
	}
	watchers.mu.Unlock()
	if w == nil {
		return "no watch"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	conns := 0
	for _, set := range w.conns {
		conns += len(set)
	}
	return fmt.Sprintf("%d references, %d filed connections, %d followed names", refs, conns, len(w.subs))
}
