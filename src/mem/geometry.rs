// SPDX-License-Identifier: GPL-2.0

//! Pure arithmetic of guest memory regions: fault windows, 2 MiB runs,
//! invalidation clamping and hypercall batching.
//!
//! Nothing here has side effects or touches a lock, a page or a hypercall, so
//! every edge can be tested exactly (see the KUnit suite at the bottom). All
//! quantities are in 4 KiB pages unless a name says bytes. Callers validate
//! regions on creation (non-empty, `start_gfn + pages` does not overflow), but
//! these functions stay total anyway: on any input they return a value, never
//! panic or wrap.

use crate::tlfs::HV_PAGE_SHIFT;

/// Pages per 2 MiB large page.
pub(crate) const LARGE_PAGES: u64 = 512;
/// Order of a 2 MiB large page.
pub(crate) const LARGE_ORDER: u32 = 9;

/// A half-open range of guest frame numbers `[first, first + count)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GfnRange {
    /// First gfn.
    pub(crate) first: u64,
    /// Number of pages; never zero for ranges these functions return.
    pub(crate) count: u64,
}

impl GfnRange {
    /// One past the last gfn (saturating; regions are validated not to overflow).
    pub(crate) fn end(&self) -> u64 {
        self.first.saturating_add(self.count)
    }
}

/// The pages a GPA intercept on `gfn` faults in: the absolute 2 MiB gfn frame
/// holding `gfn` (`gfn & !511`), clamped to the region
/// `[start_gfn, start_gfn + pages)`.
///
/// Aligning to absolute frames (not relative to `start_gfn`, as upstream does)
/// is what lets a region with an unaligned `start_gfn` still get 2 MiB entries
/// in its aligned middle. Returns `None` if `gfn` is outside the region.
pub(crate) fn fault_window(start_gfn: u64, pages: u64, gfn: u64) -> Option<GfnRange> {
    let end = start_gfn.checked_add(pages)?;
    if gfn < start_gfn || gfn >= end {
        return None;
    }
    let frame = gfn & !(LARGE_PAGES - 1);
    let first = frame.max(start_gfn);
    // NO-OVERFLOW: `frame <= gfn < end`, so `frame + 512` only overflows for the
    // top frame; saturate there.
    let last = frame.saturating_add(LARGE_PAGES).min(end);
    Some(GfnRange {
        first,
        count: last - first,
    })
}

/// A smaller fault window around `gfn` after `window` could not be faulted
/// in stably (its pages kept being invalidated, e.g. by reclaim under memory
/// pressure): the aligned half of the window's size (a power of two, at least
/// one page) that holds `gfn`, clamped to `window`. Repeating it reaches the
/// single page `gfn` after at most 9 steps from a 2 MiB window.
///
/// `gfn` must lie in `window`; otherwise the result is `window` unchanged.
pub(crate) fn narrow_window(window: GfnRange, gfn: u64) -> GfnRange {
    if gfn < window.first || gfn >= window.end() || window.count <= 1 {
        return window;
    }
    // The largest power of two not above half the count (count >= 2 here).
    let half = window.count / 2;
    let size = 1u64 << (63 - half.leading_zeros());
    let block = gfn & !(size - 1);
    let first = block.max(window.first);
    // Saturating: the block holding the top gfns may end past u64::MAX.
    let end = block.saturating_add(size).min(window.end());
    GfnRange {
        first,
        count: end - first,
    }
}

/// The index in `window` of the page a GPA intercept at `gfn` must fault
/// for writing: `Some(gfn - window.first)` for a write (`write`) with `gfn`
/// inside the window, `None` for a read or fetch (or a `gfn` outside).
pub(crate) fn write_index(window: GfnRange, gfn: u64, write: bool) -> Option<usize> {
    if !write || gfn < window.first || gfn >= window.end() {
        return None;
    }
    usize::try_from(gfn - window.first).ok()
}

/// What backs a whole fault window in the VMM, for [`fault_for_write`]
/// (found by [`crate::sys::mm::IntervalNotifier::hmm_snapshot`]).
pub(crate) use crate::sys::mm::Backing;

