// SPDX-License-Identifier: GPL-2.0

//! The Hyper-V hypercall ABI (x86_64) that the driver and the simulated
//! hypervisor share: hypercall codes, flags, property and register names,
//! and the message layouts the hypervisor writes into a VP's intercept
//! message page.
//!
//! Values come from Linux 7.3's `include/hyperv/hv{g,h}dk*.h`; register names
//! the kernel headers do not define (general-purpose, segment, control
//! registers) come from the Hyper-V TLFS as `mshv-bindings` 0.7.1 spells them.
//! Layouts are checked below with compile-time size and offset assertions.

// An ABI table: it lists the whole interface, not only what the driver uses today.
#![allow(dead_code)]

use core::mem::{offset_of, size_of};
use kernel::transmute::{AsBytes, FromBytes};

// ---- Hypercall codes ------------------------------------------------------

/// `HVCALL_CREATE_PARTITION`.
pub(crate) const HVCALL_CREATE_PARTITION: u16 = 0x0040;
/// `HVCALL_INITIALIZE_PARTITION`.
pub(crate) const HVCALL_INITIALIZE_PARTITION: u16 = 0x0041;
/// `HVCALL_FINALIZE_PARTITION`.
pub(crate) const HVCALL_FINALIZE_PARTITION: u16 = 0x0042;
/// `HVCALL_DELETE_PARTITION`.
pub(crate) const HVCALL_DELETE_PARTITION: u16 = 0x0043;
/// `HVCALL_GET_PARTITION_PROPERTY`.
pub(crate) const HVCALL_GET_PARTITION_PROPERTY: u16 = 0x0044;
/// `HVCALL_SET_PARTITION_PROPERTY`.
pub(crate) const HVCALL_SET_PARTITION_PROPERTY: u16 = 0x0045;
/// `HVCALL_DEPOSIT_MEMORY`.
pub(crate) const HVCALL_DEPOSIT_MEMORY: u16 = 0x0048;
/// `HVCALL_WITHDRAW_MEMORY`.
pub(crate) const HVCALL_WITHDRAW_MEMORY: u16 = 0x0049;
/// `HVCALL_MAP_GPA_PAGES`.
pub(crate) const HVCALL_MAP_GPA_PAGES: u16 = 0x004b;
/// `HVCALL_UNMAP_GPA_PAGES`.
pub(crate) const HVCALL_UNMAP_GPA_PAGES: u16 = 0x004c;
/// `HVCALL_INSTALL_INTERCEPT`.
pub(crate) const HVCALL_INSTALL_INTERCEPT: u16 = 0x004d;
/// `HVCALL_CREATE_VP`.
pub(crate) const HVCALL_CREATE_VP: u16 = 0x004e;
/// `HVCALL_DELETE_VP`.
pub(crate) const HVCALL_DELETE_VP: u16 = 0x004f;
/// `HVCALL_GET_VP_REGISTERS`.
pub(crate) const HVCALL_GET_VP_REGISTERS: u16 = 0x0050;
/// `HVCALL_SET_VP_REGISTERS`.
pub(crate) const HVCALL_SET_VP_REGISTERS: u16 = 0x0051;
/// `HVCALL_TRANSLATE_VIRTUAL_ADDRESS`.
pub(crate) const HVCALL_TRANSLATE_VIRTUAL_ADDRESS: u16 = 0x0052;
/// `HVCALL_CLEAR_VIRTUAL_INTERRUPT`.
pub(crate) const HVCALL_CLEAR_VIRTUAL_INTERRUPT: u16 = 0x0056;
/// `HVCALL_REGISTER_INTERCEPT_RESULT`.
pub(crate) const HVCALL_REGISTER_INTERCEPT_RESULT: u16 = 0x0091;
/// `HVCALL_ASSERT_VIRTUAL_INTERRUPT`.
pub(crate) const HVCALL_ASSERT_VIRTUAL_INTERRUPT: u16 = 0x0094;
/// `HVCALL_SIGNAL_EVENT_DIRECT`.
pub(crate) const HVCALL_SIGNAL_EVENT_DIRECT: u16 = 0x00c0;
/// `HVCALL_POST_MESSAGE_DIRECT`.
pub(crate) const HVCALL_POST_MESSAGE_DIRECT: u16 = 0x00c1;
/// `HVCALL_DISPATCH_VP`.
pub(crate) const HVCALL_DISPATCH_VP: u16 = 0x00c2;
/// `HVCALL_GET_GPA_PAGES_ACCESS_STATES`.
pub(crate) const HVCALL_GET_GPA_PAGES_ACCESS_STATES: u16 = 0x00c9;
/// `HVCALL_MAP_STATS_PAGE`: a stats page the hypervisor provides.
pub(crate) const HVCALL_MAP_STATS_PAGE: u16 = 0x006c;
/// `HVCALL_UNMAP_STATS_PAGE`.
pub(crate) const HVCALL_UNMAP_STATS_PAGE: u16 = 0x006d;
/// `HV_STATS_OBJECT_VP` (`enum hv_stats_object_type`).
pub(crate) const HV_STATS_OBJECT_VP: u32 = 0x0001_0002;
/// `HV_STATS_AREA_SELF`: the counters the partition itself sees.
pub(crate) const HV_STATS_AREA_SELF: u8 = 0;
/// `HV_STATS_AREA_PARENT`: the counters its parent (the root) sees; older
/// hypervisors refuse it with `INVALID_PARAMETER` (then SELF has them all).
pub(crate) const HV_STATS_AREA_PARENT: u8 = 1;
/// Index of the VP counter `ROOT_DISPATCH_THREAD_BLOCKED` (x86) in a stats
/// page's `u64` array: nonzero while the VP's root dispatch thread must not
/// be resumed (root scheduler).
pub(crate) const HV_VP_COUNTER_ROOT_DISPATCH_THREAD_BLOCKED: usize = 202;
/// `HVCALL_MAP_VP_STATE_PAGE`.
pub(crate) const HVCALL_MAP_VP_STATE_PAGE: u16 = 0x00e1;
/// `HVCALL_UNMAP_VP_STATE_PAGE`.
pub(crate) const HVCALL_UNMAP_VP_STATE_PAGE: u16 = 0x00e2;
/// `HVCALL_GET_VP_STATE`.
pub(crate) const HVCALL_GET_VP_STATE: u16 = 0x00e3;
/// `HVCALL_SET_VP_STATE`.
pub(crate) const HVCALL_SET_VP_STATE: u16 = 0x00e4;
/// `HVCALL_GET_VP_CPUID_VALUES`.
pub(crate) const HVCALL_GET_VP_CPUID_VALUES: u16 = 0x00f4;
/// `HVCALL_GET_PARTITION_PROPERTY_EX`.
pub(crate) const HVCALL_GET_PARTITION_PROPERTY_EX: u16 = 0x0101;

// ---- Control and result words (include/asm-generic/mshyperv.h) -------------

/// Fast hypercall: input in registers.
pub(crate) const HV_HYPERCALL_FAST_BIT: u64 = 1 << 16;
/// Variable header size (8-byte units) at bits 17..27.
pub(crate) const HV_HYPERCALL_VARHEAD_OFFSET: u32 = 17;
/// Rep count at bits 32..44 (control) and reps completed (result).
pub(crate) const HV_HYPERCALL_REP_COMP_OFFSET: u32 = 32;
/// Rep start index at bits 48..60.
pub(crate) const HV_HYPERCALL_REP_START_OFFSET: u32 = 48;

/// Builds a hypercall control word.
pub(crate) const fn control(
    code: u16,
    reps: u16,
    rep_start: u16,
    varhead_qwords: u16,
    fast: bool,
) -> u64 {
    (code as u64)
        | if fast { HV_HYPERCALL_FAST_BIT } else { 0 }
        | ((varhead_qwords as u64 & 0x3ff) << HV_HYPERCALL_VARHEAD_OFFSET)
        | ((reps as u64 & 0xfff) << HV_HYPERCALL_REP_COMP_OFFSET)
        | ((rep_start as u64 & 0xfff) << HV_HYPERCALL_REP_START_OFFSET)
}

