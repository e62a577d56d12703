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
		{Args: []string{"-h"}, Code: 0, Stderr: "usage: server -i IFACE"},
		{Args: nil, Code: 2, Stderr: "-i IFACE is required"},
		{Args: []string{"-i", "eth0/1"}, Code: 2, Stderr: `invalid interface name "eth0/1"`},
		{Args: []string{"-i", ""}, Code: 2, Stderr: "-i IFACE is required"},
		{Args: []string{"-i", "eth0", "-addr", "8080"}, Code: 2, Stderr: `-addr "8080"`},
		{Args: []string{"-i", "eth0", "extra"}, Code: 2, Stderr: "unexpected arguments"},
		{Args: []string{"-bogus"}, Code: 2, Stderr: "flag provided but not defined"},
		// A valid name that no interface has is a runtime failure.
		{Args: []string{"-i", "nosuch0", "-addr", ":0"}, Code: 1, Stderr: `bind to device "nosuch0"`},
	})
}
