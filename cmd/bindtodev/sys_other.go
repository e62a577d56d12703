//go:build !linux

package main

import (
	"errors"
	"net/netip"
	"syscall"
)

// Route lookups and packet information are read the Linux way; elsewhere
// the commands fail earlier anyway, since no socket can be bound.

const routeLookupName = "route lookup"

type route struct {
	ifindex int
	gateway netip.Addr
	local   bool
}

var errNotLinux = errors.New("not available on this platform")

func lookupRoute(netip.AddrPort, netip.AddrPort, int) (route, error) { return route{}, errNotLinux }

type pktinfo struct {
	ifindex int
	dst     netip.Addr
	option  string
}

func enablePktinfo(syscall.RawConn) (bool, error) { return false, errNotLinux }

func parsePktinfo([]byte) (pktinfo, bool) { return pktinfo{}, false }

func replySource(bool, netip.Addr) []byte { return nil }
