package cgbind

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// churnArg makes the test binary a helper that creates IPv4 sockets as
// fast as it can until its standard input closes, then prints how many it
// got bound to each device index ("index=count"), and how many socket()
// refused with EPERM ("EPERM=count").
const churnArg = "-cgbind-test-churn"

func churnSockets() int {
	stop := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(stop)
	}()
	counts := map[string]int{}
	fmt.Println("ready")
	for {
		select {
		case <-stop:
			for k, v := range counts {
				fmt.Printf("%s=%d\n", k, v)
			}
			return 0
		default:
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) {
				counts[unix.ErrnoName(errno)]++
			} else {
				counts[err.Error()]++
			}
			continue
		}
		index, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
		unix.Close(fd)
		if err != nil {
			counts["getsockopt "+err.Error()]++
			continue
		}
		counts[fmt.Sprint(index)]++
	}
}

// Rebind and Deny replace the program in one step: a process creating
// sockets all along sees only the indexes of the programs, or EPERM from
// the denying one, never an unbound socket (index 0), and the kernel runs
// only the latest program.
func TestReplaceNeverUnbinds(t *testing.T) {
	t.Parallel()
	g := newGroup(t, ownCgroup(t))
	defer func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	}()
	cmd := helperIn(t, g, churnArg)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("helper did not start: %q", out.Text())
	}
	// 99999 names no interface; the kernel stores any index, and the
	// sockets are never used.
	const rounds = 300
	for i := range rounds {
		var err error
		switch i % 3 {
		case 0:
			err = g.Rebind(99999)
		case 1:
			err = g.Deny()
		case 2:
			err = g.Rebind(1)
		}
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		ids, err := EffectivePrograms(g.FD())
		if err != nil || len(ids) != 1 || ids[0] != g.ProgramID {
			t.Fatalf("round %d: effective programs %v, %v; want only %d", i, ids, err, g.ProgramID)
		}
	}
	stdin.Close()
	counts := map[string]bool{}
	for out.Scan() {
		k, _, _ := strings.Cut(out.Text(), "=")
		counts[k] = true
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("helper saw %v", counts)
	for k := range counts {
		if k != "1" && k != "99999" && k != "EPERM" {
			t.Errorf("a socket created while the program was replaced got %q, want only 1, 99999 or EPERM", k)
		}
	}
	if !counts["1"] {
		t.Errorf("no socket bound to index 1 at all: %v", counts)
	}
	// The last program binds to 1; each kind, checked at rest.
	if got, want := runIn(t, g), "inet=1 inet6=1 unix=0"; got != want {
		t.Errorf("after Rebind(1): %q, want %q", got, want)
	}
	if err := g.Deny(); err != nil {
		t.Fatal(err)
	}
	if got, want := runInFailing(t, g), "inet socket: operation not permitted"; got != want {
		t.Errorf("after Deny: %q, want %q", got, want)
	}
	if err := g.Rebind(99999); err != nil {
		t.Fatal(err)
	}
	if got, want := runIn(t, g), "inet=99999 inet6=99999 unix=0"; got != want {
		t.Errorf("after Rebind(99999): %q, want %q", got, want)
	}
}

// runInFailing runs the socket-reporting helper in g's cgroup, expecting
// it to fail, and returns what it said.
func runInFailing(t *testing.T, g *Group) string {
	t.Helper()
	out, err := helperIn(t, g, socketsArg).CombinedOutput()
	if err == nil {
		t.Fatalf("helper succeeded: %s", out)
	}
	return strings.TrimSpace(string(out))
}