/// The status of a hypercall result word.
pub(crate) const fn result_status(result: u64) -> u16 {
    (result & 0xffff) as u16
}

/// The reps completed of a hypercall result word.
pub(crate) const fn result_reps(result: u64) -> u16 {
    ((result >> HV_HYPERCALL_REP_COMP_OFFSET) & 0xfff) as u16
}

/// A result word from a status and the reps completed.
pub(crate) const fn result(status: u16, reps: u16) -> u64 {
    (status as u64) | ((reps as u64 & 0xfff) << HV_HYPERCALL_REP_COMP_OFFSET)
}

// ---- Partitions ------------------------------------------------------------

/// The calling (root) partition.
pub(crate) const HV_PARTITION_ID_SELF: u64 = u64::MAX;
/// `HV_COMPATIBILITY_21_H2`.
pub(crate) const HV_COMPATIBILITY_21_H2: u32 = 0x0609;

/// `HV_PARTITION_PROPERTY_PRIVILEGE_FLAGS`.
pub(crate) const HV_PARTITION_PROPERTY_PRIVILEGE_FLAGS: u32 = 0x0001_0000;
/// `HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES`.
pub(crate) const HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES: u32 = 0x0001_0001;
/// `HV_PARTITION_PROPERTY_INTEGRATED_SCHEDULER_ENABLED`.
pub(crate) const HV_PARTITION_PROPERTY_INTEGRATED_SCHEDULER_ENABLED: u32 = 0x0002_0005;
/// `HV_PARTITION_PROPERTY_GPA_PAGE_ACCESS_TRACKING`.
pub(crate) const HV_PARTITION_PROPERTY_GPA_PAGE_ACCESS_TRACKING: u32 = 0x0005_0005;
/// `HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION`.
pub(crate) const HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION: u32 = 0x0005_0017;
/// `HV_PARTITION_PROPERTY_PROCESSOR_XSAVE_FEATURES`.
pub(crate) const HV_PARTITION_PROPERTY_PROCESSOR_XSAVE_FEATURES: u32 = 0x0006_0002;
/// `HV_PARTITION_PROPERTY_XSAVE_STATES`.
pub(crate) const HV_PARTITION_PROPERTY_XSAVE_STATES: u32 = 0x0006_0007;
/// `HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE`.
pub(crate) const HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE: u32 = 0x0006_0008;
/// `HV_PARTITION_PROPERTY_PROCESSOR_CLOCK_FREQUENCY`.
pub(crate) const HV_PARTITION_PROPERTY_PROCESSOR_CLOCK_FREQUENCY: u32 = 0x0006_0009;
/// `HV_PARTITION_PROPERTY_VMM_CAPABILITIES`.
pub(crate) const HV_PARTITION_PROPERTY_VMM_CAPABILITIES: u32 = 0x0009_0007;

// ---- GPA map flags (hvhdk_mini.h) --------------------------------------------

/// Readable.
pub(crate) const HV_MAP_GPA_READABLE: u32 = 0x1;
/// Writable.
pub(crate) const HV_MAP_GPA_WRITABLE: u32 = 0x2;
/// Kernel-mode executable.
pub(crate) const HV_MAP_GPA_KERNEL_EXECUTABLE: u32 = 0x4;
/// User-mode executable.
pub(crate) const HV_MAP_GPA_USER_EXECUTABLE: u32 = 0x8;
/// Executable in both modes.
pub(crate) const HV_MAP_GPA_EXECUTABLE: u32 = 0xc;
/// The permission bits.
pub(crate) const HV_MAP_GPA_PERMISSIONS_MASK: u32 = 0xf;
/// The hypervisor may adjust the access (access and dirty tracking).
pub(crate) const HV_MAP_GPA_ADJUSTABLE: u32 = 0x8000;
/// Mapped, but every access intercepts (`HVMSG_GPA_INTERCEPT`).
pub(crate) const HV_MAP_GPA_NO_ACCESS: u32 = 0x1_0000;
/// Uncached (MMIO).
pub(crate) const HV_MAP_GPA_NOT_CACHED: u32 = 0x20_0000;
/// Each rep maps a 2 MiB page.
pub(crate) const HV_MAP_GPA_LARGE_PAGE: u32 = 0x8000_0000;
/// Each unmap rep removes a 2 MiB page.
pub(crate) const HV_UNMAP_GPA_LARGE_PAGE: u32 = 0x2;
/// Every map flag the headers define; the others are reserved.
pub(crate) const HV_MAP_GPA_DEFINED: u32 = HV_MAP_GPA_PERMISSIONS_MASK
    | HV_MAP_GPA_ADJUSTABLE
    | HV_MAP_GPA_NO_ACCESS
    | HV_MAP_GPA_NOT_CACHED
    | HV_MAP_GPA_LARGE_PAGE;

// ---- Messages (hvgdk_mini.h, hvhdk.h) ------------------------------------------

/// `HVMSG_NONE`.
pub(crate) const HVMSG_NONE: u32 = 0x0000_0000;
/// `HVMSG_UNMAPPED_GPA`.
pub(crate) const HVMSG_UNMAPPED_GPA: u32 = 0x8000_0000;
/// `HVMSG_GPA_INTERCEPT`.
pub(crate) const HVMSG_GPA_INTERCEPT: u32 = 0x8000_0001;
/// `HVMSG_TIMER_EXPIRED`.
pub(crate) const HVMSG_TIMER_EXPIRED: u32 = 0x8000_0010;
/// `HVMSG_INVALID_VP_REGISTER_VALUE`.
pub(crate) const HVMSG_INVALID_VP_REGISTER_VALUE: u32 = 0x8000_0020;
/// `HVMSG_UNRECOVERABLE_EXCEPTION`.
pub(crate) const HVMSG_UNRECOVERABLE_EXCEPTION: u32 = 0x8000_0021;
/// `HVMSG_UNSUPPORTED_FEATURE`.
pub(crate) const HVMSG_UNSUPPORTED_FEATURE: u32 = 0x8000_0022;
/// `HVMSG_OPAQUE_INTERCEPT`.
pub(crate) const HVMSG_OPAQUE_INTERCEPT: u32 = 0x8000_003f;
/// `HVMSG_SYNIC_SINT_INTERCEPT`.
pub(crate) const HVMSG_SYNIC_SINT_INTERCEPT: u32 = 0x8000_0061;
/// `HVMSG_SYNIC_SINT_DELIVERABLE`.
pub(crate) const HVMSG_SYNIC_SINT_DELIVERABLE: u32 = 0x8000_0062;
/// `HVMSG_ASYNC_CALL_COMPLETION`.
pub(crate) const HVMSG_ASYNC_CALL_COMPLETION: u32 = 0x8000_0070;
/// `HVMSG_X64_IO_PORT_INTERCEPT`.
pub(crate) const HVMSG_X64_IO_PORT_INTERCEPT: u32 = 0x8001_0000;
/// `HVMSG_X64_MSR_INTERCEPT`.
pub(crate) const HVMSG_X64_MSR_INTERCEPT: u32 = 0x8001_0001;
/// `HVMSG_X64_CPUID_INTERCEPT`.
pub(crate) const HVMSG_X64_CPUID_INTERCEPT: u32 = 0x8001_0002;
/// `HVMSG_X64_EXCEPTION_INTERCEPT`.
pub(crate) const HVMSG_X64_EXCEPTION_INTERCEPT: u32 = 0x8001_0003;
/// `HVMSG_X64_APIC_EOI`.
pub(crate) const HVMSG_X64_APIC_EOI: u32 = 0x8001_0004;
/// `HVMSG_X64_LEGACY_FP_ERROR`.
pub(crate) const HVMSG_X64_LEGACY_FP_ERROR: u32 = 0x8001_0005;
/// `HVMSG_X64_HALT`.
pub(crate) const HVMSG_X64_HALT: u32 = 0x8001_0007;
/// `HVMSG_X64_INTERRUPTION_DELIVERABLE`.
pub(crate) const HVMSG_X64_INTERRUPTION_DELIVERABLE: u32 = 0x8001_0008;
/// `HVMSG_X64_SIPI_INTERCEPT`.
pub(crate) const HVMSG_X64_SIPI_INTERCEPT: u32 = 0x8001_0009;

