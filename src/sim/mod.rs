// SPDX-License-Identifier: GPL-2.0

//! The simulated hypervisor (`backend=sim`).
//!
//! [`Sim`] implements [`Hypervisor`] in software so the whole driver can be
//! tested on any x86_64 machine: partitions with the Hyper-V lifecycle
//! (created → initialized → finalized), a deposit pool per partition
//! ([`pool`]) from which every hypervisor object is carved, a SLAT built from
//! pool pages ([`slat`]), VPs that run guest code on an x86 interpreter
//! ([`cpu`], [`vp`]) with Hyper-V register names ([`regs`]), partition
//! properties ([`props`]), raw hypercalls ([`raw_calls`]) and fault injection
//! ([`inject`]).
//!
//! Statuses follow Hyper-V: an unknown partition id is
//! `HV_STATUS_INVALID_PARTITION_ID`, a call in the wrong lifecycle state
//! `HV_STATUS_INVALID_PARTITION_STATE`, a missing or duplicate VP
//! `HV_STATUS_INVALID_VP_INDEX`, and a pool too small
//! `HV_STATUS_INSUFFICIENT_MEMORY` (before any side effect of the failing
//! rep, so the caller deposits and resumes).
//!
//! # Pool charges
//!
//! | operation | pool pages |
//! |---|---|
//! | `INITIALIZE_PARTITION` | [`INIT_PAGES`] until finalize |
//! | `CREATE_PARTITION` | [`PART_ROOT_PAGES`] of the **root's** pool, until the partition is deleted |
//! | `CREATE_VP` | [`vp::VP_PAGES`] (register page, message page, 2 stats pages, [`vp::VP_BOOKKEEPING_PAGES`]) until the VP is deleted or the partition finalized |
//! | a SLAT table | 1 while it has entries (a fresh 4 KiB map needs up to 4, a 2 MiB map up to 3) |
//! | splitting a 2 MiB entry | 1 (it becomes a table) |
//!
//! # Allocation
//!
//! No hypercall sleeps or allocates with `GFP_KERNEL`. What a hypercall
//! creates is paid for with pool pages, taken before anything is
//! allocated: SLAT tables and VP pages *are* pool pages; the emulator's own
//! objects (the partition, its VPs' state buffers and register files, table
//! nodes) are `GFP_ATOMIC` slab allocations charged against pool pages
//! ([`pool::pages_for`]; the table above), so they exist only where Hyper-V's
//! would, and a short pool is `INSUFFICIENT_MEMORY` (the root's:
//! `INSUFFICIENT_ROOT_MEMORY`). A slab failure after the charge is
//! `INSUFFICIENT_ROOT_MEMORY` with the pages given back. `deposit` grows
//! the pool's free list with `GFP_ATOMIC` outside the pool's lock.
//!
//! # Locking
//!
//! - [`Sim`]`::parts` (spinlock): the partition table.
//! - [`ChildPartition`]`::inner` (spinlock): one partition's state, pool, SLAT,
//!   VP table and properties. Guest memory accesses take it for the
//!   translation *and* the copy (see [`vp`]).
//! - [`vp::Vp`]`::regs` (spinlock): one VP's registers.
//! - [`vp::Vp`]`::lapic` (spinlock): one VP's local APIC and HLT state; a
//!   VP waiting in HLT sleeps on `Vp::wake` with it released.
//! - [`ChildPartition`]`::irq` (mutex): notification receiver and doorbells
//!   ([`irq`]); notifications are called with no sim lock held.
//! - [`vp::Vp`]`::state` (spinlock, leaf): one VP's state blobs
//!   ([`vp_state`]); taken after the partition's `inner` is released.
//! - `Sim::root_pool` (spinlock): pages deposited into the root.
//! - `Sim::deposited` (spinlock, leaf): the pfns of every pool page
//!   ([`pool::Deposited`]).
//!
//! Order: `parts` may be held while taking `inner` (delete only);
//! `deposited` is taken inside `inner` or `root_pool` (deposit, withdraw,
//! map), so a page is in a pool exactly while it is in the set. No other
//! two of these locks are ever held at the same time; in particular a VP's
//! registers, its LAPIC and its partition's `inner` never nest.

// The interpreter is plain `core` code with a `pub` API (so it can also be
// unit-tested on the host); inside the module it is crate-private.
mod access;
#[allow(unreachable_pub)]
pub(crate) mod cpu;
pub(crate) mod emu;
pub(crate) mod inject;
mod intercept;
mod irq;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod lapic;
mod le;
mod pool;
mod props;
mod raw_calls;
mod reg_page;
mod regs;
pub(crate) mod sched;
mod slat;
pub(crate) mod synic;
mod vp;
mod vp_state;

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
use crate::tlfs::RegValue;
use crate::tlfs::{
    abi, CreatePartition, HvError, HvResult, RepError, RepResult, VpPage, VpStateData,
    VP_STATE_INLINE,
};
use kernel::{
    new_spinlock,
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, SpinLock,
    },
};
use pool::{Deposited, Pool};
use props::Props;
use slat::Slat;
pub(crate) use vp::VP_PAGES;
use vp::{Vp, MESSAGE_PAGE, REGISTER_PAGE};

/// Pool pages `INITIALIZE_PARTITION` takes (the partition's own structures).
pub(crate) const INIT_PAGES: usize = 16;
/// Bytes charged for one node of a partition or VP table (an rbtree node:
/// three links, the key and an `Arc` or a VP entry, rounded up).
pub(crate) const TABLE_NODE_BYTES: usize = 128;
/// Root pool pages `CREATE_PARTITION` takes, until the partition is deleted
/// (`pool::pages_for`): the [`ChildPartition`], its CPUID result list and its
/// node in the partition table. Hyper-V carves a new partition out of the
/// root's pool too: upstream deposits into the root on
/// `INSUFFICIENT_MEMORY` from `CREATE_PARTITION`.
pub(crate) const PART_ROOT_PAGES: usize = pool::pages_for(
    core::mem::size_of::<ChildPartition>()
        + intercept::MAX_CPUID_RESULTS * core::mem::size_of::<intercept::CpuidResult>()
        + TABLE_NODE_BYTES,
);
/// Most extra root pages the `root_pages` injection adds to a creation.
const MAX_INJECTED_ROOT_PAGES: usize = 8;
/// Room for a partition's root charge (a literal: the charge depends on
/// the partition's size, which holds this array).
const MAX_ROOT_CHARGE: usize = 24;
const _: () = assert!(PART_ROOT_PAGES + MAX_INJECTED_ROOT_PAGES <= MAX_ROOT_CHARGE);
/// VP indices must be below this (`HV_MAXIMUM_PROCESSORS` on x64).
pub(crate) const MAX_VPS: u32 = 2048;
/// Most reps one map or unmap call takes (one input page).
const MAX_REPS: usize = 512;

/// Lifecycle state of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PartState {
    /// Created; early properties may be set.
    Created,
    /// Initialized: VPs and GPA mappings may exist.
    Initialized,
    /// Finalized: every VP and mapping is gone; only withdraw and delete
    /// remain useful.
    Finalized,
}

/// A VP in its partition's table, with the pool pages it holds.
pub(crate) struct VpEntry {
    /// The VP.
    vp: Arc<Vp>,
    /// Its pool pages ([`REGISTER_PAGE`], [`MESSAGE_PAGE`], two more).
    pages: [u64; VP_PAGES],
    /// The state pages the root has mapped, a bit per [`VpPage`] value.
    mapped: u8,
}

/// The lock-protected state of a partition.
///
/// # Invariants
///
/// The pool pages held by the SLAT, by the VPs in `vps` and (while
/// `state == Initialized`) `init_pages` are lent out of `pool` exactly once.
pub(crate) struct PartInner {
    /// Lifecycle state.
    pub(crate) state: PartState,
    /// The deposit pool.
    pub(crate) pool: Pool,
    /// The GPA map.
    pub(crate) slat: Slat,
    /// VPs by index.
    vps: RBTree<u32, VpEntry>,
    /// Stored properties.
    pub(crate) props: Props,
    /// Installed intercepts.
    pub(crate) intercepts: intercept::Installed,
    /// Pages `INITIALIZE_PARTITION` took.
    init_pages: [u64; INIT_PAGES],
    /// Root pool pages `CREATE_PARTITION` took: the first `root_charged`
    /// entries, given back to the root pool by `DELETE_PARTITION`.
    root_pages: [u64; MAX_ROOT_CHARGE],
    root_charged: usize,
    /// Injected (`sim/inject_spurious_intercept`): the next `.1` guest
    /// accesses to gfn `.0` are GPA intercepts although the SLAT allows
    /// them, as a hypervisor that wants more than the root mapped.
    spurious: (u64, u32),
}

impl PartInner {
    /// Consumes one injected spurious intercept of `gfn`, if any is armed.
    pub(crate) fn take_spurious(&mut self, gfn: u64) -> bool {
        let (at, left) = self.spurious;
        if at != gfn || left == 0 {
            return false;
        }
        self.spurious.1 = left - 1;
        true
    }

