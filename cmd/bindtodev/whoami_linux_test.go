package main

import (
	"net/netip"

	"github.com/bindtodev/bindtodev/internal/netlab"
)

// whoAmIAddr is the address of the who-am-I servers of the lab's peers on
// a, shared by the CLI's and exec's lab tests.
func whoAmIAddr(a netip.Addr) string {
	return netip.AddrPortFrom(a, netlab.WhoAmIPort).String()
}
