package main

import (
	"bytes"
	"go/parser"
	"go/token"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
)

// runCLI runs the command in-process, as main would, with stdin as its
// standard input.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	t.Logf("bindtodev %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, out, _ := runCLI(t, "", args...)
		assert.Equal(t, exitOK, code)
		for _, name := range []string{"dial", "listen", "check"} {
			assert.Contains(t, out, name)
		}
	}
	for _, cmd := range []string{"dial", "listen", "check"} {
		for _, h := range []string{"-h", "--help", "-help"} {
			code, out, errOut := runCLI(t, "", cmd, h)
			assert.Equal(t, exitOK, code, "%s %s", cmd, h)
			assert.Contains(t, out, "usage: bindtodev "+cmd, "help goes to stdout")
			assert.Contains(t, out, "Exit status")
			assert.Contains(t, out, "-i IFACE")
			assert.Empty(t, errOut)
		}
		// Help after other arguments still wins.
		code, out, _ := runCLI(t, "", cmd, "-i", "eth0", "192.0.2.1:1", "--help")
		assert.Equal(t, exitOK, code)
		assert.Contains(t, out, "usage: bindtodev "+cmd)
	}
	_, out, _ := runCLI(t, "", "dial", "-h")
	assert.Contains(t, out, "WITHOUT -i THE SOCKET IS\nNOT BOUND", "dial's help says it dials unbound without -i")
	_, out, _ = runCLI(t, "", "check", "-h")
	assert.Contains(t, out, "RTM_GETROUTE", "check's help says how the unbound interface is found")
	assert.Contains(t, out, "3 when the bound")
}

// Usage mistakes exit 2 before any socket exists, with a message that says
// what was wrong; TEST-NET addresses make sure nothing is dialed if one
// slipped through.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: bindtodev COMMAND"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"dial"}, "want one HOST:PORT argument, got 0"},
		{[]string{"dial", "192.0.2.1:1", "192.0.2.2:1"}, "got 2"},
		{[]string{"dial", "192.0.2.1"}, `"192.0.2.1" is not HOST:PORT`},
		{[]string{"dial", "2001:db8::1:22"}, "in brackets"},
		{[]string{"dial", "192.0.2.1:99999"}, `bad port "99999"`},
		{[]string{"dial", "-x", "192.0.2.1:1"}, "flag provided but not defined: -x"},
		{[]string{"dial", "-i"}, "flag needs an argument: -i"},
		{[]string{"dial", "-i", "", "192.0.2.1:1"}, "invalid interface name"},
		{[]string{"dial", "-i", "eth0/1", "192.0.2.1:1"}, `invalid interface name "eth0/1"`},
		{[]string{"dial", "192.0.2.1:1", "-i", "a-name-of-16byte"}, "at most 15"},
		{[]string{"dial", "-s", "eth0", "192.0.2.1:1"}, `-s: "eth0" is not an IP address`},
		{[]string{"dial", "-w", "-1s", "192.0.2.1:1"}, "negative timeout"},
		{[]string{"listen", ":8080"}, "-i IFACE is required"},
		{[]string{"listen", "-i", "eth0"}, "got 0"},
		{[]string{"listen", "-i", "eth 0", ":8080"}, "invalid interface name"},
		{[]string{"listen", "-i", "eth0", "example.com:80"}, "must be an IP address"},
		{[]string{"listen", "-i", "eth0", "-c", "-1", ":80"}, "negative count"},
		{[]string{"check", "192.0.2.1:1"}, "-i IFACE is required"},
		{[]string{"check", "-i", "..", "192.0.2.1:1"}, "invalid interface name"},
		{[]string{"check", "-i", "eth0", "192.0.2.1"}, "is not HOST:PORT"},
	} {
		code, out, errOut := runCLI(t, "", tc.args...)
		assert.Equal(t, exitUsage, code, "%q", tc.args)
		assert.Contains(t, errOut, tc.want, "%q", tc.args)
		assert.Empty(t, out, "%q: nothing on stdout", tc.args)
	}
}

