// SPDX-License-Identifier: GPL-2.0

//! The VMM's address space: a counted `mm_struct`, an interval notifier over
//! part of it, HMM faults, long-term pins and VMA classification.

use super::ffi;
use core::{
    marker::PhantomData,
    sync::atomic::{AtomicBool, Ordering},
};
use kernel::{
    alloc::flags::__GFP_NOWARN,
    error::from_err_ptr,
    ffi::{c_int, c_ulong, c_void},
    prelude::*,
};

/// What backs a whole range of the VMM's address space
/// ([`IntervalNotifier::hmm_snapshot`]), for the fault policy
/// (`mem::geometry::fault_for_write`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backing {
    /// One private, writable, anonymous VMA covers the window.
    AnonPrivate,
    /// One hugetlb VMA of `pages`-page huge pages covers the window, whose
    /// first page is user page `first_upage` (user address >> 12).
    Hugetlb {
        /// Pages per huge page.
        pages: u64,
        /// User page number of the window's first page.
        first_upage: u64,
    },
    /// Anything else (file, shared, several VMAs, unknown).
    Other,
}

/// A reference (`mmgrab`) on the current task's `mm_struct`.
///
/// # Invariants
///
/// `mm` is non-null and holds one `mmgrab` reference, dropped on drop.
pub(crate) struct MmRef {
    mm: *mut ffi::MmStruct,
}

// SAFETY: an mmgrab reference may be held and dropped from any thread.
unsafe impl Send for MmRef {}
// SAFETY: `MmRef` exposes no interior mutability.
unsafe impl Sync for MmRef {}

impl MmRef {
    /// The calling task's mm; `EINVAL` for a kernel thread.
    pub(crate) fn current() -> Result<Self> {
        // SAFETY: reads `current->mm` and takes a reference if non-null.
        let mm = unsafe { ffi::mshv_rs_current_mm_grab() };
        if mm.is_null() {
            return Err(EINVAL);
        }
        // INVARIANT: non-null with a reference taken just above.
        Ok(Self { mm })
    }
}

impl MmRef {
    /// Whether this is the calling task's mm (threads, and `CLONE_VM`
    /// children, share it; a `fork` child or another process does not).
    pub(crate) fn is_current(&self) -> bool {
        // SAFETY: `self.mm` is referenced (type invariant); only compared.
        unsafe { ffi::mshv_rs_mm_is_current(self.mm) }
    }

    /// Read-locks the address space (`mmap_read_lock`) if it still has
    /// users; `None` once the process is gone. (The mirror checker's.)
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn read_lock(&self) -> Option<MmReadGuard<'_>> {
        // SAFETY: `self.mm` is referenced (type invariant).
        unsafe { ffi::mshv_rs_mm_read_lock(self.mm) }.then_some(MmReadGuard { mm: self })
    }
}

/// The mmap lock of an [`MmRef`], held for reading (plus an `mmget`).
#[cfg(CONFIG_MSHV_RS_EMULATOR)]
pub(crate) struct MmReadGuard<'a> {
    mm: &'a MmRef,
}

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
impl MmReadGuard<'_> {
    /// The pfn the VMM's page tables map at `addr` now, without faulting.
    pub(crate) fn user_pfn(&self, addr: u64) -> Option<u64> {
        // SAFETY: the mm is referenced and read-locked by this guard.
        let pfn = unsafe { ffi::mshv_rs_user_pfn_locked(self.mm.mm, addr as c_ulong) };
        (pfn != 0).then_some(pfn)
    }
}

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
impl Drop for MmReadGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: taken by `MmRef::read_lock`.
        unsafe { ffi::mshv_rs_mm_read_unlock(self.mm.mm) };
    }
}

impl Drop for MmRef {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we hold one reference.
        unsafe { ffi::mshv_rs_mmdrop(self.mm) };
    }
}

