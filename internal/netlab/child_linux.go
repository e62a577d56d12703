package netlab

import (
	"os"
	"strings"
)

// ChildEnv returns the process's environment without the mark that Enter
// leaves, for a child process that builds a lab of its own: the child's
// Enter then puts it in a fresh private namespace, where its labs cannot
// collide with those of the parent.
func ChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, innerEnv+"=") {
			env = append(env, kv)
		}
	}
	return env
}
