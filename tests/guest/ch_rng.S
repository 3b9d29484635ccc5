# SPDX-License-Identifier: GPL-2.0
#
# ch_rng.S - the Cloud Hypervisor device guest: drives its virtio-rng (on by
# default) as a modern virtio-pci device, with an MSI-X interrupt.
#
#  1. Enters 64-bit long mode: PML4[0] -> a PDPT of 1 GiB pages, an identity
#     map of the first 512 GiB, plus one more PDPT for the device's BAR when
#     it lies above that (Cloud Hypervisor puts 64-bit BARs above 4 GiB).
#     A 64-bit IDT with a gate for vector 0x40.
#  2. Finds the device in PCI config space (ports 0xcf8/0xcfc, bus 0): vendor
#     0x1af4, device 0x1044 (virtio 1.0 entropy). Enables memory decoding and
#     bus mastering; walks its capabilities for the common, notify (virtio
#     vendor capabilities) and MSI-X ones; reads BAR0/1 (64-bit memory BAR).
#  3. MSI-X: table entry 0 = address 0xfee00000 (APIC 0), data 0x40 (fixed,
#     edge), unmasked; MSI-X enabled. Cloud Hypervisor then routes it
#     (MSHV_SET_MSI_ROUTING) and connects its irqfd.
#  4. Virtio: reset, ACKNOWLEDGE | DRIVER, accepts VIRTIO_F_VERSION_1 only,
#     FEATURES_OK (checked), queue 0 with 16 entries and MSI-X vector 0 (read
#     back), enabled, DRIVER_OK. One device-writable 16-byte buffer, avail
#     index 1, and the notify write (16 bits, queue 0) to the notify address:
#     Cloud Hypervisor registered that address as an ioeventfd (a doorbell
#     the hypervisor completes without an exit); its BAR write handler
#     ignores notify writes, so without the doorbell the device never runs.
#  5. `sti; hlt` until the vector 0x40 handler has run (the handler writes
#     the xAPIC EOI); then the used ring must say index 1, descriptor 0.
#  6. Prints "ch_rng: virtio-rng 00:<slot>.0, msi-x vector 0x40 taken, <len>
#     bytes: <hex of the buffer>\n" and shuts down (ACPI). A failure prints
#     "ch_rng: FAIL <what>\n" and shuts down.
# Every MMIO access to the BAR is one plain MOV of 1, 2 or 4 bytes (Cloud
# Hypervisor emulates it from the intercept message).

	.include "pvh.inc"

	.set	PCI_ADDR, 0xcf8
	.set	PCI_DATA, 0xcfc
	.set	VENDOR_DEVICE, 0x10441af4
	.set	VECTOR, 0x40
	.set	QSIZE, 16
	.set	APIC_EOI, 0xfee000b0
	# virtio_pci_common_cfg offsets
	.set	CC_DFSEL, 0x00
	.set	CC_DF, 0x04
	.set	CC_GFSEL, 0x08
	.set	CC_GF, 0x0c
	.set	CC_MSIX, 0x10
	.set	CC_STATUS, 0x14
	.set	CC_QSEL, 0x16
	.set	CC_QSIZE, 0x18
	.set	CC_QMSIX, 0x1a
	.set	CC_QENABLE, 0x1c
	.set	CC_QNOFF, 0x1e
	.set	CC_QDESC, 0x20
	.set	CC_QAVAIL, 0x28
	.set	CC_QUSED, 0x30

	.code32
	.text
	.globl _start
_start:
	cli
	# PDPT0: 512 1 GiB pages (P | RW | PS), identity 0..512 GiB.
	mov	$pdpt0, %edi
	xor	%ecx, %ecx
1:	mov	%ecx, %eax
	shl	$30, %eax
	or	$0x83, %eax
	mov	%eax, (%edi)
	mov	%ecx, %eax
	shr	$2, %eax
	mov	%eax, 4(%edi)
	add	$8, %edi
	inc	%ecx
	cmp	$512, %ecx
	jne	1b
	movl	$pdpt0 + 3, pml4
	mov	$pml4, %eax
	mov	%eax, %cr3
	mov	%cr4, %eax
	or	$0x20, %eax		# PAE
	mov	%eax, %cr4
	mov	$0xc0000080, %ecx	# EFER.LME
	rdmsr
	or	$0x100, %eax
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
	# IDT gate for VECTOR: 64-bit interrupt gate, selector 0x08.
	mov	$irq_handler, %rax
	mov	$idt + VECTOR * 16, %rdi
	mov	%ax, (%rdi)
	movw	$0x08, 2(%rdi)
	movw	$0x8e00, 4(%rdi)
	shr	$16, %rax
	mov	%ax, 6(%rdi)
	shr	$16, %rax
	mov	%eax, 8(%rdi)
	lidt	idt_desc

	# Find the device on bus 0.
	xor	%r12d, %r12d		# slot
