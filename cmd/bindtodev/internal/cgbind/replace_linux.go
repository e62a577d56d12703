package cgbind

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Rebind replaces the group's program, in one step, by one that binds every
// new socket to the interface with index ifindex (and still refuses
// Multipath TCP sockets). Sockets created before keep their device.
//
// The program is attached without BPF_F_ALLOW_MULTI, so the kernel lets the
// cgroup hold one program of the type and BPF_PROG_ATTACH of another
// replaces it under the cgroup lock: a socket created meanwhile runs either
// the old program or the new one, never none. (BPF_F_REPLACE exists only
// for BPF_F_ALLOW_MULTI attachments, and detaching first would leave a
// moment in which sockets are created unbound.)
//
// On failure the old program stays attached, and ProgramID names it.
func (g *Group) Rebind(ifindex int) error {
	if ifindex <= 0 || ifindex > 1<<31-1 {
		return fmt.Errorf("interface index %d out of range", ifindex)
	}
	prog, err := loadProgram(uint32(ifindex))
	if err != nil {
		return err
	}
	return g.replace(prog)
}

// Deny replaces the group's program, in one step as [Group.Rebind] does, by
// one that refuses every new IPv4 and IPv6 socket: socket() fails with
// EPERM. It keeps a command fail-closed while the interface its sockets are
// bound to does not exist, at the first system call rather than at connect
// or send, and keeps them from binding to an index that the kernel may give
// to another interface later.
func (g *Group) Deny() error {
	prog, err := loadSockCreate(denyProgram(), DenyProgramName)
	if err != nil {
		return err
	}
	return g.replace(prog)
}

// replace attaches prog, which it closes, in place of the group's program,
// and checks with the kernel that it alone runs for the cgroup's sockets.
func (g *Group) replace(prog int) error {
	defer unix.Close(prog)
	id, err := programID(prog)
	if err != nil {
		return fmt.Errorf("identify BPF program: %w", err)
	}
	if err := attach(g.FD(), prog); err != nil {
		return fmt.Errorf("replace BPF program of cgroup %s: %w", g.Path, err)
	}
	g.ProgramID = id
	ids, err := EffectivePrograms(g.FD())
	if err != nil {
		return fmt.Errorf("check BPF programs of cgroup %s: %w", g.Path, err)
	}
	if len(ids) != 1 || ids[0] != id {
		return fmt.Errorf("cgroup %s: after replacing its BPF program, socket-creation programs %v run, not only ours (%d)", g.Path, ids, id)
	}
	return nil
}
