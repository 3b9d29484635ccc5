# SPDX-License-Identifier: GPL-2.0
#
# ch_memory.S - the Cloud Hypervisor memory guest: enters 64-bit long mode
# with its own page tables, writes a pattern over all of its RAM above 2 MiB
# and verifies it, reports on the serial port and shuts down (ACPI).
#
# Contract: PVH entry (see pvh.inc), EBX = hvm_start_info (version >= 1: its
# memory map is used). The image and its page tables (.bss) live below
# 2 MiB; every E820 RAM entry (type 1) is tested from max(start, 2 MiB) to
# its end.
# Page tables: PML4[0] -> PDPT[0..3] -> 4 page directories of 2 MiB pages,
# an identity map of the first 4 GiB.
# Density: the simulator interprets about a million instructions a second,
# so, like examples/guest/demo32.S, a pass writes one qword per 4 KiB page
# (at offset ((A >> 12) & 0x1ff) * 8 of the page at A, so the offset moves
# from page to page), value = its GPA ^ 0x9e3779b97f4a7c15; then a second
# walk verifies every one of them.
# Output: "ch_memory: long mode, RAM <KiB> KiB, <pages> pages written and
# verified\n" on success, or "ch_memory: FAIL at 0x<gpa>\n" (the first qword
# that did not read back), or "ch_memory: bad hvm_start_info\n". Then the
# ACPI shutdown.

	.include "pvh.inc"

	.set	START_INFO_MAGIC, 0x336ec578
	.set	TEST_FROM, 0x200000
	.set	E820_RAM, 1

	.code32
	.text
	.globl _start
_start:
	cli
	mov	%ebx, %ebp
	# Page directories: 2048 entries of 2 MiB pages (P | RW | PS).
	mov	$pd, %edi
	xor	%ecx, %ecx
1:	mov	%ecx, %eax
	shl	$21, %eax
	or	$0x83, %eax
	mov	%eax, (%edi)
	mov	%ecx, %eax
	shr	$11, %eax
	mov	%eax, 4(%edi)
	add	$8, %edi
	inc	%ecx
	cmp	$2048, %ecx
	jne	1b
	# PDPT[0..3] -> the 4 page directories; PML4[0] -> PDPT.
	mov	$pd + 3, %eax
	mov	%eax, pdpt
	add	$0x1000, %eax
	mov	%eax, pdpt + 8
	add	$0x1000, %eax
	mov	%eax, pdpt + 16
	add	$0x1000, %eax
	mov	%eax, pdpt + 24
	movl	$pdpt + 3, pml4
	mov	$pml4, %eax
	mov	%eax, %cr3
	mov	%cr4, %eax
	or	$0x20, %eax		# PAE
	mov	%eax, %cr4
	mov	$0xc0000080, %ecx	# EFER
	rdmsr
	or	$0x100, %eax		# LME
	wrmsr
	lgdt	gdt_desc
	mov	%cr0, %eax
	or	$0x80000001, %eax	# PG | PE
	mov	%eax, %cr0
	ljmp	$0x08, $long_mode

	.code64
long_mode:
	mov	$0x10, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	$stack_top, %rsp
	mov	%ebp, %ebp		# zero-extend the start_info pointer
	cmpl	$START_INFO_MAGIC, (%rbp)
	jne	bad_info
	cmpl	$1, 4(%rbp)		# version
	jb	bad_info
	cmpl	$0, 0x30(%rbp)		# memmap_entries
	je	bad_info

	# RAM in KiB: the sum of the E820 RAM entries.
	xor	%r12, %r12
	mov	0x28(%rbp), %rsi
	mov	0x30(%rbp), %ecx
2:	cmpl	$E820_RAM, 16(%rsi)
	jne	3f
	add	8(%rsi), %r12
3:	add	$24, %rsi
	dec	%ecx
	jnz	2b
	shr	$10, %r12

	movabs	$0x9e3779b97f4a7c15, %r14
	xor	%r15d, %r15d		# pass 0: write
	call	walk
	mov	$1, %r15d		# pass 1: verify
	call	walk
	mov	%rbx, %r13		# pages of the verify pass

	mov	$msg_ok1, %rsi
	call	puts
	mov	%r12, %rax
	call	put_dec
	mov	$msg_ok2, %rsi
	call	puts
	mov	%r13, %rax
	call	put_dec
	mov	$msg_ok3, %rsi
	call	puts
	jmp	shutdown

