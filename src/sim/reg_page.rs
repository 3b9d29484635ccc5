// SPDX-License-Identifier: GPL-2.0

//! The VP register page (`struct hv_vp_register_page`, x64, version 1) of
//! the simulated hypervisor: a fast path through which a VMM reads and
//! writes the registers it needs on every exit.
//!
//! Protocol (as Hyper-V and the mshv-ioctls client use it):
//!
//! - the hypervisor *exports* the registers into the page, with
//!   `isvalid = 1` and `dirty = 0`, when the page is mapped, after every
//!   exit of `run_vp` and after every register hypercall;
//! - the VMM writes fields and sets the `dirty` bit of their class
//!   ([`CLASS_GENERAL`]: RAX..R15, [`CLASS_IP`]: RIP, [`CLASS_XMM`]:
//!   XMM0..5, [`CLASS_SEGMENT`]: ES, CS, SS, DS, FS, GS, [`CLASS_FLAGS`]:
//!   RFLAGS); the other fields are read-only for it;
//! - the hypervisor *imports* the dirty classes before it runs the VP, and
//!   also before a register hypercall (so a hypercall never sees, nor
//!   overwrites with its export, stale values of a class the VMM just wrote
//!   through the page — mshv-ioctls' `set_sregs` writes segments through the
//!   page and the table registers through a hypercall).
//!
//! Values that the register file refuses on import (none today: every field
//! of these classes is accepted) would be dropped.
//!
//! The page is a pool page lent to the VP; every access to it is made under
//! the partition's lock, after checking that the VP still holds it, so a
//! concurrent delete cannot make it a use after free. The registers are
//! copied under the VP's register lock, never nested with the partition's.

use super::{le, regs::RegFile, vp::Vp, ChildPartition, REGISTER_PAGE};
use crate::sys::page;
use crate::tlfs::abi;
use kernel::sync::atomic::Relaxed;

/// `HV_X64_REGISTER_CLASS_GENERAL`.
pub(crate) const CLASS_GENERAL: u32 = 0;
/// `HV_X64_REGISTER_CLASS_IP`.
pub(crate) const CLASS_IP: u32 = 1;
/// `HV_X64_REGISTER_CLASS_XMM`.
pub(crate) const CLASS_XMM: u32 = 2;
/// `HV_X64_REGISTER_CLASS_SEGMENT`.
pub(crate) const CLASS_SEGMENT: u32 = 3;
/// `HV_X64_REGISTER_CLASS_FLAGS`.
pub(crate) const CLASS_FLAGS: u32 = 4;

/// `HV_VP_REGISTER_PAGE_VERSION_1`.
const VERSION_1: u16 = 1;
/// Bytes of the page the hypervisor maintains (up to `reserved1`).
pub(crate) const IMAGE: usize = 432;

// Offsets in `struct hv_vp_register_page`.
const VERSION: usize = 0;
const ISVALID: usize = 2;
const DIRTY: usize = 4;
const GP: usize = 8;
const RIP: usize = 136;
const RFLAGS: usize = 144;
const XMM: usize = 160;
/// XMM0..5 in the page.
const XMM_COUNT: u32 = 6;
const SEGMENTS: usize = 256;
/// ES, CS, SS, DS, FS, GS in page order.
const SEGMENT_NAMES: [u32; 6] = [
    abi::HV_X64_REGISTER_ES,
    abi::HV_X64_REGISTER_CS,
    abi::HV_X64_REGISTER_SS,
    abi::HV_X64_REGISTER_DS,
    abi::HV_X64_REGISTER_FS,
    abi::HV_X64_REGISTER_GS,
];
/// `HV_REGISTER_INSTRUCTION_EMULATION_HINTS`.
const EMULATION_HINTS: u32 = 0x0000_0002;
/// The 64-bit fields from offset 352, in page order.
const CONTROL_NAMES: [u32; 10] = [
    abi::HV_X64_REGISTER_CR0,
    abi::HV_X64_REGISTER_CR3,
    abi::HV_X64_REGISTER_CR4,
    abi::HV_X64_REGISTER_CR8,
    abi::HV_X64_REGISTER_EFER,
    abi::HV_X64_REGISTER_DR7,
    abi::HV_REGISTER_PENDING_INTERRUPTION,
    abi::HV_REGISTER_INTERRUPT_STATE,
    EMULATION_HINTS,
    abi::HV_X64_REGISTER_XFEM,
];
const CONTROL: usize = 352;

