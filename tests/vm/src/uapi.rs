// SPDX-License-Identifier: GPL-2.0
//
// Hand-built copies of the 7.3 uapi structs (include/uapi/linux/mshv.h) for the
// raw ioctls of the negative tests, with their ioctl numbers checked at
// compile time against the _IOC encoding and the structs' sizes.

use std::mem::size_of;

pub const MSHV_IOCTL: u64 = 0xB8;

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (MSHV_IOCTL << 8) | nr
}

/// `struct mshv_create_partition` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct CreatePartition {
    pub pt_flags: u64,
    pub pt_isolation: u64,
}

/// `struct mshv_create_partition_v2` (64 bytes, __packed); the kernel reads
/// it whole when `pt_flags` has `MSHV_PT_BIT_CPU_AND_XSAVE_FEATURES`.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub struct CreatePartitionV2 {
    pub pt_flags: u64,
    pub pt_isolation: u64,
    pub pt_num_cpu_fbanks: u16,
    pub pt_rsvd: [u8; 6],
    pub pt_cpu_fbanks: [u64; 2],
    pub pt_rsvd1: [u64; 2],
    pub pt_disabled_xsave: u64,
}

/// `struct mshv_create_vp`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct CreateVp {
    pub vp_index: u32,
}

/// `struct mshv_user_mem_region` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct UserMemRegion {
    pub size: u64,
    pub guest_pfn: u64,
    pub userspace_addr: u64,
    pub flags: u8,
    pub rsvd: [u8; 7],
}

/// `struct mshv_root_hvcall` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct RootHvcall {
    pub code: u16,
    pub reps: u16,
    pub in_sz: u16,
    pub out_sz: u16,
    pub status: u16,
    pub rsvd: [u8; 6],
    pub in_ptr: u64,
    pub out_ptr: u64,
}

const _: () = assert!(size_of::<CreatePartition>() == 16);
const _: () = assert!(size_of::<CreatePartitionV2>() == 64);
const _: () = assert!(size_of::<CreateVp>() == 4);
const _: () = assert!(size_of::<UserMemRegion>() == 32);
const _: () = assert!(size_of::<RootHvcall>() == 32);

/// /dev/mshv: `_IOW(0xB8, 0x00, struct mshv_create_partition)`.
pub const MSHV_CREATE_PARTITION: u64 = 0x4010_B800;
/// /dev/mshv, partition and VP fds: `_IOWR(0xB8, 0x07, struct mshv_root_hvcall)`.
pub const MSHV_ROOT_HVCALL: u64 = 0xC020_B807;
/// Partition fd: `_IO(0xB8, 0x00)`.
pub const MSHV_INITIALIZE_PARTITION: u64 = 0x0000_B800;
/// Partition fd: `_IOW(0xB8, 0x01, struct mshv_create_vp)`.
pub const MSHV_CREATE_VP: u64 = 0x4004_B801;
/// Partition fd: `_IOW(0xB8, 0x02, struct mshv_user_mem_region)`.
pub const MSHV_SET_GUEST_MEMORY: u64 = 0x4020_B802;
/// VP fd: `_IOR(0xB8, 0x00, struct mshv_run_vp)` (256-byte message).
pub const MSHV_RUN_VP: u64 = 0x8100_B800;

const _: () = assert!(MSHV_CREATE_PARTITION == ioc(IOC_WRITE, 0, size_of::<CreatePartition>()));
const _: () = assert!(MSHV_ROOT_HVCALL == ioc(IOC_READ | IOC_WRITE, 7, size_of::<RootHvcall>()));
const _: () = assert!(MSHV_INITIALIZE_PARTITION == ioc(0, 0, 0));
const _: () = assert!(MSHV_CREATE_VP == ioc(IOC_WRITE, 1, size_of::<CreateVp>()));
const _: () = assert!(MSHV_SET_GUEST_MEMORY == ioc(IOC_WRITE, 2, size_of::<UserMemRegion>()));
const _: () = assert!(MSHV_RUN_VP == ioc(IOC_READ, 0, 256));

// enum MSHV_PT_BIT_*
pub const MSHV_PT_BIT_LAPIC: u64 = 0;
pub const MSHV_PT_BIT_CPU_AND_XSAVE_FEATURES: u64 = 3;
pub const MSHV_PT_BIT_COUNT: u64 = 6;
pub const MSHV_NUM_CPU_FEATURES_BANKS: u16 = 2;

// enum MSHV_SET_MEM_BIT_*
pub const MEM_WRITABLE: u8 = 1 << 0;
pub const MEM_EXECUTABLE: u8 = 1 << 1;
pub const MEM_UNMAP: u8 = 1 << 2;
pub const MEM_RWX: u8 = MEM_WRITABLE | MEM_EXECUTABLE;

// Hypercall codes (include/hyperv/hvgdk_mini.h).
pub const HVCALL_CREATE_PARTITION: u16 = 0x0040;
pub const HVCALL_GET_PARTITION_PROPERTY: u16 = 0x0044;
pub const HVCALL_SET_PARTITION_PROPERTY: u16 = 0x0045;
pub const HVCALL_SET_VP_REGISTERS: u16 = 0x0051;

/// Checks the numbers above against the ones mshv-ioctls issues.
pub fn crate_numbers_match() -> Result<(), String> {
    let pairs = [
        (
            "MSHV_CREATE_PARTITION",
            MSHV_CREATE_PARTITION,
            mshv_ioctls::MSHV_CREATE_PARTITION() as u64,
        ),
        (
            "MSHV_ROOT_HVCALL",
            MSHV_ROOT_HVCALL,
            mshv_ioctls::MSHV_ROOT_HVCALL() as u64,
        ),
        (
            "MSHV_INITIALIZE_PARTITION",
            MSHV_INITIALIZE_PARTITION,
            mshv_ioctls::MSHV_INITIALIZE_PARTITION() as u64,
        ),
        (
            "MSHV_CREATE_VP",
            MSHV_CREATE_VP,
            mshv_ioctls::MSHV_CREATE_VP() as u64,
        ),
        (
            "MSHV_SET_GUEST_MEMORY",
            MSHV_SET_GUEST_MEMORY,
            mshv_ioctls::MSHV_SET_GUEST_MEMORY() as u64,
        ),
        (
            "MSHV_RUN_VP",
            MSHV_RUN_VP,
            mshv_ioctls::MSHV_RUN_VP() as u64,
        ),
    ];
    for (name, ours, theirs) in pairs {
        if ours != theirs {
            return Err(format!("{name}: ours {ours:#x}, mshv-ioctls {theirs:#x}"));
        }
    }
    Ok(())
}
