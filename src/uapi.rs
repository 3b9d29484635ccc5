// SPDX-License-Identifier: GPL-2.0

//! Userspace ABI of `/dev/mshv` (root partition part).
//!
//! Rust mirror of the root-partition section of Linux 7.3 `include/uapi/linux/mshv.h`: the
//! argument structures of the ioctls on `/dev/mshv`, on partition fds and on VP fds, the ioctl
//! numbers, and the flag bits and limits that go with them. The VTL section of that header
//! belongs to the separate `mshv_vtl` driver and is not mirrored here. [`MSHV_MAX_VPS`] and
//! [`MSHV_MAX_GUEST_IRQS`] are limits of the upstream driver (`drivers/hv/mshv_root.h`) that
//! userspace can observe.
//!
//! Everything here must stay byte-compatible with the C header, because unmodified VMMs
//! (rust-vmm `mshv-ioctls`, Cloud Hypervisor) talk to the driver through it. Every size and
//! field offset is checked at compile time; the expected numbers were printed by a small C
//! program built with `clang-19` (x86_64) against the 7.3.4 `include/uapi/linux/mshv.h`, and
//! every ioctl number is checked against the value that program printed for the C macro.
//!
//! All structures are plain integers without implicit padding, so they implement both
//! [`FromBytes`] (read with `UserSliceReader::read`) and [`AsBytes`] (written with
//! `UserSliceWriter::write`).
//!
//! C: [`include/uapi/linux/mshv.h`](srctree/include/uapi/linux/mshv.h)

// This is an ABI catalogue: not every definition is used by the driver, and the items are `pub`
// so that they read like the C header even where the module itself is private.
#![allow(dead_code, unreachable_pub)]

use core::mem::{offset_of, size_of};
use kernel::ioctl::{_IO, _IOR, _IOW, _IOWR};
use kernel::transmute::{AsBytes, FromBytes};

/// Ioctl type ("magic") shared by every mshv ioctl (`MSHV_IOCTL`).
pub const MSHV_IOCTL: u32 = 0xB8;

// ---------------------------------------------------------------------------------------------
// /dev/mshv: partition creation
// ---------------------------------------------------------------------------------------------

/// Bit number in [`MshvCreatePartition::pt_flags`]: give the partition a local APIC.
pub const MSHV_PT_BIT_LAPIC: u32 = 0;
/// Bit number in [`MshvCreatePartition::pt_flags`]: make the partition x2APIC capable.
pub const MSHV_PT_BIT_X2APIC: u32 = 1;
/// Bit number in [`MshvCreatePartition::pt_flags`]: allow 2 MiB GPA mappings.
pub const MSHV_PT_BIT_GPA_SUPER_PAGES: u32 = 2;
/// Bit number in [`MshvCreatePartition::pt_flags`]: the argument is a
/// [`MshvCreatePartitionV2`] carrying disabled CPU and XSAVE feature banks.
pub const MSHV_PT_BIT_CPU_AND_XSAVE_FEATURES: u32 = 3;
/// Bit number in [`MshvCreatePartition::pt_flags`]: allow nested virtualization in the guest.
pub const MSHV_PT_BIT_NESTED_VIRTUALIZATION: u32 = 4;
/// Bit number in [`MshvCreatePartition::pt_flags`]: the guest is SMT enabled.
pub const MSHV_PT_BIT_SMT_ENABLED_GUEST: u32 = 5;
/// Number of defined `MSHV_PT_BIT_*` bits.
pub const MSHV_PT_BIT_COUNT: u32 = 6;
/// Mask of all valid bits of [`MshvCreatePartition::pt_flags`] (`MSHV_PT_FLAGS_MASK`).
pub const MSHV_PT_FLAGS_MASK: u64 = (1 << MSHV_PT_BIT_COUNT) - 1;

/// [`MshvCreatePartition::pt_isolation`]: no isolation (the only value Linux 7.3 accepts).
pub const MSHV_PT_ISOLATION_NONE: u64 = 0;
/// Number of defined `MSHV_PT_ISOLATION_*` values; `pt_isolation` must be below it.
pub const MSHV_PT_ISOLATION_COUNT: u64 = 1;

/// Number of processor feature banks in [`MshvCreatePartitionV2`]
/// (`MSHV_NUM_CPU_FEATURES_BANKS`); `pt_num_cpu_fbanks` must equal it.
pub const MSHV_NUM_CPU_FEATURES_BANKS: usize = 2;