/// A copy of the maintained part of a register page.
pub(crate) type Image = [u8; IMAGE];

// Offsets into an `Image` are constants inside it: the fallbacks never apply.
fn get64(img: &Image, off: usize) -> u64 {
    le::u64_at(img, off).unwrap_or(0)
}

fn put64(img: &mut Image, off: usize, v: u64) {
    le::set_u64(img, off, v);
}

/// Fills `img` from the register file: valid, nothing dirty.
pub(crate) fn export(rf: &RegFile, img: &mut Image) {
    let get = |name| rf.get(name).unwrap_or([0, 0]);
    img.fill(0);
    img[VERSION..VERSION + 2].copy_from_slice(&VERSION_1.to_le_bytes());
    img[ISVALID] = 1;
    for i in 0..16u32 {
        put64(
            img,
            GP + 8 * i as usize,
            get(abi::HV_X64_REGISTER_RAX + i)[0],
        );
    }
    put64(img, RIP, get(abi::HV_X64_REGISTER_RIP)[0]);
    put64(img, RFLAGS, get(abi::HV_X64_REGISTER_RFLAGS)[0]);
    for i in 0..XMM_COUNT {
        let v = get(abi::HV_X64_REGISTER_XMM0 + i);
        put64(img, XMM + 16 * i as usize, v[0]);
        put64(img, XMM + 16 * i as usize + 8, v[1]);
    }
    for (i, &name) in SEGMENT_NAMES.iter().enumerate() {
        let v = get(name);
        put64(img, SEGMENTS + 16 * i, v[0]);
        put64(img, SEGMENTS + 16 * i + 8, v[1]);
    }
    for (i, &name) in CONTROL_NAMES.iter().enumerate() {
        put64(img, CONTROL + 8 * i, get(name)[0]);
    }
}

/// Writes the classes flagged in `dirty` from `img` into the register file.
pub(crate) fn import(rf: &mut RegFile, img: &Image, dirty: u32) {
    let mut set = |name, v| {
        // Every field of these classes is a value the file accepts.
        let _ = rf.set(name, v);
    };
    if dirty & (1 << CLASS_GENERAL) != 0 {
        for i in 0..16u32 {
            set(
                abi::HV_X64_REGISTER_RAX + i,
                [get64(img, GP + 8 * i as usize), 0],
            );
        }
    }
    if dirty & (1 << CLASS_IP) != 0 {
        set(abi::HV_X64_REGISTER_RIP, [get64(img, RIP), 0]);
    }
    if dirty & (1 << CLASS_FLAGS) != 0 {
        set(abi::HV_X64_REGISTER_RFLAGS, [get64(img, RFLAGS), 0]);
    }
    if dirty & (1 << CLASS_XMM) != 0 {
        for i in 0..XMM_COUNT {
            let off = XMM + 16 * i as usize;
            set(
                abi::HV_X64_REGISTER_XMM0 + i,
                [get64(img, off), get64(img, off + 8)],
            );
        }
    }
    if dirty & (1 << CLASS_SEGMENT) != 0 {
        for (i, &name) in SEGMENT_NAMES.iter().enumerate() {
            let off = SEGMENTS + 16 * i;
            set(name, [get64(img, off), get64(img, off + 8)]);
        }
    }
}

/// The register page of VP `vp`, if the VP exists. Call under `part`'s lock.
fn page_of(inner: &super::PartInner, vp: u32) -> Option<u64> {
    inner.vps.get(&vp).map(|e| e.pages[REGISTER_PAGE])
}

/// Reads VP `vp`'s register page and clears its dirty mask: the image and
/// the dirty classes (`None` if the VP is gone or nothing is dirty).
pub(crate) fn take_dirty(part: &ChildPartition, vp: u32) -> Option<(Image, u32)> {
    let inner = part.inner.lock();
    let pfn = page_of(&inner, vp)?;
    let mut img = [0u8; IMAGE];
    // SAFETY: `pfn` is the register page the VP holds; it stays lent to it
    // while we hold the partition's lock, which delete and finalize take.
    unsafe { page::read(pfn, 0, &mut img) };
    let dirty = u32::from_le_bytes([img[DIRTY], img[DIRTY + 1], img[DIRTY + 2], img[DIRTY + 3]]);
    if dirty == 0 {
        return None;
    }
    // SAFETY: as above.
    unsafe { page::write(pfn, DIRTY, &0u32.to_le_bytes()) };
    Some((img, dirty))
}