/// `HV_INTERCEPT_ACCESS_READ`.
pub(crate) const HV_INTERCEPT_ACCESS_READ: u8 = 0;
/// `HV_INTERCEPT_ACCESS_WRITE`.
pub(crate) const HV_INTERCEPT_ACCESS_WRITE: u8 = 1;
/// `HV_INTERCEPT_ACCESS_EXECUTE`.
pub(crate) const HV_INTERCEPT_ACCESS_EXECUTE: u8 = 2;

/// Bytes of payload in a message.
pub(crate) const HV_MESSAGE_PAYLOAD_BYTES: usize = 240;

/// `struct hv_message_header`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvMessageHeader {
    /// `HVMSG_*`.
    pub(crate) message_type: u32,
    /// Bytes of payload used.
    pub(crate) payload_size: u8,
    /// `hv_message_flags` (bit 0: message pending).
    pub(crate) message_flags: u8,
    /// Reserved.
    pub(crate) reserved: [u8; 2],
    /// Sender or port id.
    pub(crate) sender: u64,
}

/// `struct hv_message`: what a VP's intercept message page starts with.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub(crate) struct HvMessage {
    /// The header.
    pub(crate) header: HvMessageHeader,
    /// The payload (an intercept message).
    pub(crate) payload: [u8; HV_MESSAGE_PAYLOAD_BYTES],
}

/// `struct hv_x64_segment_register`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvX64SegmentRegister {
    /// Base.
    pub(crate) base: u64,
    /// Limit.
    pub(crate) limit: u32,
    /// Selector.
    pub(crate) selector: u16,
    /// Attributes (type 0-3, S 4, DPL 5-6, P 7, AVL 12, L 13, D/B 14, G 15).
    pub(crate) attributes: u16,
}

/// `struct hv_x64_table_register`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvX64TableRegister {
    /// Padding.
    pub(crate) pad: [u16; 3],
    /// Limit.
    pub(crate) limit: u16,
    /// Base.
    pub(crate) base: u64,
}

/// `struct hv_x64_intercept_message_header`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvX64InterceptMessageHeader {
    /// The VP that exited.
    pub(crate) vp_index: u32,
    /// Instruction length in bits 0-3, CR8 in bits 4-7.
    pub(crate) instruction_length_cr8: u8,
    /// `HV_INTERCEPT_ACCESS_*`.
    pub(crate) intercept_access_type: u8,
    /// `hv_x64_vp_execution_state` (bits 0-1 CPL, 2 CR0.PE, 3 CR0.AM,
    /// 4 EFER.LMA, ...).
    pub(crate) execution_state: u16,
    /// CS at the exit.
    pub(crate) cs_segment: HvX64SegmentRegister,
    /// RIP at the exit.
    pub(crate) rip: u64,
    /// RFLAGS at the exit.
    pub(crate) rflags: u64,
}

/// `struct hv_x64_memory_intercept_message` (GPA intercepts, unmapped GPAs).
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvX64MemoryInterceptMessage {
    /// The common header.
    pub(crate) header: HvX64InterceptMessageHeader,
    /// `hv_cache_type`.
    pub(crate) cache_type: u32,
    /// Valid bytes in `instruction_bytes`.
    pub(crate) instruction_byte_count: u8,
    /// Bit 0: `guest_virtual_address` valid; bit 1: GVA→GPA valid.
    pub(crate) memory_access_info: u8,
    /// TPR priority.
    pub(crate) tpr_priority: u8,
    /// Reserved.
    pub(crate) reserved1: u8,
    /// Faulting guest virtual address.
    pub(crate) guest_virtual_address: u64,
    /// Faulting guest physical address.
    pub(crate) guest_physical_address: u64,
    /// Bytes of the faulting instruction.
    pub(crate) instruction_bytes: [u8; 16],
}

/// `struct hv_x64_io_port_intercept_message`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvX64IoPortInterceptMessage {
    /// The common header.
    pub(crate) header: HvX64InterceptMessageHeader,
    /// The port.
    pub(crate) port_number: u16,
    /// Access size in bytes in bits 0-2, string op bit 3, REP bit 4.
    pub(crate) access_info: u8,
    /// Valid bytes in `instruction_bytes`.
    pub(crate) instruction_byte_count: u8,
    /// Reserved.
    pub(crate) reserved: u32,
    /// RAX (the value written by OUT).
    pub(crate) rax: u64,
    /// Bytes of the instruction.
    pub(crate) instruction_bytes: [u8; 16],
    /// DS.
    pub(crate) ds_segment: HvX64SegmentRegister,
    /// ES.
    pub(crate) es_segment: HvX64SegmentRegister,
    /// RCX.
    pub(crate) rcx: u64,
    /// RSI.
    pub(crate) rsi: u64,
    /// RDI.
    pub(crate) rdi: u64,
}

/// `struct hv_x64_cpuid_intercept_message`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvX64CpuidInterceptMessage {
    /// The common header.
    pub(crate) header: HvX64InterceptMessageHeader,
    /// RAX (leaf).
    pub(crate) rax: u64,
    /// RCX (subleaf).
    pub(crate) rcx: u64,
    /// RDX.
    pub(crate) rdx: u64,
    /// RBX.
    pub(crate) rbx: u64,
    /// The hypervisor's result for RAX.
    pub(crate) default_result_rax: u64,
    /// ... for RCX.
    pub(crate) default_result_rcx: u64,
    /// ... for RDX.
    pub(crate) default_result_rdx: u64,
    /// ... for RBX.
    pub(crate) default_result_rbx: u64,
}

/// `struct hv_x64_msr_intercept_message`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvX64MsrInterceptMessage {
    /// The common header.
    pub(crate) header: HvX64InterceptMessageHeader,
    /// The MSR.
    pub(crate) msr_number: u32,
    /// Reserved.
    pub(crate) reserved: u32,
    /// RDX.
    pub(crate) rdx: u64,
    /// RAX.
    pub(crate) rax: u64,
}

/// `struct hv_register_assoc` (SET_VP_REGISTERS elements).
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvRegisterAssoc {
    /// `HV_*_REGISTER_*`.
    pub(crate) name: u32,
    /// Reserved.
    pub(crate) reserved1: u32,
    /// Reserved.
    pub(crate) reserved2: u64,
    /// The 128-bit value.
    pub(crate) value: [u64; 2],
}

/// Header of `hv_input_get_vp_registers` / `hv_input_set_vp_registers`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvInputVpRegistersHeader {
    /// Partition.
    pub(crate) partition_id: u64,
    /// VP.
    pub(crate) vp_index: u32,
    /// `hv_input_vtl`.
    pub(crate) input_vtl: u8,
    /// Reserved.
    pub(crate) rsvd_z8: u8,
    /// Reserved.
    pub(crate) rsvd_z16: u16,
}

/// `struct hv_input_map_gpa_pages` without its pfn list.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvInputMapGpaPages {
    /// Target partition.
    pub(crate) target_partition_id: u64,
    /// First gfn.
    pub(crate) target_gpa_base: u64,
    /// `HV_MAP_GPA_*`.
    pub(crate) map_flags: u32,
    /// Padding.
    pub(crate) padding: u32,
}

/// Input of `HVCALL_GET_PARTITION_PROPERTY` / `_EX`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvInputGetPartitionProperty {
    /// Partition.
    pub(crate) partition_id: u64,
    /// `HV_PARTITION_PROPERTY_*`.
    pub(crate) property_code: u32,
    /// Padding.
    pub(crate) padding: u32,
    /// Argument (`_EX` only).
    pub(crate) arg: u64,
}

