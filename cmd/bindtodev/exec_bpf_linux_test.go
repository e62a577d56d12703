package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bindtodev/bindtodev/cmd/bindtodev/internal/cgbind"
)

// A program of an attach type that can change a socket's device or
// destination, attached by another tool to an ancestor cgroup, makes exec
// refuse to run the command, naming the type and the program; -allow-bpf
// accepts it. Harmless types are accepted without the flag.
func TestExecRefusesRiskyBPF(t *testing.T) {
	t.Parallel()
	s := execLab(t)
	own, err := cgbind.OwnCgroup()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		typ     cgbind.AttachType
		allow   string
		refused bool
	}{
		{unix.BPF_CGROUP_SOCK_OPS, "", true},
		{unix.BPF_CGROUP_INET4_CONNECT, "", true},
		{unix.BPF_CGROUP_UDP6_SENDMSG, "", true},
		{unix.BPF_CGROUP_SETSOCKOPT, "", true},
		{unix.BPF_CGROUP_SOCK_OPS, "sock_ops", false},
		{unix.BPF_CGROUP_INET4_CONNECT, "sock_ops,connect4", false},
		{unix.BPF_CGROUP_SOCK_OPS, "connect4", true},
		{unix.BPF_CGROUP_INET_SOCK_RELEASE, "", false},
		{unix.BPF_CGROUP_INET_EGRESS, "", false},
		{unix.BPF_CGROUP_GETSOCKOPT, "", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v allow %q", tt.typ, tt.allow), func(t *testing.T) {
			ancestor, err := os.MkdirTemp(own, "bindtodev-test-bpf-")
			if err != nil {
				t.Fatal(err)
			}
			// Removing the cgroup releases the program.
			t.Cleanup(func() { _ = unix.Rmdir(ancestor) })
			fd, err := unix.Open(ancestor, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			id, err := cgbind.AttachPassProgram(fd, tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			marker := filepath.Join(t.TempDir(), "ran")
			args := []string{"exec", "-i", s.A, "-cgroup", ancestor}
			if tt.allow != "" {
				args = append(args, "-allow-bpf", tt.allow)
			}
			r := runCmd(t, bindtodevCmd(t, append(args, "--", "touch", marker)...), "")
			_, statErr := os.Stat(marker)
			if !tt.refused {
				if r.code != 0 || statErr != nil {
					t.Errorf("exit %d, stderr %q, command ran: %v; want it run", r.code, r.stderr, statErr == nil)
				}
				return
			}
			if r.code != exitExecFailed || statErr == nil {
				t.Errorf("exit %d, command ran: %v; want 125 and not run (stderr %q)", r.code, statErr == nil, r.stderr)
			}
			for _, want := range []string{"attach type " + tt.typ.String(), fmt.Sprintf("(id %d)", id), "-allow-bpf " + tt.typ.String(), "the command was not run"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr %q does not contain %q", r.stderr, want)
				}
			}
		})
	}
}