/// Whether page `index` of a fault window is faulted for writing.
///
/// The page the guest wrote (`write_at`) is. Of the others, in private
/// anonymous memory the pages not mapped yet (`!present`): a write fault
/// there allocates a fresh page and breaks no sharing, and saves a guest
/// writing sequentially an intercept per page. In hugetlb memory the pages
/// of the written page's huge page (HMM reads the request of the first page
/// of each huge page only, and a huge page is one folio either way).
/// Everything else is faulted for reading: a write fault would break COW of
/// pages shared with a fork, KSM or a private file mapping, dirty pages the
/// guest never wrote, and fail with EPERM on a read-only VMA elsewhere in
/// the frame.
pub(crate) fn fault_for_write(
    index: usize,
    write_at: Option<usize>,
    backing: Backing,
    present: bool,
) -> bool {
    let Some(w) = write_at else {
        return false;
    };
    if index == w {
        return true;
    }
    match backing {
        Backing::AnonPrivate => !present,
        Backing::Hugetlb { pages, first_upage } if pages > 0 => {
            let huge = |i: usize| first_upage.saturating_add(i as u64) / pages;
            huge(index) == huge(w)
        }
        _ => false,
    }
}

/// Calls `f(first, count)` for each maximal run of indexes in `0..n` where
/// `pred` holds, in order.
pub(crate) fn for_each_run(
    n: usize,
    pred: impl Fn(usize) -> bool,
    mut f: impl FnMut(usize, usize),
) {
    let mut i = 0;
    while i < n {
        if !pred(i) {
            i += 1;
            continue;
        }
        let first = i;
        while i < n && pred(i) {
            i += 1;
        }
        f(first, i - first);
    }
}

/// Pages per chunk of a region's set-up and removal: 1 GiB, a multiple of
/// [`LARGE_PAGES`]. Between chunks the region lock is dropped (set-up), the
/// task may be rescheduled and a fatal signal is checked (set-up).
pub(crate) const SETUP_CHUNK_PAGES: u64 = 1 << 18;
const _: () = assert!(SETUP_CHUNK_PAGES % LARGE_PAGES == 0);

/// The chunk of a region `[start_gfn, start_gfn + pages)` that starts at
/// page offset `next`, as page offsets: up to the next absolute gfn that is
/// a multiple of [`SETUP_CHUNK_PAGES`] (so chunk edges fall on 2 MiB frame
/// edges and splitting by chunks never splits a large entry), clamped to
/// the region. Empty once `next >= pages`.
pub(crate) fn setup_chunk(start_gfn: u64, pages: u64, next: u64) -> GfnRange {
    if next >= pages {
        return GfnRange {
            first: pages,
            count: 0,
        };
    }
    let gfn = start_gfn.saturating_add(next);
    // Saturating: at the top of the gfn space the chunk just ends the region.
    let boundary = (gfn & !(SETUP_CHUNK_PAGES - 1)).saturating_add(SETUP_CHUNK_PAGES);
    let end = boundary.saturating_sub(start_gfn).min(pages).max(next + 1);
    GfnRange {
        first: next,
        count: end - next,
    }
}

/// One host page as the fault path found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostPage {
    /// Host page frame number.
    pub(crate) pfn: u64,
    /// Order of the VMM's mapping of this page (9 for a PMD-mapped THP or a
    /// 2 MiB hugetlb page, 0 for a PTE).
    pub(crate) map_order: u32,
}

/// A run of pages to map with one kind of entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// Index into the page array (and offset from the window's first gfn).
    pub(crate) index: usize,
    /// Pages in the run: a multiple of 512 if `large`.
    pub(crate) count: usize,
    /// Map with 2 MiB entries.
    pub(crate) large: bool,
}

/// Whether the 512 pages at `pages[index..]`, to be mapped at `gfn`, can be one
/// 2 MiB entry: `gfn` and the first pfn are both 2 MiB aligned, the pfns are
/// contiguous, and every page is mapped by the VMM at order >= 9 (so they are
/// one folio the VMM maps contiguously).
fn is_large_chunk(gfn: u64, pages: &[HostPage], index: usize) -> bool {
    if gfn % LARGE_PAGES != 0 {
        return false;
    }
    let Some(chunk) = index
        .checked_add(LARGE_PAGES as usize)
        .and_then(|end| pages.get(index..end))
    else {
        return false;
    };
    let base = chunk[0].pfn;
    base % LARGE_PAGES == 0
        && chunk
            .iter()
            .zip(0u64..)
            .all(|(p, i)| p.map_order >= LARGE_ORDER && p.pfn == base.wrapping_add(i))
}

