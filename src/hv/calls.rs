// SPDX-License-Identifier: GPL-2.0

//! The caller's side of hypercalls, shared by both backends: batching to one
//! input page, deposit-and-retry, and withdrawing a partition's pool.
//!
//! Locking rule (docs/design.md, invariant 5): [`deposit`] allocates with
//! `GFP_KERNEL`, so [`retry_with_deposit`] must never run under a lock that an
//! MMU-notifier invalidation takes. Code under such a lock calls the raw
//! batch functions and, on `INSUFFICIENT_MEMORY`, drops the lock, deposits and
//! starts over.

use super::{abi, status, HvError, HvResult, Hypervisor, RepError};
use crate::{
    stats,
    sys::page::OwnedPage,
    sys::trace,
    tlfs::{pages_of_reps, reps_per_page},
};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

/// Pages deposited into a child partition when a map call runs short
/// (upstream's `HV_MAP_GPA_DEPOSIT_PAGES`).
pub(crate) const MAP_DEPOSIT_PAGES: usize = 256;
/// Upper bound on deposit-and-retry rounds for one operation.
pub(crate) const MAX_DEPOSIT_ROUNDS: usize = 64;
/// Map reps per input page: 24-byte header, 8-byte pfns.
pub(crate) const MAP_BATCH: usize = reps_per_page(24, 8);
/// Unmap reps per call (no list; upstream's `HV_UMAP_GPA_PAGES`).
pub(crate) const UNMAP_BATCH: usize = 512;
/// Attempts of one unmap call (resumed after its completed reps) before the
/// failure is returned. Unmapping is how the driver takes a page from the
/// guest, so a transient failure is retried rather than leaving the entry.
pub(crate) const UNMAP_TRIES: usize = 3;
/// Deposit pfns per input page: 8-byte header.
pub(crate) const DEPOSIT_BATCH: usize = reps_per_page(8, 8);

/// The order of the block to try first for `want` (> 0) more deposit
/// pages: the highest whose block does not exceed `want`, as upstream's
/// `hv_call_deposit_pages` allocates (so a `*_CONTIGUOUS_*` shortage of 8
/// pages gets one 8-page block when memory allows).
pub(crate) const fn deposit_order(want: usize) -> u32 {
    if want <= 1 {
        0
    } else {
        usize::BITS - 1 - want.leading_zeros()
    }
}

/// Allocates `pages` zeroed pages (charged to the caller's memory cgroup),
/// in blocks of the highest order that succeeds (see [`deposit_order`]),
/// and deposits them into partition `pt`. Sleeps; never call under a region
/// lock. Reschedules between batches and stops with `EINTR` on a fatal
/// signal. Pages already deposited stay with the partition, whose teardown
/// withdraws them: those of earlier batches, and those of the reps a failed
/// batch completed (Hyper-V deposits in order and stops at the first page
/// it refuses).
pub(crate) fn deposit(hv: &dyn Hypervisor, pt: u64, pages: usize) -> Result {
    let mut left = pages;
    while left > 0 {
        if crate::sys::page::fatal_signal_pending() {
            return Err(EINTR);
        }
        let n = left.min(DEPOSIT_BATCH);
        let mut owned = KVec::with_capacity(n, GFP_KERNEL)?;
        while owned.len() < n {
            let mut order = deposit_order(n - owned.len());
            while let Err(e) = OwnedPage::new_run(order, &mut owned) {
                if order == 0 {
                    return Err(e);
                }
                order -= 1;
            }
        }
        let mut pfns = KVec::with_capacity(n, GFP_KERNEL)?;
        for page in owned.iter() {
            pfns.push(page.pfn(), GFP_KERNEL)?;
        }
        let result = hv.deposit(pt, &pfns);
        // The hypervisor owns the pages of the reps it completed, all of
        // them on success; the ones it refused or never reached are still
        // ours and are freed here.
        let taken = match result {
            Ok(()) => n,
            Err(e) => e.done.min(n),
        };
        owned.truncate(taken);
        for page in owned.drain_all() {
            let _ = page.into_pfn();
        }
        if pt != abi::HV_PARTITION_ID_SELF {
            stats::live_add(stats::Live::DepositedPages, taken as i64);
        }
        result.map_err(|e| e.error)?;
        left -= n;
        crate::sys::page::cond_resched();
    }
    Ok(())
}

