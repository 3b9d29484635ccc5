// SPDX-License-Identifier: GPL-2.0

//! Guest memory regions: the kinds, the HMM mirror of movable RAM, MMIO
//! regions, and the pure arithmetic they share.

pub(crate) mod geometry;
pub(crate) mod mmio;
pub(crate) mod movable;
pub(crate) mod region;
pub(crate) mod regions;

use crate::hv::Hypervisor;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::sync::{Arc, Mutex, MutexGuard};

/// What every kind of region is made from: where it sits in guest physical
/// and user memory, how the guest may access it, and whose it is. One value
/// is handed to whichever kind `Region::new` picks.
///
/// # Invariants
///
/// As [`region::Region`]'s: `pages > 0`, `start_gfn + pages` does not
/// overflow and `uaddr` is page aligned (checked by `SET_GUEST_MEMORY`).
#[derive(Clone)]
pub(crate) struct RegionSpec {
    /// The hypervisor the partition lives in.
    pub(crate) hv: Arc<dyn Hypervisor>,
    /// The partition's id.
    pub(crate) pt: u64,
    /// First guest frame.
    pub(crate) start_gfn: u64,
    /// Size in 4 KiB pages.
    pub(crate) pages: u64,
    /// The VMM's address of the first page.
    pub(crate) uaddr: u64,
    /// The guest may write.
    pub(crate) writable: bool,
    /// The guest may execute.
    pub(crate) exec: bool,
    /// The partition's counters.
    pub(crate) stats: Arc<Stats>,
}

/// Where a region that follows Linux with an interval notifier (movable
/// and MMIO) is in its life; kept under the region's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// In the partition's region set: faults map, invalidations unmap or
    /// remap NO_ACCESS.
    Live,
    /// Removed, its whole GPA range unmapped: nothing to do any more (the
    /// range may already belong to another region).
    Removed,
    /// Removal failed (the hypervisor refused an unmap): the region is
    /// held until the partition is deleted and its GPA range stays reserved
    /// to it, so invalidations go on unmapping what Linux takes back.
    Kept,
}

/// Counters shared by a partition's regions (see `Partition::stats`).
#[derive(Default)]
pub(crate) struct Stats {
    /// Map and unmap hypercalls issued for the partition's memory.
    pub(crate) hypercalls: AtomicU64,
    /// GPA intercepts handled in the kernel.
    pub(crate) gpa_intercepts: AtomicU64,
    /// 4 KiB entries mapped accessible.
    pub(crate) mapped_4k: AtomicU64,
    /// 2 MiB entries mapped accessible.
    pub(crate) mapped_2m: AtomicU64,
    /// Invalidation callbacks that touched a region.
    pub(crate) invalidations: AtomicU64,
    /// Non-blockable invalidations refused because the lock was busy.
    pub(crate) invalidations_busy: AtomicU64,
    /// Fault attempts restarted because an invalidation raced.
    pub(crate) fault_retries: AtomicU64,
    /// Deposit rounds forced by INSUFFICIENT_MEMORY in the fault path.
    pub(crate) deposit_retries: AtomicU64,
    /// Remaps that failed inside an invalidation (then unmapped instead).
    pub(crate) invalidate_failures: AtomicU64,
    /// `HVMSG_UNMAPPED_GPA` messages inside a movable region (left unmapped
    /// by a failed remap) resolved by a fault instead of reaching the VMM.
    pub(crate) unmapped_refaults: AtomicU64,
    /// 4 KiB pages remapped NO_ACCESS by invalidations (after widening to
    /// whole large entries).
    pub(crate) remapped_4k: AtomicU64,
    /// Nanoseconds spent in the fault path (GPA intercept to mapped or
    /// forwarded), summed over all intercepts.
    pub(crate) fault_ns: AtomicU64,
    /// Guest writes completed by the hypervisor as doorbells that signalled
    /// an ioeventfd (no exit to the VMM).
    pub(crate) doorbells: AtomicU64,
}

impl Stats {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Takes a region's state lock for an MMU-notifier invalidation: waits for
/// it when the invalidation may sleep (`blockable`), else only tries. `None`
/// when busy, counted in `invalidations_busy`: the callback then answers
/// that it cannot invalidate now (the notifier's `-EAGAIN` to a caller that
/// may not sleep, such as the OOM reaper).
pub(crate) fn lock_for_invalidation<'a, T>(
    state: &'a Mutex<T>,
    blockable: bool,
    stats: &Stats,
) -> Option<MutexGuard<'a, T>> {
    if blockable {
        return Some(state.lock());
    }
    let guard = state.try_lock();
    if guard.is_none() {
        Stats::add(&stats.invalidations_busy, 1);
    }
    guard
}