/// Argument of [`dev::CREATE_PARTITION`] (`struct mshv_create_partition`, v1).
///
/// This is the size encoded in the ioctl number. When `pt_flags` has
/// `1 << MSHV_PT_BIT_CPU_AND_XSAVE_FEATURES` set, the argument is really a
/// [`MshvCreatePartitionV2`], which starts with the same two fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvCreatePartition {
    /// Bitmask of `1 << MSHV_PT_BIT_*`; bits outside [`MSHV_PT_FLAGS_MASK`] are invalid.
    pub pt_flags: u64,
    /// Isolation type, one of `MSHV_PT_ISOLATION_*`.
    pub pt_isolation: u64,
}

/// Extended argument of [`dev::CREATE_PARTITION`] (`struct mshv_create_partition_v2`).
///
/// Packed in C (`__packed`); all fields happen to sit at natural offsets.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvCreatePartitionV2 {
    /// Same as [`MshvCreatePartition::pt_flags`]; has `MSHV_PT_BIT_CPU_AND_XSAVE_FEATURES` set.
    pub pt_flags: u64,
    /// Same as [`MshvCreatePartition::pt_isolation`].
    pub pt_isolation: u64,
    /// Number of entries in `pt_cpu_fbanks`; must be [`MSHV_NUM_CPU_FEATURES_BANKS`].
    pub pt_num_cpu_fbanks: u16,
    /// Reserved, must be zero.
    pub pt_rsvd: [u8; 6],
    /// Processor feature banks to *disable*, passed as is to the create-partition hypercall.
    pub pt_cpu_fbanks: [u64; MSHV_NUM_CPU_FEATURES_BANKS],
    /// Reserved, must be zero.
    pub pt_rsvd1: [u64; 2],
    /// XSAVE features to disable (x86_64). On arm64 this field is `pt_rsvd2` and must be zero.
    pub pt_disabled_xsave: u64,
}

// ---------------------------------------------------------------------------------------------
// Partition fd
// ---------------------------------------------------------------------------------------------

/// Argument of [`partition::CREATE_VP`] (`struct mshv_create_vp`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvCreateVp {
    /// Index of the new VP; must be below [`MSHV_MAX_VPS`].
    pub vp_index: u32,
}

/// Bit number in [`MshvUserMemRegion::flags`]: the guest may write the region.
pub const MSHV_SET_MEM_BIT_WRITABLE: u32 = 0;
/// Bit number in [`MshvUserMemRegion::flags`]: the guest may execute from the region.
pub const MSHV_SET_MEM_BIT_EXECUTABLE: u32 = 1;
/// Bit number in [`MshvUserMemRegion::flags`]: remove the region instead of adding it.
pub const MSHV_SET_MEM_BIT_UNMAP: u32 = 2;
/// Number of defined `MSHV_SET_MEM_BIT_*` bits.
pub const MSHV_SET_MEM_BIT_COUNT: u32 = 3;
/// Mask of all valid bits of [`MshvUserMemRegion::flags`] (`MSHV_SET_MEM_FLAGS_MASK`).
pub const MSHV_SET_MEM_FLAGS_MASK: u8 = (1 << MSHV_SET_MEM_BIT_COUNT) - 1;

/// The hypervisor's page size (`MSHV_HV_PAGE_SIZE`), 4 KiB.
pub const MSHV_HV_PAGE_SIZE: u64 = 0x1000;

/// Argument of [`partition::SET_GUEST_MEMORY`] (`struct mshv_user_mem_region`).
///
/// Maps (or, with `MSHV_SET_MEM_BIT_UNMAP`, unmaps) VMM memory at guest physical addresses.
/// Regions may not overlap in GPA space; an unmap must match an existing region exactly.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvUserMemRegion {
    /// Size of the region in bytes; non-zero and a multiple of [`MSHV_HV_PAGE_SIZE`].
    pub size: u64,
    /// First guest page frame number of the region.
    pub guest_pfn: u64,
    /// VMM virtual address backing the region; aligned to [`MSHV_HV_PAGE_SIZE`].
    pub userspace_addr: u64,
    /// Bitmask of `1 << MSHV_SET_MEM_BIT_*`.
    pub flags: u8,
    /// Reserved, must be zero.
    pub rsvd: [u8; 7],
}