    /// The intercept message page of `vp`, if it is still this partition's
    /// VP.
    pub(crate) fn vp_message_page(&self, vp: &Vp) -> Option<u64> {
        self.vps
            .get(&vp.index)
            .filter(|e| core::ptr::eq(&*e.vp, vp))
            .map(|e| e.pages[MESSAGE_PAGE])
    }

    /// Gives every VP, SLAT table and partition page back to the pool;
    /// returns the VP table for the caller to drop outside the lock.
    fn release_objects(&mut self) -> RBTree<u32, VpEntry> {
        let vps = core::mem::take(&mut self.vps);
        for entry in vps.values() {
            for &pfn in entry.pages.iter() {
                self.pool.give_back(pfn);
            }
        }
        self.slat.clear(&mut self.pool);
        if self.state == PartState::Initialized {
            for &pfn in self.init_pages.iter() {
                self.pool.give_back(pfn);
            }
        }
        // INVARIANT: nothing is lent out any more.
        self.init_pages = [0; INIT_PAGES];
        vps
    }
}

impl Drop for PartInner {
    fn drop(&mut self) {
        // No VP runs: a run holds a reference to the partition. The pool
        // frees every page when it is dropped right after this.
        drop(self.release_objects());
    }
}

/// A child partition of the emulated hypervisor (the driver's own object
/// for it is `crate::partition::Partition`).
#[pin_data]
pub(crate) struct ChildPartition {
    /// The partition id.
    pub(crate) id: u64,
    /// What it was created with.
    pub(crate) create: CreatePartition,
    /// State, pool, SLAT, VPs and properties.
    #[pin]
    pub(crate) inner: SpinLock<PartInner>,
    /// Connected doorbells ([`irq`]). A leaf spinlock: the interpreter
    /// looks doorbells up during a dispatch.
    #[pin]
    pub(crate) irq: SpinLock<irq::SimIrq>,
    /// The root's SynIC, where this partition's signals, EOIs and
    /// doorbells go.
    pub(crate) synic: Arc<synic::EmuSynic>,
    /// The scheduler its VPs run under.
    pub(crate) sched: Arc<sched::Sched>,
}

impl ChildPartition {
    /// Allocates partition `id`, which holds `root_pages[..root_charged]`
    /// of the root pool. Never sleeps.
    fn new(
        id: u64,
        create: CreatePartition,
        synic: Arc<synic::EmuSynic>,
        sched: Arc<sched::Sched>,
        root_pages: [u64; MAX_ROOT_CHARGE],
        root_charged: usize,
    ) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(ChildPartition {
                id,
                create,
                inner <- new_spinlock!(
                    PartInner {
                        state: PartState::Created,
                        pool: Pool::new(),
                        slat: Slat::new(),
                        vps: RBTree::new(),
                        props: Props::new(),
                        intercepts: intercept::Installed::new(),
                        init_pages: [0; INIT_PAGES],
                        root_pages,
                        root_charged,
                        spurious: (0, 0),
                    },
                    "mshv_rs_sim_partition"
                ),
                irq <- new_spinlock!(irq::SimIrq::new(), "mshv_rs_sim_irq"),
                synic,
                sched,
            }),
            GFP_ATOMIC,
        )
    }
}

/// Statistics of one partition, for debugfs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PartitionStats {
    /// Pages owned by the pool.
    pub(crate) pool_pages: usize,
    /// Free pool pages.
    pub(crate) pool_free: usize,
    /// SLAT table pages.
    pub(crate) slat_tables: usize,
    /// 4 KiB SLAT entries.
    pub(crate) small_entries: usize,
    /// 2 MiB SLAT entries.
    pub(crate) large_entries: usize,
    /// SLAT entries granting some access.
    pub(crate) accessible_entries: usize,
    /// VPs.
    pub(crate) vps: usize,
}

/// The simulated hypervisor.
#[pin_data(PinnedDrop)]
pub(crate) struct Sim {
    /// Partitions by id.
    #[pin]
    parts: SpinLock<RBTree<u64, Arc<ChildPartition>>>,
    /// Pages deposited into the root (`HV_PARTITION_ID_SELF`).
    #[pin]
    root_pool: SpinLock<Pool>,
    /// The pfns of the pages of every pool, the root's included.
    #[pin]
    deposited: SpinLock<Deposited>,
    /// The next partition id (ids are never reused while loaded).
    next_id: Atomic<u64>,
    /// Injected failures.
    inject: inject::Inject,
    /// The root's SynIC ([`synic`]).
    pub(crate) synic: Arc<synic::EmuSynic>,
    /// The scheduler ([`sched`]).
    pub(crate) sched: Arc<sched::Sched>,
    /// Hypercalls that succeeded, by call code (`sim/calls`).
    pub(crate) calls: CallCounts,
}

/// Call codes [`CallCounts`] keeps (every code the emulator answers is
/// below).
const CALL_CODES: usize = 0x110;

/// Hypercalls that succeeded, by call code: what a test reads to know a
/// call reached the hypervisor (`sim/calls`).
pub(crate) struct CallCounts([Atomic<u64>; CALL_CODES]);

impl CallCounts {
    fn new() -> Self {
        Self(core::array::from_fn(|_| Atomic::new(0)))
    }

