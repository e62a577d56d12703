package main

import (
	"testing"

	"github.com/bindtodev/bindtodev/internal/progtest"
)

// Usage errors exit with 2 and say what is wrong before any packet is
// sent; -h explains the program and exits with 0.
func TestUsage(t *testing.T) {
	t.Parallel()
	progtest.CheckUsage(t, progtest.Build(t), []progtest.Usage{
		{Args: []string{"-h"}, Code: 0, Stderr: "usage: broadcast -i IFACE"},
		{Args: []string{"send", "hi"}, Code: 2, Stderr: "-i IFACE is required"},
		{Args: []string{"-i", "a b", "listen"}, Code: 2, Stderr: `invalid interface name "a b"`},
		{Args: []string{"-i", "eth0"}, Code: 2, Stderr: "want a command"},
		{Args: []string{"-i", "eth0", "shout"}, Code: 2, Stderr: `unknown command "shout"`},
		{Args: []string{"-i", "eth0", "send"}, Code: 2, Stderr: "send wants exactly one MESSAGE"},
		{Args: []string{"-i", "eth0", "listen", "x"}, Code: 2, Stderr: "listen takes no arguments"},
		{Args: []string{"-i", "eth0", "-port", "70000", "listen"}, Code: 2, Stderr: "-port 70000"},
		{Args: []string{"-i", "eth0", "-wait", "0s", "send", "hi"}, Code: 2, Stderr: "-wait 0s"},
		{Args: []string{"-i", "eth0", "-n", "-1", "listen"}, Code: 2, Stderr: "-n -1"},
		// A valid name that no interface has is a runtime failure.
		{Args: []string{"-i", "nosuch0", "listen"}, Code: 1, Stderr: `bind to device "nosuch0"`},
		{Args: []string{"-i", "nosuch0", "send", "hi"}, Code: 1, Stderr: `bind to device "nosuch0"`},
	})
}
