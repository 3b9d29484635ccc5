// SPDX-License-Identifier: GPL-2.0

//! A guest memory region: one enum of the three kinds (docs/review-answers.md,
//! point c), each carrying only what it uses.
//!
//! The type is chosen by the driver, as upstream does: a `VM_IO | VM_PFNMAP`
//! VMA (a device BAR) is MMIO; RAM is movable unless the partition is
//! encrypted, the notifier cannot be registered, or a test forced pinning.

use super::{
    geometry::{self, HostPage},
    mmio::Mmio,
    movable::{InterceptAccess, InterceptOutcome, Movable},
    RegionSpec,
};
use crate::{
    hv::{abi, calls},
    sys::mm::{self, PinnedPages},
};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::{alloc::flags::__GFP_NOWARN, prelude::*};

/// Reps per slice of an MMIO or pinned region's map and unmap, between
/// which the task may be rescheduled (64 Ki reps: 128 map hypercalls).
const RESCHED_REPS: usize = 1 << 16;

/// What backs a region.
pub(crate) enum RegionKind {
    /// Device memory (a `VM_IO | VM_PFNMAP` VMA), mapped uncached up
    /// front with the pfns the VMM's page tables hold; see [`super::mmio`].
    Mmio(Pin<KBox<Mmio>>),
    /// RAM pinned for the region's lifetime and mapped up front.
    Pinned(PinnedPages),
    /// RAM mirrored with HMM; see [`super::movable`].
    Movable(Pin<KBox<Movable>>),
}

/// A region of guest physical memory backed by the VMM's memory.
///
/// # Invariants
///
/// `spec`'s (`pages > 0`, `start_gfn + pages` does not overflow, `uaddr`
/// page aligned: checked by [`Region::new`]'s caller, `SET_GUEST_MEMORY`).
pub(crate) struct Region {
    /// Where the region is and what the guest may do there.
    pub(crate) spec: RegionSpec,
    /// Set by the first [`Region::remove`]; later calls do nothing.
    removed: AtomicBool,
    /// A pinned region's pages below this may have SLAT entries: what the
    /// set-up's map calls reached (all pages unless it failed). Removal
    /// unmaps no further, so a set-up the hypervisor refused part-way does
    /// not end in a refused unmap of gfns never mapped. Written only by the
    /// set-up, before the region is shared. (Movable and MMIO regions keep
    /// their own, under their lock.)
    mapped_upto: AtomicU64,
    pub(crate) kind: RegionKind,
}

/// How the caller wants RAM backed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum RamPolicy {
    /// Movable where possible (the default).
    Movable,
    /// Pinned (encrypted partitions; tests).
    Pinned,
}

impl Region {
    /// Creates a region and maps it in partition `pt`. Sleeps; the caller
    /// holds no region lock. On error nothing stays mapped or pinned.
    pub(crate) fn new(spec: RegionSpec, policy: RamPolicy) -> Result<Self> {
        let RegionSpec {
            pt,
            pages,
            uaddr,
            writable,
            ..
        } = spec;
        let kind = match mm::vma_kind(uaddr) {
            mm::VmaKind::None => return Err(EINVAL),
            mm::VmaKind::Io => RegionKind::Mmio(Mmio::new(spec.clone())?),
            mm::VmaKind::Ram => {
                // As upstream: pinned is the fallback when the notifier cannot
                // be registered (and the choice of encrypted partitions/tests).
                let movable = if policy == RamPolicy::Movable {
                    Movable::new(spec.clone())
                        .inspect_err(|e| {
                            pr_info!("pt {}: movable region refused ({:?}); pinning\n", pt, e)
                        })
                        .ok()
                } else {
                    None
                };
                match movable {
                    Some(m) => RegionKind::Movable(m),
                    None => RegionKind::Pinned(PinnedPages::pin(uaddr, pages as usize, writable)?),
                }
            }
        };
        let region = Self {
            spec,
            removed: AtomicBool::new(false),
            mapped_upto: AtomicU64::new(0),
            kind,
        };
        match &region.kind {
            RegionKind::Movable(m) => {
                // On error, dropping `region` removes it.
                m.map_initial()?;
            }
            RegionKind::Mmio(m) => {
                // On error, dropping `region` removes it.
                m.map_initial()?;
            }
            RegionKind::Pinned(p) => region.map_up_front(|i| {
                p.pfns()
                    .get(i)
                    .map(|&pfn| (pfn, mm::pinned_folio_order(p, i)))
            })?,
        }
        Ok(region)
    }

