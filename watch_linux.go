//go:build !bindtodev_stub

package bindtodev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"weak"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/internal/rtnl"
)

// The watcher is the one rtnetlink subscription of the process, shared by
// every waiter, following listener and following connection. It is opened
// by the first of them, in the network namespace of that caller's thread,
// and closed when the last one is gone, so that a program that never sets
// Follow never has one.
//
// Its link table is the order in which events arrived, not the truth: a
// socket is ended or kept only after asking the socket itself which
// interface it is bound to now (SO_BINDTODEVICE reads back the current name
// of the bound index, or ENODEV once it is gone).

// follower is a listener or packet socket that follows an interface. The
// watcher calls update from its own goroutine, one call at a time, each
// time the interface's state may have changed, an address was added to it,
// or the subscription failed (st.err).
type follower interface {
	update(st linkState)
}

// linkState is what the watcher knows of one name.
type linkState struct {
	index int32 // 0 while no interface has the name
	up    bool  // IFF_UP
	err   error // the subscription failed; nothing will change any more
}

func (st linkState) usable() bool { return st.index > 0 && st.up }

type watcher struct {
	file  *os.File // the subscription socket
	rc    syscall.RawConn
	netns uint64 // namespace cookie, 0 when the kernel cannot tell
	done  chan struct{}

	refs   int         // guarded by watchers.mu
	linger *time.Timer // guarded by watchers.mu: closes w unless taken again

	mu      sync.Mutex
	links   map[int32]rtnl.Link
	names   map[string]int32
	epoch   uint64        // counts the changes of names, indexes and IFF_UP
	changed chan struct{} // closed at each change of epoch
	subs    map[string]map[follower]struct{}
	conns   map[int32]map[*tracked]struct{} // following connections by bound index
	err     error
}

// watchers holds the process's watcher while anything uses it.
var watchers struct {
	mu sync.Mutex
	w  *watcher
}

// errOtherNamespace is returned to a follower created from a thread in
// another network namespace than the one watched.
var errOtherNamespace = errors.New("bindtodev: Follow watches the network namespace of the thread that started the first follower, and this thread is in another")

// acquireWatcher returns the process's watcher, opening it in the calling
// thread's namespace when there is none. checkNS refuses a caller whose
// thread is in another namespace than the one watched. Every call is paired
// with release.
func acquireWatcher(checkNS bool) (*watcher, error) {
	watchers.mu.Lock()
	if w := watchers.w; w != nil {
		w.refs++
		if w.linger != nil {
			w.linger.Stop()
			w.linger = nil
		}
		watchers.mu.Unlock()
		if checkNS {
			if err := w.checkThread(); err != nil {
				w.release()
				return nil, err
			}
		}
		return w, nil
	}
	defer watchers.mu.Unlock()
	w, err := startWatcher()
	if err != nil {
		return nil, fmt.Errorf("bindtodev: watch interfaces: %w", err)
	}
	w.refs = 1
	watchers.w = w
	return w, nil
}

// checkThread refuses a caller whose thread is in another namespace than
// the one w watches.
func (w *watcher) checkThread() error {
	if w.netns == 0 {
		return nil // before Linux 5.14, namespaces cannot be told apart
	}
	ns, err := rtnl.ThreadNetns()
	if err == nil && ns != w.netns {
		err = errOtherNamespace
	}
	return err
}

// ref takes one more reference on w, which the caller already holds.
func (w *watcher) ref() {
	watchers.mu.Lock()
	w.refs++
	watchers.mu.Unlock()
}

// release drops a reference; the last one closes the subscription and waits
// for its goroutine to end.
func (w *watcher) release() { w.drop(false) }

// releaseLater drops a reference of a connection or a dial. When it is the
// last, the subscription stays open for lingerTime in case another follower
// comes, since a program dialing in a loop would otherwise open it again
// after every garbage collection.
func (w *watcher) releaseLater() { w.drop(true) }

// lingerTime is how long an unused watch stays open after releaseLater.
const lingerTime = time.Second

func (w *watcher) drop(linger bool) {
	watchers.mu.Lock()
	w.refs--
	if w.refs > 0 {
		watchers.mu.Unlock()
		return
	}
	if linger && watchers.w == w {
		w.linger = time.AfterFunc(lingerTime, w.expire)
		watchers.mu.Unlock()
		return
	}
	w.closeLocked()
}

// expire closes a watch that lingered unused.
func (w *watcher) expire() {
	watchers.mu.Lock()
	if w.refs > 0 || w.linger == nil {
		watchers.mu.Unlock()
		return
	}
	w.closeLocked()
}

