// SPDX-License-Identifier: GPL-2.0

//! The simulated second-level address translation (SLAT) of one partition.
//!
//! A 4-level radix table shaped like Intel EPT, built only from pages of the
//! partition's deposit [`Pool`]: each table is one 4 KiB pool page used as
//! 512 `u64` entries. A guest frame number (gfn, a guest physical address
//! shifted right by 12) indexes it with
//!
//! | table depth | gfn bits | GPA bits | an entry maps or points to |
//! |---|---|---|---|
//! | 0 (root) | 35..27 | 47..39 | a depth-1 table |
//! | 1 | 26..18 | 38..30 | a depth-2 table |
//! | 2 | 17..9 | 29..21 | a 2 MiB page (`LARGE`) or a depth-3 table |
//! | 3 | 8..0 | 20..12 | a 4 KiB page |
//!
//! so gfns must be below [`GFN_LIMIT`] (`2^36`, a 48-bit GPA).
//!
//! # Entry encoding
//!
//! An all-zero entry is empty. Otherwise bit 0 ([`PRESENT`]) is set and:
//!
//! - a *table* entry (depths 0 and 1, and depth 2 without `LARGE`) holds the
//!   child table's pfn in bits 12..51 and, in the otherwise ignored bits
//!   52..61, the number of non-empty entries of that child table (so a table
//!   that becomes empty is freed in O(1));
//! - a *leaf* entry (depth 3, and depth 2 with [`LARGE`]) holds the pfn of
//!   the host page (the first of 512 for `LARGE`) in bits 12..51 and the
//!   flags: [`READ`] (1), [`WRITE`] (2), [`KEXEC`] (3), [`UEXEC`] (4) — the
//!   `HV_MAP_GPA_*` permission bits shifted left by one —, [`NO_ACCESS`] (5),
//!   [`LARGE`] (6), [`ACCESSED`] (7), [`DIRTY`] (8), [`UNCACHED`] (9) and
//!   [`ADJUSTABLE`] (10). A `NO_ACCESS` entry has no permission and pfn 0.
//!
//! # Memory
//!
//! Tables are taken from the pool when a mapping needs them and given back as
//! soon as they become empty (and all of them on [`Slat::clear`]). A rep that
//! needs more pages than the pool has free fails with
//! `HV_STATUS_INSUFFICIENT_MEMORY` *before* changing anything, so the caller
//! can deposit and resume at that rep, as with Hyper-V. Splitting a 2 MiB
//! entry (a 4 KiB map or unmap inside it) costs one page.
//!
//! # Locking
//!
//! `Slat` has no lock of its own: the owning partition keeps it under the
//! spinlock that also protects the pool, and the simulated CPU translates
//! *and copies the guest bytes* under that lock (see `sim::vp`). So once an
//! unmap or remap returns, no guest access can still touch a page it removed.

use super::cpu::Access;
use super::pool::{page_u64s, Pool, PAGE_U64S};
use crate::tlfs::{abi, status, HvError, HvResult, RepError, RepResult};
use kernel::prelude::*;

/// Gfns must be below this (`2^36`: a 48-bit guest physical address space).
pub(crate) const GFN_LIMIT: u64 = 1 << 36;
/// Pages per 2 MiB entry.
pub(crate) const LARGE_PAGES: u64 = 512;

/// The entry is in use.
pub(crate) const PRESENT: u64 = 1 << 0;
/// Leaf: the guest may read.
pub(crate) const READ: u64 = 1 << 1;
/// Leaf: the guest may write.
pub(crate) const WRITE: u64 = 1 << 2;
/// Leaf: the guest may execute in kernel mode.
pub(crate) const KEXEC: u64 = 1 << 3;
/// Leaf: the guest may execute in user mode.
pub(crate) const UEXEC: u64 = 1 << 4;
/// Leaf: mapped with `HV_MAP_GPA_NO_ACCESS` (every access intercepts).
pub(crate) const NO_ACCESS: u64 = 1 << 5;
/// Leaf at depth 2: a 2 MiB page.
pub(crate) const LARGE: u64 = 1 << 6;
/// Leaf: the guest accessed the page since the bit was last cleared.
pub(crate) const ACCESSED: u64 = 1 << 7;
/// Leaf: the guest wrote the page since the bit was last cleared.
pub(crate) const DIRTY: u64 = 1 << 8;
/// Leaf: mapped uncached (`HV_MAP_GPA_NOT_CACHED`).
pub(crate) const UNCACHED: u64 = 1 << 9;
/// Leaf: mapped with `HV_MAP_GPA_ADJUSTABLE`.
pub(crate) const ADJUSTABLE: u64 = 1 << 10;
/// Any permission.
const PERMS: u64 = READ | WRITE | KEXEC | UEXEC;
/// Shift of the pfn field.
const PFN_SHIFT: u32 = 12;
/// The pfn field (bits 12..51).
const PFN_MASK: u64 = ((1 << 40) - 1) << PFN_SHIFT;
/// Shift of the child-count field of table entries.
const COUNT_SHIFT: u32 = 52;
/// The child-count field of table entries (bits 52..61).
const COUNT_MASK: u64 = 0x3ff << COUNT_SHIFT;
/// Depth of the tables whose entries map 2 MiB.
const LARGE_DEPTH: usize = 2;
/// Depth of the tables whose entries map 4 KiB.
const SMALL_DEPTH: usize = 3;

/// Why the SLAT refused a guest-physical access (and which message the
/// guest's access becomes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GpaFault {
    /// No entry maps the gfn (`HVMSG_UNMAPPED_GPA`).
    Unmapped,
    /// An entry maps it without the needed permission (`HVMSG_GPA_INTERCEPT`).
    Intercept,
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Translation {
    /// The host page backing the 4 KiB guest page.
    pub(crate) pfn: u64,
    /// Whether a 2 MiB entry maps it.
    pub(crate) large: bool,
    /// Whether it is mapped uncached (`HV_MAP_GPA_NOT_CACHED`: device memory).
    pub(crate) uncached: bool,
}

/// `hv_gpa_page_access_state.accessed`.
pub(crate) const STATE_ACCESSED: u8 = 1 << 0;
/// `hv_gpa_page_access_state.dirty`.
pub(crate) const STATE_DIRTY: u8 = 1 << 1;

/// The `hv_gpa_page_access_state` of a leaf entry.
fn state_of(e: u64) -> u8 {
    (if e & ACCESSED != 0 { STATE_ACCESSED } else { 0 })
        | (if e & DIRTY != 0 { STATE_DIRTY } else { 0 })
}

/// What `HVCALL_GET_GPA_PAGES_ACCESS_STATES` does to the entries after
/// reading them (`hv_gpa_page_access_state_flags`), as entry bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StateOp {
    /// [`ACCESSED`] and/or [`DIRTY`] to clear.
    pub(crate) clear: u64,
    /// [`ACCESSED`] and/or [`DIRTY`] to set.
    pub(crate) set: u64,
}

impl StateOp {
    /// Decodes `hv_gpa_page_access_state_flags` (clear_accessed bit 0,
    /// set_accessed 1, clear_dirty 2, set_dirty 3): `None` for reserved bits
    /// or a bit both cleared and set.
    pub(crate) fn from_flags(flags: u64) -> Option<Self> {
        if flags & !0xf != 0 {
            return None;
        }
        let bit = |b: u32, v: u64| if flags & (1 << b) != 0 { v } else { 0 };
        let op = Self {
            clear: bit(0, ACCESSED) | bit(2, DIRTY),
            set: bit(1, ACCESSED) | bit(3, DIRTY),
        };
        (op.clear & op.set == 0).then_some(op)
    }

    /// `e` after the operation.
    fn apply(self, e: u64) -> u64 {
        (e & !self.clear) | self.set
    }
}