/// Splits the pages of a window starting at `first_gfn` into maximal runs of
/// 2 MiB entries and of 4 KiB entries, in order.
///
/// Returns the runs through `f` (no allocation).
pub(crate) fn plan_runs(first_gfn: u64, pages: &[HostPage], mut f: impl FnMut(Run)) {
    let mut index = 0usize;
    let mut small_start: Option<usize> = None;
    while index < pages.len() {
        let gfn = first_gfn.wrapping_add(index as u64);
        if is_large_chunk(gfn, pages, index) {
            if let Some(start) = small_start.take() {
                f(Run {
                    index: start,
                    count: index - start,
                    large: false,
                });
            }
            // Merge consecutive large chunks into one run.
            let start = index;
            while is_large_chunk(first_gfn.wrapping_add(index as u64), pages, index) {
                index += LARGE_PAGES as usize;
            }
            f(Run {
                index: start,
                count: index - start,
                large: true,
            });
        } else {
            small_start.get_or_insert(index);
            index += 1;
        }
    }
    if let Some(start) = small_start {
        f(Run {
            index: start,
            count: pages.len() - start,
            large: false,
        });
    }
}

/// The pages of a region an MMU-notifier invalidation of user addresses
/// `[start, end)` covers, as page offsets into the region.
///
/// The region maps user addresses `[uaddr, uaddr + pages * 4096)`; `uaddr` is
/// page aligned. `start` is rounded down and `end` rounded up to pages (the
/// notifier does not promise alignment). Returns `None` for an empty or
/// inverted range, or one that does not intersect the region.
pub(crate) fn clamp_invalidation(uaddr: u64, pages: u64, start: u64, end: u64) -> Option<GfnRange> {
    if end <= start {
        return None;
    }
    let offset_mask: u64 = (1 << HV_PAGE_SHIFT) - 1;
    let region_end = uaddr.checked_add(pages.checked_mul(offset_mask + 1)?)?;
    let start = start & !offset_mask;
    // Round up without wrapping: an `end` in the last page saturates to the top.
    let end = end
        .checked_add(offset_mask)
        .map_or(!offset_mask, |e| e & !offset_mask);
    let lo = start.max(uaddr);
    let hi = end.min(region_end);
    if lo >= hi {
        return None;
    }
    Some(GfnRange {
        first: (lo - uaddr) >> HV_PAGE_SHIFT,
        count: (hi - lo) >> HV_PAGE_SHIFT,
    })
}

/// Widens a range of region page offsets so it covers whole 2 MiB gfn frames
/// wherever `is_large(frame_gfn)` says the frame is mapped by one 2 MiB entry,
/// so that remapping the result never has to split a large entry (which would
/// need hypervisor memory inside the invalidate callback). The result stays
/// inside the region `[0, pages)`; a large frame lies wholly inside the region
/// by construction.
pub(crate) fn widen_to_large_frames(
    start_gfn: u64,
    pages: u64,
    range: GfnRange,
    is_large: impl Fn(u64) -> bool,
) -> GfnRange {
    let mut first = range.first;
    let mut end = range.end().min(pages);
    let head = start_gfn.wrapping_add(first) & !(LARGE_PAGES - 1);
    if is_large(head) {
        first = head.wrapping_sub(start_gfn).min(first);
    }
    if end > first {
        let tail = start_gfn.wrapping_add(end - 1) & !(LARGE_PAGES - 1);
        if is_large(tail) {
            end = end.max(
                tail.wrapping_sub(start_gfn)
                    .saturating_add(LARGE_PAGES)
                    .min(pages),
            );
        }
    }
    GfnRange {
        first,
        count: end.saturating_sub(first),
    }
}

