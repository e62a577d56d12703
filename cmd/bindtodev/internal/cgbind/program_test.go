package cgbind

import (
	"bytes"
	"testing"
)

// The program's bytes, written out by hand from the instruction set
// (Documentation/bpf/standardization/instruction-set.rst), so that a slip in
// the encoder shows here rather than as a verifier error.
func TestProgramEncoding(t *testing.T) {
	if bigEndian {
		t.Skip("the expected bytes are written for a little-endian machine")
	}
	want := []byte{
		0x61, 0x12, 0x0c, 0, 0, 0, 0, 0, // r2 = *(u32 *)(r1 + 12)
		0x55, 0x02, 0x02, 0, 0x06, 0x01, 0, 0, // if r2 != 262 goto +2
		0xb7, 0x00, 0, 0, 0, 0, 0, 0, // r0 = 0
		0x95, 0x00, 0, 0, 0, 0, 0, 0, // exit
		0xb7, 0x02, 0, 0, 0x07, 0x01, 0, 0, // r2 = 0x107
		0x63, 0x21, 0, 0, 0, 0, 0, 0, // *(u32 *)(r1 + 0) = r2
		0xb7, 0x00, 0, 0, 0x01, 0, 0, 0, // r0 = 1
		0x95, 0x00, 0, 0, 0, 0, 0, 0, // exit
	}
	if got := program(0x107); !bytes.Equal(got, want) {
		t.Errorf("program(0x107) =\n% x\nwant\n% x", got, want)
	}
}

// The deny program, written out by hand the same way.
func TestDenyProgramEncoding(t *testing.T) {
	if bigEndian {
		t.Skip("the expected bytes are written for a little-endian machine")
	}
	want := []byte{
		0xb7, 0x00, 0, 0, 0, 0, 0, 0, // r0 = 0
		0x95, 0x00, 0, 0, 0, 0, 0, 0, // exit
	}
	if got := denyProgram(); !bytes.Equal(got, want) {
		t.Errorf("denyProgram() =\n% x\nwant\n% x", got, want)
	}
}

func TestRegsNibbles(t *testing.T) {
	r := regs(1, 2)
	dst, src := r&0xf, r>>4
	if bigEndian {
		dst, src = r>>4, r&0xf
	}
	if dst != 1 || src != 2 {
		t.Errorf("regs(1, 2) = %#x: dst %d, src %d", r, dst, src)
	}
}
