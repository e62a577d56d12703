package cgbind

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The parts of union bpf_attr (include/uapi/linux/bpf.h) that the package
// uses, each ending where the kernel stops reading for the command. The
// kernel requires every byte after the fields it knows to be zero, and
// accepts a shorter attribute from an older caller.

type progLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              ptr
	license            ptr
	logLevel           uint32
	logSize            uint32
	logBuf             ptr
	kernVersion        uint32
	progFlags          uint32
	progName           [unix.BPF_OBJ_NAME_LEN]byte
	progIfindex        uint32
	expectedAttachType uint32
}

type progAttachAttr struct {
	targetFD     uint32
	attachBPFFD  uint32
	attachType   uint32
	attachFlags  uint32
	replaceBPFFD uint32
}

type progQueryAttr struct {
	targetFD    uint32
	attachType  uint32
	queryFlags  uint32
	attachFlags uint32
	progIDs     ptr
	progCnt     uint32
	_           uint32
}

type getFDByIDAttr struct {
	id        uint32
	nextID    uint32
	openFlags uint32
}

type objInfoAttr struct {
	bpfFD   uint32
	infoLen uint32
	info    ptr
}

// progInfo is the start of struct bpf_prog_info, up to its name.
type progInfo struct {
	progType       uint32
	id             uint32
	tag            [8]byte
	jitedProgLen   uint32
	xlatedProgLen  uint32
	jitedProgInsns uint64
	xlatedInsns    uint64
	loadTime       uint64
	createdByUID   uint32
	nrMapIDs       uint32
	mapIDs         uint64
	name           [unix.BPF_OBJ_NAME_LEN]byte
}

// The sizes the kernel expects: a mistake in the structures above would
// otherwise surface as EINVAL or as a wrong field.
var _ = [1]struct{}{}[unsafe.Sizeof(progLoadAttr{})-72]
var _ = [1]struct{}{}[unsafe.Sizeof(progAttachAttr{})-20]
var _ = [1]struct{}{}[unsafe.Sizeof(progQueryAttr{})-32]
var _ = [1]struct{}{}[unsafe.Sizeof(objInfoAttr{})-16]
var _ = [1]struct{}{}[unsafe.Sizeof(progInfo{})-80]

// ProgramName is the name the kernel shows for the program, for example in
// "bpftool prog".
const ProgramName = "bindtodev"

// license is the program's license string: the program calls no helper
// reserved to GPL programs, so the project's own license will do.
var license = []byte("MIT\x00")

func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	runtime.KeepAlive(attr)
	if errno != 0 {
		return int(r), errno
	}
	return int(r), nil
}

// privilegeHint is the part of an error message that tells an operator what
// the kernel asks for. Every permission failure names all of it, since the
// first missing privilege hides the others.
const privilegeHint = "binding a cgroup's sockets needs CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN, and write access to a cgroup2 directory"

// DenyProgramName is the name the kernel shows for the program that
// refuses every new socket, which [Group.Deny] attaches.
const DenyProgramName = "bindtodev_deny"

// loadProgram loads the program that binds each new socket to ifindex and
// returns its descriptor.
func loadProgram(ifindex uint32) (int, error) {
	return loadSockCreate(program(ifindex), ProgramName)
}

// loadSockCreate loads insns as a BPF_CGROUP_INET_SOCK_CREATE program
// named name and returns its descriptor.
func loadSockCreate(insns []byte, name string) (int, error) {
	logBuf := make([]byte, 64<<10)
	attr := progLoadAttr{
		progType:           unix.BPF_PROG_TYPE_CGROUP_SOCK,
		insnCnt:            uint32(len(insns) / insnSize),
		insns:              newPtr(unsafe.Pointer(&insns[0])),
		license:            newPtr(unsafe.Pointer(&license[0])),
		logLevel:           1,
		logSize:            uint32(len(logBuf)),
		logBuf:             newPtr(unsafe.Pointer(&logBuf[0])),
		expectedAttachType: unix.BPF_CGROUP_INET_SOCK_CREATE,
	}
	copy(attr.progName[:], name)
	// The kernel answers EAGAIN now and then, under memory pressure or
	// many loads in a row; libbpf retries too.
	var fd int
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		fd, err = bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		if !errors.Is(err, unix.EAGAIN) {
			break
		}
	}
	runtime.KeepAlive(insns)
	if err != nil {
		err = os.NewSyscallError("bpf(BPF_PROG_LOAD)", err)
		if errors.Is(err, os.ErrPermission) {
			return -1, fmt.Errorf("load BPF program: %w (%s)", err, privilegeHint)
		}
		if log := strings.TrimSpace(string(logBuf[:clen(logBuf)])); log != "" {
			return -1, fmt.Errorf("load BPF program: %w; verifier log:\n%s", err, log)
		}
		return -1, fmt.Errorf("load BPF program: %w", err)
	}
	return fd, nil
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// attach attaches program prog to the cgroup open as cgroupFD. Flags 0 (no
// BPF_F_ALLOW_OVERRIDE) forbid programs of descendant cgroups of the same
// type, so that a wrapped program cannot replace it in a cgroup of its own.
func attach(cgroupFD, prog int) error { return attachFlags(cgroupFD, prog, 0) }

func attachFlags(cgroupFD, prog int, flags uint32) error {
	return attachAs(cgroupFD, prog, unix.BPF_CGROUP_INET_SOCK_CREATE, flags)
}

func attachAs(cgroupFD, prog int, t AttachType, flags uint32) error {
	attr := progAttachAttr{
		targetFD:    uint32(cgroupFD),
		attachBPFFD: uint32(prog),
		attachType:  uint32(t),
		attachFlags: flags,
	}
	_, err := bpf(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return os.NewSyscallError("bpf(BPF_PROG_ATTACH)", err)
}

// programID returns the kernel's ID of the program open as fd.
func programID(fd int) (uint32, error) {
	info, err := programInfo(fd)
	return info.id, err
}

func programInfo(fd int) (progInfo, error) {
	var info progInfo
	attr := objInfoAttr{bpfFD: uint32(fd), infoLen: uint32(unsafe.Sizeof(info)), info: newPtr(unsafe.Pointer(&info))}
	_, err := bpf(unix.BPF_OBJ_GET_INFO_BY_FD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(&info)
	if err != nil {
		return info, os.NewSyscallError("bpf(BPF_OBJ_GET_INFO_BY_FD)", err)
	}
	return info, nil
}

// ProgramExists reports whether the kernel still holds the program with ID
// id. The kernel frees a detached program asynchronously, shortly after its
// last reference goes.
func ProgramExists(id uint32) (bool, error) {
	attr := getFDByIDAttr{id: id}
	fd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, os.NewSyscallError("bpf(BPF_PROG_GET_FD_BY_ID)", err)
	}
	unix.Close(fd)
	return true, nil
}

func newPtr(p unsafe.Pointer) ptr { return ptr{p: p} }
