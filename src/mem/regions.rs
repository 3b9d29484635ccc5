// SPDX-License-Identifier: GPL-2.0

//! A partition's set of guest memory regions: lookup by gfn for the fault
//! path, insertion and exact removal for `SET_GUEST_MEMORY`, and the regions
//! kept after a failed removal.
//!
//! # Locking
//!
//! `tree` is held only to look up, insert or remove, never across a fault or
//! a hypercall batch (the RUN_VP fault path takes it alone). `held` has a
//! lock of its own, never taken with `tree`. Changes (insert, remove) are
//! serialized by the caller (`Partition::inner`); lookups are not. In the
//! driver's order (docs/design.md, "Lock order") both come after
//! `Partition::inner` and before a region's own lock.

use super::region::Region;
use crate::stats::{self, Live};
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::{
    new_mutex,
    prelude::*,
    rbtree::{RBTree, RBTreeNode},
    sync::{Arc, Mutex},
};

/// A partition's regions.
///
/// # Invariants
///
/// `held` has room for every region in `tree` (`capacity >= len +
/// in_tree`), so that [`RegionSet::retire`] never allocates.
#[pin_data]
pub(crate) struct RegionSet {
    /// Regions keyed by their *last* gfn, so a lower-bound lookup finds the
    /// only region that can contain a gfn.
    #[pin]
    tree: Mutex<RBTree<u64, Arc<Region>>>,
    /// Regions in `tree`; changed only by the (serialized) inserters and
    /// removers.
    in_tree: AtomicUsize,
    /// Regions that left the set but whose unmap failed: the hypervisor may
    /// still map their pages, so they (and a pinned region's pins, a
    /// movable region's held pages) are only released after the partition
    /// is deleted in the hypervisor, and their GPA ranges stay reserved to
    /// them (a movable or MMIO region goes on unmapping what Linux takes
    /// back, see [`super::Phase::Kept`]).
    #[pin]
    held: Mutex<KVec<Arc<Region>>>,
}

impl RegionSet {
    /// An empty set.
    pub(crate) fn new() -> impl PinInit<Self> {
        // INVARIANT: both are empty.
        pin_init!(Self {
            tree <- new_mutex!(RBTree::new(), "RegionSet::tree"),
            in_tree: AtomicUsize::new(0),
            held <- new_mutex!(KVec::new(), "RegionSet::held"),
        })
    }

    /// Makes room in `held` for one more region, so that the next
    /// [`RegionSet::insert`] keeps the invariant. Called before the region
    /// is set up, so that a failure here costs no hypercall.
    pub(crate) fn reserve(&self) -> Result {
        let in_tree = self.in_tree.load(Ordering::Relaxed);
        self.held.lock().reserve(in_tree + 1, GFP_KERNEL_ACCOUNT)?;
        Ok(())
    }

    /// Whether any region, or the reserved range of a region kept after a
    /// failed removal, intersects `[gfn, gfn + pages)`.
    pub(crate) fn overlaps(&self, gfn: u64, pages: u64) -> bool {
        let in_tree = match self.tree.lock().cursor_lower_bound(&gfn) {
            Some(c) => c.current().1.spec.start_gfn < gfn + pages,
            None => false,
        };
        in_tree
            || self
                .held
                .lock()
                .iter()
                .any(|r| r.spec.start_gfn < gfn + pages && gfn < r.spec.start_gfn + r.spec.pages)
    }

    /// Inserts `region`, which overlaps no other (the caller checked with
    /// [`RegionSet::overlaps`] and holds off other inserters), after a
    /// [`RegionSet::reserve`]. On failure the region is dropped, which
    /// removes it from the hypervisor.
    pub(crate) fn insert(&self, region: Arc<Region>) -> Result {
        let last = region.spec.start_gfn + region.spec.pages - 1;
        let node = RBTreeNode::new(last, region, GFP_KERNEL_ACCOUNT)?;
        // INVARIANT: the caller's `reserve` made room in `held` for it.
        self.tree.lock().insert(node);
        self.in_tree.fetch_add(1, Ordering::Relaxed);
        stats::live_add(Live::Regions, 1);
        Ok(())
    }

    /// The region containing `gfn`, if any.
    pub(crate) fn lookup(&self, gfn: u64) -> Option<Arc<Region>> {
        let tree = self.tree.lock();
        let c = tree.cursor_lower_bound(&gfn)?;
        let r = c.current().1;
        (r.spec.start_gfn <= gfn).then(|| r.clone())
    }

    /// Removes the region that starts at `gfn` with exactly `pages` pages
    /// at `uaddr` (`ENOENT` if no region contains `gfn`, `EINVAL` if the
    /// one that does differs), then removes it from the hypervisor (see
    /// [`RegionSet::retire`] for a failure there).
    pub(crate) fn remove_exact(&self, gfn: u64, pages: u64, uaddr: u64) -> Result {
        let region = {
            let mut tree = self.tree.lock();
            let Some(c) = tree.cursor_lower_bound(&gfn) else {
                return Err(ENOENT);
            };
            let (&last, r) = c.current();
            if r.spec.start_gfn > gfn {
                return Err(ENOENT);
            }
            if r.spec.start_gfn != gfn || r.spec.pages != pages || r.spec.uaddr != uaddr {
                return Err(EINVAL);
            }
            tree.remove(&last).ok_or(ENOENT)?
        };
        self.in_tree.fetch_sub(1, Ordering::Relaxed);
        // Faults that already looked the region up see it removed and give up.
        stats::live_add(Live::Regions, -1);
        self.retire(region)
    }

    /// Removes every region (the partition is going: no fault or ioctl can
    /// run any more). Those whose removal fails are held, as for
    /// [`RegionSet::remove_exact`].
    pub(crate) fn remove_all(&self) {
        let tree = core::mem::take(&mut *self.tree.lock());
        self.in_tree.store(0, Ordering::Relaxed);
        for (_, r) in tree.iter() {
            let _ = self.retire(r.clone());
            stats::live_add(Live::Regions, -1);
        }
    }

    /// Releases the held regions once the partition is deleted in the
    /// hypervisor; if it could not be deleted (`deleted` false), the
    /// hypervisor may still map their pages, so they are never given back.
    pub(crate) fn release_held(&self, deleted: bool) {
        let held = core::mem::take(&mut *self.held.lock());
        if !deleted {
            for r in held.iter() {
                r.keep_forever();
            }
        }
    }

    /// Removes `region`, which has left the set, from the hypervisor. If
    /// that fails, keeps it until the partition is deleted and returns the
    /// error.
    fn retire(&self, region: Arc<Region>) -> Result {
        let Err(e) = region.remove() else {
            return Ok(());
        };
        if let Err(unpushed) = self.held.lock().push_within_capacity(region) {
            // Unreachable: `reserve` made room for every region (type
            // invariant). Should it happen, the region is leaked, never
            // released: a movable or MMIO one stays registered and keeps
            // invalidating, and its notifier's module reference keeps the
            // module (its callback) loaded.
            pr_err!(
                "region at gfn {:#x} leaked after a failed removal\n",
                unpushed.0.spec.start_gfn
            );
            core::mem::forget(unpushed.0);
        }
        Err(e)
    }

    /// References to every region, for a walk that must not hold the lock.
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn snapshot(&self) -> Result<KVec<Arc<Region>>> {
        let tree = self.tree.lock();
        let mut v = KVec::new();
        for (_, r) in tree.iter() {
            v.push(r.clone(), GFP_KERNEL)?;
        }
        Ok(v)
    }
}
