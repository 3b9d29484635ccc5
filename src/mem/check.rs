// SPDX-License-Identifier: GPL-2.0

//! The mirror checker (`backend=sim`): compares the simulated hypervisor's
//! SLAT with what backs each region now (ARCHITECTURE.md invariants 1 and 2).
//!
//! - Movable: every accessible entry maps the pfn the VMM's page tables map
//!   at the corresponding address *now* (a non-faulting lookup), and every
//!   writable entry maps a page Linux knows is dirty (guest writes bypass
//!   the VMM's PTE dirty bit; a clean page could be dropped by reclaim).
//! - Pinned: every accessible entry maps the page the region pinned there.
//! - MMIO: every accessible entry maps the device pfn at that offset.
//!
//! A movable region is checked with the VMM's mmap lock held for reading and
//! then the region lock (the order invalidations take them in), so neither
//! Linux nor the fault path can change its pages or entries mid-check.

use super::region::{Region, RegionKind};
use crate::{partition::RegionSet, sim::Sim};
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
        r.start_gfn,
        r.pages,
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

/// Compares each page of `entries` with `expected(page offset in region)`.
fn compare(
    r: &Region,
    entries: &[Entry],
    report: &mut Report,
    dirty_required: bool,
    expected: impl Fn(u64) -> Option<u64>,
) {
    for &(gfn, pfn, large, writable) in entries {
        let n = if large {
            super::geometry::LARGE_PAGES
        } else {
            1
        };
        for i in 0..n {
            let Some(off) = (gfn + i).checked_sub(r.start_gfn).filter(|&o| o < r.pages) else {
                continue;
            };
            report.checked += 1;
            let stale = expected(off) != Some(pfn + i);
            let clean = dirty_required && writable && !crate::sys::mm::pfn_dirty(pfn + i);
            if stale || clean {
                report.violations += 1;
            }
        }
    }
}

fn check_region(sim: &Sim, pt: u64, r: &Region, report: &mut Report) -> Result {
    let mut entries = KVVec::with_capacity(r.pages as usize, GFP_KERNEL)?;
    match &r.kind {
        RegionKind::Movable(m) => {
            let Some(mm) = m.mm() else {
                return Ok(());
            };
            // The process is gone: its pages are being torn down.
            let Some(guard) = mm.read_lock() else {
                return Ok(());
            };
            let Some(_st) = m.lock_live() else {
                return Ok(());
            };
            collect(sim, pt, r, &mut entries)?;
            compare(r, &entries, report, true, |off| {
                guard.user_pfn(r.uaddr + off * super::geometry::PAGE_SIZE)
            });
        }
        RegionKind::Pinned(p) => {
            collect(sim, pt, r, &mut entries)?;
            // Pinned pages are marked dirty when unpinned.
            compare(r, &entries, report, false, |off| {
                p.pfns().get(off as usize).copied()
            });
        }
        RegionKind::Mmio { pfn } => {
            collect(sim, pt, r, &mut entries)?;
            compare(r, &entries, report, false, |off| Some(pfn + off));
        }
    }
    Ok(())
}