/// The pfn field of an entry.
fn pfn_of(e: u64) -> u64 {
    (e & PFN_MASK) >> PFN_SHIFT
}

/// The child count of a table entry.
fn count_of(e: u64) -> usize {
    ((e & COUNT_MASK) >> COUNT_SHIFT) as usize
}

/// `e` with its child count replaced by `count`.
fn with_count(e: u64, count: usize) -> u64 {
    (e & !COUNT_MASK) | (((count as u64) << COUNT_SHIFT) & COUNT_MASK)
}

/// A table entry pointing at `pfn` with `count` used entries.
fn table_entry(pfn: u64, count: usize) -> u64 {
    with_count(PRESENT | ((pfn << PFN_SHIFT) & PFN_MASK), count)
}

/// Whether a depth-2 (or any) present entry is a leaf at `depth`.
fn is_leaf(e: u64, depth: usize) -> bool {
    depth == SMALL_DEPTH || (depth == LARGE_DEPTH && e & LARGE != 0)
}

/// The index into the table at `depth` for `gfn`.
fn index(gfn: u64, depth: usize) -> usize {
    let shift = 9 * (SMALL_DEPTH - depth.min(SMALL_DEPTH)) as u32;
    ((gfn >> shift) & (PAGE_U64S as u64 - 1)) as usize
}

/// The leaf entry a map with `flags` (`HV_MAP_GPA_*`) creates for `pfn`
/// (without `LARGE`).
pub(crate) fn leaf_entry(flags: u32, pfn: u64) -> u64 {
    let mut e = PRESENT;
    if flags & abi::HV_MAP_GPA_NOT_CACHED != 0 {
        e |= UNCACHED;
    }
    if flags & abi::HV_MAP_GPA_ADJUSTABLE != 0 {
        e |= ADJUSTABLE;
    }
    if flags & abi::HV_MAP_GPA_NO_ACCESS != 0 {
        return e | NO_ACCESS;
    }
    e | ((u64::from(flags & abi::HV_MAP_GPA_PERMISSIONS_MASK)) << 1)
        | ((pfn << PFN_SHIFT) & PFN_MASK)
}

/// One table page of a [`Slat`].
///
/// # Invariants
///
/// `self.0` is a pool page lent to the SLAT as a table, alive while the SLAT
/// holds it; the SLAT is only used under its partition's lock (or owned
/// exclusively), which serializes every access to the page.
#[derive(Clone, Copy)]
struct Table(u64);

impl Table {
    /// Wraps a table page.
    ///
    /// # Safety
    ///
    /// `pfn` must be a table page of a live SLAT (the root, or the pfn of a
    /// present table entry), or a page just taken from the pool for one, and
    /// the caller must have exclusive access to that SLAT.
    unsafe fn new(pfn: u64) -> Self {
        // INVARIANT: per the safety contract.
        Self(pfn)
    }

    /// Entry `i` (0 if out of range, which indices never are).
    fn get(self, i: usize) -> u64 {
        // SAFETY: by the type invariant the page is a live table page and
        // access is serialized; `page_u64s` covers exactly the page.
        unsafe { (*page_u64s(self.0)).get(i).copied().unwrap_or(0) }
    }

    /// Sets entry `i`.
    fn set(self, i: usize, v: u64) {
        // SAFETY: as in `get`; no other reference to the page exists.
        if let Some(slot) = unsafe { (*page_u64s(self.0)).get_mut(i) } {
            *slot = v;
        }
    }
}

/// An entry slot on the way down to a gfn.
#[derive(Clone, Copy)]
struct Slot {
    /// The table holding the entry.
    table: Table,
    /// The entry's index in it.
    idx: usize,
}

impl Slot {
    /// The entry.
    fn get(self) -> u64 {
        self.table.get(self.idx)
    }

    /// Sets the entry.
    fn set(self, v: u64) {
        self.table.set(self.idx, v)
    }
}

/// The slots from the root down to some depth.
struct Path {
    /// `slots[d]` is the slot in the table at depth `d`.
    slots: [Option<Slot>; 4],
}

impl Path {
    /// The slot at `depth`.
    fn at(&self, depth: usize) -> Option<Slot> {
        self.slots.get(depth).copied().flatten()
    }
}

/// The SLAT of one partition.
///
/// # Invariants
///
/// - `root`, and the pfn of every present table entry, is a page taken from
///   the partition's pool and not given back; `tables` counts them.
/// - The count field of every table entry, and `root_count` for the root,
///   equals the number of non-empty entries of that table; no table but the
///   root is empty, and the root exists only while `root_count > 0` (between
///   operations).
/// - `small` and `large` count the 4 KiB and 2 MiB leaf entries.
pub(crate) struct Slat {
    /// The root table, if any.
    root: Option<u64>,
    /// Non-empty entries of the root.
    root_count: usize,
    /// Table pages held.
    tables: usize,
    /// 4 KiB leaf entries.
    small: usize,
    /// 2 MiB leaf entries.
    large: usize,
}

impl Slat {
    /// An empty SLAT; holds no page.
    pub(crate) const fn new() -> Self {
        Self {
            root: None,
            root_count: 0,
            tables: 0,
            small: 0,
            large: 0,
        }
    }

    /// Table pages held (taken from the pool).
    pub(crate) fn tables(&self) -> usize {
        self.tables
    }

    /// 4 KiB entries (accessible or not).
    pub(crate) fn small_entries(&self) -> usize {
        self.small
    }

    /// 2 MiB entries (accessible or not).
    pub(crate) fn large_entries(&self) -> usize {
        self.large
    }

    /// The used-entry count of the table at `depth` on `path`.
    fn count(&self, path: &Path, depth: usize) -> usize {
        match depth.checked_sub(1) {
            None => self.root_count,
            Some(parent) => path.at(parent).map_or(0, |s| count_of(s.get())),
        }
    }

    /// Sets the used-entry count of the table at `depth` on `path`.
    fn set_count(&mut self, path: &Path, depth: usize, count: usize) {
        match depth.checked_sub(1) {
            None => self.root_count = count,
            Some(parent) => {
                if let Some(s) = path.at(parent) {
                    s.set(with_count(s.get(), count));
                }
            }
        }
    }

    /// Records that the table at `depth` gained an entry.
    fn inc(&mut self, path: &Path, depth: usize) {
        let c = self.count(path, depth);
        self.set_count(path, depth, c.saturating_add(1));
    }

    /// Records that the table at `depth` lost an entry.
    fn dec(&mut self, path: &Path, depth: usize) {
        let c = self.count(path, depth);
        self.set_count(path, depth, c.saturating_sub(1));
    }

    /// The slots down to `depth` for `gfn`, as far as tables exist: stops
    /// after the first empty entry or leaf.
    fn walk(&self, gfn: u64, depth: usize) -> Path {
        let mut path = Path { slots: [None; 4] };
        let Some(root) = self.root else {
            return path;
        };
        // SAFETY: the root is a table page of this SLAT (type invariant);
        // `&self` under the partition lock serializes access.
        let mut table = unsafe { Table::new(root) };
        for d in 0..=depth.min(SMALL_DEPTH) {
            let slot = Slot {
                table,
                idx: index(gfn, d),
            };
            if let Some(s) = path.slots.get_mut(d) {
                *s = Some(slot);
            }
            let e = slot.get();
            if d == depth || e & PRESENT == 0 || is_leaf(e, d) {
                break;
            }
            // SAFETY: a present non-leaf entry points at a table page of
            // this SLAT (type invariant).
            table = unsafe { Table::new(pfn_of(e)) };
        }
        path
    }

    /// Pool pages needed to reach a leaf slot at `depth` for `gfn`: the
    /// missing tables, plus one for a split if a 2 MiB entry is in the way
    /// of a 4 KiB leaf.
    fn pages_needed(&self, gfn: u64, depth: usize) -> usize {
        let path = self.walk(gfn, depth);
        if self.root.is_none() {
            return depth + 1;
        }
        for d in 0..depth {
            let e = path.at(d).map_or(0, |s| s.get());
            if e & PRESENT == 0 {
                // Tables at depths d+1..=depth are missing.
                return depth - d;
            }
            if is_leaf(e, d) {
                // A 2 MiB entry above a 4 KiB leaf: the split table.
                return 1;
            }
        }
        0
    }

    /// Returns the slots down to `depth` for `gfn`, creating missing tables
    /// and splitting a 2 MiB entry in the way. The caller checked
    /// [`Slat::pages_needed`] against the pool; if the pool still runs dry,
    /// fails with INSUFFICIENT_MEMORY after pruning what it created.
    fn descend(&mut self, pool: &mut Pool, gfn: u64, depth: usize) -> HvResult<Path> {
        let no_mem = HvError::INSUFFICIENT_MEMORY;
        let root = match self.root {
            Some(root) => root,
            None => {
                let pfn = pool.take().ok_or(no_mem)?;
                self.root = Some(pfn);
                self.tables += 1;
                pfn
            }
        };
        let mut path = Path { slots: [None; 4] };
        // SAFETY: the root is a table page of this SLAT; `&mut self`.
        let mut table = unsafe { Table::new(root) };
        for d in 0..=depth.min(SMALL_DEPTH) {
            let slot = Slot {
                table,
                idx: index(gfn, d),
            };
            if let Some(s) = path.slots.get_mut(d) {
                *s = Some(slot);
            }
            if d == depth {
                break;
            }
            let e = slot.get();
            let child = if e & PRESENT == 0 {
                let Some(pfn) = pool.take() else {
                    self.prune(pool, &path, d);
                    return Err(no_mem);
                };
                slot.set(table_entry(pfn, 0));
                self.tables += 1;
                self.inc(&path, d);
                pfn
            } else if is_leaf(e, d) {
                let Some(pfn) = pool.take() else {
                    self.prune(pool, &path, d);
                    return Err(no_mem);
                };
                Self::split(pfn, e);
                slot.set(table_entry(pfn, PAGE_U64S));
                self.tables += 1;
                self.large -= 1;
                self.small += PAGE_U64S;
                pfn
            } else {
                pfn_of(e)
            };
            // SAFETY: `child` is a table page of this SLAT (just installed
            // or found in a present table entry).
            table = unsafe { Table::new(child) };
        }
        Ok(path)
    }

    /// Fills the fresh (zeroed) table `pfn` with the 512 4 KiB entries
    /// equivalent to the 2 MiB entry `e`: same flags, consecutive pfns (all 0
    /// for a NO_ACCESS entry).
    fn split(pfn: u64, e: u64) {
        // SAFETY: `pfn` was just taken from the pool for this SLAT and is not
        // linked anywhere yet; the caller has exclusive access.
        let table = unsafe { Table::new(pfn) };
        let flags = e & !(LARGE | PFN_MASK | COUNT_MASK);
        let first = pfn_of(e);
        let step = if e & NO_ACCESS != 0 { 0 } else { 1 };
        for i in 0..PAGE_U64S {
            let p = first.wrapping_add(step * i as u64);
            table.set(i, flags | ((p << PFN_SHIFT) & PFN_MASK));
        }
    }

    /// Frees the empty tables on `path`, from `depth` up to the root.
    fn prune(&mut self, pool: &mut Pool, path: &Path, depth: usize) {
        let mut d = depth.min(SMALL_DEPTH);
        loop {
            if self.count(path, d) != 0 {
                return;
            }
            match d.checked_sub(1) {
                None => {
                    if let Some(root) = self.root.take() {
                        pool.give_back(root);
                        self.tables -= 1;
                    }
                    return;
                }
                Some(parent) => {
                    let Some(slot) = path.at(parent) else {
                        return;
                    };
                    let e = slot.get();
                    if e & PRESENT == 0 || is_leaf(e, parent) {
                        return;
                    }
                    slot.set(0);
                    pool.give_back(pfn_of(e));
                    self.tables -= 1;
                    self.dec(path, parent);
                    d = parent;
                }
            }
        }
    }

    /// Maps one 4 KiB page: `gfn` gets the leaf entry `leaf`.
    fn map_small(&mut self, pool: &mut Pool, gfn: u64, leaf: u64) -> HvResult {
        if gfn >= GFN_LIMIT {
            return Err(HvError::INVALID_PARAMETER);
        }
        if pool.free() < self.pages_needed(gfn, SMALL_DEPTH) {
            return Err(HvError::INSUFFICIENT_MEMORY);
        }
        let path = self.descend(pool, gfn, SMALL_DEPTH)?;
        let Some(slot) = path.at(SMALL_DEPTH) else {
            return Err(HvError::INVALID_PARAMETER);
        };
        let old = slot.get();
        if old == 0 {
            self.small += 1;
            self.inc(&path, SMALL_DEPTH);
        }
        // The access state belongs to the guest page, not to the mapping: a
        // remap (NO_ACCESS on invalidation, access again on the next fault)
        // keeps it, so dirty tracking loses no write.
        slot.set(leaf | (old & (ACCESSED | DIRTY)));
        Ok(())
    }

    /// Maps one 2 MiB page at the 512-aligned `gfn` with the leaf `leaf`.
    fn map_large(&mut self, pool: &mut Pool, gfn: u64, leaf: u64) -> HvResult {
        if gfn >= GFN_LIMIT || gfn % LARGE_PAGES != 0 {
            return Err(HvError::INVALID_PARAMETER);
        }
        if pool.free() < self.pages_needed(gfn, LARGE_DEPTH) {
            return Err(HvError::INSUFFICIENT_MEMORY);
        }
        let path = self.descend(pool, gfn, LARGE_DEPTH)?;
        let Some(slot) = path.at(LARGE_DEPTH) else {
            return Err(HvError::INVALID_PARAMETER);
        };
        let old = slot.get();
        let mut state = 0;
        if old == 0 {
            self.inc(&path, LARGE_DEPTH);
        } else if old & LARGE != 0 {
            self.large -= 1;
            state = old & (ACCESSED | DIRTY);
        } else {
            // A table of 4 KiB entries: replaced wholesale; the 2 MiB entry
            // carries the union of their access states.
            // SAFETY: a present non-leaf entry points at a table page of
            // this SLAT (type invariant); `&mut self`.
            let t = unsafe { Table::new(pfn_of(old)) };
            state = (0..PAGE_U64S).fold(0, |acc, i| acc | (t.get(i) & (ACCESSED | DIRTY)));
            self.small -= count_of(old);
            self.tables -= 1;
            pool.give_back(pfn_of(old));
        }
        slot.set(leaf | LARGE | state);
        self.large += 1;
        Ok(())
    }

