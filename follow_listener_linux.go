//go:build !bindtodev_stub

package bindtodev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/bindtodev/bindtodev/internal/rtnl"
)

// addrGrace is how long a following socket waits, once its interface is up,
// for the address it listens on to be assigned before it reports
// EADDRNOTAVAIL: a re-created interface comes up without addresses, and
// IPv6 keeps a new address tentative during duplicate address detection.
const addrGrace = 3 * time.Second

// socket is what a following listener or packet socket opens: a
// *net.TCPListener, *net.UDPConn or *net.IPConn.
type socket interface {
	Close() error
	SyscallConn() (syscall.RawConn, error)
}

// follow is the state shared by a following listener and a following
// packet socket: the socket of the interface's current incarnation, if
// any, and what the next one must look like.
type follow struct {
	w       *watcher
	ifname  string
	network string
	host    string // the address to listen on, without its port
	hasPort bool
	open    func(address string) (socket, error)

	mu   sync.Mutex
	port int // 0 until the first socket chose one
	// lastAddr is the address of the last socket, which the next one
	// takes again.
	lastAddr net.Addr
	sock     socket
	index    int32  // sock's interface index
	gen      uint64 // counts the sockets closed by the follower
	changed  chan struct{}
	err      error // for the next Accept or ReadFrom
	lastErr  error // why there is no socket although the interface is up
	grace    *time.Timer
	closed   bool
	// Deadlines of a packet socket, applied to every socket it opens.
	readDeadline, writeDeadline time.Time
}

func (f *follow) address() string {
	if !f.hasPort {
		return f.host
	}
	return net.JoinHostPort(f.host, strconv.Itoa(f.port))
}

// start subscribes f and opens its first socket at once when the
// interface is usable, returning that socket's error as Listen would.
func (f *follow) start() error {
	w, err := acquireWatcher(true)
	if err != nil {
		return err
	}
	if err := w.refuseAltName(f.ifname); err != nil {
		w.release()
		return err
	}
	f.w = w
	f.changed = make(chan struct{})
	st := w.subscribe(f.ifname, f)
	usable := st.usable()
	if !usable && st.err == nil {
		// The table may not have heard of an interface created a
		// moment ago: the kernel decides whether to listen now.
		usable, _ = w.kernelSaysUp(f.ifname)
	}
	f.mu.Lock()
	if usable && f.sock == nil {
		err = f.openLocked()
	}
	f.mu.Unlock()
	if err != nil && !errors.Is(err, syscall.ENODEV) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		f.close()
		return err
	}
	return nil
}

func (f *follow) update(st linkState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	if st.err != nil {
		f.setErrLocked(st.err)
		return
	}
	if st.index == 0 {
		// Gone: why the interface that was could not be listened on
		// is no longer why there is no socket, and its grace is over.
		f.lastErr = nil
		if f.grace != nil {
			f.grace.Stop()
			f.grace = nil
		}
	}
	if f.sock != nil {
		if st.index == f.index || f.socketAliveLocked() {
			return // down and up is not deletion
		}
		f.dropLocked()
	}
	if st.usable() {
		if err := f.openLocked(); err != nil && !errors.Is(err, syscall.ENODEV) {
			if !errors.Is(err, syscall.EADDRNOTAVAIL) {
				f.setErrLocked(f.lastErr)
			}
		}
	}
}

// socketAliveLocked asks the socket whether its interface still carries
// the name: the watcher's table may lag behind the kernel.
func (f *follow) socketAliveLocked() bool {
	rc, err := f.sock.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	err = rc.Control(func(fd uintptr) {
		name, err := device(fd)
		alive = err == nil && name == f.ifname
	})
	return err == nil && alive
}

// dropLocked closes the socket of an interface that is gone.
func (f *follow) dropLocked() {
	f.sock.Close()
	f.sock, f.index = nil, 0
	f.gen++
	f.broadcastLocked()
}

func (f *follow) broadcastLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// openLocked opens a socket on the interface. EADDRNOTAVAIL is reported
// only if it persists for addrGrace, ENODEV not at all: the interface
// vanished again and its next incarnation will be tried.
func (f *follow) openLocked() error {
	address := f.address()
	s, err := f.open(address)
	if err == nil {
		err = f.adoptLocked(s)
		if err != nil {
			s.Close()
		}
	}
	if err != nil {
		f.lastErr = fmt.Errorf("bindtodev: listen on %q at %s: %w", f.ifname, address, err)
		if errors.Is(err, syscall.EADDRNOTAVAIL) && f.grace == nil {
			f.grace = time.AfterFunc(addrGrace, f.graceOver)
		}
		return err
	}
	return nil
}

