package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Lab owns the interfaces and namespaces it creates and removes them on
// Close. Each Lab has a small number, unique in the process, that names its
// interfaces and picks its addresses, so labs may run in parallel.
type Lab struct {
	// N is the lab's number, from 1 to 250.
	N int
	// Local is the namespace the process runs in (the lab's "host").
	Local *Host

	mu    sync.Mutex
	hosts []*Host
	links []string // interfaces created in Local, deleted on Close
}

var lastLab atomic.Int32

// New starts a lab in the process's private namespace. It fails when
// [Enter] did not put the process in one.
func New() (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	n := int(lastLab.Add(1))
	if n > 250 {
		return nil, errors.New("netlab: more than 250 labs in one process")
	}
	fd, err := unix.FcntlInt(uintptr(labNS), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netlab: open own namespace: %w", err)
	}
	local, err := newHost("local", netns.NsHandle(fd))
	if err != nil {
		return nil, err
	}
	return &Lab{N: n, Local: local}, nil
}

// NewT is New for tests: it registers Close with t.Cleanup, skips t with the
// reason when no lab can be made, and fails t instead when the environment
// variable BINDTODEV_LAB is "require" or when building the lab failed.
func NewT(t testing.TB) *Lab {
	t.Helper()
	SkipUnavailable(t)
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return l
}

// SkipUnavailable skips t when the process is not in a lab, or fails it
// when BINDTODEV_LAB=require.
func SkipUnavailable(t testing.TB) {
	t.Helper()
	err := Available()
	if err == nil {
		return
	}
	if os.Getenv(RequireEnv) == "require" {
		t.Fatalf("%s=require but the lab is unavailable: %v", RequireEnv, err)
	}
	t.Skipf("no network lab: %v", err)
}

// Close deletes the lab's interfaces and releases its namespaces. Sockets
// still open in a peer's namespace keep that namespace alive until they are
// closed.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, name := range l.links {
		link, err := l.Local.nl.LinkByName(name)
		if err != nil {
			var notFound netlink.LinkNotFoundError
			if !errors.As(err, &notFound) {
				errs = append(errs, err)
			}
			continue
		}
		if err := l.Local.nl.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
		}
	}
	for _, h := range append(l.hosts, l.Local) {
		h.close()
	}
	l.links, l.hosts = nil, nil
	return errors.Join(errs...)
}

// Host is a network namespace of the lab: the process's own, or a peer's.
type Host struct {
	// Name is a label used in messages and by the servers that say who
	// they are.
	Name string

	ns netns.NsHandle
	nl *netlink.Handle

	mu      sync.Mutex
	closers []func()
}

// onClose registers fn to run when the lab closes h, before its namespace
// is released.
func (h *Host) onClose(fn func()) {
	h.mu.Lock()
	h.closers = append(h.closers, fn)
	h.mu.Unlock()
}

func newHost(name string, ns netns.NsHandle) (*Host, error) {
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlab: netlink handle for %s: %w", name, err)
	}
	return &Host{Name: name, ns: ns, nl: nl}, nil
}

func (h *Host) close() {
	h.mu.Lock()
	closers := h.closers
	h.closers = nil
	h.mu.Unlock()
	for _, fn := range closers {
		fn()
	}
	h.nl.Close()
	h.ns.Close()
}

// NewHost creates a peer namespace with lo up and IPv6 duplicate address
// detection off.
func (l *Lab) NewHost(name string) (*Host, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread never returns to the process's namespace: it exits
		// with the goroutine, because it stays locked.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		ns, err := netns.Get()
		if err == nil {
			err = quietSysctls()
		}
		done <- result{ns, err}
	}()
	r := <-done
	if r.err != nil {
		return nil, fmt.Errorf("netlab: new namespace %s: %w", name, r.err)
	}
	h, err := newHost(name, r.ns)
	if err != nil {
		return nil, err
	}
	if err := h.SetUp("lo"); err != nil {
		h.close()
		return nil, err
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	return h, nil
}