/// Input of `HVCALL_SET_PARTITION_PROPERTY`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HvInputSetPartitionProperty {
    /// Partition.
    pub(crate) partition_id: u64,
    /// `HV_PARTITION_PROPERTY_*`.
    pub(crate) property_code: u32,
    /// Padding.
    pub(crate) padding: u32,
    /// The value.
    pub(crate) property_value: u64,
}

// SAFETY: all these are `repr(C, packed)` structs of integers and integer
// arrays: no padding, every bit pattern valid.
unsafe impl FromBytes for HvMessageHeader {}
// SAFETY: as above.
unsafe impl AsBytes for HvMessageHeader {}
// SAFETY: as above.
unsafe impl FromBytes for HvMessage {}
// SAFETY: as above.
unsafe impl AsBytes for HvMessage {}
// SAFETY: as above.
unsafe impl AsBytes for HvX64MemoryInterceptMessage {}
// SAFETY: as above.
unsafe impl FromBytes for HvX64MemoryInterceptMessage {}
// SAFETY: as above.
unsafe impl AsBytes for HvX64IoPortInterceptMessage {}
// SAFETY: as above.
unsafe impl AsBytes for HvX64InterceptMessageHeader {}
// SAFETY: as above.
unsafe impl AsBytes for HvX64CpuidInterceptMessage {}
// SAFETY: as above.
unsafe impl AsBytes for HvX64MsrInterceptMessage {}
// SAFETY: as above.
unsafe impl FromBytes for HvRegisterAssoc {}
// SAFETY: as above.
unsafe impl FromBytes for HvInputVpRegistersHeader {}
// SAFETY: as above.
unsafe impl FromBytes for HvInputGetPartitionProperty {}
// SAFETY: packed plain integers: no padding, every byte initialized.
unsafe impl AsBytes for HvInputGetPartitionProperty {}
// SAFETY: as above.
unsafe impl FromBytes for HvInputSetPartitionProperty {}
// SAFETY: as above.
unsafe impl FromBytes for HvX64SegmentRegister {}
// SAFETY: as above.
unsafe impl AsBytes for HvX64SegmentRegister {}
// SAFETY: as above.
unsafe impl FromBytes for HvX64TableRegister {}
// SAFETY: as above.
unsafe impl AsBytes for HvX64TableRegister {}

// Layouts, from the C headers (and mshv-bindings 0.7.1's bindgen layout
// tests for the messages the kernel headers lack).
const _: () = {
    assert!(size_of::<HvMessageHeader>() == 16);
    assert!(size_of::<HvMessage>() == 256);
    assert!(size_of::<HvX64SegmentRegister>() == 16);
    assert!(size_of::<HvX64TableRegister>() == 16);
    assert!(size_of::<HvX64InterceptMessageHeader>() == 40);
    assert!(offset_of!(HvX64InterceptMessageHeader, cs_segment) == 8);
    assert!(offset_of!(HvX64InterceptMessageHeader, rip) == 24);
    assert!(size_of::<HvX64MemoryInterceptMessage>() == 80);
    assert!(offset_of!(HvX64MemoryInterceptMessage, guest_virtual_address) == 48);
    assert!(offset_of!(HvX64MemoryInterceptMessage, guest_physical_address) == 56);
    assert!(offset_of!(HvX64MemoryInterceptMessage, instruction_bytes) == 64);
    assert!(size_of::<HvX64IoPortInterceptMessage>() == 128);
    assert!(offset_of!(HvX64IoPortInterceptMessage, rax) == 48);
    assert!(offset_of!(HvX64IoPortInterceptMessage, ds_segment) == 72);
    assert!(size_of::<HvX64CpuidInterceptMessage>() == 104);
    assert!(size_of::<HvX64MsrInterceptMessage>() == 64);
    assert!(size_of::<HvRegisterAssoc>() == 32);
    assert!(size_of::<HvInputVpRegistersHeader>() == 16);
    assert!(size_of::<HvInputMapGpaPages>() == 24);
    assert!(size_of::<HvInputGetPartitionProperty>() == 24);
    assert!(size_of::<HvInputSetPartitionProperty>() == 24);
};

// ---- Register names -----------------------------------------------------------