/// Withdraws every free page of partition `pt`'s pool and frees it. Returns
/// how many pages came back.
pub(crate) fn withdraw_all(hv: &dyn Hypervisor, pt: u64) -> usize {
    let mut out = [0u64; 512];
    let mut total = 0;
    loop {
        match hv.withdraw(pt, &mut out) {
            Ok(0) | Err(_) => return total,
            Ok(n) => {
                for &pfn in out.iter().take(n) {
                    // SAFETY: the hypervisor returned a page the driver
                    // deposited with `OwnedPage::into_pfn`.
                    drop(unsafe { OwnedPage::from_pfn(pfn) });
                }
                total += n;
                if pt != abi::HV_PARTITION_ID_SELF {
                    stats::live_add(stats::Live::DepositedPages, -(n as i64));
                }
                crate::sys::page::cond_resched();
            }
        }
    }
}

/// Runs `op` and, while it fails asking for memory, deposits (into `pt`, or
/// into the root for the `*_ROOT_MEMORY` statuses) and retries, at most
/// [`MAX_DEPOSIT_ROUNDS`] times. Sleeps; never call under a region lock.
pub(crate) fn retry_with_deposit<T>(
    hv: &dyn Hypervisor,
    pt: u64,
    mut op: impl FnMut() -> HvResult<T>,
) -> Result<T> {
    for _ in 0..MAX_DEPOSIT_ROUNDS {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if e.needs_memory() => {
                let need = status::deposit_pages(e.0).unwrap_or(1);
                // The root's own shortage is met a few pages at a time, as
                // upstream's hv_deposit_memory does (1, or 8 contiguous); a
                // child gets a batch, so a run of maps does not stop at
                // every page.
                let (target, pages) = match e.0 {
                    status::INSUFFICIENT_ROOT_MEMORY
                    | status::INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY => {
                        (abi::HV_PARTITION_ID_SELF, need)
                    }
                    // One contiguous block, as upstream deposits it.
                    status::INSUFFICIENT_CONTIGUOUS_MEMORY => (pt, need),
                    _ => (pt, need.max(MAP_DEPOSIT_PAGES)),
                };
                deposit(hv, target, pages)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ENOMEM)
}

/// Maps `pfns` (one per rep; 2 MiB reps if `flags` has LARGE) at `gfn` in
/// batches of one input page. On failure, reports how many *reps* completed.
/// Does not sleep or allocate.
pub(crate) fn map_batched(
    hv: &dyn Hypervisor,
    pt: u64,
    gfn: u64,
    flags: u32,
    pfns: &[u64],
    calls: &AtomicU64,
) -> Result<(), RepError> {
    let large = flags & abi::HV_MAP_GPA_LARGE_PAGE != 0;
    let mut done = 0usize;
    for chunk in pfns.chunks(MAP_BATCH) {
        let base = gfn.wrapping_add(pages_of_reps(done as u64, large));
        calls.fetch_add(1, Ordering::Relaxed);
        hv.map_gpa_pages(pt, base, flags, chunk).map_err(|e| {
            trace::hvcall_failure(abi::HVCALL_MAP_GPA_PAGES, pt, base, e.error.0);
            RepError {
                done: done + e.done,
                error: e.error,
            }
        })?;
        done += chunk.len();
    }
    Ok(())
}

/// A page of zero pfns for NO_ACCESS maps (the list is ignored, but sent).
static ZERO_PFNS: [u64; 512] = [0; 512];

/// Issues `reps` reps at `gfn` in calls of at most `batch` reps; `call(gfn, n)`
/// issues one. Reps are 2 MiB if `large`. Counts the calls in `calls`.
fn batched(
    gfn: u64,
    reps: u64,
    large: bool,
    batch: usize,
    calls: &AtomicU64,
    mut call: impl FnMut(u64, usize) -> Result<(), RepError>,
) -> Result<(), RepError> {
    let mut done = 0u64;
    while done < reps {
        let n = (reps - done).min(batch as u64) as usize;
        calls.fetch_add(1, Ordering::Relaxed);
        let base = gfn.wrapping_add(pages_of_reps(done, large));
        call(base, n).map_err(|e| RepError {
            done: done as usize + e.done,
            error: e.error,
        })?;
        done += n as u64;
    }
    Ok(())
}

/// Remaps `reps` reps at `gfn` with no access (2 MiB reps if `large`).
/// Does not sleep or allocate.
pub(crate) fn map_no_access(
    hv: &dyn Hypervisor,
    pt: u64,
    gfn: u64,
    reps: u64,
    large: bool,
    calls: &AtomicU64,
) -> Result<(), RepError> {
    let flags = abi::HV_MAP_GPA_NO_ACCESS | if large { abi::HV_MAP_GPA_LARGE_PAGE } else { 0 };
    batched(gfn, reps, large, MAP_BATCH, calls, |gfn, n| {
        hv.map_gpa_pages(pt, gfn, flags, ZERO_PFNS.get(..n).unwrap_or(&[]))
            .inspect_err(|e| trace::hvcall_failure(abi::HVCALL_MAP_GPA_PAGES, pt, gfn, e.error.0))
    })
}

/// Unmaps `reps` reps at `gfn` (2 MiB reps if `large`). A failed call is
/// resumed after its completed reps, [`UNMAP_TRIES`] attempts in all. Does
/// not sleep or allocate.
pub(crate) fn unmap_batched(
    hv: &dyn Hypervisor,
    pt: u64,
    gfn: u64,
    reps: u64,
    large: bool,
    calls: &AtomicU64,
) -> Result<(), RepError> {
    let flags = if large {
        abi::HV_UNMAP_GPA_LARGE_PAGE
    } else {
        0
    };
    batched(gfn, reps, large, UNMAP_BATCH, calls, |gfn, n| {
        let mut done = 0;
        for attempt in 1.. {
            let base = gfn.wrapping_add(pages_of_reps(done as u64, large));
            let Err(e) = hv.unmap_gpa_pages(pt, base, n - done, flags) else {
                break;
            };
            trace::hvcall_failure(abi::HVCALL_UNMAP_GPA_PAGES, pt, base, e.error.0);
            done += e.done;
            if attempt >= UNMAP_TRIES || done >= n {
                return Err(RepError {
                    done,
                    error: e.error,
                });
            }
            calls.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
}

/// Converts a [`RepError`] into the status it carries.
impl From<RepError> for HvError {
    fn from(e: RepError) -> HvError {
        e.error
    }
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_hv_calls)]
mod tests {
    use super::*;

    #[test]
    fn deposit_order_edges() {
        // The largest block that does not exceed what is still wanted.
        for (want, order) in [
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 1),
            (7, 2),
            (8, 3),
            (9, 3),
            (255, 7),
            (256, 8),
            (DEPOSIT_BATCH, 8),
            (usize::MAX, usize::BITS - 1),
        ] {
            assert_eq!((want, deposit_order(want)), (want, order));
        }
        // A request is covered by blocks of falling orders with no overshoot:
        // 511 = 256 + 128 + 64 + 32 + 16 + 8 + 4 + 2 + 1.
        let (mut left, mut blocks) = (DEPOSIT_BATCH, KVec::new());
        while left > 0 {
            let o = deposit_order(left);
            let _ = blocks.push(o, GFP_KERNEL);
            left -= 1 << o;
        }
        assert_eq!(&blocks[..], &[8, 7, 6, 5, 4, 3, 2, 1, 0]);
    }
}