// closeLocked closes w and waits for its goroutine; it unlocks watchers.mu.
func (w *watcher) closeLocked() {
	if watchers.w == w {
		watchers.w = nil
	}
	if w.linger != nil {
		w.linger.Stop()
		w.linger = nil
	}
	watchers.mu.Unlock()
	w.file.Close()
	<-w.done
}

func startWatcher() (*watcher, error) {
	// Subscribe first, then read the table: a change made in between is
	// queued on the socket and applied after the dump.
	fd, err := rtnl.Subscribe(unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR)
	if err != nil {
		return nil, err
	}
	file := os.NewFile(uintptr(fd), "rtnetlink")
	fail := func(err error) (*watcher, error) {
		file.Close()
		return nil, err
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return fail(err)
	}
	netns, err := rtnl.SocketNetns(fd)
	if err != nil {
		return fail(err)
	}
	// The loop's goroutine re-listens, so its thread must be in this
	// namespace; it enters the namespace of this thread when it starts
	// in another (a caller locked to a thread moved with setns).
	nsfd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(os.NewSyscallError("open", err))
	}
	links, err := rtnl.DumpLinks()
	if err != nil {
		unix.Close(nsfd)
		return fail(err)
	}
	w := &watcher{
		file:    file,
		rc:      rc,
		netns:   netns,
		done:    make(chan struct{}),
		links:   map[int32]rtnl.Link{},
		names:   map[string]int32{},
		changed: make(chan struct{}),
		subs:    map[string]map[follower]struct{}{},
		conns:   map[int32]map[*tracked]struct{}{},
	}
	for _, l := range links {
		w.links[l.Index] = l
		w.names[l.Name] = l.Index
	}
	ready := make(chan error, 1)
	go w.loop(nsfd, ready)
	if err := <-ready; err != nil {
		<-w.done
		return fail(err)
	}
	return w, nil
}

// loop reads the subscription until release closes it.
func (w *watcher) loop(nsfd int, ready chan<- error) {
	defer close(w.done)
	runtime.LockOSThread()
	entered, err := enterNetns(nsfd)
	unix.Close(nsfd)
	if !entered {
		// A thread that entered a namespace dies with the goroutine;
		// one that did not goes back to the pool.
		defer runtime.UnlockOSThread()
	}
	ready <- err
	if err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	var events []rtnl.Event
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := w.rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		switch {
		case err != nil:
			return // closed by release
		case errors.Is(rerr, unix.ENOBUFS):
			// Events were lost: the table is read again.
			if err := w.resync(); err != nil {
				w.fail(err)
				return
			}
			continue
		case errors.Is(rerr, unix.EINTR):
			continue
		case rerr != nil:
			w.fail(os.NewSyscallError("recvfrom", rerr))
			return
		}
		// Only the kernel speaks for the kernel.
		if !rtnl.FromKernel(from) {
			continue
		}
		events = rtnl.ParseEvents(buf[:n], events[:0])
		w.apply(events, false)
	}
}

// enterNetns moves the calling thread into the namespace nsfd unless it is
// there already, and reports whether it moved.
func enterNetns(nsfd int) (bool, error) {
	var want, have unix.Stat_t
	if err := unix.Fstat(nsfd, &want); err != nil {
		return false, os.NewSyscallError("fstat", err)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &have); err != nil {
		return false, os.NewSyscallError("stat", err)
	}
	if want.Dev == have.Dev && want.Ino == have.Ino {
		return false, nil
	}
	if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("enter the network namespace of the first follower: %w", os.NewSyscallError("setns", err))
	}
	return true, nil
}

// resync replaces the table with a fresh dump, as a series of events: the
// interfaces that vanished, then every interface present. Followers are
// all told, since address events may have been lost too.
func (w *watcher) resync() error {
	resyncs.Add(1)
	links, err := rtnl.DumpLinks()
	if err != nil {
		return err
	}
	present := make(map[int32]bool, len(links))
	for _, l := range links {
		present[l.Index] = true
	}
	var events []rtnl.Event
	w.mu.Lock()
	for index, l := range w.links {
		if !present[index] {
			events = append(events, rtnl.Event{Kind: unix.RTM_DELLINK, Link: l})
		}
	}
	w.mu.Unlock()
	for _, l := range links {
		events = append(events, rtnl.Event{Kind: unix.RTM_NEWLINK, Link: l})
	}
	w.apply(events, true)
	return nil
}

// resyncs counts resync's calls, for the tests.
var resyncs atomic.Int64

// fail ends the watcher's usefulness: waiters and followers get err.
func (w *watcher) fail(err error) {
	err = fmt.Errorf("bindtodev: interface watch failed: %w", err)
	w.mu.Lock()
	w.err = err
	close(w.changed)
	w.changed = make(chan struct{})
	var subs []follower
	for _, set := range w.subs {
		for f := range set {
			subs = append(subs, f)
		}
	}
	w.mu.Unlock()
	for _, f := range subs {
		f.update(linkState{err: err})
	}
}

