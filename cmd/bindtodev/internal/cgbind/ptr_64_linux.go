//go:build !386 && !arm && !mips && !mipsle

package cgbind

import "unsafe"

// ptr is an __aligned_u64 of union bpf_attr that holds a pointer. Keeping it
// an unsafe.Pointer, not an integer, lets the garbage collector see it.
type ptr struct {
	p unsafe.Pointer
}