/// `HV_REGISTER_EXPLICIT_SUSPEND`.
pub(crate) const HV_REGISTER_EXPLICIT_SUSPEND: u32 = 0x0000_0000;
/// `HV_REGISTER_INTERCEPT_SUSPEND`.
pub(crate) const HV_REGISTER_INTERCEPT_SUSPEND: u32 = 0x0000_0001;
/// `HV_REGISTER_DISPATCH_SUSPEND`.
pub(crate) const HV_REGISTER_DISPATCH_SUSPEND: u32 = 0x0000_0003;
/// `HV_REGISTER_PENDING_INTERRUPTION`.
pub(crate) const HV_REGISTER_PENDING_INTERRUPTION: u32 = 0x0001_0002;
/// `HV_REGISTER_INTERRUPT_STATE`.
pub(crate) const HV_REGISTER_INTERRUPT_STATE: u32 = 0x0001_0003;
/// `HV_REGISTER_PENDING_EVENT0`.
pub(crate) const HV_REGISTER_PENDING_EVENT0: u32 = 0x0001_0004;
/// `HV_REGISTER_PENDING_EVENT1`.
pub(crate) const HV_REGISTER_PENDING_EVENT1: u32 = 0x0001_0005;
/// `HV_X64_REGISTER_RAX`; RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15 follow.
pub(crate) const HV_X64_REGISTER_RAX: u32 = 0x0002_0000;
/// `HV_X64_REGISTER_R15`.
pub(crate) const HV_X64_REGISTER_R15: u32 = 0x0002_000f;
/// `HV_X64_REGISTER_RIP`.
pub(crate) const HV_X64_REGISTER_RIP: u32 = 0x0002_0010;
/// `HV_X64_REGISTER_RFLAGS`.
pub(crate) const HV_X64_REGISTER_RFLAGS: u32 = 0x0002_0011;
/// `HV_X64_REGISTER_XMM0`; XMM1..XMM15 follow.
pub(crate) const HV_X64_REGISTER_XMM0: u32 = 0x0003_0000;
/// `HV_X64_REGISTER_FP_MMX0`; FP_MMX1..7 follow.
pub(crate) const HV_X64_REGISTER_FP_MMX0: u32 = 0x0003_0010;
/// `HV_X64_REGISTER_FP_CONTROL_STATUS`.
pub(crate) const HV_X64_REGISTER_FP_CONTROL_STATUS: u32 = 0x0003_0018;
/// `HV_X64_REGISTER_XMM_CONTROL_STATUS`.
pub(crate) const HV_X64_REGISTER_XMM_CONTROL_STATUS: u32 = 0x0003_0019;
/// `HV_X64_REGISTER_CR0`.
pub(crate) const HV_X64_REGISTER_CR0: u32 = 0x0004_0000;
/// `HV_X64_REGISTER_CR2`.
pub(crate) const HV_X64_REGISTER_CR2: u32 = 0x0004_0001;
/// `HV_X64_REGISTER_CR3`.
pub(crate) const HV_X64_REGISTER_CR3: u32 = 0x0004_0002;
/// `HV_X64_REGISTER_CR4`.
pub(crate) const HV_X64_REGISTER_CR4: u32 = 0x0004_0003;
/// `HV_X64_REGISTER_CR8`.
pub(crate) const HV_X64_REGISTER_CR8: u32 = 0x0004_0004;
/// `HV_X64_REGISTER_XFEM`.
pub(crate) const HV_X64_REGISTER_XFEM: u32 = 0x0004_0005;
/// `HV_X64_REGISTER_DR0`; DR1, DR2, DR3, DR6, DR7 follow.
pub(crate) const HV_X64_REGISTER_DR0: u32 = 0x0005_0000;
/// `HV_X64_REGISTER_DR7`.
pub(crate) const HV_X64_REGISTER_DR7: u32 = 0x0005_0005;
/// `HV_X64_REGISTER_ES`; CS, SS, DS, FS, GS, LDTR, TR follow.
pub(crate) const HV_X64_REGISTER_ES: u32 = 0x0006_0000;
/// `HV_X64_REGISTER_CS`.
pub(crate) const HV_X64_REGISTER_CS: u32 = 0x0006_0001;
/// `HV_X64_REGISTER_SS`.
pub(crate) const HV_X64_REGISTER_SS: u32 = 0x0006_0002;
/// `HV_X64_REGISTER_DS`.
pub(crate) const HV_X64_REGISTER_DS: u32 = 0x0006_0003;
/// `HV_X64_REGISTER_FS`.
pub(crate) const HV_X64_REGISTER_FS: u32 = 0x0006_0004;
/// `HV_X64_REGISTER_GS`.
pub(crate) const HV_X64_REGISTER_GS: u32 = 0x0006_0005;
/// `HV_X64_REGISTER_LDTR`.
pub(crate) const HV_X64_REGISTER_LDTR: u32 = 0x0006_0006;
/// `HV_X64_REGISTER_TR`.
pub(crate) const HV_X64_REGISTER_TR: u32 = 0x0006_0007;
/// `HV_X64_REGISTER_IDTR`.
pub(crate) const HV_X64_REGISTER_IDTR: u32 = 0x0007_0000;
/// `HV_X64_REGISTER_GDTR`.
pub(crate) const HV_X64_REGISTER_GDTR: u32 = 0x0007_0001;
/// `HV_X64_REGISTER_TSC`.
pub(crate) const HV_X64_REGISTER_TSC: u32 = 0x0008_0000;
/// `HV_X64_REGISTER_EFER`.
pub(crate) const HV_X64_REGISTER_EFER: u32 = 0x0008_0001;
/// `HV_X64_REGISTER_KERNEL_GS_BASE`.
pub(crate) const HV_X64_REGISTER_KERNEL_GS_BASE: u32 = 0x0008_0002;
/// `HV_X64_REGISTER_APIC_BASE`.
pub(crate) const HV_X64_REGISTER_APIC_BASE: u32 = 0x0008_0003;
/// `HV_X64_REGISTER_PAT`.
pub(crate) const HV_X64_REGISTER_PAT: u32 = 0x0008_0004;
/// `HV_X64_REGISTER_SYSENTER_CS`; SYSENTER_EIP, SYSENTER_ESP, STAR, LSTAR,
/// CSTAR, SFMASK follow.
pub(crate) const HV_X64_REGISTER_SYSENTER_CS: u32 = 0x0008_0005;
/// `HV_X64_REGISTER_SFMASK`.
pub(crate) const HV_X64_REGISTER_SFMASK: u32 = 0x0008_000b;
/// `HV_X64_REGISTER_TSC_AUX`.
pub(crate) const HV_X64_REGISTER_TSC_AUX: u32 = 0x0008_007b;
/// `HV_X64_REGISTER_SPEC_CTRL`.
pub(crate) const HV_X64_REGISTER_SPEC_CTRL: u32 = 0x0008_0084;
/// `HV_X64_REGISTER_U_XSS`.
pub(crate) const HV_X64_REGISTER_U_XSS: u32 = 0x0008_008b;
/// `HV_X64_REGISTER_MSR_MTRR_CAP`; the MTRR registers lie in 0x8000d..0x8007a.
pub(crate) const HV_X64_REGISTER_MSR_MTRR_CAP: u32 = 0x0008_000d;
/// `HV_X64_REGISTER_MSR_MTRR_FIX4KF8000`.
pub(crate) const HV_X64_REGISTER_MSR_MTRR_FIX4KF8000: u32 = 0x0008_007a;
/// `HV_REGISTER_GUEST_OS_ID`.
pub(crate) const HV_REGISTER_GUEST_OS_ID: u32 = 0x0009_0002;
/// `HV_REGISTER_VP_INDEX`.
pub(crate) const HV_REGISTER_VP_INDEX: u32 = 0x0009_0003;
/// `HV_REGISTER_TIME_REF_COUNT`.
pub(crate) const HV_REGISTER_TIME_REF_COUNT: u32 = 0x0009_0004;
/// `HV_REGISTER_VP_ASSIST_PAGE`.
pub(crate) const HV_REGISTER_VP_ASSIST_PAGE: u32 = 0x0009_0013;
/// `HV_REGISTER_VP_ROOT_SIGNAL_COUNT`.
pub(crate) const HV_REGISTER_VP_ROOT_SIGNAL_COUNT: u32 = 0x0009_0014;
/// `HV_REGISTER_REFERENCE_TSC`.
pub(crate) const HV_REGISTER_REFERENCE_TSC: u32 = 0x0009_0017;
/// `HV_REGISTER_SINT0`; SINT1..SINT15 follow.
pub(crate) const HV_REGISTER_SINT0: u32 = 0x000a_0000;
/// `HV_REGISTER_SCONTROL`.
pub(crate) const HV_REGISTER_SCONTROL: u32 = 0x000a_0010;
/// `HV_REGISTER_SVERSION`.
pub(crate) const HV_REGISTER_SVERSION: u32 = 0x000a_0011;
/// `HV_REGISTER_SIEFP`.
pub(crate) const HV_REGISTER_SIEFP: u32 = 0x000a_0012;
/// `HV_REGISTER_SIMP`.
pub(crate) const HV_REGISTER_SIMP: u32 = 0x000a_0013;
/// `HV_REGISTER_EOM`.
pub(crate) const HV_REGISTER_EOM: u32 = 0x000a_0014;
/// `HV_REGISTER_STIMER0_CONFIG`; COUNT, then STIMER1..3 CONFIG/COUNT follow.
pub(crate) const HV_REGISTER_STIMER0_CONFIG: u32 = 0x000b_0000;
/// `HV_REGISTER_STIMER3_COUNT`.
pub(crate) const HV_REGISTER_STIMER3_COUNT: u32 = 0x000b_0007;

// ---- Hypercall inputs and outputs -------------------------------------------
//
// One struct per fixed part of a call's input or output, from
// `include/hyperv/hv{g,h}dk*.h`. The driver's Hyper-V backend fills them and
// writes `as_bytes()` into the input page; the emulator reads them back with
// `from_bytes_copy_prefix()` from the same bytes. Variable parts (pfn lists,
// register names) follow the fixed part as `u64`/`u32` arrays.

/// Codes the backend issues that the table above lacks.
pub(crate) const HVCALL_DELETE_PORT: u16 = 0x0058;
/// `HVCALL_DISCONNECT_PORT`.
pub(crate) const HVCALL_DISCONNECT_PORT: u16 = 0x005b;
/// `HVCALL_GET_SYSTEM_PROPERTY`.
pub(crate) const HVCALL_GET_SYSTEM_PROPERTY: u16 = 0x007b;
/// `HVCALL_NOTIFY_PORT_RING_EMPTY` (fast).
pub(crate) const HVCALL_NOTIFY_PORT_RING_EMPTY: u16 = 0x008b;
/// `HVCALL_CREATE_PORT`.
pub(crate) const HVCALL_CREATE_PORT: u16 = 0x0095;
/// `HVCALL_CONNECT_PORT`.
pub(crate) const HVCALL_CONNECT_PORT: u16 = 0x0096;

/// Input of calls whose only argument is a partition id (`INITIALIZE`,
/// `FINALIZE`, `DELETE_PARTITION`) and the fixed part of
/// `HVCALL_DEPOSIT_MEMORY` (`struct hv_deposit_memory`, pfns follow).
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputPartition {
    /// Target partition.
    pub(crate) partition_id: u64,
}

/// `struct hv_input_create_partition`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputCreatePartition {
    /// `HV_PARTITION_CREATION_FLAG_*`.
    pub(crate) flags: u64,
    /// `hv_proximity_domain_info`: 0 is any node.
    pub(crate) proximity_domain_info: u64,
    /// `HV_COMPATIBILITY_*`.
    pub(crate) compatibility_version: u32,
    /// Padding.
    pub(crate) padding: u32,
    /// Disabled processor feature banks.
    pub(crate) disabled_processor_features: [u64; 2],
    /// Disabled XSAVE features.
    pub(crate) disabled_xsave: u64,
    /// `hv_partition_isolation_properties`: 0 is none.
    pub(crate) isolation_properties: u64,
}

