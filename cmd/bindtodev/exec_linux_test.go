package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vishvananda/netlink"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/cmd/bindtodev/internal/cgbind"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// roleArg, followed by a role name, makes the test binary something other
// than a test: the bindtodev command itself, or a helper program.
const roleArg = "-bindtodev-exec-test-role"

// runExecTestRole runs the role the binary was started for, if any, and
// exits.
func runExecTestRole() {
	if len(os.Args) < 3 || os.Args[1] != roleArg {
		return
	}
	role, args := os.Args[2], os.Args[3:]
	switch role {
	case "bindtodev":
		os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr))
	case "dropcaps":
		os.Exit(dropCapsAndExec(args))
	case "probe":
		os.Exit(probe(os.Stdin, os.Stdout))
	case "signals":
		os.Exit(reportSignals())
	case "mptcpserve":
		os.Exit(mptcpServe())
	}
	fmt.Fprintln(os.Stderr, "unknown test role", role)
	os.Exit(2)
}

// dropCapsAndExec empties the capability sets, bounding set included, so
// that even uid 0 gets no capability from execve, and runs the role args.
func dropCapsAndExec(args []string) int {
	runtime.LockOSThread() // capabilities belong to the thread that execs
	for c := 0; c < 64; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if err == unix.EINVAL { // past the kernel's last capability
				break
			}
			fmt.Fprintln(os.Stderr, "drop capability", c, err)
			return 1
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "clear ambient capabilities:", err)
		return 1
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		fmt.Fprintln(os.Stderr, "capget:", err)
		return 1
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		fmt.Fprintln(os.Stderr, "capset:", err)
		return 1
	}
	exe, err := os.Executable()
	if err == nil {
		err = unix.Exec(exe, append([]string{exe, roleArg}, args...), os.Environ())
	}
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 1
}

// probe is a line-driven client for the tests: it answers each command on
// in with one line on out.
//
//	cgroup                       its cgroup v2 path
//	dial NETWORK ADDR [TIMEOUT]  "ok PEER SOURCE DEVICE" or "err ..."
//	rebind NETWORK ADDR IFACE    the same, re-binding the socket to IFACE first
//	sock 4|6                     "ok DEVICE INDEX" of a new TCP socket, or "err ERRNO" (see probeSocket)
//	unshare                      the device index of a socket made in a new network namespace
//	pid                          its process ID
//	escape DIR                   "ok" once it has moved itself to cgroup DIR, or "err ..."
//	detach DIR ID                "ok" once it has detached program ID from cgroup DIR
//	setns FD                     "ok" once it has entered the cgroup namespace open as FD
//	mount                        "ok" once it has mounted a cgroup2 in a mount namespace of its own
//	quit                         exit
func probe(in io.Reader, out io.Writer) int {
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var line string
		switch {
		case len(f) == 1 && f[0] == "quit":
			return 0
		case len(f) == 1 && f[0] == "cgroup":
			b, err := os.ReadFile("/proc/self/cgroup")
			line = "err " + fmt.Sprint(err)
			for _, l := range strings.Split(string(b), "\n") {
				if p, ok := strings.CutPrefix(l, "0::"); ok {
					line = p
				}
			}
		case len(f) >= 3 && f[0] == "dial":
			timeout := 3 * time.Second
			if len(f) == 4 {
				timeout, _ = time.ParseDuration(f[3])
			}
			line = probeDial(f[1], f[2], timeout, "")
		case len(f) == 4 && f[0] == "rebind":
			line = probeDial(f[1], f[2], 3*time.Second, f[3])
		case len(f) == 2 && f[0] == "sock":
			line = probeSocket(f[1])
		case len(f) == 1 && f[0] == "unshare":
			line = probeUnshare()
		case len(f) == 1 && f[0] == "pid":
			line = strconv.Itoa(os.Getpid())
		case len(f) == 2 && f[0] == "escape":
			line = okOrErr(os.WriteFile(filepath.Join(f[1], "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0))
		case len(f) == 3 && f[0] == "detach":
			line = probeDetach(f[1], f[2])
		case len(f) == 2 && f[0] == "setns":
			line = onThrowawayThread(func() error {
				fd, _ := strconv.Atoi(f[1])
				return os.NewSyscallError("setns", unix.Setns(fd, unix.CLONE_NEWCGROUP))
			})
		case len(f) == 1 && f[0] == "mount":
			line = probeMount()
		default:
			line = "err unknown command " + sc.Text()
		}
		fmt.Fprintln(out, line)
	}
	return 0
}

func probeDial(network, address string, timeout time.Duration, rebind string) string {
	d := net.Dialer{Timeout: timeout}
	if rebind != "" {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, rebind)
			})
			if err != nil {
				return err
			}
			return os.NewSyscallError("setsockopt", serr)
		}
	}
	c, err := d.Dial(network, address)
	if err != nil {
		return "err " + err.Error()
	}
	defer c.Close()
	dev, err := bindtodev.Device(c.(syscall.Conn)) // getsockopt(SO_BINDTODEVICE)
	if err != nil {
		return "err device: " + err.Error()
	}
	var who netlab.WhoAmI
	if strings.HasPrefix(network, "udp") {
		who, err = netlab.AskUDP(c)
	} else {
		who, err = netlab.AskTCP(c)
	}
	if err != nil {
		return "err " + err.Error()
	}
	return fmt.Sprintf("ok %s %s %s", who.Peer, who.Source, dev)
}