/// Splits a range of region page offsets into hypercall reps that never
/// split a 2 MiB entry: a 2 MiB gfn frame that `is_large(frame_gfn)` and that
/// the range covers wholly becomes one large rep, everything else 4 KiB reps.
/// `f(first_gfn, reps, large)` receives maximal runs of one kind, in order.
pub(crate) fn split_by_frames(
    start_gfn: u64,
    range: GfnRange,
    is_large: impl Fn(u64) -> bool,
    mut f: impl FnMut(u64, u64, bool),
) {
    let mut gfn = start_gfn.wrapping_add(range.first);
    let end = gfn.saturating_add(range.count);
    while gfn < end {
        let whole_frame = gfn % LARGE_PAGES == 0 && end - gfn >= LARGE_PAGES && is_large(gfn);
        if whole_frame {
            let first = gfn;
            while gfn % LARGE_PAGES == 0 && end - gfn >= LARGE_PAGES && is_large(gfn) {
                gfn += LARGE_PAGES;
            }
            f(first, (gfn - first) / LARGE_PAGES, true);
        } else {
            let first = gfn;
            // Up to the next frame that qualifies as large, or the end.
            loop {
                gfn += 1;
                if gfn >= end
                    || (gfn % LARGE_PAGES == 0 && end - gfn >= LARGE_PAGES && is_large(gfn))
                {
                    break;
                }
            }
            f(first, gfn - first, false);
        }
    }
}

// The rep-unit arithmetic of map and unmap calls is the ABI's (`tlfs`).
pub(crate) use crate::tlfs::pages_of_reps;

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_geometry)]
mod tests {
    use super::*;
    use kernel::prelude::*;

    fn w(first: u64, count: u64) -> Option<GfnRange> {
        Some(GfnRange { first, count })
    }

    #[test]
    fn fault_window_edges() {
        // Aligned region of 4 MiB: windows are the two frames.
        assert_eq!(fault_window(0x200, 1024, 0x200), w(0x200, 512));
        assert_eq!(fault_window(0x200, 1024, 0x3ff), w(0x200, 512));
        assert_eq!(fault_window(0x200, 1024, 0x400), w(0x400, 512));
        assert_eq!(fault_window(0x200, 1024, 0x5ff), w(0x400, 512));
        // Outside the region.
        assert_eq!(fault_window(0x200, 1024, 0x1ff), None);
        assert_eq!(fault_window(0x200, 1024, 0x600), None);
        // Unaligned start: the first window is clamped to the region, the
        // second is a whole absolute frame (upstream would give 0x210..0x410).
        assert_eq!(fault_window(0x210, 1024, 0x210), w(0x210, 0x1f0));
        assert_eq!(fault_window(0x210, 1024, 0x3ff), w(0x210, 0x1f0));
        assert_eq!(fault_window(0x210, 1024, 0x400), w(0x400, 512));
        // Tail of the unaligned region: 0x610 - 0x600 = 16 pages.
        assert_eq!(fault_window(0x210, 1024, 0x605), w(0x600, 0x10));
        // Region smaller than 2 MiB inside one frame.
        assert_eq!(fault_window(0x1005, 3, 0x1006), w(0x1005, 3));
        // One-page region.
        assert_eq!(fault_window(7, 1, 7), w(7, 1));
        // Empty region.
        assert_eq!(fault_window(7, 0, 7), None);
    }

    #[test]
    fn narrow_window_steps() {
        let full = GfnRange {
            first: 0x400,
            count: 512,
        };
        assert_eq!(Some(narrow_window(full, 0x5ff)), w(0x500, 256));
        assert_eq!(Some(narrow_window(full, 0x400)), w(0x400, 256));
        // Nine steps from 512 pages down to the faulting page, which stays inside.
        let mut win = full;
        for _ in 0..9 {
            win = narrow_window(win, 0x4a7);
            assert!(win.first <= 0x4a7 && 0x4a7 < win.end());
        }
        assert_eq!(Some(win), w(0x4a7, 1));
        assert_eq!(Some(narrow_window(win, 0x4a7)), w(0x4a7, 1));
        // A clamped window (unaligned region start 0x210, 0x1f0 pages).
        let edge = GfnRange {
            first: 0x210,
            count: 0x1f0,
        };
        // count/2 = 0xf8 -> size 0x80; the aligned 0x80 block of 0x211 is
        // 0x200..0x280, clamped to start at 0x210.
        assert_eq!(Some(narrow_window(edge, 0x211)), w(0x210, 0x70));
        assert_eq!(Some(narrow_window(edge, 0x3ff)), w(0x380, 0x80));
        // gfn outside the window: unchanged.
        assert_eq!(Some(narrow_window(full, 0x3ff)), w(0x400, 512));
        // Near u64::MAX: no overflow.
        let top = GfnRange {
            first: u64::MAX - 4,
            count: 4,
        };
        // size 2: the block [MAX - 1, MAX + 1) clamped to the window.
        assert_eq!(Some(narrow_window(top, u64::MAX - 1)), w(u64::MAX - 1, 1));
        assert_eq!(Some(narrow_window(top, u64::MAX - 4)), w(u64::MAX - 4, 1));
    }