    /// Counts one successful call of `code`.
    pub(crate) fn add(&self, code: u16) {
        if let Some(c) = self.0.get(usize::from(code)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// `(code, successful calls)` for every code called at least once.
    pub(crate) fn nonzero(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .map(|(code, c)| (code, c.load(Relaxed)))
            .filter(|&(_, n)| n != 0)
    }
}

/// The pool of a partition's inner state.
fn part_pool(inner: &mut PartInner) -> &mut Pool {
    &mut inner.pool
}

/// The root pool itself.
fn root_pool(pool: &mut Pool) -> &mut Pool {
    pool
}

/// Deposits the longest prefix of `pfns` that [`Deposited::first_refused`]
/// accepts into the pool `get` finds in `lock`'s data and records it in
/// `deposited`, growing both lists (outside the locks) first if needed.
/// Returns the length of that prefix.
fn deposit_locked<T: Unpin>(
    lock: &SpinLock<T>,
    get: fn(&mut T) -> &mut Pool,
    deposited: &SpinLock<Deposited>,
    pfns: &[u64],
) -> HvResult<usize> {
    let no_mem = HvError::INSUFFICIENT_ROOT_MEMORY;
    let n = pfns.len();
    loop {
        let (pool_need, set_need) = {
            let mut guard = lock.lock();
            let pool = get(&mut guard);
            let mut set = deposited.lock();
            if pool.has_room(n) && set.has_room(n) {
                let taken = set.first_refused(pfns).unwrap_or(n);
                let head = pfns.get(..taken).unwrap_or(&[]);
                // SAFETY: by the contract of `Hypervisor::deposit`, the
                // driver gave these pages up with `OwnedPage::into_pfn` and
                // hands them over to the hypervisor now; `first_refused`
                // made sure no pool owns any of them yet.
                unsafe { pool.deposit(head) }.map_err(|_| no_mem)?;
                // Cannot fail: checked just above, under the same locks.
                set.insert(head).map_err(|_| no_mem)?;
                return Ok(taken);
            }
            let need = |room: bool, want: usize| (!room).then_some(want);
            (
                need(pool.has_room(n), pool.capacity_for(n)),
                need(set.has_room(n), set.capacity_for(n)),
            )
        };
        let alloc = |want: Option<usize>| -> HvResult<Option<KVec<u64>>> {
            want.map(|c| KVec::with_capacity(c, GFP_ATOMIC).map_err(|_| no_mem))
                .transpose()
        };
        let (pool_bigger, set_bigger) = (alloc(pool_need)?, alloc(set_need)?);
        let old = {
            let mut guard = lock.lock();
            let old_pool = pool_bigger.map(|b| get(&mut guard).grow(b));
            let old_set = set_bigger.map(|b| deposited.lock().grow(b));
            (old_pool, old_set)
        };
        drop(old);
    }
}

/// Withdraws up to `out.len()` free pages of the pool `get` finds in
/// `lock`'s data into `out` and forgets them in `deposited`; returns how
/// many. Never allocates.
fn withdraw_locked<T: Unpin>(
    lock: &SpinLock<T>,
    get: fn(&mut T) -> &mut Pool,
    deposited: &SpinLock<Deposited>,
    out: &mut [u64],
) -> usize {
    let mut guard = lock.lock();
    let n = get(&mut guard).withdraw(out);
    deposited.lock().remove(out.get_mut(..n).unwrap_or(&mut []));
    n
}

impl Sim {
    /// Creates the simulated hypervisor, with no partition.
    pub(crate) fn new(scheduler: sched::Scheduler) -> Result<Arc<Sim>> {
        let synic = Arc::new(synic::EmuSynic::new()?, GFP_KERNEL)?;
        let sched = sched::Sched::new(scheduler)?;
        Arc::pin_init(
            pin_init!(Sim {
                parts <- new_spinlock!(RBTree::new(), "mshv_rs_sim_parts"),
                root_pool <- new_spinlock!(Pool::new(), "mshv_rs_sim_root_pool"),
                deposited <- new_spinlock!(Deposited::new(), "mshv_rs_sim_deposited"),
                next_id: Atomic::new(1),
                inject: inject::Inject::new(),
                synic,
                sched,
                calls: CallCounts::new(),
            }),
            GFP_KERNEL,
        )
    }

    /// Makes the next `count` map/create calls (`map_gpa_pages`, `create_vp`,
    /// `initialize_partition`) fail with `HV_STATUS_INSUFFICIENT_MEMORY`
    /// (0 reps done), without side effects.
    pub(crate) fn inject_insufficient_memory(&self, count: u32) {
        self.inject.set_no_memory(count);
    }

    /// Makes `CREATE_VP` want a contiguous block ([`inject::Inject::set_contiguous`]).
    pub(crate) fn inject_contiguous(&self) {
        self.inject.set_contiguous();
    }

    /// Makes the next `count` calls of `code` fail with `status` at rep
    /// `rep` ([`inject::Inject::set_call_failure`]).
    pub(crate) fn inject_call_failure(&self, code: u16, status: u16, rep: u16, count: u16) {
        self.inject.set_call_failure(code, status, rep, count);
    }

    /// Consumes an injected failure of a call of `code`.
    pub(crate) fn take_call_failure(&self, code: u16) -> Option<(u16, u16)> {
        self.inject.take_call_failure(code)
    }

    /// See [`inject::Inject::owe`].
    pub(crate) fn owe(&self, code: u16, status: u16) {
        self.inject.owe(code, status);
    }

    /// See [`inject::Inject::owed`].
    pub(crate) fn owed(&self, code: u16) -> Option<u16> {
        self.inject.owed(code)
    }

    /// Calls failed by [`Sim::inject_call_failure`].
    pub(crate) fn call_failures(&self) -> u64 {
        self.inject.call_failures.load(Relaxed)
    }

    /// `CREATE_VP` calls refused for want of contiguous memory.
    pub(crate) fn contiguous_refused(&self) -> u64 {
        self.inject.contiguous_refused.load(Relaxed)
    }

    /// Makes the next map or unmap call fail with `status` after `rep` reps
    /// (the first `rep` reps take effect). A call with at most `rep` reps
    /// completes normally; either way the request is consumed. Status 0
    /// cancels a pending request.
    pub(crate) fn inject_fail_at_rep(&self, rep: u32, status: u16) {
        self.inject.set_fail_at_rep(rep, status);
    }

    /// Makes every later `CREATE_PARTITION` take `pages` free pages of the
    /// root's pool, answering `INSUFFICIENT_ROOT_MEMORY` while they are not
    /// there (as Hyper-V does when the root ran short).
    #[cfg_attr(not(CONFIG_MSHV_RS_KUNIT_TEST), expect(dead_code))]
    pub(crate) fn inject_root_pages(&self, pages: u32) {
        self.inject.set_root_pages(pages);
    }

    /// Pages deposited into the root's pool (free and taken).
    pub(crate) fn root_pool_pages(&self) -> usize {
        self.root_pool.lock().total()
    }

    /// Free pages of the root's pool.
    pub(crate) fn root_pool_free(&self) -> usize {
        self.root_pool.lock().free()
    }

    /// Makes the next `count` `SET_PARTITION_PROPERTY` calls answer
    /// `HV_STATUS_CALL_PENDING` and report their real status in a
    /// `HVMSG_ASYNC_CALL_COMPLETION` message, as Hyper-V may.
    pub(crate) fn inject_call_pending(&self, count: u32) {
        self.inject.set_call_pending(count);
    }

    /// Makes the next `count` `finalize_partition` calls fail with
    /// `HV_STATUS_OPERATION_FAILED`, changing nothing (the partition then
    /// cannot be deleted either: it is still initialized).
    pub(crate) fn inject_finalize_failure(&self, count: u32) {
        self.inject.set_finalize(count);
    }

    /// Makes each later map or unmap call fail with `status` at a random rep,
    /// with a probability of `per_mille`/1000 (a deterministic PRNG); 0 turns it off.
    pub(crate) fn inject_random(&self, per_mille: u32, status: u16) {
        self.inject.set_random(per_mille, status);
    }

    /// Statistics of partition `pt`.
    pub(crate) fn partition_stats(&self, pt: u64) -> HvResult<PartitionStats> {
        let part = self.partition(pt)?;
        let inner = part.inner.lock();
        Ok(PartitionStats {
            pool_pages: inner.pool.total(),
            pool_free: inner.pool.free(),
            slat_tables: inner.slat.tables(),
            small_entries: inner.slat.small_entries(),
            large_entries: inner.slat.large_entries(),
            accessible_entries: inner.slat.accessible_entries(),
            vps: inner.vps.iter().count(),
        })
    }

    /// Corrupts the accessible SLAT entry at `gfn` of partition `pt` (see
    /// [`slat::Slat::corrupt`]): `INVALID_PARAMETER` if there is none.
    /// Makes the next `count` guest accesses to `gfn` of partition `pt`
    /// GPA intercepts whatever the SLAT says (0 disarms).
    pub(crate) fn inject_spurious_intercept(&self, pt: u64, gfn: u64, count: u32) -> HvResult {
        let part = self.partition(pt)?;
        part.inner.lock().spurious = (gfn, count);
        Ok(())
    }

    pub(crate) fn corrupt_entry(&self, pt: u64, gfn: u64) -> HvResult {
        let part = self.partition(pt)?;
        let mut inner = part.inner.lock();
        if inner.slat.corrupt(gfn) {
            Ok(())
        } else {
            Err(HvError::INVALID_PARAMETER)
        }
    }

    /// Calls `f(gfn, pfn, accessible, large, writable)` for every SLAT entry of
    /// partition `pt` intersecting `[first, first + count)`, under the
    /// partition's spinlock: `f` must not sleep.
    pub(crate) fn for_each_gpa_entry(
        &self,
        pt: u64,
        first: u64,
        count: u64,
        mut f: impl FnMut(u64, u64, bool, bool, bool),
    ) -> HvResult {
        let part = self.partition(pt)?;
        let inner = part.inner.lock();
        inner
            .slat
            .for_each_entry(first, count, |gfn, pfn, flags, large| {
                let accessible = flags & slat::NO_ACCESS == 0
                    && flags & (slat::READ | slat::WRITE | slat::KEXEC | slat::UEXEC) != 0;
                let writable = accessible && flags & slat::WRITE != 0;
                f(gfn, pfn, accessible, large, writable)
            });
        Ok(())
    }

    // The KUnit suites call the core directly; the driver goes through
    // the emulator's decoder (`emu`).
    #[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
    /// `GET_VP_REGISTERS` on a register file.
    fn get_regs(regs: &mut regs::RegFile, names: &[u32], out: &mut [RegValue]) -> RepResult {
        for (i, &name) in names.iter().enumerate() {
            let fail = |error| RepError { done: i, error };
            let value = regs.get(name).map_err(fail)?;
            let slot = out
                .get_mut(i)
                .ok_or(HvError::INVALID_PARAMETER)
                .map_err(fail)?;
            *slot = value;
        }
        Ok(())
    }

    // The KUnit suites call the core directly; the driver goes through
    // the emulator's decoder (`emu`).
    #[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
    /// `SET_VP_REGISTERS` on a register file; `writable(name)` says whether
    /// the VP's state allows writing `name` now.
    fn set_regs(
        regs: &mut regs::RegFile,
        values: &[(u32, RegValue)],
        writable: impl Fn(u32) -> bool,
    ) -> RepResult {
        for (i, &(name, value)) in values.iter().enumerate() {
            let fail = |error| RepError { done: i, error };
            if !writable(name) {
                return Err(fail(HvError::INVALID_VP_STATE));
            }
            regs.set(name, value).map_err(fail)?;
        }
        Ok(())
    }

    /// Gives the root pool pages `part` was created with back to the root
    /// pool (once: the charge is cleared). Takes the partition's lock, then
    /// the root pool's, never both at once.
    fn give_back_root_pages(&self, part: &ChildPartition) {
        let (pages, n) = {
            let mut inner = part.inner.lock();
            let n = core::mem::take(&mut inner.root_charged);
            (inner.root_pages, n)
        };
        self.give_back_to_root(pages.get(..n).unwrap_or(&[]));
    }

    /// Gives `pfns`, taken from the root pool, back to it.
    fn give_back_to_root(&self, pfns: &[u64]) {
        let mut root = self.root_pool.lock();
        for &pfn in pfns {
            root.give_back(pfn);
        }
    }

    /// Partition `pt`.
    fn partition(&self, pt: u64) -> HvResult<Arc<ChildPartition>> {
        self.parts
            .lock()
            .get(&pt)
            .cloned()
            .ok_or(HvError::INVALID_PARTITION_ID)
    }

    /// Partition `pt` and its VP `vp`.
    fn vp_of(&self, pt: u64, vp: u32) -> HvResult<(Arc<ChildPartition>, Arc<Vp>)> {
        let part = self.partition(pt)?;
        let vp = part
            .inner
            .lock()
            .vps
            .get(&vp)
            .map(|e| e.vp.clone())
            .ok_or(HvError::INVALID_VP_INDEX)?;
        Ok((part, vp))
    }
}

#[pinned_drop]
impl PinnedDrop for Sim {
    fn drop(self: Pin<&mut Self>) {
        // Partitions still here when the emulator goes away give their
        // root pages back first, so that the root pool frees them when it
        // is dropped after the table.
        let parts = core::mem::take(&mut *self.parts.lock());
        for part in parts.values() {
            self.give_back_root_pages(part);
        }
    }
}

/// A rep failure before any rep.
fn at_start(error: HvError) -> RepError {
    RepError { done: 0, error }
}

/// The simulator core's calls, one per hypercall; `emu` decodes the
/// binary input pages into these.
impl Sim {
    pub(crate) fn create_partition(&self, args: &CreatePartition) -> HvResult<u64> {
        let no_mem = HvError::INSUFFICIENT_ROOT_MEMORY;
        // The partition's own structures come from the root's pool, taken
        // before anything is allocated for them.
        let need = PART_ROOT_PAGES + self.inject.root_pages().min(MAX_INJECTED_ROOT_PAGES);
        let mut pages = [0u64; MAX_ROOT_CHARGE];
        {
            let mut root = self.root_pool.lock();
            if root.free() < need {
                return Err(no_mem);
            }
            for slot in pages.iter_mut().take(need) {
                // Cannot fail: `need` pages are free.
                *slot = root.take().ok_or(no_mem)?;
            }
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        if id == 0 || id == abi::HV_PARTITION_ID_SELF {
            self.give_back_to_root(pages.get(..need).unwrap_or(&[]));
            return Err(HvError::INSUFFICIENT_BUFFERS);
        }
        let made = ChildPartition::new(
            id,
            *args,
            self.synic.clone(),
            self.sched.clone(),
            pages,
            need,
        )
        .and_then(|part| Ok((part, RBTreeNodeReservation::new(GFP_ATOMIC)?)));
        match made {
            Ok((part, node)) => {
                self.parts.lock().insert(node.into_node(id, part));
                Ok(id)
            }
            Err(_) => {
                // A partition made before the node failed is dropped here
                // with its charge recorded: give the pages back once.
                self.give_back_to_root(pages.get(..need).unwrap_or(&[]));
                Err(no_mem)
            }
        }
    }

    pub(crate) fn initialize_partition(&self, pt: u64) -> HvResult {
        let part = self.partition(pt)?;
        let mut guard = part.inner.lock();
        let inner = &mut *guard;
        if inner.state != PartState::Created {
            return Err(HvError::INVALID_PARTITION_STATE);
        }
        if self.inject.take_no_memory() {
            self.inject.owe(
                abi::HVCALL_INITIALIZE_PARTITION,
                HvError::INSUFFICIENT_MEMORY.0,
            );
            return Err(HvError::INSUFFICIENT_MEMORY);
        }
        if inner.pool.free() < INIT_PAGES {
            return Err(HvError::INSUFFICIENT_MEMORY);
        }
        for slot in inner.init_pages.iter_mut() {
            // Cannot fail: INIT_PAGES pages are free.
            *slot = inner.pool.take().ok_or(HvError::INSUFFICIENT_MEMORY)?;
        }
        inner.state = PartState::Initialized;
        Ok(())
    }

    pub(crate) fn finalize_partition(&self, pt: u64) -> HvResult {
        let part = self.partition(pt)?;
        if self.inject.take_finalize() {
            return Err(HvError::OPERATION_FAILED);
        }
        let vps = loop {
            let mut inner = part.inner.lock();
            if inner.state != PartState::Initialized {
                return Err(HvError::INVALID_PARTITION_STATE);
            }
            if inner.vps.values().any(|e| e.vp.running.load(Relaxed)) {
                if self.sched.kind == sched::Scheduler::Root {
                    // The root's own DISPATCH_VP is in flight.
                    return Err(HvError::INVALID_VP_STATE);
                }
                // The hypervisor stops its own VPs: the slice ends (it runs
                // with preemption disabled), and none starts once the
                // state is Finalized (runners check it under `inner`).
                drop(inner);
                core::hint::spin_loop();
                continue;
            }
            let vps = inner.release_objects();
            inner.state = PartState::Finalized;
            break vps;
        };
        drop(vps);
        Ok(())
    }

    pub(crate) fn delete_partition(&self, pt: u64) -> HvResult {
        let part = {
            let mut parts = self.parts.lock();
            let Some(part) = parts.get(&pt) else {
                return Err(HvError::INVALID_PARTITION_ID);
            };
            {
                let inner = part.inner.lock();
                // The root must finalize (Initialized partitions hold pool
                // pages) and withdraw every page first.
                if inner.pool.total() != 0 || inner.state == PartState::Initialized {
                    return Err(HvError::INVALID_PARTITION_STATE);
                }
            }
            parts.remove_node(&pt).map(|node| node.to_key_value().1)
        };
        if let Some(part) = &part {
            // Its structures go back to the root's pool now, whoever still
            // holds a reference to the object.
            self.give_back_root_pages(part);
        }
        drop(part);
        Ok(())
    }

    /// `HVCALL_DEPOSIT_MEMORY`: takes the pages in order and stops, with
    /// `OPERATION_DENIED`, at the first that is in a pool already (or
    /// repeats an earlier one): the pages before it stay deposited.
    pub(crate) fn deposit(&self, pt: u64, pfns: &[u64]) -> RepResult {
        if pfns.len() > MAX_REPS {
            return Err(at_start(HvError::INVALID_PARAMETER));
        }
        let taken = if pt == abi::HV_PARTITION_ID_SELF {
            deposit_locked(&self.root_pool, root_pool, &self.deposited, pfns)
        } else {
            let part = self.partition(pt).map_err(at_start)?;
            deposit_locked(&part.inner, part_pool, &self.deposited, pfns)
        }
        .map_err(at_start)?;
        if let Some(head @ [_, ..]) = pfns.get(..taken) {
            self.inject.deposited(head);
        }
        if taken < pfns.len() {
            return Err(RepError {
                done: taken,
                error: HvError::OPERATION_DENIED,
            });
        }
        Ok(())
    }

    pub(crate) fn withdraw(&self, pt: u64, out: &mut [u64]) -> HvResult<usize> {
        if pt == abi::HV_PARTITION_ID_SELF {
            return Ok(withdraw_locked(
                &self.root_pool,
                root_pool,
                &self.deposited,
                out,
            ));
        }
        let part = self.partition(pt)?;
        Ok(withdraw_locked(
            &part.inner,
            part_pool,
            &self.deposited,
            out,
        ))
    }

    /// Pages in the emulator's pools (the root's included).
    pub(crate) fn deposited_pages(&self) -> usize {
        self.deposited.lock().len()
    }

    /// The first rep of a map with `flags` that would map a pool page.
    fn first_pool_page(&self, flags: u32, pfns: &[u64]) -> Option<usize> {
        if flags & abi::HV_MAP_GPA_NO_ACCESS != 0 {
            return None;
        }
        let pages = if flags & abi::HV_MAP_GPA_LARGE_PAGE != 0 {
            slat::LARGE_PAGES
        } else {
            1
        };
        let set = self.deposited.lock();
        pfns.iter().position(|&pfn| set.any_in(pfn, pages))
    }

    pub(crate) fn create_vp(&self, pt: u64, vp: u32) -> HvResult {
        let part = self.partition(pt)?;
        let check = |inner: &PartInner| -> HvResult {
            if inner.state != PartState::Initialized {
                return Err(HvError::INVALID_PARTITION_STATE);
            }
            if vp >= MAX_VPS || inner.vps.get(&vp).is_some() {
                return Err(HvError::INVALID_VP_INDEX);
            }
            Ok(())
        };
        // The VP's pages, its bookkeeping's included, come out of the pool
        // before anything is allocated for it.
        let mut pages = [0u64; VP_PAGES];
        {
            let mut inner = part.inner.lock();
            check(&inner)?;
            if self.inject.contiguous_refuses() {
                return Err(HvError::INSUFFICIENT_CONTIGUOUS_MEMORY);
            }
            if self.inject.take_no_memory() {
                self.inject
                    .owe(abi::HVCALL_CREATE_VP, HvError::INSUFFICIENT_MEMORY.0);
                return Err(HvError::INSUFFICIENT_MEMORY);
            }
            if inner.pool.free() < VP_PAGES {
                return Err(HvError::INSUFFICIENT_MEMORY);
            }
            for slot in pages.iter_mut() {
                // Cannot fail: VP_PAGES pages are free.
                *slot = inner.pool.take().ok_or(HvError::INSUFFICIENT_MEMORY)?;
            }
        }
        let give_back = |inner: &mut PartInner| {
            for &pfn in pages.iter() {
                inner.pool.give_back(pfn);
            }
        };
        let made = Vp::new(vp).and_then(|v| Ok((v, RBTreeNodeReservation::new(GFP_ATOMIC)?)));
        let (new_vp, node) = match made {
            Ok(made) => made,
            Err(_) => {
                give_back(&mut part.inner.lock());
                return Err(HvError::INSUFFICIENT_ROOT_MEMORY);
            }
        };
        let mut guard = part.inner.lock();
        let inner = &mut *guard;
        // Another CREATE_VP of this index, or a finalize, may have come in
        // between.
        if let Err(e) = check(inner) {
            give_back(inner);
            return Err(e);
        }
        // Stats start at zero (pool pages come back used).
        for &pfn in &pages[vp::STATS_SELF_PAGE..=vp::STATS_PARENT_PAGE] {
            // SAFETY: a pool page just taken for this VP: nobody else
            // reaches it.
            unsafe { (*crate::sys::page::direct_map_u64s(pfn)).fill(0) };
        }
        new_vp
            .stats_pfn
            .store(pages[vp::STATS_PARENT_PAGE], Relaxed);
        inner.vps.insert(node.into_node(
            vp,
            VpEntry {
                vp: new_vp,
                pages,
                mapped: 0,
            },
        ));
        Ok(())
    }

    /// The pfns of VP `vp`'s SELF and PARENT stats pages (KUnit).
    #[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
    pub(crate) fn vp_stats_pfns(&self, pt: u64, vp: u32) -> HvResult<(u64, u64)> {
        Ok((
            self.stats_page(pt, vp, abi::HV_STATS_AREA_SELF)?,
            self.stats_page(pt, vp, abi::HV_STATS_AREA_PARENT)?,
        ))
    }

    /// Sets VP `vp`'s `ROOT_DISPATCH_THREAD_BLOCKED` (KUnit).
    #[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
    pub(crate) fn set_vp_dispatch_thread_blocked(
        &self,
        pt: u64,
        vp: u32,
        blocked: bool,
    ) -> HvResult {
        let (part, vp) = self.vp_of(pt, vp)?;
        let _inner = part.inner.lock();
        vp::set_dispatch_thread_blocked(&vp, blocked);
        Ok(())
    }

    /// `HVCALL_MAP_STATS_PAGE` (and its unmap, which only checks): the pfn
    /// of VP `vp`'s SELF or PARENT stats page.
    pub(crate) fn stats_page(&self, pt: u64, vp: u32, area: u8) -> HvResult<u64> {
        let (_, _, pages) = self.vp_entry(pt, vp)?;
        match area {
            abi::HV_STATS_AREA_SELF => Ok(pages[vp::STATS_SELF_PAGE]),
            abi::HV_STATS_AREA_PARENT => Ok(pages[vp::STATS_PARENT_PAGE]),
            _ => Err(HvError::INVALID_PARAMETER),
        }
    }

    /// Partition `pt`, its VP `vp` and the VP's pool pages.
    fn vp_entry(
        &self,
        pt: u64,
        vp: u32,
    ) -> HvResult<(Arc<ChildPartition>, Arc<Vp>, [u64; VP_PAGES])> {
        let part = self.partition(pt)?;
        let (vp, pages) = {
            let inner = part.inner.lock();
            let entry = inner.vps.get(&vp).ok_or(HvError::INVALID_VP_INDEX)?;
            (entry.vp.clone(), entry.pages)
        };
        Ok((part, vp, pages))
    }

    pub(crate) fn delete_vp(&self, pt: u64, vp: u32) -> HvResult {
        let part = self.partition(pt)?;
        let entry = {
            let mut guard = part.inner.lock();
            let inner = &mut *guard;
            match inner.vps.get(&vp) {
                None => return Err(HvError::INVALID_VP_INDEX),
                Some(e) if e.vp.running.load(Relaxed) => return Err(HvError::INVALID_VP_STATE),
                Some(_) => {}
            }
            let entry = inner.vps.remove(&vp);
            if let Some(e) = &entry {
                for &pfn in e.pages.iter() {
                    inner.pool.give_back(pfn);
                }
            }
            entry
        };
        // The last reference to the VP may go here, outside the lock.
        drop(entry);
        Ok(())
    }

    pub(crate) fn map_vp_state_page(&self, pt: u64, vp: u32, page: VpPage) -> HvResult<u64> {
        let (part, vp, pages) = self.vp_entry(pt, vp)?;
        let pfn = match page {
            VpPage::Registers => pages[REGISTER_PAGE],
            VpPage::InterceptMessage => pages[MESSAGE_PAGE],
        };
        if page == VpPage::Registers {
            // Exported (valid, clean) from the start; see `reg_page`.
            reg_page::with_regs(&part, &vp, |_| ());
        }
        self.mark_state_page(pt, vp.index, page, true)?;
        Ok(pfn)
    }

    /// `HVCALL_UNMAP_VP_STATE_PAGE`: only a page the root has mapped
    /// (`INVALID_PARAMETER` otherwise, a second unmap included).
    pub(crate) fn unmap_vp_state_page(&self, pt: u64, vp: u32, page: VpPage) -> HvResult {
        if self.mark_state_page(pt, vp, page, false)? {
            Ok(())
        } else {
            Err(HvError::INVALID_PARAMETER)
        }
    }

    /// Records state page `page` of VP `vp` as mapped by the root or not;
    /// returns whether it was before.
    fn mark_state_page(&self, pt: u64, vp: u32, page: VpPage, mapped: bool) -> HvResult<bool> {
        let part = self.partition(pt)?;
        let mut inner = part.inner.lock();
        let entry = inner.vps.get_mut(&vp).ok_or(HvError::INVALID_VP_INDEX)?;
        let bit = 1u8 << (page as u8);
        let was = entry.mapped & bit != 0;
        if mapped {
            entry.mapped |= bit;
        } else {
            entry.mapped &= !bit;
        }
        Ok(was)
    }

    pub(crate) fn map_gpa_pages(
        &self,
        pt: u64,
        base_gfn: u64,
        flags: u32,
        pfns: &[u64],
    ) -> RepResult {
        let part = self.partition(pt).map_err(at_start)?;
        if pfns.len() > MAX_REPS {
            return Err(at_start(HvError::INVALID_PARAMETER));
        }
        let mut guard = part.inner.lock();
        let inner = &mut *guard;
        if inner.state != PartState::Initialized {
            return Err(at_start(HvError::INVALID_PARTITION_STATE));
        }
        if self.inject.take_no_memory() {
            self.inject
                .owe(abi::HVCALL_MAP_GPA_PAGES, HvError::INSUFFICIENT_MEMORY.0);
            return Err(at_start(HvError::INSUFFICIENT_MEMORY));
        }
        // Pages of a pool are the hypervisor's: not the root's to map
        // (`Deposited`). The reps before the first such page take effect.
        let refused = self.first_pool_page(flags, pfns);
        let (reps, st) = match (self.inject.take_rep_failure(pfns.len()), refused) {
            (Some((reps, st)), r) if reps < pfns.len() && r.is_none_or(|r| reps <= r) => {
                self.inject.owe(abi::HVCALL_MAP_GPA_PAGES, st);
                (reps, st)
            }
            (_, Some(r)) => (r, HvError::OPERATION_DENIED.0),
            _ => return inner.slat.map(&mut inner.pool, base_gfn, flags, pfns),
        };
        let head = pfns.get(..reps).unwrap_or(&[]);
        inner.slat.map(&mut inner.pool, base_gfn, flags, head)?;
        Err(RepError {
            done: reps,
            error: HvError(st),
        })
    }

    pub(crate) fn unmap_gpa_pages(
        &self,
        pt: u64,
        base_gfn: u64,
        count: usize,
        flags: u32,
    ) -> RepResult {
        let part = self.partition(pt).map_err(at_start)?;
        if count > MAX_REPS {
            return Err(at_start(HvError::INVALID_PARAMETER));
        }
        let mut guard = part.inner.lock();
        let inner = &mut *guard;
        if inner.state != PartState::Initialized {
            return Err(at_start(HvError::INVALID_PARTITION_STATE));
        }
        match self.inject.take_rep_failure(count) {
            Some((reps, st)) if reps < count => {
                inner.slat.unmap(&mut inner.pool, base_gfn, reps, flags)?;
                Err(RepError {
                    done: reps,
                    error: HvError(st),
                })
            }
            _ => inner.slat.unmap(&mut inner.pool, base_gfn, count, flags),
        }
    }

    // The KUnit suites call the core directly; the driver goes through
    // the emulator's decoder (`emu`).
    #[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
    pub(crate) fn get_vp_registers(
        &self,
        pt: u64,
        vp: u32,
        names: &[u32],
        out: &mut [RegValue],
    ) -> RepResult {
        let (part, vp) = self.vp_of(pt, vp).map_err(at_start)?;
        reg_page::with_regs(&part, &vp, |regs| Self::get_regs(regs, names, out))
    }

    // The KUnit suites call the core directly; the driver goes through
    // the emulator's decoder (`emu`).
    #[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
    pub(crate) fn set_vp_registers(
        &self,
        pt: u64,
        vp: u32,
        values: &[(u32, RegValue)],
    ) -> RepResult {
        let (part, vp) = self.vp_of(pt, vp).map_err(at_start)?;
        let writable = |name| vp::writable_now(&vp, name);
        reg_page::with_regs(&part, &vp, |regs| Self::set_regs(regs, values, writable))
    }

    pub(crate) fn get_vp_state(
        &self,
        pt: u64,
        vp: u32,
        data: &VpStateData,
        pfns: &[u64],
        inline: &mut [u8; VP_STATE_INLINE],
    ) -> HvResult {
        self.vp_state(pt, vp, data, pfns, inline, false)
    }

    pub(crate) fn set_vp_state(
        &self,
        pt: u64,
        vp: u32,
        data: &VpStateData,
        pfns: &[u64],
        inline: &[u8],
    ) -> HvResult {
        let mut buf = [0u8; VP_STATE_INLINE];
        if let (Some(dst), Some(src)) = (buf.get_mut(..inline.len()), inline.get(..)) {
            dst.copy_from_slice(src);
        } else {
            return Err(HvError::INVALID_PARAMETER);
        }
        self.vp_state(pt, vp, data, pfns, &mut buf[..inline.len()], true)
    }

    /// `HVCALL_CLEAR_VIRTUAL_INTERRUPT` (fast): drops the partition's
    /// pending ExtINT on every VP, so a resampled line can assert it again.
    pub(crate) fn clear_virtual_interrupt(&self, pt: u64) -> HvResult {
        let part = self.partition(pt)?;
        let vps: KVec<Arc<Vp>> = {
            let inner = part.inner.lock();
            let mut v = KVec::new();
            for e in inner.vps.values() {
                v.push(e.vp.clone(), GFP_ATOMIC)
                    .map_err(|_| HvError::INSUFFICIENT_MEMORY)?;
            }
            v
        };
        for vp in vps.iter() {
            vp.lapic.lock().extint = None;
        }
        Ok(())
    }

    /// The root wrote VP `vp` of `pt`'s registers. A cleared suspension
    /// may make it runnable ([`sched::wake`]); under the core scheduler an
    /// explicit suspension takes effect before the call returns
    /// ([`sched::suspended`]).
    pub(crate) fn registers_written(&self, pt: u64, vp: u32) {
        if let Ok((part, vp)) = self.vp_of(pt, vp) {
            sched::wake(&part, &vp);
            if vp.regs.lock().explicit_suspend {
                sched::suspended(&part, &vp);
            }
        }
    }

    /// `HVCALL_DISPATCH_VP` (root scheduler): runs the VP on the calling
    /// CPU for one time slice; returns `(dispatch_state, dispatch_event)`.
    /// See `vp::dispatch` for the outcomes. The caller (the emulator) has
    /// checked the calling context.
    pub(crate) fn dispatch_vp(&self, pt: u64, vp: u32, flags: u32) -> HvResult<(u32, u32)> {
        if self.sched.kind != sched::Scheduler::Root {
            // Under the hypervisor's own scheduler the root dispatches
            // nothing.
            return Err(HvError::ACCESS_DENIED);
        }
        if flags & !abi::HV_DISPATCH_VP_FLAGS_VALID != 0 {
            return Err(HvError::INVALID_PARAMETER);
        }
        let part = self.partition(pt)?;
        let (vp, msg_pfn) = {
            let inner = part.inner.lock();
            if inner.state != PartState::Initialized {
                return Err(HvError::INVALID_PARTITION_STATE);
            }
            let entry = inner.vps.get(&vp).ok_or(HvError::INVALID_VP_INDEX)?;
            if entry.vp.running.load(Relaxed) {
                return Err(HvError::INVALID_VP_STATE);
            }
            if vp::dispatch_thread_blocked(&entry.vp) {
                self.sched.dispatches_while_blocked.fetch_add(1, Relaxed);
            }
            // Under `inner`: delete and finalize see it and leave the VP's
            // pages alone until the dispatch ends.
            entry.vp.running.store(true, Relaxed);
            (entry.vp.clone(), entry.pages[MESSAGE_PAGE])
        };
        let out = vp::dispatch(&part, &vp, msg_pfn, flags);
        {
            let _inner = part.inner.lock();
            vp.running.store(false, Relaxed);
        }
        out
    }
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_sim)]
mod tests {
    use super::*;
    use crate::sys::page::{self, OwnedPage};
    use crate::tlfs::{status, HV_PAGE};

    fn hv(status: u16) -> HvResult {
        Err(HvError(status))
    }

    fn rep(e: RepError) -> Error {
        e.error.into()
    }

    /// Deposits `n` fresh pages into `pt`, one call each.
    fn deposit_pages(sim: &Sim, pt: u64, n: usize) -> Result {
        for _ in 0..n {
            let pfn = OwnedPage::new()?.into_pfn();
            if let Err(e) = sim.deposit(pt, &[pfn]) {
                // SAFETY: the deposit failed, so the page is still ours.
                drop(unsafe { OwnedPage::from_pfn(pfn) });
                return Err(e.error.into());
            }
        }
        Ok(())
    }

    /// Withdraws and frees every free page of `pt`; returns how many.
    fn withdraw_all(sim: &Sim, pt: u64) -> usize {
        let mut out = [0u64; 64];
        let mut total = 0;
        loop {
            match sim.withdraw(pt, &mut out) {
                Ok(0) | Err(_) => return total,
                Ok(n) => {
                    for &pfn in out.iter().take(n) {
                        // SAFETY: withdrawn pages belong to the caller again.
                        drop(unsafe { OwnedPage::from_pfn(pfn) });
                    }
                    total += n;
                }
            }
        }
    }

    /// A new partition, its root pages deposited first.
    fn new_partition(sim: &Sim) -> Result<u64> {
        deposit_pages(sim, abi::HV_PARTITION_ID_SELF, PART_ROOT_PAGES)?;
        Ok(sim.create_partition(&CreatePartition::default())?)
    }

    /// A new partition with `pages` deposited, initialized, with VP 0.
    fn partition_with_vp(sim: &Sim, pages: usize) -> Result<u64> {
        let pt = new_partition(sim)?;
        deposit_pages(sim, pt, pages)?;
        sim.initialize_partition(pt)?;
        sim.create_vp(pt, 0)?;
        Ok(pt)
    }

    /// Finalizes, withdraws and deletes `pt`.
    fn destroy(sim: &Sim, pt: u64) -> Result {
        sim.finalize_partition(pt)?;
        withdraw_all(sim, pt);
        sim.delete_partition(pt)?;
        Ok(())
    }

    /// The 256-byte message in VP 0's intercept message page.
    fn message(sim: &Sim, pt: u64) -> Result<[u8; 256]> {
        let pfn = sim.map_vp_state_page(pt, 0, VpPage::InterceptMessage)?;
        let mut buf = [0u8; 256];
        // SAFETY: the message page stays allocated while the VP exists.
        unsafe { page::read(pfn, 0, &mut buf) };
        Ok(buf)
    }

    fn le(b: &[u8], off: usize, n: usize) -> u64 {
        (0..n).fold(0, |v, i| {
            v | (u64::from(b.get(off + i).copied().unwrap_or(0)) << (8 * i))
        })
    }

    fn reg(sim: &Sim, pt: u64, name: u32) -> Result<RegValue> {
        let mut out = [[0u64; 2]; 1];
        sim.get_vp_registers(pt, 0, &[name], &mut out)
            .map_err(rep)?;
        Ok(out[0])
    }

    #[test]
    fn lifecycle_and_pool_charges() -> Result {
        let sim = Sim::new(sched::Scheduler::Root)?;
        // The partition's structures come from the root's pool.
        let create = || sim.create_partition(&CreatePartition::default());
        assert_eq!(create(), Err(HvError::INSUFFICIENT_ROOT_MEMORY));
        deposit_pages(&sim, abi::HV_PARTITION_ID_SELF, PART_ROOT_PAGES - 1)?;
        assert_eq!(create(), Err(HvError::INSUFFICIENT_ROOT_MEMORY));
        deposit_pages(&sim, abi::HV_PARTITION_ID_SELF, 1)?;
        let pt = create()?;
        assert_eq!(pt, 1);
        assert_eq!(sim.root_pool_free(), 0);
        assert_eq!(sim.create_vp(pt, 0), hv(status::INVALID_PARTITION_STATE));
        assert_eq!(
            sim.initialize_partition(pt),
            hv(status::INSUFFICIENT_MEMORY)
        );
        deposit_pages(&sim, pt, INIT_PAGES + VP_PAGES)?;
        assert_eq!(sim.initialize_partition(pt), Ok(()));
        assert_eq!(
            sim.initialize_partition(pt),
            hv(status::INVALID_PARTITION_STATE)
        );
        assert_eq!(sim.create_vp(pt, 0), Ok(()));
        assert_eq!(sim.create_vp(pt, 0), hv(status::INVALID_VP_INDEX));
        // One page short of a VP (its bookkeeping included): refused, and
        // nothing taken.
        deposit_pages(&sim, pt, VP_PAGES - 1)?;
        assert_eq!(sim.create_vp(pt, 1), hv(status::INSUFFICIENT_MEMORY));
        assert_eq!(sim.partition_stats(pt)?.pool_free, VP_PAGES - 1);
        deposit_pages(&sim, pt, 1)?;
        sim.inject_insufficient_memory(1);
        assert_eq!(sim.create_vp(pt, 1), hv(status::INSUFFICIENT_MEMORY));
        assert_eq!(sim.create_vp(pt, 1), Ok(()));
        assert_eq!(sim.delete_vp(pt, 1), Ok(()));
        assert_eq!(sim.delete_vp(pt, 1), hv(status::INVALID_VP_INDEX));
        let stats = sim.partition_stats(pt)?;
        assert_eq!(stats.pool_pages, INIT_PAGES + 2 * VP_PAGES);
        assert_eq!(stats.pool_free, VP_PAGES);
        assert_eq!(stats.vps, 1);
        // Initialized partitions hold pool pages: finalize and withdraw first.
        assert_eq!(
            sim.delete_partition(pt),
            hv(status::INVALID_PARTITION_STATE)
        );
        assert_eq!(sim.finalize_partition(pt), Ok(()));
        assert_eq!(
            sim.delete_partition(pt),
            hv(status::INVALID_PARTITION_STATE)
        );
        assert_eq!(withdraw_all(&sim, pt), INIT_PAGES + 2 * VP_PAGES);
        assert_eq!(sim.delete_partition(pt), Ok(()));
        assert_eq!(sim.delete_partition(pt), hv(status::INVALID_PARTITION_ID));
        // Its root pages are free again, for the next partition.
        assert_eq!(sim.root_pool_free(), PART_ROOT_PAGES);
        // Ids are never reused; the Sim frees what is left when dropped
        // (the partition's root pages included).
        assert_eq!(create(), Ok(2));
        assert_eq!(sim.root_pool_free(), 0);
        Ok(())
    }

    #[test]
    fn map_statuses_and_injection() -> Result {
        let sim = Sim::new(sched::Scheduler::Root)?;
        let pt = new_partition(&sim)?;
        let g = OwnedPage::new()?;
        let rw = abi::HV_MAP_GPA_READABLE | abi::HV_MAP_GPA_WRITABLE;
        let pfns = [g.pfn(); 4];
        let err = |done, s| {
            Err(RepError {
                done,
                error: HvError(s),
            })
        };
        assert_eq!(
            sim.map_gpa_pages(pt, 0, rw, &pfns),
            err(0, status::INVALID_PARTITION_STATE)
        );
        assert_eq!(
            sim.map_gpa_pages(99, 0, rw, &pfns),
            err(0, status::INVALID_PARTITION_ID)
        );
        deposit_pages(&sim, pt, INIT_PAGES)?;
        sim.initialize_partition(pt)?;
        assert_eq!(
            sim.map_gpa_pages(pt, 0, rw, &pfns),
            err(0, status::INSUFFICIENT_MEMORY)
        );
        deposit_pages(&sim, pt, 4)?;
        sim.inject_insufficient_memory(1);
        assert_eq!(
            sim.map_gpa_pages(pt, 0, rw, &pfns),
            err(0, status::INSUFFICIENT_MEMORY)
        );
        sim.inject_fail_at_rep(3, status::INVALID_PARAMETER);
        assert_eq!(
            sim.map_gpa_pages(pt, 0, rw, &pfns),
            err(3, status::INVALID_PARAMETER)
        );
        assert_eq!(sim.partition_stats(pt)?.small_entries, 3);
        assert_eq!(sim.map_gpa_pages(pt, 0, rw, &pfns), Ok(()));
        sim.inject_fail_at_rep(1, status::OPERATION_FAILED);
        assert_eq!(
            sim.unmap_gpa_pages(pt, 0, 4, 0),
            err(1, status::OPERATION_FAILED)
        );
        assert_eq!(sim.partition_stats(pt)?.small_entries, 3);
        assert_eq!(sim.unmap_gpa_pages(pt, 0, 4, 0), Ok(()));
        let stats = sim.partition_stats(pt)?;
        assert_eq!(stats.small_entries, 0);
        assert_eq!(stats.slat_tables, 0);
        destroy(&sim, pt)?;
        Ok(())
    }

    #[test]
    fn registers() -> Result {
        let sim = Sim::new(sched::Scheduler::Root)?;
        let pt = partition_with_vp(&sim, INIT_PAGES + VP_PAGES)?;
        assert_eq!(reg(&sim, pt, abi::HV_X64_REGISTER_RIP)?, [0xfff0, 0]);
        assert_eq!(
            reg(&sim, pt, abi::HV_X64_REGISTER_CS)?,
            [0xffff_0000, 0xffff | (0xf000 << 32) | (0x9b << 48)]
        );
        assert_eq!(reg(&sim, pt, abi::HV_REGISTER_EXPLICIT_SUSPEND)?, [1, 0]);
        assert_eq!(
            reg(&sim, pt, abi::HV_X64_REGISTER_APIC_BASE)?,
            [0xfee0_0900, 0]
        );
        let gdtr = [0x27 << 48, 0x1000];
        let set = [
            (abi::HV_X64_REGISTER_RAX, [0x1234, 0]),
            (abi::HV_X64_REGISTER_CR8, [5, 0]),
            (abi::HV_X64_REGISTER_GDTR, gdtr),
            (abi::HV_X64_REGISTER_PAT, [0x0606, 0]),
        ];
        sim.set_vp_registers(pt, 0, &set).map_err(rep)?;
        assert_eq!(reg(&sim, pt, abi::HV_X64_REGISTER_RAX)?, [0x1234, 0]);
        assert_eq!(reg(&sim, pt, abi::HV_X64_REGISTER_CR8)?, [5, 0]);
        assert_eq!(reg(&sim, pt, abi::HV_X64_REGISTER_GDTR)?, gdtr);
        assert_eq!(reg(&sim, pt, abi::HV_X64_REGISTER_PAT)?, [0x0606, 0]);
        let mut out = [[0u64; 2]; 2];
        let names = [abi::HV_X64_REGISTER_RAX, 0x0123_4567];
        assert_eq!(
            sim.get_vp_registers(pt, 0, &names, &mut out),
            Err(RepError {
                done: 1,
                error: HvError::INVALID_PARAMETER
            })
        );
        assert_eq!(
            sim.get_vp_registers(pt, 7, &names, &mut out),
            Err(RepError {
                done: 0,
                error: HvError::INVALID_VP_INDEX
            })
        );

        // The same through the passthrough, resuming at rep 1.
        let mut input = KVec::from_elem(0u8, HV_PAGE, GFP_KERNEL)?;
        let mut output = KVec::from_elem(0u8, HV_PAGE, GFP_KERNEL)?;
        let inp: &mut [u8; HV_PAGE] = input.as_mut_slice().try_into().map_err(|_| EINVAL)?;
        let outp: &mut [u8; HV_PAGE] = output.as_mut_slice().try_into().map_err(|_| EINVAL)?;
        inp[..8].copy_from_slice(&pt.to_le_bytes());
        inp[16..20].copy_from_slice(&abi::HV_X64_REGISTER_RAX.to_le_bytes());
        inp[20..24].copy_from_slice(&abi::HV_X64_REGISTER_CR8.to_le_bytes());
        let res = sim.raw_call(abi::HVCALL_GET_VP_REGISTERS, 2, 1, inp, outp);
        assert_eq!(res, abi::result(status::SUCCESS, 2));
        assert_eq!(le(outp, 0, 8), 0);
        assert_eq!(le(outp, 16, 8), 5);
        let res = sim.raw_call(0x0002, 0, 0, inp, outp);
        assert_eq!(res, abi::result(status::INVALID_HYPERCALL_CODE, 0));

        // Properties: host values for the root; early ones only early.
        inp[..8].copy_from_slice(&abi::HV_PARTITION_ID_SELF.to_le_bytes());
        inp[8..12].copy_from_slice(&props::PROCESSOR_FEATURES0.to_le_bytes());
        let res = sim.raw_call(abi::HVCALL_GET_PARTITION_PROPERTY, 0, 0, inp, outp);
        assert_eq!(res, abi::result(status::SUCCESS, 0));
        assert!(le(outp, 0, 8) != 0);
        // ASSIGNABLE_SYNTHETIC_PROC_FEATURES: banked, through _EX only.
        inp[8..12].copy_from_slice(&props::ASSIGNABLE_SYNTHETIC_PROC_FEATURES.to_le_bytes());
        let res = sim.raw_call(abi::HVCALL_GET_PARTITION_PROPERTY_EX, 0, 0, inp, outp);
        assert_eq!(res, abi::result(status::SUCCESS, 0));
        assert_eq!(le(outp, 0, 8), 1);
        assert_eq!(le(outp, 8, 8), props::HOST_ASSIGNABLE_SYNTHETIC);
        let res = sim.raw_call(abi::HVCALL_GET_PARTITION_PROPERTY, 0, 0, inp, outp);
        assert_eq!(res, abi::result(status::UNKNOWN_PROPERTY, 0));
        inp[..8].copy_from_slice(&pt.to_le_bytes());
        inp[8..12]
            .copy_from_slice(&abi::HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES.to_le_bytes());
        let res = sim.raw_call(abi::HVCALL_SET_PARTITION_PROPERTY, 0, 0, inp, outp);
        assert_eq!(res, abi::result(status::INVALID_PARTITION_STATE, 0));
        destroy(&sim, pt)?;
        Ok(())
    }

    #[test]
    fn register_values_outside_the_tlfs_are_refused() -> Result {
        use regs::valid_value as ok;
        // DR6/DR7: the upper half is reserved.
        assert!(ok(abi::HV_X64_REGISTER_DR7, 0x400));
        assert!(!ok(abi::HV_X64_REGISTER_DR7, 1 << 32));
        // SCONTROL: enable only.
        assert!(ok(abi::HV_REGISTER_SCONTROL, 1));
        assert!(!ok(abi::HV_REGISTER_SCONTROL, 2));
        // SIMP/SIEFP: enable, reserved 1..11, page number.
        assert!(ok(abi::HV_REGISTER_SIMP, 0x1234_5001));
        assert!(!ok(abi::HV_REGISTER_SIMP, 0x1234_5003));
        assert!(!ok(abi::HV_REGISTER_SIEFP, 0x800));
        // SINTx: vector, masked, auto-EOI, polling; unmasked needs >= 16.
        let sint5 = abi::HV_REGISTER_SINT0 + 5;
        assert!(ok(sint5, 0x1_0000));
        assert!(ok(sint5, 0x2_0030));
        assert!(ok(abi::HV_REGISTER_SINT0 + 15, 0x7_00ff));
        assert!(!ok(sint5, 0x0_000f));
        assert!(ok(sint5, 0x1_000f));
        assert!(!ok(sint5, 0x8_0030));
        assert!(!ok(sint5, 0x0130));
        // Past SINT15 comes SCONTROL, with its own rule.
        assert_eq!(abi::HV_REGISTER_SINT0 + 16, abi::HV_REGISTER_SCONTROL);
        assert!(!ok(abi::HV_REGISTER_SINT0 + 16, 0x0030));
        // Refused through SET_VP_REGISTERS, nothing written.
        let sim = Sim::new(sched::Scheduler::Root)?;
        let pt = partition_with_vp(&sim, INIT_PAGES + VP_PAGES)?;
        // A SINT starts masked (TLFS), so that a VMM reading and writing
        // it back (Cloud Hypervisor's restore) is accepted.
        let before = reg(&sim, pt, sint5)?;
        assert_eq!(before, [0x1_0000, 0]);
        assert_eq!(
            sim.set_vp_registers(pt, 0, &[(sint5, [0x0130, 0])]),
            Err(RepError {
                done: 0,
                error: HvError::INVALID_PARAMETER
            })
        );
        assert_eq!(reg(&sim, pt, sint5)?, before);
        destroy(&sim, pt)?;
        Ok(())
    }

    /// Dispatches VP 0 until it leaves with an intercept (the run loop of
    /// `hv::run`, without the waiting: these guests never block).
    fn run_to_intercept(sim: &Sim, pt: u64) -> Result {
        for _ in 0..64 {
            let flags = abi::HV_DISPATCH_VP_FLAG_CLEAR_INTERCEPT_SUSPEND;
            let (state, event) = sim.dispatch_vp(pt, 0, flags)?;
            match (state, event) {
                (abi::HV_VP_DISPATCH_STATE_READY, abi::HV_VP_DISPATCH_EVENT_INTERCEPT) => {
                    return Ok(())
                }
                (abi::HV_VP_DISPATCH_STATE_BLOCKED, abi::HV_VP_DISPATCH_EVENT_SUSPEND) => {
                    // New VPs start explicitly suspended: resume, as the
                    // driver's run loop does.
                    let resume = [(abi::HV_REGISTER_EXPLICIT_SUSPEND, [0, 0])];
                    sim.set_vp_registers(pt, 0, &resume).map_err(rep)?;
                }
                _ => assert_eq!(state, abi::HV_VP_DISPATCH_STATE_READY),
            }
        }
        Err(ETIMEDOUT)
    }

    #[test]
    fn run_exits() -> Result {
        let sim = Sim::new(sched::Scheduler::Root)?;
        let pt = partition_with_vp(&sim, INIT_PAGES + VP_PAGES + 4)?;
        // A new VP is explicitly suspended: the first dispatch says so.
        assert_eq!(
            sim.dispatch_vp(pt, 0, 0)?,
            (
                abi::HV_VP_DISPATCH_STATE_BLOCKED,
                abi::HV_VP_DISPATCH_EVENT_SUSPEND
            )
        );
        // Without CLEAR_INTERCEPT_SUSPEND an intercept-suspended VP is
        // refused (checked after the first intercept below).
        // At the reset vector 0xfffffff0: `out 0x42, al; hlt`.
        let code = OwnedPage::new()?;
        // SAFETY: our own page; 3 bytes at 0xff0 fit.
        unsafe { page::write(code.pfn(), 0xff0, &[0xe6, 0x42, 0xf4]) };
        let gfn = 0xf_ffff;
        let rx = abi::HV_MAP_GPA_READABLE | abi::HV_MAP_GPA_EXECUTABLE;
        sim.map_gpa_pages(pt, gfn, rx, &[code.pfn()]).map_err(rep)?;

        run_to_intercept(&sim, pt)?;
        let m = message(&sim, pt)?;
        assert_eq!(le(&m, 0, 4), u64::from(abi::HVMSG_X64_IO_PORT_INTERCEPT));
        assert_eq!(le(&m, 20, 1) & 0xf, 2);
        assert_eq!(le(&m, 21, 1), u64::from(abi::HV_INTERCEPT_ACCESS_WRITE));
        assert_eq!(le(&m, 40, 8), 0xfff0);
        assert_eq!(le(&m, 56, 2), 0x42);
        assert_eq!(le(&m, 58, 1), 1);
        assert_eq!(le(&m, 59, 1), 2);
        assert_eq!(le(&m, 72, 2), 0x42e6);
        assert_eq!(reg(&sim, pt, abi::HV_REGISTER_EXPLICIT_SUSPEND)?, [0, 0]);
        assert_eq!(reg(&sim, pt, abi::HV_REGISTER_INTERCEPT_SUSPEND)?, [1, 0]);
        assert_eq!(sim.dispatch_vp(pt, 0, 0), Err(HvError::INVALID_VP_STATE));
        // RIP stays at the OUT; the VMM advances it.
        assert_eq!(reg(&sim, pt, abi::HV_X64_REGISTER_RIP)?, [0xfff0, 0]);
        sim.set_vp_registers(pt, 0, &[(abi::HV_X64_REGISTER_RIP, [0xfff2, 0])])
            .map_err(rep)?;

        run_to_intercept(&sim, pt)?;
        let m = message(&sim, pt)?;
        assert_eq!(le(&m, 0, 4), u64::from(abi::HVMSG_X64_HALT));
        assert_eq!(le(&m, 40, 8), 0xfff2);

        // A NO_ACCESS remap: the fetch intercepts.
        sim.set_vp_registers(pt, 0, &[(abi::HV_X64_REGISTER_RIP, [0xfff0, 0])])
            .map_err(rep)?;
        sim.map_gpa_pages(pt, gfn, abi::HV_MAP_GPA_NO_ACCESS, &[0])
            .map_err(rep)?;
        run_to_intercept(&sim, pt)?;
        let m = message(&sim, pt)?;
        assert_eq!(le(&m, 0, 4), u64::from(abi::HVMSG_GPA_INTERCEPT));
        assert_eq!(le(&m, 21, 1), u64::from(abi::HV_INTERCEPT_ACCESS_EXECUTE));
        assert_eq!(le(&m, 72, 8), 0xffff_fff0);

        // Unmapped: the VMM sees UNMAPPED_GPA.
        sim.unmap_gpa_pages(pt, gfn, 1, 0).map_err(rep)?;
        run_to_intercept(&sim, pt)?;
        let m = message(&sim, pt)?;
        assert_eq!(le(&m, 0, 4), u64::from(abi::HVMSG_UNMAPPED_GPA));
        assert_eq!(le(&m, 72, 8), 0xffff_fff0);

        destroy(&sim, pt)?;
        drop(code);
        Ok(())
    }
}
