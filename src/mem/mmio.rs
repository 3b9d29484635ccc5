// SPDX-License-Identifier: GPL-2.0

//! MMIO regions: device memory the VMM maps `VM_IO | VM_PFNMAP` (a vfio
//! BAR), mapped into the guest uncached and up front.
//!
//! The pfns come from the VMM's page tables (`follow_pfnmap_start`, faulting
//! unpopulated pages in with `fixup_user_fault`, as KVM's
//! `hva_to_pfn_remapped` does), never from `vm_pgoff`: vfio-pci stores
//! `index << 28 | offset` there, and upstream's `vm_pgoff + offset` handed
//! the guest whatever host memory that number names. One readable VMA must
//! cover the whole region; the guest gets write access only where the
//! VMM's own mapping is writable.
//!
//! An interval notifier keeps the mapping coherent: when Linux zaps the
//! VMA's ptes (munmap, vfio-pci disabling a BAR on reset), the invalidation
//! unmaps that part of the region (or, if the hypervisor refuses, remaps it
//! NO_ACCESS), so the guest never keeps a pfn the VMM no longer maps. The
//! guest's next access there is an `HVMSG_UNMAPPED_GPA` (or intercept) for
//! the VMM; the driver does not map the pages back in by itself.
//!
//! # Locking
//!
//! `MmioSlat::state` protects the region's SLAT entries, its [`Phase`] and how
//! far its set-up mapped. The
//! map path takes it after looking the pfns up (the mmap lock is not held
//! under it) and maps only if no invalidation ran since; invalidations take
//! it (try-lock when not blockable). Under it: hypercalls only; deposits
//! happen with it dropped.

use super::{geometry, Phase, RegionSpec, Stats};
use crate::{
    hv::{abi, calls},
    sys::{
        mm::{self, HmmPfn, IntervalNotifier, Invalidate, Invalidation},
        trace,
    },
    tlfs::HV_PAGE_SHIFT,
};
use kernel::{alloc::flags::__GFP_NOWARN, new_mutex, prelude::*, sync::Mutex};

/// Pages looked up and mapped per round (one input page of pfns).
const CHUNK: u64 = 512;
/// Bound on rounds of one chunk restarted by a racing invalidation or a
/// deposit.
const MAX_TRIES: usize = 32;

/// The state of an MMIO region: the part its notifier's callback uses, and
/// the notifier. Pinned in a `KBox`.
///
/// # Invariants
///
/// `notifier` is registered with a pointer to `slat` as its owner, made
/// after `slat` was fully initialised. `slat` is structurally pinned, so it
/// stays in place, and it is dropped only after `notifier` (declaration
/// order).
#[pin_data]
pub(crate) struct Mmio {
    /// Declared first so that it drops (unregisters, waiting for running
    /// callbacks) before `slat`, which the callback uses. Registered last
    /// in [`Mmio::new`], once `slat` is whole.
    notifier: IntervalNotifier<MmioSlat>,
    #[pin]
    slat: MmioSlat,
}

/// What the invalidate callback of an MMIO region works on: where the
/// region is and its SLAT entries. The owner of the region's notifier,
/// which points here.
#[pin_data]
struct MmioSlat {
    /// Where the region is and what the guest may do there.
    spec: RegionSpec,
    #[pin]
    state: Mutex<MmioState>,
}

/// What [`MmioSlat::state`] protects (with the region's SLAT entries).
struct MmioState {
    phase: Phase,
    /// Only region pages below this may have SLAT entries: the set-up has
    /// not reached the rest, or the hypervisor refused it there. Removal
    /// and invalidations stop here, so they never unmap gfns that were
    /// never mapped (which the hypervisor may refuse, and a failed removal
    /// keeps the region for the partition's life).
    mapped_upto: u64,
}