/// Bit number in [`MshvUserIrqfd::flags`]: remove the irqfd instead of adding it.
pub const MSHV_IRQFD_BIT_DEASSIGN: u32 = 0;
/// Bit number in [`MshvUserIrqfd::flags`]: use `resamplefd` (level-triggered interrupts).
pub const MSHV_IRQFD_BIT_RESAMPLE: u32 = 1;
/// Number of defined `MSHV_IRQFD_BIT_*` bits.
pub const MSHV_IRQFD_BIT_COUNT: u32 = 2;
/// Mask of all valid bits of [`MshvUserIrqfd::flags`] (`MSHV_IRQFD_FLAGS_MASK`).
pub const MSHV_IRQFD_FLAGS_MASK: u32 = (1 << MSHV_IRQFD_BIT_COUNT) - 1;

/// Argument of [`partition::IRQFD`] (`struct mshv_user_irqfd`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvUserIrqfd {
    /// Eventfd that raises the interrupt when signalled.
    pub fd: i32,
    /// Eventfd signalled when a level-triggered interrupt is acknowledged (with
    /// `MSHV_IRQFD_BIT_RESAMPLE`).
    pub resamplefd: i32,
    /// Guest interrupt number, looked up in the MSI routing table.
    pub gsi: u32,
    /// Bitmask of `1 << MSHV_IRQFD_BIT_*`.
    pub flags: u32,
}

/// Bit number in [`MshvUserIoeventfd::flags`]: only signal when the written value matches
/// `datamatch`.
pub const MSHV_IOEVENTFD_BIT_DATAMATCH: u32 = 0;
/// Bit number in [`MshvUserIoeventfd::flags`]: `addr` is an I/O port (not supported by 7.3).
pub const MSHV_IOEVENTFD_BIT_PIO: u32 = 1;
/// Bit number in [`MshvUserIoeventfd::flags`]: remove the ioeventfd instead of adding it.
pub const MSHV_IOEVENTFD_BIT_DEASSIGN: u32 = 2;
/// Number of defined `MSHV_IOEVENTFD_BIT_*` bits.
pub const MSHV_IOEVENTFD_BIT_COUNT: u32 = 3;
/// Mask of all valid bits of [`MshvUserIoeventfd::flags`] (`MSHV_IOEVENTFD_FLAGS_MASK`).
pub const MSHV_IOEVENTFD_FLAGS_MASK: u32 = (1 << MSHV_IOEVENTFD_BIT_COUNT) - 1;

/// Argument of [`partition::IOEVENTFD`] (`struct mshv_user_ioeventfd`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvUserIoeventfd {
    /// Value to match when `MSHV_IOEVENTFD_BIT_DATAMATCH` is set.
    pub datamatch: u64,
    /// Guest physical address (or I/O port with `MSHV_IOEVENTFD_BIT_PIO`).
    pub addr: u64,
    /// Access length: 0 (any), 1, 2, 4 or 8 bytes.
    pub len: u32,
    /// Eventfd to signal.
    pub fd: i32,
    /// Bitmask of `1 << MSHV_IOEVENTFD_BIT_*`.
    pub flags: u32,
    /// Reserved, must be zero.
    pub rsvd: [u8; 4],
}

/// One MSI route of [`partition::SET_MSI_ROUTING`] (`struct mshv_user_irq_entry`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvUserIrqEntry {
    /// Guest interrupt number; must be below [`MSHV_MAX_GUEST_IRQS`].
    pub gsi: u32,
    /// Low 32 bits of the MSI address.
    pub address_lo: u32,
    /// High 32 bits of the MSI address; must be zero.
    pub address_hi: u32,
    /// MSI data.
    pub data: u32,
}

/// Header of the argument of [`partition::SET_MSI_ROUTING`] (`struct mshv_user_irq_table`).
///
/// In memory it is followed by `nr` [`MshvUserIrqEntry`] values (a flexible array in C, not
/// part of this type nor of the size encoded in the ioctl number).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvUserIrqTable {
    /// Number of entries that follow; at most [`MSHV_MAX_GUEST_IRQS`]. Zero clears all routes.
    pub nr: u32,
    /// Reserved, must be zero.
    pub rsvd: u32,
}

/// [`MshvGpapAccessBitmap::access_type`]: report the "accessed" bits.
pub const MSHV_GPAP_ACCESS_TYPE_ACCESSED: u8 = 0;
/// [`MshvGpapAccessBitmap::access_type`]: report the "dirty" bits.
pub const MSHV_GPAP_ACCESS_TYPE_DIRTY: u8 = 1;
/// Number of defined `MSHV_GPAP_ACCESS_TYPE_*` values.
pub const MSHV_GPAP_ACCESS_TYPE_COUNT: u8 = 2;

