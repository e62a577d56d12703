package cgbind

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// BaseName is the directory, below the parent cgroup, that holds the
// cgroups the package creates, one per [Group].
const BaseName = "bindtodev-exec"

// runPrefix starts the name of each Group's cgroup.
const runPrefix = "run-"

// ErrNoCgroup2 is wrapped by the error returned when no cgroup v2 hierarchy
// is mounted, or a directory given as a parent is not part of one.
var ErrNoCgroup2 = errors.New("no cgroup2 file system")

// notCgroup2Error is the error for a parent directory outside cgroup2.
type notCgroup2Error struct{ dir string }

func (e notCgroup2Error) Error() string {
	return e.dir + " is not a cgroup2 directory (it is on another file system)"
}

func (e notCgroup2Error) Is(target error) bool { return target == ErrNoCgroup2 }

// OwnCgroup returns the directory of the calling process's own cgroup in the
// cgroup v2 hierarchy, found through /proc/self/mountinfo and
// /proc/self/cgroup.
func OwnCgroup() (string, error) {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer mi.Close()
	mounts, err := cgroup2Mounts(mi)
	if err != nil {
		return "", err
	}
	cg, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer cg.Close()
	own, err := unifiedPath(cg)
	if err != nil {
		return "", err
	}
	return cgroupDir(mounts, own)
}

// mount is a cgroup2 mount: the directory of the hierarchy it shows at its
// mount point.
type mount struct {
	root, point string
}