/// `struct hv_input_withdraw_memory`; output: `u64` pfns, one per rep.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputWithdrawMemory {
    /// Source partition.
    pub(crate) partition_id: u64,
    /// `hv_proximity_domain_info`: 0 is any node.
    pub(crate) proximity_domain_info: u64,
}

/// `struct hv_create_vp`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputCreateVp {
    /// Partition.
    pub(crate) partition_id: u64,
    /// New VP's index.
    pub(crate) vp_index: u32,
    /// Padding.
    pub(crate) padding: [u8; 3],
    /// `hv_proximity_domain_flags` subnode type.
    pub(crate) subnode_type: u8,
    /// Subnode id.
    pub(crate) subnode_id: u64,
    /// `hv_proximity_domain_info`.
    pub(crate) proximity_domain_info: u64,
    /// `HV_VP_CREATION_FLAG_*`.
    pub(crate) flags: u64,
}

/// `struct hv_input_delete_vp` (and the VP part of other VP calls).
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputVp {
    /// Partition.
    pub(crate) partition_id: u64,
    /// VP index.
    pub(crate) vp_index: u32,
    /// Reserved.
    pub(crate) reserved: u32,
}

/// `struct hv_input_map_vp_state_page`; output: `u64` map location (pfn).
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputMapVpStatePage {
    /// Partition.
    pub(crate) partition_id: u64,
    /// VP index.
    pub(crate) vp_index: u32,
    /// `HV_VP_STATE_PAGE_*`.
    pub(crate) page_type: u16,
    /// `hv_input_vtl`.
    pub(crate) input_vtl: u8,
    /// Bit 0: `map_location_provided`.
    pub(crate) flags: u8,
    /// With `map_location_provided`: the pfn the caller chose.
    pub(crate) requested_map_location: u64,
}

/// `union hv_stats_object_identity`, VP form (`hv_stats_vp`).
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvStatsVpIdentity {
    /// Partition.
    pub(crate) partition_id: u64,
    /// VP index.
    pub(crate) vp_index: u32,
    /// Flags (zero).
    pub(crate) flags: u16,
    /// Reserved.
    pub(crate) reserved: u8,
    /// `HV_STATS_AREA_*`.
    pub(crate) stats_area_type: u8,
}

/// `struct hv_input_map_stats_page` and `hv_input_unmap_stats_page` (the
/// same layout), for a VP's stats.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputStatsPage {
    /// `HV_STATS_OBJECT_*`.
    pub(crate) object_type: u32,
    /// Padding.
    pub(crate) padding: u32,
    /// Which object and area.
    pub(crate) identity: HvStatsVpIdentity,
}

/// `struct hv_input_unmap_vp_state_page`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputUnmapVpStatePage {
    /// Partition.
    pub(crate) partition_id: u64,
    /// VP index.
    pub(crate) vp_index: u32,
    /// `HV_VP_STATE_PAGE_*`.
    pub(crate) page_type: u16,
    /// `hv_input_vtl`.
    pub(crate) input_vtl: u8,
    /// Reserved.
    pub(crate) reserved: u8,
}

/// `struct hv_input_unmap_gpa_pages`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputUnmapGpaPages {
    /// Partition.
    pub(crate) target_partition_id: u64,
    /// First gfn.
    pub(crate) target_gpa_base: u64,
    /// `HV_UNMAP_GPA_*`.
    pub(crate) unmap_flags: u32,
    /// Padding.
    pub(crate) padding: u32,
}

/// `struct hv_input_assert_virtual_interrupt`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputAssertVirtualInterrupt {
    /// Partition.
    pub(crate) partition_id: u64,
    /// `hv_interrupt_control`: type in bits 0..31, level-triggered bit 32,
    /// logical destination mode bit 33, the rest reserved (zero).
    pub(crate) control: u64,
    /// APIC id or logical destination.
    pub(crate) dest_addr: u64,
    /// Vector.
    pub(crate) vector: u32,
    /// Target VTL.
    pub(crate) target_vtl: u8,
    /// Reserved.
    pub(crate) rsvd_z0: u8,
    /// Reserved.
    pub(crate) rsvd_z1: u16,
}

/// `hv_interrupt_control.level_triggered`.
pub(crate) const HV_INTERRUPT_CONTROL_LEVEL: u64 = 1 << 32;
/// `hv_interrupt_control.logical_dest_mode`.
pub(crate) const HV_INTERRUPT_CONTROL_LOGICAL: u64 = 1 << 33;

/// `struct hv_input_get_gpa_pages_access_state`; output: one byte per rep.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputGetGpaPagesAccessState {
    /// Partition.
    pub(crate) partition_id: u64,
    /// `hv_gpa_page_access_state_flags`.
    pub(crate) flags: u64,
    /// First gfn.
    pub(crate) hv_gpa_page_number: u64,
}

/// The fixed part of `hv_input_get_vp_state` / `hv_input_set_vp_state`:
/// pfns or inline state bytes follow (the variable header).
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputVpState {
    /// Partition.
    pub(crate) partition_id: u64,
    /// VP index.
    pub(crate) vp_index: u32,
    /// `hv_input_vtl`.
    pub(crate) input_vtl: u8,
    /// Reserved.
    pub(crate) rsvd: [u8; 3],
    /// `hv_vp_state_data.type`.
    pub(crate) state_type: u32,
    /// `hv_vp_state_data.rsvd`.
    pub(crate) state_rsvd: u32,
    /// `hv_vp_state_data.xsave.flags`.
    pub(crate) xsave_flags: u64,
    /// `hv_vp_state_data.xsave.states`.
    pub(crate) xsave_states: u64,
}

/// `struct hv_input_dispatch_vp`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputDispatchVp {
    /// Partition.
    pub(crate) partition_id: u64,
    /// VP index.
    pub(crate) vp_index: u32,
    /// `HV_DISPATCH_VP_FLAG_*`.
    pub(crate) flags: u32,
    /// In 100 ns units; 0 is the hypervisor's default.
    pub(crate) time_slice: u64,
    /// With `SET_CALLER_SPEC_CTRL`.
    pub(crate) spec_ctrl: u64,
}

/// `struct hv_output_dispatch_vp`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvOutputDispatchVp {
    /// `HV_VP_DISPATCH_STATE_*`.
    pub(crate) dispatch_state: u32,
    /// `HV_VP_DISPATCH_EVENT_*`.
    pub(crate) dispatch_event: u32,
}

/// `HV_DISPATCH_VP_FLAG_CLEAR_INTERCEPT_SUSPEND`.
pub(crate) const HV_DISPATCH_VP_FLAG_CLEAR_INTERCEPT_SUSPEND: u32 = 0x1;
/// `HV_DISPATCH_VP_FLAG_SCAN_INTERRUPT_INJECTION`.
pub(crate) const HV_DISPATCH_VP_FLAG_SCAN_INTERRUPT_INJECTION: u32 = 0x40;
/// The flags the TLFS defines for `HVCALL_DISPATCH_VP` (0x1..0x40).
pub(crate) const HV_DISPATCH_VP_FLAGS_VALID: u32 = 0x7f;
/// `HV_VP_DISPATCH_STATE_BLOCKED`.
pub(crate) const HV_VP_DISPATCH_STATE_BLOCKED: u32 = 1;
/// `HV_VP_DISPATCH_STATE_READY`.
pub(crate) const HV_VP_DISPATCH_STATE_READY: u32 = 2;
/// `HV_VP_DISPATCH_EVENT_INVALID`: no event (time slice over, or the
/// caller has work).
pub(crate) const HV_VP_DISPATCH_EVENT_INVALID: u32 = 0;
/// `HV_VP_DISPATCH_EVENT_SUSPEND`.
pub(crate) const HV_VP_DISPATCH_EVENT_SUSPEND: u32 = 1;
/// `HV_VP_DISPATCH_EVENT_INTERCEPT`.
pub(crate) const HV_VP_DISPATCH_EVENT_INTERCEPT: u32 = 2;