    /// Map flags of a pinned region.
    fn base_flags(&self) -> u32 {
        let mut f = abi::HV_MAP_GPA_READABLE | abi::HV_MAP_GPA_ADJUSTABLE;
        if self.spec.writable {
            f |= abi::HV_MAP_GPA_WRITABLE;
        }
        if self.spec.exec {
            f |= abi::HV_MAP_GPA_EXECUTABLE;
        }
        f
    }

    /// Pages of a pinned region as `(pfn, folio order)`. Only after the
    /// pages were pinned: the size is then backed by real pages. A page
    /// `page` does not know is an error (`EINVAL`), never pfn 0.
    fn host_pages(&self, page: impl Fn(usize) -> Option<(u64, u32)>) -> Result<KVVec<HostPage>> {
        let gfp = GFP_KERNEL_ACCOUNT | __GFP_NOWARN;
        let mut v = KVVec::with_capacity(self.spec.pages as usize, gfp)?;
        for i in 0..self.spec.pages as usize {
            let (pfn, order) = page(i).ok_or(EINVAL)?;
            v.push(
                HostPage {
                    pfn,
                    map_order: order,
                },
                gfp,
            )?;
        }
        Ok(v)
    }

    /// Calls `f(gfn, pfns of the run, large)` for the region's map layout.
    fn for_each_run(
        &self,
        pages: &[HostPage],
        mut f: impl FnMut(u64, &[u64], bool) -> Result,
    ) -> Result {
        let mut res = Ok(());
        let mut pfns = KVVec::new();
        geometry::plan_runs(self.spec.start_gfn, pages, |run| {
            if res.is_err() {
                return;
            }
            pfns.clear();
            let step = if run.large {
                geometry::LARGE_PAGES as usize
            } else {
                1
            };
            let mut i = run.index;
            while i < run.index + run.count {
                let Some(p) = pages.get(i) else {
                    res = Err(EINVAL);
                    return;
                };
                if let Err(e) = pfns.push(p.pfn, GFP_KERNEL) {
                    res = Err(e.into());
                    return;
                }
                i += step;
            }
            res = f(self.spec.start_gfn + run.index as u64, &pfns, run.large);
        });
        res
    }

    /// Maps a pinned region whole, 2 MiB entries where possible.
    /// Every failure is returned (upstream ignored pinned map failures); the
    /// caller drops the region, which unmaps what was mapped.
    fn map_up_front(&self, page: impl Fn(usize) -> Option<(u64, u32)>) -> Result {
        let pages = self.host_pages(page)?;
        let flags = self.base_flags();
        self.for_each_run(&pages, |gfn, pfns, large| {
            let flags = flags | if large { abi::HV_MAP_GPA_LARGE_PAGE } else { 0 };
            // In slices, rescheduling between them; a fatal signal stops
            // the set-up (the caller's drop unmaps what was mapped).
            for (i, slice) in pfns.chunks(RESCHED_REPS).enumerate() {
                let at = gfn + geometry::pages_of_reps((i * RESCHED_REPS) as u64, large);
                // Reps of this slice the map calls completed, on failure too.
                let mut done = 0;
                let r = calls::retry_with_deposit(&*self.spec.hv, self.spec.pt, || {
                    calls::map_batched(
                        &*self.spec.hv,
                        self.spec.pt,
                        at,
                        flags,
                        slice,
                        &self.spec.stats.hypercalls,
                    )
                    .map_err(|e| {
                        done = done.max(e.done);
                        e.error
                    })
                });
                if r.is_ok() {
                    done = slice.len();
                }
                let reached =
                    at - self.spec.start_gfn + geometry::pages_of_reps(done as u64, large);
                self.mapped_upto.fetch_max(reached, Ordering::Relaxed);
                r?;
                crate::sys::page::cond_resched();
                if crate::sys::page::fatal_signal_pending() {
                    return Err(EINTR);
                }
            }
            Ok(())
        })
    }

