// SPDX-License-Identifier: GPL-2.0

//! Movable guest RAM: HMM "address space mirroring".
//!
//! Linux in the root partition owns the memory. The partition is the HMM
//! "device", and the hypervisor's second-level address translation (SLAT) is
//! the device page table, programmed with map hypercalls. A movable region
//! starts mapped NO_ACCESS. A guest's first touch of a page comes back as a
//! GPA intercept during `MSHV_RUN_VP`; the driver faults the pages in with
//! `hmm_range_fault` and maps them, then re-enters the guest without
//! returning to the VMM. When Linux wants a page back (reclaim, migration,
//! compaction, KSM, munmap, fork's COW), the `mmu_interval_notifier`
//! invalidate callback remaps the range NO_ACCESS before Linux proceeds; the
//! guest faults again when it next touches it. No page references are held:
//! correctness rests on the region lock plus the notifier sequence
//! (read_begin in the fault, set_seq in the invalidation, read_retry under
//! the lock before mapping).
//!
//! NO_ACCESS rather than unmapped: the hypervisor reports an unmapped GPA as
//! `HVMSG_UNMAPPED_GPA`, which VMMs treat as MMIO, and a NO_ACCESS one as
//! `HVMSG_GPA_INTERCEPT`, which this module handles. (The driver also
//! resolves `HVMSG_UNMAPPED_GPA` inside a movable region, for the one case
//! where an invalidation has to unmap: a failed NO_ACCESS remap.)
//!
//! # Locking
//!
//! `MovableSlat::state` (a mutex) protects the region's SLAT entries and
//! `MovableState`. It is taken by the fault path and by the invalidate
//! callback (try-lock when the invalidation is not blockable). Under it:
//! hypercalls only — no allocation that can enter reclaim and no deposit
//! (reclaim could call the invalidate callback, which takes this lock). The
//! fault path allocates and deposits with the lock dropped, then starts over.

use crate::{
    hv::{abi, calls},
    mem::{
        geometry::{self, GfnRange, HostPage},
        Phase, RegionSpec, Stats,
    },
    sys::{
        mm::{HmmPfn, IntervalNotifier, Invalidate, Invalidation, PageRefs},
        trace,
    },
    tlfs::HV_PAGE_SHIFT,
};
use kernel::{
    new_mutex,
    prelude::*,
    sync::Mutex,
    time::{Instant, Monotonic}, //
};

/// Bound on fault attempts (sequence retries and deposit rounds) per intercept.
const MAX_FAULT_TRIES: usize = 32;

/// State under the region lock.
struct MovableState {
    /// Pages from the region's start that [`MovableSlat::map_initial`] has
    /// reached (all of them once it is done): only these may have SLAT
    /// entries, so invalidations and removal stop there (a killed set-up of
    /// a huge region is undone in the time it took).
    mapped_upto: u64,
    /// Faults map only while [`Phase::Live`].
    phase: Phase,
    /// References on the pages the VMM mapped when the removal failed
    /// ([`Phase::Kept`]): the hypervisor may still map them, so Linux must
    /// not free them even if an invalidation cannot unmap them either.
    held: PageRefs,
    /// One bit per 2 MiB gfn frame that the SLAT holds as one large entry
    /// (accessible or NO_ACCESS), indexed from the first frame the region
    /// touches. Used to remap and unmap without splitting large entries.
    large: KVVec<u64>,
}

/// The access a GPA intercept reports (`HV_INTERCEPT_ACCESS_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InterceptAccess {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

impl InterceptAccess {
    /// Decodes `intercept_access_type`; unknown values count as reads.
    pub(crate) fn from_hv(v: u8) -> Self {
        match v {
            abi::HV_INTERCEPT_ACCESS_WRITE => InterceptAccess::Write,
            abi::HV_INTERCEPT_ACCESS_EXECUTE => InterceptAccess::Execute,
            _ => InterceptAccess::Read,
        }
    }
}

/// Outcome of a GPA intercept on a movable region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InterceptOutcome {
    /// The pages are mapped; run the guest again.
    Mapped,
    /// Not ours to handle (region going away, or a write to read-only
    /// memory): forward the message to the VMM.
    Forward,
}

/// A movable region: the part its notifier's callback uses, and the
/// notifier. Pinned in a `KBox`.
///
/// # Invariants
///
/// `notifier` is registered with a pointer to `slat` as its owner, made
/// after `slat` was fully initialised. `slat` is structurally pinned, so it
/// stays in place, and it is dropped only after `notifier` (declaration
/// order).
#[pin_data]
pub(crate) struct Movable {
    /// Declared first so that it drops (unregisters, waiting for running
    /// callbacks) before `slat`, which the callback uses. Registered last
    /// in [`Movable::new`], once `slat` is whole.
    notifier: IntervalNotifier<MovableSlat>,
    #[pin]
    slat: MovableSlat,
}

/// What the invalidate callback of a movable region works on: where the
/// region is and its SLAT entries. The owner of the region's notifier,
/// which points here.
#[pin_data]
struct MovableSlat {
    /// Where the region is and what the guest may do there.
    spec: RegionSpec,
    #[pin]
    state: Mutex<MovableState>,
}

impl Movable {
    /// Creates the movable state of a region and registers its notifier.
    /// The caller then maps it with [`Movable::map_initial`]. Sleeps.
    pub(crate) fn new(spec: RegionSpec) -> Result<Pin<KBox<Self>>> {
        let frames = usize::try_from(spec.pages / geometry::LARGE_PAGES + 2).map_err(|_| EINVAL)?;
        let mut large = KVVec::new();
        // Sized by userspace (bounded by the VMAs it has mapped): charged to
        // its memory cgroup, no allocation-failure warning.
        large.resize(frames.div_ceil(64), 0, GFP_KERNEL_ACCOUNT | __GFP_NOWARN)?;
        let (uaddr, len) = (spec.uaddr, spec.pages << HV_PAGE_SHIFT);
        KBox::pin_init(
            // INVARIANT: fields are initialised in the order written, so
            // `slat` is whole before `notifier` registers a pointer to it;
            // `slat` is pinned, and `notifier`, declared first, drops first.
            try_pin_init!(&this in Self {
                slat <- pin_init!(MovableSlat {
                    spec,
                    state <- new_mutex!(
                        MovableState {
                            mapped_upto: 0,
                            phase: Phase::Live,
                            held: PageRefs::new(),
                            large,
                        },
                        "MovableSlat::state"
                    ),
                }),
                // SAFETY: `this` points to the boxed `Movable` being
                // initialised, so the projection stays in bounds. `slat` is
                // initialised (written above), so the callback, which may
                // run as soon as the notifier is registered, sees a whole
                // `MovableSlat`; it is pinned in the box and outlives the
                // notifier: the notifier is the first field, so it drops
                // (unregisters, waiting for running callbacks) before `slat`
                // and before the box is freed. If registering fails, nothing
                // points to `slat` when pin-init drops it.
                notifier: unsafe {
                    IntervalNotifier::new(&raw const (*this.as_ptr()).slat, uaddr, len)
                }?,
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    /// The VMM's address space (for the mirror checker).
    pub(crate) fn mm(&self) -> &crate::sys::mm::MmRef {
        self.notifier.mm()
    }

    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    /// Holds the region lock while the region is live (for the mirror
    /// checker; see `check.rs` for the order it takes locks in).
    pub(crate) fn lock_live(&self) -> Option<impl Drop + '_> {
        let st = self.slat.state.lock();
        (st.phase == Phase::Live).then_some(st)
    }

    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    /// The notifier sequence now (`mmu_interval_read_begin`), for the
    /// mirror checker. May sleep; call without the region lock.
    pub(crate) fn read_begin(&self) -> u64 {
        self.notifier.read_begin()
    }

    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    /// Whether an invalidation ran since `seq`; call under [`Self::lock_live`].
    pub(crate) fn read_retry(&self, seq: u64) -> bool {
        self.notifier.read_retry(seq)
    }

    /// Maps the whole region NO_ACCESS ([`MovableSlat::map_initial`]).
    pub(crate) fn map_initial(&self) -> Result {
        self.slat.map_initial()
    }

    /// Handles a GPA intercept at `gfn` (inside the region). Sleeps.
    ///
    /// An access the region's flags do not allow (a write to read-only
    /// memory, a fetch from non-executable memory) is the VMM's business:
    /// mapping again would only make the guest intercept again.
    pub(crate) fn fault(&self, gfn: u64, access: InterceptAccess) -> Result<InterceptOutcome> {
        let start = Instant::<Monotonic>::now();
        let r = self.fault_timed(gfn, access);
        let ns = start.elapsed().as_nanos();
        Stats::add(
            &self.slat.spec.stats.fault_ns,
            u64::try_from(ns).unwrap_or(0),
        );
        r
    }

    fn fault_timed(&self, gfn: u64, access: InterceptAccess) -> Result<InterceptOutcome> {
        let spec = &self.slat.spec;
        let write = access == InterceptAccess::Write;
        if (write && !spec.writable) || (access == InterceptAccess::Execute && !spec.exec) {
            return Ok(InterceptOutcome::Forward);
        }
        let Some(mut window) = geometry::fault_window(spec.start_gfn, spec.pages, gfn) else {
            return Ok(InterceptOutcome::Forward);
        };
        Stats::add(&spec.stats.gpa_intercepts, 1);
        let n = window.count as usize;
        let mut hmm = KVVec::new();
        hmm.resize(n, HmmPfn::default(), GFP_KERNEL)?;
        let mut pages = KVVec::new();
        pages.resize(
            n,
            HostPage {
                pfn: 0,
                map_order: 0,
            },
            GFP_KERNEL,
        )?;
        // The pfn list of each map hypercall batch, built under the lock.
        let mut pfns = KVVec::new();
        pfns.resize(n, 0u64, GFP_KERNEL)?;

        for _ in 0..MAX_FAULT_TRIES {
            if crate::sys::page::fatal_signal_pending() {
                return Err(EINTR);
            }
            let n = window.count as usize;
            let (Some(hmm), Some(pages)) = (hmm.get_mut(..n), pages.get_mut(..n)) else {
                return Err(EINVAL);
            };
            let uaddr = spec.uaddr + ((window.first - spec.start_gfn) << HV_PAGE_SHIFT);
            // Fault for writing only the page the guest writes (and, in
            // private anonymous memory, pages not there yet; in hugetlb
            // memory, its huge page), then the whole window for reading: a
            // read must not break COW, allocate or dirty, and works on
            // read-only VMAs. The write faults come first, in ranges of
            // their own (HMM write-faults to the end of a page table
            // whatever the other pages ask); the read fault's sequence
            // validates everything mapped below.
            if let Some(w) = geometry::write_index(window, gfn, write) {
                let Some(scratch) = pfns.get_mut(..n) else {
                    return Err(EINVAL);
                };
                match self.fault_writes(uaddr, w, hmm, scratch) {
                    Ok(true) => {}
                    Ok(false) => return Ok(InterceptOutcome::Forward),
                    Err(e) => return Err(e),
                }
            }
            let seq = match self.notifier.hmm_fault(uaddr, false, hmm) {
                Ok(seq) => seq,
                // HMM ran out of retries: the window's pages keep being
                // invalidated while it faults the others in (reclaim under
                // memory pressure, migration). Fault fewer pages around
                // `gfn` (down to the one page) and start over, within this
                // loop's bound, instead of failing MSHV_RUN_VP with EBUSY.
                Err(e) if e == EBUSY => {
                    Stats::add(&spec.stats.fault_retries, 1);
                    window = geometry::narrow_window(window, gfn);
                    crate::sys::page::cond_resched();
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (p, h) in pages.iter_mut().zip(hmm.iter()) {
                if !h.valid() {
                    return Err(EFAULT);
                }
                *p = HostPage {
                    pfn: h.pfn(),
                    map_order: h.map_order(),
                };
            }
            let mut st = self.slat.state.lock();
            if st.phase != Phase::Live {
                return Ok(InterceptOutcome::Forward);
            }
            if self.notifier.read_retry(seq) {
                drop(st);
                Stats::add(&spec.stats.fault_retries, 1);
                crate::sys::page::cond_resched();
                continue;
            }
            match self.slat.map_window(&mut st, window, pages, hmm, &mut pfns) {
                Ok(()) => return Ok(InterceptOutcome::Mapped),
                Err(e) if e.needs_memory() => {
                    drop(st);
                    Stats::add(&spec.stats.deposit_retries, 1);
                    calls::deposit(&*spec.hv, spec.pt, calls::MAP_DEPOSIT_PAGES)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(EAGAIN)
    }

    /// The write half of a write fault on the window at `uaddr` (of
    /// `hmm.len()` pages) whose page `w` the guest wrote: faults for writing
    /// the pages [`geometry::fault_for_write`] picks, in maximal runs, using
    /// `hmm` and `scratch` (as long as `hmm`) as scratch space. `Ok(false)`:
    /// page `w` cannot be written (a read-only VMA, no VMA): the VMM gets
    /// the intercept, as upstream. Failures elsewhere only cost the guest an
    /// intercept later.
    fn fault_writes(
        &self,
        uaddr: u64,
        w: usize,
        hmm: &mut [HmmPfn],
        scratch: &mut [u64],
    ) -> Result<bool> {
        // A failed snapshot only costs the guest more intercepts.
        let backing = self
            .notifier
            .hmm_snapshot(uaddr, hmm)
            .unwrap_or(geometry::Backing::Other);
        for (i, (slot, h)) in scratch.iter_mut().zip(hmm.iter()).enumerate() {
            *slot = u64::from(geometry::fault_for_write(i, Some(w), backing, h.valid()));
        }
        let mut res = Ok(true);
        geometry::for_each_run(
            scratch.len(),
            |i| scratch.get(i) == Some(&1),
            |first, count| {
                if !matches!(res, Ok(true)) {
                    return;
                }
                let Some(out) = hmm.get_mut(first..first + count) else {
                    return;
                };
                let at = uaddr + ((first as u64) << HV_PAGE_SHIFT);
                match self.notifier.hmm_fault(at, true, out) {
                    Ok(_) => {}
                    Err(e) if e == EINTR => res = Err(e),
                    Err(e) if (first..first + count).contains(&w) => {
                        if e == EPERM || e == EFAULT {
                            res = Ok(false);
                        } else if e != EBUSY {
                            res = Err(e);
                        }
                    }
                    Err(_) => {}
                }
            },
        );
        res
    }

    /// Unmaps the region's whole GPA range and stops faults. Called once on
    /// removal, before the notifier is unregistered. On failure some
    /// entries may remain: the region becomes [`Phase::Kept`] (its
    /// invalidations go on unmapping, see `RegionSet::retire`) and takes a
    /// reference on every page the VMM maps now, which covers every page a
    /// surviving accessible entry can map (invariant 1: an accessible entry
    /// maps the page the VMM maps there).
    ///
    /// In chunks like [`Movable::map_initial`], rescheduling between them
    /// (the lock stays held: an invalidation of a region being removed must
    /// wait until its pages are unmapped). Not interruptible: removal must
    /// finish.
    pub(crate) fn remove(&self) -> Result {
        let spec = &self.slat.spec;
        let mut st = self.slat.state.lock();
        st.phase = Phase::Removed;
        let mut res = Ok(());
        let mut next = 0u64;
        let upto = st.mapped_upto.min(spec.pages);
        while next < upto {
            let chunk = geometry::setup_chunk(spec.start_gfn, upto, next);
            let r = self.slat.unmap(&st, chunk);
            if res.is_ok() {
                res = r;
            }
            next = chunk.end();
            crate::sys::page::cond_resched();
        }
        let Err(e) = res else {
            return Ok(());
        };
        st.phase = Phase::Kept;
        drop(st);
        self.hold_pages();
        Err(e.error.into())
    }

    /// Takes a reference on each page the VMM maps in the region now
    /// ([`MovableState::held`]), a chunk at a time: snapshot without
    /// faulting, then references under the lock if no invalidation ran
    /// meanwhile (the fault path's protocol; a page invalidated before its
    /// chunk is taken was unmapped, or remapped NO_ACCESS, by that
    /// invalidation). Best effort: without memory for the references, the
    /// invalidations alone protect the pages.
    fn hold_pages(&self) {
        const CHUNK: u64 = 512;
        let spec = &self.slat.spec;
        let mut snap = KVVec::new();
        if snap
            .resize(
                spec.pages.min(CHUNK) as usize,
                HmmPfn::default(),
                GFP_KERNEL,
            )
            .is_err()
        {
            return;
        }
        // Filled outside the region lock (it allocates), moved in at the end.
        let mut held = PageRefs::new();
        let mut off = 0u64;
        while off < spec.pages {
            let count = (spec.pages - off).min(CHUNK) as usize;
            let Some(snap) = snap.get_mut(..count) else {
                break;
            };
            let uaddr = spec.uaddr + (off << HV_PAGE_SHIFT);
            for _ in 0..MAX_FAULT_TRIES {
                let Ok(seq) = self.notifier.hmm_present(uaddr, snap) else {
                    continue;
                };
                let present = snap.iter().filter(|h| h.valid()).count();
                if held.reserve(present).is_err() {
                    pr_err!("pt {}: no memory to hold a kept region's pages\n", spec.pt);
                    break;
                }
                let st = self.slat.state.lock();
                if self.notifier.read_retry(seq) {
                    drop(st);
                    crate::sys::page::cond_resched();
                    continue;
                }
                for h in snap.iter().filter(|h| h.valid()) {
                    // SAFETY: `h` comes from the snapshot whose sequence was
                    // just validated under the region lock, still held.
                    unsafe { held.get(h.pfn()) };
                }
                break;
            }
            off += count as u64;
            crate::sys::page::cond_resched();
        }
        let mut st = self.slat.state.lock();
        // Only this function fills it, once: nothing is dropped here.
        core::mem::swap(&mut st.held, &mut held);
        drop(st);
        drop(held);
    }

    /// Never releases the pages held after a failed removal (the
    /// partition could not be deleted: the hypervisor may map them for good).
    pub(crate) fn keep_forever(&self) {
        self.slat.state.lock().held.keep_forever();
    }
}

impl MovableSlat {
    fn frame_bit(&self, frame_gfn: u64) -> Option<(usize, u64)> {
        let first_frame = self.spec.start_gfn / geometry::LARGE_PAGES;
        let idx = (frame_gfn / geometry::LARGE_PAGES).checked_sub(first_frame)? as usize;
        Some((idx / 64, 1u64 << (idx % 64)))
    }

    fn is_large(&self, st: &MovableState, frame_gfn: u64) -> bool {
        self.frame_bit(frame_gfn)
            .and_then(|(w, b)| st.large.get(w).map(|v| v & b != 0))
            .unwrap_or(false)
    }

    fn set_large(&self, st: &mut MovableState, frame_gfn: u64, on: bool) {
        if let Some((w, b)) = self.frame_bit(frame_gfn) {
            if let Some(v) = st.large.get_mut(w) {
                if on {
                    *v |= b;
                } else {
                    *v &= !b;
                }
            }
        }
    }

    /// Records the `frames` 2 MiB frames from `gfn` as mapped by one
    /// 2 MiB entry each.
    fn set_large_frames(&self, st: &mut MovableState, gfn: u64, frames: u64) {
        for f in 0..frames {
            self.set_large(st, gfn + f * geometry::LARGE_PAGES, true);
        }
    }

    /// Remaps `reps` reps from `gfn` NO_ACCESS (2 MiB reps if `large`).
    fn map_no_access(&self, gfn: u64, reps: u64, large: bool) -> Result<(), crate::hv::RepError> {
        calls::map_no_access(
            &*self.spec.hv,
            self.spec.pt,
            gfn,
            reps,
            large,
            &self.spec.stats.hypercalls,
        )
    }

    /// Maps the whole region NO_ACCESS: whole aligned frames as 2 MiB
    /// entries, the rest as 4 KiB entries. Deposits as needed (no lock the
    /// notifier takes is held: the state lock is dropped around deposits).
    ///
    /// Works in chunks of [`geometry::SETUP_CHUNK_PAGES`] (ending on
    /// absolute 2 MiB gfn frames, so the layout is the same as in one go):
    /// the lock is dropped between chunks, the task may be rescheduled, and
    /// a fatal signal stops the set-up with `EINTR`. Deposit rounds are
    /// bounded per chunk. On error the caller removes the region
    /// ([`Movable::remove`]), which unmaps what was mapped.
    pub(crate) fn map_initial(&self) -> Result {
        let mut next = 0u64;
        while next < self.spec.pages {
            let chunk = geometry::setup_chunk(self.spec.start_gfn, self.spec.pages, next);
            self.map_initial_chunk(chunk)?;
            next = chunk.end();
            crate::sys::page::cond_resched();
            if crate::sys::page::fatal_signal_pending() {
                return Err(EINTR);
            }
        }
        Ok(())
    }

    /// [`MovableSlat::map_initial`] of one chunk (page offsets in the region).
    fn map_initial_chunk(&self, chunk: GfnRange) -> Result {
        for _ in 0..calls::MAX_DEPOSIT_ROUNDS {
            let mut st = self.state.lock();
            // The first failure, and the region page offset its call reached.
            let mut err = None;
            geometry::split_by_frames(
                self.spec.start_gfn,
                chunk,
                |_| true,
                |gfn, reps, large| {
                    // Record the large frames whatever happens: a retry maps
                    // the same layout again.
                    if large {
                        self.set_large_frames(&mut st, gfn, reps);
                    }
                    if err.is_none() {
                        err = self.map_no_access(gfn, reps, large).err().map(|e| {
                            let reached = gfn + geometry::pages_of_reps(e.done as u64, large);
                            (e, reached - self.spec.start_gfn)
                        });
                    }
                },
            );
            // Only what the hypervisor mapped can have entries: removal and
            // invalidations stop there. A set-up refused part-way (a gfn the
            // hypervisor does not accept) must not leave the region's
            // removal unmapping entries that never existed, which the
            // hypervisor refuses too.
            let reached = err.as_ref().map_or(chunk.end(), |&(_, r)| r);
            st.mapped_upto = st.mapped_upto.max(reached);
            drop(st);
            match err {
                None => return Ok(()),
                Some((e, _)) if e.error.needs_memory() => {
                    calls::deposit(&*self.spec.hv, self.spec.pt, calls::MAP_DEPOSIT_PAGES)?;
                }
                Some((e, _)) => return Err(e.error.into()),
            }
        }
        Err(ENOMEM)
    }

    /// Maps a faulted window under the lock: 2 MiB entries where the gfn
    /// frame, the pfn frame and the VMM's mapping allow, 4 KiB otherwise;
    /// writable only where the VMM's mapping is, and then the page is marked
    /// dirty (guest writes never set the dirty bit of the VMM's PTE).
    /// `pfns` is scratch space for the pfn lists, as long as `pages`: a run
    /// of equal permissions goes to [`calls::map_batched`] whole, which
    /// splits it into hypercalls of one input page each.
    fn map_window(
        &self,
        st: &mut MovableState,
        window: GfnRange,
        pages: &[HostPage],
        hmm: &[HmmPfn],
        pfns: &mut [u64],
    ) -> Result<(), crate::hv::HvError> {
        let base = abi::HV_MAP_GPA_READABLE
            | abi::HV_MAP_GPA_ADJUSTABLE
            | if self.spec.exec {
                abi::HV_MAP_GPA_EXECUTABLE
            } else {
                0
            };
        let mut result = Ok(());
        geometry::plan_runs(window.first, pages, |run| {
            if result.is_err() {
                return;
            }
            let mut i = run.index;
            let end = run.index + run.count;
            while i < end && result.is_ok() {
                // A sub-run of equal write permission (uniform within a large chunk).
                let w = self.spec.writable && hmm.get(i).is_some_and(|h| h.writable());
                let step = if run.large {
                    geometry::LARGE_PAGES as usize
                } else {
                    1
                };
                let mut j = i;
                let mut k = 0;
                while j < end
                    && k < pfns.len()
                    && (self.spec.writable && hmm.get(j).is_some_and(|h| h.writable())) == w
                {
                    // Both exist (`k < pfns.len()`, `j < end <= pages.len()`);
                    // a missing pfn is an error, never pfn 0.
                    let (Some(slot), Some(p)) = (pfns.get_mut(k), pages.get(j)) else {
                        result = Err(crate::hv::HvError::INVALID_PARAMETER);
                        break;
                    };
                    *slot = p.pfn;
                    k += 1;
                    j += step;
                }
                if result.is_err() {
                    break;
                }
                let flags = base
                    | if w { abi::HV_MAP_GPA_WRITABLE } else { 0 }
                    | if run.large {
                        abi::HV_MAP_GPA_LARGE_PAGE
                    } else {
                        0
                    };
                let gfn = window.first + i as u64;
                let mapped = calls::map_batched(
                    &*self.spec.hv,
                    self.spec.pt,
                    gfn,
                    flags,
                    &pfns[..k],
                    &self.spec.stats.hypercalls,
                );
                trace::map_gpa(
                    self.spec.pt,
                    gfn,
                    k as u32,
                    run.large,
                    w,
                    mapped
                        .as_ref()
                        .map_or_else(|e| Error::from(e.error).to_errno(), |()| 0),
                );
                match mapped {
                    Ok(()) => {
                        if w {
                            // Guest writes will not dirty the VMM's PTE.
                            for &pfn in &pfns[..k] {
                                // SAFETY: `pfn` comes from this fault's HMM
                                // snapshot, whose sequence the caller
                                // validated under the region's lock (`st`),
                                // still held.
                                unsafe { crate::sys::mm::mark_pfn_dirty(pfn) };
                            }
                        }
                        if run.large {
                            Stats::add(&self.spec.stats.mapped_2m, k as u64);
                            self.set_large_frames(st, gfn, k as u64);
                        } else {
                            Stats::add(&self.spec.stats.mapped_4k, k as u64);
                            // 4 KiB entries mean the frame's large entry was split.
                            self.set_large(st, gfn & !(geometry::LARGE_PAGES - 1), false);
                            let last = gfn + k as u64 - 1;
                            self.set_large(st, last & !(geometry::LARGE_PAGES - 1), false);
                        }
                    }
                    Err(e) => result = Err(e.error),
                }
                i = j;
            }
        });
        result
    }

    /// Applies `op(gfn, reps, large)` to `range` (page offsets) in reps that
    /// never split a large entry. Goes on after a failure (unmapping as much
    /// as possible matters more than stopping) and returns the first one.
    fn for_each_rep(
        &self,
        st: &MovableState,
        range: GfnRange,
        mut op: impl FnMut(u64, u64, bool) -> Result<(), crate::hv::RepError>,
    ) -> Result<(), crate::hv::RepError> {
        let mut res = Ok(());
        geometry::split_by_frames(
            self.spec.start_gfn,
            range,
            |f| self.is_large(st, f),
            |gfn, reps, large| {
                let r = op(gfn, reps, large);
                if res.is_ok() {
                    res = r;
                }
            },
        );
        res
    }

    /// Remaps `range` NO_ACCESS, widened to whole large frames so that no
    /// large entry is split. Under the lock; no allocation.
    ///
    /// Every whole 2 MiB frame in the range becomes one 2 MiB NO_ACCESS
    /// entry, whatever it was mapped as (like [`MovableSlat::map_initial`]): one
    /// rep instead of 512, and the hypervisor frees the frame's page table
    /// instead of needing one. The next 4 KiB fault in the frame splits it
    /// again, where deposits are allowed. Like [`MovableSlat::for_each_rep`], a
    /// failed run does not stop the others; the first error is returned.
    fn remap_no_access(
        &self,
        st: &mut MovableState,
        range: GfnRange,
    ) -> Result<(), crate::hv::RepError> {
        let range = self.widen(st, range);
        Stats::add(&self.spec.stats.remapped_4k, range.count);
        let mut res = Ok(());
        geometry::split_by_frames(
            self.spec.start_gfn,
            range,
            |_| true,
            |gfn, reps, large| {
                let r = self.map_no_access(gfn, reps, large);
                if large {
                    let done = r.as_ref().map_or_else(|e| e.done as u64, |()| reps);
                    self.set_large_frames(st, gfn, done);
                }
                if res.is_ok() {
                    res = r;
                }
            },
        );
        res
    }

    /// Unmaps `range`, widened like [`MovableSlat::remap_no_access`].
    fn unmap(&self, st: &MovableState, range: GfnRange) -> Result<(), crate::hv::RepError> {
        let range = self.widen(st, range);
        self.for_each_rep(st, range, |gfn, reps, large| {
            calls::unmap_batched(
                &*self.spec.hv,
                self.spec.pt,
                gfn,
                reps,
                large,
                &self.spec.stats.hypercalls,
            )
        })
    }

    fn widen(&self, st: &MovableState, range: GfnRange) -> GfnRange {
        geometry::widen_to_large_frames(self.spec.start_gfn, self.spec.pages, range, |f| {
            self.is_large(st, f)
        })
    }
}

impl Invalidate for MovableSlat {
    fn invalidate(&self, inv: &Invalidation<'_>, start: u64, end: u64, blockable: bool) -> bool {
        let Some(mut st) = super::lock_for_invalidation(&self.state, blockable, &self.spec.stats)
        else {
            return false;
        };
        inv.set_seq();
        // A removed region's GPA range may already belong to a new region.
        if st.phase == Phase::Removed {
            return true;
        }
        // Pages past `mapped_upto` have no entry yet (set-up maps them
        // NO_ACCESS when it gets there).
        let Some(range) = geometry::clamp_invalidation(self.spec.uaddr, st.mapped_upto, start, end)
        else {
            return true;
        };
        Stats::add(&self.spec.stats.invalidations, 1);
        trace::invalidate(
            self.spec.pt,
            self.spec.start_gfn + range.first,
            range.count,
            blockable,
        );
        if st.phase == Phase::Kept {
            // The hypervisor refused to unmap this region, whose GPA range
            // stays reserved to it: unmap what Linux takes back now, and
            // failing that at least take access away.
            if self.unmap(&st, range).is_ok() {
                return true;
            }
            Stats::add(&self.spec.stats.invalidate_failures, 1);
            if self.remap_no_access(&mut st, range).is_ok() {
                return true;
            }
        } else if self.remap_no_access(&mut st, range).is_ok() {
            return true;
        } else {
            // Remapping needs no hypervisor memory by construction, so this
            // is an injected or hypervisor failure. The page must not stay
            // reachable: unmap instead. The guest's next access there comes
            // back as HVMSG_UNMAPPED_GPA, which `Vp::run_vp` resolves with a
            // fault like a GPA intercept.
            Stats::add(&self.spec.stats.invalidate_failures, 1);
            if self.unmap(&st, range).is_ok() {
                return true;
            }
        }
        pr_err!(
            "pt {}: could not invalidate gfn range at {:#x} ({} pages held); guest may see freed memory\n",
            self.spec.pt,
            self.spec.start_gfn + range.first,
            st.held.len()
        );
        // Linux ignores the answer to a blockable invalidation; a
        // non-blockable one must not claim success.
        blockable
    }
}