/// Receives the invalidations of an [`IntervalNotifier`].
pub(crate) trait Invalidate: Sync {
    /// Linux is taking back the user pages in `[start, end)` (not necessarily
    /// page aligned, possibly beyond the registered interval). Must call
    /// [`Invalidation::set_seq`] under the lock that fault paths check the
    /// sequence under. If `blockable` is false it must not sleep and
    /// returns `false` when it could not do its work (the caller then
    /// retries or gives up on the range); if `blockable` is true the return
    /// value is ignored by Linux, which goes on in any case.
    fn invalidate(&self, inv: &Invalidation<'_>, start: u64, end: u64, blockable: bool) -> bool;
}

/// One invalidation in progress, handed to [`Invalidate::invalidate`].
pub(crate) struct Invalidation<'a> {
    mni: *mut ffi::RawMni,
    cur_seq: c_ulong,
    _p: PhantomData<&'a ()>,
}

impl Invalidation<'_> {
    /// `mmu_interval_set_seq`: fault paths that began before now will see
    /// [`IntervalNotifier::read_retry`] return true.
    pub(crate) fn set_seq(&self) {
        // SAFETY: `mni` is live for the duration of the callback.
        unsafe { ffi::mshv_rs_mni_set_seq(self.mni, self.cur_seq) };
    }
}

/// A registered `mmu_interval_notifier` that forwards invalidations to `T`.
///
/// # Invariants
///
/// `mni` is a live notifier registered with `owner` as its owner and
/// [`trampoline::<T>`] as its callback; `owner` points to a `T` that
/// outlives the registration (the caller of [`new`] promises it). Dropping
/// unregisters, waiting for running callbacks. While registered it holds a
/// reference on the module (taken by the C helper), so a notifier that is
/// never dropped keeps the module loaded instead of leaving callbacks into
/// unloaded code.
///
/// [`new`]: IntervalNotifier::new
pub(crate) struct IntervalNotifier<T: Invalidate> {
    mni: *mut ffi::RawMni,
    /// Holds the address space for as long as the notifier is registered;
    /// only the mirror checker reads it.
    #[cfg_attr(not(CONFIG_MSHV_RS_EMULATOR), expect(dead_code))]
    mm: MmRef,
    _owner: PhantomData<*const T>,
}

// SAFETY: the notifier may be used and unregistered from any thread; `T: Sync`.
unsafe impl<T: Invalidate> Send for IntervalNotifier<T> {}
// SAFETY: the C functions called through `&self` are safe to call concurrently.
unsafe impl<T: Invalidate> Sync for IntervalNotifier<T> {}

impl<T: Invalidate> IntervalNotifier<T> {
    /// Registers a notifier over `[start, start + length)` of the current
    /// task's mm.
    ///
    /// # Safety
    ///
    /// `owner` must stay valid (and not move) until the returned notifier is
    /// dropped.
    pub(crate) unsafe fn new(owner: *const T, start: u64, length: u64) -> Result<Self> {
        let mm = MmRef::current()?;
        // SAFETY: `mm.mm` is referenced; `trampoline::<T>` casts `owner`
        // back to the `T` it was made from, valid per this function's
        // contract until the notifier is dropped.
        let mni = from_err_ptr(unsafe {
            ffi::mshv_rs_mni_create(
                mm.mm,
                start as c_ulong,
                length as c_ulong,
                trampoline::<T>,
                owner as *mut c_void,
            )
        })?;
        if mni.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: `mni` is a live, registered notifier.
        Ok(Self {
            mni,
            mm,
            _owner: PhantomData,
        })
    }

    /// The address space the notifier watches.
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mm(&self) -> &MmRef {
        &self.mm
    }

    /// `mmu_interval_read_begin`: the sequence to check later with
    /// [`IntervalNotifier::read_retry`]. May sleep (it waits for an
    /// invalidation in progress); call without the invalidation's lock.
    pub(crate) fn read_begin(&self) -> u64 {
        // SAFETY: by the type invariant `mni` is live.
        unsafe { ffi::mshv_rs_mni_read_begin(self.mni) as u64 }
    }

