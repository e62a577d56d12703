//go:build !bindtodev_stub

package bindtodev_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// noLookupEnv names what a child of TestNoInterfaceLookupOnHotPath runs
// under its filter: "bindtodev" or "naive".
const noLookupEnv = "BINDTODEV_TEST_NOLOOKUP"

// noLookupOK is the last line of a child that made no lookup.
const noLookupOK = "no interface lookup on the hot path"

// TestNoInterfaceLookupOnHotPath proves that dialing, listening, accepting
// and writing datagrams through bound sockets never enumerates interfaces,
// looks one up by name or lists addresses: a child process runs them under
// a seccomp filter that kills it with SIGSYS, and a stack trace, at the
// first netlink socket (how net.Interfaces, InterfaceByName, Addrs and
// netlink libraries list links and addresses) or interface ioctl
// (SIOCGIFINDEX, SIOCGIFCONF and the like, how if_nametoindex works). The
// same child running the naive dialer must die, which shows the filter
// catches what it is meant to.
func TestNoInterfaceLookupOnHotPath(t *testing.T) {
	if mode := os.Getenv(noLookupEnv); mode != "" {
		noLookupChild(t, mode)
		return
	}
	netlab.SkipUnavailable(t)
	if _, err := seccompArch(); err != nil {
		skipUnlessRequired(t, "%v", err)
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	for _, mode := range []string{"bindtodev", "naive"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(exe, "-test.run=^TestNoInterfaceLookupOnHotPath$", "-test.count=1", "-test.v")
			cmd.Env = append(netlab.ChildEnv(), noLookupEnv+"="+mode)
			out, err := cmd.CombinedOutput()
			if mode == "bindtodev" {
				require.NoError(t, err, "%s", out)
				assert.Contains(t, string(out), noLookupOK)
				return
			}
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "the naive dialer was not caught:\n%s", out)
			assert.Contains(t, string(out), "SIGSYS")
			assert.Contains(t, string(out), "net.InterfaceByName", "the trace should name the lookup")
		})
	}
}

// skipUnlessRequired skips t with the reason, or fails it when
// BINDTODEV_LAB=require, under which no lab test may pass by skipping.
func skipUnlessRequired(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(netlab.RequireEnv) == "require" {
		t.Fatalf("%s=require, but: "+format, append([]any{netlab.RequireEnv}, args...)...)
	}
	t.Skipf(format, args...)
}

// noLookupChild builds a lab, installs the filter and runs mode's hot
// paths. Once the filter is in place the lab can no longer be taken down
// (that needs netlink), so the child reports and exits without cleanup;
// the kernel removes its namespaces when it exits.
func noLookupChild(t *testing.T, mode string) {
	n := newBenchNet(t)
	n.serveResets(t)
	pc, err := n.peer.ListenPacket("udp4", n.sink().String())
	require.NoError(t, err)
	defer pc.Close()
	const count = 100
	if err := installLookupFilter(); err != nil {
		skipUnlessRequired(t, "cannot install a seccomp filter: %v", err)
	}
	run := hotPaths
	if mode == "naive" {
		run = naivePath
	}
	if err := run(n, count); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", mode, err)
		os.Exit(3)
	}
	fmt.Printf("%s: %s in %d rounds\n", mode, noLookupOK, count)
	os.Exit(0)
}

