# SPDX-License-Identifier: GPL-2.0
#
# demo32.S - the guest of `make run` (mshv-demo): walks a buffer of guest RAM
# writing a pattern and then verifying it, printing progress on the serial
# port, while the VMM migrates, pages out and punches holes in the memory
# behind it.
#
# Contract:
#   Image:    a flat binary linked at GPA 0x1000 (-Ttext=0x1000), entry
#             _start = 0x1000, in a writable, executable region.
#   CPU:      32-bit flat protected mode, paging off (CS = base 0, limit 4 GiB,
#             selector 0x08, attributes 0xC09B; data segments base 0, limit
#             4 GiB, selector 0x10, attributes 0xC093), RFLAGS = 0x2, ESP = the
#             top of a 1 KiB stack of this VP, EBP = this VP's parameter block.
#   Parameter block (dwords, written by the VMM; the guest also keeps its
#   loop state after them):
#     +0  base     first GPA of this VP's slice (4 KiB aligned)
#     +4  size     bytes in the slice (a multiple of 4 KiB, < 4 GiB)
#     +8  passes   write + verify passes
#     +12 holes    hole stride in 2 MiB chunks; 0 = no holes (see below)
#     +16 dense    bytes at the slice start written and verified densely
#                  (every dword), once, before the passes; multiple of 4
#     +20 step     progress line every `step` bytes (a multiple of 4 KiB)
#     +24 vp       this VP's index (printed)
#     +28 pass     (guest scratch) the current pass
#     +32 flags    bit 0: skip the verify phases (mshv-bench's timing runs;
#                  the result is then OK without a check)
#   Density: a pass writes one qword per 4 KiB page (at an offset that
#   changes from pass to pass) over the whole slice, then verifies it.  The
#   value at GPA A in pass P is lo = A ^ seed(P), hi = ~lo, with
#   seed(P) = (P + 1) * 0x9E3779B1.
#   Holes: between the write and the verify of pass P the guest does
#   OUT 0x510, EAX = P.  The VMM then drops (MADV_DONTNEED or a punched hole)
#   every 2 MiB chunk C of the slice (C counted from `base`, the last one
#   possibly short) with C mod holes = P mod holes, and resumes the guest.
#   The verify expects zeros in exactly those chunks: a page the VMM dropped
#   that still showed the old pattern would be a stale second-level mapping.
#   Ports:    OUT 0x3F8, AL   serial output, one byte
#             OUT 0x510, EAX  end of the write phase of pass EAX (see Holes)
#             OUT 0x512, EAX  end of the verify phase of pass EAX (a
#                             timing mark for mshv-bench; no action needed)
#             OUT 0x511, EAX  the result: 0xFFFFFFFF = OK, else the GPA of
#                             the first wrong dword; then HLT.
#   Instructions: MOV, ADD, SUB, AND, XOR, NOT, CMP, TEST, INC, DEC, SHR,
#             IMUL, DIV, Jcc, JMP, CALL, RET, PUSH, POP, LODSB, OUT, HLT.

	.code32
	.text

	.set	SERIAL, 0x3f8
	.set	PORT_SYNC, 0x510
	.set	PORT_RESULT, 0x511
	.set	PORT_VERIFIED, 0x512
	.set	P_BASE, 0
	.set	P_SIZE, 4
	.set	P_PASSES, 8
	.set	P_HOLES, 12
	.set	P_DENSE, 16
	.set	P_STEP, 20
	.set	P_VP, 24
	.set	P_PASS, 28
	.set	P_FLAGS, 32
	.set	FLAG_NO_VERIFY, 1
	.set	DENSE_SEED, 0xc3d2e1f0

	.globl _start
_start:
	mov	$s_start, %esi
	call	prefix_puts
	mov	P_SIZE(%ebp), %eax
	shr	$20, %eax
	call	putdec
	mov	$s_mib_at, %esi
	call	puts
	mov	P_BASE(%ebp), %eax
	call	puthex
	mov	$s_nl, %esi
	call	puts

	# The dense window: every dword, once.
	mov	P_DENSE(%ebp), %ecx
	shr	$2, %ecx
	jz	passes
	mov	P_BASE(%ebp), %edi
