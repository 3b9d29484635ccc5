# SPDX-License-Identifier: GPL-2.0
#
# monitor32.S - a 32-bit flat protected-mode "monitor": a loop that reads a
# command and its arguments from I/O ports, does one memory operation and
# reports the result through another port.  Most VM tests drive the guest
# through it, so the VMM can act (madvise, munmap, mprotect...) between two
# guest memory accesses.
#
# Contract:
#   Image:    a flat binary linked at GPA 0x1000 (-Ttext=0x1000); the VMM
#             copies it to GPA 0x1000 of a writable, executable region.
#   Entry:    _start = 0x1000.
#   CPU state set by the VMM (mshv-vmtests' enter_protected_mode):
#             CR0.PE = 1 (paging off), EFER = 0;
#             CS = base 0, limit 0xFFFFFFFF, selector 0x08, attributes 0xC09B;
#             DS/ES/SS/FS/GS = base 0, limit 0xFFFFFFFF, selector 0x10,
#             attributes 0xC093; RFLAGS = 0x2 (DF = 0, IF = 0); RSP = 0xF000.
#             No GDT/IDT is needed (no segment load, no exception handler);
#             no stack is used; general registers need no initial value.
#   Ports:    every access is 32 bits wide and uses the imm8 form (a 2-byte
#             instruction: IN EAX,imm8 = E5 ib, OUT imm8,EAX = E7 ib).
#             IN  EAX, 0x20   the next command
#             IN  EAX, 0x21   the next argument of the current command
#             OUT 0x23, EAX   auxiliary result (CHECK commands, before 0x22)
#             OUT 0x22, EAX   the final result; then the next command is read
#             OUT 0x2F, EAX   unknown command (EAX = the command)
#   Commands  (arguments in the order they are read; counts in dwords unless
#             said otherwise; addresses are GPAs, dword-aligned):
#     0 HALT                    HLT at hlt_insn (HVMSG_X64_HALT).  The VMM does
#                               not resume after it.
#     1 READ addr               result = dword at addr.  The access is the
#                               2-byte `mov (%esi),%eax` at read_insn;
#                               read_end follows it.
#     2 WRITE addr, value       dword at addr = value; result = value.  The
#                               access is the 2-byte `mov %eax,(%edi)` at
#                               write_insn; write_end follows it.
#     3 FILL addr, count, value REP STOSD; result = value.
#     4 PATTERN_WRITE addr, count, seed
#                               the dword at each address A in the range gets
#                               A ^ seed; result = 0.
#     5 PATTERN_CHECK addr, count, seed
#                               checks that each dword at A equals A ^ seed.
#                               aux = the dword found at the first mismatch
#                               (0 if none); result = the address of the
#                               first mismatch, or 0xFFFFFFFF if none.
#     6 CHECK_CONST addr, count, value
#                               as PATTERN_CHECK, every dword must be value.
#     7 TOUCH addr, pages       for each 4 KiB page P of the range, the dword
#                               at P gets P; result = 0.
#     8 UD2                     executes UD2 at ud2_insn (an opcode the
#                               simulator does not implement; a triple fault
#                               on hardware, as there is no IDT).
#     9 SPIN                    `jmp .` at spin_insn, forever.
#    10 PAGE_CHECK addr, pages, seed
#                               as PATTERN_CHECK, but only the first dword
#                               of each 4 KiB page P (it must be P ^ seed;
#                               seed 0 checks what TOUCH wrote).
#   Instructions used: IN/OUT imm8, MOV, CMP, TEST, XOR, ADD, DEC, Jcc, JMP,
#             REP STOSD, HLT, UD2.

	.code32
	.text
	.globl _start
_start:
next:
	in	$0x20, %eax
	cmp	$0, %eax
	je	cmd_halt
	cmp	$1, %eax
	je	cmd_read
	cmp	$2, %eax
	je	cmd_write
	cmp	$3, %eax
	je	cmd_fill
	cmp	$4, %eax
	je	cmd_pattern_write
	cmp	$5, %eax
	je	cmd_pattern_check
	cmp	$6, %eax
	je	cmd_check_const
	cmp	$7, %eax
	je	cmd_touch
	cmp	$8, %eax
	je	cmd_ud2
	cmp	$9, %eax
	je	cmd_spin
	cmp	$10, %eax
	je	cmd_page_check
	out	%eax, $0x2f
	jmp	next