// Do runs fn on an OS thread inside h's namespace, so that every socket fn
// creates belongs to h. The thread is discarded afterwards. fn must create
// its sockets in the calling goroutine; the sockets may be used from any
// goroutine once created.
func (h *Host) Do(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(h.ns); err != nil {
			done <- fmt.Errorf("netlab: enter %s: %w", h.Name, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// Veth creates a veth pair with end localName in l.Local and end peerName in
// peer, and sets both up. Close deletes it.
func (l *Lab) Veth(localName string, peer *Host, peerName string) error {
	if err := l.addVeth(localName, peer, peerName); err != nil {
		return err
	}
	if err := l.Local.SetUp(localName); err != nil {
		return err
	}
	return peer.SetUp(peerName)
}

// Link returns the attributes of h's interface name, such as its index.
func (h *Host) Link(name string) (*netlink.LinkAttrs, error) {
	link, err := h.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: find %s: %w", h.Name, name, err)
	}
	return link.Attrs(), nil
}

// SetUp sets h's interface name up.
func (h *Host) SetUp(name string) error {
	return h.linkDo(name, "set up", h.nl.LinkSetUp)
}

// SetDown sets h's interface name down.
func (h *Host) SetDown(name string) error {
	return h.linkDo(name, "set down", h.nl.LinkSetDown)
}

// Delete deletes h's interface name (and, for a veth, its peer).
func (h *Host) Delete(name string) error {
	return h.linkDo(name, "delete", h.nl.LinkDel)
}

func (h *Host) linkDo(name, what string, fn func(netlink.Link) error) error {
	link, err := h.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netlab: %s: find %s: %w", h.Name, name, err)
	}
	if err := fn(link); err != nil {
		return fmt.Errorf("netlab: %s: %s %s: %w", h.Name, what, name, err)
	}
	return nil
}

// AddAddr assigns prefix to h's interface name, without duplicate address
// detection, so that it is usable at once.
func (h *Host) AddAddr(name string, prefix netip.Prefix) error {
	link, err := h.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netlab: %s: find %s: %w", h.Name, name, err)
	}
	addr := &netlink.Addr{IPNet: ipNet(prefix), Flags: unix.IFA_F_NODAD}
	if err := h.nl.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("netlab: %s: add %s to %s: %w", h.Name, prefix, name, err)
	}
	return nil
}

// LinkLocal returns the IPv6 link-local address of h's interface name once
// it is usable. The kernel keeps the address tentative, so that bind(2)
// refuses it, until it has seen the veth's carrier come up, which happens
// asynchronously after SetUp; a loaded machine takes a while.
func (h *Host) LinkLocal(name string) (netip.Addr, error) {
	link, err := h.nl.LinkByName(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("netlab: %s: find %s: %w", h.Name, name, err)
	}
	deadline := time.Now().Add(linkLocalWait)
	for {
		addrs, err := h.nl.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("netlab: %s: addresses of %s: %w", h.Name, name, err)
		}
		tentative := false
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.IsLinkLocalUnicast() {
				if a.Flags&unix.IFA_F_TENTATIVE == 0 {
					return ip, nil
				}
				tentative = true
			}
		}
		if time.Now().After(deadline) {
			if tentative {
				return netip.Addr{}, fmt.Errorf("netlab: %s: the link-local address of %s is still tentative after %v", h.Name, name, linkLocalWait)
			}
			return netip.Addr{}, fmt.Errorf("netlab: %s: %s has no link-local address", h.Name, name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// linkLocalWait bounds how long LinkLocal waits for a usable address.
const linkLocalWait = 5 * time.Second

// Route is a route of a Host: Dst through Gateway (when valid) on Dev, with
// Metric as its priority (lower wins).
type Route struct {
	Dst     netip.Prefix
	Gateway netip.Addr
	Dev     string
	Metric  int
}

// AddRoute adds r to h's main routing table.
func (h *Host) AddRoute(r Route) error {
	link, err := h.nl.LinkByName(r.Dev)
	if err != nil {
		return fmt.Errorf("netlab: %s: find %s: %w", h.Name, r.Dev, err)
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(r.Dst), Priority: r.Metric}
	if r.Gateway.IsValid() {
		route.Gw = r.Gateway.AsSlice()
	}
	if err := h.nl.RouteAdd(route); err != nil {
		return fmt.Errorf("netlab: %s: add route %+v: %w", h.Name, r, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Listen opens a stream listener in h's namespace.
func (h *Host) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := h.Do(func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet socket in h's namespace.
func (h *Host) ListenPacket(network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.Do(func() (err error) {
		pc, err = net.ListenPacket(network, address)
		return err
	})
	return pc, err
}

// Dial connects from h's namespace. address must be a literal IP address
// and port: a name could make net dial from other goroutines, outside h.
func (h *Host) Dial(network, address string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, fmt.Errorf("netlab: %s: dial needs a literal address: %w", h.Name, err)
	}
	var c net.Conn
	err := h.Do(func() (err error) {
		c, err = net.DialTimeout(network, address, dialTimeout)
		return err
	})
	return c, err
}

// Main is the TestMain of every package with lab tests: it enters the lab
// (see [Enter]), says on standard error why the lab tests will skip when it
// cannot, and runs the tests.
func Main(m *testing.M) {
	if err := Enter(); err != nil {
		fmt.Fprintln(os.Stderr, "lab tests will skip:", err)
	}
	os.Exit(m.Run())
}
