//go:build linux && mips

package cgbind

import "unsafe"

// ptr is an __aligned_u64 of union bpf_attr that holds a pointer; on this
// 32-bit big-endian machine the pointer is its low, second, half.
type ptr struct {
	_ uint32
	p unsafe.Pointer
}