func (f *follow) adoptLocked(s socket) error {
	rc, err := s.SyscallConn()
	if err != nil {
		return err
	}
	var index int
	var netns uint64
	if cerr := rc.Control(func(fd uintptr) {
		index, err = boundIndex(fd)
		if err == nil {
			netns, err = rtnl.SocketNetns(int(fd))
		}
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	if f.w.netns != 0 && netns != f.w.netns {
		return errOtherNamespace
	}
	f.sock, f.index = s, int32(index)
	f.lastAddr = f.localAddrLocked()
	if f.hasPort && f.port == 0 {
		f.port = portOf(f.lastAddr)
	}
	f.lastErr = nil
	if f.grace != nil {
		f.grace.Stop()
		f.grace = nil
	}
	if f.readDeadline != (time.Time{}) || f.writeDeadline != (time.Time{}) {
		if pc, ok := s.(net.PacketConn); ok {
			_ = pc.SetReadDeadline(f.readDeadline)
			_ = pc.SetWriteDeadline(f.writeDeadline)
		}
	}
	f.broadcastLocked()
	return nil
}

func (f *follow) graceOver() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed && f.sock == nil && f.lastErr != nil {
		f.err = f.lastErr
		f.broadcastLocked()
	}
	f.grace = nil
}

// setErrLocked hands err to the next Accept or ReadFrom, which wakes.
func (f *follow) setErrLocked(err error) {
	f.err = err
	f.broadcastLocked()
}

func (f *follow) localAddrLocked() net.Addr {
	switch s := f.sock.(type) {
	case net.Listener:
		return s.Addr()
	case net.PacketConn:
		return s.LocalAddr()
	}
	return nil
}

func portOf(a net.Addr) int {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.Port
	case *net.UDPAddr:
		return a.Port
	}
	return 0
}

// addr is the address of the current socket, or of the next one.
func (f *follow) addr() net.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sock != nil {
		return f.localAddrLocked()
	}
	if f.lastAddr != nil {
		return f.lastAddr
	}
	ip, zone := splitZone(f.host)
	switch f.network[:2] {
	case "tc":
		return &net.TCPAddr{IP: ip, Port: f.port, Zone: zone}
	case "ud":
		return &net.UDPAddr{IP: ip, Port: f.port, Zone: zone}
	}
	return &net.IPAddr{IP: ip, Zone: zone}
}

func splitZone(host string) (net.IP, string) {
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == '%' {
			return net.ParseIP(host[:i]), host[i+1:]
		}
	}
	return net.ParseIP(host), ""
}

// current returns the socket to use now, or nil with the channel that says
// when to look again; a pending error comes first.
func (f *follow) current() (s socket, gen uint64, index int32, changed <-chan struct{}, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, 0, 0, nil, net.ErrClosed
	}
	if f.err != nil {
		err, f.err = f.err, nil
		return nil, 0, 0, nil, err
	}
	return f.sock, f.gen, f.index, f.changed, nil
}

// stale reports whether the socket of generation gen was closed by the
// follower or by Close, so that its error means "look again".
func (f *follow) stale(gen uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen != gen || f.closed
}

func (f *follow) close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return net.ErrClosed
	}
	f.closed = true
	var err error
	if f.sock != nil {
		err = f.sock.Close()
		f.sock = nil
	}
	if f.grace != nil {
		f.grace.Stop()
		f.grace = nil
	}
	f.broadcastLocked()
	f.mu.Unlock()
	if f.w != nil {
		f.w.unsubscribe(f.ifname, f)
		f.w.release()
	}
	return err
}

// followListener is the net.Listener of ListenConfig.Follow.
type followListener struct{ f *follow }

func (l followListener) Accept() (net.Conn, error) {
	f := l.f
	for {
		s, gen, index, changed, err := f.current()
		if err != nil {
			return nil, &net.OpError{Op: "accept", Net: f.network, Addr: f.addr(), Err: err}
		}
		if s == nil {
			<-changed
			continue
		}
		c, err := s.(*net.TCPListener).AcceptTCP()
		if err != nil {
			if f.stale(gen) {
				continue
			}
			return nil, err
		}
		f.w.ref()
		track(f.w, c, f.ifname, index, 0)
		return c, nil
	}
}

func (l followListener) Close() error {
	if err := l.f.close(); err != nil {
		return &net.OpError{Op: "close", Net: l.f.network, Addr: l.f.addr(), Err: err}
	}
	return nil
}

func (l followListener) Addr() net.Addr { return l.f.addr() }

// followPacketConn is the net.PacketConn of ListenConfig.Follow.
type followPacketConn struct{ f *follow }

func (p followPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	f := p.f
	for {
		s, gen, _, changed, err := f.current()
		if err != nil {
			return 0, nil, &net.OpError{Op: "read", Net: f.network, Addr: f.addr(), Err: err}
		}
		if s == nil {
			if err := f.waitAbsent(changed); err != nil {
				return 0, nil, &net.OpError{Op: "read", Net: f.network, Addr: f.addr(), Err: err}
			}
			continue
		}
		n, from, err := s.(net.PacketConn).ReadFrom(b)
		if err != nil && f.stale(gen) {
			continue
		}
		return n, from, err
	}
}

// waitAbsent waits for a change while there is no socket, until the read
// deadline.
func (f *follow) waitAbsent(changed <-chan struct{}) error {
	f.mu.Lock()
	deadline := f.readDeadline
	f.mu.Unlock()
	if deadline.IsZero() {
		<-changed
		return nil
	}
	d := time.Until(deadline)
	if d <= 0 {
		return os.ErrDeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-changed:
		return nil
	case <-t.C:
		return os.ErrDeadlineExceeded
	}
}

