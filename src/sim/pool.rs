// SPDX-License-Identifier: GPL-2.0

//! The deposit pool of one simulated partition.
//!
//! The hypervisor has no memory of its own: every object it creates for a
//! partition (the partition itself, VPs, their state pages, SLAT tables) is
//! carved out of host pages the root deposited with `HVCALL_DEPOSIT_MEMORY`.
//! The pool keeps those pages, hands free ones to the rest of the simulator
//! and takes them back when the objects go away; `HVCALL_WITHDRAW_MEMORY`
//! returns free pages to the root.
//!
//! Allocation rule: the pool itself never allocates. Its free list grows only
//! on the deposit path, which allocates a bigger vector outside any lock and
//! hands it to [`Pool::grow`]; every other method works within the capacity
//! reserved then, so map, unmap and withdraw never allocate. The list is
//! kmalloc'ed (not kvmalloc'ed) because it may be freed in atomic context: the
//! last reference to a partition can go away at the end of a map call made
//! from a non-blockable MMU-notifier invalidation, and `vfree` may sleep.

use crate::sys::page::OwnedPage;
use crate::tlfs::HV_PAGE;
use kernel::prelude::*;

/// Number of `u64`s in a page.
pub(crate) const PAGE_U64S: usize = 512;

/// Pool pages charged for `bytes` of the emulator's own bookkeeping (at
/// least one). Its objects are slab allocations (`GFP_ATOMIC`), but each is
/// charged against this many pages of the pool that pays for it, taken
/// before the object is allocated and given back when it goes: whether it
/// can exist depends on deposits exactly as Hyper-V's own structures do.
pub(crate) const fn pages_for(bytes: usize) -> usize {
    let pages = bytes.div_ceil(HV_PAGE);
    if pages == 0 {
        1
    } else {
        pages
    }
}
/// Smallest capacity a pfn list grows to.
const MIN_CAPACITY: usize = 64;

/// The capacity to grow a pfn list of capacity `capacity`, which must hold
/// `used` entries, to before `n` more arrive: at least what they need, and
/// at least double the current capacity, so a long series of deposits
/// copies the list only a logarithmic number of times.
fn grown_capacity(capacity: usize, used: usize, n: usize) -> usize {
    used.saturating_add(n)
        .max(capacity.saturating_mul(2))
        .max(MIN_CAPACITY)
}

/// Moves the entries of `list` into `bigger`, if `bigger` is empty and has
/// room for `reserve` (>= `list.len()`) entries, and returns the old vector
/// for the caller to drop outside its lock; else returns `bigger` untouched.
/// Never allocates.
fn move_into(list: &mut KVec<u64>, reserve: usize, mut bigger: KVec<u64>) -> KVec<u64> {
    if bigger.capacity() < reserve.max(list.len()) || !bigger.is_empty() {
        return bigger;
    }
    for &pfn in list.iter() {
        // `bigger.capacity() >= list.len()`: cannot fail.
        if bigger.push_within_capacity(pfn).is_err() {
            return bigger;
        }
    }
    core::mem::replace(list, bigger)
}

/// The direct-map address of a page owned by a pool (or by an object built
/// from pool pages), seen as 512 `u64`s.
///
/// # Safety
///
/// `pfn` must be a page deposited into a pool (given up by its depositor with
/// [`OwnedPage::into_pfn`]) that stays owned by the simulator, and not be
/// withdrawn or freed, while the returned pointer is used.
pub(crate) unsafe fn page_u64s(pfn: u64) -> *mut [u64; PAGE_U64S] {
    // SAFETY: by the function's contract `pfn` is a pool page that stays
    // allocated while the pointer is used.
    unsafe { crate::sys::page::direct_map_u64s(pfn) }
}

/// Fills a pool page with zeroes.
///
/// # Safety
///
/// As for [`page_u64s`], and nothing else may access the page meanwhile.
pub(crate) unsafe fn zero_page(pfn: u64) {
    // SAFETY: per the contract the page is ours and not aliased; the pointer
    // is valid for one `[u64; 512]` (a whole 4 KiB page of the direct map).
    unsafe { core::ptr::write_bytes(page_u64s(pfn), 0, 1) };
}

