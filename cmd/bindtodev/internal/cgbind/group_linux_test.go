package cgbind

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/internal/netlab"
)

// socketsArg makes the test binary a helper that reports the device index
// of a new socket of each family.
const socketsArg = "-cgbind-test-sockets"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == socketsArg {
		os.Exit(reportSockets())
	}
	if len(os.Args) > 1 && os.Args[1] == churnArg {
		os.Exit(churnSockets())
	}
	os.Exit(m.Run())
}

func reportSockets() int {
	for _, f := range []struct {
		name   string
		domain int
		typ    int
	}{
		{"inet", unix.AF_INET, unix.SOCK_DGRAM},
		{"inet6", unix.AF_INET6, unix.SOCK_STREAM},
		{"unix", unix.AF_UNIX, unix.SOCK_STREAM},
	} {
		fd, err := unix.Socket(f.domain, f.typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Println(f.name, "socket:", err)
			return 1
		}
		index, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
		unix.Close(fd)
		if err != nil {
			fmt.Println(f.name, "getsockopt:", err)
			return 1
		}
		fmt.Printf("%s=%d ", f.name, index)
	}
	fmt.Println()
	return 0
}

// newGroup makes a Group binding to the loopback interface (index 1; the
// helper's sockets are never used) below parent, skipping t when the
// process lacks the privileges, unless BINDTODEV_LAB=require.
func newGroup(t *testing.T, parent string) *Group {
	t.Helper()
	g, err := New(parent, 1)
	if err != nil {
		if os.Getenv(netlab.RequireEnv) != "require" &&
			(errors.Is(err, os.ErrPermission) || errors.Is(err, ErrNoCgroup2)) {
			t.Skipf("cannot bind a cgroup here (%v); run as root on a host with cgroup2", err)
		}
		t.Fatal(err)
	}
	return g
}

func ownCgroup(t *testing.T) string {
	t.Helper()
	dir, err := OwnCgroup()
	if err != nil {
		if os.Getenv(netlab.RequireEnv) != "require" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	return dir
}

// helperIn is the test binary as the helper arg, to be started inside g's
// cgroup.
func helperIn(t *testing.T, g *Group, arg string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, arg)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}
	return cmd
}

// runIn runs the socket-reporting helper inside g's cgroup.
func runIn(t *testing.T, g *Group) string {
	t.Helper()
	out, err := helperIn(t, g, socketsArg).CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitGone polls until the kernel has freed program id, which it does
// asynchronously after the cgroup holding it is removed.
func waitGone(t *testing.T, id uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		exists, err := ProgramExists(id)
		if err != nil {
			t.Fatal(err)
		}
		if !exists {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("BPF program %d still exists 10 s after its cgroup was removed", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGroupBindsInetSockets(t *testing.T) {
	t.Parallel()
	g := newGroup(t, ownCgroup(t))
	ids, err := EffectivePrograms(g.FD())
	if err != nil || len(ids) != 1 || ids[0] != g.ProgramID {
		t.Errorf("effective programs %v, %v; want only %d", ids, err, g.ProgramID)
	}
	if got, want := runIn(t, g), "inet=1 inet6=1 unix=0"; got != want {
		t.Errorf("helper in the cgroup reported %q, want %q", got, want)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s still there after Remove: %v", g.Path, err)
	}
	waitGone(t, g.ProgramID)
}

// A cgroup whose creator died unlocked and empty is removed by the next
// New; one whose creator lives, or that still holds a process, is not.
func TestSweep(t *testing.T) {
	t.Parallel()
	// A parent of the test's own: the sweeps of other processes' Groups,
	// run below their own cgroup, would otherwise lock and skip these.
	parent, err := os.MkdirTemp(ownCgroup(t), "bindtodev-test-sweep-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Rmdir(filepath.Join(parent, BaseName)); _ = unix.Rmdir(parent) })
	live := newGroup(t, parent)
	defer func() { _ = live.Remove() }()

	busy := newGroup(t, parent)
	exe, _ := os.Executable()
	sleeper := exec.Command("sleep", "60")
	sleeper.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: busy.FD()}
	if err := sleeper.Start(); err != nil {
		t.Fatal(exe, err)
	}
	defer func() { _ = sleeper.Process.Kill() }()
	if err := busy.Remove(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove with a process inside: %v, want ErrBusy", err)
	}
	// busy is now like the cgroup of a killed creator whose child lives.
	if _, err := os.Stat(busy.Path); err != nil {
		t.Fatalf("busy cgroup removed: %v", err)
	}

	stale := filepath.Join(parent, BaseName, runPrefix+"stale-test")
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	g := newGroup(t, parent)
	defer func() { _ = g.Remove() }()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale cgroup %s not swept: %v", stale, err)
	}
	if _, err := os.Stat(live.Path); err != nil {
		t.Errorf("live cgroup %s swept: %v", live.Path, err)
	}
	if _, err := os.Stat(busy.Path); err != nil {
		t.Errorf("cgroup %s with a process swept: %v", busy.Path, err)
	}
	// Its program stays attached while the process lives.
	if exists, err := ProgramExists(busy.ProgramID); !exists || err != nil {
		t.Errorf("program of the busy cgroup: exists %v, %v", exists, err)
	}

	_ = sleeper.Process.Kill()
	_ = sleeper.Wait()
	g2 := newGroup(t, parent)
	defer func() { _ = g2.Remove() }()
	if _, err := os.Stat(busy.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("emptied cgroup %s not swept: %v", busy.Path, err)
	}
	waitGone(t, busy.ProgramID)
}

func TestNewRefusesNonCgroup2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := New(dir, 1)
	if !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("New(%s) = %v, want ErrNoCgroup2", dir, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("New left %v in %s", entries, dir)
	}
}

// A program that an ancestor attached with BPF_F_ALLOW_MULTI would run
// after the binding one and could change the device: New refuses.
func TestNewRefusesInheritedProgram(t *testing.T) {
	t.Parallel()
	outer := newGroup(t, ownCgroup(t))
	defer func() { _ = outer.Remove() }()
	// Re-attach outer's kind of program to outer with ALLOW_MULTI, as a
	// foreign tool might: only then may descendants attach their own.
	parent, err := os.MkdirTemp(outer.Path, "multi-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Rmdir(parent) }()
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pfd)
	prog, err := loadProgram(1)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(prog)
	if err := attachFlags(pfd, prog, unix.BPF_F_ALLOW_MULTI); err != nil {
		// outer's own program forbids it (flags 0): that is the other half
		// of the guarantee.
		if !errors.Is(err, os.ErrPermission) {
			t.Fatalf("attach below a non-overridable program: %v, want EPERM", err)
		}
	} else {
		t.Fatal("a program was attached below the binding one")
	}
	if err := unix.Rmdir(parent); err != nil {
		t.Fatal(err)
	}

	// Now a cgroup with an ALLOW_MULTI program, outside any Group.
	base := filepath.Join(ownCgroup(t), "bindtodev-test-multi-"+fmt.Sprint(os.Getpid()))
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Rmdir(base) }()
	bfd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(bfd)
	if err := attachFlags(bfd, prog, unix.BPF_F_ALLOW_MULTI); err != nil {
		t.Fatal(err)
	}
	g, err := New(base, 2)
	if err == nil {
		_ = g.Remove()
		t.Fatal("New below a cgroup with an ALLOW_MULTI program succeeded")
	}
	if !strings.Contains(err.Error(), "BPF_F_ALLOW_MULTI") {
		t.Errorf("error %q does not name the cause", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(base, BaseName)); len(entries) != 0 {
		t.Errorf("New left %v behind", entries)
	}
}
