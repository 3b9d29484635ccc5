# SPDX-License-Identifier: GPL-2.0
#
# ch_reboot.S - the Cloud Hypervisor reboot guest. Its RAM is a shared file
# (a memory zone with file=, shared=on), so what it writes survives the
# reboot: Cloud Hypervisor tears the partition down and builds a new one in
# the same process, mapping the same file again.
# Boot 1 (the marker at MARKER reads 0): writes the marker, prints
# "ch_reboot: boot 1, resetting\n" and resets through the i8042 (0xfe to
# port 0x64). Boot 2 (the marker is there): prints
# "ch_reboot: boot 2, shutting down\n" and shuts down (ACPI), so
# cloud-hypervisor exits 0. Any other marker value prints
# "ch_reboot: bad marker\n" and shuts down.
# The test starts it on a zeroed file. Instructions: MOV, CMP, TEST, LODSB,
# Jcc, JMP, CALL, RET, OUT.

	.include "pvh.inc"

	.set	MARKER, 0x300000	# above the image; untouched by the VMM
	.set	MAGIC, 0x7ebe0e01

	.code32
	.text
	.globl _start
_start:
	mov	$stack_top, %esp
	mov	MARKER, %eax
	test	%eax, %eax
	jz	first
	cmp	$MAGIC, %eax
	je	second
	mov	$msg_bad, %esi
	call	puts
	jmp	shutdown

first:
	movl	$MAGIC, MARKER
	mov	$msg_boot1, %esi
	call	puts
	mov	$I8042_CMD, %dx
	mov	$0xfe, %al
	out	%al, %dx
1:	jmp	1b

second:
	movl	$0, MARKER
	mov	$msg_boot2, %esi
	call	puts
shutdown:
	mov	$ACPI_SLEEP, %dx
	mov	$ACPI_S5, %al
	out	%al, %dx
1:	jmp	1b

# puts: the NUL-terminated string at esi. Clobbers eax, edx, esi.
puts:
	mov	$COM1, %dx
1:	lodsb
	test	%al, %al
	jz	2f
	out	%al, %dx
	jmp	1b
2:	ret

msg_boot1: .asciz "ch_reboot: boot 1, resetting\n"
msg_boot2: .asciz "ch_reboot: boot 2, shutting down\n"
msg_bad:   .asciz "ch_reboot: bad marker\n"

	.bss
	.balign 16
stack:	.skip	1024
stack_top:
