package main

import (
	"fmt"
	"io"
)

// runDial is a placeholder until the command is written.
func runDial(_ []string, _ io.Reader, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "bindtodev dial: not implemented yet")
	return exitFailure
}