    /// Unmaps what a pinned region's set-up mapped (`page` as for
    /// [`Region::map_up_front`]), in the layout it was mapped with; without
    /// memory for the layout, in 4 KiB reps (which may need hypervisor
    /// memory to split large entries).
    fn unmap_mapped(&self, page: impl Fn(usize) -> Option<(u64, u32)>) -> Result {
        let upto = self
            .mapped_upto
            .load(Ordering::Relaxed)
            .min(self.spec.pages);
        if upto == 0 {
            return Ok(());
        }
        match self.host_pages(page) {
            Ok(pages) => self.unmap_all(&pages, upto),
            Err(_) => calls::unmap_batched(
                &*self.spec.hv,
                self.spec.pt,
                self.spec.start_gfn,
                upto,
                false,
                &self.spec.stats.hypercalls,
            )
            .map_err(|e| e.error.into()),
        }
    }

    /// Unmaps the region's pages below `upto` in the layout they were
    /// mapped with (no split of large entries needed; `upto` ends a large
    /// entry where the set-up stopped in one).
    fn unmap_all(&self, pages: &[HostPage], upto: u64) -> Result {
        self.for_each_run(pages, |gfn, pfns, large| {
            let mut res = Ok(());
            let step = geometry::pages_of_reps(1, large);
            // In slices, rescheduling between them (not interruptible).
            for (i, slice) in pfns.chunks(RESCHED_REPS).enumerate() {
                let at = gfn + geometry::pages_of_reps((i * RESCHED_REPS) as u64, large);
                let left = upto.saturating_sub(at - self.spec.start_gfn);
                let reps = (slice.len() as u64).min(left.div_ceil(step));
                if reps == 0 {
                    break;
                }
                let r = calls::unmap_batched(
                    &*self.spec.hv,
                    self.spec.pt,
                    at,
                    reps,
                    large,
                    &self.spec.stats.hypercalls,
                )
                .map_err(|e| e.error.into());
                if res.is_ok() {
                    res = r;
                }
                crate::sys::page::cond_resched();
            }
            res
        })
    }

    /// Handles a GPA intercept at `gfn`. Only movable regions resolve them;
    /// for the others an intercept means the guest did something the
    /// mapping does not allow, which the VMM must see.
    pub(crate) fn fault(&self, gfn: u64, access: InterceptAccess) -> Result<InterceptOutcome> {
        match &self.kind {
            RegionKind::Movable(m) => m.fault(gfn, access),
            _ => Ok(InterceptOutcome::Forward),
        }
    }

    /// Unmaps the region's whole GPA range (MMIO included: upstream left MMIO
    /// mapped) and stops faults; what backs it is released when the value is
    /// dropped. Called by the region set's owner when the region leaves the
    /// set; dropping an unremoved region (an error path) removes it first.
    ///
    /// An error means the hypervisor may still map some of the range
    /// (unmap calls are already retried, see `calls::unmap_batched`): the
    /// caller must not release the region before the partition is deleted
    /// (`RegionSet::retire`). Movable and MMIO regions then go on
    /// following Linux (`Phase::Kept`); a movable region also holds the
    /// pages the VMM mapped, a pinned region keeps its pins. Only the first
    /// call does anything.
    pub(crate) fn remove(&self) -> Result {
        if self.removed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let res = match &self.kind {
            RegionKind::Movable(m) => m.remove(),
            RegionKind::Mmio(m) => m.remove(),
            RegionKind::Pinned(p) => self.unmap_mapped(|i| {
                p.pfns()
                    .get(i)
                    .map(|&pfn| (pfn, mm::pinned_folio_order(p, i)))
            }),
        };
        if res.is_err() {
            pr_err!(
                "pt {}: unmapping region at gfn {:#x} failed; not released while the hypervisor may map it\n",
                self.spec.pt,
                self.spec.start_gfn
            );
        }
        res
    }

    /// Never gives the region's pages back to Linux: for a region whose
    /// removal failed in a partition the hypervisor could not delete (or a
    /// region dropped without a partition to keep it in).
    pub(crate) fn keep_forever(&self) {
        match &self.kind {
            RegionKind::Pinned(p) => p.keep_pinned(),
            RegionKind::Movable(m) => m.keep_forever(),
            // Device memory is not Linux's to reuse.
            RegionKind::Mmio(_) => {}
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.remove().is_err() {
            // Only a region that never entered a set gets here unremoved (an
            // error while creating it), and nothing can hold it any more.
            // Its pages may still be mapped in the hypervisor: never give
            // them back to Linux.
            self.keep_forever();
        }
    }
}
