package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bindtodev/bindtodev/internal/netlab"
	"github.com/bindtodev/bindtodev/internal/progtest"
)

// When clone(2) refuses a user namespace with ENOSPC, the demo names the
// limit user.max_user_namespaces and the fix, not a full disk. The test
// sets that limit to 0 inside a user namespace of its own (the host's is
// never touched) and runs the demo there as an unprivileged user.
func TestDemoNamesTheUserNamespaceLimit(t *testing.T) {
	netlab.SkipUnavailable(t)
	setpriv, err := exec.LookPath("setpriv")
	require.NoError(t, err, "setpriv (util-linux) runs the demo as an unprivileged user")
	demo := progtest.Build(t)
	require.NoError(t, os.Chmod(filepath.Dir(demo), 0o755))
	cmd := exec.Command("/bin/sh", "-c",
		`echo 0 >/proc/sys/user/max_user_namespaces && exec "$0" --reuid=65534 --regid=65534 --clear-groups "$1"`,
		setpriv, demo)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}},
		GidMappingsEnableSetgroups: true,
	}
	cmd.Env = append(os.Environ(), "BINDTODEV_NETLAB_INNER=")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the demo cannot run:\n%s", out)
	assert.Contains(t, string(out), "user.max_user_namespaces (0) is reached")
	assert.Contains(t, string(out), "sysctl -w user.max_user_namespaces=")
	assert.NotContains(t, string(out), "no space left on device\n")
}

func TestMain(m *testing.M) { netlab.Main(m) }