    /// `HVCALL_MAP_GPA_PAGES`: maps `pfns.len()` reps from `base_gfn` with
    /// `flags` (`HV_MAP_GPA_*`). Replaces existing entries; see the module
    /// documentation for splits and memory.
    pub(crate) fn map(
        &mut self,
        pool: &mut Pool,
        base_gfn: u64,
        flags: u32,
        pfns: &[u64],
    ) -> RepResult {
        let large = flags & abi::HV_MAP_GPA_LARGE_PAGE != 0;
        let no_access = flags & abi::HV_MAP_GPA_NO_ACCESS != 0;
        for (i, &pfn) in pfns.iter().enumerate() {
            let fail = |error| RepError {
                done: i,
                error: HvError(error),
            };
            let pfn = if no_access { 0 } else { pfn };
            let res = if large {
                if pfn % LARGE_PAGES != 0 {
                    return Err(fail(status::INVALID_PARAMETER));
                }
                let gfn = (i as u64)
                    .checked_mul(LARGE_PAGES)
                    .and_then(|off| base_gfn.checked_add(off))
                    .ok_or(HvError::INVALID_PARAMETER);
                gfn.and_then(|gfn| self.map_large(pool, gfn, leaf_entry(flags, pfn)))
            } else {
                let gfn = base_gfn
                    .checked_add(i as u64)
                    .ok_or(HvError::INVALID_PARAMETER);
                gfn.and_then(|gfn| self.map_small(pool, gfn, leaf_entry(flags, pfn)))
            };
            res.map_err(|e| fail(e.0))?;
        }
        Ok(())
    }

    /// Removes the 4 KiB entry for `gfn`; `left` reps remain in the call
    /// (this one included). Returns how many reps it completed: 512 when it
    /// removed a whole 2 MiB entry that the remaining reps cover from its
    /// first page, else 1.
    fn unmap_small(&mut self, pool: &mut Pool, gfn: u64, left: usize) -> HvResult<usize> {
        if gfn >= GFN_LIMIT {
            return Err(HvError::INVALID_PARAMETER);
        }
        let path = self.walk(gfn, SMALL_DEPTH);
        let Some(slot2) = path.at(LARGE_DEPTH) else {
            return Ok(1);
        };
        let e2 = slot2.get();
        if e2 & PRESENT == 0 {
            return Ok(1);
        }
        if e2 & LARGE != 0 {
            if gfn % LARGE_PAGES == 0 && left >= PAGE_U64S {
                slot2.set(0);
                self.large -= 1;
                self.dec(&path, LARGE_DEPTH);
                self.prune(pool, &path, LARGE_DEPTH);
                return Ok(PAGE_U64S);
            }
            if pool.free() == 0 {
                return Err(HvError::INSUFFICIENT_MEMORY);
            }
        }
        // Splits the 2 MiB entry if there is one (the page was checked).
        let path = self.descend(pool, gfn, SMALL_DEPTH)?;
        if let Some(slot) = path.at(SMALL_DEPTH) {
            if slot.get() != 0 {
                slot.set(0);
                self.small -= 1;
                self.dec(&path, SMALL_DEPTH);
            }
        }
        self.prune(pool, &path, SMALL_DEPTH);
        Ok(1)
    }

    /// Removes the 2 MiB worth of entries at the 512-aligned `gfn`: a 2 MiB
    /// entry or a whole table of 4 KiB entries.
    fn unmap_large(&mut self, pool: &mut Pool, gfn: u64) -> HvResult {
        if gfn >= GFN_LIMIT || gfn % LARGE_PAGES != 0 {
            return Err(HvError::INVALID_PARAMETER);
        }
        let path = self.walk(gfn, LARGE_DEPTH);
        let Some(slot) = path.at(LARGE_DEPTH) else {
            return Ok(());
        };
        let e = slot.get();
        if e & PRESENT == 0 {
            return Ok(());
        }
        if e & LARGE != 0 {
            self.large -= 1;
        } else {
            self.small -= count_of(e);
            self.tables -= 1;
            pool.give_back(pfn_of(e));
        }
        slot.set(0);
        self.dec(&path, LARGE_DEPTH);
        self.prune(pool, &path, LARGE_DEPTH);
        Ok(())
    }