cmd_halt:
	.globl hlt_insn
hlt_insn:
	hlt
	jmp	next

cmd_read:
	in	$0x21, %eax
	mov	%eax, %esi
	.globl read_insn
read_insn:
	mov	(%esi), %eax
	.globl read_end
read_end:
	out	%eax, $0x22
	jmp	next

cmd_write:
	in	$0x21, %eax
	mov	%eax, %edi
	in	$0x21, %eax
	.globl write_insn
write_insn:
	mov	%eax, (%edi)
	.globl write_end
write_end:
	out	%eax, $0x22
	jmp	next

cmd_fill:
	in	$0x21, %eax
	mov	%eax, %edi
	in	$0x21, %eax
	mov	%eax, %ecx
	in	$0x21, %eax
	rep stosl
	out	%eax, $0x22
	jmp	next

cmd_pattern_write:
	in	$0x21, %eax
	mov	%eax, %edi
	in	$0x21, %eax
	mov	%eax, %ecx
	in	$0x21, %eax
	mov	%eax, %ebx
	test	%ecx, %ecx
	jz	2f
1:	mov	%edi, %eax
	xor	%ebx, %eax
	mov	%eax, (%edi)
	add	$4, %edi
	dec	%ecx
	jnz	1b
2:	xor	%eax, %eax
	out	%eax, $0x22
	jmp	next

cmd_pattern_check:
	in	$0x21, %eax
	mov	%eax, %esi
	in	$0x21, %eax
	mov	%eax, %ecx
	in	$0x21, %eax
	mov	%eax, %ebx
	test	%ecx, %ecx
	jz	check_ok
1:	mov	%esi, %edx
	xor	%ebx, %edx
	mov	(%esi), %eax
	cmp	%edx, %eax
	jne	check_bad
	add	$4, %esi
	dec	%ecx
	jnz	1b
	jmp	check_ok

cmd_check_const:
	in	$0x21, %eax
	mov	%eax, %esi
	in	$0x21, %eax
	mov	%eax, %ecx
	in	$0x21, %eax
	mov	%eax, %ebx
	test	%ecx, %ecx
	jz	check_ok
1:	mov	(%esi), %eax
	cmp	%ebx, %eax
	jne	check_bad
	add	$4, %esi
	dec	%ecx
	jnz	1b

	jmp	check_ok

cmd_page_check:
	in	$0x21, %eax
	mov	%eax, %esi
	in	$0x21, %eax
	mov	%eax, %ecx
	in	$0x21, %eax
	mov	%eax, %ebx
	test	%ecx, %ecx
	jz	check_ok
1:	mov	%esi, %edx
	xor	%ebx, %edx
	mov	(%esi), %eax
	cmp	%edx, %eax
	jne	check_bad
	add	$4096, %esi
	dec	%ecx
	jnz	1b

check_ok:
	xor	%eax, %eax
	out	%eax, $0x23
	mov	$0xffffffff, %eax
	out	%eax, $0x22
	jmp	next

	# EAX = the dword found, ESI = its address.
check_bad:
	out	%eax, $0x23
	mov	%esi, %eax
	out	%eax, $0x22
	jmp	next

cmd_touch:
	in	$0x21, %eax
	mov	%eax, %edi
	in	$0x21, %eax
	mov	%eax, %ecx
	test	%ecx, %ecx
	jz	2f
1:	mov	%edi, (%edi)
	add	$4096, %edi
	dec	%ecx
	jnz	1b
2:	xor	%eax, %eax
	out	%eax, $0x22
	jmp	next

cmd_ud2:
	.globl ud2_insn
ud2_insn:
	ud2

cmd_spin:
	.globl spin_insn
spin_insn:
	jmp	spin_insn