// ending is an interface index that lost its name.
type ending struct {
	index int32
	name  string
}

// apply updates the table with events, then tells the followers of the
// names concerned and checks the connections bound to indexes that lost
// their name. everyone tells every follower, after a resync.
func (w *watcher) apply(events []rtnl.Event, everyone bool) {
	w.mu.Lock()
	epoch := w.epoch
	touched := map[string]bool{}
	var ends []ending
	for _, ev := range events {
		switch ev.Kind {
		case unix.RTM_NEWLINK:
			l := ev.Link
			old, had := w.links[l.Index]
			w.links[l.Index] = l
			if had && old.Name != l.Name {
				// A rename: the old name is gone from this index.
				if w.names[old.Name] == l.Index {
					delete(w.names, old.Name)
				}
				ends = append(ends, ending{l.Index, old.Name})
				touched[old.Name] = true
			}
			if prev, ok := w.names[l.Name]; ok && prev != l.Index {
				// The name moved without a word about its old
				// index: whatever is bound there is checked.
				ends = append(ends, ending{prev, l.Name})
			}
			if !had || old.Name != l.Name || old.Up != l.Up || w.names[l.Name] != l.Index {
				w.names[l.Name] = l.Index
				touched[l.Name] = true
				w.epoch++
			}
		case unix.RTM_DELLINK:
			l := ev.Link
			if old, had := w.links[l.Index]; had {
				l.Name = old.Name
				delete(w.links, l.Index)
			}
			if w.names[l.Name] == l.Index {
				delete(w.names, l.Name)
			}
			ends = append(ends, ending{l.Index, l.Name})
			touched[l.Name] = true
			w.epoch++
		case unix.RTM_NEWADDR:
			if l, ok := w.links[ev.Index]; ok {
				touched[l.Name] = true
			}
		}
	}
	if w.epoch != epoch {
		close(w.changed)
		w.changed = make(chan struct{})
	}
	type call struct {
		f  follower
		st linkState
	}
	var calls []call
	for name, set := range w.subs {
		if !everyone && !touched[name] {
			continue
		}
		st := w.stateLocked(name)
		for f := range set {
			calls = append(calls, call{f, st})
		}
	}
	var check []*tracked
	for _, e := range ends {
		for t := range w.conns[e.index] {
			if t.name == e.name {
				delete(w.conns[e.index], t)
				t.index = 0
				check = append(check, t)
			}
		}
		if len(w.conns[e.index]) == 0 {
			delete(w.conns, e.index)
		}
	}
	w.mu.Unlock()
	// Connections first: they are what a user waits on.
	for _, t := range check {
		w.recheck(t)
	}
	for _, c := range calls {
		c.f.update(c.st)
	}
}

func (w *watcher) stateLocked(name string) linkState {
	if w.err != nil {
		return linkState{err: w.err}
	}
	index := w.names[name]
	return linkState{index: index, up: w.links[index].Up}
}

// subscribe makes f receive the updates of name, and returns its state now.
func (w *watcher) subscribe(name string, f follower) linkState {
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.subs[name]
	if set == nil {
		set = map[follower]struct{}{}
		w.subs[name] = set
	}
	set[f] = struct{}{}
	return w.stateLocked(name)
}

func (w *watcher) unsubscribe(name string, f follower) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.subs[name], f)
	if len(w.subs[name]) == 0 {
		delete(w.subs, name)
	}
}

// snapshot returns the state of name and the epoch it belongs to.
func (w *watcher) snapshot(name string) (linkState, uint64, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stateLocked(name), w.epoch, w.changed
}

