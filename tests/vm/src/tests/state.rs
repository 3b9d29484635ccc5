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

/// `MSHV_GET_VP_STATE` / `MSHV_SET_VP_STATE`.
const MSHV_GET_VP_STATE: u64 = 0xC010_B801;
const MSHV_SET_VP_STATE: u64 = 0xC010_B802;

/// A page-aligned buffer of `pages` pages.
fn state_buf(pages: usize) -> TResult<Mmap> {
    Mmap::anon(pages * PAGE)
}

/// Raw GET/SET_VP_STATE; returns the ioctl result and the `buf_sz` written back.
fn vp_state_raw(fd: i32, set: bool, type_: u8, buf_sz: u32, buf_ptr: u64) -> (IoctlResult, u32) {
    let mut a = mshv_get_set_vp_state {
        type_,
        buf_sz,
        buf_ptr,
        ..Default::default()
    };
    let req = if set {
        MSHV_SET_VP_STATE
    } else {
        MSHV_GET_VP_STATE
    };
    // SAFETY: `buf_ptr` points at `buf_sz` bytes owned by the caller (or at
    // nothing, for the fault checks).
    let r = unsafe { ioctl_raw(fd, req, &mut a) };
    (r, a.buf_sz)
}

/// VP state blobs: reset contents, byte-exact round trips of every type
/// through raw ioctls, the crate's get/set_lapic, get/set_xsave and
/// get/set_all_vp_state_components, upstream's buffer-size rules.
pub fn vp_state_round_trips() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let v0 = p.vcpu(0)?;
    let v1 = p.vcpu(1)?;
    let fd = v1.as_raw_fd();

    // Reset LAPIC of VP 1 through the crate (xAPIC register layout).
    let lapic = v1
        .get_lapic()
        .map_err(|e| Failure::Fail(format!("get_lapic: {}", show_err(e))))?;
    let reg = |l: &LapicState, off: usize| {
        u32::from_le_bytes([
            l.regs[off] as u8,
            l.regs[off + 1] as u8,
            l.regs[off + 2] as u8,
            l.regs[off + 3] as u8,
        ])
    };
    ensure_eq!(reg(&lapic, 0x20), 1, "LAPIC id of VP 1");
    ensure_eq!(reg(&lapic, 0x30), 0x0005_0014, "LAPIC version");
    ensure_eq!(reg(&lapic, 0xf0), 0xff, "spurious vector register at reset");
    ensure_eq!(reg(&lapic, 0x350), 0x1_0000, "LINT0 masked at reset");
    // What Cloud Hypervisor does at vCPU set-up: LINT0 ExtINT, LINT1 NMI.
    let mut l2 = lapic;
    let put = |l: &mut LapicState, off: usize, v: u32| {
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            l.regs[off + i] = *b as _;
        }
    };
    put(&mut l2, 0x350, 0x700);
    put(&mut l2, 0x360, 0x400);
    v1.set_lapic(&l2)
        .map_err(|e| Failure::Fail(format!("set_lapic: {}", show_err(e))))?;
    let l3 = v1
        .get_lapic()
        .map_err(|e| Failure::Fail(format!("get_lapic: {}", show_err(e))))?;
    ensure!(l3.regs == l2.regs, "get_lapic returns what set_lapic set");
    let l0 = v0
        .get_lapic()
        .map_err(|e| Failure::Fail(format!("get_lapic VP 0: {}", show_err(e))))?;
    ensure_eq!(reg(&l0, 0x20), 0, "LAPIC id of VP 0");
    ensure_eq!(reg(&l0, 0x350), 0x1_0000, "VP 0's LINT0 untouched");

    // XSAVE through the crate: reset x87/SSE control words, round trip.
    let x = v1
        .get_xsave()
        .map_err(|e| Failure::Fail(format!("get_xsave: {}", show_err(e))))?;
    ensure_eq!(
        u16::from_le_bytes([x.buffer[0], x.buffer[1]]),
        0x37f,
        "FCW at reset"
    );
    ensure_eq!(
        u32::from_le_bytes([x.buffer[24], x.buffer[25], x.buffer[26], x.buffer[27]]),
        0x1f80,
        "MXCSR at reset"
    );
    let mut x2 = x;
    for (i, b) in x2.buffer[160..416].iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8; // XMM0-15
    }
    v1.set_xsave(&x2)
        .map_err(|e| Failure::Fail(format!("set_xsave: {}", show_err(e))))?;
    let x3 = v1
        .get_xsave()
        .map_err(|e| Failure::Fail(format!("get_xsave: {}", show_err(e))))?;
    ensure!(
        x3.buffer[..832] == x2.buffer[..832],
        "get_xsave returns what set_xsave set"
    );

    // Byte-exact raw round trips; the size each type needs comes back in buf_sz.
    let mut c = Checks::new();
    let sizes = [
        (MSHV_VP_STATE_LAPIC as u8, 4096u32),
        (MSHV_VP_STATE_XSAVE as u8, 832),
        (MSHV_VP_STATE_SIMP as u8, 4096),
        (MSHV_VP_STATE_SIEFP as u8, 4096),
        (MSHV_VP_STATE_SYNTHETIC_TIMERS as u8, 200),
    ];
    for (ty, size) in sizes {
        let mut buf = state_buf(2)?;
        for (i, b) in buf.bytes_mut(0, 2 * PAGE).iter_mut().enumerate() {
            *b = (i as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(u32::from(ty)) as u8
                | 1;
        }
        let want = buf.bytes(0, size as usize).to_vec();
        let (r, sz) = vp_state_raw(fd, true, ty, 2 * PAGE as u32, buf.addr());
        c.success(&format!("SET_VP_STATE type {ty} (2-page buffer)"), r);
        ensure_eq!(sz, size, "buf_sz written back by SET_VP_STATE type {ty}");
        let out = state_buf(2)?;
        let (r, sz) = vp_state_raw(fd, false, ty, 2 * PAGE as u32, out.addr());
        c.success(&format!("GET_VP_STATE type {ty}"), r);
        ensure_eq!(sz, size, "buf_sz written back by GET_VP_STATE type {ty}");
        ensure!(
            out.bytes(0, size as usize) == &want[..],
            "type {ty}: GET returns the {size} bytes SET stored"
        );
        ensure!(
            out.bytes(size as usize, 2 * PAGE - size as usize)
                .iter()
                .all(|&b| b == 0),
            "type {ty}: GET writes nothing past the state's {size} bytes"
        );
        // Another VP's state is its own.
        let other = state_buf(1)?;
        let (r, _) = vp_state_raw(v0.as_raw_fd(), false, ty, PAGE as u32, other.addr());
        c.success(&format!("GET_VP_STATE type {ty} of VP 0"), r);
        ensure!(
            other.bytes(0, size as usize) != &want[..],
            "type {ty}: VP 0's state is not VP 1's"
        );
    }

    // The crate's save/restore of all components round-trips.
    let mut all = v1
        .get_all_vp_state_components()
        .map_err(|e| Failure::Fail(format!("get_all_vp_state_components: {}", show_err(e))))?;
    v0.set_all_vp_state_components(&mut all)
        .map_err(|e| Failure::Fail(format!("set_all_vp_state_components: {}", show_err(e))))?;
    let back = v0
        .get_all_vp_state_components()
        .map_err(|e| Failure::Fail(format!("get_all_vp_state_components: {}", show_err(e))))?;
    ensure!(
        back.buffer[..] == all.buffer[..],
        "all VP state components copied from VP 1 to VP 0"
    );

    // Upstream's validation; buf_sz is written back before the size check
    // only, so it is unchanged by the early EINVALs.
    let buf = state_buf(1)?;
    let a = buf.addr();
    let (r, sz) = vp_state_raw(fd, false, 5, 4096, a);
    c.errno("GET_VP_STATE type 5", r, libc::EINVAL, false);
    ensure_eq!(sz, 4096, "buf_sz after an EINVAL for the type");
    let (r, _) = vp_state_raw(fd, false, 0, 0, a);
    c.errno("GET_VP_STATE buf_sz 0", r, libc::EINVAL, false);
    let (r, _) = vp_state_raw(fd, false, 0, 100, a);
    c.errno("GET_VP_STATE buf_sz 100", r, libc::EINVAL, false);
    let (r, _) = vp_state_raw(fd, true, 0, 4096, a + 8);
    c.errno("SET_VP_STATE unaligned buf_ptr", r, libc::EINVAL, false);
    let mut bad = mshv_get_set_vp_state {
        type_: 0,
        buf_sz: 4096,
        buf_ptr: a,
        ..Default::default()
    };
    bad.rsvd[0] = 1;
    // SAFETY: a valid argument struct and buffer.
    let r = unsafe { ioctl_raw(fd, MSHV_GET_VP_STATE, &mut bad) };
    c.errno("GET_VP_STATE rsvd set", r, libc::EINVAL, false);
    let (r, _) = vp_state_raw(fd, false, 0, 508 * 4096, a);
    c.errno("GET_VP_STATE with 508 pages", r, libc::EINVAL, false);
    let hole = Mmap::anon(PAGE)?;
    let hole_addr = hole.addr();
    drop(hole);
    let (r, _) = vp_state_raw(fd, false, 0, 4096, hole_addr);
    c.errno(
        "GET_VP_STATE LAPIC into an unmapped page",
        r,
        libc::EFAULT,
        false,
    );
    let (r, _) = vp_state_raw(fd, false, 4, 4096, hole_addr);
    c.errno(
        "GET_VP_STATE timers into an unmapped page",
        r,
        libc::EFAULT,
        false,
    );
    c.finish()
}

