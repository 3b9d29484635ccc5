// SPDX-License-Identifier: GPL-2.0
//
// VP and partition state a VMM saves, restores and tracks: GPA access
// (dirty) bitmaps, VP state blobs, the register page, registers and
// properties.

use std::os::fd::AsRawFd;

use mshv_bindings::*;

use crate::uapi::*;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure, ensure_eq, fail};

/// `MSHV_GET_GPAP_ACCESS_BITMAP`.
const MSHV_GET_GPAP_ACCESS_BITMAP: u64 = 0xC020_B806;

#[repr(C)]
#[derive(Default)]
struct GpapArgs {
    access_type: u8,
    access_op: u8,
    rsvd: [u8; 6],
    page_count: u64,
    gpap_base: u64,
    bitmap_ptr: u64,
}

/// The page indexes whose bit is set in `bitmap` (first `count` bits).
fn set_bits(bitmap: &[u64], count: u64) -> Vec<u64> {
    (0..count)
        .filter(|&i| bitmap[(i / 64) as usize] >> (i % 64) & 1 != 0)
        .collect()
}

/// Data region of the dirty-tracking test: 64 pages at GPA 1 MiB.
const DATA_GFN: u64 = 0x100;
const DATA_PAGES: u64 = 64;

/// Dirty and accessed bits through `MSHV_GET_GPAP_ACCESS_BITMAP`: the guest
/// (monitor32) writes and reads known pages; the bitmaps report exactly
/// those; NOOP changes nothing, CLEAR clears, SET sets; a page invalidated
/// behind the guest stays dirty; tracking cannot be disabled while bits are
/// cleared; the argument validation; a query over 8 GiB of GPA space.
pub fn gpap_dirty_tracking() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let data = Mmap::anon((DATA_PAGES as usize) * PAGE)?;
    p.map(&data, 0, data.len(), DATA_GFN, MEM_RWX)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;

    let (acc, dirty) = (
        MSHV_GPAP_ACCESS_TYPE_ACCESSED as u8,
        MSHV_GPAP_ACCESS_TYPE_DIRTY as u8,
    );
    let (noop, clear, set) = (
        MSHV_GPAP_ACCESS_OP_NOOP as u8,
        MSHV_GPAP_ACCESS_OP_CLEAR as u8,
        MSHV_GPAP_ACCESS_OP_SET as u8,
    );
    let get = |ty: u8, op: u8, what: &str| -> TResult<Vec<u64>> {
        let b =
            p.vm.get_gpap_access_bitmap(DATA_GFN, DATA_PAGES, ty, op)
                .map_err(|e| {
                    Failure::Fail(format!("GET_GPAP_ACCESS_BITMAP ({what}): {}", show_err(e)))
                })?;
        Ok(set_bits(&b, DATA_PAGES))
    };
    let all: Vec<u64> = (0..DATA_PAGES).collect();

    // Tracking off: the hypervisor vouches for nothing, every page is
    // reported accessed and dirty, and CLEAR has no effect.
    ensure_eq!(
        get(dirty, clear, "tracking off")?,
        all.clone(),
        "dirty bits with tracking off"
    );
    ensure_eq!(
        get(dirty, noop, "tracking off")?,
        all.clone(),
        "dirty bits with tracking off, after CLEAR"
    );

    p.vm.enable_dirty_page_tracking()
        .map_err(|e| Failure::Fail(format!("enable dirty tracking: {}", show_err(e))))?;
    // Enabling marks every mapped page; CLEAR starts a round.
    ensure_eq!(
        get(dirty, clear, "first round")?,
        all.clone(),
        "dirty bits right after enabling tracking"
    );
    ensure_eq!(
        get(dirty, noop, "after CLEAR")?,
        Vec::<u64>::new(),
        "dirty bits after CLEAR"
    );
    // Clearing dirty leaves accessed; clearing accessed clears both.
    ensure_eq!(
        get(acc, clear, "accessed CLEAR")?,
        all.clone(),
        "accessed bits before their CLEAR"
    );
    ensure_eq!(
        get(acc, noop, "after accessed CLEAR")?,
        Vec::<u64>::new(),
        "accessed bits after CLEAR"
    );

    // The guest writes some pages and reads others.
    let written = [1u64, 5, 17, 63];
    let read = [2u64, 30];
    for &pg in &written {
        m.write(
            ((DATA_GFN + pg) * PAGE as u64 + 8) as u32,
            0x1234_0000 | pg as u32,
        )?;
    }
    for &pg in &read {
        m.read(((DATA_GFN + pg) * PAGE as u64) as u32)?;
    }
    let mut touched: Vec<u64> = written.iter().chain(read.iter()).copied().collect();
    touched.sort();
    ensure_eq!(
        get(dirty, noop, "after guest writes")?,
        written.to_vec(),
        "dirty pages"
    );
    ensure_eq!(
        get(dirty, noop, "NOOP again")?,
        written.to_vec(),
        "dirty pages, second NOOP read"
    );
    ensure_eq!(
        get(acc, noop, "after guest accesses")?,
        touched.clone(),
        "accessed pages"
    );

    // A written page taken back by Linux (NO_ACCESS remap) stays dirty.
    m.write(((DATA_GFN + 9) * PAGE as u64) as u32, 9)?;
    data.madvise(9 * PAGE, PAGE, libc::MADV_DONTNEED)
        .map_err(|e| Failure::Fail(format!("madvise(DONTNEED): {}", errname(e))))?;
    let mut written9 = written.to_vec();
    written9.push(9);
    written9.sort();
    ensure_eq!(
        get(dirty, clear, "CLEAR")?,
        written9.clone(),
        "dirty pages (page 9 invalidated after its write)"
    );
    ensure_eq!(
        get(dirty, noop, "after CLEAR")?,
        Vec::<u64>::new(),
        "dirty pages after CLEAR"
    );
    let mut touched9 = touched.clone();
    touched9.push(9);
    touched9.sort();
    ensure_eq!(
        get(acc, noop, "accessed after dirty CLEAR")?,
        touched9.clone(),
        "accessed pages after a dirty CLEAR"
    );

    // An unaligned sub-range, partial last byte: page 17 is bit 17 - 14 = 3.
    m.write(((DATA_GFN + 17) * PAGE as u64) as u32, 17)?;
    let b = p
        .vm
        .get_gpap_access_bitmap(DATA_GFN + 14, 5, dirty, noop)
        .map_err(|e| Failure::Fail(format!("GET_GPAP_ACCESS_BITMAP (5 pages): {}", show_err(e))))?;
    ensure_eq!(b, vec![1u64 << 3], "bitmap of 5 pages from page 14");

    // Tracking cannot be turned off while bits are cleared; SET restores.
    match p.vm.disable_dirty_page_tracking() {
        Err(mshv_ioctls::MshvError::Hypercall { status_raw, .. }) => ensure_eq!(
            status_raw,
            0x8,
            "disable tracking with cleared bits: HV_STATUS_OPERATION_DENIED"
        ),
        Err(e) => fail!("disable tracking with cleared bits: {}", show_err(e)),
        Ok(()) => fail!("disabling tracking with cleared dirty bits succeeded"),
    }
    // The code region (GPA 0..64 KiB) has cleared bits too.
    for (gfn, pages) in [
        (CODE_GFN, (CODE_SIZE / PAGE) as u64),
        (DATA_GFN, DATA_PAGES),
    ] {
        p.vm.get_dirty_log(gfn, (pages as usize) * PAGE, set)
            .map_err(|e| Failure::Fail(format!("get_dirty_log(SET): {}", show_err(e))))?;
    }
    ensure_eq!(
        get(dirty, noop, "after SET")?,
        all.clone(),
        "dirty pages after SET"
    );
    p.vm.disable_dirty_page_tracking()
        .map_err(|e| Failure::Fail(format!("disable tracking after SET: {}", show_err(e))))?;
    p.vm.enable_dirty_page_tracking()
        .map_err(|e| Failure::Fail(format!("enable dirty tracking again: {}", show_err(e))))?;

    // Scale: 8 GiB of GPA space in one call (2 Mi pages, a 256 KiB bitmap),
    // only the two regions mapped: every mapped page is reported (enabling
    // marked them), nothing else.
    let pages = 8u64 << 18;
    let b = p
        .vm
        .get_gpap_access_bitmap(0, pages, dirty, clear)
        .map_err(|e| Failure::Fail(format!("GET_GPAP_ACCESS_BITMAP (8 GiB): {}", show_err(e))))?;
    ensure_eq!(b.len() as u64, pages / 64, "bitmap words for 8 GiB");
    let bits = set_bits(&b, pages);
    let code_pages = (CODE_SIZE / PAGE) as u64;
    let expect: Vec<u64> = (0..code_pages)
        .chain(DATA_GFN..DATA_GFN + DATA_PAGES)
        .collect();
    ensure_eq!(bits.len(), expect.len(), "dirty pages in 8 GiB");
    ensure!(bits == expect, "dirty pages in 8 GiB are the mapped ones");

    // Argument validation (raw ioctl: the crate would allocate the bitmap).
    let mut bitmap = vec![0u64; 4];
    let fd = p.vm.as_raw_fd();
    let mut c = Checks::new();
    let mut call = |what: &str, f: &dyn Fn(&mut GpapArgs), expected: i32| {
        let mut a = GpapArgs {
            page_count: 64,
            gpap_base: DATA_GFN,
            bitmap_ptr: bitmap.as_mut_ptr() as u64,
            ..Default::default()
        };
        f(&mut a);
        // SAFETY: the bitmap holds 256 bits, more than any valid count here.
        let r = unsafe { ioctl_raw(fd, MSHV_GET_GPAP_ACCESS_BITMAP, &mut a) };
        if expected == 0 {
            c.success(what, r);
        } else {
            c.errno(what, r, expected, false);
        }
    };
    call("valid", &|_| {}, 0);
    call("access_type 2", &|a| a.access_type = 2, libc::EINVAL);
    call("access_op 3", &|a| a.access_op = 3, libc::EINVAL);
    call("rsvd set", &|a| a.rsvd[2] = 1, libc::EINVAL);
    call("page_count 0", &|a| a.page_count = 0, libc::EINVAL);
    call("bitmap_ptr 0", &|a| a.bitmap_ptr = 0, libc::EINVAL);
    call("page_count 2^32", &|a| a.page_count = 1 << 32, libc::E2BIG);
    call(
        "gfn range overflowing",
        &|a| a.gpap_base = u64::MAX - 10,
        libc::EINVAL,
    );
    call("unwritable bitmap", &|a| a.bitmap_ptr = 8, libc::EFAULT);
    c.finish()?;
    m.halt()
}
