# SPDX-License-Identifier: GPL-2.0
#
# ch_pause.S - the Cloud Hypervisor guest of the pause/resume test: prints
# "ch_pause: tick N\n" for N = 0 .. TICKS-1 with a busy delay between ticks
# (DELAY iterations of DEC/JNZ, from a fifth of a second to a few seconds on the simulator, with the load),
# then "ch_pause: done\n" and shuts down (ACPI). The test pauses it after
# tick 1 and resumes it; every tick must still come out once, in order.
# Instructions: MOV, ADD, DIV, DEC, TEST, LODSB, Jcc, JMP, CALL, RET, OUT.

	.include "pvh.inc"

	.set	TICKS, 8
	.set	DELAY, 100000

	.code32
	.text
	.globl _start
_start:
	mov	$stack_top, %esp
	xor	%edi, %edi		# tick number
1:	mov	$msg_tick, %esi
	call	puts
	mov	%edi, %eax
	call	put_dec
	mov	$msg_nl, %esi
	call	puts
	mov	$DELAY, %ecx
2:	dec	%ecx
	jnz	2b
	inc	%edi
	cmp	$TICKS, %edi
	jne	1b
	mov	$msg_done, %esi
	call	puts
	mov	$ACPI_SLEEP, %dx
	mov	$ACPI_S5, %al
	out	%al, %dx
3:	jmp	3b

# puts: the NUL-terminated string at esi. Clobbers eax, edx, esi.
puts:
	mov	$COM1, %dx
1:	lodsb
	test	%al, %al
	jz	2f
	out	%al, %dx
	jmp	1b
2:	ret

# put_dec: eax (< 100) in decimal. Clobbers eax, ecx, edx.
put_dec:
	xor	%edx, %edx
	mov	$10, %ecx
	div	%ecx
	test	%eax, %eax
	jz	1f
	push	%edx
	add	$'0', %al
	mov	$COM1, %dx
	out	%al, %dx
	pop	%edx
1:	mov	%dl, %al
	add	$'0', %al
	mov	$COM1, %dx
	out	%al, %dx
	ret

msg_tick: .asciz "ch_pause: tick "
msg_nl:   .asciz "\n"
msg_done: .asciz "ch_pause: done\n"

	.bss
	.balign 16
	.skip	1024
stack_top:
