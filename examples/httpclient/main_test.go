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
		{Args: []string{"-h"}, Code: 0, Stderr: "usage: httpclient -i IFACE"},
		{Args: nil, Code: 2, Stderr: "-i IFACE is required"},
		{Args: []string{"http://192.0.2.1/"}, Code: 2, Stderr: "-i IFACE is required"},
		{Args: []string{"-i", "eth0/1", "http://192.0.2.1/"}, Code: 2, Stderr: `invalid interface name "eth0/1"`},
		{Args: []string{"-i", "this-name-is-too-long", "http://192.0.2.1/"}, Code: 2, Stderr: "invalid interface name"},
		{Args: []string{"-i", "eth0"}, Code: 2, Stderr: "want exactly one URL"},
		{Args: []string{"-i", "eth0", "ftp://192.0.2.1/"}, Code: 2, Stderr: "want an http or https URL"},
		{Args: []string{"-i", "eth0", "-dns", "resolver", "http://192.0.2.1/"}, Code: 2, Stderr: `-dns "resolver"`},
		{Args: []string{"-bogus"}, Code: 2, Stderr: "flag provided but not defined"},
		// A valid name that no interface has is a runtime failure.
		{Args: []string{"-i", "nosuch0", "http://192.0.2.1/"}, Code: 1, Stderr: `interface "nosuch0"`},
	})
}
