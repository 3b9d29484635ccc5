# SPDX-License-Identifier: GPL-2.0
#
# ch_smp.S - the Cloud Hypervisor SMP guest (--cpus boot=2). Cloud
# Hypervisor starts every vCPU at the PVH entry with the same registers; each
# tells which one it is by its APIC ID (CPUID leaf 1, EBX bits 31:24, which
# Cloud Hypervisor registers per vCPU as a CPUID intercept result).
# vCPU 1 reports first and raises a flag in RAM; vCPU 0 waits for the flag,
# reports, and shuts down (ACPI). So the output is exactly
#   "ch_smp: vcpu 1 up\nch_smp: vcpu 0 up, saw vcpu 1\n".
# Any other APIC ID prints "ch_smp: unexpected APIC ID\n" and shuts down.
# Neither vCPU halts (Cloud Hypervisor takes a halt exit for a reboot):
# vCPU 1 spins once it has reported.
# Instructions: MOV, CPUID, SHR, CMP, TEST, LODSB, Jcc, JMP, OUT, PAUSE.

	.include "pvh.inc"

	.code32
	.text
	.globl _start
_start:
	mov	$1, %eax
	cpuid
	shr	$24, %ebx
	cmp	$1, %ebx
	je	ap
	test	%ebx, %ebx
	jnz	unexpected
	# vCPU 0: wait for vCPU 1.
1:	pause
	cmpl	$1, ap_done
	jne	1b
	mov	$msg_bsp, %esi
	mov	$COM1, %dx
2:	lodsb
	test	%al, %al
	jz	shutdown
	out	%al, %dx
	jmp	2b

ap:
	mov	$msg_ap, %esi
	mov	$COM1, %dx
1:	lodsb
	test	%al, %al
	jz	2f
	out	%al, %dx
	jmp	1b
2:	movl	$1, ap_done
3:	pause
	jmp	3b

unexpected:
	mov	$msg_bad, %esi
	mov	$COM1, %dx
1:	lodsb
	test	%al, %al
	jz	shutdown
	out	%al, %dx
	jmp	1b

shutdown:
	mov	$ACPI_SLEEP, %dx
	mov	$ACPI_S5, %al
	out	%al, %dx
1:	jmp	1b

	.balign 4
ap_done: .long	0
msg_ap:	 .asciz	"ch_smp: vcpu 1 up\n"
msg_bsp: .asciz	"ch_smp: vcpu 0 up, saw vcpu 1\n"
msg_bad: .asciz	"ch_smp: unexpected APIC ID\n"
