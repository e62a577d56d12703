package bindtodev_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// The Go snippets of README.md and docs/ are whole programs; they must
// keep compiling against the current API. docs/clients.md is the exception:
// its snippets are the source of the integration module's recipes, which
// that module compiles, tests and compares with the text
// (TestClientsDoc).
func TestReadmeSnippetsCompile(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds programs with the go command")
	}
	docs, err := filepath.Glob("docs/*.md")
	require.NoError(t, err)
	var blocks [][][]byte
	for _, name := range append([]string{"README.md"}, docs...) {
		if name == filepath.Join("docs", "clients.md") {
			continue
		}
		text, err := os.ReadFile(name)
		require.NoError(t, err)
		blocks = append(blocks, regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(text, -1)...)
	}
	require.NotEmpty(t, blocks, "README.md has no Go snippets")

	root, err := filepath.Abs(".")
	require.NoError(t, err)
	dir := t.TempDir()
	sum, err := os.ReadFile("go.sum")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644))
	mod := fmt.Sprintf("module readme\n\ngo 1.25.0\n\nrequire github.com/bindtodev/bindtodev v0.0.0\n\nreplace github.com/bindtodev/bindtodev => %s\n", root)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644))
	for i, b := range blocks {
		sub := filepath.Join(dir, fmt.Sprintf("snippet%d", i+1))
		require.NoError(t, os.Mkdir(sub, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(sub, "main.go"), b[1], 0o644))
	}
	// go test puts its own toolchain first on PATH.
	gocmd, err := exec.LookPath("go")
	require.NoError(t, err)
	cmd := exec.Command(gocmd, "vet", "-mod=mod", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "README snippets do not compile:\n%s", out)
}