/// [`MshvGpapAccessBitmap::access_op`]: leave the bits as they are after reading.
pub const MSHV_GPAP_ACCESS_OP_NOOP: u8 = 0;
/// [`MshvGpapAccessBitmap::access_op`]: clear the bits after reading.
pub const MSHV_GPAP_ACCESS_OP_CLEAR: u8 = 1;
/// [`MshvGpapAccessBitmap::access_op`]: set the bits after reading.
pub const MSHV_GPAP_ACCESS_OP_SET: u8 = 2;
/// Number of defined `MSHV_GPAP_ACCESS_OP_*` values.
pub const MSHV_GPAP_ACCESS_OP_COUNT: u8 = 3;

/// Argument of [`partition::GET_GPAP_ACCESS_BITMAP`] (`struct mshv_gpap_access_bitmap`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvGpapAccessBitmap {
    /// Which bit to report, one of `MSHV_GPAP_ACCESS_TYPE_*`.
    pub access_type: u8,
    /// What to do with the bits after reading them, one of `MSHV_GPAP_ACCESS_OP_*`.
    pub access_op: u8,
    /// Reserved, must be zero.
    pub rsvd: [u8; 6],
    /// Number of guest pages; non-zero.
    pub page_count: u64,
    /// First guest page frame number.
    pub gpap_base: u64,
    /// User pointer receiving `(page_count + 7) / 8` bytes of bitmap.
    pub bitmap_ptr: u64,
}

/// Argument of `MSHV_ROOT_HVCALL` on every fd (`struct mshv_root_hvcall`).
///
/// Generic hypercall passthrough; see [`dev::ROOT_HVCALL`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvRootHvcall {
    /// Hypercall code (`HVCALL_*`).
    pub code: u16,
    /// In: rep count. Out: reps completed. Zero for non-rep hypercalls.
    pub reps: u16,
    /// Size of the input, including rep data; at most [`MSHV_HV_PAGE_SIZE`].
    pub in_sz: u16,
    /// Size of the output buffer; at most [`MSHV_HV_PAGE_SIZE`]; zero when `out_ptr` is 0.
    pub out_sz: u16,
    /// In: must be zero. Out: `HV_STATUS_*` of the hypercall.
    pub status: u16,
    /// Reserved, must be zero.
    pub rsvd: [u8; 6],
    /// User pointer to the input (`struct hv_input_*`). On a partition or VP fd the kernel
    /// fills in the leading partition id.
    pub in_ptr: u64,
    /// Optional user pointer to the output buffer.
    pub out_ptr: u64,
}

// ---------------------------------------------------------------------------------------------
// VP fd
// ---------------------------------------------------------------------------------------------

/// Size of the message buffer returned by [`vp::RUN_VP`] (`MSHV_RUN_VP_BUF_SZ`).
pub const MSHV_RUN_VP_BUF_SZ: usize = 256;

/// Page offset (in units of the system page size) for `mmap` of a VP fd: the VP register page.
pub const MSHV_VP_MMAP_OFFSET_REGISTERS: usize = 0;
/// Page offset for `mmap` of a VP fd: the intercept message page.
pub const MSHV_VP_MMAP_OFFSET_INTERCEPT_MESSAGE: usize = 1;
/// Page offset for `mmap` of a VP fd: the GHCB page (SEV-SNP only).
pub const MSHV_VP_MMAP_OFFSET_GHCB: usize = 2;
/// Number of defined `MSHV_VP_MMAP_OFFSET_*` values.
pub const MSHV_VP_MMAP_OFFSET_COUNT: usize = 3;

/// Argument of [`vp::RUN_VP`] (`struct mshv_run_vp`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MshvRunVp {
    /// On success, the intercept message (a `struct hv_message`) that stopped the VP.
    pub msg_buf: [u8; MSHV_RUN_VP_BUF_SZ],
}

impl Default for MshvRunVp {
    fn default() -> Self {
        Self {
            msg_buf: [0; MSHV_RUN_VP_BUF_SZ],
        }
    }
}