// waitUsable blocks until an interface named name exists and is up, or
// ctx is done. With after set, it first waits for the table to change from
// epoch: the caller found the interface missing although the table said
// otherwise.
func (w *watcher) waitUsable(ctx context.Context, name string, after bool, epoch uint64) error {
	for {
		st, now, changed := w.snapshot(name)
		if st.err != nil {
			return st.err
		}
		if st.usable() && (!after || now != epoch) {
			// The table may lag behind the kernel: ask it.
			up, err := w.kernelSaysUp(name)
			if err != nil {
				return err
			}
			if up {
				return nil
			}
			after, epoch = true, now
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// refuseAltName fails for a name that is an alternative name of an
// existing interface: the kernel announces links by their own names only,
// so a follower of an alternative name would never hear of its deletion,
// and would keep a socket on a dead index that another interface may take.
func (w *watcher) refuseAltName(name string) error {
	var primary string
	var err error
	if cerr := w.rc.Control(func(fd uintptr) { primary, err = rtnl.PrimaryName(int(fd), name) }); cerr != nil {
		return cerr
	}
	if err != nil || primary == name {
		return nil // no such interface (yet), or its own name
	}
	return &Error{Op: "bind", Interface: name, Err: fmt.Errorf("%w: it is an alternative name of %q", errFollowAltName, primary)}
}

// errFollowAltName is why Follow refuses an alternative name.
var errFollowAltName = errors.New("follow needs the interface's own name")

func (w *watcher) kernelSaysUp(name string) (bool, error) {
	var up bool
	var err error
	if cerr := w.rc.Control(func(fd uintptr) { up, err = rtnl.LinkUp(int(fd), name) }); cerr != nil {
		return false, cerr
	}
	return up, err
}

// tracked is a following connection, held weakly: the watcher never keeps
// a connection alive, and forgets it once it is collected.
type tracked struct {
	name  string
	index int32 // the index it is filed under, 0 when not filed; w.mu
	conn  weakConn
}

type weakConn interface {
	// get returns the connection, or nil once it was collected.
	get() syscall.Conn
}

type weakRef[T any, P interface {
	*T
	syscall.Conn
}] struct{ p weak.Pointer[T] }

func (r weakRef[T, P]) get() syscall.Conn {
	if v := r.p.Value(); v != nil {
		return P(v)
	}
	return nil
}

// track makes the connection c, bound to name, end when its interface is
// deleted. It takes over a reference to w from the caller, which the
// connection holds until it is collected. index is the index the caller believes c is bound to: exactly
// (read from the listener it was accepted from) when epoch is 0, or as the
// table said at epoch before the socket was bound.
func track[T any, P interface {
	*T
	syscall.Conn
}](w *watcher, c P, name string, index int32, epoch uint64) {
	t := &tracked{name: name, conn: weakRef[T, P]{weak.Make((*T)(c))}}
	runtime.AddCleanup((*T)(c), w.untrack, t)
	w.mu.Lock()
	defer w.mu.Unlock()
	if index > 0 && w.names[name] == index && (epoch == 0 || epoch == w.epoch) {
		// The table has not changed since: events about this index
		// are still to come, and will find the connection.
		w.fileLocked(t, index)
		return
	}
	// Something changed meanwhile: ask the socket, with the table held
	// still, so that no event can pass between the answer and the filing.
	w.checkLocked(t)
}

func (w *watcher) fileLocked(t *tracked, index int32) {
	set := w.conns[index]
	if set == nil {
		set = map[*tracked]struct{}{}
		w.conns[index] = set
	}
	set[t] = struct{}{}
	t.index = index
}

// checkLocked files t under the index its socket is bound to, or shuts the
// socket down when that index no longer carries t's name.
func (w *watcher) checkLocked(t *tracked) {
	if index, alive := checkSocket(t); alive {
		w.fileLocked(t, index)
	}
}

// recheck is checkLocked for the watcher's goroutine, the only one that
// changes the table, which therefore need not be held while asking.
func (w *watcher) recheck(t *tracked) {
	index, alive := checkSocket(t)
	if alive {
		w.mu.Lock()
		w.fileLocked(t, index)
		w.mu.Unlock()
	}
}

// checkSocket asks t's socket for its interface. It shuts the socket down
// and reports false when the interface is gone or renamed, and reports
// false also when the user has closed the connection or it was collected:
// RawConn.Control holds the descriptor while it runs and refuses a closed
// one, so a number reused by another socket is never touched.
func checkSocket(t *tracked) (int32, bool) {
	sc := t.conn.get()
	if sc == nil {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var index int
	alive := false
	err = rc.Control(func(fd uintptr) {
		name, err := device(fd)
		if err == nil && name == t.name {
			index, err = boundIndex(fd)
			alive = err == nil && index > 0
		}
		if !alive {
			// A TCP Read returns io.EOF, Write fails with EPIPE;
			// the user still closes the connection.
			_ = unix.Shutdown(int(fd), unix.SHUT_RDWR)
		}
	})
	if err != nil {
		return 0, false
	}
	if _, stream := sc.(*net.TCPConn); !alive && !stream {
		// A datagram socket that was shut down still blocks a
		// non-blocking reader (recvmsg says EAGAIN); a read deadline
		// in the past wakes it. Its writes fail with ENODEV already.
		if dc, ok := sc.(interface{ SetReadDeadline(time.Time) error }); ok {
			_ = dc.SetReadDeadline(time.Unix(1, 0))
		}
	}
	return int32(index), alive
}

// untrack runs once the connection of t was collected.
func (w *watcher) untrack(t *tracked) {
	w.mu.Lock()
	if t.index != 0 {
		delete(w.conns[t.index], t)
		if len(w.conns[t.index]) == 0 {
			delete(w.conns, t.index)
		}
		t.index = 0
	}
	w.mu.Unlock()
	w.releaseLater()
}