    #[test]
    fn fault_window_near_u64_max() {
        let top = u64::MAX - 10;
        // Region [top, MAX) has 10 pages; overflow-free.
        assert_eq!(fault_window(top, 10, u64::MAX - 1), w(top, 10));
        // start + pages overflows: rejected.
        assert_eq!(fault_window(top, 11, top), None);
        // The top frame starts at MAX & !511.
        let frame = u64::MAX & !511;
        assert_eq!(fault_window(frame, 511, frame + 3), w(frame, 511));
    }

    #[test]
    fn runs_of_a_predicate() -> Result {
        let runs = |n: usize, set: &[usize]| -> Result<KVec<(usize, usize)>> {
            let mut v = KVec::new();
            let mut err = Ok(());
            for_each_run(
                n,
                |i| set.contains(&i),
                |a, b| {
                    if err.is_ok() {
                        err = v.push((a, b), GFP_KERNEL).map_err(Error::from);
                    }
                },
            );
            err.map(|()| v)
        };
        assert_eq!(&runs(0, &[])?[..], &[]);
        assert_eq!(&runs(512, &[])?[..], &[]);
        // One page: the written page of a file mapping.
        assert_eq!(&runs(512, &[5])?[..], &[(5, 1)]);
        // First and last index.
        assert_eq!(&runs(512, &[0, 511])?[..], &[(0, 1), (511, 1)]);
        // Runs split by gaps, one touching the end.
        assert_eq!(&runs(8, &[1, 2, 3, 5, 6, 7])?[..], &[(1, 3), (5, 3)]);
        // Everything: one run.
        let all: KVec<usize> = {
            let mut v = KVec::new();
            for i in 0..512 {
                v.push(i, GFP_KERNEL)?;
            }
            v
        };
        assert_eq!(&runs(512, &all)?[..], &[(0, 512)]);
        // Indexes at or past `n` are never visited.
        assert_eq!(&runs(4, &[3, 4, 5])?[..], &[(3, 1)]);
        Ok(())
    }

    #[test]
    fn setup_chunks() {
        const C: u64 = SETUP_CHUNK_PAGES;
        let r = |first: u64, count: u64| GfnRange { first, count };
        // Aligned region of 2.5 chunks: two whole chunks and a half.
        assert_eq!(setup_chunk(0, 2 * C + C / 2, 0), r(0, C));
        assert_eq!(setup_chunk(0, 2 * C + C / 2, C), r(C, C));
        assert_eq!(setup_chunk(0, 2 * C + C / 2, 2 * C), r(2 * C, C / 2));
        assert_eq!(setup_chunk(0, 2 * C + C / 2, 2 * C + C / 2).count, 0);
        // Unaligned start (gfn 0x210): the first chunk ends at gfn C, on a
        // 2 MiB frame edge.
        assert_eq!(setup_chunk(0x210, 3 * C, 0), r(0, C - 0x210));
        assert_eq!(setup_chunk(0x210, 3 * C, C - 0x210), r(C - 0x210, C));
        assert_eq!((0x210 + C - 0x210 + C) % LARGE_PAGES, 0);
        // A region inside one chunk is one chunk.
        assert_eq!(setup_chunk(0x1005, 3, 0), r(0, 3));
        assert_eq!(setup_chunk(0x1005, 3, 1), r(1, 2));
        // Every chunk of a 16 TiB region: whole, in order, 2^14 of them.
        let (pages, mut next, mut n) = (1u64 << 32, 0u64, 0u64);
        while next < pages {
            let c = setup_chunk(0, pages, next);
            assert!(c.first == next && c.count == C);
            next = c.end();
            n += 1;
        }
        assert_eq!((next, n), (pages, 1 << 14));
        // At the top of the gfn space: progress, no overflow.
        let top = u64::MAX - 10;
        assert_eq!(setup_chunk(top, 10, 0), r(0, 10));
        assert_eq!(setup_chunk(top, 10, 9), r(9, 1));
        assert_eq!(setup_chunk(top, 10, 10).count, 0);
        // Past the end: empty.
        assert_eq!(setup_chunk(0, 5, 7).count, 0);
    }

