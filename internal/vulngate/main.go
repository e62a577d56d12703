// Command vulngate reads govulncheck's JSON output (-format json) on
// standard input and decides the CI step: it fails when code of this module
// calls a vulnerable function of a required module, and reports, without
// failing, the vulnerabilities it calls in the standard library.
//
// The standard library is the Go toolchain's, not a dependency of this
// module: users build with their own toolchain, and the CI machine's is
// fixed at the version installed there. Its findings are printed with the
// Go release that fixes them, so that a newer toolchain is chosen on
// purpose, but they do not block the build.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// finding is the part of a govulncheck "finding" message the gate reads.
type finding struct {
	OSV          string  `json:"osv"`
	FixedVersion string  `json:"fixed_version"`
	Trace        []frame `json:"trace"`
}

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
}

type message struct {
	Finding *finding `json:"finding"`
}

func main() {
	blocking, report, err := gate(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(1)
	}
	fmt.Print(report)
	if blocking {
		os.Exit(1)
	}
}

// gate reads the messages in r and returns whether a called vulnerability
// lies outside the standard library, with a report of every called one.
func gate(r io.Reader) (blocking bool, report string, err error) {
	// By OSV ID and module: one ID may name the same flaw in the standard
	// library and in a module.
	called := map[string]finding{}
	dec := json.NewDecoder(r)
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return false, "", fmt.Errorf("read govulncheck output: %w", err)
		}
		// Only findings down to a function are called by this module's
		// code; module- and package-level ones are not.
		if f := m.Finding; f != nil && len(f.Trace) > 0 && f.Trace[0].Function != "" {
			called[f.OSV+" "+f.Trace[0].Module] = *f
		}
	}
	keys := make([]string, 0, len(called))
	for key := range called {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, key := range keys {
		f := called[key]
		top := f.Trace[0]
		kind := "standard library (toolchain)"
		if top.Module != "stdlib" {
			kind, blocking = "module "+top.Module, true
		}
		fmt.Fprintf(&b, "%s: %s %s, called in %s.%s; fixed in %s\n", f.OSV, kind, top.Version, top.Package, top.Function, f.FixedVersion)
	}
	switch {
	case blocking:
		b.WriteString("FAIL: this module calls a vulnerable function of a dependency; upgrade it\n")
	case len(keys) > 0:
		fmt.Fprintf(&b, "WARNING: %d called vulnerabilities are in the standard library of this machine's toolchain only; "+
			"no dependency of the module is affected. Build releases with a Go that fixes them.\n", len(keys))
	default:
		b.WriteString("no called vulnerability\n")
	}
	return blocking, b.String(), nil
}