// hotPaths runs every per-dial, per-connection and per-datagram path of
// the package count times.
func hotPaths(n *benchNet, count int) error {
	ctx := context.Background()
	address := n.sink().String()
	dialers := map[string]dialFunc{}
	for _, v := range dialVariants(n.ifname, n.local, "bound", "bound-source", "control") {
		dialers[v.name] = v.dial
	}
	dialers["NetDialer"] = (&bindtodev.Dialer{Interface: n.ifname}).NetDialer().DialContext
	dialers["Dial"] = func(_ context.Context, network, address string) (net.Conn, error) {
		return bindtodev.Dial(n.ifname, network, address)
	}
	for name, dial := range dialers {
		for range count {
			c, err := dial(ctx, "tcp4", address)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			c.Close()
		}
	}

	udp, err := (&bindtodev.Dialer{Interface: n.ifname}).Dial("udp4", address)
	if err != nil {
		return err
	}
	defer udp.Close()
	pc, err := bindtodev.ListenPacket(n.ifname, "udp4", ":0")
	if err != nil {
		return err
	}
	defer pc.Close()
	dst := net.UDPAddrFromAddrPort(n.sink())
	msg := make([]byte, 64)
	for range count {
		if _, err := udp.Write(msg); err != nil {
			return fmt.Errorf("connected write: %w", err)
		}
		if _, err := pc.WriteTo(msg, dst); err != nil {
			return fmt.Errorf("unconnected write: %w", err)
		}
	}

	ln, err := bindtodev.Listen(n.ifname, "tcp4", netip.AddrPortFrom(n.local, 0).String())
	if err != nil {
		return err
	}
	defer ln.Close()
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	tokens := make(chan uint16, count)
	for range count {
		tokens <- port
	}
	stop := make(chan struct{})
	connErr := make(chan error, 1)
	go func() {
		connErr <- n.peer.Do(func() error { return connectLoop(n.local, tokens, stop) })
	}()
	for range count {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		c.Close()
	}
	close(stop)
	return <-connErr
}

// naivePath dials as the naive dialer does; the filter must stop it.
func naivePath(n *benchNet, count int) error {
	d := &naiveDialer{ifname: n.ifname}
	for range count {
		c, err := d.DialContext(context.Background(), "tcp4", n.sink().String())
		if err != nil {
			return err
		}
		c.Close()
	}
	return errors.New("the naive dialer ran under the filter unharmed")
}

// seccompArch returns the audit architecture the filter checks, for the
// architectures whose system call numbers it was written against (on 386
// and arm, socket calls may go through socketcall, which it does not see).
func seccompArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, fmt.Errorf("the lookup filter is written for amd64 and arm64, not %s", runtime.GOARCH)
}

// installLookupFilter makes every thread of the process raise SIGSYS at
// socket(AF_NETLINK, ...) and at the socket ioctls (0x89xx: SIOCGIFNAME,
// SIOCGIFCONF, SIOCGIFINDEX, ...). Go's runtime turns SIGSYS into a crash
// with the stack of the call.
func installLookupFilter() error {
	arch, err := seccompArch()
	if err != nil {
		return err
	}
	const (
		ldAbs  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge    = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jgt    = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
		ret    = unix.BPF_RET | unix.BPF_K
		offNr  = 0  // offsetof(struct seccomp_data, nr)
		offArc = 4  // offsetof(struct seccomp_data, arch)
		offA0  = 16 // low half of args[0] (little endian)
		offA1  = 24 // low half of args[1]
	)
	// Jumps count instructions from the next one; 10 is allow, 11 trap.
	filter := []unix.SockFilter{
		/* 0 */ {Code: ldAbs, K: offArc},
		/* 1 */ {Code: jeq, K: arch, Jf: 8},
		/* 2 */ {Code: ldAbs, K: offNr},
		/* 3 */ {Code: jeq, K: unix.SYS_SOCKET, Jf: 2},
		/* 4 */ {Code: ldAbs, K: offA0},
		/* 5 */ {Code: jeq, K: unix.AF_NETLINK, Jt: 5, Jf: 4},
		/* 6 */ {Code: jeq, K: unix.SYS_IOCTL, Jf: 3},
		/* 7 */ {Code: ldAbs, K: offA1},
		/* 8 */ {Code: jge, K: 0x8900, Jf: 1},
		/* 9 */ {Code: jgt, K: 0x89ff, Jt: 0, Jf: 1},
		/* 10 */ {Code: ret, K: unix.SECCOMP_RET_ALLOW},
		/* 11 */ {Code: ret, K: unix.SECCOMP_RET_TRAP},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl", err)
	}
	// TSYNC puts every thread of the runtime under the filter; it returns
	// the id of a thread it could not synchronise.
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return os.NewSyscallError("seccomp", errno)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not take the filter", r)
	}
	return nil
}
