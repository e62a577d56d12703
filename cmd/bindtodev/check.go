package main

import (
	"fmt"
	"io"
)

// runCheck is a placeholder until the command is written.
func runCheck(_ []string, _ io.Reader, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "bindtodev check: not implemented yet")
	return exitFailure
}
