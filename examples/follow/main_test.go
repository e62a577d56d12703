package main

import (
	"testing"

	"github.com/bindtodev/bindtodev/internal/progtest"
)

// Usage errors exit with 2 before anything listens; -h exits with 0.
func TestUsage(t *testing.T) {
	t.Parallel()
	progtest.CheckUsage(t, progtest.Build(t), []progtest.Usage{
		{Args: []string{"-h"}, Code: 0, Stderr: "usage: follow -i IFACE"},
		{Args: nil, Code: 2, Stderr: "-i IFACE is required"},
		{Args: []string{"-i", "eth0/1"}, Code: 2, Stderr: `invalid interface name "eth0/1"`},
		{Args: []string{"-i", "eth0", "extra"}, Code: 2, Stderr: "takes no arguments"},
	})
}
