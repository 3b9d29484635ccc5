# SPDX-License-Identifier: GPL-2.0
#
# ch_hello.S - the minimal Cloud Hypervisor guest: prints "hello\n" on the
# 8250 at 0x3f8, then shuts down through ACPI (0x34 to port 0x600), which
# makes cloud-hypervisor exit 0.
#
# Contract: PVH entry (see pvh.inc); needs no RAM but its image (at 1 MiB)
# and no stack. Instructions: MOV, LODSB, TEST, Jcc, JMP, OUT.
# After the shutdown write it spins (JMP to itself) rather than HLT: Cloud
# Hypervisor treats a halt exit as a reboot request, and the VMM stops the
# vCPU itself once it has seen the shutdown.

	.include "pvh.inc"

	.code32
	.text
	.globl _start
_start:
	mov	$msg, %esi
	mov	$COM1, %dx
1:	lodsb
	test	%al, %al
	jz	2f
	out	%al, %dx
	jmp	1b
2:	mov	$ACPI_SLEEP, %dx
	mov	$ACPI_S5, %al
	out	%al, %dx
3:	jmp	3b

msg:	.asciz	"hello\n"