1:	mov	%edi, %eax
	xor	$DENSE_SEED, %eax
	mov	%eax, (%edi)
	add	$4, %edi
	dec	%ecx
	jnz	1b
	mov	P_DENSE(%ebp), %ecx
	shr	$2, %ecx
	mov	P_BASE(%ebp), %esi
1:	mov	%esi, %edx
	xor	$DENSE_SEED, %edx
	mov	(%esi), %eax
	cmp	%edx, %eax
	jne	fail
	add	$4, %esi
	dec	%ecx
	jnz	1b
	mov	$s_dense, %esi
	call	prefix_puts
	mov	P_DENSE(%ebp), %eax
	shr	$10, %eax
	call	putdec
	mov	$s_dense_ok, %esi
	call	puts

passes:
	movl	$0, P_PASS(%ebp)
pass_loop:
	mov	P_PASS(%ebp), %eax
	cmp	P_PASSES(%ebp), %eax
	jae	done
	call	write_phase
	mov	P_PASS(%ebp), %eax
	mov	$PORT_SYNC, %dx
	out	%eax, %dx
	testl	$FLAG_NO_VERIFY, P_FLAGS(%ebp)
	jnz	1f
	call	verify_phase
1:	mov	P_PASS(%ebp), %eax
	mov	$PORT_VERIFIED, %dx
	out	%eax, %dx
	incl	P_PASS(%ebp)
	jmp	pass_loop

done:
	mov	$s_ok, %esi
	call	prefix_puts
	mov	$0xffffffff, %eax
	mov	$PORT_RESULT, %dx
	out	%eax, %dx
	.globl hlt_insn
hlt_insn:
	hlt
	jmp	hlt_insn

	# ESI = the address of the wrong dword, EAX = what was found, EDX = what
	# was expected.
fail:
	push	%edx
	push	%eax
	push	%esi
	mov	$s_fail, %esi
	call	prefix_puts
	mov	(%esp), %eax
	call	puthex
	mov	$s_found, %esi
	call	puts
	mov	4(%esp), %eax
	call	puthex
	mov	$s_expected, %esi
	call	puts
	mov	8(%esp), %eax
	call	puthex
	mov	$s_nl, %esi
	call	puts
	pop	%eax
	mov	$PORT_RESULT, %dx
	out	%eax, %dx
	jmp	hlt_insn

# EBX = seed(pass), EDX = the qword's offset in each page.
pass_setup:
	mov	P_PASS(%ebp), %eax
	inc	%eax
	imul	$0x9e3779b1, %eax, %ebx
	mov	P_PASS(%ebp), %edx
	imul	$0x108, %edx, %edx
	and	$0xff8, %edx
	ret

# Prints "vpN pass P <what> <MiB> MiB" for the first EDI - base bytes.
# ESI = <what>.  Preserves every register but EAX.
progress:
	push	%esi
	push	%edx
	push	%ecx
	push	%esi
	mov	$s_pass, %esi
	call	prefix_puts
	mov	P_PASS(%ebp), %eax
	call	putdec
	pop	%esi
	call	puts
	mov	%edi, %eax
	and	$0xfffff000, %eax
	sub	P_BASE(%ebp), %eax
	shr	$20, %eax
	call	putdec
	mov	$s_mib, %esi
	call	puts
	pop	%ecx
	pop	%edx
	pop	%esi
	ret

# One qword per page: lo = A ^ seed, hi = ~lo.
write_phase:
	call	pass_setup
	mov	P_BASE(%ebp), %edi
	add	%edx, %edi
	mov	P_SIZE(%ebp), %ecx
	shr	$12, %ecx
	mov	P_STEP(%ebp), %esi
	shr	$12, %esi
	push	%esi
1:	mov	%edi, %eax
	xor	%ebx, %eax
	mov	%eax, (%edi)
	not	%eax
	mov	%eax, 4(%edi)
	add	$4096, %edi
	dec	%esi
	jnz	2f
	mov	(%esp), %esi
	push	%esi
	mov	$s_write, %esi
	call	progress
	pop	%esi
2:	dec	%ecx
	jnz	1b
	pop	%esi
	ret

# Checks what write_phase wrote, expecting zeros in the pass's hole chunks.
verify_phase:
	call	pass_setup
	mov	P_BASE(%ebp), %esi
	add	%edx, %esi
	mov	P_SIZE(%ebp), %ecx
	shr	$12, %ecx
	mov	P_STEP(%ebp), %edi
	shr	$12, %edi
	push	%edi
	# The chunk remainder that marks holes: pass mod holes, or -1.
	mov	$0xffffffff, %edi
	mov	P_HOLES(%ebp), %eax
	test	%eax, %eax
	jz	1f
	mov	P_PASS(%ebp), %eax
	xor	%edx, %edx
	divl	P_HOLES(%ebp)
	mov	%edx, %edi
1:	push	%edi
	mov	4(%esp), %edi
	push	%edi
	# Stack: [0] pages left until the next line, [4] hole remainder or -1,
	# [8] pages per line.  EDX:EDI = the expected lo:hi dwords at ESI.
3:	cmpl	$0xffffffff, 4(%esp)
	je	6f
	mov	%esi, %eax
	sub	P_BASE(%ebp), %eax
	shr	$21, %eax
	xor	%edx, %edx
	divl	P_HOLES(%ebp)
	cmp	4(%esp), %edx
	jne	6f
	xor	%edx, %edx
	xor	%edi, %edi
	jmp	7f
6:	mov	%esi, %edx
	xor	%ebx, %edx
	mov	%edx, %edi
	not	%edi
7:	mov	(%esi), %eax
	cmp	%edx, %eax
	jne	fail
	mov	4(%esi), %eax
	cmp	%edi, %eax
	je	4f
	add	$4, %esi
	mov	%edi, %edx
	jmp	fail
4:	add	$4096, %esi
	decl	(%esp)
	jnz	5f
	mov	8(%esp), %eax
	mov	%eax, (%esp)
	push	%esi
	mov	%esi, %edi
	mov	$s_verify, %esi
	call	progress
	pop	%esi
5:	dec	%ecx
	jnz	3b
	add	$12, %esp
	ret

# Prints "vpN " then the string at ESI.
prefix_puts:
	push	%esi
	mov	$s_vp, %esi
	call	puts
	mov	P_VP(%ebp), %eax
	call	putdec
	mov	$s_sp, %esi
	call	puts
	pop	%esi
	# fall through
# Prints the NUL-terminated string at ESI.  Preserves all but EAX, ESI.
puts:
	push	%edx
	mov	$SERIAL, %dx
1:	lodsb
	test	%al, %al
	jz	2f
	out	%al, %dx
	jmp	1b
2:	pop	%edx
	ret

# Prints EAX in decimal.  Preserves all but EAX.
putdec:
	push	%ebx
	push	%ecx
	push	%edx
	mov	$10, %ebx
	xor	%ecx, %ecx
1:	xor	%edx, %edx
	div	%ebx
	add	$'0', %dl
	push	%edx
	inc	%ecx
	test	%eax, %eax
	jnz	1b
	mov	$SERIAL, %dx
2:	pop	%eax
	out	%al, %dx
	dec	%ecx
	jnz	2b
	pop	%edx
	pop	%ecx
	pop	%ebx
	ret

# Prints EAX as 0x + 8 hex digits.  Preserves all but EAX.
puthex:
	push	%ebx
	push	%ecx
	push	%edx
	mov	%eax, %ebx
	mov	$SERIAL, %dx
	mov	$'0', %al
	out	%al, %dx
	mov	$'x', %al
	out	%al, %dx
	mov	$8, %ecx
1:	rol	$4, %ebx
	mov	%ebx, %eax
	and	$0xf, %eax
	add	$'0', %al
	cmp	$'9', %al
	jbe	2f
	add	$('a' - '9' - 1), %al
2:	out	%al, %dx
	dec	%ecx
	jnz	1b
	pop	%edx
	pop	%ecx
	pop	%ebx
	ret

s_vp:		.asciz	"vp"
s_sp:		.asciz	" "
s_start:	.asciz	"demo guest: "
s_mib_at:	.asciz	" MiB at GPA "
s_nl:		.asciz	"\n"
s_dense:	.asciz	"dense pattern: "
s_dense_ok:	.asciz	" KiB written and verified (every dword)\n"
s_pass:		.asciz	"pass "
s_write:	.asciz	" write  "
s_verify:	.asciz	" verify "
s_mib:		.asciz	" MiB\n"
s_ok:		.asciz	"OK\n"
s_fail:		.asciz	"FAIL at "
s_found:	.asciz	": found "
s_expected:	.asciz	", expected "
