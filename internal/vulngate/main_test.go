package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A shortened govulncheck -format json stream: a module-level and a called
// standard-library finding, then, in the second case, a called finding in
// a required module.
const (
	stdlibOnly = `{"config": {"scanner_name": "govulncheck"}}
{"osv": {"id": "GO-2026-0001"}}
{"finding": {"osv": "GO-2026-0001", "fixed_version": "v1.26.9", "trace": [{"module": "stdlib", "version": "v1.26.8"}]}}
{"finding": {"osv": "GO-2026-0002", "fixed_version": "v1.26.9", "trace": [
  {"module": "stdlib", "version": "v1.26.8", "package": "net/http", "function": "Serve"},
  {"module": "github.com/bindtodev/bindtodev", "package": "main", "function": "serve"}]}}
`
	dependency = `{"finding": {"osv": "GO-2026-0003", "fixed_version": "v1.26.9", "trace": [
  {"module": "stdlib", "version": "v1.26.8", "package": "net/http", "function": "Serve"}]}}
{"finding": {"osv": "GO-2026-0003", "fixed_version": "v0.60.0", "trace": [
  {"module": "golang.org/x/net", "version": "v0.56.0", "package": "golang.org/x/net/http2", "function": "ReadFrame"}]}}
`
	notCalled = `{"finding": {"osv": "GO-2026-0004", "fixed_version": "v0.60.0", "trace": [
  {"module": "golang.org/x/net", "version": "v0.56.0", "package": "golang.org/x/net/http2"}]}}
`
)

func TestGate(t *testing.T) {
	t.Parallel()
	blocking, report, err := gate(strings.NewReader(stdlibOnly + notCalled))
	require.NoError(t, err)
	assert.False(t, blocking)
	assert.Contains(t, report, "GO-2026-0002: standard library (toolchain) v1.26.8, called in net/http.Serve; fixed in v1.26.9")
	assert.Contains(t, report, "WARNING: 1 called vulnerabilities")
	assert.NotContains(t, report, "GO-2026-0001", "not called")
	assert.NotContains(t, report, "GO-2026-0004", "not called")

	blocking, report, err = gate(strings.NewReader(stdlibOnly + dependency))
	require.NoError(t, err)
	assert.True(t, blocking)
	assert.Contains(t, report, "GO-2026-0003: module golang.org/x/net v0.56.0")
	assert.Contains(t, report, "GO-2026-0003: standard library (toolchain) v1.26.8")
	assert.Contains(t, report, "FAIL")

	blocking, report, err = gate(strings.NewReader(""))
	require.NoError(t, err)
	assert.False(t, blocking)
	assert.Equal(t, "no called vulnerability\n", report)

	_, _, err = gate(strings.NewReader("govulncheck: fetching vulnerabilities: ..."))
	assert.Error(t, err)
}