/// The deposited pages of one partition.
///
/// # Invariants
///
/// - Every pfn in `free` was given up with [`OwnedPage::into_pfn`] by its
///   depositor and is owned by this pool; it is freed exactly once: by
///   [`Pool::withdraw`] (ownership goes back to the root) or on drop.
/// - `total` counts the pages deposited and not withdrawn: those in `free`
///   plus those lent out with [`Pool::take`] and not yet given back.
/// - `free.capacity() >= total`, so [`Pool::give_back`] never allocates.
pub(crate) struct Pool {
    /// Free pages.
    free: KVec<u64>,
    /// Pages owned by the pool, free or lent out.
    total: usize,
}

impl Pool {
    /// An empty pool.
    pub(crate) const fn new() -> Self {
        // INVARIANT: no pages, capacity 0 >= total 0.
        Self {
            free: KVec::new(),
            total: 0,
        }
    }

    /// Pages owned by the pool (free or in use).
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Free pages.
    pub(crate) fn free(&self) -> usize {
        self.free.len()
    }

    /// Pages lent out to simulator objects.
    pub(crate) fn in_use(&self) -> usize {
        self.total - self.free.len()
    }

    /// Whether `n` more pages can be deposited without allocating.
    pub(crate) fn has_room(&self, n: usize) -> bool {
        self.total
            .checked_add(n)
            .is_some_and(|want| want <= self.free.capacity())
    }

    /// The capacity to grow the free list to before depositing `n` pages
    /// ([`grown_capacity`]).
    pub(crate) fn capacity_for(&self, n: usize) -> usize {
        grown_capacity(self.free.capacity(), self.total, n)
    }

    /// Moves the free list into `bigger` (an empty vector whose capacity is at
    /// least [`Pool::capacity_for`] the pending deposit) and returns the old,
    /// smaller vector for the caller to drop outside its lock. Returns
    /// `bigger` itself untouched if it is too small for the current pages.
    pub(crate) fn grow(&mut self, bigger: KVec<u64>) -> KVec<u64> {
        // INVARIANT: same pages, capacity still >= total.
        move_into(&mut self.free, self.total, bigger)
    }

    /// Takes ownership of the deposited pages `pfns`. Fails with `ENOSPC`,
    /// taking none, unless [`Pool::has_room`] for them.
    ///
    /// # Safety
    ///
    /// Each pfn must have been given up with [`OwnedPage::into_pfn`] and be
    /// owned by nothing else; on success the pool owns them.
    pub(crate) unsafe fn deposit(&mut self, pfns: &[u64]) -> Result {
        if !self.has_room(pfns.len()) {
            return Err(ENOSPC);
        }
        for &pfn in pfns {
            if self.free.push_within_capacity(pfn).is_err() {
                // Unreachable (`has_room` checked); keep the count exact anyway.
                return Err(ENOSPC);
            }
            // INVARIANT: one more owned page; capacity checked above.
            self.total += 1;
        }
        Ok(())
    }

