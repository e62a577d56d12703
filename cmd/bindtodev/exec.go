package main

import (
	"fmt"
	"io"
)

// runExec is a placeholder until the command is written.
func runExec(_ []string, _ io.Reader, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "bindtodev exec: not implemented yet")
	return exitFailure
}
