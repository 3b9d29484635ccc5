# SPDX-License-Identifier: GPL-2.0
#
# irq32.S - interrupt delivery through an IDT in 32-bit protected mode: the
# guest of the irqfd and ASSERT_VIRTUAL_INTERRUPT tests.
#
# Contract:
#   Image:    a flat binary linked at GPA 0x1000 (-Ttext=0x1000), GDT and IDT
#             included; the VMM copies it to GPA 0x1000 of a writable,
#             executable region.
#   Entry:    _start = 0x1000.
#   CPU state set by the VMM (mshv-vmtests' enter_protected_mode), as for
#             monitor32: flat CS 0x08 / data 0x10, RFLAGS = 0x2, ESP = 0xF000
#             (the stack must be in guest RAM: interrupt delivery pushes on it).
#   The guest loads its GDT (0x08 flat code, 0x10 flat data: the descriptors
#   of what the VMM put in the segment registers) and an IDT with 32-bit
#   interrupt gates for vectors 2 (NMI, handler_nmi), 0x40 (handler40) and
#   0x41 (handler41); every other vector is not present.
#   Ports (32-bit OUT imm8, 2-byte instructions; the VMM advances RIP):
#     OUT 0x22  phase: 1 = tables loaded, about to `sti; hlt`;
#               2 = back from the first HLT, about to `hlt` again (IF is
#               still set: IRET restored it);
#               3 = back from the second HLT, about to `hlt` again;
#               4 = back from the third HLT; then `cli; hlt` at done_hlt
#               (HVMSG_X64_HALT). The VMM does not resume after it.
#     OUT 0x24  in a handler: its vector;
#     OUT 0x26  in handler_nmi: 2 (an NMI is taken even with IF clear, for
#               example at done_hlt, which it leaves with IRET to the JMP
#               back to the HLT).
#     OUT 0x25  in a handler: the xAPIC ISR register holding vectors 64..95
#               (GPA 0xFEE00120) before, then after, the handler's EOI:
#               handler40 writes 0 to the xAPIC EOI register (0xFEE000B0),
#               handler41 writes 0 to the x2APIC EOI MSR (WRMSR 0x80B).
#   Instructions used: LGDT, LIDT, MOV (imm, moffs, m32 imm), XOR, OUT imm8,
#   PUSH, POP, WRMSR, STI, CLI, HLT, IRET.

	.code32
	.text

.macro gate target
	.word	\target
	.word	0x08
	.byte	0
	.byte	0x8e
	.word	0
.endm

	.globl _start
_start:
	lgdt	gdt_ptr
	lidt	idt_ptr
	mov	$1, %eax
	out	%eax, $0x22
	sti
	.globl first_hlt
first_hlt:
	hlt
	mov	$2, %eax
	out	%eax, $0x22
	.globl second_hlt
second_hlt:
	hlt
	mov	$3, %eax
	out	%eax, $0x22
	.globl third_hlt
third_hlt:
	hlt
	mov	$4, %eax
	out	%eax, $0x22
	cli
	.globl done_hlt
done_hlt:
	hlt
	jmp	done_hlt

	.globl handler_nmi
handler_nmi:
	push	%eax
	mov	$2, %eax
	out	%eax, $0x26
	pop	%eax
	iret

	.globl handler40
handler40:
	push	%eax
	mov	$0x40, %eax
	out	%eax, $0x24
	mov	0xfee00120, %eax
	out	%eax, $0x25
	movl	$0, 0xfee000b0
	mov	0xfee00120, %eax
	out	%eax, $0x25
	pop	%eax
	iret

	.globl handler41
handler41:
	push	%eax
	push	%ecx
	push	%edx
	mov	$0x41, %eax
	out	%eax, $0x24
	mov	0xfee00120, %eax
	out	%eax, $0x25
	mov	$0x80b, %ecx
	xor	%eax, %eax
	xor	%edx, %edx
	wrmsr
	mov	0xfee00120, %eax
	out	%eax, $0x25
	pop	%edx
	pop	%ecx
	pop	%eax
	iret

	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9b000000ffff
	.quad	0x00cf93000000ffff
gdt_end:
gdt_ptr:
	.word	gdt_end - gdt - 1
	.long	gdt

	.p2align 3
idt:
	.fill	2, 8, 0
	gate	handler_nmi
	.fill	0x3d, 8, 0
	gate	handler40
	gate	handler41
idt_end:
idt_ptr:
	.word	idt_end - idt - 1
	.long	idt
