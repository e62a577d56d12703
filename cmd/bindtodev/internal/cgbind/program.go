package cgbind

import "encoding/binary"

// Instruction classes and fields of eBPF, from the kernel's
// include/uapi/linux/bpf.h and bpf_common.h.
const (
	classALU64 = 0x07
	classSTX   = 0x03
	classJMP   = 0x05
	opMOV      = 0xb0
	opEXIT     = 0x90
	srcK       = 0x00 // the operand is the immediate
	modeMEM    = 0x60
	sizeW      = 0x00 // 32 bits

	regR0 = 0 // return value
	regR1 = 1 // first argument: the context, a struct bpf_sock
	regR2 = 2

	// boundDevIfOffset is offsetof(struct bpf_sock, bound_dev_if).
	boundDevIfOffset = 0
)

// insnSize is the size of struct bpf_insn.
const insnSize = 8

// program returns the instructions of a BPF_PROG_TYPE_CGROUP_SOCK program
// that binds each new socket to ifindex and lets its creation go on:
//
//	r2 = ifindex
//	*(u32 *)(r1 + bound_dev_if) = r2
//	r0 = 1
//	exit
func program(ifindex uint32) []byte {
	insns := []struct {
		code     uint8
		dst, src uint8
		off      int16
		imm      int32
	}{
		{classALU64 | opMOV | srcK, regR2, 0, 0, int32(ifindex)},
		{classSTX | modeMEM | sizeW, regR1, regR2, boundDevIfOffset, 0},
		{classALU64 | opMOV | srcK, regR0, 0, 0, 1},
		{classJMP | opEXIT, 0, 0, 0, 0},
	}
	b := make([]byte, 0, len(insns)*insnSize)
	for _, in := range insns {
		b = append(b, in.code, regs(in.dst, in.src))
		b = binary.NativeEndian.AppendUint16(b, uint16(in.off))
		b = binary.NativeEndian.AppendUint32(b, uint32(in.imm))
	}
	return b
}

// regs packs the register fields of struct bpf_insn, two 4-bit bit fields
// (dst_reg first) whose order in the byte follows the machine's endianness.
func regs(dst, src uint8) byte {
	if bigEndian {
		return dst<<4 | src&0xf
	}
	return src<<4 | dst&0xf
}

var bigEndian = binary.NativeEndian.Uint16([]byte{0, 1}) == 1