func (p followPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	f := p.f
	f.mu.Lock()
	s, gen, closed, why := f.sock, f.gen, f.closed, f.lastErr
	f.mu.Unlock()
	fail := func(err error) (int, error) {
		return 0, &net.OpError{Op: "write", Net: f.network, Source: f.addr(), Addr: addr, Err: err}
	}
	if closed {
		return fail(net.ErrClosed)
	}
	if s == nil {
		// Fail closed: with no socket on the interface, nothing is
		// sent anywhere.
		if why != nil {
			return fail(why)
		}
		return fail(f.absent())
	}
	n, err := s.(net.PacketConn).WriteTo(b, addr)
	if err != nil && errors.Is(err, net.ErrClosed) && f.stale(gen) && !f.isClosed() {
		return fail(f.absent())
	}
	return n, err
}

func (f *follow) absent() error {
	return fmt.Errorf("bindtodev: interface %q does not exist: %w", f.ifname, syscall.ENODEV)
}

func (f *follow) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (p followPacketConn) Close() error {
	if err := p.f.close(); err != nil {
		return &net.OpError{Op: "close", Net: p.f.network, Addr: p.f.addr(), Err: err}
	}
	return nil
}

func (p followPacketConn) LocalAddr() net.Addr { return p.f.addr() }

func (p followPacketConn) SetDeadline(t time.Time) error {
	return p.f.setDeadlines(&t, &t)
}

func (p followPacketConn) SetReadDeadline(t time.Time) error {
	return p.f.setDeadlines(&t, nil)
}

func (p followPacketConn) SetWriteDeadline(t time.Time) error {
	return p.f.setDeadlines(nil, &t)
}

func (f *follow) setDeadlines(read, write *time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return &net.OpError{Op: "set", Net: f.network, Err: net.ErrClosed}
	}
	if read != nil {
		f.readDeadline = *read
	}
	if write != nil {
		f.writeDeadline = *write
	}
	if pc, ok := f.sock.(net.PacketConn); ok {
		if read != nil {
			_ = pc.SetReadDeadline(*read)
		}
		if write != nil {
			_ = pc.SetWriteDeadline(*write)
		}
	}
	// A reader waiting for the interface looks at its deadline again.
	f.broadcastLocked()
	return nil
}

// listenFollow is Listen with Follow set.
func (lc *ListenConfig) listenFollow(ctx context.Context, network, address string) (net.Listener, error) {
	nl, err := lc.netListenConfig(true)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		// Unix domain sockets meet no interface.
		return nl.Listen(ctx, network, address)
	}
	a, err := net.ResolveTCPAddr(network, address)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	if a.IP.IsLoopback() {
		// Loopback sockets do not depend on Interface: nothing to follow.
		return nl.Listen(ctx, network, address)
	}
	f := &follow{ifname: lc.Interface, network: network, host: hostOf(a.IP, a.Zone), hasPort: true, port: a.Port}
	f.open = func(address string) (socket, error) {
		ln, err := nl.Listen(context.Background(), network, address)
		if err != nil {
			return nil, err
		}
		return ln.(*net.TCPListener), nil
	}
	if err := f.start(); err != nil {
		return nil, listenError(network, f.addr(), err)
	}
	return followListener{f}, nil
}

// listenPacketFollow is ListenPacket with Follow set.
func (lc *ListenConfig) listenPacketFollow(ctx context.Context, network, address string) (net.PacketConn, error) {
	nl, err := lc.netListenConfig(true)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	var ip net.IP
	var zone string
	port, hasPort := 0, true
	switch network {
	case "udp", "udp4", "udp6":
		a, err := net.ResolveUDPAddr(network, address)
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: err}
		}
		ip, zone, port = a.IP, a.Zone, a.Port
	default:
		a, err := net.ResolveIPAddr(network, address)
		if err != nil {
			// Unix domain sockets, or a network that net refuses with
			// its own error.
			return nl.ListenPacket(ctx, network, address)
		}
		ip, zone, hasPort = a.IP, a.Zone, false
	}
	if ip.IsLoopback() {
		return nl.ListenPacket(ctx, network, address)
	}
	f := &follow{ifname: lc.Interface, network: network, host: hostOf(ip, zone), hasPort: hasPort, port: port}
	f.open = func(address string) (socket, error) {
		pc, err := nl.ListenPacket(context.Background(), network, address)
		if err != nil {
			return nil, err
		}
		return pc.(socket), nil
	}
	if err := f.start(); err != nil {
		return nil, listenError(network, f.addr(), err)
	}
	return followPacketConn{f}, nil
}

func hostOf(ip net.IP, zone string) string {
	if ip == nil {
		return ""
	}
	if zone != "" {
		return ip.String() + "%" + zone
	}
	return ip.String()
}

// listenError gives a failure of the first listen the form of net's own.
func listenError(network string, addr net.Addr, err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return err
	}
	return &net.OpError{Op: "listen", Net: network, Addr: addr, Err: err}
}