    /// Takes up to `out.len()` free pages out of the pool into `out`;
    /// returns how many. The caller owns them afterwards.
    pub(crate) fn withdraw(&mut self, out: &mut [u64]) -> usize {
        let mut n = 0;
        for slot in out.iter_mut() {
            match self.free.pop() {
                Some(pfn) => {
                    *slot = pfn;
                    // INVARIANT: the page left the pool.
                    self.total -= 1;
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Lends a zeroed free page to a simulator object, or `None` if the pool
    /// has no free page. The page must come back with [`Pool::give_back`].
    pub(crate) fn take(&mut self) -> Option<u64> {
        let pfn = self.free.pop()?;
        // SAFETY: the pool owns `pfn` (type invariant) and nothing else uses a
        // free page.
        unsafe { zero_page(pfn) };
        Some(pfn)
    }

    /// Returns a page lent out with [`Pool::take`]. Never allocates.
    pub(crate) fn give_back(&mut self, pfn: u64) {
        // Cannot fail: `capacity >= total > free.len()` while a page is lent.
        if self.free.push_within_capacity(pfn).is_err() {
            pr_err!("sim pool: no room for a returned page (leaked)\n");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.in_use() != 0 {
            pr_err!(
                "sim pool: dropped with {} pages in use (leaked)\n",
                self.in_use()
            );
        }
        for &pfn in self.free.iter() {
            // SAFETY: by the type invariant the pool owns every free page,
            // which came from `OwnedPage::into_pfn`; it is freed once, here.
            drop(unsafe { OwnedPage::from_pfn(pfn) });
        }
    }
}

/// The pfns of every page deposited into a pool of the emulator (the
/// root's or a partition's) and not withdrawn: pages the root gave up.
///
/// TLFS, `HvDepositMemory`: deposited pages become accessible to the
/// hypervisor alone, "future mapping changes to the pages are prohibited
/// until the pages have been successfully withdrawn", and a page "being
/// used for another purpose" cannot be deposited
/// (`HV_STATUS_OPERATION_DENIED`). The emulator answers both with that
/// status: a second deposit of a page, and a map of one into a guest. (Had
/// it taken either, a guest could write the emulator's own SLAT tables, and
/// the pool would free a page twice.)
///
/// Allocation rule as for [`Pool`]: only the deposit path grows the list,
/// outside any lock; removal never allocates.
///
/// # Invariants
///
/// `pfns` is sorted and holds no pfn twice.
pub(crate) struct Deposited {
    pfns: KVec<u64>,
}

impl Deposited {
    /// No page deposited.
    pub(crate) const fn new() -> Self {
        // INVARIANT: empty.
        Self { pfns: KVec::new() }
    }

    /// Pages deposited and not withdrawn.
    pub(crate) fn len(&self) -> usize {
        self.pfns.len()
    }

    /// Whether a deposited page lies in `[first, first + count)`.
    pub(crate) fn any_in(&self, first: u64, count: u64) -> bool {
        let i = self.pfns.partition_point(|&p| p < first);
        self.pfns.get(i).is_some_and(|&p| p - first < count)
    }

    /// The index of the first of `pfns` that cannot be deposited: one
    /// deposited already, or one an earlier entry of `pfns` repeats.
    pub(crate) fn first_refused(&self, pfns: &[u64]) -> Option<usize> {
        (0..pfns.len()).find(|&i| {
            let (before, rest) = pfns.split_at(i);
            rest.first()
                .is_some_and(|&pfn| self.any_in(pfn, 1) || before.contains(&pfn))
        })
    }

    /// Whether `n` more pages can be recorded without allocating.
    pub(crate) fn has_room(&self, n: usize) -> bool {
        self.pfns
            .len()
            .checked_add(n)
            .is_some_and(|want| want <= self.pfns.capacity())
    }

    /// The capacity to grow to before recording `n` more pages.
    pub(crate) fn capacity_for(&self, n: usize) -> usize {
        grown_capacity(self.pfns.capacity(), self.pfns.len(), n)
    }

    /// As [`Pool::grow`].
    pub(crate) fn grow(&mut self, bigger: KVec<u64>) -> KVec<u64> {
        let len = self.pfns.len();
        // INVARIANT: same entries, same order.
        move_into(&mut self.pfns, len, bigger)
    }

    /// Records `pfns` as deposited. Fails with `EINVAL`, recording none, if
    /// [`Deposited::first_refused`] finds one of them, and with `ENOSPC`
    /// unless [`Deposited::has_room`] for them.
    pub(crate) fn insert(&mut self, pfns: &[u64]) -> Result {
        if self.first_refused(pfns).is_some() {
            return Err(EINVAL);
        }
        if !self.has_room(pfns.len()) {
            return Err(ENOSPC);
        }
        for &pfn in pfns {
            if self.pfns.push_within_capacity(pfn).is_err() {
                // Unreachable (`has_room` checked); restore the order anyway.
                break;
            }
        }
        // INVARIANT: sorted again; no pfn twice (`first_refused` checked).
        self.pfns.sort_unstable();
        Ok(())
    }

    /// Forgets the withdrawn pages `pfns` (which it sorts).
    pub(crate) fn remove(&mut self, pfns: &mut [u64]) {
        pfns.sort_unstable();
        // INVARIANT: removing entries keeps the order and uniqueness.
        self.pfns.retain(|p| pfns.binary_search(&*p).is_err());
    }
}

#[kernel::prelude::kunit_tests(mshv_rs_sim_pool)]
mod tests {
    use super::*;

    /// A set holding `pfns` (at most 64, unsorted, distinct).
    fn set_of(pfns: &[u64]) -> Result<Deposited> {
        let mut d = Deposited::new();
        let old = d.grow(KVec::with_capacity(d.capacity_for(pfns.len()), GFP_KERNEL)?);
        drop(old);
        d.insert(pfns)?;
        Ok(d)
    }

    #[test]
    fn deposited_pages_are_found_and_refused() -> Result {
        let empty = Deposited::new();
        assert!(!empty.any_in(0, u64::MAX));
        assert_eq!(empty.first_refused(&[]), None);
        assert_eq!(empty.first_refused(&[7, 7]), Some(1));

        let d = set_of(&[0x1200, 0x1000, 0x11ff])?;
        assert_eq!(d.len(), 3);
        // Ranges ending just before, starting just after, and touching
        // each end of an entry.
        assert!(!d.any_in(0xe00, 0x200));
        assert!(d.any_in(0xe01, 0x200));
        assert!(d.any_in(0x1000, 1));
        assert!(!d.any_in(0x1001, 0x1fe));
        assert!(d.any_in(0x1001, 0x1ff));
        assert!(d.any_in(0x1200, 1));
        assert!(!d.any_in(0x1201, u64::MAX - 0x1201));
        // A 2 MiB frame holding one of them.
        assert!(d.any_in(0x1000, 512));
        assert!(!d.any_in(0x1400, 512));

        assert_eq!(d.first_refused(&[1, 2, 3]), None);
        assert_eq!(d.first_refused(&[0x1000, 2]), Some(0));
        assert_eq!(d.first_refused(&[1, 2, 0x11ff]), Some(2));
        assert_eq!(d.first_refused(&[1, 2, 1, 0x1000]), Some(2));
        Ok(())
    }

    #[test]
    fn deposited_set_insert_and_remove() -> Result {
        let mut d = set_of(&[30, 10, 20])?;
        // A refused batch records nothing.
        assert_eq!(d.insert(&[40, 10]), Err(EINVAL));
        assert_eq!(d.insert(&[40, 41, 40]), Err(EINVAL));
        assert_eq!(d.len(), 3);
        assert!(!d.any_in(40, 2));
        // No room without growing first (capacity 64 from `set_of`).
        let mut many = KVec::with_capacity(62, GFP_KERNEL)?;
        for pfn in 100..162 {
            many.push(pfn, GFP_KERNEL)?;
        }
        assert!(d.has_room(61));
        assert!(!d.has_room(62));
        assert_eq!(d.insert(&many), Err(ENOSPC));
        assert_eq!(d.insert(&[25, 5]), Ok(()));
        assert_eq!(&d.pfns[..], &[5, 10, 20, 25, 30]);

        let mut gone = [30, 5, 20];
        d.remove(&mut gone);
        assert_eq!(gone, [5, 20, 30]);
        assert_eq!(&d.pfns[..], &[10, 25]);
        // Growing keeps the entries.
        let old = d.grow(KVec::with_capacity(d.capacity_for(100), GFP_KERNEL)?);
        drop(old);
        assert!(d.has_room(100));
        assert_eq!(&d.pfns[..], &[10, 25]);
        Ok(())
    }
}