// cgroup2Mounts reads the cgroup2 mounts from a mountinfo file (see
// proc_pid_mountinfo(5)).
func cgroup2Mounts(r io.Reader) ([]mount, error) {
	var mounts []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		mounts = append(mounts, mount{root: unescape(fields[3]), point: unescape(fields[4])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	if len(mounts) == 0 {
		return nil, fmt.Errorf("%w is mounted (none in /proc/self/mountinfo); mount one, for example with \"mount -t cgroup2 none /sys/fs/cgroup\" (or /sys/fs/cgroup/unified on a host that mounts the version 1 controllers there). Under \"ip netns exec\", which mounts a /sys of its own without the cgroup file systems, enter the namespace with \"nsenter --net=/run/netns/NAME\" instead, which keeps the mounts, or pass -cgroup with a cgroup2 directory mounted elsewhere", ErrNoCgroup2)
	}
	return mounts, nil
}

// unescape undoes the octal escapes (\040 for a space) of mountinfo paths.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unifiedPath returns the process's path in the cgroup v2 hierarchy from a
// /proc/self/cgroup file, the line of hierarchy 0 (see cgroups(7)).
func unifiedPath(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	return "", fmt.Errorf("%w: /proc/self/cgroup has no cgroup v2 entry", ErrNoCgroup2)
}

// cgroupDir maps the cgroup path own to a directory under one of mounts.
func cgroupDir(mounts []mount, own string) (string, error) {
	for _, m := range mounts {
		rel, err := filepath.Rel(m.root, own)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		return filepath.Join(m.point, rel), nil
	}
	return "", fmt.Errorf("%w shows this process's cgroup %q (cgroup2 mounts: %v)", ErrNoCgroup2, own, mounts)
}

// Group is a cgroup whose new sockets are all bound to one interface.
type Group struct {
	// Path is the cgroup's directory.
	Path string
	// ProgramID is the kernel's ID of the attached program.
	ProgramID uint32

	base string
	dir  *os.File // open and locked while the Group lives
}

// New creates a cgroup in the directory [BaseName] below parent, attaches
// the program that binds every socket created in it to the interface with
// index ifindex (and refuses Multipath TCP sockets, which it could not
// bind), and checks that no other program that could change the binding
// runs for its sockets: no other socket-creation program, and none of a
// risky attach type (see [AttachType.Risky]) except those in allowed.
// parent must be a directory of a cgroup2 file system; [OwnCgroup] is the
// usual choice. Before it creates its own, New removes the empty cgroups
// that creators now dead left in BaseName.
//
// On failure nothing is left behind, and the error names the cause and
// what the kernel asks for: errors.Is(err, os.ErrPermission) holds for a
// missing privilege, errors.Is(err, ErrNoCgroup2) when parent is not in a
// cgroup2 file system, and errors.As with a [*ForeignProgramError] when an
// ancestor's program could change the binding.
func New(parent string, ifindex int, allowed ...AttachType) (*Group, error) {
	if ifindex <= 0 || ifindex > 1<<31-1 {
		return nil, fmt.Errorf("interface index %d out of range", ifindex)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(parent, &fs); err != nil {
		return nil, fmt.Errorf("cgroup directory %s: %w", parent, os.NewSyscallError("statfs", err))
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, notCgroup2Error{parent}
	}
	base := filepath.Join(parent, BaseName)
	lock, err := lockBase(base)
	if err != nil {
		return nil, err
	}
	sweep(base)
	g, err := create(base)
	unlockBase(lock, err != nil)
	if err != nil {
		return nil, err
	}
	if err := g.bind(ifindex, allowed); err != nil {
		return nil, errors.Join(err, g.Remove())
	}
	return g, nil
}

// create makes and locks a new cgroup in base; the caller holds base's lock.
func create(base string) (*Group, error) {
	path, err := os.MkdirTemp(base, runPrefix)
	if err != nil {
		return nil, cgroupError("create cgroup in", base, err)
	}
	dir, err := openLocked(path, false)
	if err != nil {
		_ = unix.Rmdir(path)
		return nil, err
	}
	return &Group{Path: path, base: base, dir: dir}, nil
}

func (g *Group) bind(ifindex int, allowed []AttachType) error {
	prog, err := loadProgram(uint32(ifindex))
	if err != nil {
		return err
	}
	// The attachment keeps the program; the descriptor is not needed after.
	defer unix.Close(prog)
	if g.ProgramID, err = programID(prog); err != nil {
		return fmt.Errorf("identify BPF program: %w", err)
	}
	if err := attach(g.FD(), prog); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("attach BPF program to cgroup %s: %w (%s; an ancestor cgroup may also hold a program of the same type that forbids others)", g.Path, err, privilegeHint)
		}
		return fmt.Errorf("attach BPF program to cgroup %s: %w", g.Path, err)
	}
	ids, err := EffectivePrograms(g.FD())
	if err != nil {
		return fmt.Errorf("check BPF programs of cgroup %s: %w", g.Path, err)
	}
	if len(ids) != 1 || ids[0] != g.ProgramID {
		// An inherited program runs after ours and could set another
		// device: the binding would not be ours to promise.
		return fmt.Errorf("cgroup %s: %d socket-creation BPF programs would run, not only the binding one (IDs %v, ours %d); an ancestor cgroup holds one attached with BPF_F_ALLOW_MULTI, which could change the binding", g.Path, len(ids), ids, g.ProgramID)
	}
	return g.checkForeign(allowed)
}

// FD returns the descriptor of the cgroup's directory, for
// syscall.SysProcAttr.CgroupFD: a child started with it (clone3 with
// CLONE_INTO_CGROUP) is in the cgroup from its first instruction.
func (g *Group) FD() int { return int(g.dir.Fd()) }

// ErrBusy is wrapped by the error of [Group.Remove] when processes still
// run in the cgroup; the cgroup and its program stay until they exit.
var ErrBusy = errors.New("processes still run in the cgroup")

// Remove removes the cgroup, which releases the program, and releases the
// Group's lock. When processes remain in the cgroup, it is left in place,
// with the program attached, for a later [New] to remove once they have
// exited, and the error wraps [ErrBusy].
func (g *Group) Remove() error {
	if g.dir == nil {
		return nil
	}
	err := unix.Rmdir(g.Path)
	if errors.Is(err, unix.EBUSY) {
		err = fmt.Errorf("cgroup %s: %w", g.Path, ErrBusy)
	} else if err != nil {
		err = cgroupError("remove cgroup", g.Path, err)
	}
	g.dir.Close()
	g.dir = nil
	if lock, lerr := lockBase(g.base); lerr == nil {
		unlockBase(lock, true)
	}
	return err
}

// lockBase creates base if needed, opens and locks it. Whoever removes base
// holds its lock, so a lock taken on a directory that is no longer at the
// path is dropped and taken again.
func lockBase(base string) (*os.File, error) {
	for range 100 {
		if err := unix.Mkdir(base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, cgroupError("create cgroup", base, err)
		}
		f, err := openLocked(base, true)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(base, &now) == nil && held.Ino == now.Ino {
			return f, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("cgroup %s keeps disappearing", base)
}

// unlockBase releases base's lock, first removing base when asked and when
// it is empty.
func unlockBase(lock *os.File, remove bool) {
	if remove {
		_ = unix.Rmdir(lock.Name())
	}
	lock.Close()
}

// openLocked opens the directory path and locks it, waiting for the lock
// when wait is true.
func openLocked(path string, wait bool) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, cgroupError("open cgroup", path, errors.Unwrap(err))
	}
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock cgroup %s: %w", path, os.NewSyscallError("flock", err))
	}
	return f, nil
}

// sweep removes the cgroups in base whose creator is gone (their lock is
// free) and in which no process is left. The caller holds base's lock, so
// no creator is between making a cgroup and locking it.
func sweep(base string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), runPrefix) {
			continue
		}
		path := filepath.Join(base, e.Name())
		f, err := openLocked(path, false)
		if err != nil {
			continue // alive, or gone already
		}
		_ = unix.Rmdir(path) // EBUSY while processes remain
		f.Close()
	}
}

// cgroupError describes a failure to change a cgroup directory, naming
// what the kernel asks for when it is a matter of permission.
func cgroupError(what, path string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = os.NewSyscallError(opName(what), errno)
	}
	if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EROFS) {
		return fmt.Errorf("%s %s: %w (%s)", what, path, err, privilegeHint)
	}
	return fmt.Errorf("%s %s: %w", what, path, err)
}

func opName(what string) string {
	switch {
	case strings.HasPrefix(what, "create"):
		return "mkdir"
	case strings.HasPrefix(what, "remove"):
		return "rmdir"
	}
	return "open"
}
