//go:build 386 || arm || mipsle

package cgbind

import "unsafe"

// ptr is an __aligned_u64 of union bpf_attr that holds a pointer; on this
// 32-bit little-endian machine the pointer is its low, first, half.
type ptr struct {
	p unsafe.Pointer
	_ uint32
}
