package integration_test

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the code blocks of docs/clients.md from the code")

const clientsDoc = "../docs/clients.md"

// docBlock is a marker and the Go code block after it:
//
//	<!-- code: NAME -->
//	```go
//	...
//	```
var docBlock = regexp.MustCompile("(?s)(<!-- code: ([A-Za-z0-9_]+) -->\n```go\n)(.*?)(```)")

// functions returns the source of every function of this directory's Go
// files, doc comment included, by name.
func functions(t *testing.T) (all map[string]string, recipes []string) {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	all = map[string]string{}
	for _, name := range files {
		src, err := os.ReadFile(name)
		require.NoError(t, err)
		f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
		require.NoError(t, err)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil {
				continue
			}
			start := fn.Pos()
			if fn.Doc != nil {
				start = fn.Doc.Pos()
			}
			all[fn.Name.Name] = string(src[fset.Position(start).Offset:fset.Position(fn.End()).Offset]) + "\n"
			test := strings.HasSuffix(name, "_test.go")
			if (!test && fn.Name.IsExported()) || (test && strings.HasPrefix(fn.Name.Name, "Example")) {
				recipes = append(recipes, fn.Name.Name)
			}
		}
	}
	return all, recipes
}

// docs/clients.md quotes the recipes and their examples as they are in this
// module, where the lab tests run them; go test -run TestClientsDoc -update
// rewrites the quotes after a change.
func TestClientsDoc(t *testing.T) {
	t.Parallel()
	code, recipes := functions(t)
	doc, err := os.ReadFile(clientsDoc)
	require.NoError(t, err)
	quoted := map[string]bool{}
	out := docBlock.ReplaceAllStringFunc(string(doc), func(block string) string {
		m := docBlock.FindStringSubmatch(block)
		name, text := m[2], m[3]
		quoted[name] = true
		src, ok := code[name]
		if !assert.True(t, ok, "docs/clients.md quotes %s, which the integration module does not have", name) {
			return block
		}
		if !*update {
			assert.Equal(t, src, text, "docs/clients.md quotes %s differently from the code (go test -run TestClientsDoc -update)", name)
		}
		return m[1] + src + m[4]
	})
	for _, name := range recipes {
		assert.True(t, quoted[name], "docs/clients.md does not show %s", name)
	}
	if *update {
		require.NoError(t, os.WriteFile(clientsDoc, []byte(out), 0o644))
	}
}
