package cgbind

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// AttachType is a cgroup attach point of BPF programs, enum bpf_attach_type
// of include/uapi/linux/bpf.h.
type AttachType uint32

// attachPoint is what the package knows of one cgroup attach type.
type attachPoint struct {
	typ  AttachType
	name string // bpftool's name, also the one -allow-bpf takes
	// risky is true for the types whose programs can change a socket's
	// device or destination: they can rewrite addresses, call
	// bpf_setsockopt (SO_BINDTODEVICE included, without the
	// capability a process would need), or set the device themselves.
	risky bool
	// why says what such a program can do, for messages and the help.
	why string
	// progType is the program type a program of this attach type has.
	progType uint32
}

// Attach types that golang.org/x/sys/unix does not name yet (Linux 6.7).
const (
	attachUnixConnect     AttachType = 49
	attachUnixSendmsg     AttachType = 50
	attachUnixRecvmsg     AttachType = 51
	attachUnixGetpeername AttachType = 52
	attachUnixGetsockname AttachType = 53
)

const (
	whySockAddr = "rewrites addresses and can call bpf_setsockopt(SO_BINDTODEVICE)"
	whyFilter   = "can only let a packet or an operation through or refuse it"
	whyUnix     = "acts on Unix-domain sockets only"
)

// attachPoints are the cgroup attach types of Linux 6.18, the list bpftool
// queries for "bpftool cgroup show". Each program of a risky type that is
// effective on a cgroup runs for its sockets too, after or besides the
// binding one, and so can undo it.
var attachPoints = []attachPoint{
	{unix.BPF_CGROUP_INET_INGRESS, "ingress", false, whyFilter, unix.BPF_PROG_TYPE_CGROUP_SKB},
	{unix.BPF_CGROUP_INET_EGRESS, "egress", false, whyFilter + " (it cannot redirect)", unix.BPF_PROG_TYPE_CGROUP_SKB},
	{unix.BPF_CGROUP_INET_SOCK_CREATE, "sock_create", true, "sets a new socket's device", unix.BPF_PROG_TYPE_CGROUP_SOCK},
	{unix.BPF_CGROUP_INET_SOCK_RELEASE, "sock_release", false, "runs when a socket is released", unix.BPF_PROG_TYPE_CGROUP_SOCK},
	{unix.BPF_CGROUP_INET4_BIND, "bind4", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_INET6_BIND, "bind6", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_INET4_POST_BIND, "post_bind4", false, whyFilter, unix.BPF_PROG_TYPE_CGROUP_SOCK},
	{unix.BPF_CGROUP_INET6_POST_BIND, "post_bind6", false, whyFilter, unix.BPF_PROG_TYPE_CGROUP_SOCK},
	{unix.BPF_CGROUP_INET4_CONNECT, "connect4", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_INET6_CONNECT, "connect6", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{attachUnixConnect, "connect_unix", false, whyUnix, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_INET4_GETPEERNAME, "getpeername4", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_INET6_GETPEERNAME, "getpeername6", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{attachUnixGetpeername, "getpeername_unix", false, whyUnix, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_INET4_GETSOCKNAME, "getsockname4", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_INET6_GETSOCKNAME, "getsockname6", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{attachUnixGetsockname, "getsockname_unix", false, whyUnix, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_UDP4_SENDMSG, "sendmsg4", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_UDP6_SENDMSG, "sendmsg6", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{attachUnixSendmsg, "sendmsg_unix", false, whyUnix, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_UDP4_RECVMSG, "recvmsg4", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_UDP6_RECVMSG, "recvmsg6", true, whySockAddr, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{attachUnixRecvmsg, "recvmsg_unix", false, whyUnix, unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR},
	{unix.BPF_CGROUP_SOCK_OPS, "sock_ops", true, "can call bpf_setsockopt(SO_BINDTODEVICE) on TCP sockets", unix.BPF_PROG_TYPE_SOCK_OPS},
	{unix.BPF_CGROUP_DEVICE, "device", false, "controls access to device files", unix.BPF_PROG_TYPE_CGROUP_DEVICE},
	{unix.BPF_CGROUP_SYSCTL, "sysctl", false, "controls access to sysctls", unix.BPF_PROG_TYPE_CGROUP_SYSCTL},
	{unix.BPF_CGROUP_GETSOCKOPT, "getsockopt", false, "can change what getsockopt reports, not the socket", unix.BPF_PROG_TYPE_CGROUP_SOCKOPT},
	{unix.BPF_CGROUP_SETSOCKOPT, "setsockopt", true, "can rewrite any setsockopt into SO_BINDTODEVICE and call bpf_setsockopt", unix.BPF_PROG_TYPE_CGROUP_SOCKOPT},
	{unix.BPF_LSM_CGROUP, "lsm_cgroup", true, "BPF LSM programs can call bpf_setsockopt on new sockets", unix.BPF_PROG_TYPE_LSM},
}

func pointOf(t AttachType) (attachPoint, bool) {
	i := slices.IndexFunc(attachPoints, func(p attachPoint) bool { return p.typ == t })
	if i < 0 {
		return attachPoint{}, false
	}
	return attachPoints[i], true
}

// String returns bpftool's name of t, such as "sock_ops".
func (t AttachType) String() string {
	if p, ok := pointOf(t); ok {
		return p.name
	}
	return fmt.Sprintf("attach type %d", uint32(t))
}

// Risky reports whether a program of attach type t can change a socket's
// device or destination.
func (t AttachType) Risky() bool {
	p, ok := pointOf(t)
	return !ok || p.risky
}

// RiskyAttachTypes returns, in bpftool's names, the attach types whose
// programs [New] refuses unless allowed; sock_create is never allowed.
func RiskyAttachTypes() []string {
	var names []string
	for _, p := range attachPoints {
		if p.risky && p.typ != unix.BPF_CGROUP_INET_SOCK_CREATE {
			names = append(names, p.name)
		}
	}
	return names
}

// ParseAttachTypes parses a comma-separated list of bpftool's names of risky
// attach types, as -allow-bpf takes it.
func ParseAttachTypes(list string) ([]AttachType, error) {
	var types []AttachType
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(attachPoints, func(p attachPoint) bool { return p.name == name })
		switch {
		case i < 0:
			return nil, fmt.Errorf("unknown BPF attach type %q (risky ones: %s)", name, strings.Join(RiskyAttachTypes(), ", "))
		case attachPoints[i].typ == unix.BPF_CGROUP_INET_SOCK_CREATE:
			return nil, errors.New("sock_create programs cannot be allowed: they set the device themselves")
		case !attachPoints[i].risky:
			return nil, fmt.Errorf("%s programs are always accepted: such a program %s", name, attachPoints[i].why)
		}
		types = append(types, attachPoints[i].typ)
	}
	return types, nil
}

// ForeignProgramError is the error of [New] when a BPF program that could
// change the binding is effective on the new cgroup, inherited from an
// ancestor.
type ForeignProgramError struct {
	Cgroup string
	Type   AttachType
	ID     uint32
	Name   string // the program's name, when the kernel has one
}

func (e *ForeignProgramError) Error() string {
	name := ""
	if e.Name != "" {
		name = fmt.Sprintf(" %q", e.Name)
	}
	p, _ := pointOf(e.Type)
	return fmt.Sprintf("cgroup %s inherits the BPF program%s (id %d) of attach type %s from an ancestor cgroup; such a program %s, so the binding could not be promised (see \"bpftool cgroup tree\")",
		e.Cgroup, name, e.ID, e.Type, p.why)
}

// checkForeign refuses a cgroup on which a risky program other than ours
// is effective, unless its attach type is in allowed.
func (g *Group) checkForeign(allowed []AttachType) error {
	for _, p := range attachPoints {
		if !p.risky || (slices.Contains(allowed, p.typ) && p.typ != unix.BPF_CGROUP_INET_SOCK_CREATE) {
			continue
		}
		ids, err := effective(g.FD(), p.typ)
		if err != nil {
			return fmt.Errorf("check %s BPF programs of cgroup %s: %w", p.name, g.Path, err)
		}
		for _, id := range ids {
			if p.typ == unix.BPF_CGROUP_INET_SOCK_CREATE && id == g.ProgramID {
				continue
			}
			return &ForeignProgramError{Cgroup: g.Path, Type: p.typ, ID: id, Name: programName(id)}
		}
	}
	return nil
}

// EffectivePrograms returns the IDs of the BPF_CGROUP_INET_SOCK_CREATE
// programs that run for sockets created in the cgroup open as cgroupFD: its
// own and those inherited from its ancestors.
func EffectivePrograms(cgroupFD int) ([]uint32, error) {
	return effective(cgroupFD, unix.BPF_CGROUP_INET_SOCK_CREATE)
}

// effective returns the IDs of the programs of attach type t effective on
// the cgroup open as cgroupFD. A kernel that does not know t has none.
func effective(cgroupFD int, t AttachType) ([]uint32, error) {
	ids := make([]uint32, 64)
	attr := progQueryAttr{
		targetFD:   uint32(cgroupFD),
		attachType: uint32(t),
		queryFlags: unix.BPF_F_QUERY_EFFECTIVE,
		progIDs:    newPtr(unsafe.Pointer(&ids[0])),
		progCnt:    uint32(len(ids)),
	}
	_, err := bpf(unix.BPF_PROG_QUERY, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(ids)
	if errors.Is(err, unix.EINVAL) && t >= attachUnixConnect {
		return nil, nil
	}
	if errors.Is(err, unix.ENOSPC) {
		// More programs than the buffer holds: the first ones are there.
		err = nil
	}
	if err != nil {
		return nil, os.NewSyscallError("bpf(BPF_PROG_QUERY)", err)
	}
	return ids[:min(int(attr.progCnt), len(ids))], nil
}

// programName returns the kernel's name of program id, or "".
func programName(id uint32) string {
	attr := getFDByIDAttr{id: id}
	fd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	info, err := programInfo(fd)
	if err != nil {
		return ""
	}
	return string(info.name[:clen(info.name[:])])
}

// AttachPassProgram loads a program of attach type t that lets everything
// through (returns 1) and attaches it to the cgroup open as cgroupFD with
// BPF_F_ALLOW_MULTI, as other tools attach theirs. It returns the
// program's ID. It exists for the tests of this package and its users, to
// stand for a foreign program.
func AttachPassProgram(cgroupFD int, t AttachType) (uint32, error) {
	p, ok := pointOf(t)
	if !ok || p.progType == unix.BPF_PROG_TYPE_LSM {
		return 0, fmt.Errorf("no pass-through program for %v", t)
	}
	insns := make([]byte, 0, 2*insnSize)
	insns = appendInsn(insns, classALU64|opMOV|srcK, regR0, 0, 0, 1)
	insns = appendInsn(insns, classJMP|opEXIT, 0, 0, 0, 0)
	attr := progLoadAttr{
		progType:           p.progType,
		insnCnt:            uint32(len(insns) / insnSize),
		insns:              newPtr(unsafe.Pointer(&insns[0])),
		license:            newPtr(unsafe.Pointer(&license[0])),
		expectedAttachType: uint32(t),
	}
	copy(attr.progName[:], "bindtodev_test")
	fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	if err != nil {
		return 0, fmt.Errorf("load %v program: %w", t, os.NewSyscallError("bpf(BPF_PROG_LOAD)", err))
	}
	defer unix.Close(fd)
	id, err := programID(fd)
	if err != nil {
		return 0, err
	}
	if err := attachAs(cgroupFD, fd, t, unix.BPF_F_ALLOW_MULTI); err != nil {
		return 0, fmt.Errorf("attach %v program: %w", t, err)
	}
	return id, nil
}

// Detach detaches program id, of attach type t, from the cgroup open as
// cgroupFD. The tests use it to show who can undo the binding.
func Detach(cgroupFD int, t AttachType, id uint32) error {
	gattr := getFDByIDAttr{id: id}
	fd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&gattr), unsafe.Sizeof(gattr))
	if err != nil {
		return os.NewSyscallError("bpf(BPF_PROG_GET_FD_BY_ID)", err)
	}
	defer unix.Close(fd)
	attr := progAttachAttr{targetFD: uint32(cgroupFD), attachBPFFD: uint32(fd), attachType: uint32(t)}
	_, err = bpf(unix.BPF_PROG_DETACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return os.NewSyscallError("bpf(BPF_PROG_DETACH)", err)
}
