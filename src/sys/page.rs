// SPDX-License-Identifier: GPL-2.0

//! Host pages by page frame number.

use super::ffi;
use kernel::{ffi::c_void, prelude::*};

/// A zeroed host page owned by the holder, identified by its pfn.
///
/// # Invariants
///
/// `pfn` was returned by `mshv_rs_alloc_pfn` (or is a page of a split run
/// from `mshv_rs_alloc_pfns`) and is freed exactly once, on drop
/// (or handed over with [`OwnedPage::into_pfn`]).
pub(crate) struct OwnedPage {
    pfn: u64,
}

impl OwnedPage {
    /// Allocates a zeroed page charged to the caller's memory cgroup (the
    /// emulator's and the tests' pages; deposits use [`OwnedPage::new_run`]).
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: plain allocation; GFP_KERNEL_ACCOUNT may sleep, which callers
        // of this constructor allow (never under a region or SLAT lock).
        let pfn = unsafe { ffi::mshv_rs_alloc_pfn(kernel::bindings::GFP_KERNEL_ACCOUNT) };
        if pfn == 0 {
            return Err(ENOMEM);
        }
        // INVARIANT: `pfn` is a fresh allocation.
        Ok(Self { pfn })
    }

    /// Allocates `1 << order` physically contiguous zeroed pages (the
    /// first naturally aligned), charged to the caller's memory cgroup, and
    /// appends them to `out`, each owned on its own. A higher order that is
    /// not available fails at once (`ENOMEM`, no warning): the caller tries
    /// a lower one. May sleep.
    pub(crate) fn new_run(order: u32, out: &mut KVec<OwnedPage>) -> Result {
        let n = 1usize << order;
        out.reserve(n, GFP_KERNEL)?;
        // SAFETY: plain allocation; GFP_KERNEL_ACCOUNT may sleep, which the
        // callers allow.
        let first = unsafe { ffi::mshv_rs_alloc_pfns(kernel::bindings::GFP_KERNEL_ACCOUNT, order) };
        if first == 0 {
            return Err(ENOMEM);
        }
        for pfn in first..first + n as u64 {
            // INVARIANT: the run was split: each page is a fresh allocation
            // of its own. Cannot fail: the room was reserved above.
            let _ = out.push_within_capacity(Self { pfn });
        }
        Ok(())
    }

    /// The page's address in the direct map (4 KiB, owned by `self`).
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        // SAFETY: the page is ours and lowmem (x86_64 has no highmem).
        unsafe { ffi::mshv_rs_pfn_to_virt(self.pfn) }.cast()
    }

    /// The page's frame number.
    pub(crate) fn pfn(&self) -> u64 {
        self.pfn
    }

    /// Gives up ownership (for example to a hypervisor pool); the receiver
    /// must eventually pass the pfn to [`OwnedPage::from_pfn`].
    pub(crate) fn into_pfn(self) -> u64 {
        let pfn = self.pfn;
        core::mem::forget(self);
        pfn
    }

    /// Takes back ownership of a page given up with [`OwnedPage::into_pfn`].
    ///
    /// # Safety
    ///
    /// `pfn` must come from [`OwnedPage::into_pfn`] and not be owned by
    /// anything else any more.
    pub(crate) unsafe fn from_pfn(pfn: u64) -> Self {
        // INVARIANT: by the safety contract, ownership comes back to us.
        Self { pfn }
    }
}

/// Host page `pfn` as 512 `u64`s in the direct map (x86_64: every page).
///
/// # Safety
///
/// `pfn` must be a valid page frame; the caller is responsible for the
/// page staying allocated while it uses the pointer.
#[cfg(CONFIG_MSHV_RS_EMULATOR)]
pub(crate) unsafe fn direct_map_u64s(pfn: u64) -> *mut [u64; 512] {
    // SAFETY: `pfn` is a valid page frame (contract); `page_address` only
    // computes its direct-map address.
    unsafe { ffi::mshv_rs_pfn_to_virt(pfn) }.cast()
}

impl Drop for OwnedPage {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own the page and free it once.
        unsafe { ffi::mshv_rs_free_pfn(self.pfn) };
    }
}

/// Copies `buf.len()` bytes from offset `off` of host page `pfn`.
///
/// # Safety
///
/// `pfn` must be a valid page that stays allocated for the duration of the
/// call (the caller holds whatever keeps it so, e.g. the SLAT lock that
/// invalidation must take first), and `off + buf.len() <= 4096`.
pub(crate) unsafe fn read(pfn: u64, off: usize, buf: &mut [u8]) {
    // SAFETY: per the function's contract; `buf` is valid for writes of its length.
    unsafe {
        ffi::mshv_rs_pfn_read(
            pfn,
            off as u32,
            buf.as_mut_ptr().cast::<c_void>(),
            buf.len() as u32,
        )
    }
}

/// Copies `data` to offset `off` of host page `pfn`.
///
/// # Safety
///
/// As for [`read`].
#[cfg(CONFIG_MSHV_RS_EMULATOR)]
pub(crate) unsafe fn write(pfn: u64, off: usize, data: &[u8]) {
    // SAFETY: per the function's contract; `data` is valid for reads of its length.
    unsafe {
        ffi::mshv_rs_pfn_write(
            pfn,
            off as u32,
            data.as_ptr().cast::<c_void>(),
            data.len() as u32,
        )
    }
}

/// Gives other tasks a chance to run (`cond_resched`).
pub(crate) fn cond_resched() {
    // SAFETY: callable from any sleepable context; callers never hold spinlocks.
    unsafe { ffi::mshv_rs_cond_resched() }
}

/// Whether the current task has a signal pending.
pub(crate) fn signal_pending() -> bool {
    kernel::current!().signal_pending()
}

/// Whether the current task has a fatal signal pending.
pub(crate) fn fatal_signal_pending() -> bool {
    // SAFETY: reads the current task's state.
    unsafe { ffi::mshv_rs_fatal_signal_pending() }
}