    #[test]
    fn write_index_edges() {
        let win = GfnRange {
            first: 0x400,
            count: 512,
        };
        // First and last page of the window, and one past each end.
        assert_eq!(write_index(win, 0x400, true), Some(0));
        assert_eq!(write_index(win, 0x5ff, true), Some(511));
        assert_eq!(write_index(win, 0x3ff, true), None);
        assert_eq!(write_index(win, 0x600, true), None);
        // Reads and fetches fault nothing for writing.
        assert_eq!(write_index(win, 0x400, false), None);
        assert_eq!(write_index(win, 0x4a7, false), None);
        // A clamped window of an unaligned region, and its narrowed forms:
        // the written page stays at its offset from the window's start.
        let edge = GfnRange {
            first: 0x210,
            count: 0x1f0,
        };
        assert_eq!(write_index(edge, 0x210, true), Some(0));
        assert_eq!(write_index(edge, 0x3ff, true), Some(0x1ef));
        assert_eq!(write_index(edge, 0x20f, true), None);
        let narrow = narrow_window(edge, 0x3ff);
        assert_eq!(write_index(narrow, 0x3ff, true), Some(0x7f));
        let one = GfnRange {
            first: 0x4a7,
            count: 1,
        };
        assert_eq!(write_index(one, 0x4a7, true), Some(0));
        assert_eq!(write_index(one, 0x4a8, true), None);
        // At the top of the gfn space: no overflow.
        let top = GfnRange {
            first: u64::MAX - 4,
            count: 4,
        };
        assert_eq!(write_index(top, u64::MAX - 1, true), Some(3));
        assert_eq!(write_index(top, u64::MAX, true), None);
        // An empty window holds nothing.
        let empty = GfnRange {
            first: 0x400,
            count: 0,
        };
        assert_eq!(write_index(empty, 0x400, true), None);
    }

    #[test]
    fn fault_for_write_policy() {
        use Backing::*;
        let huge = Hugetlb {
            pages: 512,
            first_upage: 0x7f00_0000,
        };
        let all = [AnonPrivate, huge, Other];
        // A read faults nothing for writing, whatever the mapping.
        for b in all {
            for present in [false, true] {
                assert!(!fault_for_write(0, None, b, present));
                assert!(!fault_for_write(7, None, b, present));
            }
        }
        // The written page always, present or not.
        for b in all {
            for present in [false, true] {
                assert!(fault_for_write(5, Some(5), b, present));
            }
        }
        // Other pages of a file, shared or read-only mapping: never.
        assert!(!fault_for_write(4, Some(5), Other, false));
        assert!(!fault_for_write(6, Some(5), Other, true));
        assert!(!fault_for_write(0, Some(511), Other, false));
        // Of a private anonymous mapping: only pages not mapped yet (a
        // mapped one may be a fork's COW page, KSM's or the zero page).
        assert!(fault_for_write(4, Some(5), AnonPrivate, false));
        assert!(fault_for_write(511, Some(0), AnonPrivate, false));
        assert!(!fault_for_write(4, Some(5), AnonPrivate, true));
        assert!(!fault_for_write(0, Some(511), AnonPrivate, true));
        // hugetlb, window aligned to the huge page: the whole window.
        assert!(fault_for_write(0, Some(300), huge, true));
        assert!(fault_for_write(511, Some(300), huge, false));
        // hugetlb, window straddling two huge pages (user page 0x7f00_0100
        // first): pages 0..0xff are in the first, 0x100.. in the second.
        let straddle = Hugetlb {
            pages: 512,
            first_upage: 0x7f00_0100,
        };
        assert!(fault_for_write(0, Some(0xff), straddle, true));
        assert!(fault_for_write(0xfe, Some(0xff), straddle, true));
        assert!(!fault_for_write(0x100, Some(0xff), straddle, true));
        assert!(fault_for_write(0x1ff, Some(0x100), straddle, true));
        assert!(!fault_for_write(0xff, Some(0x100), straddle, false));
        // A 1 GiB huge page covers every window it holds.
        let gig = Hugetlb {
            pages: 1 << 18,
            first_upage: 0x40_0200,
        };
        assert!(fault_for_write(0, Some(511), gig, true));
        // Degenerate huge page size: only the written page.
        let zero = Hugetlb {
            pages: 0,
            first_upage: 0,
        };
        assert!(!fault_for_write(1, Some(0), zero, false));
        // At the top of the user page space: no overflow (saturates into
        // the last huge page).
        let top = Hugetlb {
            pages: 512,
            first_upage: u64::MAX - 1,
        };
        assert!(fault_for_write(0, Some(3), top, true));
    }

