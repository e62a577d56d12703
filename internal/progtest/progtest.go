// Package progtest builds a program from its own test and runs it as a
// child process, so that a test exercises the real executable: its flags,
// its output and its exit code. A child inherits the test's network
// namespace, so a program started from a lab test runs inside the lab.
package progtest

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Build compiles the main package in the test's working directory (the
// package's own directory under go test) into t.TempDir() and returns the
// executable's path.
func Build(t testing.TB) string {
	t.Helper()
	// go test puts its own toolchain first on PATH.
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("find the go command: %v", err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(wd))
	out, err := exec.Command(gocmd, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Result is what a finished program left behind.
type Result struct {
	Stdout, Stderr string
	Code           int // exit code; -1 when killed
}

// Proc is a running program whose standard output is read line by line.
type Proc struct {
	cmd    *exec.Cmd
	lines  chan string
	mu     sync.Mutex
	stdout strings.Builder
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

// Start starts bin with args. The program is killed, if still running,
// when the test ends.
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{cmd: exec.Command(bin, args...), lines: make(chan string, 100), done: make(chan struct{})}
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.stdout.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default: // nobody waits for lines: Stdout keeps them all
			}
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// WaitFor returns the first line of output, from those not yet returned,
// that contains want, failing t when none does within timeout.
func (p *Proc) WaitFor(t testing.TB, want string, timeout time.Duration) string {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				r := p.result()
				t.Fatalf("program ended (code %d) without printing %q\nstdout:\n%s\nstderr:\n%s", r.Code, want, r.Stdout, r.Stderr)
			}
			if strings.Contains(line, want) {
				return line
			}
		case <-timer.C:
			r := p.snapshot()
			t.Fatalf("no line with %q within %v\nstdout so far:\n%s\nstderr so far:\n%s", want, timeout, r.Stdout, r.Stderr)
		}
	}
}

// Signal sends sig to the program.
func (p *Proc) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Wait waits for the program to end and returns its result, failing t
// when it runs longer than timeout.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) Result {
	t.Helper()
	go func() {
		// Drain what nobody waits for, or the reader would block.
		for range p.lines {
		}
	}()
	select {
	case <-p.done:
		return p.result()
	case <-time.After(timeout):
		r := p.snapshot()
		t.Fatalf("program still running after %v\nstdout so far:\n%s\nstderr so far:\n%s", timeout, r.Stdout, r.Stderr)
		return Result{}
	}
}

// Run runs bin with args to the end and returns its result, failing t
// when it runs longer than timeout.
func Run(t testing.TB, bin string, timeout time.Duration, args ...string) Result {
	t.Helper()
	return Start(t, bin, args...).Wait(t, timeout)
}

func (p *Proc) snapshot() Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Result{Stdout: p.stdout.String(), Stderr: p.stderr.String(), Code: -1}
}

// result is called once the program has ended.
func (p *Proc) result() Result {
	<-p.done
	r := p.snapshot()
	r.Code = 0
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		r.Code = exit.ExitCode()
	} else if p.err != nil {
		r.Code = -1
	}
	return r
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Usage is a command line and what the program must answer to it.
type Usage struct {
	Args   []string
	Code   int    // exit code
	Stderr string // a part of the standard error output
}

// CheckUsage runs bin with each command line in cases and checks its exit
// code and error output. Such runs must print nothing on standard output.
func CheckUsage(t *testing.T, bin string, cases []Usage) {
	t.Helper()
	for _, tc := range cases {
		r := Run(t, bin, 10*time.Second, tc.Args...)
		if r.Code != tc.Code || !strings.Contains(r.Stderr, tc.Stderr) || r.Stdout != "" {
			t.Errorf("%q: exit code %d, want %d; want stderr with %q and no stdout\nstdout:\n%s\nstderr:\n%s",
				tc.Args, r.Code, tc.Code, tc.Stderr, r.Stdout, r.Stderr)
		}
	}
}