    /// `mmu_interval_read_retry`: whether an invalidation ran since `seq`.
    pub(crate) fn read_retry(&self, seq: u64) -> bool {
        // SAFETY: by the type invariant `mni` is live.
        unsafe { ffi::mshv_rs_mni_read_retry(self.mni, seq as c_ulong) }
    }

    /// Faults `out.len()` pages from user address `start` in through HMM
    /// (for writing if `write`), filling `out` with [`HmmPfn`]s. Returns the
    /// notifier sequence the result is valid for: check it with
    /// [`IntervalNotifier::read_retry`] under the lock the invalidate callback
    /// takes before using the pfns. Must not be called under that lock.
    /// Holds a user reference on the mm while faulting (`EFAULT` once the
    /// mm has no users).
    ///
    /// HMM write-faults from the first page that needs it to the end of its
    /// page table, whatever the others ask: to write only some pages, fault
    /// them first in calls of their own.
    pub(crate) fn hmm_fault(&self, start: u64, write: bool, out: &mut [HmmPfn]) -> Result<u64> {
        self.hmm(start, true, write, out)
    }

    /// As [`IntervalNotifier::hmm_fault`], but faults nothing in: entries
    /// of pages not present are not [`HmmPfn::valid`].
    pub(crate) fn hmm_present(&self, start: u64, out: &mut [HmmPfn]) -> Result<u64> {
        self.hmm(start, false, false, out)
    }

    fn hmm(&self, start: u64, fault: bool, write: bool, out: &mut [HmmPfn]) -> Result<u64> {
        let mut seq: c_ulong = 0;
        // SAFETY: `mni` is live; `out` is `out.len()` u64s (`HmmPfn` is
        // `repr(transparent)` over u64).
        let ret = unsafe {
            ffi::mshv_rs_hmm_fault(
                self.mni,
                start as c_ulong,
                out.len() as c_ulong,
                fault,
                write,
                out.as_mut_ptr().cast::<u64>(),
                &mut seq,
            )
        };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(seq as u64)
    }

    /// Which of `out.len()` pages from `start` are mapped now, without
    /// faulting ([`HmmPfn::valid`] only), and what one VMA covering them
    /// all is. A hint for the fault policy, not valid beyond the call.
    pub(crate) fn hmm_snapshot(&self, start: u64, out: &mut [HmmPfn]) -> Result<Backing> {
        let mut backing: c_int = 0;
        let mut huge: c_ulong = 0;
        // SAFETY: `mni` is live; `out` is `out.len()` u64s.
        let ret = unsafe {
            ffi::mshv_rs_hmm_snapshot(
                self.mni,
                start as c_ulong,
                out.len() as c_ulong,
                out.as_mut_ptr().cast::<u64>(),
                &mut backing,
                &mut huge,
            )
        };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(match backing {
            ffi::BACKING_ANON_PRIVATE => Backing::AnonPrivate,
            ffi::BACKING_HUGETLB => Backing::Hugetlb {
                pages: huge as u64,
                first_upage: start >> kernel::page::PAGE_SHIFT,
            },
            _ => Backing::Other,
        })
    }

    /// Fills `out` with the pfns of the `VM_IO | VM_PFNMAP` mapping at
    /// `start` (one VMA must cover all of it), looked up in the page tables
    /// and faulted in where not populated; [`HmmPfn::writable`] where
    /// `write` and the VMM's mapping is writable. Check the result as for
    /// [`IntervalNotifier::hmm_fault`] (`read_begin` before, `read_retry`
    /// under the callback's lock). Sleeps; takes the mmap lock.
    pub(crate) fn mmio_pfns(&self, start: u64, write: bool, out: &mut [HmmPfn]) -> Result {
        // SAFETY: `mni` is live; `out` is `out.len()` u64s (`HmmPfn` is
        // `repr(transparent)` over u64).
        let ret = unsafe {
            ffi::mshv_rs_mmio_pfns(
                self.mni,
                start as c_ulong,
                out.len() as c_ulong,
                write,
                out.as_mut_ptr().cast::<u64>(),
            )
        };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }
}

impl<T: Invalidate> Drop for IntervalNotifier<T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `mni` is live; this unregisters it once.
        unsafe { ffi::mshv_rs_mni_destroy(self.mni) };
    }
}

/// The invalidate callback of an `IntervalNotifier<T>`: one instance per
/// `T`, so the owner pointer is always cast back to the type it was made
/// from.
///
/// # Safety
///
/// Only called by `src/sys/mm.c` for a notifier created by
/// `IntervalNotifier::<T>::new`; `owner` is that notifier's owner, a `T`
/// valid while the notifier is registered, and `mni` the live notifier.
unsafe extern "C" fn trampoline<T: Invalidate>(
    owner: *mut c_void,
    mni: *mut ffi::RawMni,
    start: c_ulong,
    end: c_ulong,
    blockable: bool,
    cur_seq: c_ulong,
) -> bool {
    // SAFETY: per this function's contract `owner` was made from a `*const
    // T` by `IntervalNotifier::<T>::new` and is valid while registered.
    let owner = unsafe { &*owner.cast::<T>() };
    let inv = Invalidation {
        mni,
        cur_seq,
        _p: PhantomData,
    };
    owner.invalidate(&inv, start as u64, end as u64, blockable)
}

/// One entry filled in by [`IntervalNotifier::hmm_fault`].
#[repr(transparent)]
#[derive(Clone, Copy, Default)]
pub(crate) struct HmmPfn(u64);

impl HmmPfn {
    /// The page is present (`HMM_PFN_VALID`).
    pub(crate) fn valid(self) -> bool {
        self.0 & ffi::PFN_VALID != 0
    }
    /// The VMM's mapping allows writes (`HMM_PFN_WRITE`).
    pub(crate) fn writable(self) -> bool {
        self.0 & ffi::PFN_WRITE != 0
    }
    /// Host page frame number.
    pub(crate) fn pfn(self) -> u64 {
        self.0 & ffi::PFN_MASK
    }
    /// Order of the VMM's mapping of the page (9 for a PMD).
    pub(crate) fn map_order(self) -> u32 {
        ((self.0 >> ffi::PFN_ORDER_SHIFT) & ffi::PFN_ORDER_MASK) as u32
    }
}

/// Marks the page at `pfn` (its folio) dirty for Linux, because it is about
/// to be, or has just been, mapped writable into the guest: guest writes
/// bypass the VMM's page table and its dirty bit.
///
/// # Safety
///
/// `pfn` comes from [`IntervalNotifier::hmm_fault`] whose sequence the caller
/// validated with [`IntervalNotifier::read_retry`] under the lock its
/// invalidation callback takes, and the caller still holds that lock.
pub(crate) unsafe fn mark_pfn_dirty(pfn: u64) {
    // SAFETY: by the function's contract the page is mapped by the VMM and
    // cannot be truncated or freed until the invalidation, which waits for
    // the lock the caller holds.
    unsafe { ffi::mshv_rs_mark_pfn_dirty(pfn) }
}

/// Whether Linux sees the page at `pfn` (its folio) as dirty: a snapshot of
/// the folio flag, `false` for a pfn without an online `struct page`. For checks
/// only (the mirror checker).
#[cfg(CONFIG_MSHV_RS_EMULATOR)]
pub(crate) fn pfn_dirty(pfn: u64) -> bool {
    // SAFETY: any value is fine: the helper looks the pfn up with
    // `pfn_to_online_page` (no struct page, or an offline one, gives false)
    // and only reads the flags of the folio it finds.
    unsafe { ffi::mshv_rs_pfn_dirty(pfn) }
}

/// `access_ok` on the user range `[addr, addr + size)` of the current task:
/// the range lies in user space (does not reach kernel addresses or wrap).
pub(crate) fn access_ok(addr: u64, size: u64) -> bool {
    // SAFETY: only compares the range against the user address limit.
    unsafe { ffi::mshv_rs_access_ok(addr as c_ulong, size as c_ulong) }
}

