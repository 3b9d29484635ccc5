// SPDX-License-Identifier: GPL-2.0
//
// Partition set-up as a VMM does it: create with mshv-ioctls' default
// arguments and initialize, map user memory as regions, create VPs.

use mshv_bindings::mshv_user_mem_region;
use mshv_ioctls::{Mshv, VcpuFd, VmFd};

use crate::Error;

/// A partition created the way a VMM does it (mshv-ioctls' `create_vm`:
/// host property hypercalls, CREATE_PARTITION with the v2 argument, early
/// SYNTHETIC_PROC_FEATURES property) and initialized.
///
/// `create_vm` itself unwraps some of its ioctl results, so it can panic on
/// an errno; callers that inject failures catch that around this call.
pub fn create(mshv: &Mshv) -> Result<VmFd, Error> {
    let vm = mshv.create_vm().map_err(|e| Error::new("create_vm", e))?;
    vm.initialize()
        .map_err(|e| Error::new("MSHV_INITIALIZE_PARTITION", e))?;
    Ok(vm)
}

/// Maps `size` bytes of user memory at `uaddr` at guest page `gfn`, with
/// region `flags` (bits `MSHV_SET_MEM_BIT_*`).
pub fn map_user(vm: &VmFd, uaddr: u64, size: u64, gfn: u64, flags: u8) -> Result<(), Error> {
    let region = mshv_user_mem_region {
        size,
        guest_pfn: gfn,
        userspace_addr: uaddr,
        flags,
        ..Default::default()
    };
    vm.map_user_memory(region).map_err(|e| {
        Error::new(
            format!(
                "MSHV_SET_GUEST_MEMORY map gfn {gfn:#x} size {size:#x} uaddr {uaddr:#x} flags {flags:#x}"
            ),
            e,
        )
    })
}

/// Creates VP `index`.
pub fn create_vp(vm: &VmFd, index: u8) -> Result<VcpuFd, Error> {
    vm.create_vcpu(index)
        .map_err(|e| Error::new(format!("create_vcpu({index})"), e))
}
