package bindtodev_test

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev"
)

// Dialer and ListenConfig embed net's types, so every method and field that
// a Go release adds to net.Dialer or net.ListenConfig is promoted into them,
// and a new way to make sockets would make them unbound. Go 1.26's DialTCP,
// DialUDP, DialIP and DialUnix were such methods. The tables below account
// for every method and field of net's types: a method is either declared by
// this package, which shadows it, or recorded as harmless with the reason.
// A new Go release that adds anything fails this test until someone
// decides.
var (
	// harmlessDialerMethods are net.Dialer methods that make no socket.
	harmlessDialerMethods = map[string]string{}
	// dialerMethods are the net.Dialer methods the package must shadow.
	dialerMethods = []string{
		"Dial", "DialContext", "MultipathTCP", "SetMultipathTCP",
		"DialTCP", "DialUDP", "DialIP", "DialUnix", // Go 1.26
	}
	// dialerFields says how the package treats each field of net.Dialer.
	dialerFields = map[string]string{
		"Timeout":         "kept",
		"Deadline":        "kept",
		"LocalAddr":       "taken over: bound inside the hook, after the device",
		"DualStack":       "kept (deprecated)",
		"FallbackDelay":   "kept",
		"KeepAlive":       "kept",
		"KeepAliveConfig": "kept",
		"Resolver":        "kept; lookups are not bound unless it is bindtodev.Resolver",
		"Cancel":          "kept (deprecated)",
		"Control":         "chained after the device is bound",
		"ControlContext":  "chained after the device is bound",
		"mptcpStatus":     "unexported; forced off, and the hook refuses Multipath TCP sockets",
	}

	harmlessListenConfigMethods = map[string]string{}
	listenConfigMethods         = []string{"Listen", "ListenPacket", "MultipathTCP", "SetMultipathTCP"}
	listenConfigFields          = map[string]string{
		"Control":         "chained after the device is bound",
		"KeepAlive":       "kept",
		"KeepAliveConfig": "kept",
		"mptcpStatus":     "unexported; forced off, and the hook refuses Multipath TCP sockets",
	}
)

func TestEmbeddedNetTypesAccountedFor(t *testing.T) {
	t.Parallel()
	declared := declaredMethods(t)
	for _, tc := range []struct {
		name     string
		net      reflect.Type
		ours     string
		shadowed []string
		harmless map[string]string
		fields   map[string]string
	}{
		{"net.Dialer", reflect.TypeFor[*net.Dialer](), "Dialer", dialerMethods, harmlessDialerMethods, dialerFields},
		{"net.ListenConfig", reflect.TypeFor[*net.ListenConfig](), "ListenConfig", listenConfigMethods, harmlessListenConfigMethods, listenConfigFields},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.net.NumMethod() {
				name := tc.net.Method(i).Name
				if reason, ok := tc.harmless[name]; ok {
					t.Logf("%s.%s is promoted: %s", tc.name, name, reason)
					continue
				}
				assert.Contains(t, tc.shadowed, name,
					"%s.%s is new: shadow it on *%s or record in this test why it makes no socket", tc.name, name, tc.ours)
				assert.True(t, declared[tc.ours][name],
					"*%s does not declare %s, so net's unbound method is promoted", tc.ours, name)
			}
			st := tc.net.Elem()
			for i := range st.NumField() {
				name := st.Field(i).Name
				assert.Contains(t, tc.fields, name,
					"%s.%s is a new field: decide what *%s does with it and record it in this test", tc.name, name, tc.ours)
			}
		})
	}
}

// Every exported method of the package's types is one of net's, shadowed,
// or the package's own; nothing is promoted that the tables above did not
// account for.
func TestMethodSets(t *testing.T) {
	t.Parallel()
	declared := declaredMethods(t)
	for _, tc := range []struct {
		ours, netName string
		typ, net      reflect.Type
		harmless      map[string]string
	}{
		{"Dialer", "net.Dialer", reflect.TypeFor[*bindtodev.Dialer](), reflect.TypeFor[*net.Dialer](), harmlessDialerMethods},
		{"ListenConfig", "net.ListenConfig", reflect.TypeFor[*bindtodev.ListenConfig](), reflect.TypeFor[*net.ListenConfig](), harmlessListenConfigMethods},
	} {
		var promoted []string
		for i := range tc.typ.NumMethod() {
			name := tc.typ.Method(i).Name
			if declared[tc.ours][name] {
				continue
			}
			_, fromNet := tc.net.MethodByName(name)
			require.True(t, fromNet, "*%s.%s comes from neither the package nor %s", tc.ours, name, tc.netName)
			promoted = append(promoted, name)
		}
		sort.Strings(promoted)
		var want []string
		for name := range tc.harmless {
			want = append(want, name)
		}
		sort.Strings(want)
		assert.Equal(t, want, promoted, "methods of %s promoted into *%s", tc.netName, tc.ours)
	}
}

// declaredMethods parses the package's own source files that this
// toolchain builds (go1.26 constraints included) and returns the methods
// declared on each type.
func declaredMethods(t *testing.T) map[string]map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	out := map[string]map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if match, err := build.Default.MatchFile(".", name); err != nil || !match {
			require.NoError(t, err)
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || len(fn.Recv.List) != 1 {
				continue
			}
			recv := fn.Recv.List[0].Type
			if star, ok := recv.(*ast.StarExpr); ok {
				recv = star.X
			}
			if id, ok := recv.(*ast.Ident); ok {
				if out[id.Name] == nil {
					out[id.Name] = map[string]bool{}
				}
				out[id.Name][fn.Name.Name] = true
			}
		}
	}
	return out
}
