// Package rtnl is the small part of rtnetlink(7) that bindtodev needs to
// follow interfaces that come and go: a subscription to the kernel's link
// (and address) groups, a dump of the link table, the parsing of link
// messages, and the kernel's own answer for one name (ioctl). It speaks
// netlink through golang.org/x/sys/unix only, so that the library keeps no
// other runtime dependency.
//
// Events are not the truth: they are a reason to look again. A rename
// arrives as RTM_NEWLINK on an index already known, and an interface that
// moves to another namespace as RTM_DELLINK. Callers subscribe before their
// first lookup, compare indexes, and ask the kernel ([LinkIndex], [LinkUp])
// before acting.
package rtnl