/// Writes `img` into VP `vp`'s register page, if the VP still exists.
pub(crate) fn publish(part: &ChildPartition, vp: u32, img: &Image) {
    let inner = part.inner.lock();
    if let Some(pfn) = page_of(&inner, vp) {
        // SAFETY: as in `take_dirty`; the image is smaller than a page.
        unsafe { page::write(pfn, 0, img) };
    }
}

/// Runs `f` on the registers of `vp` (not running) as a register hypercall:
/// imports the page's dirty classes first, exports the page afterwards. A
/// running VP's page belongs to its run loop: `f` then runs alone.
pub(crate) fn with_regs<T>(part: &ChildPartition, vp: &Vp, f: impl FnOnce(&mut RegFile) -> T) -> T {
    if vp.running.load(Relaxed) {
        return f(&mut vp.regs.lock());
    }
    let taken = take_dirty(part, vp.index);
    let mut img = [0u8; IMAGE];
    let res = {
        let mut rf = vp.regs.lock();
        if let Some((page, dirty)) = &taken {
            import(&mut rf, page, *dirty);
        }
        let res = f(&mut rf);
        export(&rf, &mut img);
        res
    };
    publish(part, vp.index, &img);
    res
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_sim_reg_page)]
mod tests {
    use super::*;
    use kernel::prelude::*;

    #[test]
    fn export_and_import() -> Result {
        let mut rf = RegFile::new(0)?;
        let mut img = [0xffu8; IMAGE];
        export(&rf, &mut img);
        assert_eq!((img[0], img[1], img[ISVALID]), (1, 0, 1));
        assert_eq!(get64(&img, DIRTY) & 0xffff_ffff, 0);
        assert_eq!(get64(&img, RIP), 0xfff0);
        assert_eq!(get64(&img, RFLAGS), 2);
        // CS: base 0xffff0000, limit 0xffff, selector 0xf000.
        assert_eq!(get64(&img, SEGMENTS + 16), 0xffff_0000);
        assert_eq!(
            get64(&img, SEGMENTS + 24) & 0xffff_ffff_ffff,
            0xf000_0000_ffff
        );
        assert_eq!(get64(&img, CONTROL), 0x6000_0010);
        // Only the dirty classes are imported.
        put64(&mut img, GP + 8, 0x11); // RCX
        put64(&mut img, RIP, 0x22);
        put64(&mut img, RFLAGS, 0x202);
        put64(&mut img, XMM + 16 * 5 + 8, 0x33); // XMM5 high
        put64(&mut img, SEGMENTS + 16 * 3, 0x44); // DS base
        put64(&mut img, CONTROL, 0x55); // CR0: never imported
        import(&mut rf, &img, (1 << CLASS_IP) | (1 << CLASS_XMM));
        assert_eq!(rf.get(abi::HV_X64_REGISTER_RIP), Ok([0x22, 0]));
        assert_eq!(rf.get(abi::HV_X64_REGISTER_XMM0 + 5), Ok([0, 0x33]));
        assert_eq!(rf.get(abi::HV_X64_REGISTER_RAX + 1), Ok([0, 0]));
        assert_eq!(rf.get(abi::HV_X64_REGISTER_RFLAGS), Ok([2, 0]));
        import(
            &mut rf,
            &img,
            (1 << CLASS_GENERAL) | (1 << CLASS_FLAGS) | (1 << CLASS_SEGMENT),
        );
        assert_eq!(rf.get(abi::HV_X64_REGISTER_RAX + 1), Ok([0x11, 0]));
        assert_eq!(rf.get(abi::HV_X64_REGISTER_RFLAGS), Ok([0x202, 0]));
        assert_eq!(rf.get(abi::HV_X64_REGISTER_DS).map(|v| v[0]), Ok(0x44));
        assert_eq!(rf.get(abi::HV_X64_REGISTER_CR0), Ok([0x6000_0010, 0]));
        Ok(())
    }
}
