package main

import (
	"fmt"
	"io"
)

// runListen is a placeholder until the command is written.
func runListen(_ []string, _ io.Reader, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "bindtodev listen: not implemented yet")
	return exitFailure
}