/// `struct hv_vp_register_page` field offsets.
const RP_ISVALID: usize = 2;
const RP_DIRTY: usize = 4;
const RP_RAX: usize = 8;
const RP_RIP: usize = 136;
const RP_RFLAGS: usize = 144;
const RP_CS: usize = 256 + 16;
const RP_CR0: usize = 352;
const RP_EFER: usize = 352 + 32;

/// The VP's register page as the crate mapped it.
fn reg_page(vcpu: &mshv_ioctls::VcpuFd) -> TResult<*mut u8> {
    match vcpu.get_vp_reg_page() {
        Some(p) => Ok(p.0 as *mut u8),
        None => fail!("the crate has no register page for the VP (mmap failed?)"),
    }
}

fn rp_read<T: Copy>(page: *mut u8, off: usize) -> T {
    // SAFETY: the register page is mapped for the VP fd's lifetime; `off`
    // plus the size of T is within its 4 KiB.
    unsafe { std::ptr::read_volatile(page.add(off).cast::<T>()) }
}

fn rp_write<T: Copy>(page: *mut u8, off: usize, v: T) {
    // SAFETY: as in `rp_read`; the page is mapped writable.
    unsafe { std::ptr::write_volatile(page.add(off).cast::<T>(), v) }
}

/// The register page: valid with the reset state right after CREATE_VP,
/// re-exported after register hypercalls (clean) and after every exit;
/// classes written through it and marked dirty take effect (before a
/// register hypercall reads them, and at RUN_VP). The real-mode hello guest
/// prints through port 0x3F8 with RIP advanced through the page only.
pub fn register_page_protocol() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let mut rom = Mmap::anon(0x10000)?;
    rom.bytes_mut(0, crate::guest::HELLO16.len())
        .copy_from_slice(crate::guest::HELLO16);
    p.map(&rom, 0, 0x10000, 0xffff0, MEM_RWX)?;
    let vcpu = p.vcpu(0)?;
    let page = reg_page(&vcpu)?;

    ensure_eq!(rp_read::<u16>(page, 0), 1, "register page version");
    ensure_eq!(
        rp_read::<u8>(page, RP_ISVALID),
        1,
        "isvalid right after CREATE_VP"
    );
    ensure_eq!(
        rp_read::<u32>(page, RP_DIRTY),
        0,
        "dirty right after CREATE_VP"
    );
    ensure_eq!(rp_read::<u64>(page, RP_RIP), 0xfff0, "RIP at reset");
    ensure_eq!(rp_read::<u64>(page, RP_RFLAGS), 2, "RFLAGS at reset");
    ensure_eq!(rp_read::<u64>(page, RP_CS), 0xffff_0000, "CS base at reset");
    ensure_eq!(
        rp_read::<u16>(page, RP_CS + 12),
        0xf000,
        "CS selector at reset"
    );
    ensure_eq!(rp_read::<u64>(page, RP_CR0), 0x6000_0010, "CR0 at reset");

    // A hypercall write shows in the page; a page write shows in a hypercall.
    set_regs(
        &vcpu,
        &[reg64(hv_register_name_HV_X64_REGISTER_RBX, 0x1234)],
    )?;
    ensure_eq!(
        rp_read::<u64>(page, RP_RAX + 3 * 8),
        0x1234,
        "RBX in the page after SET_VP_REGISTERS"
    );
    rp_write::<u64>(page, RP_RAX + 2 * 8, 0xabcd); // RDX
    rp_write::<u32>(page, RP_DIRTY, 1 << HV_X64_REGISTER_CLASS_GENERAL);
    ensure_eq!(
        get_reg64(&vcpu, hv_register_name_HV_X64_REGISTER_RDX)?,
        0xabcd,
        "RDX written through the page, read by GET_VP_REGISTERS"
    );
    ensure_eq!(
        rp_read::<u32>(page, RP_DIRTY),
        0,
        "dirty after a register hypercall"
    );
    ensure_eq!(
        rp_read::<u64>(page, RP_RAX + 3 * 8),
        0x1234,
        "RBX still in the page"
    );
    // A field written without its dirty bit is not imported (and is
    // overwritten by the next export).
    rp_write::<u64>(page, RP_RAX + 8, 0x5555); // RCX, not marked
    ensure_eq!(
        get_reg64(&vcpu, hv_register_name_HV_X64_REGISTER_RCX)?,
        0,
        "RCX written through the page without its dirty bit"
    );
    ensure_eq!(rp_read::<u64>(page, RP_RAX + 8), 0, "RCX re-exported");
    // The crate's page paths agree with the hypercalls.
    let mut regs = vcpu
        .get_regs()
        .map_err(|e| Failure::Fail(format!("get_regs: {}", show_err(e))))?;
    ensure_eq!(
        (regs.rbx, regs.rdx, regs.rip),
        (0x1234, 0xabcd, 0xfff0),
        "get_regs through the page"
    );
    regs.rsi = 0x77;
    vcpu.set_regs(&regs)
        .map_err(|e| Failure::Fail(format!("set_regs: {}", show_err(e))))?;
    ensure_eq!(
        rp_read::<u32>(page, RP_DIRTY),
        (1 << HV_X64_REGISTER_CLASS_GENERAL)
            | (1 << HV_X64_REGISTER_CLASS_IP)
            | (1 << HV_X64_REGISTER_CLASS_FLAGS),
        "dirty classes the crate's set_regs marks"
    );
    let sregs = vcpu
        .get_sregs()
        .map_err(|e| Failure::Fail(format!("get_sregs: {}", show_err(e))))?;
    ensure_eq!(
        get_reg64(&vcpu, hv_register_name_HV_X64_REGISTER_RSI)?,
        0x77,
        "RSI set by set_regs"
    );
    vcpu.set_sregs(&sregs)
        .map_err(|e| Failure::Fail(format!("set_sregs: {}", show_err(e))))?;
    ensure_eq!(
        get_seg(&vcpu, hv_register_name_HV_X64_REGISTER_CS)?.base,
        0xffff_0000,
        "CS after set_sregs"
    );

    // Run: every OUT completes by RIP += length written into the page.
    let mut out = Vec::new();
    let mut halted = false;
    for _ in 0..64 {
        let exit = run(&vcpu).map_err(|e| Failure::Fail(format!("RUN_VP: {}", errname(e))))?;
        ensure_eq!(rp_read::<u8>(page, RP_ISVALID), 1, "isvalid after an exit");
        ensure_eq!(rp_read::<u32>(page, RP_DIRTY), 0, "dirty after an exit");
        match exit {
            Exit::Io {
                port,
                write,
                rip,
                len,
                rax,
                ..
            } => {
                ensure_eq!(
                    rp_read::<u64>(page, RP_RIP),
                    rip,
                    "page RIP at the I/O exit"
                );
                ensure_eq!(
                    rp_read::<u64>(page, RP_RAX) & 0xff,
                    rax & 0xff,
                    "page RAX at the I/O exit"
                );
                if port == 0x3f8 && write {
                    out.push(rax as u8);
                }
                if !write {
                    rp_write::<u64>(page, RP_RAX, (rax & !0xff) | 0x5a);
                }
                rp_write::<u64>(page, RP_RIP, rip + len as u64);
                rp_write::<u32>(
                    page,
                    RP_DIRTY,
                    (1 << HV_X64_REGISTER_CLASS_IP) | (1 << HV_X64_REGISTER_CLASS_GENERAL),
                );
            }
            Exit::Halt { .. } => {
                halted = true;
                break;
            }
            other => fail!(
                "unexpected exit {other} (serial so far {:?})",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    ensure!(
        halted,
        "the guest halted (serial {:?})",
        String::from_utf8_lossy(&out)
    );
    ensure_eq!(String::from_utf8_lossy(&out), "hello\n", "serial output");
    ensure_eq!(
        rp_read::<u64>(page, RP_EFER),
        0,
        "EFER in the page (real mode)"
    );
    Ok(())
}
