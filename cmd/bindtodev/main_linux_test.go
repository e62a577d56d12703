package main

import (
	"testing"

	"github.com/bindtodev/bindtodev/internal/netlab"
)

func TestMain(m *testing.M) {
	// The exec tests start this binary as the bindtodev command and as
	// helper programs; those never reach the tests.
	runExecTestRole()
	netlab.Main(m)
}
