// SPDX-License-Identifier: GPL-2.0

//! The mirror checker (`backend=sim`): compares the simulated hypervisor's
//! SLAT with what backs each region now (docs/design.md, invariants 1 and 2).
//! One of the emulator's side channels (`partitions/<id>/mirror_check`): it
//! reads the model (regions, the emulator's SLAT, Linux's page tables) and
//! changes nothing.
//!
//! - Movable: every accessible entry maps the pfn the VMM's page tables map
//!   at the corresponding address *now* (a non-faulting lookup), and every
//!   writable entry maps a page Linux knows is dirty (guest writes bypass
//!   the VMM's PTE dirty bit; a clean page could be dropped by reclaim).
//! - Pinned: every accessible entry maps the page the region pinned there.
//! - MMIO: every accessible entry maps the pfn the VMM's `VM_PFNMAP` pte
//!   maps at the corresponding address now (looked up like movable pages).
//!
//! A movable region is checked without holding its lock across the VMM
//! page-table lookups: those may take locks (a hugetlb VMA's lock, for one)
//! that an unmapper holds while its invalidation waits for the region lock.
//! The checker reads the notifier sequence, looks the VMM's pages up under
//! the mmap lock alone, then takes the region lock and compares only if no
//! invalidation ran meanwhile (else it starts over, at most
//! [`CHECK_TRIES`] times), the pattern of the fault path itself.

use crate::mem::region::{Region, RegionKind};
use crate::{mem::regions::RegionSet, sim::Sim, tlfs::HV_PAGE_SHIFT};
use kernel::prelude::*;

/// What a check found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// 4 KiB pages of accessible entries compared.
    pub(crate) checked: u64,
    /// Pages whose entry maps the wrong pfn.
    pub(crate) violations: u64,
}

/// One accessible SLAT entry: first gfn, first pfn, 2 MiB or not.
type Entry = (u64, u64, bool, bool);

/// Attempts at a consistent snapshot of a movable region before giving up
/// with `EBUSY` (invalidations kept racing the check).
const CHECK_TRIES: usize = 16;

/// Checks every region of partition `pt`.
pub(crate) fn check_partition(sim: &Sim, pt: u64, regions: &RegionSet) -> Result<Report> {
    let mut report = Report::default();
    for r in regions.snapshot()? {
        check_region(sim, pt, &r, &mut report)?;
    }
    Ok(report)
}

/// Collects the accessible entries of `r`'s GPA range; `entries` has room
/// for one per page, so nothing allocates under the simulator's spinlock.
fn collect(sim: &Sim, pt: u64, r: &Region, entries: &mut KVVec<Entry>) -> Result {
    entries.clear();
    let mut overflow = false;
    sim.for_each_gpa_entry(
        pt,
        r.spec.start_gfn,
        r.spec.pages,
        |gfn, pfn, accessible, large, writable| {
            if accessible {
                overflow |= entries
                    .push_within_capacity((gfn, pfn, large, writable))
                    .is_err();
            }
        },
    )?;
    if overflow {
        return Err(EOVERFLOW);
    }
    Ok(())
}

/// Calls `f(offset, pfn, writable)` for every 4 KiB page of `entries` that
/// lies in `r` (offset in pages from the region's start).
fn pages_of(r: &Region, entries: &[Entry], mut f: impl FnMut(u64, u64, bool)) {
    for &(gfn, pfn, large, writable) in entries {
        let n = if large {
            crate::mem::geometry::LARGE_PAGES
        } else {
            1
        };
        for i in 0..n {
            if let Some(off) = (gfn + i)
                .checked_sub(r.spec.start_gfn)
                .filter(|&o| o < r.spec.pages)
            {
                f(off, pfn + i, writable);
            }
        }
    }
}

/// Compares every page of `entries` with `expected(offset)`, the pfn that
/// should back it (called in [`pages_of`] order); with `dirty_required`, a
/// writable entry must also map a page Linux sees dirty.
fn compare(
    r: &Region,
    entries: &[Entry],
    report: &mut Report,
    dirty_required: bool,
    mut expected: impl FnMut(u64) -> Option<u64>,
) {
    pages_of(r, entries, |off, pfn, writable| {
        report.checked += 1;
        let stale = expected(off) != Some(pfn);
        let clean = dirty_required && writable && !crate::sys::mm::pfn_dirty(pfn);
        if stale || clean {
            report.violations += 1;
        }
    });
}

fn check_region(sim: &Sim, pt: u64, r: &Region, report: &mut Report) -> Result {
    match &r.kind {
        RegionKind::Movable(m) => check_followed(
            sim,
            pt,
            r,
            report,
            true,
            m.mm(),
            || m.read_begin(),
            || m.lock_live(),
            |seq| m.read_retry(seq),
        ),
        RegionKind::Mmio(m) => check_followed(
            sim,
            pt,
            r,
            report,
            false,
            m.mm(),
            || m.read_begin(),
            || m.lock_live(),
            |seq| m.read_retry(seq),
        ),
        RegionKind::Pinned(p) => {
            let mut entries = KVVec::with_capacity(r.spec.pages as usize, GFP_KERNEL)?;
            collect(sim, pt, r, &mut entries)?;
            // Pinned pages are marked dirty when unpinned.
            compare(r, &entries, report, false, |off| {
                p.pfns().get(off as usize).copied()
            });
            Ok(())
        }
    }
}

/// Checks a region that follows the VMM's page tables with a notifier
/// (movable RAM, MMIO): every accessible entry maps what the VMM maps at
/// that address now (for MMIO, the pfn of its `VM_PFNMAP` pte).
#[expect(clippy::too_many_arguments)]
fn check_followed<G>(
    sim: &Sim,
    pt: u64,
    r: &Region,
    report: &mut Report,
    dirty_required: bool,
    mm: &crate::sys::mm::MmRef,
    read_begin: impl Fn() -> u64,
    lock_live: impl Fn() -> Option<G>,
    read_retry: impl Fn(u64) -> bool,
) -> Result {
    let mut entries = KVVec::with_capacity(r.spec.pages as usize, GFP_KERNEL)?;
    let mut pfns = KVVec::with_capacity(r.spec.pages as usize, GFP_KERNEL)?;
    for _ in 0..CHECK_TRIES {
        let seq = read_begin();
        pfns.clear();
        {
            let Some(guard) = mm.read_lock() else {
                return Ok(());
            };
            collect(sim, pt, r, &mut entries)?;
            let mut overflow = false;
            pages_of(r, &entries, |off, _, _| {
                let uaddr = r.spec.uaddr + (off << HV_PAGE_SHIFT);
                overflow |= pfns.push_within_capacity(guard.user_pfn(uaddr)).is_err();
            });
            if overflow {
                return Err(EOVERFLOW);
            }
        }
        let Some(_st) = lock_live() else {
            return Ok(());
        };
        if read_retry(seq) {
            continue;
        }
        // No invalidation since `seq`: neither the VMM's pages nor the
        // entries found then can have changed (a fault maps only after the
        // same check); new entries are not checked.
        let mut it = pfns.iter().copied();
        compare(r, &entries, report, dirty_required, |_| it.next().flatten());
        return Ok(());
    }
    Err(EBUSY)
}