func okOrErr(err error) string {
	if err != nil {
		return "err " + err.Error()
	}
	return "ok"
}

// onThrowawayThread runs fn on a thread that exits afterwards, so that the
// namespaces fn enters stay its own.
func onThrowawayThread(fn func() error) string {
	done := make(chan string)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		done <- okOrErr(fn())
	}()
	return <-done
}

func probeDetach(dir, id string) string {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "err " + os.NewSyscallError("open", err).Error()
	}
	defer unix.Close(fd)
	n, _ := strconv.ParseUint(id, 10, 32)
	return okOrErr(cgbind.Detach(fd, unix.BPF_CGROUP_INET_SOCK_CREATE, uint32(n)))
}

// probeMount mounts a cgroup2 file system in a mount namespace of the
// thread's own, which a process that may mount can always make, and
// otherwise tries where it is.
func probeMount() string {
	return onThrowawayThread(func() error {
		dir, err := os.MkdirTemp("", "bindtodev-cg2-")
		if err != nil {
			return err
		}
		defer os.Remove(dir)
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err == nil {
			if err := unix.Mount("none", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return os.NewSyscallError("mount --make-rprivate", err)
			}
		}
		if err := unix.Mount("none", dir, "cgroup2", 0, ""); err != nil {
			return os.NewSyscallError("mount", err)
		}
		return os.NewSyscallError("umount", unix.Unmount(dir, 0))
	})
}

// reportSignals prints "ready PID", then the number of every signal it
// gets, one a line, and exits after SIGTERM.
func reportSignals() int {
	c := make(chan os.Signal, 64)
	signal.Notify(c, forwardedSignals()...)
	fmt.Println("ready", os.Getpid())
	for s := range c {
		fmt.Println(int(s.(syscall.Signal)))
		if s == unix.SIGTERM {
			return 0
		}
	}
	return 0
}

// mptcpServe listens on a port of all addresses with Go's default
// listener, which asks for Multipath TCP, prints "PORT PROTOCOL" (the
// protocol the listening socket got) and answers every connection with
// "served".
func mptcpServe() int {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	proto := -1
	if rc, err := ln.(*net.TCPListener).SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { proto, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) })
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port, proto)
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		fmt.Fprintln(c, "served")
		c.Close()
	}
}

func probeUnshare() string {
	done := make(chan string)
	go func() {
		// The thread stays in the new namespace and ends with the
		// goroutine, because it stays locked.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- "err unshare: " + err.Error()
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			done <- "err socket: " + err.Error()
			return
		}
		defer unix.Close(fd)
		index, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
		if err != nil {
			done <- "err getsockopt: " + err.Error()
			return
		}
		_, derr := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
		done <- fmt.Sprintf("index %d device %v", index, derr)
	}()
	return <-done
}

// Test plumbing.

var (
	cgroupOnce sync.Once
	cgroupErr  error
)

// execLab returns the seed lab, and skips t (or fails it under
// BINDTODEV_LAB=require) when the process cannot bind a cgroup's sockets.
func execLab(t *testing.T) *netlab.Seed {
	t.Helper()
	s := netlab.NewSeedT(t)
	cgroupOnce.Do(func() {
		var dir string
		if dir, cgroupErr = cgbind.OwnCgroup(); cgroupErr == nil {
			var g *cgbind.Group
			if g, cgroupErr = cgbind.New(dir, 1); cgroupErr == nil {
				cgroupErr = g.Remove()
			}
		}
	})
	if cgroupErr != nil {
		if os.Getenv(netlab.RequireEnv) == "require" {
			t.Fatalf("%s=require but cgroup BPF is unavailable: %v", netlab.RequireEnv, cgroupErr)
		}
		t.Skipf("cannot bind a cgroup's sockets here (%v); run as root on a host with cgroup2", cgroupErr)
	}
	return s
}