1:	mov	%r12d, %ebx
	shl	$11, %ebx
	or	$0x80000000, %ebx	# config address of slot r12, register 0
	xor	%esi, %esi
	call	cfg_read
	cmp	$VENDOR_DEVICE, %eax
	je	found
	inc	%r12d
	cmp	$32, %r12d
	jne	1b
	mov	$msg_nodev, %rsi
	jmp	fail

found:
	# Command: memory space | bus master.
	mov	$0x04, %esi
	call	cfg_read
	or	$0x6, %eax
	call	cfg_write
	# BAR0/BAR1: a 64-bit memory BAR.
	mov	$0x10, %esi
	call	cfg_read
	mov	%eax, %r13d
	test	$1, %eax
	jnz	bad_bar
	and	$0x6, %eax
	cmp	$0x4, %eax
	jne	bad_bar
	and	$~0xf, %r13d
	mov	$0x14, %esi
	call	cfg_read
	shl	$32, %rax
	or	%rax, %r13		# r13 = BAR0 address
	call	map_bar

	# Capabilities.
	mov	$0x34, %esi
	call	cfg_read
	and	$0xfc, %eax
	mov	%eax, %r14d		# current capability
2:	test	%r14d, %r14d
	jz	caps_done
	mov	%r14d, %esi
	call	cfg_read
	cmp	$0x11, %al
	je	cap_msix
	cmp	$0x09, %al
	jne	next_cap
	# virtio capability: cfg_type at +3, bar at +4, offset at +8.
	shr	$24, %eax
	mov	%eax, %r15d		# cfg_type
	lea	4(%r14), %esi
	call	cfg_read
	test	%al, %al		# must be BAR 0
	jnz	next_cap
	lea	8(%r14), %esi
	call	cfg_read
	mov	%eax, %eax
	add	%r13, %rax		# the structure's address
	cmp	$1, %r15d		# VIRTIO_PCI_CAP_COMMON_CFG
	jne	3f
	mov	%rax, common
	jmp	next_cap
3:	cmp	$2, %r15d		# VIRTIO_PCI_CAP_NOTIFY_CFG
	jne	next_cap
	mov	%rax, notify
	lea	16(%r14), %esi
	call	cfg_read
	mov	%eax, notify_mult
	jmp	next_cap
cap_msix:
	mov	%r14d, msix_cap
	lea	4(%r14), %esi
	call	cfg_read
	test	$7, %al			# table in BAR 0
	jnz	bad_bar
	and	$~7, %eax
	add	%r13, %rax
	mov	%rax, msix_table
next_cap:
	mov	%r14d, %esi
	call	cfg_read
	shr	$8, %eax
	and	$0xfc, %eax
	mov	%eax, %r14d
	jmp	2b
