package cgbind

import "encoding/binary"

// Instruction classes and fields of eBPF, from the kernel's
// include/uapi/linux/bpf.h and bpf_common.h.
const (
	classALU64 = 0x07
	classLDX   = 0x01
	classSTX   = 0x03
	classJMP   = 0x05
	opMOV      = 0xb0
	opJNE      = 0x50
	opEXIT     = 0x90
	srcK       = 0x00 // the operand is the immediate
	modeMEM    = 0x60
	sizeW      = 0x00 // 32 bits

	regR0 = 0 // return value
	regR1 = 1 // first argument: the context, a struct bpf_sock
	regR2 = 2

	// boundDevIfOffset and protocolOffset are offsetof(struct bpf_sock,
	// bound_dev_if) and offsetof(struct bpf_sock, protocol), from
	// include/uapi/linux/bpf.h: four __u32 fields bound_dev_if, family,
	// type, protocol.
	boundDevIfOffset = 0
	protocolOffset   = 12

	// ipprotoMPTCP is IPPROTO_MPTCP (include/uapi/linux/in.h).
	ipprotoMPTCP = 262
)

// insnSize is the size of struct bpf_insn.
const insnSize = 8

// program returns the instructions of a BPF_PROG_TYPE_CGROUP_SOCK program
// that refuses Multipath TCP sockets and binds every other new socket to
// ifindex:
//
//	r2 = *(u32 *)(r1 + protocol)
//	if r2 != IPPROTO_MPTCP goto bind
//	r0 = 0
//	exit
//	bind: r2 = ifindex
//	*(u32 *)(r1 + bound_dev_if) = r2
//	r0 = 1
//	exit
//
// An MPTCP socket cannot be bound this way: its subflows are sockets the
// kernel makes itself (sock_create_kern), for which the hook never runs, and
// the first subflow does not inherit the device. Returning 0 makes socket()
// fail with EPERM; Go then falls back to plain TCP, which is bound, and any
// other program gets an error instead of a leak.
func program(ifindex uint32) []byte {
	insns := []struct {
		code     uint8
		dst, src uint8
		off      int16
		imm      int32
	}{
		{classLDX | modeMEM | sizeW, regR2, regR1, protocolOffset, 0},
		{classJMP | opJNE | srcK, regR2, 0, 2, ipprotoMPTCP},
		{classALU64 | opMOV | srcK, regR0, 0, 0, 0},
		{classJMP | opEXIT, 0, 0, 0, 0},
		{classALU64 | opMOV | srcK, regR2, 0, 0, int32(ifindex)},
		{classSTX | modeMEM | sizeW, regR1, regR2, boundDevIfOffset, 0},
		{classALU64 | opMOV | srcK, regR0, 0, 0, 1},
		{classJMP | opEXIT, 0, 0, 0, 0},
	}
	b := make([]byte, 0, len(insns)*insnSize)
	for _, in := range insns {
		b = appendInsn(b, in.code, in.dst, in.src, in.off, in.imm)
	}
	return b
}

// appendInsn appends one struct bpf_insn to b.
func appendInsn(b []byte, code, dst, src uint8, off int16, imm int32) []byte {
	b = append(b, code, regs(dst, src))
	b = binary.NativeEndian.AppendUint16(b, uint16(off))
	return binary.NativeEndian.AppendUint32(b, uint32(imm))
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

// denyProgram returns the instructions of a BPF_PROG_TYPE_CGROUP_SOCK
// program that refuses every new socket: socket() fails with EPERM.
//
//	r0 = 0
//	exit
func denyProgram() []byte {
	b := make([]byte, 0, 2*insnSize)
	b = appendInsn(b, classALU64|opMOV|srcK, regR0, 0, 0, 0)
	return appendInsn(b, classJMP|opEXIT, 0, 0, 0, 0)
}
