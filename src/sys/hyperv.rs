// SPDX-License-Identifier: GPL-2.0

//! The real side of the seam ([`crate::tlfs::seam`]): Hyper-V itself, through
//! the kernel's hypercall pages, synthetic MSRs and `hv_setup_mshv_handler`.
//! The C half is `src/sys/hyperv.c`. Built only with `CONFIG_HYPERV`.

use super::ffi;
use crate::tlfs::seam::{Identity, Seam, SynicHandler};
use kernel::{ffi::c_void, prelude::*};

/// Hyper-V below the driver.
///
/// # Invariants
///
/// The per-CPU dispatch pages are allocated for as long as it lives.
pub(crate) struct RealSeam(());

impl RealSeam {
    /// The seam, if Linux runs as a Hyper-V root partition.
    pub(crate) fn new() -> Result<Self> {
        if !Self::is_root() {
            return Err(ENODEV);
        }
        // SAFETY: allocates module-private per-CPU pages; freed in `drop`.
        let r = unsafe { ffi::mshv_rs_hv_dispatch_init() };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        // INVARIANT: the pages are allocated.
        Ok(Self(()))
    }

    /// Whether this kernel runs as a Hyper-V root partition.
    pub(crate) fn is_root() -> bool {
        // SAFETY: reads a boot-time flag.
        unsafe { ffi::mshv_rs_hv_is_root() }
    }
}

impl Drop for RealSeam {
    fn drop(&mut self) {
        // SAFETY: no dispatch runs any more: the backend above is gone.
        unsafe { ffi::mshv_rs_hv_dispatch_exit() }
    }
}

impl Seam for RealSeam {
    fn hypercall(&self, control: u64, input: &[u8], output: &mut [u8]) -> u64 {
        // SAFETY: the slices are valid for their lengths; the helper checks
        // both against the page size.
        unsafe {
            ffi::mshv_rs_hv_hypercall(
                control,
                input.as_ptr().cast::<c_void>(),
                input.len(),
                output.as_mut_ptr().cast::<c_void>(),
                output.len(),
            )
        }
    }

    fn dispatch(&self, control: u64, input: &[u8], output: &mut [u8]) -> u64 {
        // SAFETY: as above; by the type invariant the dispatch pages exist.
        unsafe {
            ffi::mshv_rs_hv_dispatch(
                control,
                input.as_ptr().cast::<c_void>(),
                input.len(),
                output.as_mut_ptr().cast::<c_void>(),
                output.len(),
            )
        }
    }

    fn fast_hypercall8(&self, code: u16, input: u64) -> u64 {
        // SAFETY: a register-only hypercall.
        unsafe { ffi::mshv_rs_hv_fast8(code, input) }
    }

    fn read_msr(&self, msr: u32) -> u64 {
        // SAFETY: the callers read only SynIC MSRs of their own CPU.
        unsafe { ffi::mshv_rs_hv_read_msr(msr) }
    }

    fn write_msr(&self, msr: u32, value: u64) {
        // SAFETY: the callers write only SynIC MSRs of their own CPU, with
        // values built from what they read.
        unsafe { ffi::mshv_rs_hv_write_msr(msr, value) }
    }

    fn set_handler(&self, handler: Option<SynicHandler>) {
        // SAFETY: the handler is module text; the driver removes it (and
        // waits for an RCU grace period) before unloading.
        unsafe { ffi::mshv_rs_hv_set_handler(handler) }
    }

    fn identity(&self) -> Identity {
        let mut id = ffi::HvIdentity::default();
        // SAFETY: `id` is a valid, writable struct of the C layout.
        unsafe { ffi::mshv_rs_hv_identity(&mut id) };
        Identity {
            root: id.root,
            partition_id: id.partition_id,
            kdump: id.kdump,
            vmbus: id.vmbus,
            build: id.build,
            vector: id.vector,
            auto_eoi: id.auto_eoi,
        }
    }
}