/// [`MshvGetSetVpState::type_`]: local interrupt controller (APIC) state.
pub const MSHV_VP_STATE_LAPIC: u8 = 0;
/// [`MshvGetSetVpState::type_`]: XSAVE area in compacted form (x86_64).
pub const MSHV_VP_STATE_XSAVE: u8 = 1;
/// [`MshvGetSetVpState::type_`]: SynIC message page.
pub const MSHV_VP_STATE_SIMP: u8 = 2;
/// [`MshvGetSetVpState::type_`]: SynIC event flags page.
pub const MSHV_VP_STATE_SIEFP: u8 = 3;
/// [`MshvGetSetVpState::type_`]: synthetic timers.
pub const MSHV_VP_STATE_SYNTHETIC_TIMERS: u8 = 4;
/// Number of defined `MSHV_VP_STATE_*` values.
pub const MSHV_VP_STATE_COUNT: u8 = 5;

/// Argument of [`vp::GET_VP_STATE`] and [`vp::SET_VP_STATE`] (`struct mshv_get_set_vp_state`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MshvGetSetVpState {
    /// State to transfer, one of `MSHV_VP_STATE_*` (C name: `type`).
    pub type_: u8,
    /// Reserved, must be zero.
    pub rsvd: [u8; 3],
    /// In: size of the buffer, a non-zero multiple of 4 KiB. Out: size the state needs (also
    /// written back when the call fails with `EINVAL` because the buffer is too small).
    pub buf_sz: u32,
    /// User pointer to the buffer, 4 KiB aligned.
    pub buf_ptr: u64,
}

// ---------------------------------------------------------------------------------------------
// Driver limits visible to userspace
// ---------------------------------------------------------------------------------------------

/// Maximum number of VPs per partition (`MSHV_MAX_VPS` in `drivers/hv/mshv_root.h`).
pub const MSHV_MAX_VPS: u32 = 256;

/// Maximum number of MSI routes and upper bound of GSIs (`MSHV_MAX_GUEST_IRQS` in
/// `drivers/hv/mshv_root.h`).
pub const MSHV_MAX_GUEST_IRQS: u32 = 4096;

// ---------------------------------------------------------------------------------------------
// Ioctl numbers
// ---------------------------------------------------------------------------------------------

/// Ioctls on `/dev/mshv`.
pub mod dev {
    use super::*;

    /// `MSHV_CREATE_PARTITION`: create a partition, returns a partition fd.
    ///
    /// Argument: [`MshvCreatePartition`] or [`MshvCreatePartitionV2`].
    pub const CREATE_PARTITION: u32 = _IOW::<MshvCreatePartition>(MSHV_IOCTL, 0x00);

    /// `MSHV_ROOT_HVCALL`: hypercall passthrough targeting the root partition itself
    /// (`HV_PARTITION_ID_SELF`). Argument: [`MshvRootHvcall`].
    pub const ROOT_HVCALL: u32 = _IOWR::<MshvRootHvcall>(MSHV_IOCTL, 0x07);
}

/// Ioctls on a partition fd.
pub mod partition {
    use super::*;

    /// `MSHV_INITIALIZE_PARTITION`: initialize the partition in the hypervisor. No argument.
    pub const INITIALIZE_PARTITION: u32 = _IO(MSHV_IOCTL, 0x00);

    /// `MSHV_CREATE_VP`: create a VP, returns a VP fd. Argument: [`MshvCreateVp`].
    pub const CREATE_VP: u32 = _IOW::<MshvCreateVp>(MSHV_IOCTL, 0x01);

    /// `MSHV_SET_GUEST_MEMORY`: map or unmap guest memory. Argument: [`MshvUserMemRegion`].
    pub const SET_GUEST_MEMORY: u32 = _IOW::<MshvUserMemRegion>(MSHV_IOCTL, 0x02);

    /// `MSHV_IRQFD`: add or remove an irqfd. Argument: [`MshvUserIrqfd`].
    pub const IRQFD: u32 = _IOW::<MshvUserIrqfd>(MSHV_IOCTL, 0x03);

    /// `MSHV_IOEVENTFD`: add or remove an ioeventfd. Argument: [`MshvUserIoeventfd`].
    pub const IOEVENTFD: u32 = _IOW::<MshvUserIoeventfd>(MSHV_IOCTL, 0x04);

    /// `MSHV_SET_MSI_ROUTING`: replace the MSI routing table.
    ///
    /// Argument: [`MshvUserIrqTable`] followed by its entries.
    pub const SET_MSI_ROUTING: u32 = _IOW::<MshvUserIrqTable>(MSHV_IOCTL, 0x05);