func TestParseArgsIntersperse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
		i    string
	}{
		{[]string{"-i", "a", "h:1"}, []string{"h:1"}, "a"},
		{[]string{"h:1", "-i", "a"}, []string{"h:1"}, "a"},
		{[]string{"h:1", "-i", "a", "x"}, []string{"h:1", "x"}, "a"},
		{[]string{"-i", "a", "--", "-h:1"}, []string{"-h:1"}, "a"},
		{[]string{"h:1", "--", "-i"}, []string{"h:1", "-i"}, ""},
	} {
		var out, errOut bytes.Buffer
		fs := newFlags("t")
		i := fs.String("i", "", "")
		pos, _, ok := parseArgs(fs, tc.args, "", &out, &errOut)
		assert.True(t, ok, "%q: %s", tc.args, errOut.String())
		assert.Equal(t, tc.want, pos, "%q", tc.args)
		assert.Equal(t, tc.i, *i, "%q", tc.args)
	}
}

// "help COMMAND" prints exactly what "COMMAND -h" prints; "help" alone the
// top-level help; an unknown or second name is a usage error.
func TestHelpCommand(t *testing.T) {
	t.Parallel()
	top, topOut, _ := runCLI(t, "", "-h")
	require.Equal(t, exitOK, top)
	for _, args := range [][]string{{"help"}, {"help", "help"}} {
		code, out, errOut := runCLI(t, "", args...)
		assert.Equal(t, exitOK, code, "%q", args)
		assert.Equal(t, topOut, out, "%q prints the top-level help", args)
		assert.Empty(t, errOut)
	}
	for _, cmd := range []string{"dial", "listen", "check", "exec", "version"} {
		code, want, _ := runCLI(t, "", cmd, "-h")
		require.Equal(t, exitOK, code, "%s -h", cmd)
		code, out, errOut := runCLI(t, "", "help", cmd)
		assert.Equal(t, exitOK, code, "help %s", cmd)
		assert.Equal(t, want, out, "help %s prints %s's own help", cmd, cmd)
		assert.True(t, strings.HasPrefix(out, "usage: bindtodev "+cmd), "help %s: %q", cmd, out)
		assert.Empty(t, errOut)
	}
	code, out, errOut := runCLI(t, "", "help", "nosuch")
	assert.Equal(t, exitUsage, code)
	assert.Empty(t, out)
	assert.Equal(t, "bindtodev help: unknown command \"nosuch\": the commands are dial, listen, check, exec, help and version\nRun \"bindtodev help\" for help.\n", errOut)
	code, out, errOut = runCLI(t, "", "help", "dial", "listen")
	assert.Equal(t, exitUsage, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "bindtodev help: want at most one COMMAND, got 2")
}

// The synopsis of every command, the first line of its own -h text, is in
// the top-level help and in the package doc comment, so that neither
// forgets a flag; exec's -confine and -allow-bpf are explained in both.
func TestSynopses(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	require.NoError(t, err)
	doc := f.Doc.Text()
	_, top, _ := runCLI(t, "", "help")
	collapse := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, cmd := range []string{"dial", "listen", "check", "exec", "version"} {
		_, out, _ := runCLI(t, "", cmd, "-h")
		first, _, _ := strings.Cut(out, "\n")
		synopsis := strings.TrimPrefix(first, "usage: ")
		require.NotEqual(t, first, synopsis, "%s -h starts with usage:", cmd)
		assert.Contains(t, collapse(top), collapse(synopsis), "the top-level help has %s's synopsis", cmd)
		assert.Contains(t, collapse(doc), collapse(synopsis), "the doc comment has %s's synopsis", cmd)
	}
	for _, text := range []string{top, doc} {
		assert.Contains(t, text, "bindtodev help")
		assert.Contains(t, collapse(text), "-confine keeps even a root command from undoing the binding")
		assert.Contains(t, collapse(text), "-allow-bpf accepts inherited cgroup BPF programs")
		assert.Contains(t, text, "--version")
		assert.Contains(t, collapse(text), "4 when")
	}
	_, out, _ := runCLI(t, "", "exec", "-h")
	assert.Contains(t, out, "-confine")
	assert.Contains(t, out, "-allow-bpf")
}

// version takes no arguments.
func TestVersionUsage(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, "", "version", "extra")
	assert.Equal(t, exitUsage, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "bindtodev version: takes no arguments")
	code, out, _ = runCLI(t, "", "--version")
	assert.Equal(t, exitOK, code)
	assert.True(t, strings.HasPrefix(out, "bindtodev "), "%q", out)
}

