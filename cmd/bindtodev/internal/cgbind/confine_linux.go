package cgbind

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// confinedCapabilities are the capabilities that let a process undo the
// binding of its own sockets or leave its cgroup, each checked by a test of
// "bindtodev exec -confine" or named for the reason given:
var confinedCapabilities = []struct {
	cap int
	why string
}{
	{unix.CAP_NET_RAW, "re-binds a socket (SO_BINDTODEVICE), opens AF_PACKET sockets, which no cgroup program binds"},
	{unix.CAP_NET_ADMIN, "attaches and detaches cgroup BPF programs, changes routes, tc redirects and firewall rules"},
	{unix.CAP_BPF, "loads BPF programs"},
	{unix.CAP_PERFMON, "loads tracing BPF programs"},
	{unix.CAP_SYS_ADMIN, "mounts, enters namespaces (setns), detaches BPF programs"},
	{unix.CAP_SYS_PTRACE, "takes over processes outside the cgroup, the wrapper included, and reaches their mounts through /proc/PID/root"},
	{unix.CAP_DAC_READ_SEARCH, "opens any directory by handle (open_by_handle_at), the hidden cgroup hierarchy included"},
	{unix.CAP_SYS_MODULE, "loads kernel modules"},
	{unix.CAP_SYS_RAWIO, "writes kernel memory (/dev/mem, /dev/kmem)"},
	{unix.CAP_SYS_BOOT, "loads another kernel (kexec_load)"},
}

// ConfinedCapabilities returns the names of the capabilities [Confine]
// removes, with what each would allow.
func ConfinedCapabilities() [][2]string {
	names := map[int]string{
		unix.CAP_NET_RAW: "CAP_NET_RAW", unix.CAP_NET_ADMIN: "CAP_NET_ADMIN", unix.CAP_BPF: "CAP_BPF",
		unix.CAP_PERFMON: "CAP_PERFMON", unix.CAP_SYS_ADMIN: "CAP_SYS_ADMIN", unix.CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
		unix.CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", unix.CAP_SYS_MODULE: "CAP_SYS_MODULE",
		unix.CAP_SYS_RAWIO: "CAP_SYS_RAWIO", unix.CAP_SYS_BOOT: "CAP_SYS_BOOT",
	}
	var out [][2]string
	for _, c := range confinedCapabilities {
		out = append(out, [2]string{names[c.cap], c.why})
	}
	return out
}

// Confine keeps the calling process, even as uid 0, from undoing the
// binding of the cgroup it runs in. The process must have been started in
// a [Group] with new cgroup and mount namespaces (clone with
// CLONE_INTO_CGROUP, then unshare CLONE_NEWCGROUP and CLONE_NEWNS, with
// its mounts made private), so that its cgroup namespace is rooted at the
// Group's cgroup. Confine then
//
//   - replaces every cgroup2 mount with one of the namespace, which shows
//     the Group's cgroup as its root and nothing above it, so that no path
//     leads to another cgroup's cgroup.procs;
//   - sets no_new_privs;
//   - removes the capabilities of [ConfinedCapabilities] from the bounding,
//     ambient, inheritable, permitted and effective sets.
//
// It acts on the calling thread, which must be locked (runtime.LockOSThread)
// and must be the one that calls execve afterwards. On error the process
// must not run anything.
func Confine() error {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	if !bytes.Contains(own, []byte("\n0::/\n")) && !bytes.HasPrefix(own, []byte("0::/\n")) {
		return fmt.Errorf("not at the root of a cgroup namespace (/proc/self/cgroup: %q)", bytes.TrimSpace(own))
	}
	if err := remountCgroup2(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_SET_NO_NEW_PRIVS)", err)
	}
	return dropCapabilities()
}

// remountCgroup2 detaches the cgroup2 mounts, which show the hierarchy of
// the host's cgroup namespace, and mounts, where they were, the cgroup2 of
// the caller's namespace.
func remountCgroup2() error {
	mounts, err := readCgroup2Mounts()
	if err != nil && !errors.Is(err, ErrNoCgroup2) {
		return err
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i].point, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount cgroup2 at %s: %w", mounts[i].point, os.NewSyscallError("umount2", err))
		}
	}
	var points []string
	for _, m := range mounts {
		if slices.Contains(points, m.point) {
			continue
		}
		points = append(points, m.point)
		err := unix.Mount("cgroup2", m.point, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RELATIME, "")
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("mount cgroup2 at %s: %w", m.point, os.NewSyscallError("mount", err))
		}
	}
	// What the process sees now is the proof: every cgroup2 mount left
	// shows the namespace's root, nothing above it.
	after, err := readCgroup2Mounts()
	if err != nil && !errors.Is(err, ErrNoCgroup2) {
		return err
	}
	for _, m := range after {
		if m.root != "/" {
			return fmt.Errorf("a cgroup2 mount at %s still shows %s, outside the command's cgroup", m.point, m.root)
		}
	}
	return nil
}

func readCgroup2Mounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return cgroup2Mounts(f)
}

// dropCapabilities removes confinedCapabilities from every set of the
// calling thread and checks that they are gone.
func dropCapabilities() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return os.NewSyscallError("capget", err)
	}
	for _, c := range confinedCapabilities {
		// EINVAL: a kernel older than the capability, which then
		// grants what it guards through CAP_SYS_ADMIN, dropped too.
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c.cap), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return os.NewSyscallError("prctl(PR_CAPBSET_DROP)", err)
		}
		word, bit := c.cap/32, uint32(1)<<(c.cap%32)
		data[word].Effective &^= bit
		data[word].Permitted &^= bit
		data[word].Inheritable &^= bit
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", err)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return os.NewSyscallError("capset", err)
	}
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return os.NewSyscallError("capget", err)
	}
	for _, c := range confinedCapabilities {
		word, bit := c.cap/32, uint32(1)<<(c.cap%32)
		inBounding, _ := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c.cap), 0, 0, 0)
		if (data[word].Effective|data[word].Permitted|data[word].Inheritable)&bit != 0 || inBounding == 1 {
			return fmt.Errorf("capability %d is still held after dropping it", c.cap)
		}
	}
	return nil
}