func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// bindtodevCmd is the bindtodev command with args. It runs in its own
// process group, so that it is never a terminal's foreground process.
func bindtodevCmd(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(testBinary(t), append([]string{roleArg, "bindtodev"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

type result struct {
	stdout, stderr string
	code           int
}

func runCmd(t *testing.T, cmd *exec.Cmd, stdin string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// bashClient is a shell script that asks a who-am-I server through bash's
// /dev/tcp and /dev/udp, so that no Go code makes the socket. dd reads the
// whole answer in one read, as a datagram must be read.
func bashClient(network string, dest netip.Addr) string {
	script := fmt.Sprintf("exec 3<>/dev/%s/%s/%d || exit 1\n", network, dest, netlab.WhoAmIPort)
	if network == "udp" {
		script += "printf '?' >&3 || exit 1\n"
	}
	return script + "timeout 5 dd bs=512 count=1 <&3 2>/dev/null\n"
}

func whoOfRun(t *testing.T, what string, r result) netlab.WhoAmI {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d, stdout %q, stderr %q", what, r.code, r.stdout, r.stderr)
	}
	who, err := netlab.ParseWhoAmI(r.stdout)
	if err != nil {
		t.Fatalf("%s: %v (stderr %q)", what, err, r.stderr)
	}
	return who
}

// The seed scenario through unmodified programs: bash reaches the peer
// behind A only when wrapped, as a child and as a grandchild, over TCP and
// UDP, IPv4 and IPv6.
func TestExecSeedScenario(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("bash, the non-Go client of this test, is missing: %v", err)
	}
	for _, network := range []string{"tcp", "udp"} {
		for _, fam := range []struct {
			name        string
			dest, local netip.Addr
		}{{"4", s.Dest4, s.LocalA4}, {"6", s.Dest6, s.LocalA6}} {
			t.Run(network+fam.name, func(t *testing.T) {
				script := bashClient(network, fam.dest)
				plain := whoOfRun(t, "unwrapped", runCmd(t, exec.Command("bash", "-c", script), ""))
				if plain.Peer != "B" {
					t.Errorf("unwrapped bash reached peer %s, want B (the routing table's choice)", plain.Peer)
				}
				child := whoOfRun(t, "wrapped", runCmd(t, bindtodevCmd(t, "exec", "-i", s.A, "--", "bash", "-c", script), ""))
				if child.Peer != "A" || child.Source.Addr() != fam.local {
					t.Errorf("wrapped bash reached %s from %s, want A from %s", child.Peer, child.Source, fam.local)
				}
				// "; exit" keeps sh from exec-ing bash in its own place.
				grand := whoOfRun(t, "grandchild", runCmd(t, bindtodevCmd(t, "exec", "-i", s.A, "sh", "-c", `bash -c "$1"; exit $?`, "sh", script), ""))
				if grand.Peer != "A" || grand.Source.Addr() != fam.local {
					t.Errorf("bash under sh reached %s from %s, want A from %s", grand.Peer, grand.Source, fam.local)
				}
			})
		}
	}
}

// getsockopt(SO_BINDTODEVICE) in the wrapped program reads A, from a Go
// program and, where python3 exists, from a Python one.
func TestExecDeviceReadBack(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	var cmds strings.Builder
	for _, d := range []netip.Addr{s.Dest4, s.Dest6} {
		for _, network := range []string{"tcp", "udp"} {
			fmt.Fprintf(&cmds, "dial %s %s\n", network, netip.AddrPortFrom(d, netlab.WhoAmIPort))
		}
	}
	r := runCmd(t, bindtodevCmd(t, "exec", "-i", s.A, testBinary(t), roleArg, "probe"), cmds.String())
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 5 {
		t.Fatalf("probe: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != "ok" || f[1] != "A" || f[3] != s.A {
			t.Errorf("probe: %q, want ok A <source> %s", l, s.A)
		}
	}

	t.Run("python3", func(t *testing.T) {
		py := needTool(t, "python3")
		script := `import socket
for fam, typ in ((socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_DGRAM)):
    s = socket.socket(fam, typ)
    print(s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0").decode())
`
		r := runCmd(t, bindtodevCmd(t, "exec", "-i", s.A, "--", py, "-c", script), "")
		if want := s.A + "\n" + s.A + "\n"; r.code != 0 || r.stdout != want {
			t.Errorf("python3: exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
		}
	})
}

// packetCapture records the IP packets an interface sends (AF_PACKET).
type packetCapture struct {
	fd   int
	stop atomic.Bool
	done chan struct{}
	mu   sync.Mutex
	pkts []ipPacket
}

// ipPacket is what the tests need to know of a captured packet.
type ipPacket struct {
	dst netip.Addr
	// timeWaitACK is true for an IPv6 TCP segment that only acknowledges:
	// the kernel's own answer from a connection in TIME_WAIT, which
	// follows the routing table (see the README's limits).
	timeWaitACK bool
}

func startPacketCapture(t *testing.T, h *netlab.Host, ifname string) *packetCapture {
	t.Helper()
	link, err := h.Link(ifname)
	if err != nil {
		t.Fatal(err)
	}
	c := &packetCapture{fd: -1, done: make(chan struct{})}
	err = h.Do(func() error {
		// Protocol 0 until bound, so that no other interface's packet
		// is queued first.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link.Index}); err != nil {
			return os.NewSyscallError("bind", err)
		}
		tv := unix.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
		return os.NewSyscallError("setsockopt", unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for !c.stop.Load() {
			n, from, err := unix.Recvfrom(c.fd, buf, 0)
			ll, ok := from.(*unix.SockaddrLinklayer)
			if err != nil || !ok || ll.Pkttype != unix.PACKET_OUTGOING {
				continue
			}
			if p, ok := parseIPPacket(buf[:n]); ok {
				c.mu.Lock()
				c.pkts = append(c.pkts, p)
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { c.finish() })
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func parseIPPacket(p []byte) (ipPacket, bool) {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		return ipPacket{dst: netip.AddrFrom4([4]byte(p[16:20]))}, true
	case len(p) >= 40 && p[0]>>4 == 6:
		pkt := ipPacket{dst: netip.AddrFrom16([16]byte(p[24:40]))}
		if tcp := p[40:]; p[6] == unix.IPPROTO_TCP && len(tcp) >= 20 {
			payload := int(p[4])<<8 | int(p[5]) - int(tcp[12]>>4)*4
			pkt.timeWaitACK = tcp[13] == 0x10 && payload == 0
		}
		return pkt, true
	}
	return ipPacket{}, false
}

// settleTCP waits until no TCP socket of h with one of the local addresses
// is opening or closing.
func settleTCP(t *testing.T, h *netlab.Host, local ...netip.Addr) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		socks, err := h.TCPSockets()
		if err != nil {
			t.Fatal(err)
		}
		busy := 0
		for _, sk := range socks {
			for _, a := range local {
				if sk.Local.Addr().WithZone("") == a && sk.State.Transient() {
					busy++
				}
			}
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d TCP sockets of the wrapped clients are still opening or closing after 10 s", busy)
		}
	}
}

// finish stops the capture and returns the packets it saw to dsts, and
// how many of them were kernel-made TIME_WAIT acknowledgements.
func (c *packetCapture) finish(dsts ...netip.Addr) (n, acks int) {
	if c.stop.CompareAndSwap(false, true) {
		<-c.done
		// What the kernel queued before the stop is read too.
		buf := make([]byte, 65536)
		for {
			n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
			if err != nil {
				break
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				if p, ok := parseIPPacket(buf[:n]); ok {
					c.pkts = append(c.pkts, p)
				}
			}
		}
		unix.Close(c.fd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pkts {
		for _, d := range dsts {
			if p.dst == d {
				n++
				if p.timeWaitACK {
					acks++
				}
			}
		}
	}
	return n, acks
}

// Not one packet of the wrapped program leaves through B, though the
// routing table prefers it; the same captures see the unwrapped program's
// packets on B, so they would have seen a leak. The one packet the kernel
// makes itself, the IPv6 TIME_WAIT acknowledgement, may follow the routing
// table, unless a policy rule sends A's traffic through A.
func TestExecNoPacketsOnB(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	var script strings.Builder
	for _, network := range []string{"tcp", "udp"} {
		for _, d := range []netip.Addr{s.Dest4, s.Dest6} {
			fmt.Fprintf(&script, "( %s ) || exit 1\n", bashClient(network, d))
		}
	}
	wrappedRun := func(t *testing.T) (onA, onB, acksOnB int) {
		t.Helper()
		capA := startPacketCapture(t, s.Local, s.A)
		capB := startPacketCapture(t, s.Local, s.B)
		r := runCmd(t, bindtodevCmd(t, "exec", "-i", s.A, "bash", "-c", script.String()), "")
		if r.code != 0 || strings.Count(r.stdout, "A ") != 4 {
			t.Fatalf("wrapped clients: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		// The last closes finish first: no TCP socket of the wrapped
		// clients is still closing. Then a sentinel frame through B,
		// seen by a capture of its own, shows that the kernel has queued
		// everything it sent before it.
		settleTCP(t, s.Local, s.LocalA4, s.LocalA6)
		sentinel, err := s.Local.Capture(s.B)
		if err != nil {
			t.Fatal(err)
		}
		if err := sentinel.Sync(); err != nil {
			t.Fatal(err)
		}
		_, _, _ = sentinel.Stop()
		onA, _ = capA.finish(s.Dest4, s.Dest6)
		onB, acksOnB = capB.finish(s.Dest4, s.Dest6)
		return onA, onB, acksOnB
	}

	onA, onB, acks := wrappedRun(t)
	if onB != acks || onA == 0 {
		t.Errorf("wrapped: %d packets to the destination on B, %d of them TIME_WAIT acknowledgements (want none but those), %d on A (want some)",
			onB, acks, onA)
	}
	t.Logf("IPv6 TIME_WAIT acknowledgements on B without a policy rule: %d", acks)

	ctl := startPacketCapture(t, s.Local, s.B)
	r := runCmd(t, exec.Command("bash", "-c", script.String()), "")
	if r.code != 0 {
		t.Fatalf("unwrapped clients: exit %d, stderr %q", r.code, r.stderr)
	}
	if n, _ := ctl.finish(s.Dest4, s.Dest6); n == 0 {
		t.Errorf("the capture on B saw none of the unwrapped clients' packets: it could not have seen a leak")
	}

	// With the README's mitigation, not even the kernel's answers leave
	// through B.
	link, err := s.Local.Link(s.A)
	if err != nil {
		t.Fatal(err)
	}
	table := 100 + s.N
	err = s.Local.Do(func() error {
		rule := netlink.NewRule()
		rule.Family, rule.OifName, rule.Table, rule.Priority = netlink.FAMILY_V6, s.A, table, 100
		if err := netlink.RuleAdd(rule); err != nil {
			return fmt.Errorf("add rule: %w", err)
		}
		_, all, _ := net.ParseCIDR("::/0")
		return netlink.RouteAdd(&netlink.Route{LinkIndex: link.Index, Dst: all, Gw: s.PeerA6.AsSlice(), Table: table})
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, onB, _ := wrappedRun(t); onB != 0 {
			t.Errorf("with an oif rule for %s: %d packets to the destination on B, want 0", s.A, onB)
		}
	}
}

// The command's standard streams and exit status pass through; a death by
// signal N becomes 128+N.
func TestExecExitStatus(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	notExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		argv         []string
		stdin        string
		code         int
		stdout       string
		stderrSuffix string
	}{
		{"success", []string{"true"}, "", 0, "", ""},
		{"exit 3", []string{"sh", "-c", "exit 3"}, "", 3, "", ""},
		{"stdio", []string{"sh", "-c", "cat; echo oops >&2; exit 4"}, "hello\n", 4, "hello\n", "oops\n"},
		{"SIGTERM", []string{"sh", "-c", "kill -TERM $$"}, "", 128 + 15, "", ""},
		{"SIGKILL", []string{"sh", "-c", "kill -KILL $$"}, "", 128 + 9, "", ""},
		{"not found", []string{"no-such-command-bindtodev"}, "", 127, "", "executable file not found in $PATH\n"},
		{"not executable", []string{notExec}, "", 126, "", "permission denied\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, bindtodevCmd(t, append([]string{"exec", "-i", s.A, "--"}, tt.argv...)...), tt.stdin)
			if r.code != tt.code || r.stdout != tt.stdout || !strings.HasSuffix(r.stderr, tt.stderrSuffix) ||
				(tt.stderrSuffix == "" && r.stderr != "") {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr ending %q",
					r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderrSuffix)
			}
		})
	}
}

// Every failure to set the binding up is a clear error, exit 125, and the
// command never runs.
func TestExecFailsClosed(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	own, err := cgbind.OwnCgroup()
	if err != nil {
		t.Fatal(err)
	}
	// A cgroup of the test's own, writable by its owner (root) only
	// through the owner's permission bits, not through a capability.
	parent, err := os.MkdirTemp(own, "bindtodev-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Rmdir(parent) })
	readOnly, err := os.MkdirTemp(own, "bindtodev-test-ro-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Rmdir(readOnly) })
	if err := os.Chmod(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	dropcaps := []string{roleArg, "dropcaps", "bindtodev"}

	tests := []struct {
		name   string
		pre    []string // arguments that run the command under another role
		args   []string
		code   int
		stderr []string
	}{
		{"unknown interface", nil, []string{"-i", "nosuch" + strconv.Itoa(s.N)}, 125,
			[]string{`interface "nosuch` + strconv.Itoa(s.N) + `"`, "no such device", "this network namespace has: ", s.A + ", "}},
		{"unknown BPF attach type", nil, []string{"-i", s.A, "-allow-bpf", "sock_opz"}, 125, []string{`unknown BPF attach type "sock_opz"`, "sock_ops"}},
		{"sock_create never allowed", nil, []string{"-i", s.A, "-allow-bpf", "sock_create"}, 125, []string{"sock_create programs cannot be allowed"}},
		{"bad flag", nil, []string{"-i", s.A, "-nosuchflag"}, 125, []string{"flag provided but not defined: -nosuchflag", `Run "bindtodev exec -h" for help.`}},
		{"invalid name", nil, []string{"-i", "a/b"}, 125, []string{`invalid interface name "a/b"`}},
		{"name too long", nil, []string{"-i", s.A + "-this-is-too-long"}, 125, []string{"invalid interface name", "at most 15"}},
		{"no interface", nil, nil, 125, []string{"-i IFACE is required"}},
		{"not cgroup2", nil, []string{"-i", s.A, "-cgroup", t.TempDir()}, 125, []string{"is not a cgroup2 directory"}},
		{"no BPF privilege", dropcaps, []string{"-i", s.A, "-cgroup", parent}, 125,
			[]string{"BPF_PROG_LOAD", "operation not permitted", "CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN"}},
		{"no cgroup write access", dropcaps, []string{"-i", s.A, "-cgroup", readOnly}, 125,
			[]string{"mkdir: permission denied", "write access to a cgroup2 directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "ran")
			args := append(append([]string{"exec"}, tt.args...), "--", "sh", "-c", "touch "+marker)
			cmd := bindtodevCmd(t, args...)
			if tt.pre != nil {
				cmd = exec.Command(testBinary(t), append(tt.pre, args...)...)
			}
			r := runCmd(t, cmd, "")
			if r.code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, tt.code, r.stderr)
			}
			for _, want := range tt.stderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr %q does not contain %q", r.stderr, want)
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the command ran")
			}
		})
	}
	for _, dir := range []string{parent, readOnly} {
		if _, err := os.Stat(filepath.Join(dir, cgbind.BaseName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed exec left %s behind (%v)", filepath.Join(dir, cgbind.BaseName), err)
		}
	}
}

// "exec -h" prints its help once, on standard output, naming IFACE.
func TestExecHelp(t *testing.T) {
	t.Parallel()
	r := runCmd(t, bindtodevCmd(t, "exec", "-h"), "")
	if r.code != 0 || r.stderr != "" || strings.Count(r.stdout, "usage: bindtodev exec") != 1 ||
		!strings.Contains(r.stdout, "-i IFACE") || strings.Contains(r.stdout, "-i string") || !strings.Contains(r.stdout, "-confine") {
		t.Errorf("exec -h: exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
}

// An interface that is down is worth a warning, not a refusal: it may come
// up while the command runs, and until then its connections fail.
func TestExecInterfaceDown(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	if err := s.Local.SetDown(s.A); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, bindtodevCmd(t, "exec", "-i", s.A, "--", "sh", "-c", "echo ran"), "")
	if r.code != 0 || r.stdout != "ran\n" || !strings.Contains(r.stderr, fmt.Sprintf("warning: interface %q is down", s.A)) {
		t.Errorf("exit %d, stdout %q, stderr %q; want the command run and a warning", r.code, r.stdout, r.stderr)
	}
}

// "ip netns exec" mounts a /sys of its own, without the cgroup file
// systems below it; the message says so and what to do instead. The test
// does what ip does, in a mount namespace of its own.
func TestExecUnderIPNetnsExec(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	unshare := needTool(t, "unshare")
	script := `umount -l /sys && mount -t sysfs none /sys && exec "$@"`
	args := append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", testBinary(t), roleArg, "bindtodev"},
		"exec", "-i", s.A, "true")
	r := runCmd(t, exec.Command(unshare, args...), "")
	for _, want := range []string{"no cgroup2 file system is mounted", `"ip netns exec"`, "nsenter --net=", "-cgroup", "the command was not run"} {
		if r.code != 125 || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d, stderr %q; want 125 and %q", r.code, r.stderr, want)
		}
	}
}

// wrapped is a running "bindtodev exec" whose command is the probe.
type wrapped struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	dir string // the command's cgroup
	id  uint32 // its program
	pid int    // the probe's
}

func startProbe(t *testing.T, ifname string, pre ...string) *wrapped {
	t.Helper()
	return startProbeWith(t, []string{"-i", ifname}, nil, pre...)
}

// startProbeWith starts the probe under "bindtodev exec" with flags, and
// extra files for the probe's descriptors 3 and up.
func startProbeWith(t *testing.T, flags []string, extra []*os.File, pre ...string) *wrapped {
	t.Helper()
	return startProbeErr(t, flags, extra, os.Stderr, pre...)
}

// startProbeErr is startProbeWith with the wrapper's standard error, and
// the probe's, written to stderr.
func startProbeErr(t *testing.T, flags []string, extra []*os.File, stderr *os.File, pre ...string) *wrapped {
	t.Helper()
	args := append(append(append([]string{"exec"}, flags...), "--", testBinary(t), roleArg), pre...)
	cmd := bindtodevCmd(t, append(args, "probe")...)
	cmd.ExtraFiles = extra
	// Pipes of the test's own, not cmd's: cmd.Wait would close those, and
	// the probe may outlive the wrapper.
	inR, in, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, stderr
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		out.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	w := &wrapped{cmd: cmd, in: in, out: bufio.NewReader(out)}
	if line := w.readLine(t); line != "ready" {
		t.Fatalf("probe did not start: %q", line)
	}
	w.pid, _ = strconv.Atoi(w.ask(t, "pid"))
	w.dir = cgroupDirOf(t, procCgroup(t, w.pid))
	fd, err := unix.Open(w.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ids, err := cgbind.EffectivePrograms(fd)
	if err != nil || len(ids) != 1 {
		t.Fatalf("programs of %s: %v, %v", w.dir, ids, err)
	}
	w.id = ids[0]
	return w
}

func (w *wrapped) readLine(t *testing.T) string {
	t.Helper()
	line, err := w.out.ReadString('\n')
	if err != nil {
		t.Fatalf("read from probe: %q, %v", line, err)
	}
	return strings.TrimSuffix(line, "\n")
}

func (w *wrapped) ask(t *testing.T, command string) string {
	t.Helper()
	if _, err := fmt.Fprintln(w.in, command); err != nil {
		t.Fatal(err)
	}
	return w.readLine(t)
}

// procCgroup returns the cgroup v2 path of process pid, as the test's own
// cgroup namespace shows it.
func procCgroup(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p
		}
	}
	t.Fatalf("no cgroup v2 line for process %d", pid)
	return ""
}

// needTool returns the path of a program a test needs, skipping the test
// without it, unless BINDTODEV_LAB=require, which fails it instead.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(netlab.RequireEnv) == "require" {
			t.Fatalf("%s=require, but this test needs %s: %v", netlab.RequireEnv, name, err)
		}
		t.Skipf("%s is not installed: %v", name, err)
	}
	return path
}

// cgroupDirOf maps a path of the cgroup v2 hierarchy to its directory,
// through the test's own cgroup.
func cgroupDirOf(t *testing.T, path string) string {
	t.Helper()
	ownDir, err := cgbind.OwnCgroup()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if own, ok := strings.CutPrefix(l, "0::"); ok {
			rel, err := filepath.Rel(own, path)
			if err != nil || strings.HasPrefix(rel, "..") {
				t.Fatalf("cgroup %s is not below the test's own %s", path, own)
			}
			return filepath.Join(ownDir, rel)
		}
	}
	t.Fatal("no cgroup v2 line in /proc/self/cgroup")
	return ""
}

// waitRemoved checks that the cgroup dir is gone and waits until the
// kernel has freed program id, which happens asynchronously after the
// cgroup's removal.
func waitRemoved(t *testing.T, dir string, id uint32) {
	t.Helper()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s left behind (%v)", dir, err)
	}
	waitFor(t, fmt.Sprintf("BPF program %d to be freed", id), func() (bool, error) {
		exists, err := cgbind.ProgramExists(id)
		return !exists, err
	})
}

