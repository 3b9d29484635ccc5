// SPDX-License-Identifier: GPL-2.0
//
// MMIO regions (issue 14, defect 1): a `VM_IO | VM_PFNMAP` mapping is mapped
// into the guest with the pfns its page tables hold, never `vm_pgoff +
// offset`; a region must lie inside one such VMA; the guest gets write
// access only where the VMM's mapping is writable; and when the VMA goes
// away the guest loses the pages with it.
//
// The mapping is the simulator's test-only debugfs file `sim/pfnmap`
// (src/sys/testdev.c): `remap_pfn_range` of module-owned pages at whatever
// offset the test mmaps it, so `vm_pgoff` is not their pfn, as with
// vfio-pci's BARs (`index << 28 | offset`).

use std::fs::{self, OpenOptions};
use std::os::fd::AsRawFd;

use crate::guest;
use crate::tests::sim::{sim_entries, sim_slat, DATA_GFN, DATA_GPA};
use crate::uapi::*;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure, ensure_eq, fail, note, skip};

/// Pages of the test region (the file has 16).
const PAGES: usize = 4;
/// The mmap offset, in pages: `vm_pgoff` 0x1000. Read as a pfn it is host
/// physical memory at 16 MiB, where x86_64 loads the kernel: before the
/// fix the guest was given the host kernel's text there.
const PGOFF: i64 = 0x1000;

/// `sim/pfnmap` opened read-write; skips on another backend.
fn pfnmap_file() -> TResult<std::fs::File> {
    let path = mshv_debugfs().join("sim").join("pfnmap");
    if !present(&path)? {
        skip!("{} missing: not the sim backend", path.display());
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_failure(&format!("open {}", path.display()), e))
}

/// A `MAP_SHARED` mapping of `pages` pages of `file` at offset `PGOFF`.
fn pfnmap(file: &std::fs::File, pages: usize, prot: i32) -> TResult<Mmap> {
    Mmap::map_at(
        pages * PAGE,
        prot,
        libc::MAP_SHARED,
        file.as_raw_fd(),
        PGOFF * PAGE as i64,
    )
}

fn expect_errno(r: TResult, errno: i32, what: &str) -> TResult {
    match r {
        Ok(()) => fail!("{what}\nexpected: {}\nactual:   success", errname(errno)),
        Err(Failure::Fail(msg)) if msg.contains(&errname(errno)) => Ok(()),
        Err(Failure::Fail(msg)) => fail!("{what}\nexpected: {}\nactual:   {msg}", errname(errno)),
        Err(other) => Err(other),
    }
}

/// The pfns of the first `pages` pages behind `sim/pfnmap`, as the file
/// reads (/proc/self/pagemap shows no pfn for a VM_PFNMAP mapping).
fn pfnmap_pfns(pages: usize) -> TResult<Vec<u64>> {
    let path = mshv_debugfs().join("sim").join("pfnmap");
    let text = fs::read_to_string(&path).ctx("read sim/pfnmap")?;
    let pfns: Vec<u64> = text
        .lines()
        .filter_map(|l| u64::from_str_radix(l.trim_start_matches("0x"), 16).ok())
        .collect();
    ensure!(pfns.len() >= pages, "sim/pfnmap: {text:?}");
    Ok(pfns[..pages].to_vec())
}

/// Checks that the SLAT maps gfns `DATA_GFN..+PAGES` to exactly `pfns`,
/// writable or not as `writable` says.
fn expect_slat(p: &Partition, pfns: &[u64], writable: bool, what: &str) -> TResult {
    let e = sim_entries(p)?;
    let got: Vec<Option<(u64, bool)>> = (0..PAGES as u64)
        .map(|i| e.get(&(DATA_GFN + i)).copied())
        .collect();
    let want: Vec<Option<(u64, bool)>> = pfns.iter().map(|&f| Some((f, writable))).collect();
    note!("{what}: SLAT {got:x?}, pages {pfns:x?}");
    ensure_eq!(got, want, "{what}: SLAT (pfn, writable) of each page");
    Ok(())
}

/// The SLAT maps each page of the region to the pfn the VMM's page tables
/// hold, writable, not to `vm_pgoff + i`.
pub fn mmio_pfnmap_pgoff_not_pfn() -> TResult {
    let file = pfnmap_file()?;
    let mem = pfnmap(&file, PAGES, libc::PROT_READ | libc::PROT_WRITE)?;
    let pfns = pfnmap_pfns(PAGES)?;
    ensure!(
        pfns.iter().all(|&f| f != 0 && f as i64 != PGOFF),
        "pfns of the pfnmap pages: {pfns:x?}"
    );
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    p.map(&mem, 0, PAGES * PAGE, DATA_GFN, MEM_RWX)?;
    expect_slat(
        &p,
        &pfns,
        true,
        "a region over a VM_PFNMAP VMA whose vm_pgoff is not its pfn",
    )
}

/// A region larger than its VMA, or one that starts inside it and runs
/// past its end, is refused with EINVAL and maps nothing; the region the
/// size of the VMA is accepted.
pub fn mmio_region_larger_than_vma() -> TResult {
    let file = pfnmap_file()?;
    let mem = pfnmap(&file, PAGES, libc::PROT_READ | libc::PROT_WRITE)?;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let before = sim_slat(&p)?["accessible_entries"];
    expect_errno(
        p.map_addr(mem.addr(), 2 * PAGES * PAGE, DATA_GFN, MEM_RWX),
        libc::EINVAL,
        "SET_GUEST_MEMORY of 8 pages over a 4-page VM_PFNMAP VMA",
    )?;
    expect_errno(
        p.map_addr(
            mem.addr() + 2 * PAGE as u64,
            PAGES * PAGE,
            DATA_GFN,
            MEM_RWX,
        ),
        libc::EINVAL,
        "SET_GUEST_MEMORY of 4 pages from the 3rd page of a 4-page VM_PFNMAP VMA",
    )?;
    ensure_eq!(
        sim_slat(&p)?["accessible_entries"],
        before,
        "accessible SLAT entries after the refused regions"
    );
    p.map(&mem, 0, PAGES * PAGE, DATA_GFN, MEM_RWX)?;
    ensure_eq!(
        sim_slat(&p)?["accessible_entries"],
        before + PAGES as u64,
        "accessible SLAT entries after mapping the whole VMA"
    );
    Ok(())
}

/// Over a read-only `VM_PFNMAP` mapping a writable region is accepted but
/// maps the pages read-only: the guest never gets more access than the
/// VMM has.
pub fn mmio_readonly_vma_maps_readonly() -> TResult {
    let file = pfnmap_file()?;
    let ro = pfnmap(&file, PAGES, libc::PROT_READ)?;
    let pfns = pfnmap_pfns(PAGES)?;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    p.map(&ro, 0, PAGES * PAGE, DATA_GFN, MEM_RWX)?;
    expect_slat(
        &p,
        &pfns,
        false,
        "a writable region over a read-only VM_PFNMAP mapping",
    )
}

/// munmap of the VMA behind an MMIO region unmaps the region's GPAs (the
/// region's interval notifier): the guest's next access is an
/// `HVMSG_UNMAPPED_GPA` for the VMM, never the old pfn; the region itself
/// stays until the VMM removes it.
pub fn mmio_munmap_unmaps_slat() -> TResult {
    let file = pfnmap_file()?;
    let mem = pfnmap(&file, PAGES, libc::PROT_READ | libc::PROT_WRITE)?;
    let uaddr = mem.addr();
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    p.map(&mem, 0, PAGES * PAGE, DATA_GFN, MEM_RWX)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    let gpa = DATA_GPA + 2 * PAGE as u32;
    // Mapped device memory: the simulator never touches it, the guest's
    // access is a GPA intercept (the VMM emulates it).
    m.begin(CMD_READ, &[gpa])?;
    let exit = m.run()?;
    expect_mem_exit(
        &exit,
        MemKind::Intercept,
        ACCESS_READ,
        gpa as u64,
        guest::monitor32::READ_INSN,
        &[0x8b, 0x06],
        "guest read of the mapped device page",
    )?;
    m.jump(guest::monitor32::READ_END, Some(0x1234))?;
    m.finish("READ after the emulated load")?;
    let before = sim_slat(&p)?;
    drop(mem);
    let after = sim_slat(&p)?;
    note!(
        "sim_slat before munmap: {}; after: {}",
        show_kv(&before),
        show_kv(&after)
    );
    ensure_eq!(
        after["accessible_entries"],
        before["accessible_entries"] - PAGES as u64,
        "accessible SLAT entries after munmap of the region's VMA"
    );
    m.begin(CMD_READ, &[gpa])?;
    let exit = m.run()?;
    expect_mem_exit(
        &exit,
        MemKind::Unmapped,
        ACCESS_READ,
        gpa as u64,
        guest::monitor32::READ_INSN,
        &[0x8b, 0x06],
        "guest read after munmap of the region's VMA",
    )?;
    m.jump(guest::monitor32::READ_END, Some(0x1234))?;
    m.finish("READ after the emulated load")?;
    m.halt()?;
    p.vm.unmap_user_memory(mshv_bindings::mshv_user_mem_region {
        size: (PAGES * PAGE) as u64,
        guest_pfn: DATA_GFN,
        userspace_addr: uaddr,
        flags: MEM_RWX,
        ..Default::default()
    })
    .map_err(|e| Failure::Fail(format!("unmap the region after munmap: {}", show_err(e))))
}

/// An MMIO region refused part-way (its last two pages past the GPA width)
/// is released whole: its removal unmaps only what its set-up mapped (as
/// for movable and pinned regions, `hardening::past_gpa_width_released`).
/// The fuzzer found it once it mapped `sim/pfnmap`.
pub fn mmio_region_past_gpa_width_released() -> TResult {
    let file = pfnmap_file()?;
    let mem = pfnmap(&file, PAGES, libc::PROT_READ | libc::PROT_WRITE)?;
    super::hardening::past_gpa_width_released("MMIO", mem.addr())
}