    fn pages(base_pfn: u64, n: usize, order: u32) -> Result<KVec<HostPage>> {
        let mut v = KVec::with_capacity(n, GFP_KERNEL)?;
        for i in 0..n {
            let page = HostPage {
                pfn: base_pfn + i as u64,
                map_order: order,
            };
            v.push(page, GFP_KERNEL)?;
        }
        Ok(v)
    }

    /// Collects what `f(record)` records, into room for `max` items.
    fn collect<T>(max: usize, f: impl FnOnce(&mut dyn FnMut(T))) -> Result<KVec<T>> {
        let mut v = KVec::with_capacity(max, GFP_KERNEL)?;
        let mut overflow = false;
        f(&mut |x| overflow |= v.push_within_capacity(x).is_err());
        if overflow {
            return Err(EOVERFLOW);
        }
        Ok(v)
    }

    fn runs(first_gfn: u64, p: &[HostPage]) -> Result<KVec<Run>> {
        collect(p.len(), |rec| plan_runs(first_gfn, p, rec))
    }

    fn frames(
        start: u64,
        r: GfnRange,
        large: impl Fn(u64) -> bool,
    ) -> Result<KVec<(u64, u64, bool)>> {
        collect(r.count as usize, |rec| {
            split_by_frames(start, r, large, |g, n, l| rec((g, n, l)))
        })
    }

    fn run(index: usize, count: usize, large: bool) -> Run {
        Run {
            index,
            count,
            large,
        }
    }

    #[test]
    fn runs_all_large_and_all_small() -> Result {
        let p = pages(0x10000, 1024, 9)?;
        assert_eq!(&runs(0x400, &p)?[..], &[run(0, 1024, true)]);
        // Same pages at 4 KiB order: one small run.
        let p = pages(0x10000, 1024, 0)?;
        assert_eq!(&runs(0x400, &p)?[..], &[run(0, 1024, false)]);
        // Large-mapped but gfn unaligned by one: no 2 MiB entry possible.
        let p = pages(0x10000, 512, 9)?;
        assert_eq!(&runs(0x401, &p)?[..], &[run(0, 512, false)]);
        // gfn aligned but pfn not.
        let p = pages(0x10001, 512, 9)?;
        assert_eq!(&runs(0x400, &p)?[..], &[run(0, 512, false)]);
        // Empty input: no runs.
        assert_eq!(runs(0, &[])?.len(), 0);
        Ok(())
    }

    #[test]
    fn runs_mixed_backing() -> Result {
        // 16 small pages, then one THP, then 3 small pages; the window starts
        // 16 pages below a 2 MiB gfn frame (an unaligned region start).
        let mut p = pages(0x5000, 16, 0)?;
        p.extend_from_slice(&pages(0x20000, 512, 9)?, GFP_KERNEL)?;
        p.extend_from_slice(&pages(0x7000, 3, 0)?, GFP_KERNEL)?;
        assert_eq!(
            &runs(0x3f0, &p)?[..],
            &[run(0, 16, false), run(16, 512, true), run(528, 3, false)]
        );
        // A hole in pfn contiguity inside the THP range breaks the large run.
        p[16 + 100].pfn = 0x99999;
        assert_eq!(&runs(0x3f0, &p)?[..], &[run(0, 531, false)]);
        // Too few pages left for a whole frame.
        let p = pages(0x20000, 511, 9)?;
        assert_eq!(&runs(0x400, &p)?[..], &[run(0, 511, false)]);
        Ok(())
    }