    /// `MSHV_GET_GPAP_ACCESS_BITMAP`: read (and clear or set) accessed/dirty bits.
    ///
    /// Argument: [`MshvGpapAccessBitmap`].
    pub const GET_GPAP_ACCESS_BITMAP: u32 = _IOWR::<MshvGpapAccessBitmap>(MSHV_IOCTL, 0x06);

    /// `MSHV_ROOT_HVCALL`: hypercall passthrough targeting this partition.
    ///
    /// Argument: [`MshvRootHvcall`].
    pub const ROOT_HVCALL: u32 = _IOWR::<MshvRootHvcall>(MSHV_IOCTL, 0x07);
}

/// Ioctls on a VP fd.
pub mod vp {
    use super::*;

    /// `MSHV_RUN_VP`: run the VP until an intercept reaches userspace. Argument: [`MshvRunVp`].
    pub const RUN_VP: u32 = _IOR::<MshvRunVp>(MSHV_IOCTL, 0x00);

    /// `MSHV_GET_VP_STATE`: read a VP state blob. Argument: [`MshvGetSetVpState`].
    pub const GET_VP_STATE: u32 = _IOWR::<MshvGetSetVpState>(MSHV_IOCTL, 0x01);

    /// `MSHV_SET_VP_STATE`: write a VP state blob. Argument: [`MshvGetSetVpState`].
    pub const SET_VP_STATE: u32 = _IOWR::<MshvGetSetVpState>(MSHV_IOCTL, 0x02);

    /// `MSHV_ROOT_HVCALL`: hypercall passthrough targeting the VP's partition.
    ///
    /// Argument: [`MshvRootHvcall`].
    pub const ROOT_HVCALL: u32 = _IOWR::<MshvRootHvcall>(MSHV_IOCTL, 0x07);
}

// Ioctl numbers as printed by the C program for the macros of `include/uapi/linux/mshv.h`.
const _: () = {
    assert!(dev::CREATE_PARTITION == 0x4010_B800);
    assert!(dev::ROOT_HVCALL == 0xC020_B807);
    assert!(partition::INITIALIZE_PARTITION == 0x0000_B800);
    assert!(partition::CREATE_VP == 0x4004_B801);
    assert!(partition::SET_GUEST_MEMORY == 0x4020_B802);
    assert!(partition::IRQFD == 0x4010_B803);
    assert!(partition::IOEVENTFD == 0x4020_B804);
    assert!(partition::SET_MSI_ROUTING == 0x4008_B805);
    assert!(partition::GET_GPAP_ACCESS_BITMAP == 0xC020_B806);
    assert!(partition::ROOT_HVCALL == 0xC020_B807);
    assert!(vp::RUN_VP == 0x8100_B800);
    assert!(vp::GET_VP_STATE == 0xC010_B801);
    assert!(vp::SET_VP_STATE == 0xC010_B802);
    assert!(vp::ROOT_HVCALL == 0xC020_B807);
};

// Flag masks as printed by the C program.
const _: () = {
    assert!(MSHV_PT_FLAGS_MASK == 0x3F);
    assert!(MSHV_SET_MEM_FLAGS_MASK == 0x7);
    assert!(MSHV_IRQFD_FLAGS_MASK == 0x3);
    assert!(MSHV_IOEVENTFD_FLAGS_MASK == 0x7);
};

// ---------------------------------------------------------------------------------------------
// Layout checks: sizes and offsets printed by `clang-19` for the 7.3.4 C header (x86_64).
// ---------------------------------------------------------------------------------------------

const _: () = {
    assert!(size_of::<MshvCreatePartition>() == 16);
    assert!(offset_of!(MshvCreatePartition, pt_flags) == 0);
    assert!(offset_of!(MshvCreatePartition, pt_isolation) == 8);
};

const _: () = {
    assert!(size_of::<MshvCreatePartitionV2>() == 64);
    assert!(offset_of!(MshvCreatePartitionV2, pt_flags) == 0);
    assert!(offset_of!(MshvCreatePartitionV2, pt_isolation) == 8);
    assert!(offset_of!(MshvCreatePartitionV2, pt_num_cpu_fbanks) == 16);
    assert!(offset_of!(MshvCreatePartitionV2, pt_rsvd) == 18);
    assert!(offset_of!(MshvCreatePartitionV2, pt_cpu_fbanks) == 24);
    assert!(offset_of!(MshvCreatePartitionV2, pt_rsvd1) == 40);
    assert!(offset_of!(MshvCreatePartitionV2, pt_disabled_xsave) == 56);
};