/// Whether VMAs of the current task cover `[start, start + len)` without a
/// hole. Cost: one VMA lookup per VMA in the range.
pub(crate) fn range_mapped(start: u64, len: u64) -> bool {
    // SAFETY: looks the range up in the current mm under its mmap lock.
    unsafe { ffi::mshv_rs_range_mapped(start as c_ulong, len as c_ulong) }
}

/// What backs a user address, for choosing a region type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VmaKind {
    /// No VMA at the address.
    None,
    /// Ordinary memory.
    Ram,
    /// `VM_IO | VM_PFNMAP` (a device BAR).
    Io,
}

/// Classifies the VMA of the current task at `addr`.
pub(crate) fn vma_kind(addr: u64) -> VmaKind {
    // SAFETY: looks up the current mm under its mmap lock.
    match unsafe { ffi::mshv_rs_vma_kind(addr as c_ulong) } {
        ffi::VMA_RAM => VmaKind::Ram,
        ffi::VMA_IO => VmaKind::Io,
        _ => VmaKind::None,
    }
}

/// Whether one readable `VM_IO | VM_PFNMAP` VMA of the current task covers
/// `pages` pages from `start` (`EINVAL` if not). Allocates nothing.
pub(crate) fn mmio_check(start: u64, pages: u64) -> Result {
    // SAFETY: looks the current mm up under its mmap lock; any values.
    let ret = unsafe { ffi::mshv_rs_mmio_check(start as c_ulong, pages as c_ulong) };
    if ret < 0 {
        return Err(Error::from_errno(ret));
    }
    Ok(())
}

/// Whether ordinary (not `VM_IO | VM_PFNMAP`) VMAs of the current task
/// cover `pages` pages from `start` without a hole (`EFAULT` if not).
/// Allocates nothing.
pub(crate) fn ram_check(start: u64, pages: u64) -> Result {
    // SAFETY: looks the current mm up under its mmap lock; any values.
    let ret = unsafe { ffi::mshv_rs_ram_check(start as c_ulong, pages as c_ulong) };
    if ret < 0 {
        return Err(Error::from_errno(ret));
    }
    Ok(())
}

/// References (`get_page`) on user pages that a second-level entry may
/// still map after the hypervisor refused to unmap it, so that Linux cannot
/// free and reuse them. Released on drop, unless kept for good.
///
/// # Invariants
///
/// Each element of `pfns` holds one page reference taken by [`Self::get`].
pub(crate) struct PageRefs {
    pfns: KVVec<u64>,
    keep: AtomicBool,
}

impl PageRefs {
    /// No references.
    pub(crate) fn new() -> Self {
        Self {
            pfns: KVVec::new(),
            keep: AtomicBool::new(false),
        }
    }

    /// Makes room for `n` more references (accounted to the caller's memcg).
    pub(crate) fn reserve(&mut self, n: usize) -> Result {
        self.pfns.reserve(n, GFP_KERNEL_ACCOUNT | __GFP_NOWARN)?;
        Ok(())
    }

    /// Takes a reference on the page at `pfn`, if there is room reserved
    /// and the page needs one (not the zero page). Returns whether it did.
    ///
    /// # Safety
    ///
    /// As [`mark_pfn_dirty`]: `pfn` comes from a notifier snapshot whose
    /// sequence the caller validated under the lock its invalidation
    /// callback takes, and the caller still holds that lock.
    pub(crate) unsafe fn get(&mut self, pfn: u64) -> bool {
        if self.pfns.len() == self.pfns.capacity() {
            return false;
        }
        // SAFETY: by the function's contract the page is mapped by the VMM
        // and cannot be freed until the invalidation waiting for our lock.
        if !unsafe { ffi::mshv_rs_pfn_get(pfn) } {
            return false;
        }
        // INVARIANT: one reference taken just above.
        if self.pfns.push_within_capacity(pfn).is_err() {
            // Unreachable: checked for room above. Do not leak the page.
            // SAFETY: the reference just taken.
            unsafe { ffi::mshv_rs_pfn_put(pfn) };
            return false;
        }
        crate::stats::live_add(crate::stats::Live::PinnedPages, 1);
        true
    }