/// `struct hv_input_get_system_property` (x86).
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputGetSystemProperty {
    /// `HV_SYSTEM_PROPERTY_*`.
    pub(crate) property_id: u32,
    /// Reserved.
    pub(crate) reserved: u32,
    /// Property argument.
    pub(crate) arg: u64,
}

/// `HV_SYSTEM_PROPERTY_SCHEDULER_TYPE`; output: `u32` `HV_SCHEDULER_TYPE_*`.
pub(crate) const HV_SYSTEM_PROPERTY_SCHEDULER_TYPE: u32 = 15;
/// `HV_SCHEDULER_TYPE_LP` (classic, no SMT).
pub(crate) const HV_SCHEDULER_TYPE_LP: u32 = 1;
/// `HV_SCHEDULER_TYPE_LP_SMT`.
pub(crate) const HV_SCHEDULER_TYPE_LP_SMT: u32 = 2;
/// `HV_SCHEDULER_TYPE_CORE_SMT` (core scheduler).
pub(crate) const HV_SCHEDULER_TYPE_CORE_SMT: u32 = 3;
/// `HV_SCHEDULER_TYPE_ROOT` (root, or integrated, scheduler).
pub(crate) const HV_SCHEDULER_TYPE_ROOT: u32 = 4;

/// `HV_PORT_TYPE_DOORBELL` (root partition only).
pub(crate) const HV_PORT_TYPE_DOORBELL: u32 = 4;
/// `HV_ANY_VP`.
pub(crate) const HV_ANY_VP: u32 = u32::MAX;
/// Port and connection ids are 24 bits (`union hv_port_id`).
pub(crate) const HV_PORT_ID_MASK: u32 = 0x00ff_ffff;
/// `HV_DOORBELL_FLAG_TRIGGER_SIZE_MASK`: 0 any, 1 byte, 2 word, 3 dword,
/// 4 qword.
pub(crate) const HV_DOORBELL_FLAG_TRIGGER_SIZE_MASK: u64 = 0x7;
/// `HV_DOORBELL_FLAG_TRIGGER_ANY_VALUE`.
pub(crate) const HV_DOORBELL_FLAG_TRIGGER_ANY_VALUE: u64 = 0x8000_0000;

/// `struct hv_input_create_port` with `hv_port_info.doorbell_port_info`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputCreatePort {
    /// The partition that owns the port (the root).
    pub(crate) port_partition_id: u64,
    /// `union hv_port_id`.
    pub(crate) port_id: u32,
    /// VTL of the port.
    pub(crate) port_vtl: u8,
    /// Lowest VTL that may connect.
    pub(crate) min_connection_vtl: u8,
    /// Padding.
    pub(crate) padding: u16,
    /// The partition that may connect.
    pub(crate) connection_partition_id: u64,
    /// `hv_port_info.port_type`.
    pub(crate) port_type: u32,
    /// `hv_port_info.padding`.
    pub(crate) port_info_padding: u32,
    /// `doorbell_port_info.target_sint`.
    pub(crate) target_sint: u32,
    /// `doorbell_port_info.target_vp` (`HV_ANY_VP`).
    pub(crate) target_vp: u32,
    /// `doorbell_port_info.rsvdz`.
    pub(crate) port_info_rsvd: u64,
    /// `hv_proximity_domain_info`.
    pub(crate) proximity_domain_info: u64,
}

/// `struct hv_input_connect_port` with
/// `hv_connection_info.doorbell_connection_info`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputConnectPort {
    /// The partition that connects (the guest).
    pub(crate) connection_partition_id: u64,
    /// `union hv_connection_id`.
    pub(crate) connection_id: u32,
    /// VTL of the connection.
    pub(crate) connection_vtl: u8,
    /// Reserved.
    pub(crate) rsvdz0: u8,
    /// Reserved.
    pub(crate) rsvdz1: u16,
    /// The port's partition (the root).
    pub(crate) port_partition_id: u64,
    /// `union hv_port_id`.
    pub(crate) port_id: u32,
    /// Reserved.
    pub(crate) reserved2: u32,
    /// `hv_connection_info.port_type`.
    pub(crate) port_type: u32,
    /// `hv_connection_info.padding`.
    pub(crate) connection_info_padding: u32,
    /// `doorbell_connection_info.gpa`.
    pub(crate) gpa: u64,
    /// `doorbell_connection_info.trigger_value`.
    pub(crate) trigger_value: u64,
    /// `doorbell_connection_info.flags` (`HV_DOORBELL_FLAG_*`).
    pub(crate) doorbell_flags: u64,
    /// `hv_proximity_domain_info`.
    pub(crate) proximity_domain_info: u64,
}

/// `union hv_input_delete_port`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputDeletePort {
    /// The port's partition.
    pub(crate) port_partition_id: u64,
    /// `union hv_port_id`.
    pub(crate) port_id: u32,
    /// Reserved.
    pub(crate) reserved: u32,
}

/// `union hv_input_disconnect_port`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvInputDisconnectPort {
    /// The connecting partition.
    pub(crate) connection_partition_id: u64,
    /// `union hv_connection_id`.
    pub(crate) connection_id: u32,
    /// Bit 0: `is_doorbell`; the rest reserved.
    pub(crate) flags: u32,
}

// ---- SynIC (include/hyperv/hvgdk_mini.h, hvhdk.h) -----------------------------

/// `HV_X64_MSR_SCONTROL`: bit 0 enables the SynIC.
pub(crate) const HV_MSR_SCONTROL: u32 = 0x4000_0080;
/// `HV_X64_MSR_SIEFP`: bit 0 enable, bits 12.. the event-flags page gpa.
pub(crate) const HV_MSR_SIEFP: u32 = 0x4000_0082;
/// `HV_X64_MSR_SIMP`: bit 0 enable, bits 12.. the message page gpa.
pub(crate) const HV_MSR_SIMP: u32 = 0x4000_0083;
/// `HV_X64_MSR_EOM`: a write asks for the next pending message.
pub(crate) const HV_MSR_EOM: u32 = 0x4000_0084;
/// `HV_X64_MSR_SIRBP`: bit 0 enable, bits 12.. the event-ring page gpa.
pub(crate) const HV_MSR_SIRBP: u32 = 0x4000_0085;
/// `HV_X64_MSR_SINT0`; SINT1..SINT15 follow.
pub(crate) const HV_MSR_SINT0: u32 = 0x4000_0090;
/// SINTs per CPU.
pub(crate) const HV_SYNIC_SINT_COUNT: usize = 16;
/// The SINT intercepts and scheduler messages arrive on.
pub(crate) const HV_SYNIC_INTERCEPTION_SINT_INDEX: usize = 0;
/// The SINT doorbells arrive on (as an event ring).
pub(crate) const HV_SYNIC_DOORBELL_SINT_INDEX: usize = 5;
/// Port ids per SINT event ring.
pub(crate) const HV_SYNIC_EVENT_RING_MESSAGE_COUNT: usize = 63;

/// `hv_synic_simp.simp_enabled` (also SIEFP's and SIRBP's enable bit).
pub(crate) const HV_SYNIC_PAGE_ENABLE: u64 = 1;
/// Bits 12.. of SIMP, SIEFP and SIRBP: the page's gpa.
pub(crate) const HV_SYNIC_PAGE_GPA_SHIFT: u32 = 12;
/// `hv_synic_sint.vector` (bits 0..7).
pub(crate) const HV_SINT_VECTOR_MASK: u64 = 0xff;
/// `hv_synic_sint.masked`.
pub(crate) const HV_SINT_MASKED: u64 = 1 << 16;
/// `hv_synic_sint.auto_eoi`.
pub(crate) const HV_SINT_AUTO_EOI: u64 = 1 << 17;
/// `hv_synic_sint.polling`.
pub(crate) const HV_SINT_POLLING: u64 = 1 << 18;
/// `hv_synic_sint.as_intercept`.
pub(crate) const HV_SINT_AS_INTERCEPT: u64 = 1 << 19;
/// `hv_synic_sint.proxy`.
pub(crate) const HV_SINT_PROXY: u64 = 1 << 20;
/// The bits of a SINT register the TLFS defines (the rest are reserved).
pub(crate) const HV_SINT_VALID: u64 = HV_SINT_VECTOR_MASK
    | HV_SINT_MASKED
    | HV_SINT_AUTO_EOI
    | HV_SINT_POLLING
    | HV_SINT_AS_INTERCEPT
    | HV_SINT_PROXY;