const _: () = {
    assert!(size_of::<MshvCreateVp>() == 4);
    assert!(offset_of!(MshvCreateVp, vp_index) == 0);
};

const _: () = {
    assert!(size_of::<MshvUserMemRegion>() == 32);
    assert!(offset_of!(MshvUserMemRegion, size) == 0);
    assert!(offset_of!(MshvUserMemRegion, guest_pfn) == 8);
    assert!(offset_of!(MshvUserMemRegion, userspace_addr) == 16);
    assert!(offset_of!(MshvUserMemRegion, flags) == 24);
    assert!(offset_of!(MshvUserMemRegion, rsvd) == 25);
};

const _: () = {
    assert!(size_of::<MshvUserIrqfd>() == 16);
    assert!(offset_of!(MshvUserIrqfd, fd) == 0);
    assert!(offset_of!(MshvUserIrqfd, resamplefd) == 4);
    assert!(offset_of!(MshvUserIrqfd, gsi) == 8);
    assert!(offset_of!(MshvUserIrqfd, flags) == 12);
};

const _: () = {
    assert!(size_of::<MshvUserIoeventfd>() == 32);
    assert!(offset_of!(MshvUserIoeventfd, datamatch) == 0);
    assert!(offset_of!(MshvUserIoeventfd, addr) == 8);
    assert!(offset_of!(MshvUserIoeventfd, len) == 16);
    assert!(offset_of!(MshvUserIoeventfd, fd) == 20);
    assert!(offset_of!(MshvUserIoeventfd, flags) == 24);
    assert!(offset_of!(MshvUserIoeventfd, rsvd) == 28);
};

const _: () = {
    assert!(size_of::<MshvUserIrqEntry>() == 16);
    assert!(offset_of!(MshvUserIrqEntry, gsi) == 0);
    assert!(offset_of!(MshvUserIrqEntry, address_lo) == 4);
    assert!(offset_of!(MshvUserIrqEntry, address_hi) == 8);
    assert!(offset_of!(MshvUserIrqEntry, data) == 12);
};

const _: () = {
    // The C struct also has `entries[]` at offset 8 (flexible array, not counted in sizeof).
    assert!(size_of::<MshvUserIrqTable>() == 8);
    assert!(offset_of!(MshvUserIrqTable, nr) == 0);
    assert!(offset_of!(MshvUserIrqTable, rsvd) == 4);
};

const _: () = {
    assert!(size_of::<MshvGpapAccessBitmap>() == 32);
    assert!(offset_of!(MshvGpapAccessBitmap, access_type) == 0);
    assert!(offset_of!(MshvGpapAccessBitmap, access_op) == 1);
    assert!(offset_of!(MshvGpapAccessBitmap, rsvd) == 2);
    assert!(offset_of!(MshvGpapAccessBitmap, page_count) == 8);
    assert!(offset_of!(MshvGpapAccessBitmap, gpap_base) == 16);
    assert!(offset_of!(MshvGpapAccessBitmap, bitmap_ptr) == 24);
};

const _: () = {
    assert!(size_of::<MshvRootHvcall>() == 32);
    assert!(offset_of!(MshvRootHvcall, code) == 0);
    assert!(offset_of!(MshvRootHvcall, reps) == 2);
    assert!(offset_of!(MshvRootHvcall, in_sz) == 4);
    assert!(offset_of!(MshvRootHvcall, out_sz) == 6);
    assert!(offset_of!(MshvRootHvcall, status) == 8);
    assert!(offset_of!(MshvRootHvcall, rsvd) == 10);
    assert!(offset_of!(MshvRootHvcall, in_ptr) == 16);
    assert!(offset_of!(MshvRootHvcall, out_ptr) == 24);
};

const _: () = {
    assert!(size_of::<MshvRunVp>() == 256);
    assert!(offset_of!(MshvRunVp, msg_buf) == 0);
};

const _: () = {
    assert!(size_of::<MshvGetSetVpState>() == 16);
    assert!(offset_of!(MshvGetSetVpState, type_) == 0);
    assert!(offset_of!(MshvGetSetVpState, rsvd) == 1);
    assert!(offset_of!(MshvGetSetVpState, buf_sz) == 4);
    assert!(offset_of!(MshvGetSetVpState, buf_ptr) == 8);
};

