// Package cgbind binds every IPv4 and IPv6 socket created by the processes
// of a cgroup to one network interface, the way "ip vrf exec" does: a
// BPF_PROG_TYPE_CGROUP_SOCK program attached to a fresh cgroup v2 directory
// at BPF_CGROUP_INET_SOCK_CREATE stores the interface's index in the
// bound_dev_if field of each new socket, which is what SO_BINDTODEVICE sets.
//
// The program refuses Multipath TCP sockets, whose subflows the kernel makes
// itself without running the hook, so that they cannot leave unbound. It is
// eight instructions, assembled here by hand and loaded with
// the bpf(2) system call, so that the command needs no eBPF library.
//
// [Group.Rebind] and [Group.Deny] replace the program while the cgroup's
// processes run, in one BPF_PROG_ATTACH, for exec -follow.
//
// # Lifetime
//
// The program is attached with BPF_PROG_ATTACH, not through a BPF link: the
// attachment belongs to the cgroup, not to a file descriptor of the process
// that made it. If that process dies, even by SIGKILL, the processes left in
// the cgroup keep creating bound sockets until the cgroup is removed, which
// is only possible once they have all exited. That is the fail-closed
// choice: a link would have been released with the process, leaving the
// survivors unbound.
//
// Each cgroup is created in a directory named [BaseName] below a parent
// cgroup and is locked (flock) for as long as its creator lives. Creating a
// cgroup first removes the unlocked, empty ones that a killed creator left
// behind; cgroups that still hold processes are left alone.
package cgbind
