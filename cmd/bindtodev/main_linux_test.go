package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/bindtodev/bindtodev/internal/netlab"
)

func TestMain(m *testing.M) {
	// The exec tests start this binary as the bindtodev command and as
	// helper programs; those never reach the tests.
	runExecTestRole()
	if err := netlab.Enter(); err != nil {
		fmt.Fprintln(os.Stderr, "cmd/bindtodev: real-kernel tests will skip:", err)
	}
	os.Exit(m.Run())
}
