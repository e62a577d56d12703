// Package netlab builds small networks of real Linux network namespaces and
// veth pairs, so that tests and demonstrations can prove what the kernel
// does with real sockets and real peers without touching the host's own
// interfaces or routes.
//
// A program (or test binary) first calls [Enter], which re-executes it in a
// private network namespace: as root with CLONE_NEWNET, otherwise inside a
// new user namespace as well. Everything the lab creates lives inside that
// namespace or in namespaces created from it, so it all disappears with the
// process, even when the process dies. Peers run in further namespaces as
// goroutines of the same process; their sockets are created on a throwaway
// OS thread that has errUnavailable the peer's namespace.
package netlab