caps_done:
	cmpq	$0, common
	je	no_caps
	cmpq	$0, notify
	je	no_caps
	cmpq	$0, msix_table
	je	no_caps

	# MSI-X table entry 0, then enable MSI-X (function mask clear).
	mov	msix_table, %rdi
	movl	$0xfee00000, %eax
	mov	%eax, 0(%rdi)
	xor	%eax, %eax
	mov	%eax, 4(%rdi)
	movl	$VECTOR, %eax
	mov	%eax, 8(%rdi)
	xor	%eax, %eax
	mov	%eax, 12(%rdi)
	mov	msix_cap, %esi
	call	cfg_read
	and	$~0x40000000, %eax
	or	$0x80000000, %eax
	call	cfg_write

	# Virtio initialisation.
	mov	common, %rdi
	xor	%eax, %eax
	mov	%al, CC_STATUS(%rdi)	# reset
	mov	$3, %al			# ACKNOWLEDGE | DRIVER
	mov	%al, CC_STATUS(%rdi)
	mov	$1, %eax		# features 32..63: VIRTIO_F_VERSION_1
	mov	%eax, CC_DFSEL(%rdi)
	mov	CC_DF(%rdi), %eax
	test	$1, %eax
	jz	no_v1
	mov	$1, %eax
	mov	%eax, CC_GFSEL(%rdi)
	mov	%eax, CC_GF(%rdi)
	xor	%eax, %eax
	mov	%eax, CC_GFSEL(%rdi)
	mov	%eax, CC_GF(%rdi)
	mov	$0xb, %al		# | FEATURES_OK
	mov	%al, CC_STATUS(%rdi)
	mov	CC_STATUS(%rdi), %al
	test	$8, %al
	jz	no_features
	# Queue 0.
	xor	%eax, %eax
	mov	%ax, CC_QSEL(%rdi)
	mov	$QSIZE, %ax
	mov	%ax, CC_QSIZE(%rdi)
	xor	%eax, %eax
	mov	%ax, CC_QMSIX(%rdi)
	mov	CC_QMSIX(%rdi), %ax
	test	%ax, %ax
	jnz	no_vector
	mov	$desc, %eax
	mov	%eax, CC_QDESC(%rdi)
	xor	%eax, %eax
	mov	%eax, CC_QDESC + 4(%rdi)
	mov	$avail, %eax
	mov	%eax, CC_QAVAIL(%rdi)
	xor	%eax, %eax
	mov	%eax, CC_QAVAIL + 4(%rdi)
	mov	$used, %eax
	mov	%eax, CC_QUSED(%rdi)
	xor	%eax, %eax
	mov	%eax, CC_QUSED + 4(%rdi)
	xor	%eax, %eax
	mov	CC_QNOFF(%rdi), %ax
	imul	notify_mult, %eax
	add	%rax, notify
	mov	$1, %eax
	mov	%ax, CC_QENABLE(%rdi)
	mov	$0xf, %al		# | DRIVER_OK
	mov	%al, CC_STATUS(%rdi)

	# One device-writable buffer, made available, then the doorbell.
	movq	$buf, desc
	movl	$16, desc + 8
	movw	$2, desc + 12		# VIRTQ_DESC_F_WRITE
	movw	$0, avail + 4		# ring[0] = descriptor 0
	movw	$1, avail + 2		# idx = 1
	mov	notify, %rdi
	xor	%eax, %eax
	mov	%ax, (%rdi)

	# Wait for the interrupt inside MSHV_RUN_VP.
wait:
	cli
	cmpl	$0, got_irq
	jne	woken
	sti
	hlt
	jmp	wait
woken:
	cmpw	$1, used + 2		# used idx
	jne	no_used
	cmpl	$0, used + 4		# ring[0].id
	jne	no_used

	mov	$msg_ok1, %rsi
	call	puts
	mov	%r12, %rax
	call	put_hex2
	mov	$msg_ok2, %rsi
	call	puts
	mov	used + 8, %eax		# ring[0].len
	mov	%rax, %r15
	call	put_dec
	mov	$msg_ok3, %rsi
	call	puts
	xor	%ebx, %ebx
1:	cmp	%r15, %rbx
	jae	2f
	cmp	$16, %rbx
	jae	2f
	movzbl	buf(%rbx), %eax
	call	put_hex2
	inc	%rbx
	jmp	1b
2:	mov	$msg_nl, %rsi
	call	puts
	jmp	shutdown

bad_bar:
	mov	$msg_bar, %rsi
	jmp	fail
no_caps:
	mov	$msg_caps, %rsi
	jmp	fail
no_v1:
	mov	$msg_v1, %rsi
	jmp	fail
no_features:
	mov	$msg_feat, %rsi
	jmp	fail
no_vector:
	mov	$msg_vec, %rsi
	jmp	fail
no_used:
	mov	$msg_used, %rsi
fail:
	push	%rsi
	mov	$msg_fail, %rsi
	call	puts
	pop	%rsi
	call	puts
shutdown:
	mov	$ACPI_SLEEP, %dx
	mov	$ACPI_S5, %al
	out	%al, %dx
1:	jmp	1b

