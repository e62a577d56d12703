package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/cmd/bindtodev/internal/cgbind"
	"github.com/bindtodev/bindtodev/internal/netlab"
)

// A root command, with every capability, can undo the binding in each of
// the ways below; under -confine every one of them fails, and its
// connections still leave through A.
func TestExecConfine(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	dest := netip.AddrPortFrom(s.Dest4, netlab.WhoAmIPort).String()
	own, err := cgbind.OwnCgroup()
	if err != nil {
		t.Fatal(err)
	}
	point := cgroup2MountPoint(t)
	// An empty cgroup outside the command's, to escape to.
	outside, err := os.MkdirTemp(own, "bindtodev-test-escape-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		waitEmpty(t, outside)
		_ = unix.Rmdir(outside)
	})
	// The test's own cgroup namespace, the host's, handed to the command
	// as descriptor 3.
	hostNS, err := os.Open("/proc/self/ns/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	defer hostNS.Close()

	t.Run("unconfined root escapes", func(t *testing.T) {
		w := startProbeWith(t, []string{"-i", s.A}, []*os.File{hostNS})
		for _, step := range []struct{ what, command, want string }{
			{"re-bind to B", fmt.Sprintf("rebind tcp %s %s", dest, s.B), "ok B "},
			{"setns into the host's cgroup namespace", "setns 3", "ok"},
			{"mount a cgroup2", "mount", "ok"},
			{"detach the program", fmt.Sprintf("detach %s %d", w.dir, w.id), "ok"},
			{"dial after the detach", "dial tcp " + dest, "ok B "},
		} {
			if got := w.ask(t, step.command); !strings.HasPrefix(got, step.want) {
				t.Errorf("%s: %q, want %q...", step.what, got, step.want)
			}
		}
		w = startProbeWith(t, []string{"-i", s.A}, nil)
		if got := w.ask(t, "escape "+outside); got != "ok" {
			t.Errorf("move to cgroup %s: %q, want ok", outside, got)
		}
		if got := w.ask(t, "dial tcp "+dest); !strings.HasPrefix(got, "ok B ") {
			t.Errorf("dial after leaving the cgroup: %q, want ok B ...", got)
		}
	})

	t.Run("confined root cannot", func(t *testing.T) {
		w := startProbeWith(t, []string{"-i", s.A, "-confine"}, []*os.File{hostNS})
		if got := w.ask(t, "cgroup"); got != "/" {
			t.Errorf("the confined command sees its cgroup as %q, want / (the root of its cgroup namespace)", got)
		}
		for _, step := range []struct{ what, command, want string }{
			{"re-bind to B", fmt.Sprintf("rebind tcp %s %s", dest, s.B), "operation not permitted"},
			{"setns into the host's cgroup namespace", "setns 3", "setns: operation not permitted"},
			{"mount a cgroup2", "mount", "mount: operation not permitted"},
			// The cgroup2 mount point now shows the command's own cgroup.
			{"detach the program", fmt.Sprintf("detach %s %d", point, w.id), "BPF_PROG_GET_FD_BY_ID): operation not permitted"},
			{"detach through the host's path", fmt.Sprintf("detach %s %d", w.dir, w.id), "no such file or directory"},
			{"move to another cgroup", "escape " + outside, "no such file or directory"},
			{"move through the test's /proc root", fmt.Sprintf("escape /proc/%d/root%s", os.Getpid(), outside), "permission denied"},
			{"move through init's /proc root", "escape /proc/1/root" + outside, "permission denied"},
		} {
			if got := w.ask(t, step.command); !strings.HasPrefix(got, "err ") || !strings.Contains(got, step.want) {
				t.Errorf("%s: %q, want an error with %q", step.what, got, step.want)
			}
		}
		if got := w.ask(t, "dial tcp "+dest); !strings.HasPrefix(got, "ok A ") {
			t.Errorf("dial after the attempts: %q, want ok A ...", got)
		}
		if got := procCgroup(t, w.pid); cgroupDirOf(t, got) != w.dir {
			t.Errorf("the confined command is now in %s, want %s", got, w.dir)
		}
	})
}

// cgroup2MountPoint returns where the test's cgroup2 hierarchy is mounted.
func cgroup2MountPoint(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if fields := strings.Fields(pre); ok && strings.HasPrefix(post, "cgroup2 ") && len(fields) > 4 {
			return fields[4]
		}
	}
	t.Fatal("no cgroup2 mount")
	return ""
}
