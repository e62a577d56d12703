//go:build !linux

// Command demo shows why SO_BINDTODEVICE, not bind(), pins a socket to an
// interface. It builds Linux network namespaces, so it runs only on Linux.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "demo: needs Linux network namespaces; this is %s\n", runtime.GOOS)
	os.Exit(1)
}