    #[test]
    fn invalidation_clamping() {
        let ua = 0x7f00_0000_0000u64;
        // Region of 16 pages at ua.
        // Before, after, touching edges: empty.
        assert_eq!(clamp_invalidation(ua, 16, 0x1000, ua), None);
        assert_eq!(clamp_invalidation(ua, 16, ua + 0x10000, ua + 0x20000), None);
        // Inside.
        assert_eq!(
            clamp_invalidation(ua, 16, ua + 0x2000, ua + 0x4000),
            w(2, 2)
        );
        // Straddling the start and the end.
        assert_eq!(
            clamp_invalidation(ua, 16, ua - 0x3000, ua + 0x1000),
            w(0, 1)
        );
        assert_eq!(
            clamp_invalidation(ua, 16, ua + 0xf000, ua + 0x40000),
            w(15, 1)
        );
        // Covering all.
        assert_eq!(clamp_invalidation(ua, 16, 0, u64::MAX), w(0, 16));
        // Unaligned ends round outward.
        assert_eq!(
            clamp_invalidation(ua, 16, ua + 0x2fff, ua + 0x3001),
            w(2, 2)
        );
        assert_eq!(
            clamp_invalidation(ua, 16, ua + 0x2001, ua + 0x2002),
            w(2, 1)
        );
        // Empty and inverted.
        assert_eq!(clamp_invalidation(ua, 16, ua + 0x2000, ua + 0x2000), None);
        assert_eq!(clamp_invalidation(ua, 16, ua + 0x3000, ua + 0x2000), None);
        // End near u64::MAX does not wrap.
        let top = u64::MAX & !0xfff;
        assert_eq!(
            clamp_invalidation(top - 0x1000, 1, top - 0x800, u64::MAX),
            w(0, 1)
        );
        // A region whose end would overflow is rejected, not wrapped.
        assert_eq!(clamp_invalidation(top, 2, top, u64::MAX), None);
    }

    #[test]
    fn widening_to_large_frames() {
        // Region at gfn 0x3f0, 1040 pages: frames 0x400 and 0x600 are inside.
        let large = |f: u64| f == 0x400;
        // Invalidating 4 pages in the large frame widens to the whole frame.
        let r = GfnRange {
            first: 0x20,
            count: 4,
        };
        assert_eq!(
            widen_to_large_frames(0x3f0, 1040, r, large),
            GfnRange {
                first: 0x10,
                count: 512
            }
        );
        // Straddling the small head and the large frame.
        let r = GfnRange {
            first: 0x8,
            count: 0x10,
        };
        assert_eq!(
            widen_to_large_frames(0x3f0, 1040, r, large),
            GfnRange {
                first: 0x8,
                count: 0x208
            }
        );
        // Nothing large: unchanged.
        let r = GfnRange {
            first: 0x20,
            count: 4,
        };
        assert_eq!(widen_to_large_frames(0x3f0, 1040, r, |_| false), r);
    }

    #[test]
    fn splitting_by_frames() -> Result {
        // Region at gfn 0x3f0; offsets 0x8..0x418 = gfns 0x3f8..0x808.
        // Frame 0x400 large, frame 0x600 small.
        let r = GfnRange {
            first: 0x8,
            count: 0x410,
        };
        assert_eq!(
            &frames(0x3f0, r, |f| f == 0x400)?[..],
            &[(0x3f8, 8, false), (0x400, 1, true), (0x600, 0x208, false)]
        );
        // Two adjacent large frames merge into one run of 2 reps.
        let r = GfnRange {
            first: 0,
            count: 1024,
        };
        assert_eq!(&frames(0x400, r, |_| true)?[..], &[(0x400, 2, true)]);
        // A large frame only partly covered is not a large rep.
        let r = GfnRange {
            first: 0,
            count: 511,
        };
        assert_eq!(&frames(0x400, r, |_| true)?[..], &[(0x400, 511, false)]);
        // Empty range: nothing.
        let r = GfnRange { first: 0, count: 0 };
        assert_eq!(frames(0x400, r, |_| true)?.len(), 0);
        Ok(())
    }

    #[test]
    fn batching() {
        assert_eq!(pages_of_reps(3, true), 1536);
        assert_eq!(pages_of_reps(3, false), 3);
        assert_eq!(pages_of_reps(u64::MAX, true), u64::MAX);
    }
}