    /// `HVCALL_UNMAP_GPA_PAGES`: removes `count` reps of entries from
    /// `base_gfn` (2 MiB reps with `HV_UNMAP_GPA_LARGE_PAGE` in `flags`).
    /// Gfns without an entry are skipped.
    pub(crate) fn unmap(
        &mut self,
        pool: &mut Pool,
        base_gfn: u64,
        count: usize,
        flags: u32,
    ) -> RepResult {
        let large = flags & abi::HV_UNMAP_GPA_LARGE_PAGE != 0;
        let mut i = 0;
        while i < count {
            let fail = |error: HvError| RepError { done: i, error };
            if large {
                let gfn = (i as u64)
                    .checked_mul(LARGE_PAGES)
                    .and_then(|off| base_gfn.checked_add(off))
                    .ok_or(HvError::INVALID_PARAMETER)
                    .map_err(fail)?;
                self.unmap_large(pool, gfn).map_err(fail)?;
                i += 1;
            } else {
                let gfn = base_gfn
                    .checked_add(i as u64)
                    .ok_or(HvError::INVALID_PARAMETER)
                    .map_err(fail)?;
                i += self.unmap_small(pool, gfn, count - i).map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Translates `gfn` for a guest `access`, setting the entry's accessed
    /// bit (and dirty bit for a write) on success.
    pub(crate) fn translate(&mut self, gfn: u64, access: Access) -> Result<Translation, GpaFault> {
        self.lookup(gfn, access, true)
    }

    /// Translates `gfn` for `access` like [`Slat::translate`], without
    /// touching the accessed and dirty bits (for hypervisor-internal checks).
    pub(crate) fn check(&self, gfn: u64, access: Access) -> Result<Translation, GpaFault> {
        self.lookup(gfn, access, false)
    }

    /// Translates `gfn` for `access`; with `mark`, sets the accessed (and
    /// dirty) bits of the entry.
    fn lookup(&self, gfn: u64, access: Access, mark: bool) -> Result<Translation, GpaFault> {
        if gfn >= GFN_LIMIT {
            return Err(GpaFault::Unmapped);
        }
        let path = self.walk(gfn, SMALL_DEPTH);
        let mut leaf = None;
        for d in 0..=SMALL_DEPTH {
            let Some(slot) = path.at(d) else {
                break;
            };
            let e = slot.get();
            if e & PRESENT == 0 {
                break;
            }
            if is_leaf(e, d) {
                leaf = Some((slot, e, d == LARGE_DEPTH));
                break;
            }
        }
        let Some((slot, e, large)) = leaf else {
            return Err(GpaFault::Unmapped);
        };
        let needed = match access {
            Access::Read => READ,
            Access::Write => WRITE,
            Access::Execute => KEXEC | UEXEC,
        };
        if e & NO_ACCESS != 0 || e & needed == 0 {
            return Err(GpaFault::Intercept);
        }
        let bits = if access == Access::Write {
            ACCESSED | DIRTY
        } else {
            ACCESSED
        };
        if mark && e & bits != bits {
            slot.set(e | bits);
        }
        let pfn = if large {
            pfn_of(e) + (gfn % LARGE_PAGES)
        } else {
            pfn_of(e)
        };
        Ok(Translation {
            pfn,
            large,
            uncached: e & UNCACHED != 0,
        })
    }

    /// Calls `f(gfn, pfn, flags, large)` for every leaf entry that intersects
    /// `[first, first + count)`, in gfn order. For a 2 MiB entry, `gfn` and
    /// `pfn` are those of its first page; `flags` are the entry's bits (see
    /// the module documentation), `pfn` excluded.
    pub(crate) fn for_each_entry(
        &self,
        first: u64,
        count: u64,
        mut f: impl FnMut(u64, u64, u64, bool),
    ) {
        let end = first.saturating_add(count).min(GFN_LIMIT);
        let Some(root) = self.root else {
            return;
        };
        // SAFETY: table pages of this SLAT; `&self` under the partition lock.
        let root = unsafe { Table::new(root) };
        self.visit(root, 0, 0, first, end, &mut f);
    }

    /// Visits the entries of `table` (at `depth`, covering gfns from `base`)
    /// that intersect `[first, end)`.
    fn visit(
        &self,
        table: Table,
        depth: usize,
        base: u64,
        first: u64,
        end: u64,
        f: &mut impl FnMut(u64, u64, u64, bool),
    ) {
        let span = 1u64 << (9 * (SMALL_DEPTH - depth.min(SMALL_DEPTH)) as u32);
        for i in 0..PAGE_U64S {
            let lo = base + i as u64 * span;
            let hi = lo + span;
            if hi <= first {
                continue;
            }
            if lo >= end {
                break;
            }
            let e = table.get(i);
            if e & PRESENT == 0 {
                continue;
            }
            if is_leaf(e, depth) {
                f(lo, pfn_of(e), e & !PFN_MASK, depth == LARGE_DEPTH);
            } else if depth < SMALL_DEPTH {
                // SAFETY: a present non-leaf entry points at a table page of
                // this SLAT (type invariant); `&self` under the lock.
                let child = unsafe { Table::new(pfn_of(e)) };
                self.visit(child, depth + 1, lo, first, end, f);
            }
        }
    }

    /// The leaf entry covering `gfn` (4 KiB or 2 MiB) and its slot.
    fn leaf(&self, gfn: u64) -> Option<(Slot, u64, bool)> {
        if gfn >= GFN_LIMIT {
            return None;
        }
        let path = self.walk(gfn, SMALL_DEPTH);
        for d in 0..=SMALL_DEPTH {
            let slot = path.at(d)?;
            let e = slot.get();
            if e & PRESENT == 0 {
                return None;
            }
            if is_leaf(e, d) {
                return Some((slot, e, d == LARGE_DEPTH));
            }
        }
        None
    }

    /// `HVCALL_GET_GPA_PAGES_ACCESS_STATES` on the entries: writes the
    /// access state (`hv_gpa_page_access_state`: [`STATE_ACCESSED`],
    /// [`STATE_DIRTY`]) of the `out.len()` pages from `first` into `out`,
    /// then applies `op` to each page's entry. A gfn without an entry reads
    /// 0 and is left alone; NO_ACCESS entries keep and report their state.
    ///
    /// A 2 MiB entry has one state for its 512 pages. Setting bits on part
    /// of it sets them for all (over-reporting is safe); clearing bits on
    /// part of it first splits it into 4 KiB entries, which costs a pool page:
    /// without one the call stops with `INSUFFICIENT_MEMORY` at that page,
    /// before reading it, so the caller can deposit and resume there.
    pub(crate) fn access_states(
        &mut self,
        pool: &mut Pool,
        first: u64,
        out: &mut [u8],
        op: StateOp,
    ) -> RepResult {
        let n = out.len();
        let mut i = 0;
        while i < n {
            let gfn = first.saturating_add(i as u64);
            let fail = |error| RepError {
                done: i,
                error: HvError(error),
            };
            let Some((slot, e, large)) = self.leaf(gfn) else {
                if let Some(b) = out.get_mut(i) {
                    *b = 0;
                }
                i += 1;
                continue;
            };
            let state = state_of(e);
            if large {
                let base = gfn - gfn % LARGE_PAGES;
                let covered = base >= first && base + LARGE_PAGES <= first.saturating_add(n as u64);
                if op.clear & e != 0 && !covered {
                    if pool.free() == 0 {
                        return Err(fail(status::INSUFFICIENT_MEMORY));
                    }
                    // Splits the entry (its pages keep its state); then this
                    // page is handled as a 4 KiB entry.
                    self.descend(pool, gfn, SMALL_DEPTH)
                        .map_err(|e| fail(e.0))?;
                    continue;
                }
                // Every page of the entry inside the range, then `op` once.
                let end = (base + LARGE_PAGES - gfn).min((n - i) as u64) as usize;
                if let Some(dst) = out.get_mut(i..i + end) {
                    dst.fill(state);
                }
                slot.set(op.apply(e));
                i += end;
            } else {
                if let Some(b) = out.get_mut(i) {
                    *b = state;
                }
                slot.set(op.apply(e));
                i += 1;
            }
        }
        Ok(())
    }

    /// Sets `bits` (a subset of [`ACCESSED`] | [`DIRTY`]) in every leaf entry.
    pub(crate) fn mark_all(&mut self, bits: u64) {
        self.for_each_leaf_slot(|e| e | (bits & (ACCESSED | DIRTY)));
    }

    /// Whether every leaf entry has all of `bits` set.
    pub(crate) fn all_marked(&self, bits: u64) -> bool {
        let mut all = true;
        self.for_each_entry(0, GFN_LIMIT, |_, _, flags, _| {
            all &= flags & bits == bits;
        });
        all
    }

    /// Replaces every leaf entry `e` by `f(e)`; `f` may change only the
    /// access-state bits.
    fn for_each_leaf_slot(&mut self, mut f: impl FnMut(u64) -> u64) {
        fn visit(table: Table, depth: usize, f: &mut impl FnMut(u64) -> u64) {
            for i in 0..PAGE_U64S {
                let e = table.get(i);
                if e & PRESENT == 0 {
                    continue;
                }
                if is_leaf(e, depth) {
                    let new = (e & !(ACCESSED | DIRTY)) | (f(e) & (ACCESSED | DIRTY));
                    table.set(i, new);
                } else if depth < SMALL_DEPTH {
                    // SAFETY: a present non-leaf entry points at a table page
                    // of this SLAT (type invariant); the caller has `&mut`.
                    visit(unsafe { Table::new(pfn_of(e)) }, depth + 1, f);
                }
            }
        }
        if let Some(root) = self.root {
            // SAFETY: the root table page of this SLAT; `&mut self`.
            visit(unsafe { Table::new(root) }, 0, &mut f);
        }
    }

    /// Fault injection for the mirror checker: points the accessible leaf
    /// entry covering `gfn` at a wrong page (its pfn XOR 512, which keeps a
    /// 2 MiB entry aligned). Returns whether there was such an entry. The
    /// entry is never used to access memory: tests read it back through the
    /// checker only, then remove the region.
    pub(crate) fn corrupt(&mut self, gfn: u64) -> bool {
        if gfn >= GFN_LIMIT {
            return false;
        }
        let path = self.walk(gfn, SMALL_DEPTH);
        for d in 0..=SMALL_DEPTH {
            let Some(slot) = path.at(d) else {
                return false;
            };
            let e = slot.get();
            if e & PRESENT == 0 {
                return false;
            }
            if is_leaf(e, d) {
                if e & NO_ACCESS != 0 || e & PERMS == 0 {
                    return false;
                }
                slot.set(e ^ (LARGE_PAGES << PFN_SHIFT));
                return true;
            }
        }
        false
    }

    /// Leaf entries (4 KiB or 2 MiB) that grant some access.
    pub(crate) fn accessible_entries(&self) -> usize {
        let mut n = 0;
        self.for_each_entry(0, GFN_LIMIT, |_, _, flags, _| {
            if flags & PERMS != 0 && flags & NO_ACCESS == 0 {
                n += 1;
            }
        });
        n
    }

    /// Removes every entry and gives every table page back to `pool`.
    pub(crate) fn clear(&mut self, pool: &mut Pool) {
        let Some(root) = self.root.take() else {
            return;
        };
        // SAFETY: table pages of this SLAT; `&mut self`.
        let root_table = unsafe { Table::new(root) };
        for i in 0..PAGE_U64S {
            let e1 = root_table.get(i);
            if e1 & PRESENT == 0 {
                continue;
            }
            // SAFETY: present non-leaf entry of this SLAT.
            let t1 = unsafe { Table::new(pfn_of(e1)) };
            for j in 0..PAGE_U64S {
                let e2 = t1.get(j);
                if e2 & PRESENT == 0 {
                    continue;
                }
                // SAFETY: present non-leaf entry of this SLAT.
                let t2 = unsafe { Table::new(pfn_of(e2)) };
                for k in 0..PAGE_U64S {
                    let e3 = t2.get(k);
                    if e3 & PRESENT != 0 && e3 & LARGE == 0 {
                        pool.give_back(pfn_of(e3));
                    }
                }
                pool.give_back(pfn_of(e2));
            }
            pool.give_back(pfn_of(e1));
        }
        pool.give_back(root);
        // INVARIANT: no table is held any more. (Not `*self = Self::new()`:
        // that would drop the old value, whose `Drop` checks the counts.)
        self.root_count = 0;
        self.tables = 0;
        self.small = 0;
        self.large = 0;
    }
}

impl Drop for Slat {
    fn drop(&mut self) {
        if self.tables != 0 {
            pr_err!(
                "sim slat: dropped holding {} table pages (leaked)\n",
                self.tables
            );
        }
    }
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_sim_slat)]
mod tests {
    use super::*;
    use crate::sys::page::OwnedPage;

    const RWX: u32 =
        abi::HV_MAP_GPA_READABLE | abi::HV_MAP_GPA_WRITABLE | abi::HV_MAP_GPA_EXECUTABLE;
    const RO: u32 = abi::HV_MAP_GPA_READABLE;

    /// A pool with `n` fresh pages.
    fn pool_with(n: usize) -> Result<Pool> {
        let mut pool = Pool::new();
        add_pages(&mut pool, n)?;
        Ok(pool)
    }

    /// Deposits `n` fresh pages into `pool`.
    fn add_pages(pool: &mut Pool, n: usize) -> Result {
        let mut bigger = KVec::with_capacity(pool.capacity_for(n), GFP_KERNEL)?;
        bigger = pool.grow(bigger);
        drop(bigger);
        for _ in 0..n {
            let pfn = OwnedPage::new()?.into_pfn();
            // SAFETY: `pfn` was just given up with `into_pfn`.
            if let Err(e) = unsafe { pool.deposit(&[pfn]) } {
                // SAFETY: the pool did not take it; we still own it.
                drop(unsafe { OwnedPage::from_pfn(pfn) });
                return Err(e);
            }
        }
        Ok(())
    }

    /// Real pages standing in for guest memory (the SLAT never touches them).
    fn guest_pages(n: usize) -> Result<KVec<OwnedPage>> {
        let mut v = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            v.push(OwnedPage::new()?, GFP_KERNEL)?;
        }
        Ok(v)
    }

    /// A 512-aligned pfn for 2 MiB maps (never dereferenced by the SLAT).
    fn large_pfn(page: &OwnedPage) -> u64 {
        page.pfn() & !(LARGE_PAGES - 1)
    }

    fn rep_err(done: usize, status: u16) -> RepResult {
        Err(RepError {
            done,
            error: HvError(status),
        })
    }

    fn translate(slat: &mut Slat, gfn: u64, access: Access) -> Result<(u64, bool), GpaFault> {
        slat.translate(gfn, access).map(|t| (t.pfn, t.large))
    }

    /// The flags of the entry mapping `gfn`, if any.
    fn flags_of(slat: &Slat, gfn: u64) -> Option<u64> {
        let mut out = None;
        slat.for_each_entry(gfn, 1, |_, _, flags, _| out = Some(flags));
        out
    }

    #[test]
    fn map_small_and_translate() -> Result {
        let mut pool = pool_with(8)?;
        let g = guest_pages(2)?;
        let mut slat = Slat::new();
        let (p0, p1) = (g[0].pfn(), g[1].pfn());
        assert_eq!(slat.map(&mut pool, 0x1000, RWX, &[p0, p1]), Ok(()));
        // Root, depth 1, depth 2 and one depth-3 table.
        assert_eq!(slat.tables(), 4);
        assert_eq!(pool.in_use(), 4);
        assert_eq!(slat.small_entries(), 2);
        assert_eq!(translate(&mut slat, 0x1000, Access::Read), Ok((p0, false)));
        assert_eq!(
            translate(&mut slat, 0x1001, Access::Execute),
            Ok((p1, false))
        );
        assert_eq!(
            translate(&mut slat, 0x1002, Access::Read),
            Err(GpaFault::Unmapped)
        );
        // Remapping an entry replaces it and takes no page.
        assert_eq!(slat.map(&mut pool, 0x1000, RWX, &[p1]), Ok(()));
        assert_eq!(translate(&mut slat, 0x1000, Access::Write), Ok((p1, false)));
        assert_eq!(slat.small_entries(), 2);
        assert_eq!(pool.in_use(), 4);
        slat.clear(&mut pool);
        assert_eq!(pool.in_use(), 0);
        Ok(())
    }

    #[test]
    fn map_large_and_translate() -> Result {
        let mut pool = pool_with(4)?;
        let g = guest_pages(1)?;
        let mut slat = Slat::new();
        let p = large_pfn(&g[0]);
        let flags = RWX | abi::HV_MAP_GPA_LARGE_PAGE;
        assert_eq!(slat.map(&mut pool, 0x200, flags, &[p]), Ok(()));
        assert_eq!(slat.tables(), 3);
        assert_eq!(slat.large_entries(), 1);
        assert_eq!(translate(&mut slat, 0x205, Access::Read), Ok((p + 5, true)));
        assert_eq!(
            translate(&mut slat, 0x3ff, Access::Write),
            Ok((p + 0x1ff, true))
        );
        assert_eq!(
            translate(&mut slat, 0x400, Access::Read),
            Err(GpaFault::Unmapped)
        );
        // Misaligned gfn or pfn.
        assert_eq!(
            slat.map(&mut pool, 0x201, flags, &[p]),
            rep_err(0, status::INVALID_PARAMETER)
        );
        assert_eq!(
            slat.map(&mut pool, 0x400, flags, &[p, p + 1]),
            rep_err(1, status::INVALID_PARAMETER)
        );
        // Out of the 48-bit GPA space.
        assert_eq!(
            slat.map(&mut pool, GFN_LIMIT, RWX, &[p]),
            rep_err(0, status::INVALID_PARAMETER)
        );
        slat.clear(&mut pool);
        assert_eq!(pool.in_use(), 0);
        Ok(())
    }

    #[test]
    fn split_on_partial_remap() -> Result {
        let mut pool = pool_with(4)?;
        let g = guest_pages(2)?;
        let mut slat = Slat::new();
        let p = large_pfn(&g[0]);
        let x = g[1].pfn();
        assert_eq!(
            slat.map(&mut pool, 0x400, RO | abi::HV_MAP_GPA_LARGE_PAGE, &[p]),
            Ok(())
        );
        let before = pool.in_use();
        assert_eq!(slat.map(&mut pool, 0x407, RWX, &[x]), Ok(()));
        // One page for the new depth-3 table.
        assert_eq!(pool.in_use(), before + 1);
        assert_eq!(slat.large_entries(), 0);
        assert_eq!(slat.small_entries(), 512);
        assert_eq!(translate(&mut slat, 0x407, Access::Write), Ok((x, false)));
        // The others inherit pfn + i and the old flags (read-only).
        assert_eq!(translate(&mut slat, 0x400, Access::Read), Ok((p, false)));
        assert_eq!(
            translate(&mut slat, 0x5ff, Access::Read),
            Ok((p + 0x1ff, false))
        );
        assert_eq!(
            translate(&mut slat, 0x408, Access::Write),
            Err(GpaFault::Intercept)
        );
        slat.clear(&mut pool);
        assert_eq!(pool.in_use(), 0);
        Ok(())
    }

    #[test]
    fn split_on_unmap() -> Result {
        let mut pool = pool_with(4)?;
        let g = guest_pages(1)?;
        let mut slat = Slat::new();
        let p = large_pfn(&g[0]);
        assert_eq!(
            slat.map(&mut pool, 0x400, RWX | abi::HV_MAP_GPA_LARGE_PAGE, &[p]),
            Ok(())
        );
        assert_eq!(slat.unmap(&mut pool, 0x403, 1, 0), Ok(()));
        assert_eq!(slat.small_entries(), 511);
        assert_eq!(slat.tables(), 4);
        assert_eq!(
            translate(&mut slat, 0x403, Access::Read),
            Err(GpaFault::Unmapped)
        );
        assert_eq!(
            translate(&mut slat, 0x404, Access::Read),
            Ok((p + 4, false))
        );
        // Unmapping the rest returns every table.
        assert_eq!(slat.unmap(&mut pool, 0x400, 512, 0), Ok(()));
        assert_eq!(slat.small_entries(), 0);
        assert_eq!(slat.tables(), 0);
        assert_eq!(pool.in_use(), 0);
        Ok(())
    }

    #[test]
    fn unmap_whole_large_with_small_reps() -> Result {
        // 512 aligned 4 KiB reps remove a 2 MiB entry without splitting it,
        // so they need no page even with an empty pool.
        let mut pool = pool_with(3)?;
        let g = guest_pages(1)?;
        let mut slat = Slat::new();
        let p = large_pfn(&g[0]);
        assert_eq!(
            slat.map(&mut pool, 0x600, RWX | abi::HV_MAP_GPA_LARGE_PAGE, &[p]),
            Ok(())
        );
        assert_eq!(pool.free(), 0);
        assert_eq!(slat.unmap(&mut pool, 0x600, 512, 0), Ok(()));
        assert_eq!(slat.large_entries(), 0);
        assert_eq!(pool.in_use(), 0);
        Ok(())
    }

    #[test]
    fn no_memory_at_split_reports_reps_done() -> Result {
        let mut pool = pool_with(4)?;
        let g = guest_pages(4)?;
        let mut slat = Slat::new();
        let p = large_pfn(&g[0]);
        // gfn 0 takes all four pages; the 2 MiB entry at 512 shares them.
        assert_eq!(slat.map(&mut pool, 0, RWX, &[g[1].pfn()]), Ok(()));
        assert_eq!(
            slat.map(&mut pool, 512, RWX | abi::HV_MAP_GPA_LARGE_PAGE, &[p]),
            Ok(())
        );
        assert_eq!(pool.free(), 0);
        let pfns = [g[1].pfn(), g[2].pfn(), g[3].pfn()];
        // 510 and 511 fit in the existing table; 512 needs a split page.
        assert_eq!(
            slat.map(&mut pool, 510, RWX, &pfns),
            rep_err(2, status::INSUFFICIENT_MEMORY)
        );
        assert_eq!(
            translate(&mut slat, 510, Access::Read),
            Ok((g[1].pfn(), false))
        );
        assert_eq!(
            translate(&mut slat, 511, Access::Read),
            Ok((g[2].pfn(), false))
        );
        assert_eq!(translate(&mut slat, 512, Access::Read), Ok((p, true)));
        assert_eq!(slat.large_entries(), 1);
        // The same for an unmap inside the 2 MiB entry.
        assert_eq!(
            slat.unmap(&mut pool, 511, 2, 0),
            rep_err(1, status::INSUFFICIENT_MEMORY)
        );
        assert_eq!(
            translate(&mut slat, 511, Access::Read),
            Err(GpaFault::Unmapped)
        );
        // Deposit one page and resume at the failed rep.
        add_pages(&mut pool, 1)?;
        assert_eq!(slat.map(&mut pool, 512, RWX, &pfns[2..]), Ok(()));
        assert_eq!(
            translate(&mut slat, 512, Access::Read),
            Ok((g[3].pfn(), false))
        );
        assert_eq!(translate(&mut slat, 513, Access::Read), Ok((p + 1, false)));
        assert_eq!(slat.large_entries(), 0);
        slat.clear(&mut pool);
        assert_eq!(pool.in_use(), 0);
        Ok(())
    }

    #[test]
    fn translate_faults() -> Result {
        let mut pool = pool_with(8)?;
        let g = guest_pages(3)?;
        let mut slat = Slat::new();
        let rw = abi::HV_MAP_GPA_READABLE | abi::HV_MAP_GPA_WRITABLE;
        // gfn 10 NO_ACCESS, 11 read-only, 12 read-write (not executable).
        for (gfn, flags, pfn) in [
            (10, abi::HV_MAP_GPA_NO_ACCESS, g[0].pfn()),
            (11, RO, g[1].pfn()),
            (12, rw, g[2].pfn()),
        ] {
            assert_eq!(
                (gfn, slat.map(&mut pool, gfn, flags, &[pfn])),
                (gfn, Ok(()))
            );
        }
        let (unmapped, intercept) = (Err(GpaFault::Unmapped), Err(GpaFault::Intercept));
        for (gfn, access, want) in [
            // Holes around the entries.
            (5, Access::Read, unmapped),
            (13, Access::Read, unmapped),
            // NO_ACCESS: every access intercepts.
            (10, Access::Read, intercept),
            (10, Access::Write, intercept),
            (10, Access::Execute, intercept),
            // Read-only: reads pass, writes and fetches intercept.
            (11, Access::Read, Ok((g[1].pfn(), false))),
            (11, Access::Write, intercept),
            (11, Access::Execute, intercept),
            // Read-write: only fetches intercept.
            (12, Access::Read, Ok((g[2].pfn(), false))),
            (12, Access::Write, Ok((g[2].pfn(), false))),
            (12, Access::Execute, intercept),
        ] {
            // The row is part of the comparison, so a failure names it.
            assert_eq!(
                (gfn, access, translate(&mut slat, gfn, access)),
                (gfn, access, want)
            );
        }
        // A NO_ACCESS entry keeps no pfn.
        let mut pfn10 = None;
        slat.for_each_entry(10, 1, |_, pfn, _, _| pfn10 = Some(pfn));
        assert_eq!(pfn10, Some(0));
        assert_eq!(slat.accessible_entries(), 2);
        slat.clear(&mut pool);
        assert_eq!(pool.in_use(), 0);
        Ok(())
    }

    #[test]
    fn accessed_and_dirty_bits() -> Result {
        let mut pool = pool_with(4)?;
        let g = guest_pages(2)?;
        let mut slat = Slat::new();
        assert_eq!(
            slat.map(&mut pool, 20, RWX, &[g[0].pfn(), g[1].pfn()]),
            Ok(())
        );
        assert_eq!(flags_of(&slat, 20).map(|f| f & (ACCESSED | DIRTY)), Some(0));
        assert!(translate(&mut slat, 20, Access::Read).is_ok());
        assert_eq!(
            flags_of(&slat, 20).map(|f| f & (ACCESSED | DIRTY)),
            Some(ACCESSED)
        );
        assert!(translate(&mut slat, 21, Access::Write).is_ok());
        assert_eq!(
            flags_of(&slat, 21).map(|f| f & (ACCESSED | DIRTY)),
            Some(ACCESSED | DIRTY)
        );
        // A remap keeps the page's state; a failed access marks nothing.
        assert_eq!(slat.map(&mut pool, 20, RO, &[g[0].pfn()]), Ok(()));
        assert_eq!(
            translate(&mut slat, 20, Access::Write),
            Err(GpaFault::Intercept)
        );
        assert_eq!(
            flags_of(&slat, 20).map(|f| f & (ACCESSED | DIRTY)),
            Some(ACCESSED)
        );
        assert_eq!(
            slat.map(&mut pool, 21, abi::HV_MAP_GPA_NO_ACCESS, &[0]),
            Ok(())
        );
        assert_eq!(
            flags_of(&slat, 21).map(|f| f & (ACCESSED | DIRTY)),
            Some(ACCESSED | DIRTY)
        );
        slat.clear(&mut pool);
        Ok(())
    }

    #[test]
    fn access_states_read_clear_set() -> Result {
        let mut pool = pool_with(8)?;
        let g = guest_pages(1)?;
        let mut slat = Slat::new();
        let big = large_pfn(&g[0]);
        // 4 KiB entries at gfns 8..11, a 2 MiB entry at 512..1023.
        assert_eq!(slat.map(&mut pool, 8, RWX, &[g[0].pfn(); 3]), Ok(()));
        assert_eq!(
            slat.map(&mut pool, 512, RWX | abi::HV_MAP_GPA_LARGE_PAGE, &[big]),
            Ok(())
        );
        assert!(translate(&mut slat, 8, Access::Write).is_ok());
        assert!(translate(&mut slat, 9, Access::Read).is_ok());
        assert!(translate(&mut slat, 600, Access::Write).is_ok());
        let (a, d) = (STATE_ACCESSED, STATE_DIRTY);
        let noop = StateOp::default();
        let mut out = [0xffu8; 5];
        // gfns 7..12: a hole, written, read, untouched, a hole.
        assert_eq!(slat.access_states(&mut pool, 7, &mut out, noop), Ok(()));
        assert_eq!(out, [0, a | d, a, 0, 0]);
        let clear_dirty = StateOp::from_flags(0b0100).ok_or(EINVAL)?;
        assert_eq!(
            slat.access_states(&mut pool, 7, &mut out, clear_dirty),
            Ok(())
        );
        assert_eq!(out, [0, a | d, a, 0, 0]);
        assert_eq!(slat.access_states(&mut pool, 7, &mut out, noop), Ok(()));
        assert_eq!(out, [0, a, a, 0, 0]);
        // The whole 2 MiB entry reads as one; clearing all of it needs no split.
        let mut big_out = KVec::from_elem(0u8, 512, GFP_KERNEL)?;
        assert_eq!(
            slat.access_states(&mut pool, 512, &mut big_out, noop),
            Ok(())
        );
        assert!(big_out.iter().all(|&s| s == a | d));
        // Clearing part of it splits it (one pool page), the rest keeps its bits.
        let free = pool.free();
        let clear_all = StateOp::from_flags(0b0101).ok_or(EINVAL)?;
        let mut two = [0u8; 2];
        assert_eq!(
            slat.access_states(&mut pool, 600, &mut two, clear_all),
            Ok(())
        );
        assert_eq!(two, [a | d, a | d]);
        assert_eq!(pool.free(), free - 1);
        assert_eq!(slat.large_entries(), 0);
        assert_eq!(slat.access_states(&mut pool, 599, &mut out, noop), Ok(()));
        assert_eq!(out, [a | d, 0, 0, a | d, a | d]);
        // Without a free page the split stops before the page, with nothing read.
        assert_eq!(
            slat.map(&mut pool, 1024, RWX | abi::HV_MAP_GPA_LARGE_PAGE, &[big]),
            Ok(())
        );
        let set_dirty = StateOp::from_flags(0b1010).ok_or(EINVAL)?;
        assert_eq!(
            slat.access_states(&mut pool, 1024, &mut two, set_dirty),
            Ok(())
        );
        let mut taken = KVec::new();
        while let Some(pfn) = pool.take() {
            taken.push(pfn, GFP_KERNEL)?;
        }
        assert_eq!(
            slat.access_states(&mut pool, 1020, &mut out, clear_all),
            rep_err(4, status::INSUFFICIENT_MEMORY)
        );
        for pfn in taken {
            pool.give_back(pfn);
        }
        assert_eq!(StateOp::from_flags(0b0011), None);
        assert_eq!(StateOp::from_flags(0x10), None);
        // Marking all; `all_marked` sees a cleared entry.
        assert!(!slat.all_marked(ACCESSED | DIRTY));
        slat.mark_all(ACCESSED | DIRTY);
        assert!(slat.all_marked(ACCESSED | DIRTY));
        slat.clear(&mut pool);
        Ok(())
    }

    #[test]
    fn empty_tables_go_back_to_the_pool() -> Result {
        let mut pool = pool_with(8)?;
        let g = guest_pages(1)?;
        let mut slat = Slat::new();
        // Two gfns in different depth-1 subtrees: 6 tables.
        let far = 1 << 27;
        assert_eq!(slat.map(&mut pool, 1, RWX, &[g[0].pfn()]), Ok(()));
        assert_eq!(slat.map(&mut pool, far, RWX, &[g[0].pfn()]), Ok(()));
        assert_eq!(slat.tables(), 7);
        assert_eq!(slat.unmap(&mut pool, far, 1, 0), Ok(()));
        assert_eq!(slat.tables(), 4);
        assert_eq!(pool.in_use(), 4);
        // Unmapping what is not mapped is fine.
        assert_eq!(slat.unmap(&mut pool, 2, 100, 0), Ok(()));
        assert_eq!(
            slat.unmap(&mut pool, 0, 4, abi::HV_UNMAP_GPA_LARGE_PAGE),
            Ok(())
        );
        assert_eq!(slat.tables(), 0);
        assert_eq!(pool.in_use(), 0);
        // A 2 MiB map over a table of 4 KiB entries frees that table.
        assert_eq!(
            slat.map(&mut pool, 1024, RWX, &[g[0].pfn(), g[0].pfn()]),
            Ok(())
        );
        assert_eq!(slat.tables(), 4);
        let p = large_pfn(&g[0]);
        assert_eq!(
            slat.map(&mut pool, 1024, RWX | abi::HV_MAP_GPA_LARGE_PAGE, &[p]),
            Ok(())
        );
        assert_eq!(slat.tables(), 3);
        assert_eq!(slat.small_entries(), 0);
        assert_eq!(pool.in_use(), 3);
        slat.clear(&mut pool);
        assert_eq!(pool.in_use(), 0);
        Ok(())
    }

    #[test]
    fn teardown_returns_every_page() -> Result {
        let mut pool = pool_with(32)?;
        let g = guest_pages(4)?;
        let mut slat = Slat::new();
        let p = large_pfn(&g[0]);
        let pfns = [g[1].pfn(), g[2].pfn(), g[3].pfn()];
        assert_eq!(slat.map(&mut pool, 0, RWX, &pfns), Ok(()));
        assert_eq!(
            slat.map(
                &mut pool,
                1 << 20,
                RWX | abi::HV_MAP_GPA_LARGE_PAGE,
                &[p, p]
            ),
            Ok(())
        );
        assert_eq!(
            slat.map(&mut pool, (1 << 20) + 3, abi::HV_MAP_GPA_NO_ACCESS, &[0]),
            Ok(())
        );
        assert_eq!(slat.map(&mut pool, (1 << 30) + 7, RO, &pfns), Ok(()));
        assert!(pool.in_use() > 0);
        let mut seen = 0;
        slat.for_each_entry(0, GFN_LIMIT, |_, _, _, _| seen += 1);
        assert_eq!(seen, 3 + 512 + 1 + 3);
        slat.clear(&mut pool);
        assert_eq!(slat.tables(), 0);
        assert_eq!(pool.in_use(), 0);
        let mut out = [0u64; 64];
        let n = pool.withdraw(&mut out);
        assert_eq!(n, 32);
        assert_eq!(pool.total(), 0);
        for &pfn in out.iter().take(n) {
            // SAFETY: withdrawn pages are ours again.
            drop(unsafe { OwnedPage::from_pfn(pfn) });
        }
        Ok(())
    }
}