    /// References held.
    pub(crate) fn len(&self) -> usize {
        self.pfns.len()
    }

    /// Never releases the references (the hypervisor may map the pages
    /// for good: its partition could not be deleted).
    pub(crate) fn keep_forever(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }
}

impl Drop for PageRefs {
    fn drop(&mut self) {
        if self.pfns.is_empty() {
            return;
        }
        if self.keep.load(Ordering::Relaxed) {
            pr_err!(
                "{} pages kept: the hypervisor may still map them\n",
                self.pfns.len()
            );
            return;
        }
        for &pfn in self.pfns.iter() {
            // SAFETY: by the type invariant we hold one reference on it.
            unsafe { ffi::mshv_rs_pfn_put(pfn) };
        }
        crate::stats::live_add(crate::stats::Live::PinnedPages, -(self.pfns.len() as i64));
    }
}

/// Long-term pins of user pages, released on drop (unless kept).
///
/// # Invariants
///
/// Every element of `pfns` is a page pinned once by this object.
pub(crate) struct PinnedPages {
    pfns: KVVec<u64>,
    dirty: bool,
    /// Set by [`PinnedPages::keep_pinned`]: the pins are never released.
    keep: AtomicBool,
}

impl PinnedPages {
    /// Pins `pages` pages from `start` (for writing if `write`), charging the
    /// array to the caller's memory cgroup. The range is checked first
    /// ([`ram_check`]): no array is allocated for a size nothing backs.
    pub(crate) fn pin(start: u64, pages: usize, write: bool) -> Result<Self> {
        ram_check(start, pages as u64)?;
        // Sized by userspace: no allocation-failure warning.
        let gfp = GFP_KERNEL_ACCOUNT | __GFP_NOWARN;
        let mut pfns = KVVec::with_capacity(pages, gfp)?;
        pfns.resize(pages, 0, gfp)?;
        // SAFETY: `pfns` has room for `pages` u64s; on failure the helper
        // unpins whatever it pinned.
        let ret = unsafe {
            ffi::mshv_rs_pin_user_pfns(start as c_ulong, pages as c_ulong, write, pfns.as_mut_ptr())
        };
        if ret < 0 {
            return Err(Error::from_errno(ret as i32));
        }
        crate::stats::live_add(crate::stats::Live::PinnedPages, pages as i64);
        // INVARIANT: the helper pinned exactly `pages` pages into `pfns`.
        Ok(Self {
            pfns,
            dirty: write,
            keep: AtomicBool::new(false),
        })
    }

    /// Makes the pins permanent: for pages the hypervisor may still map
    /// after an unmap failed, which Linux must never reuse. They stay
    /// counted in `live_objects`' `pinned_pages`.
    pub(crate) fn keep_pinned(&self) {
        self.keep.store(true, Ordering::Relaxed);
    }

    /// The pinned pages' frame numbers, in address order.
    pub(crate) fn pfns(&self) -> &[u64] {
        &self.pfns
    }
}

impl Drop for PinnedPages {
    fn drop(&mut self) {
        if self.keep.load(Ordering::Relaxed) {
            pr_err!(
                "{} pages kept pinned: the hypervisor may still map them\n",
                self.pfns.len()
            );
            return;
        }
        // SAFETY: by the type invariant each pfn is pinned once by us.
        unsafe {
            ffi::mshv_rs_unpin_pfns(self.pfns.as_ptr(), self.pfns.len() as c_ulong, self.dirty)
        };
        crate::stats::live_add(crate::stats::Live::PinnedPages, -(self.pfns.len() as i64));
    }
}

/// Order of the folio holding the pinned page `pfn`.
pub(crate) fn pinned_folio_order(pinned: &PinnedPages, index: usize) -> u32 {
    match pinned.pfns.get(index) {
        // SAFETY: the page is pinned by `pinned`, so its folio is stable.
        Some(&pfn) => unsafe { ffi::mshv_rs_pfn_folio_order(pfn) },
        None => 0,
    }
}
