# SPDX-License-Identifier: GPL-2.0
#
# hello16.S - a real-mode guest started from the x86 reset state.
#
# Contract (used by the test `guest_io_and_halt`):
#   Image:    a flat binary of exactly 64 KiB (0x10000 bytes), the whole
#             content of a guest memory region at GPA 0xFFFF0000..0xFFFFFFFF
#             (guest_pfn 0xFFFF0, size 0x10000).  Linked at 0: every address
#             below is an offset from CS.base = 0xFFFF0000.
#   Entry:    the reset vector.  The VMM sets no register at all: the VP
#             starts in the architectural reset state (real mode, CS selector
#             0xF000, CS.base 0xFFFF0000, IP 0xFFF0), where a near JMP leads to
#             _start (offset 0xFF00).
#   Memory:   none besides instruction fetches (no stack, no data).
#   Ports:    OUT DX, AL   with DX = 0x3F8, six times: the bytes "hello\n"
#                          (1-byte instruction, access size 1)
#             IN  AL, 0xE0 the VMM returns a byte X in AL (2-byte instruction)
#             OUT 0xE1, AL the guest writes X + 1 (mod 256) (2-byte instruction)
#             HLT          at hlt_insn: HVMSG_X64_HALT, the VMM stops there.
#   Instructions: MOV r16/r8 imm, OUT DX/imm8, IN imm8, ADD AL imm8, HLT,
#             JMP rel8/rel16.
#
# The VMM advances RIP by the intercept's instruction length after each port
# access (and sets RAX for the IN), as a VMM does with Hyper-V.

	.code16
	.text

	.org 0xff00
	.globl _start
_start:
	mov	$0x3f8, %dx
	mov	$'h', %al
	out	%al, (%dx)
	mov	$'e', %al
	out	%al, (%dx)
	mov	$'l', %al
	out	%al, (%dx)
	mov	$'l', %al
	out	%al, (%dx)
	mov	$'o', %al
	out	%al, (%dx)
	mov	$'\n', %al
	out	%al, (%dx)

	in	$0xe0, %al
	add	$1, %al
	out	%al, $0xe1

	.globl hlt_insn
hlt_insn:
	hlt
	jmp	hlt_insn

	# The reset vector: CS.base + 0xFFF0 = GPA 0xFFFFFFF0.
	.org 0xfff0
	.globl reset_vector
reset_vector:
	jmp	_start

	# Pad the image to exactly 64 KiB.
	.org 0x10000