impl Mmio {
    /// Checks that one `VM_IO | VM_PFNMAP` VMA covers the region (`EINVAL`
    /// otherwise, before anything is allocated) and registers the notifier.
    /// The caller then maps it with [`Mmio::map_initial`]. Sleeps.
    pub(crate) fn new(spec: RegionSpec) -> Result<Pin<KBox<Self>>> {
        mm::mmio_check(spec.uaddr, spec.pages)?;
        let (uaddr, len) = (spec.uaddr, spec.pages << HV_PAGE_SHIFT);
        KBox::pin_init(
            // INVARIANT: fields are initialised in the order written, so
            // `slat` is whole before `notifier` registers a pointer to it;
            // `slat` is pinned, and `notifier`, declared first, drops first.
            try_pin_init!(&this in Self {
                slat <- pin_init!(MmioSlat {
                    spec,
                    state <- new_mutex!(
                        MmioState {
                            phase: Phase::Live,
                            mapped_upto: 0,
                        },
                        "MmioSlat::state"
                    ),
                }),
                // SAFETY: `this` points to the boxed `Mmio` being
                // initialised, so the projection stays in bounds. `slat` is
                // initialised (written above), so the callback, which may
                // run as soon as the notifier is registered, sees a whole
                // `MmioSlat`; it is pinned in the box and outlives the
                // notifier: the notifier is the first field, dropped
                // (unregistered) before `slat` and before the box is freed.
                // If registering fails, nothing points to `slat` when
                // pin-init drops it.
                notifier: unsafe {
                    IntervalNotifier::new(&raw const (*this.as_ptr()).slat, uaddr, len)
                }?,
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    /// The VMM's address space (for the mirror checker).
    pub(crate) fn mm(&self) -> &mm::MmRef {
        self.notifier.mm()
    }

    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    /// The notifier sequence now, for the mirror checker (see
    /// `Movable::read_begin`).
    pub(crate) fn read_begin(&self) -> u64 {
        self.notifier.read_begin()
    }

    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    /// Whether an invalidation ran since `seq`; call under [`Self::lock_live`].
    pub(crate) fn read_retry(&self, seq: u64) -> bool {
        self.notifier.read_retry(seq)
    }

    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    /// Holds the region lock while the region is live (mirror checker).
    pub(crate) fn lock_live(&self) -> Option<impl Drop + '_> {
        let st = self.slat.state.lock();
        (st.phase == Phase::Live).then_some(st)
    }

    /// Maps the whole region, [`CHUNK`] pages at a time: looks the pfns up
    /// (sleeps, takes the mmap lock), then under the region lock maps them
    /// if no invalidation ran meanwhile. Memory for the lookup is one chunk,
    /// whatever the region's size. On error the caller removes the region.
    pub(crate) fn map_initial(&self) -> Result {
        let spec = &self.slat.spec;
        let n = spec.pages.min(CHUNK) as usize;
        let mut found = KVVec::new();
        found.resize(n, HmmPfn::default(), GFP_KERNEL_ACCOUNT | __GFP_NOWARN)?;
        let mut pfns = KVVec::new();
        pfns.resize(n, 0u64, GFP_KERNEL_ACCOUNT | __GFP_NOWARN)?;
        let mut off = 0u64;
        let mut tries = 0;
        while off < spec.pages {
            if crate::sys::page::fatal_signal_pending() {
                return Err(EINTR);
            }
            tries += 1;
            if tries > MAX_TRIES {
                return Err(EAGAIN);
            }
            let count = (spec.pages - off).min(CHUNK) as usize;
            let found = found.get_mut(..count).ok_or(EINVAL)?;
            let seq = self.notifier.read_begin();
            self.notifier
                .mmio_pfns(spec.uaddr + (off << HV_PAGE_SHIFT), spec.writable, found)?;
            let mut st = self.slat.state.lock();
            if st.phase != Phase::Live {
                return Err(EINVAL);
            }
            if self.notifier.read_retry(seq) {
                drop(st);
                crate::sys::page::cond_resched();
                continue;
            }
            let r = self.slat.map_chunk(spec.start_gfn + off, found, &mut pfns);
            // What the map calls reached, on failure too (see `mapped_upto`).
            let reached = match &r {
                Ok(()) => count as u64,
                Err(e) => e.done as u64,
            };
            st.mapped_upto = st.mapped_upto.max(off + reached);
            drop(st);
            match r {
                Ok(()) => {
                    off += count as u64;
                    tries = 0;
                }
                Err(e) if e.error.needs_memory() => {
                    calls::deposit(&*spec.hv, spec.pt, calls::MAP_DEPOSIT_PAGES)?;
                }
                Err(e) => return Err(e.error.into()),
            }
            crate::sys::page::cond_resched();
        }
        Ok(())
    }

    /// Unmaps what the region's set-up mapped (all of it, unless the set-up
    /// failed). Called once on removal. On failure the region is
    /// [`Phase::Kept`]: its invalidations go on unmapping (see
    /// `RegionSet::retire`).
    pub(crate) fn remove(&self) -> Result {
        let mut st = self.slat.state.lock();
        st.phase = Phase::Removed;
        if st.mapped_upto == 0 {
            return Ok(());
        }
        let r = self.slat.unmap(0, st.mapped_upto.min(self.slat.spec.pages));
        if r.is_err() {
            st.phase = Phase::Kept;
        }
        r.map_err(|e| e.error.into())
    }
}

impl MmioSlat {
    fn base_flags(&self) -> u32 {
        abi::HV_MAP_GPA_READABLE
            | abi::HV_MAP_GPA_NOT_CACHED
            | if self.spec.exec {
                abi::HV_MAP_GPA_EXECUTABLE
            } else {
                0
            }
    }

    /// Maps `found` at `gfn` in runs of equal write permission (4 KiB
    /// entries: device memory is never mapped large). Under the lock; no
    /// allocation (`pfns` is scratch space at least as long as `found`).
    /// A failure's `done` counts the pages of `found` mapped before it.
    fn map_chunk(
        &self,
        gfn: u64,
        found: &[HmmPfn],
        pfns: &mut [u64],
    ) -> Result<(), crate::hv::RepError> {
        let mut i = 0;
        while i < found.len() {
            let w = found.get(i).is_some_and(|p| p.writable());
            let mut k = 0;
            while let Some(p) = found.get(i + k).filter(|p| p.writable() == w) {
                if let Some(slot) = pfns.get_mut(k) {
                    *slot = p.pfn();
                }
                k += 1;
            }
            let flags = self.base_flags() | if w { abi::HV_MAP_GPA_WRITABLE } else { 0 };
            calls::map_batched(
                &*self.spec.hv,
                self.spec.pt,
                gfn + i as u64,
                flags,
                pfns.get(..k).unwrap_or(&[]),
                &self.spec.stats.hypercalls,
            )
            .map_err(|e| crate::hv::RepError {
                done: i + e.done,
                error: e.error,
            })?;
            i += k;
        }
        Ok(())
    }

    fn unmap(&self, first: u64, count: u64) -> Result<(), crate::hv::RepError> {
        calls::unmap_batched(
            &*self.spec.hv,
            self.spec.pt,
            self.spec.start_gfn + first,
            count,
            false,
            &self.spec.stats.hypercalls,
        )
    }
}

impl Invalidate for MmioSlat {
    fn invalidate(&self, inv: &Invalidation<'_>, start: u64, end: u64, blockable: bool) -> bool {
        let Some(st) = super::lock_for_invalidation(&self.state, blockable, &self.spec.stats)
        else {
            return false;
        };
        inv.set_seq();
        if st.phase == Phase::Removed {
            return true;
        }
        // Pages past `mapped_upto` have no entry: the set-up, if it goes on,
        // sees the new sequence and looks their pfns up again.
        let upto = st.mapped_upto.min(self.spec.pages);
        let Some(range) = geometry::clamp_invalidation(self.spec.uaddr, upto, start, end) else {
            return true;
        };
        Stats::add(&self.spec.stats.invalidations, 1);
        trace::invalidate(
            self.spec.pt,
            self.spec.start_gfn + range.first,
            range.count,
            blockable,
        );
        // Device memory has no NO_ACCESS use: unmap, so that the guest's
        // next access goes to the VMM as an unmapped GPA. All entries are
        // 4 KiB, so this needs no hypervisor memory.
        if self.unmap(range.first, range.count).is_ok() {
            return true;
        }
        Stats::add(&self.spec.stats.invalidate_failures, 1);
        if calls::map_no_access(
            &*self.spec.hv,
            self.spec.pt,
            self.spec.start_gfn + range.first,
            range.count,
            false,
            &self.spec.stats.hypercalls,
        )
        .is_ok()
        {
            return true;
        }
        pr_err!(
            "pt {}: could not invalidate MMIO gfn range at {:#x}; guest may reach a pfn the VMM no longer maps\n",
            self.spec.pt,
            self.spec.start_gfn + range.first
        );
        // Linux ignores the answer to a blockable invalidation; a
        // non-blockable one must not claim success.
        blockable
    }
}