bad_info:
	mov	$msg_bad, %rsi
	call	puts
	jmp	shutdown

# walk: one qword per 4 KiB page of every RAM entry above TEST_FROM; r15 = 0
# writes, 1 verifies (and jumps to fail on a mismatch). Returns the pages in
# rbx. Clobbers rax, rcx, rdx, rsi, rdi, r8, r9.
walk:
	xor	%ebx, %ebx
	mov	0x28(%rbp), %rsi
	mov	0x30(%rbp), %ecx
1:	cmpl	$E820_RAM, 16(%rsi)
	jne	5f
	mov	(%rsi), %rdi		# start
	mov	%rdi, %r8
	add	8(%rsi), %r8		# end
	and	$~0xfff, %r8
	mov	$TEST_FROM, %eax
	cmp	%rax, %rdi
	jae	2f
	mov	%rax, %rdi
2:	add	$0xfff, %rdi
	and	$~0xfff, %rdi
3:	cmp	%r8, %rdi
	jae	5f
	mov	%rdi, %r9
	shr	$12, %r9
	and	$0x1ff, %r9
	lea	(%rdi,%r9,8), %r9	# the qword's GPA
	mov	%r9, %rax
	xor	%r14, %rax
	test	%r15d, %r15d
	jnz	4f
	mov	%rax, (%r9)
	jmp	6f
4:	cmp	(%r9), %rax
	jne	fail
6:	inc	%rbx
	add	$0x1000, %rdi
	jmp	3b
5:	add	$24, %rsi
	dec	%ecx
	jnz	1b
	ret

fail:
	mov	$msg_fail, %rsi
	call	puts
	mov	%r9, %rax
	call	put_hex
	mov	$msg_nl, %rsi
	call	puts
	jmp	shutdown

shutdown:
	mov	$ACPI_SLEEP, %dx
	mov	$ACPI_S5, %al
	out	%al, %dx
1:	jmp	1b

# puts: the NUL-terminated string at rsi. Clobbers rax, rdx, rsi.
puts:
	mov	$COM1, %dx
1:	lodsb
	test	%al, %al
	jz	2f
	out	%al, %dx
	jmp	1b
2:	ret

# put_dec: rax in decimal. Clobbers rax, rcx, rdx, rdi.
put_dec:
	mov	$numbuf_end, %rdi
	mov	$10, %ecx
1:	xor	%edx, %edx
	div	%rcx
	add	$'0', %dl
	dec	%rdi
	mov	%dl, (%rdi)
	test	%rax, %rax
	jnz	1b
	jmp	put_buf

# put_hex: rax in hex. Clobbers rax, rcx, rdx, rdi.
put_hex:
	mov	$numbuf_end, %rdi
1:	mov	%eax, %edx
	and	$0xf, %edx
	mov	hexdigits(%rdx), %dl
	dec	%rdi
	mov	%dl, (%rdi)
	shr	$4, %rax
	jnz	1b
put_buf:
	mov	$COM1, %dx
1:	mov	(%rdi), %al
	out	%al, %dx
	inc	%rdi
	cmp	$numbuf_end, %rdi
	jne	1b
	ret

	.balign 8
gdt:
	.quad	0
	.quad	0x00af9a000000ffff	# 0x08: 64-bit code
	.quad	0x00cf92000000ffff	# 0x10: flat data
gdt_desc:
	.word	gdt_desc - gdt - 1
	.long	gdt

hexdigits: .ascii "0123456789abcdef"
msg_ok1:  .asciz "ch_memory: long mode, RAM "
msg_ok2:  .asciz " KiB, "
msg_ok3:  .asciz " pages written and verified\n"
msg_fail: .asciz "ch_memory: FAIL at 0x"
msg_bad:  .asciz "ch_memory: bad hvm_start_info\n"
msg_nl:   .asciz "\n"
numbuf:   .skip 24
numbuf_end:

	.bss
	.balign 4096
pml4:	.skip	4096
pdpt:	.skip	4096
pd:	.skip	4 * 4096
stack:	.skip	4096
stack_top:
