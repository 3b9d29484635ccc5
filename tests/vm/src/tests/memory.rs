// SPDX-License-Identifier: GPL-2.0
//
// Guest memory: the guest and the VMM see the same bytes at all times, for
// movable and pinned regions, across MADV_DONTNEED, munmap behind the
// driver's back, and with transparent huge pages at an unaligned guest_pfn.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::uapi::*;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure, ensure_eq, fail, note, skip};

/// Pattern test layout: one 8 MiB region at GPA 16 MiB; its first half (A)
/// is written by the VMM and read by the guest, its second half (B) written
/// by the guest and read by the VMM. (Sized for the interpreter under TCG:
/// 4 MiB per half keeps each test near 30 s; the demo walks larger buffers.)
const PAT_GFN: u64 = 0x1000;
const PAT_HALF: usize = 4 * MIB;
const PAT_A_GPA: u32 = 0x0100_0000;
const PAT_B_GPA: u32 = 0x0140_0000;

fn pattern_test(pinned: bool) -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let live0 = live_objects()?;
    let mut data = Mmap::anon(2 * PAT_HALF)?;
    let (seed_v, seed_g, seed_v2) = (0xa5c3_0f1e, 0x5a3c_f0e1, 0x0123_4567);
    fill_pattern(&mut data, 0, PAT_HALF, PAT_A_GPA as u64, seed_v);

    let pin = if pinned {
        Some(ForcePinned::on()?)
    } else {
        None
    };
    let code = load_monitor(&p)?;
    p.map(&data, 0, 2 * PAT_HALF, PAT_GFN, MEM_RWX)?;
    drop(pin);

    let region_pages = ((2 * PAT_HALF + code.len()) / PAGE) as u64;
    {
        let (l0, l1) = (&live0, live_objects()?);
        let delta = l1["pinned_pages"] as i64 - l0["pinned_pages"] as i64;
        note!(
            "pinned_pages after mapping: {} (was {})",
            l1["pinned_pages"],
            l0["pinned_pages"]
        );
        if pinned {
            ensure!(
                delta >= region_pages as i64,
                "pinned_pages after mapping {region_pages} pages with force_pinned=1\nexpected: at least {} (+{region_pages})\nactual:   {}",
                l0["pinned_pages"] + region_pages,
                l1["pinned_pages"]
            );
        } else {
            ensure_eq!(
                delta,
                0,
                "change of pinned_pages after mapping movable regions"
            );
        }
    }

    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    // The guest writes 4 MiB (B, never touched by the VMM), then reads the
    // VMM's 4 MiB (A).
    note!(
        "guest: pattern write of {} MiB at {PAT_B_GPA:#x}",
        PAT_HALF / MIB
    );
    m.pattern_write(PAT_B_GPA, dwords(PAT_HALF), seed_g)?;
    note!(
        "guest: pattern check of {} MiB at {PAT_A_GPA:#x}",
        PAT_HALF / MIB
    );
    m.expect_pattern(PAT_A_GPA, PAT_HALF, seed_v, "VMM-written half A")?;
    verify_pattern(
        &data,
        PAT_HALF,
        PAT_HALF,
        PAT_B_GPA as u64,
        seed_g,
        "the VMM's view of half B after the guest wrote it",
    )?;
    verify_pattern(
        &data,
        0,
        PAT_HALF,
        PAT_A_GPA as u64,
        seed_v,
        "the VMM's view of half A after the guest read it",
    )?;

    // The VMM rewrites A while the guest has it mapped; the guest must see
    // the new bytes, and still its own in B.
    fill_pattern(&mut data, 0, PAT_HALF, PAT_A_GPA as u64, seed_v2);
    note!("guest: checks of both halves after the VMM rewrote A");
    m.expect_pattern(PAT_A_GPA, PAT_HALF, seed_v2, "half A rewritten by the VMM")?;
    m.expect_pattern(
        PAT_B_GPA,
        PAT_HALF,
        seed_g,
        "half B, the guest's own writes",
    )?;
    m.halt()?;
    note!("{} exits", m.exits);
    p.note_stats("at the end");
    slat_matches_vmm_page_tables(&p, &data, 0, 2 * PAT_HALF / PAGE, PAT_GFN, pinned)?;

    if pinned {
        {
            let (l0, l1) = (&live0, live_objects()?);
            ensure!(
                l1["pinned_pages"] >= l0["pinned_pages"] + region_pages,
                "pinned_pages while the pinned regions are still mapped: {} (was {})",
                l1["pinned_pages"],
                l0["pinned_pages"]
            );
        }
    }
    drop(vcpu);
    drop(p);
    drop(code);
    Ok(())
}

/// The emulator's SLAT entries for the data region against the VMM's own
/// page tables (`/proc/self/pagemap`), not against anything the driver
/// keeps: every accessible entry holds the pfn the VMM maps at that
/// address, writable. A pinned region must have every page mapped (its pin
/// keeps them); a movable one may lose entries to invalidations Linux is
/// free to make (compaction), so at least one must be there to compare.
fn slat_matches_vmm_page_tables(
    p: &Partition,
    data: &Mmap,
    off: usize,
    pages: usize,
    first_gfn: u64,
    pinned: bool,
) -> TResult {
    let entries = crate::tests::sim::sim_entries(p)?;
    let mut compared = 0;
    for i in 0..pages {
        let gfn = first_gfn + i as u64;
        let Some(&(pfn, writable)) = entries.get(&gfn) else {
            ensure!(
                !pinned,
                "pinned region: gfn {gfn:#x} (page {i}) has no accessible SLAT entry"
            );
            continue;
        };
        let e = pagemap(data.addr() + (off + i * PAGE) as u64)?;
        ensure!(
            e & PM_PRESENT != 0,
            "gfn {gfn:#x} is mapped to pfn {pfn:#x} but the VMM's page {i} is not present (pagemap {e:#x})"
        );
        ensure_eq!(
            Hex(pfn),
            Hex(e & PM_PFN),
            "gfn {gfn:#x}: SLAT pfn against the VMM's pfn at page {i} (pagemap)"
        );
        ensure!(
            writable,
            "gfn {gfn:#x}: mapped read-only in a writable region"
        );
        compared += 1;
    }
    note!("SLAT against pagemap: {compared} of {pages} pages compared");
    ensure!(compared >= 1, "no SLAT entry of the data region to compare");
    Ok(())
}

/// A 32-bit guest writes a 4 MiB pattern into memory the VMM never touched
/// and reads a 4 MiB pattern the VMM wrote; both sides check byte for byte.
/// The VMM then rewrites its half and the guest sees the new bytes. Movable
/// regions (the default); pinned_pages must not change.
pub fn guest_pattern_movable() -> TResult {
    pattern_test(false)
}

/// The same on regions mapped with force_pinned=1; pinned_pages must grow by
/// at least the regions' size while they are mapped.
pub fn guest_pattern_pinned() -> TResult {
    pattern_test(true)
}

const DATA_GFN: u64 = 0x100;
const DATA_GPA: u32 = 0x10_0000;
const DATA_SIZE: usize = 4 * MIB;

/// MADV_DONTNEED on parts of a mapped region between two guest accesses: the
/// guest then reads zeros there (never the old bytes), the rest is intact,
/// guest writes to the new pages reach the VMM and VMM writes reach the guest.
pub fn dontneed_refaults_zero() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let mut data = Mmap::anon(DATA_SIZE)?;
    let seed = 0x3c3c_5a5a;
    fill_pattern(&mut data, 0, DATA_SIZE, DATA_GPA as u64, seed);
    p.map(&data, 0, DATA_SIZE, DATA_GFN, MEM_RWX)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    m.expect_pattern(
        DATA_GPA,
        DATA_SIZE,
        seed,
        "whole region before MADV_DONTNEED",
    )?;
    p.note_stats("after the first guest pass");

    // Eight pages at 64 KiB and one page at 3 MiB + 4 KiB.
    let holes = [(0x1_0000usize, 8 * PAGE), (3 * MIB + PAGE, PAGE)];
    for (off, len) in holes {
        data.madvise(off, len, libc::MADV_DONTNEED)
            .map_err(|e| Failure::Fail(format!("madvise(MADV_DONTNEED): {}", errname(e))))?;
        verify_const(&data, off, len, 0, "the VMM's view after MADV_DONTNEED")?;
    }
    for (off, len) in holes {
        m.expect_const(
            DATA_GPA + off as u32,
            len,
            0,
            &format!("guest read of the MADV_DONTNEED range at offset {off:#x}"),
        )?;
    }
    let mut start = 0usize;
    for (off, len) in holes.iter().copied().chain([(DATA_SIZE, 0)]) {
        m.expect_pattern(
            DATA_GPA + start as u32,
            off - start,
            seed,
            &format!("the untouched range at offset {start:#x}"),
        )?;
        start = off + len;
    }

    // Guest write into a refaulted page → VMM; VMM write into another
    // refaulted page (the guest read it as zero) → guest.
    let off_g = 0x1_0000 + 0x10;
    m.write(DATA_GPA + off_g as u32, 0xdead_beef)?;
    ensure_eq!(
        Hex(data.read_u32(off_g) as u64),
        Hex(0xdead_beef),
        "the VMM's view of a guest write into a page dropped with MADV_DONTNEED"
    );
    let off_v = 0x1_0000 + PAGE + 0x20;
    data.write_u32(off_v, 0x0bad_f00d);
    let got = m.read(DATA_GPA + off_v as u32)?;
    ensure_eq!(
        Hex(got as u64),
        Hex(0x0bad_f00d),
        "guest read of a VMM write into a page dropped with MADV_DONTNEED (the guest had read it as zero)"
    );
    let off_z = 3 * MIB + PAGE + 0x100;
    data.write_u32(off_z, 0x7777_0001);
    let got = m.read(DATA_GPA + off_z as u32)?;
    ensure_eq!(
        Hex(got as u64),
        Hex(0x7777_0001),
        "guest read of a VMM write into the single dropped page"
    );

    // Drop the whole region: the guest sees only zeros, then writes a
    // pattern that the VMM must see.
    data.madvise(0, DATA_SIZE, libc::MADV_DONTNEED)
        .map_err(|e| Failure::Fail(format!("madvise(MADV_DONTNEED): {}", errname(e))))?;
    m.expect_const(
        DATA_GPA,
        DATA_SIZE,
        0,
        "whole region after MADV_DONTNEED of all of it",
    )?;
    // REP STOSD into the refaulted (zero) pages: the VMM sees the bytes.
    m.fill(DATA_GPA, dwords(64 * 1024), 0x5eed_5eed)?;
    verify_const(
        &data,
        0,
        64 * 1024,
        0x5eed_5eed,
        "the VMM's view of the guest's REP STOSD",
    )?;
    let seed2 = 0x9e37_79b9;
    m.pattern_write(DATA_GPA, dwords(DATA_SIZE), seed2)?;
    verify_pattern(
        &data,
        0,
        DATA_SIZE,
        DATA_GPA as u64,
        seed2,
        "the VMM's view of the guest's pattern written after MADV_DONTNEED",
    )?;
    p.note_stats("at the end");
    if let Ok(s) = p.stats() {
        note!("invalidations: {}", s["invalidations"]);
    }
    Ok(())
}

/// How the guest's access to memory unmapped behind the driver ended.
pub(crate) fn expect_refused_access(
    exit: Result<Exit, i32>,
    gpa: u32,
    old: u32,
    what: &str,
) -> TResult {
    match exit {
        Err(libc::EFAULT) => {
            note!("{what}: MSHV_RUN_VP failed with EFAULT");
            Ok(())
        }
        Ok(Exit::Mem {
            kind: MemKind::Intercept,
            gpa: g,
            ..
        }) if g == gpa as u64 => {
            note!("{what}: HVMSG_GPA_INTERCEPT for {gpa:#x}");
            Ok(())
        }
        Ok(Exit::Io {
            port: PORT_RESULT,
            rax,
            ..
        }) => fail!(
            "{what}: the guest access completed (result {:#x}{}) although the memory was unmapped\nexpected: MSHV_RUN_VP failing with EFAULT, or HVMSG_GPA_INTERCEPT for GPA {gpa:#x}",
            rax as u32,
            if rax as u32 == old { ", the OLD data: use after free" } else { "" }
        ),
        Ok(other) => fail!(
            "{what}\nexpected: MSHV_RUN_VP failing with EFAULT, or HVMSG_GPA_INTERCEPT for GPA {gpa:#x}\nactual:   {other}"
        ),
        Err(e) => fail!(
            "{what}\nexpected: MSHV_RUN_VP failing with EFAULT, or HVMSG_GPA_INTERCEPT for GPA {gpa:#x}\nactual:   MSHV_RUN_VP failing with {}",
            errname(e)
        ),
    }
}

/// munmap of part of a mapped region behind the driver's back: the guest's
/// next access there is refused (EFAULT from RUN_VP or HVMSG_GPA_INTERCEPT),
/// never served from the old pages; after the VMM maps fresh memory at the
/// same address (MAP_FIXED) the retried access sees the new (zero) page.
/// Once for a read, once for a write.
pub fn munmap_behind_driver() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let mut data = Mmap::anon(DATA_SIZE)?;
    let seed = 0x6a09_e667;
    fill_pattern(&mut data, 0, DATA_SIZE, DATA_GPA as u64, seed);
    p.map(&data, 0, DATA_SIZE, DATA_GFN, MEM_RWX)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    m.expect_pattern(DATA_GPA, DATA_SIZE, seed, "whole region before munmap")?;

    const HOLE: usize = 64 * 1024;
    // Read: a 64 KiB hole at 1 MiB.
    let off = MIB;
    let gpa = DATA_GPA + off as u32 + 0x2000;
    let old = pattern_word(gpa as u64, seed);
    data.punch_hole(off, HOLE)?;
    note!("munmap'ed 64 KiB at offset {off:#x}; guest reads {gpa:#x}");
    m.begin(CMD_READ, &[gpa])?;
    let exit = m.run_raw();
    expect_refused_access(exit, gpa, old, "guest read of munmapped memory")?;
    data.refill_hole(off, HOLE)?;
    // The retried load completes from the new page.
    let (_, r) = m.finish("guest read retried after MAP_FIXED")?;
    ensure_eq!(
        Hex(r as u64),
        Hex(0),
        "guest read of the re-mmapped page (fresh anonymous memory; the old data was {old:#x})"
    );
    m.expect_const(DATA_GPA + off as u32, HOLE, 0, "the re-mmapped 64 KiB")?;

    // Write: a 64 KiB hole at 3 MiB.
    let off2 = 3 * MIB;
    let gpa2 = DATA_GPA + off2 as u32 + 0x40;
    let old2 = pattern_word(gpa2 as u64, seed);
    data.punch_hole(off2, HOLE)?;
    note!("munmap'ed 64 KiB at offset {off2:#x}; guest writes {gpa2:#x}");
    m.begin(CMD_WRITE, &[gpa2, 0x5151_5151])?;
    let exit = m.run_raw();
    expect_refused_access(exit, gpa2, old2, "guest write to munmapped memory")?;
    data.refill_hole(off2, HOLE)?;
    let (_, r) = m.finish("guest write retried after MAP_FIXED")?;
    ensure_eq!(Hex(r as u64), Hex(0x5151_5151), "WRITE result");
    ensure_eq!(
        Hex(data.read_u32(off2 + 0x40) as u64),
        Hex(0x5151_5151),
        "the VMM's view of the retried guest write in the re-mmapped page"
    );
    verify_const(&data, off2, 0x40, 0, "the rest of the re-mmapped page")?;

    // Everything else is intact, and a guest write in the first hole reaches
    // the VMM.
    m.expect_pattern(DATA_GPA, off, seed, "the region below the first hole")?;
    m.expect_pattern(
        DATA_GPA + (off + HOLE) as u32,
        off2 - off - HOLE,
        seed,
        "the region between the holes",
    )?;
    m.expect_pattern(
        DATA_GPA + (off2 + HOLE) as u32,
        DATA_SIZE - off2 - HOLE,
        seed,
        "the region above the second hole",
    )?;
    m.write(DATA_GPA + off as u32 + 0x100, 0x4242_4242)?;
    ensure_eq!(
        Hex(data.read_u32(off + 0x100) as u64),
        Hex(0x4242_4242),
        "the VMM's view of a guest write into the re-mmapped range"
    );
    p.note_stats("at the end");
    Ok(())
}

const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// Restores the THP mode on drop if the test changed it.
struct ThpMode(Option<String>);

impl Drop for ThpMode {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = fs::write(THP_ENABLED, old);
        }
    }
}

fn thp_current() -> Option<String> {
    let s = fs::read_to_string(THP_ENABLED).ok()?;
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(s[start + 1..end].to_string())
}

/// THP-backed memory (MADV_HUGEPAGE, MADV_POPULATE_WRITE) mapped at
/// guest_pfn 0x1F0, 16 pages below a 2 MiB boundary, with userspace_addr 16
/// pages below a 2 MiB boundary too (congruent modulo 2 MiB), the two 2 MiB
/// frames above it backed by huge pages (the 16 pages below by small ones,
/// MADV_NOHUGEPAGE): after the guest touches it all, the SLAT maps both
/// frames with 2 MiB entries, and the bytes are right.
pub fn thp_unaligned_gets_2m() -> TResult {
    thp_region_gets_2m(false)
}

/// The same region mapped pinned (force_pinned=1): the set-up maps it
/// whole, both frames as 2 MiB entries and the 16 pages below as 4 KiB
/// ones, every entry writable and holding the pfn the VMM maps
/// (`/proc/self/pagemap`), before the guest runs; then the guest's checks.
pub fn thp_pinned_gets_2m() -> TResult {
    thp_region_gets_2m(true)
}

fn thp_region_gets_2m(pinned: bool) -> TResult {
    let mode = match thp_current() {
        None => skip!("{THP_ENABLED} is missing (no CONFIG_TRANSPARENT_HUGEPAGE)"),
        Some(m) => m,
    };
    let _restore = if mode == "never" {
        let _ = fs::write(THP_ENABLED, "madvise");
        match thp_current().as_deref() {
            Some("never") | None => {
                skip!("transparent huge pages are disabled ([never]) and cannot be enabled")
            }
            _ => ThpMode(Some("never".into())),
        }
    } else {
        ThpMode(None)
    };

    const LEAD: usize = 16 * PAGE;
    const SIZE: usize = LEAD + 4 * MIB;
    const GFN: u64 = 0x200 - 0x10;
    let gpa = (GFN * PAGE as u64) as u32;
    let mut mem = Mmap::anon(10 * MIB)?;
    let base = mem.addr() as usize;
    let aligned = (base + LEAD + 2 * MIB - 1) & !(2 * MIB - 1);
    let off = aligned - LEAD - base;
    assert!(off + SIZE <= mem.len());
    ensure_eq!(
        (mem.addr() as usize + off) % (2 * MIB),
        (gpa as usize) % (2 * MIB),
        "userspace_addr and GPA congruent modulo 2 MiB"
    );
    mem.madvise(0, mem.len(), libc::MADV_HUGEPAGE)
        .map_err(|e| Failure::Fail(format!("madvise(MADV_HUGEPAGE): {}", errname(e))))?;
    // Small pages below the boundary, whatever the THP mode.
    mem.madvise(0, aligned - base, libc::MADV_NOHUGEPAGE)
        .map_err(|e| Failure::Fail(format!("madvise(MADV_NOHUGEPAGE): {}", errname(e))))?;
    if let Err(e) = mem.madvise(off, SIZE, MADV_POPULATE_WRITE) {
        note!(
            "MADV_POPULATE_WRITE: {}; touching the pages instead",
            errname(e)
        );
        for o in (off..off + SIZE).step_by(PAGE) {
            mem.write_u32(o, 1);
        }
    }
    let huge = anon_huge_kb(aligned as u64).unwrap_or(0);
    note!("AnonHugePages of the mapping above the boundary: {huge} kB (THP mode {mode})");
    if huge != 4096 {
        skip!("the kernel did not back both 2 MiB frames with huge pages (AnonHugePages {huge} kB, want 4096)");
    }
    let seed = 0x2f2f_0202;
    fill_pattern(&mut mem, off, SIZE, gpa as u64, seed);

    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let pin = if pinned {
        Some(ForcePinned::on()?)
    } else {
        None
    };
    p.map(&mem, off, SIZE, GFN, MEM_RWX)?;
    drop(pin);
    let before = p.stats()?;
    note!("stats before the guest runs: {}", show_kv(&before));
    if pinned {
        slat_matches_vmm_page_tables(&p, &mem, off, SIZE / PAGE, GFN, true)?;
        ensure_eq!(
            super::sim::sim_slat(&p)?["large_entries"],
            2,
            "2 MiB SLAT entries of the pinned region right after MSHV_SET_GUEST_MEMORY"
        );
    }
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    m.expect_pattern(gpa, SIZE, seed, "THP-backed region")?;
    // Writes too, on both sides of the 2 MiB boundaries.
    for o in [LEAD - 4, LEAD, LEAD + 2 * MIB - 4, LEAD + 2 * MIB, SIZE - 4] {
        m.write(gpa + o as u32, 0xa0a0_0000 | o as u32)?;
        ensure_eq!(
            Hex(mem.read_u32(off + o) as u64),
            Hex((0xa0a0_0000 | o as u32) as u64),
            "the VMM's view of a guest write at region offset {o:#x}"
        );
    }
    let after = p.stats()?;
    note!("stats after: {}", show_kv(&after));
    let huge_now = anon_huge_kb(aligned as u64).unwrap_or(0);
    note!("AnonHugePages after the run: {huge_now} kB");
    if !pinned {
        ensure!(
            after["mapped_2m"] >= 1,
            "2 MiB mappings of a THP-backed region at an unaligned guest_pfn ({GFN:#x}, congruent modulo 2 MiB)\nexpected: mapped_2m >= 1\nactual:   {}",
            show_kv(&after)
        );
    }
    // mapped_2m only counts what was ever mapped: the SLAT must hold both
    // 2 MiB entries now.
    let slat = super::sim::sim_slat(&p)?;
    note!("sim_slat after the run: {}", show_kv(&slat));
    ensure_eq!(
        slat["large_entries"],
        2,
        "2 MiB SLAT entries after the guest read and wrote the THP-backed region"
    );
    Ok(())
}

/// Guest memory the VMM fills on demand through userfaultfd (missing-page
/// mode), as a post-copy migration does: the driver's fault (HMM, which
/// may drop the mmap lock and retry) waits while the VMM's fault thread
/// copies each page in. The guest reads the VMM's pattern over all 64
/// pages; each page was asked for exactly once, in one fault event; a guest
/// write afterwards reaches the VMM.
pub fn uffd_postcopy_fill() -> TResult {
    const PAGES: usize = 64;
    const GFN: u64 = 0x100;
    const GPA: u32 = 0x10_0000;
    let seed = 0x0f0f_5a5a;
    let (p, _code, vcpu) = monitor_partition()?;
    let mut src = Mmap::anon(PAGES * PAGE)?;
    fill_pattern(&mut src, 0, PAGES * PAGE, GPA as u64, seed);
    let pages: Vec<Vec<u8>> = (0..PAGES)
        .map(|i| src.bytes(i * PAGE, PAGE).to_vec())
        .collect();
    let data = Mmap::anon(PAGES * PAGE)?;
    let base = data.addr();
    let uf = Userfault::register(&data)?;
    p.map(&data, 0, data.len(), GFN, MEM_RWX)?;
    let stop = Arc::new(AtomicBool::new(false));
    // The VMM's fault thread: fills each page a fault asks for.
    let handler = {
        let stop = stop.clone();
        std::thread::spawn(move || -> TResult<Vec<u64>> {
            let mut asked = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let Some(addr) = uf.next_fault(Duration::from_millis(100))? else {
                    continue;
                };
                let i = ((addr - base) / PAGE as u64) as usize;
                let Some(page) = pages.get(i) else {
                    fail!("a userfault at {addr:#x}, outside the region at {base:#x}");
                };
                uf.copy(addr & !(PAGE as u64 - 1), page)?;
                asked.push(i as u64);
            }
            Ok(asked)
        })
    };
    let run = (|| -> TResult {
        let mut m = Monitor::start(&vcpu)?;
        m.expect_pattern(GPA, PAGES * PAGE, seed, "pages the VMM copied in on demand")?;
        m.write(GPA + 8, 0x1234_5678)?;
        m.halt()
    })();
    stop.store(true, Ordering::Relaxed);
    let asked = handler
        .join()
        .map_err(|_| Failure::Fail("the userfault thread panicked".into()))??;
    run?;
    let mut sorted = asked.clone();
    sorted.sort();
    ensure_eq!(
        sorted,
        (0..PAGES as u64).collect::<Vec<_>>(),
        "pages the driver's faults asked the VMM for (each once; in order of asking: {asked:?})"
    );
    ensure_eq!(
        Hex(data.read_u32(8) as u64),
        Hex(0x1234_5678),
        "the VMM's view of the guest's write"
    );
    Ok(())
}