// A permission failure gets a hint that names the privilege it lacked:
// CAP_NET_RAW only when SO_BINDTODEVICE failed, CAP_NET_BIND_SERVICE for a
// privileged port that net's bind(2) was refused, none when the cause is
// unknown. The errors have the library's shapes; the lab tests make the
// same failures happen for real.
func TestPermissionHints(t *testing.T) {
	t.Parallel()
	port := func(p int) *net.TCPAddr { return &net.TCPAddr{Port: p} }
	for _, tc := range []struct {
		name      string
		err       error
		want, not []string
	}{
		{
			name: "SO_BINDTODEVICE refused",
			err: &net.OpError{Op: "listen", Net: "tcp", Addr: port(80), Err: &bindtodev.Error{
				Op: "bind", Interface: "eth0", Err: os.NewSyscallError("setsockopt", syscall.EPERM)}},
			want: []string{`bindtodev listen: binding to "eth0" (SO_BINDTODEVICE) needs CAP_NET_RAW before Linux 5.7`},
			not:  []string{"CAP_NET_BIND_SERVICE"},
		},
		{
			name: "privileged port",
			err: &net.OpError{Op: "listen", Net: "tcp", Addr: port(80), Err: &bindtodev.Error{
				Op: "listen", Interface: "eth0", Err: os.NewSyscallError("bind", syscall.EACCES)}},
			want: []string{"port 80 is a privileged port: listening on it needs CAP_NET_BIND_SERVICE", "net.ipv4.ip_unprivileged_port_start"},
			not:  []string{"CAP_NET_RAW"},
		},
		{
			name: "unprivileged port refused for another reason",
			err: &net.OpError{Op: "listen", Net: "udp", Addr: &net.UDPAddr{Port: 60000}, Err: &bindtodev.Error{
				Op: "listen", Interface: "eth0", Err: os.NewSyscallError("bind", syscall.EACCES)}},
			not: []string{"CAP_NET_RAW", "CAP_NET_BIND_SERVICE"},
		},
	} {
		var errOut strings.Builder
		assert.Equal(t, exitFailure, failure(&errOut, "listen", "eth0", tc.err), tc.name)
		t.Logf("%s:\n%s", tc.name, errOut.String())
		assert.Contains(t, errOut.String(), `interface "eth0": `+tc.err.Error()+"\n", tc.name)
		for _, w := range tc.want {
			assert.Contains(t, errOut.String(), w, tc.name)
		}
		for _, n := range tc.not {
			assert.NotContains(t, errOut.String(), n, tc.name)
		}
	}
}

// versionText reads the VCS fields of the build information when the go
// command recorded them.
func TestVersionText(t *testing.T) {
	t.Parallel()
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/bindtodev/bindtodev", Version: "v0.1.0"},
		Settings: []debug.BuildSetting{{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	assert.Equal(t, `bindtodev v0.1.0
module:   github.com/bindtodev/bindtodev
revision: 0123456789abcdef0123456789abcdef01234567 (2026-12-01T10:00:00Z), with uncommitted changes
go:       go1.26.8 linux/arm64
`, versionText(bi))
	bi.Main.Version, bi.Settings = "", []debug.BuildSetting{{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"}}
	assert.Equal(t, `bindtodev (devel)
module:   github.com/bindtodev/bindtodev
revision: unknown (built without VCS information)
go:       go1.26.8 linux/amd64
`, versionText(bi))
}

// check's help documents the LOOPBACK result and its exit status; listen's
// says what the kernel answers to traffic from another interface.
func TestHelpExplains(t *testing.T) {
	t.Parallel()
	collapse := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	_, out, _ := runCLI(t, "", "check", "-h")
	assert.Contains(t, collapse(out), "Loopback destinations never leave the host")
	assert.Contains(t, collapse(out), "4 when HOST is a loopback address or an address of this host (LOOPBACK: neither connection left the host, so IFACE was not used)")
	_, out, _ = runCLI(t, "", "listen", "-h")
	assert.NotContains(t, out, "dropped,", "a datagram from another interface is not dropped silently")
	assert.Contains(t, collapse(out), "a datagram gets an ICMP (or ICMPv6) port unreachable message back")
	assert.Contains(t, collapse(out), "a connection is refused with a TCP reset")
	assert.Contains(t, collapse(out), "A loopback ADDR is bound to lo instead of IFACE")
	_, out, _ = runCLI(t, "", "dial", "-h")
	assert.Contains(t, collapse(out), "a socket whose destination is a loopback address is bound to lo instead of IFACE")
}
