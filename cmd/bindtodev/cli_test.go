package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
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