// waitFor polls done for up to 10 seconds.
func waitFor(t *testing.T, what string, done func() (bool, error)) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ok, err := done()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
	}
}

// No cgroup and no BPF program is left after the command exits, after it
// is killed, and after the wrapper itself is killed and run again; until
// then the survivors stay bound.
func TestExecCleansUp(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	dest := netip.AddrPortFrom(s.Dest4, netlab.WhoAmIPort).String()

	t.Run("command exits", func(t *testing.T) {
		w := startProbe(t, s.A)
		fmt.Fprintln(w.in, "quit")
		if err := w.cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		waitRemoved(t, w.dir, w.id)
	})

	t.Run("command killed", func(t *testing.T) {
		w := startProbe(t, s.A)
		pids, err := os.ReadFile(filepath.Join(w.dir, "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(pids)))
		if err != nil {
			t.Fatalf("cgroup.procs %q: %v", pids, err)
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.cmd.Wait()
		if code := w.cmd.ProcessState.ExitCode(); code != 128+9 {
			t.Errorf("exit %d, want %d", code, 128+9)
		}
		waitRemoved(t, w.dir, w.id)
	})

	t.Run("wrapper killed", func(t *testing.T) {
		w := startProbe(t, s.A)
		if err := w.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = w.cmd.Wait()
		// The program stays attached to the cgroup: the orphaned command
		// keeps binding its new sockets.
		if got := w.ask(t, "dial tcp "+dest); !strings.HasPrefix(got, "ok A ") {
			t.Errorf("orphaned command after the wrapper's SIGKILL: %q, want ok A ...", got)
		}
		fmt.Fprintln(w.in, "quit")
		if _, err := w.out.ReadString('\n'); err != io.EOF {
			t.Fatalf("probe did not quit: %v", err)
		}
		waitEmpty(t, w.dir)
		if _, err := os.Stat(w.dir); err != nil {
			t.Fatalf("cgroup %s gone before a wrapper ran again: %v", w.dir, err)
		}
		r := runCmd(t, bindtodevCmd(t, "exec", "-i", s.A, "true"), "")
		if r.code != 0 {
			t.Fatalf("second run: exit %d, stderr %q", r.code, r.stderr)
		}
		waitRemoved(t, w.dir, w.id)
	})
}

// waitEmpty waits until no process is left in cgroup dir, the zombie of an
// orphan included.
func waitEmpty(t *testing.T, dir string) {
	t.Helper()
	waitFor(t, "cgroup "+dir+" to empty", func() (bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		return strings.Contains(string(b), "populated 0"), err
	})
}

// The limits the README states, each shown on the kernel.
func TestExecLimits(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	dest := netip.AddrPortFrom(s.Dest4, netlab.WhoAmIPort).String()

	t.Run("CAP_NET_RAW re-binds", func(t *testing.T) {
		w := startProbe(t, s.A)
		if got := w.ask(t, fmt.Sprintf("rebind tcp %s %s", dest, s.B)); !strings.HasPrefix(got, "ok B ") {
			t.Errorf("re-bind with CAP_NET_RAW: %q, want it to reach B", got)
		}
		// Without CAP_NET_RAW, the binding cannot be changed.
		w = startProbe(t, s.A, "dropcaps")
		if got := w.ask(t, fmt.Sprintf("rebind tcp %s %s", dest, s.B)); !strings.Contains(got, "operation not permitted") {
			t.Errorf("re-bind without CAP_NET_RAW: %q, want operation not permitted", got)
		}
	})

	t.Run("network namespace", func(t *testing.T) {
		link, err := s.Local.Link(s.A)
		if err != nil {
			t.Fatal(err)
		}
		w := startProbe(t, s.A)
		want := fmt.Sprintf("index %d device no such device", link.Index)
		if got := w.ask(t, "unshare"); got != want {
			t.Errorf("socket made in a new network namespace: %q, want %q", got, want)
		}
	})

	t.Run("loopback unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		w := startProbe(t, s.A)
		if got := w.ask(t, "dial tcp "+ln.Addr().String()+" 500ms"); !strings.HasPrefix(got, "err ") {
			t.Errorf("wrapped dial to %s: %q, want an error", ln.Addr(), got)
		}
	})
}

// Without -follow, a re-created interface has a new index: the running
// command's new sockets are bound to the dead one and fail (ENODEV, or
// ENETUNREACH for IPv6) instead of going anywhere else, and a new run binds
// to the new interface.
func TestExecRecreatedInterface(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	dest := netip.AddrPortFrom(s.Dest4, netlab.WhoAmIPort).String()
	w := startProbe(t, s.A)
	if got := w.ask(t, "dial tcp "+dest); !strings.HasPrefix(got, "ok A ") {
		t.Fatalf("before: %q", got)
	}
	old, err := s.Local.Link(s.A)
	if err != nil {
		t.Fatal(err)
	}
	oldIndex := old.Index
	if err := s.Local.Delete(s.A); err != nil {
		t.Fatal(err)
	}
	if index := recreateA(t, s); index == oldIndex {
		t.Fatalf("the re-created %s kept index %d", s.A, oldIndex)
	}
	// A new socket is bound to the dead index, which names nothing.
	for _, fam := range []string{"4", "6"} {
		if got, want := w.ask(t, "sock "+fam), fmt.Sprintf("ok - %d", oldIndex); got != want {
			t.Errorf("new IPv%s socket after re-creation: %q, want %q", fam, got, want)
		}
	}
	// IPv4 says ENODEV; IPv6 looks the route up with the dead index as
	// the output interface first, and finds none.
	for _, d := range []struct {
		dest netip.Addr
		want string
	}{{s.Dest4, "connect: no such device"}, {s.Dest6, "connect: network is unreachable"}} {
		for _, network := range []string{"tcp", "udp"} {
			if got := w.ask(t, fmt.Sprintf("dial %s %s 1s", network, whoAmIAddr(d.dest))); !strings.HasPrefix(got, "err ") || !strings.Contains(got, d.want) {
				t.Errorf("%s to %s after re-creation: %q, want %s", network, d.dest, got, d.want)
			}
		}
	}
	if got := startProbe(t, s.A).ask(t, "dial tcp "+dest); !strings.HasPrefix(got, "ok A ") {
		t.Errorf("a new run after re-creation: %q, want ok A ...", got)
	}
}