irq_handler:
	push	%rax
	push	%rdx
	movl	$1, got_irq
	mov	$APIC_EOI, %edx		# zero-extended (a disp32 would sign-extend)
	xor	%eax, %eax
	mov	%eax, (%rdx)
	pop	%rdx
	pop	%rax
	iretq

# map_bar: makes the 1 GiB page around r13 reachable when it lies above
# 512 GiB (PML4[r13 >> 39] -> pdpt1, one 1 GiB identity page).
map_bar:
	mov	%r13, %rax
	shr	$39, %rax
	and	$0x1ff, %eax
	jz	1f
	movq	$pdpt1 + 3, pml4(,%rax,8)
	mov	%r13, %rcx
	shr	$30, %rcx
	and	$0x1ff, %ecx
	mov	%r13, %rdx
	movabs	$0xffffffffc0000000, %rax
	and	%rax, %rdx
	or	$0x83, %rdx
	mov	%rdx, pdpt1(,%rcx,8)
	mov	%cr3, %rax
	mov	%rax, %cr3
1:	ret

# cfg_read: eax = the config dword at register esi of the function at ebx
# (0x80000000 | slot << 11). Clobbers edx.
cfg_read:
	mov	%ebx, %eax
	or	%esi, %eax
	mov	$PCI_ADDR, %dx
	out	%eax, %dx
	mov	$PCI_DATA, %dx
	in	%dx, %eax
	ret

# cfg_write: writes eax to register esi of the function at ebx. Clobbers
# edx.
cfg_write:
	push	%rax
	mov	%ebx, %eax
	or	%esi, %eax
	mov	$PCI_ADDR, %dx
	out	%eax, %dx
	pop	%rax
	mov	$PCI_DATA, %dx
	out	%eax, %dx
	ret

# puts: the NUL-terminated string at rsi. Clobbers rax, rdx, rsi.
puts:
	mov	$COM1, %dx
1:	lodsb
	test	%al, %al
	jz	2f
	out	%al, %dx
	jmp	1b
2:	ret

# put_hex2: al as two hex digits. Clobbers rax, rcx, rdx.
put_hex2:
	mov	%eax, %ecx
	mov	$COM1, %dx
	shr	$4, %eax
	and	$0xf, %eax
	mov	hexdigits(%rax), %al
	out	%al, %dx
	mov	%ecx, %eax
	and	$0xf, %eax
	mov	hexdigits(%rax), %al
	out	%al, %dx
	ret

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
	mov	$COM1, %dx
2:	mov	(%rdi), %al
	out	%al, %dx
	inc	%rdi
	cmp	$numbuf_end, %rdi
	jne	2b
	ret

	.balign 8
gdt:
	.quad	0
	.quad	0x00af9a000000ffff	# 0x08: 64-bit code
	.quad	0x00cf92000000ffff	# 0x10: flat data
gdt_desc:
	.word	gdt_desc - gdt - 1
	.long	gdt
	.balign 8
idt_desc:
	.word	256 * 16 - 1
	.quad	idt

	.balign 8
common:	.quad	0
notify:	.quad	0
msix_table: .quad 0
notify_mult: .long 0
msix_cap: .long	0
got_irq: .long	0

hexdigits: .ascii "0123456789abcdef"
msg_ok1:  .asciz "ch_rng: virtio-rng 00:"
msg_ok2:  .asciz ".0, msi-x vector 0x40 taken, "
msg_ok3:  .asciz " bytes: "
msg_nl:   .asciz "\n"
msg_fail: .asciz "ch_rng: FAIL "
msg_nodev: .asciz "no virtio-rng device\n"
msg_bar:  .asciz "BAR0 is not a 64-bit memory BAR with the MSI-X table\n"
msg_caps: .asciz "capabilities missing\n"
msg_v1:   .asciz "no VIRTIO_F_VERSION_1\n"
msg_feat: .asciz "FEATURES_OK refused\n"
msg_vec:  .asciz "queue MSI-X vector refused\n"
msg_used: .asciz "used ring not as expected\n"
numbuf:   .skip 24
numbuf_end:

	.bss
	.balign 4096
pml4:	.skip	4096
pdpt0:	.skip	4096
pdpt1:	.skip	4096
idt:	.skip	4096
desc:	.skip	4096
avail:	.skip	4096
used:	.skip	4096
buf:	.skip	4096
stack:	.skip	4096
stack_top:
