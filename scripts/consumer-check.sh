#!/usr/bin/env bash
# Shows what a user's module gains by adding this one: the go.mod of a
# fresh consumer module that imports the package, once tidied, must require
# nothing but the package itself and golang.org/x/sys. (The module graph
# lists the package's own test dependencies as well; they are never built
# into, nor written down by, the consumer.)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS= # the consumer's go.mod is written here
go mod init example.com/consumer >/dev/null 2>&1
go mod edit -require=github.com/bindtodev/bindtodev@v0.0.0 -replace=github.com/bindtodev/bindtodev="$repo"
cat >main.go <<'GO'
package main

import "github.com/bindtodev/bindtodev"

func main() { _, _ = bindtodev.Dial("eth0", "tcp", "192.0.2.1:80") }
GO
go mod tidy
go build -o /dev/null .
# The paths of every require line, in a block or alone.
got=$(awk '$1 == "require" && $2 == "(" { block = 1; next }
	block && $1 == ")" { block = 0; next }
	block { print $1 }
	$1 == "require" { print $2 }' go.mod | sort -u)
want=$(printf '%s\n' github.com/bindtodev/bindtodev golang.org/x/sys)
echo "the consumer's go.mod requires:"; echo "$got" | sed 's/^/  /'
if [ "$got" != "$want" ]; then
	echo "a consumer needs more than the package and golang.org/x/sys:"; cat go.mod
	exit 1
fi