// ---------------------------------------------------------------------------------------------
// Byte-copy traits. Every type above consists only of integers and integer arrays (any bit
// pattern is a valid value, no interior mutability), and the layout checks above prove that the
// fields tile the whole size, i.e. there is no padding.
// ---------------------------------------------------------------------------------------------

// SAFETY: `MshvCreatePartition` holds only `u64`s; every bit pattern is valid.
unsafe impl FromBytes for MshvCreatePartition {}
// SAFETY: `MshvCreatePartition` has no padding (checked above), so all its bytes are initialised.
unsafe impl AsBytes for MshvCreatePartition {}

// SAFETY: `MshvCreatePartitionV2` holds only integers and integer arrays; every bit pattern is
// valid.
unsafe impl FromBytes for MshvCreatePartitionV2 {}
// SAFETY: `MshvCreatePartitionV2` is packed and its fields cover all 64 bytes (checked above).
unsafe impl AsBytes for MshvCreatePartitionV2 {}

// SAFETY: `MshvCreateVp` holds a single `u32`; every bit pattern is valid.
unsafe impl FromBytes for MshvCreateVp {}
// SAFETY: `MshvCreateVp` is a single `u32`, so it has no padding.
unsafe impl AsBytes for MshvCreateVp {}

// SAFETY: `MshvUserMemRegion` holds only integers and a byte array; every bit pattern is valid.
unsafe impl FromBytes for MshvUserMemRegion {}
// SAFETY: `MshvUserMemRegion` has no padding (the explicit `rsvd` fills bytes 25..32, checked
// above).
unsafe impl AsBytes for MshvUserMemRegion {}

// SAFETY: `MshvUserIrqfd` holds only 32-bit integers; every bit pattern is valid.
unsafe impl FromBytes for MshvUserIrqfd {}
// SAFETY: `MshvUserIrqfd` is four 32-bit integers with no padding (checked above).
unsafe impl AsBytes for MshvUserIrqfd {}

// SAFETY: `MshvUserIoeventfd` holds only integers and a byte array; every bit pattern is valid.
unsafe impl FromBytes for MshvUserIoeventfd {}
// SAFETY: `MshvUserIoeventfd` has no padding (the explicit `rsvd` fills bytes 28..32, checked
// above).
unsafe impl AsBytes for MshvUserIoeventfd {}

// SAFETY: `MshvUserIrqEntry` holds only `u32`s; every bit pattern is valid.
unsafe impl FromBytes for MshvUserIrqEntry {}
// SAFETY: `MshvUserIrqEntry` is four `u32`s with no padding (checked above).
unsafe impl AsBytes for MshvUserIrqEntry {}

// SAFETY: `MshvUserIrqTable` holds only `u32`s; every bit pattern is valid.
unsafe impl FromBytes for MshvUserIrqTable {}
// SAFETY: `MshvUserIrqTable` is two `u32`s with no padding (checked above).
unsafe impl AsBytes for MshvUserIrqTable {}

// SAFETY: `MshvGpapAccessBitmap` holds only integers and a byte array; every bit pattern is
// valid.
unsafe impl FromBytes for MshvGpapAccessBitmap {}
// SAFETY: `MshvGpapAccessBitmap` has no padding (the explicit `rsvd` fills bytes 2..8, checked
// above).
unsafe impl AsBytes for MshvGpapAccessBitmap {}

// SAFETY: `MshvRootHvcall` holds only integers and a byte array; every bit pattern is valid.
unsafe impl FromBytes for MshvRootHvcall {}
// SAFETY: `MshvRootHvcall` has no padding (the explicit `rsvd` fills bytes 10..16, checked
// above).
unsafe impl AsBytes for MshvRootHvcall {}

// SAFETY: `MshvRunVp` is a byte array; every bit pattern is valid.
unsafe impl FromBytes for MshvRunVp {}
// SAFETY: `MshvRunVp` is a byte array, which has no padding.
unsafe impl AsBytes for MshvRunVp {}

// SAFETY: `MshvGetSetVpState` holds only integers and a byte array; every bit pattern is valid.
unsafe impl FromBytes for MshvGetSetVpState {}
// SAFETY: `MshvGetSetVpState` has no padding (the explicit `rsvd` fills bytes 1..4, checked
// above).
unsafe impl AsBytes for MshvGetSetVpState {}