/// `hv_message_flags.msg_pending`.
pub(crate) const HV_MESSAGE_FLAG_PENDING: u8 = 1;

/// `struct hv_synic_event_ring`: one SINT's ring of port ids.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub(crate) struct HvSynicEventRing {
    /// Set by the root while it drains: the hypervisor sends no message.
    pub(crate) signal_masked: u8,
    /// Set by the hypervisor when it found the ring full.
    pub(crate) ring_full: u8,
    /// Reserved.
    pub(crate) reserved_z: u16,
    /// Port ids; 0 is an empty slot.
    pub(crate) data: [u32; HV_SYNIC_EVENT_RING_MESSAGE_COUNT],
}

/// Payload of `HVMSG_SYNIC_SINT_INTERCEPT` (`hv_notification_message_payload`).
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvNotificationMessagePayload {
    /// The SINT whose event ring has entries.
    pub(crate) sint_index: u32,
}

/// `HV_MESSAGE_MAX_PARTITION_VP_PAIR_COUNT`.
pub(crate) const HV_SIGNAL_PAIR_COUNT: usize = 19;

/// `struct hv_vp_signal_pair_scheduler_message` (payload of
/// `HVMSG_SCHEDULER_VP_SIGNAL_PAIR`): VPs that became runnable.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub(crate) struct HvVpSignalPairSchedulerMessage {
    /// Signals the hypervisor could not fit.
    pub(crate) overflow_count: u32,
    /// Pairs used.
    pub(crate) vp_count: u8,
    /// Reserved.
    pub(crate) reserved1: [u8; 3],
    /// Partition of each pair.
    pub(crate) partition_ids: [u64; HV_SIGNAL_PAIR_COUNT],
    /// VP of each pair.
    pub(crate) vp_indexes: [u32; HV_SIGNAL_PAIR_COUNT],
    /// Reserved.
    pub(crate) reserved2: [u8; 4],
}

/// `HVMSG_SCHEDULER_VP_SIGNAL_BITSET`.
pub(crate) const HVMSG_SCHEDULER_VP_SIGNAL_BITSET: u32 = 0x8000_0100;
/// `HVMSG_SCHEDULER_VP_SIGNAL_PAIR`.
pub(crate) const HVMSG_SCHEDULER_VP_SIGNAL_PAIR: u32 = 0x8000_0101;

/// Payload of `HVMSG_X64_APIC_EOI` (`hv_x64_apic_eoi_message`); the header's
/// sender is the partition id.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvX64ApicEoiMessage {
    /// The VP that ended the interrupt.
    pub(crate) vp_index: u32,
    /// Its vector.
    pub(crate) interrupt_vector: u32,
}

/// Payload of `HVMSG_OPAQUE_INTERCEPT` (`hv_opaque_intercept_message`); the
/// header's sender is the partition id.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvOpaqueInterceptMessage {
    /// The VP whose intercept page holds the message.
    pub(crate) vp_index: u32,
}

/// Payload of `HVMSG_ASYNC_CALL_COMPLETION`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HvAsyncCompletionMessage {
    /// The partition the call was about.
    pub(crate) partition_id: u64,
    /// The call's final status.
    pub(crate) status: u32,
    /// Completions.
    pub(crate) completion_count: u32,
    /// Sub-status.
    pub(crate) sub_status: u64,
}

/// Implements `FromBytes` and `AsBytes` for packed integer structs.
macro_rules! plain_old_data {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: a `repr(C, packed)` struct of integers and integer arrays:
        // no padding, and every bit pattern is a valid value.
        unsafe impl FromBytes for $t {}
        // SAFETY: as above.
        unsafe impl AsBytes for $t {}
    )*};
}

plain_old_data!(
    HvInputPartition,
    HvInputCreatePartition,
    HvInputWithdrawMemory,
    HvInputCreateVp,
    HvInputVp,
    HvInputMapVpStatePage,
    HvInputUnmapVpStatePage,
    HvStatsVpIdentity,
    HvInputStatsPage,
    HvInputUnmapGpaPages,
    HvInputAssertVirtualInterrupt,
    HvInputGetGpaPagesAccessState,
    HvInputVpState,
    HvInputDispatchVp,
    HvOutputDispatchVp,
    HvInputGetSystemProperty,
    HvInputCreatePort,
    HvInputConnectPort,
    HvInputDeletePort,
    HvInputDisconnectPort,
    HvSynicEventRing,
    HvNotificationMessagePayload,
    HvVpSignalPairSchedulerMessage,
    HvX64ApicEoiMessage,
    HvOpaqueInterceptMessage,
    HvAsyncCompletionMessage,
);
// SAFETY: as for the structs above.
unsafe impl AsBytes for HvInputMapGpaPages {}
// SAFETY: as above.
unsafe impl FromBytes for HvInputMapGpaPages {}
// SAFETY: as above.
unsafe impl AsBytes for HvInputVpRegistersHeader {}
// SAFETY: as above.
unsafe impl AsBytes for HvRegisterAssoc {}

// Sizes from the C headers.
const _: () = {
    assert!(size_of::<HvInputPartition>() == 8);
    assert!(size_of::<HvInputCreatePartition>() == 56);
    assert!(size_of::<HvInputWithdrawMemory>() == 16);
    assert!(size_of::<HvInputCreateVp>() == 40);
    assert!(size_of::<HvInputVp>() == 16);
    assert!(size_of::<HvInputMapVpStatePage>() == 24);
    assert!(size_of::<HvInputUnmapVpStatePage>() == 16);
    assert!(size_of::<HvStatsVpIdentity>() == 16);
    assert!(size_of::<HvInputStatsPage>() == 24);
    assert!(size_of::<HvInputUnmapGpaPages>() == 24);
    assert!(size_of::<HvInputAssertVirtualInterrupt>() == 32);
    assert!(size_of::<HvInputGetGpaPagesAccessState>() == 24);
    assert!(size_of::<HvInputVpState>() == 40);
    assert!(size_of::<HvInputDispatchVp>() == 32);
    assert!(size_of::<HvOutputDispatchVp>() == 8);
    assert!(size_of::<HvInputGetSystemProperty>() == 16);
    assert!(size_of::<HvInputCreatePort>() == 56);
    assert!(offset_of!(HvInputCreatePort, port_type) == 24);
    assert!(size_of::<HvInputConnectPort>() == 72);
    assert!(offset_of!(HvInputConnectPort, port_type) == 32);
    assert!(size_of::<HvInputDeletePort>() == 16);
    assert!(size_of::<HvInputDisconnectPort>() == 16);
    assert!(size_of::<HvSynicEventRing>() == 256);
    assert!(size_of::<HvVpSignalPairSchedulerMessage>() == HV_MESSAGE_PAYLOAD_BYTES);
    assert!(size_of::<HvAsyncCompletionMessage>() == 24);
};

/// Reads a `T` at byte `off` of `buf`; `None` if it does not fit.
pub(crate) fn read_at<T: FromBytes>(buf: &[u8], off: usize) -> Option<T> {
    T::from_bytes_copy_prefix(buf.get(off..)?).map(|(v, _)| v)
}

/// Writes `v` at byte `off` of `buf`; `None` if it does not fit.
pub(crate) fn write_at<T: AsBytes>(buf: &mut [u8], off: usize, v: &T) -> Option<()> {
    let b = v.as_bytes();
    buf.get_mut(off..off.checked_add(b.len())?)?
        .copy_from_slice(b);
    Some(())
}
