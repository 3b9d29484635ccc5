// SPDX-License-Identifier: GPL-2.0
//
// Movable guest memory under real Linux memory management (issue 5), one
// test per scenario: a partition runs monitor32, the VMM makes Linux move,
// merge, swap, split, share or drop the pages behind the driver between two
// guest steps, and both sides then check exactly the expected bytes. Every
// scenario ends with the sim's mirror checker at zero violations.
//
// munmap and MADV_DONTNEED behind the driver are memory.rs'
// munmap_behind_driver and dontneed_refaults_zero; a PROT_READ VMA mapped
// without MSHV_SET_MEM_BIT_WRITABLE is exits.rs' readonly_region.
//
// Environment: MSHV_STRESS_SECS=<n> sets the length of scen_stress (default
// 60 s); MSHV_FAULTS=1 (scripts/check-faults) accepts a clean errno from a
// system call as the outcome of a scenario (reported as a SKIP starting with
// "MSHV_FAULTS"), while the mirror check still runs at the end.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mshv_bindings::*;
use mshv_ioctls::VcpuFd;

use super::memory::expect_refused_access;
use super::sim::{mirror_check, sim_slat};
use crate::uapi::*;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure, ensure_eq, fail, note, skip};

/// Guest RAM under test: GPA 4 MiB (2 MiB aligned), above monitor32's 64 KiB.
const GFN: u64 = 0x400;
const GPA: u32 = 0x40_0000;

/// A partition running monitor32, and its VP 0.
struct Vm {
    p: Partition,
    _code: Mmap,
    vcpu: VcpuFd,
}

impl Vm {
    fn new() -> TResult<Vm> {
        let mshv = open_mshv()?;
        let p = Partition::new(&mshv)?;
        let code = load_monitor(&p)?;
        let vcpu = p.vcpu(0)?;
        Ok(Vm {
            p,
            _code: code,
            vcpu,
        })
    }
}

/// Runs a scenario on a fresh `Vm`; whatever the body's outcome, the mirror
/// checker must then report no violation (before the partition goes away).
/// The verdict: a failure of the body always wins (a SKIP of the mirror
/// check, e.g. a file failslab kept from existing, never hides it), then a
/// failure of the mirror check, then a SKIP of either.
fn scenario(body: impl FnOnce(&Vm) -> TResult) -> TResult {
    let vm = Vm::new()?;
    let r = body(&vm);
    if r.is_err() {
        vm.p.note_stats("when the scenario ended early");
    }
    if faults_mode() {
        if let Ok(s) = vm.p.stats() {
            faults_record(&s);
        }
    }
    let body_ok = r.is_ok();
    let m = mirror_check(&vm.p).and_then(|(checked, v)| {
        note!("mirror_check at the end: checked {checked}, violations {v}");
        ensure_eq!(v, 0, "mirror violations at the end of the scenario");
        // A scenario that ran its guest leaves at least the monitor's code
        // page mapped: a checker that compared nothing proves nothing.
        ensure!(
            !body_ok || checked >= 1,
            "mirror_check at the end compared no page\nexpected: >= 1 (the monitor's code page)\nactual:   {checked}"
        );
        Ok(())
    });
    verdict(r, m)
}

/// The verdict of a scenario's body `r` and its final mirror check `m`
/// (see [`scenario`]).
fn verdict(r: TResult, m: TResult) -> TResult {
    match (r, m) {
        (Err(Failure::Fail(a)), Err(Failure::Fail(b))) => Err(Failure::Fail(format!(
            "{a}\nand the mirror check at the end: {b}"
        ))),
        (Err(Failure::Fail(a)), _) => Err(Failure::Fail(a)),
        (_, Err(Failure::Fail(b))) => Err(Failure::Fail(b)),
        (Err(skip), _) | (Ok(()), Err(skip)) => Err(skip),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// The mirror checker now: no violation, and at least `min_checked`
/// accessible entries (the pages the guest has mapped).
fn expect_mirror(p: &Partition, min_checked: u64, when: &str) -> TResult {
    let (checked, v) = mirror_check(p)?;
    note!("mirror_check {when}: checked {checked}, violations {v}");
    ensure_eq!(v, 0, "mirror violations {when}");
    ensure!(
        checked >= min_checked,
        "mirror_check {when}: pages checked\nexpected: >= {min_checked}\nactual:   {checked}"
    );
    Ok(())
}

fn madvise(mem: &Mmap, off: usize, len: usize, advice: i32, name: &str) -> TResult {
    mem.madvise(off, len, advice)
        .map_err(|e| errno_failure(&format!("madvise({name}) of {len:#x} bytes at {off:#x}"), e))
}

fn write_file(path: &str, value: &str) -> TResult {
    fs::write(path, value).map_err(|e| io_failure(&format!("write {value:?} to {path}"), e))
}

fn read_trim(path: &str) -> TResult<String> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| io_failure(&format!("read {path}"), e))
}

fn read_num(path: &str) -> TResult<u64> {
    let s = read_trim(path)?;
    s.parse()
        .map_err(|_| Failure::Fail(format!("{path}: {s:?} is not a number")))
}

/// Puts a sysfs/procfs value back on drop.
struct Restore(Vec<(String, String)>);

impl Restore {
    fn new() -> Self {
        Restore(Vec::new())
    }

    /// Writes `value` to `path`, remembering the old value.
    fn set(&mut self, path: &str, value: &str) -> TResult {
        let old = read_trim(path)?;
        write_file(path, value)?;
        self.0.push((path.to_string(), old));
        Ok(())
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        for (path, old) in self.0.iter().rev() {
            if let Err(e) = fs::write(path, old) {
                note!("warning: restoring {path} to {old:?}: {e}");
            }
        }
    }
}

/// Online CPUs (at least 1).
fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Runs `f` with the calling thread bound to CPU `cpu`, then restores the
/// thread's CPU mask.
fn on_cpu<T>(cpu: usize, f: impl FnOnce() -> TResult<T>) -> TResult<T> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `old` is a valid cpu_set_t of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut old) } != 0 {
        fail!("sched_getaffinity: {}", errname(errno()));
    }
    // SAFETY: as above.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    ensure!(cpu < 8 * size, "CPU {cpu} out of cpu_set_t range");
    // SAFETY: CPU_SET writes bit `cpu` of `one`, checked above to be in range.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    // SAFETY: `one` is a valid cpu_set_t of `size` bytes.
    if unsafe { libc::sched_setaffinity(0, size, &one) } != 0 {
        fail!("sched_setaffinity(CPU {cpu}): {}", errname(errno()));
    }
    let r = f();
    // SAFETY: `old` is the mask read above.
    if unsafe { libc::sched_setaffinity(0, size, &old) } != 0 {
        note!("warning: restoring the CPU mask: {}", errname(errno()));
    }
    r
}

/// Runs a helper program (mkswap, ...) to completion; fails on a non-zero
/// exit. Under MSHV_FAULTS the helper leaves failslab's task filter: the
/// faults are meant for the driver's calls, and a helper that cannot load
/// its shared libraries tests nothing.
fn run_cmd(prog: &str, args: &[&str]) -> TResult {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    if faults_mode() {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec and
        // calls only open/write/close (async-signal-safe) on a static path.
        unsafe {
            cmd.pre_exec(|| {
                // The open itself may meet an injected failure: retry.
                for _ in 0..16 {
                    let fd = libc::open(c"/proc/self/make-it-fail".as_ptr(), libc::O_WRONLY);
                    if fd >= 0 {
                        let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                        libc::close(fd);
                        if ok {
                            break;
                        }
                    }
                }
                Ok(())
            })
        };
    }
    let out = cmd
        .output()
        .map_err(|e| io_failure(&format!("run {prog}"), e))?;
    ensure!(
        out.status.success(),
        "`{prog} {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Pages: NUMA nodes, swap state

const MPOL_BIND: i32 = 2;
const MPOL_MF_MOVE: i32 = 1 << 1;

/// `move_pages(0, ...)` for the pages at `addrs`: with `nodes`, moves them
/// there; without, queries. Returns the per-page status (a node or -errno).
fn move_pages(addrs: &[u64], nodes: Option<&[i32]>) -> TResult<Vec<i32>> {
    let ptrs: Vec<*mut libc::c_void> = addrs.iter().map(|&a| a as *mut libc::c_void).collect();
    let mut status = vec![i32::MIN; addrs.len()];
    let nodes_ptr = nodes.map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: arrays of `addrs.len()` entries; the addresses are our own
    // mappings (the kernel checks them anyway).
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0,
            addrs.len() as libc::c_ulong,
            ptrs.as_ptr(),
            nodes_ptr,
            status.as_mut_ptr(),
            if nodes.is_some() { MPOL_MF_MOVE } else { 0 },
        )
    };
    if r < 0 {
        return Err(errno_failure("move_pages", errno()));
    }
    Ok(status)
}

fn page_addrs(mem: &Mmap, off: usize, pages: usize) -> Vec<u64> {
    (0..pages)
        .map(|i| mem.addr() + (off + i * PAGE) as u64)
        .collect()
}

/// How many pages of `statuses` are on `node`.
fn on_node(statuses: &[i32], node: i32) -> usize {
    statuses.iter().filter(|&&s| s == node).count()
}

fn numa_nodes() -> TResult<usize> {
    for n in 0..64 {
        if !present(format!("/sys/devices/system/node/node{n}"))? {
            return Ok(n);
        }
    }
    Ok(64)
}

/// Whether the page at `addr` is mapped in this process (mincore).
fn is_mapped(addr: u64) -> TResult<bool> {
    let mut v = 0u8;
    let page = addr & !(PAGE as u64 - 1);
    // SAFETY: mincore only writes one byte (one page) to `v`.
    if unsafe { libc::mincore(page as *mut libc::c_void, PAGE, &mut v) } == 0 {
        return Ok(true);
    }
    match errno() {
        libc::ENOMEM => Ok(false),
        e => Err(errno_failure("mincore", e)),
    }
}

/// /proc/self/pagemap bits 62 (swapped) and 63 (present) of each page.
fn pagemap(mem: &Mmap, off: usize, pages: usize) -> TResult<Vec<(bool, bool)>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open("/proc/self/pagemap").ctx("open /proc/self/pagemap")?;
    let first = (mem.addr() as usize + off) / PAGE;
    f.seek(SeekFrom::Start((first * 8) as u64))
        .ctx("seek /proc/self/pagemap")?;
    let mut buf = vec![0u8; pages * 8];
    f.read_exact(&mut buf).ctx("read /proc/self/pagemap")?;
    Ok(buf
        .chunks_exact(8)
        .map(|c| {
            let v = u64::from_le_bytes(c.try_into().unwrap());
            (v & (1 << 62) != 0, v & (1 << 63) != 0)
        })
        .collect())
}

// ---------------------------------------------------------------------------
// 1. mremap

/// mremap behind the driver's back: a 64 KiB piece of a mapped region is
/// moved out (the guest's access there is refused, never served from the
/// old pages), then moved back (the guest sees exactly those pages again);
/// another mapping is moved over a part of the region (MREMAP_FIXED replaces
/// it: the guest sees the new mapping's bytes at once).
pub fn scen_mremap() -> TResult {
    scenario(|vm| {
        const SIZE: usize = MIB;
        const PIECE: usize = 64 * 1024;
        let mut data = Mmap::anon(SIZE)?;
        let seed = 0x6d72_656d;
        fill_pattern(&mut data, 0, SIZE, GPA as u64, seed);
        vm.p.map(&data, 0, SIZE, GFN, MEM_RWX)?;
        let mut m = Monitor::start(&vm.vcpu)?;
        m.expect_pattern(GPA, SIZE, seed, "whole region before mremap")?;
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "after the first pass")?;

        // Move [256 KiB, +64 KiB) out to a spare mapping.
        let spare = Mmap::anon(PIECE)?;
        let off = 256 * 1024;
        // SAFETY: moves a piece of our own mapping onto our own spare
        // mapping (MREMAP_FIXED unmaps the spare first); `data` does not
        // touch the hole until it is moved back.
        let r = unsafe {
            libc::mremap(
                (data.addr() as usize + off) as *mut libc::c_void,
                PIECE,
                PIECE,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                spare.addr() as *mut libc::c_void,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(errno_failure("mremap out of the region", errno()));
        }
        verify_pattern(
            &spare,
            0,
            PIECE,
            GPA as u64 + off as u64,
            seed,
            "the moved pages at their new address",
        )?;
        expect_mirror(&vm.p, 0, "after moving 64 KiB out")?;
        let gpa = GPA + off as u32 + 0x3000;
        if is_mapped(data.addr() + off as u64 + 0x3000)? {
            // move_vma() keeps the old range (now empty) mapped when
            // unmapping it fails for want of memory, and mremap still
            // succeeds. The guest must then see what the VMM sees there.
            if !faults_mode() {
                fail!("mremap succeeded but left the old range mapped");
            }
            let v = m.read(gpa)?;
            ensure_eq!(
                Hex(v as u64),
                Hex(data.read_u32(off + 0x3000) as u64),
                "guest read of the old range mremap left mapped vs the VMM's view"
            );
            skip!("MSHV_FAULTS: injected failure accepted: mremap left the old range mapped (its unmap failed); the guest read the VMM's bytes there");
        }
        m.begin(CMD_READ, &[gpa])?;
        let exit = m.run_raw();
        expect_refused_access(
            exit,
            gpa,
            pattern_word(gpa as u64, seed),
            "guest read of the range moved away",
        )?;
        // Move it back: the retried read completes from the same pages.
        // SAFETY: moves the spare's pages back into the hole of `data`;
        // the spare's range is then unmapped, so `spare` is forgotten
        // below instead of dropped.
        let r = unsafe {
            libc::mremap(
                spare.addr() as *mut libc::c_void,
                PIECE,
                PIECE,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                (data.addr() as usize + off) as *mut libc::c_void,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(errno_failure("mremap back into the region", errno()));
        }
        std::mem::forget(spare);
        let (_, v) = m.finish("guest read retried after moving the pages back")?;
        ensure_eq!(
            Hex(v as u64),
            Hex(pattern_word(gpa as u64, seed) as u64),
            "guest read of a page moved out and back"
        );
        m.expect_pattern(GPA, SIZE, seed, "whole region after moving back")?;

        // Replace [640 KiB, +64 KiB) with another mapping's pages.
        let mut other = Mmap::anon(PIECE)?;
        let off2 = 640 * 1024;
        let seed2 = 0x0e7e_0e7e;
        fill_pattern(&mut other, 0, PIECE, GPA as u64 + off2 as u64, seed2);
        // SAFETY: moves our own mapping over a piece of `data` (replacing
        // it); `other` no longer exists after the move.
        let r = unsafe {
            libc::mremap(
                other.addr() as *mut libc::c_void,
                PIECE,
                PIECE,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                (data.addr() as usize + off2) as *mut libc::c_void,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(errno_failure("mremap over the region", errno()));
        }
        std::mem::forget(other);
        expect_mirror(&vm.p, 0, "after moving a mapping over the region")?;
        m.expect_pattern(
            GPA + off2 as u32,
            PIECE,
            seed2,
            "the range replaced by mremap",
        )?;
        m.expect_pattern(GPA, off2, seed, "below the replaced range")?;
        m.expect_pattern(
            GPA + (off2 + PIECE) as u32,
            SIZE - off2 - PIECE,
            seed,
            "above the replaced range",
        )?;
        // A guest write into the replaced range reaches the VMM.
        m.write(GPA + off2 as u32 + 0x40, 0x1234_abcd)?;
        ensure_eq!(
            Hex(data.read_u32(off2 + 0x40) as u64),
            Hex(0x1234_abcd),
            "the VMM's view of a guest write into the replaced range"
        );
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "at the end")?;
        m.halt()
    })
}

// ---------------------------------------------------------------------------
// 2. NUMA migration

/// move_pages, mbind(MPOL_MF_MOVE) and migrate_pages of mapped guest pages
/// between the VM's two nodes: each moves every page (checked with a
/// move_pages status query), the guest then reads the same bytes from the new
/// pages and its writes reach the VMM.
pub fn scen_numa_migrate() -> TResult {
    let nodes = numa_nodes()?;
    if nodes < 2 {
        skip!("{nodes} NUMA node(s): scripts/vm-run --numa gives two");
    }
    scenario(|vm| {
        const SIZE: usize = MIB;
        const PAGES: usize = SIZE / PAGE;
        let mut data = Mmap::anon(SIZE)?;
        let seed = 0x4e55_4d41;
        fill_pattern(&mut data, 0, SIZE, GPA as u64, seed);
        vm.p.map(&data, 0, SIZE, GFN, MEM_RWX)?;
        let mut m = Monitor::start(&vm.vcpu)?;
        m.expect_pattern(GPA, SIZE, seed, "before migration")?;
        let addrs = page_addrs(&data, 0, PAGES);
        let st = move_pages(&addrs, None)?;
        let from = st[0];
        ensure!(
            from >= 0 && on_node(&st, from) == PAGES,
            "node of every page before migration: {st:?}"
        );
        let to = 1 - from.min(1);
        note!("pages on node {from}; moving to node {to}");

        // move_pages → `to`.
        let st = move_pages(&addrs, Some(&vec![to; PAGES]))?;
        ensure_eq!(
            on_node(&st, to),
            PAGES,
            "pages move_pages reports on node {to} (status {st:?})"
        );
        let st = move_pages(&addrs, None)?;
        ensure_eq!(on_node(&st, to), PAGES, "pages queried on node {to}");
        expect_mirror(&vm.p, 0, "after move_pages")?;
        m.expect_pattern(GPA, SIZE, seed, "after move_pages")?;
        let seed2 = 0x6d6f_7665;
        m.pattern_write(GPA, dwords(SIZE), seed2)?;
        verify_pattern(
            &data,
            0,
            SIZE,
            GPA as u64,
            seed2,
            "guest writes after move_pages",
        )?;
        expect_mirror(
            &vm.p,
            PAGES as u64,
            "after the guest rewrote the moved pages",
        )?;

        // mbind(MPOL_BIND, from, MPOL_MF_MOVE) → back to `from`.
        let mask: libc::c_ulong = 1 << from;
        // SAFETY: a range of our own mapping, a one-word node mask.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                data.addr(),
                SIZE,
                MPOL_BIND,
                &mask as *const libc::c_ulong,
                64 as libc::c_ulong,
                MPOL_MF_MOVE,
            )
        };
        if r < 0 {
            return Err(errno_failure("mbind(MPOL_BIND, MPOL_MF_MOVE)", errno()));
        }
        let st = move_pages(&addrs, None)?;
        ensure_eq!(
            on_node(&st, from),
            PAGES,
            "pages on node {from} after mbind"
        );
        expect_mirror(&vm.p, 0, "after mbind")?;
        m.expect_pattern(GPA, SIZE, seed2, "after mbind")?;
        // Let the policy allow both nodes again, then migrate_pages → `to`.
        let both: libc::c_ulong = 0b11;
        // SAFETY: as above.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                data.addr(),
                SIZE,
                MPOL_BIND,
                &both as *const libc::c_ulong,
                64 as libc::c_ulong,
                0,
            )
        };
        if r < 0 {
            return Err(errno_failure("mbind(MPOL_BIND, both nodes)", errno()));
        }
        let old: libc::c_ulong = 1 << from;
        let new: libc::c_ulong = 1 << to;
        // SAFETY: our own pid, one-word node masks.
        let r = unsafe {
            libc::syscall(
                libc::SYS_migrate_pages,
                0,
                64 as libc::c_ulong,
                &old as *const libc::c_ulong,
                &new as *const libc::c_ulong,
            )
        };
        if r < 0 {
            return Err(errno_failure("migrate_pages", errno()));
        }
        let st = move_pages(&addrs, None)?;
        ensure_eq!(
            on_node(&st, to),
            PAGES,
            "pages on node {to} after migrate_pages (status {st:?})"
        );
        expect_mirror(&vm.p, 0, "after migrate_pages")?;
        m.expect_pattern(GPA, SIZE, seed2, "after migrate_pages")?;
        data.write_u32(0x8000, 0x5151_0000);
        ensure_eq!(
            Hex(m.read(GPA + 0x8000)? as u64),
            Hex(0x5151_0000),
            "guest read of a VMM write after migrate_pages"
        );
        expect_mirror(&vm.p, PAGES as u64, "at the end")?;
        m.halt()
    })
}

// ---------------------------------------------------------------------------
// 3. THP collapse and split

const MADV_COLLAPSE: i32 = 25;

/// MADV_COLLAPSE turns the 4 KiB pages of a mapped 2 MiB range into one
/// huge page: the guest's next fault maps a 2 MiB SLAT entry (sim_slat
/// large_entries); a partial MADV_DONTNEED then splits it: the guest reads
/// zeros exactly there, the rest intact, through 4 KiB entries again.
pub fn scen_thp_collapse_split() -> TResult {
    if !present("/sys/kernel/mm/transparent_hugepage/enabled")? {
        skip!("no CONFIG_TRANSPARENT_HUGEPAGE");
    }
    scenario(|vm| {
        const SIZE: usize = 2 * MIB;
        let mut mem = Mmap::anon(2 * SIZE)?;
        let off = ((mem.addr() as usize + SIZE - 1) & !(SIZE - 1)) - mem.addr() as usize;
        let seed = 0x7468_7021;
        fill_pattern(&mut mem, off, SIZE, GPA as u64, seed);
        let huge = anon_huge_kb(mem.addr() + off as u64).unwrap_or(0);
        ensure_eq!(
            huge,
            0,
            "AnonHugePages after filling without MADV_HUGEPAGE (THP mode must be madvise)"
        );
        vm.p.map(&mem, off, SIZE, GFN, MEM_RWX)?;
        let mut m = Monitor::start(&vm.vcpu)?;
        m.expect_pattern(GPA, SIZE, seed, "4 KiB pages before the collapse")?;
        let s = sim_slat(&vm.p)?;
        note!("sim_slat before the collapse: {}", show_kv(&s));
        ensure_eq!(s["large_entries"], 0, "large SLAT entries for 4 KiB pages");

        madvise(&mem, off, SIZE, MADV_COLLAPSE, "MADV_COLLAPSE")?;
        let huge = anon_huge_kb(mem.addr() + off as u64).unwrap_or(0);
        if huge != 2048 && faults_mode() {
            // The collapse's own allocations are subject to failslab; it
            // may then leave the 4 KiB pages as they were.
            return Err(Failure::Skip(format!(
                "MSHV_FAULTS: injected failure accepted: MADV_COLLAPSE left {huge} kB huge"
            )));
        }
        ensure_eq!(huge, 2048, "AnonHugePages (kB) after MADV_COLLAPSE");
        expect_mirror(&vm.p, 0, "after MADV_COLLAPSE")?;
        let before = vm.p.stats()?;
        m.expect_pattern(GPA, SIZE, seed, "the collapsed huge page")?;
        let s = sim_slat(&vm.p)?;
        let after = vm.p.stats()?;
        note!(
            "sim_slat after the guest read the huge page: {}",
            show_kv(&s)
        );
        ensure_eq!(
            s["large_entries"],
            1,
            "large SLAT entries after the guest faulted on the collapsed page"
        );
        ensure_eq!(
            after["mapped_2m"] - before["mapped_2m"],
            1,
            "2 MiB mappings made by the faults after the collapse"
        );
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "with the 2 MiB entry")?;

        // Split: drop 64 KiB in the middle of the huge page.
        let hole = (MIB, 64 * 1024);
        madvise(
            &mem,
            off + hole.0,
            hole.1,
            libc::MADV_DONTNEED,
            "MADV_DONTNEED",
        )?;
        expect_mirror(&vm.p, 0, "after the partial MADV_DONTNEED")?;
        m.expect_const(GPA + hole.0 as u32, hole.1, 0, "the dropped 64 KiB")?;
        m.expect_pattern(GPA, hole.0, seed, "below the dropped range")?;
        m.expect_pattern(
            GPA + (hole.0 + hole.1) as u32,
            SIZE - hole.0 - hole.1,
            seed,
            "above the dropped range",
        )?;
        let s = sim_slat(&vm.p)?;
        note!("sim_slat after the split: {}", show_kv(&s));
        ensure_eq!(
            s["large_entries"],
            0,
            "large SLAT entries once the huge page is split"
        );
        m.write(GPA + hole.0 as u32 + 0x100, 0x5911_7000)?;
        ensure_eq!(
            Hex(mem.read_u32(off + hole.0 + 0x100) as u64),
            Hex(0x5911_7000),
            "the VMM's view of a guest write into the dropped range"
        );
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "at the end")?;
        m.halt()
    })
}

// ---------------------------------------------------------------------------
// 4. KSM

const KSM: &str = "/sys/kernel/mm/ksm";

/// Identical MADV_MERGEABLE guest pages merged by ksmd: the guest still
/// reads them; a VMM write and a guest write to merged pages each break COW
/// for exactly that page, and both sides see exactly the right bytes; an
/// unmerge (run=2) changes nothing either.
pub fn scen_ksm_cow() -> TResult {
    if !present(Path::new(KSM).join("run"))? {
        skip!("no {KSM} (CONFIG_KSM)");
    }
    scenario(|vm| {
        const PAGES: usize = 64;
        const SIZE: usize = PAGES * PAGE;
        const V: u32 = 0x4b53_4d21;
        let mut restore = Restore::new();
        let data = Mmap::anon(SIZE)?;
        madvise(&data, 0, SIZE, libc::MADV_MERGEABLE, "MADV_MERGEABLE")?;
        vm.p.map(&data, 0, SIZE, GFN, MEM_RWX)?;
        let mut m = Monitor::start(&vm.vcpu)?;
        m.fill(GPA, dwords(SIZE), V)?;
        verify_const(&data, 0, SIZE, V, "the VMM's view of the guest's fill")?;

        restore.set(&format!("{KSM}/pages_to_scan"), "4096")?;
        restore.set(&format!("{KSM}/sleep_millisecs"), "10")?;
        restore.set(&format!("{KSM}/run"), "1")?;
        let merging = "/proc/self/ksm_merging_pages";
        let mut merged = 0;
        for _ in 0..600 {
            merged = read_num(merging)?;
            if merged as usize >= PAGES - 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let sharing = read_num(&format!("{KSM}/pages_sharing"))?;
        note!("ksm_merging_pages {merged}, pages_sharing {sharing}");
        ensure!(
            merged as usize >= PAGES - 1 && sharing > 0,
            "KSM merging of {PAGES} identical pages\nexpected: ksm_merging_pages >= {} and pages_sharing > 0\nactual:   {merged}, {sharing}",
            PAGES - 1
        );
        expect_mirror(&vm.p, 0, "after the merge")?;
        m.expect_const(GPA, SIZE, V, "merged pages")?;
        expect_mirror(&vm.p, PAGES as u64, "with the merged pages mapped")?;

        // VMM write to page 7, guest write to page 5 (COW breaks).
        data.write_u32(7 * PAGE + 8, 0x0000_0007);
        m.write(GPA + (5 * PAGE) as u32 + 4, 0x0000_0005)?;
        ensure_eq!(
            Hex(m.read(GPA + (7 * PAGE) as u32 + 8)? as u64),
            Hex(7),
            "guest read of the VMM's write into a merged page"
        );
        ensure_eq!(
            Hex(data.read_u32(5 * PAGE + 4) as u64),
            Hex(5),
            "the VMM's view of the guest's write into a merged page"
        );
        let check_rest = |m: &mut Monitor, when: &str| -> TResult {
            m.expect_const(
                GPA,
                5 * PAGE + 4,
                V,
                &format!("{when}: up to the guest's write"),
            )?;
            m.expect_const(
                GPA + (5 * PAGE + 8) as u32,
                2 * PAGE,
                V,
                &format!("{when}: between the writes"),
            )?;
            m.expect_const(
                GPA + (7 * PAGE + 12) as u32,
                SIZE - 7 * PAGE - 12,
                V,
                &format!("{when}: after the VMM's write"),
            )?;
            Ok(())
        };
        check_rest(&mut m, "after the COW breaks")?;
        for (o, v) in [(5 * PAGE + 4, 5u32), (7 * PAGE + 8, 7)] {
            ensure_eq!(
                Hex(data.read_u32(o) as u64),
                Hex(v as u64),
                "VMM dword at {o:#x}"
            );
        }
        let mut expect = vec![V; SIZE / 4];
        expect[(5 * PAGE + 4) / 4] = 5;
        expect[(7 * PAGE + 8) / 4] = 7;
        for (i, &w) in expect.iter().enumerate() {
            if data.read_u32(i * 4) != w {
                fail!(
                    "the VMM's view at offset {:#x}\nexpected: {w:#010x}\nactual:   {:#010x}",
                    i * 4,
                    data.read_u32(i * 4)
                );
            }
        }
        expect_mirror(&vm.p, PAGES as u64, "after the COW breaks")?;

        // Unmerge everything while mapped.
        write_file(&format!("{KSM}/run"), "2")?;
        expect_mirror(&vm.p, 0, "after unmerging")?;
        check_rest(&mut m, "after unmerging")?;
        ensure_eq!(
            Hex(m.read(GPA + (5 * PAGE) as u32 + 4)? as u64),
            Hex(5),
            "page 5 after unmerging"
        );
        ensure_eq!(
            Hex(m.read(GPA + (7 * PAGE) as u32 + 8)? as u64),
            Hex(7),
            "page 7 after unmerging"
        );
        expect_mirror(&vm.p, PAGES as u64, "at the end")?;
        m.halt()
    })
}

// ---------------------------------------------------------------------------
// 5. swap to zram

/// A zram swap device (hot-added), swapped off and removed on drop.
struct ZramSwap {
    id: u32,
    dev: String,
    on: bool,
}

impl ZramSwap {
    fn on(size: &str) -> TResult<ZramSwap> {
        let ctl = "/sys/class/zram-control/hot_add";
        if !present(ctl)? {
            skip!("no {ctl} (CONFIG_ZRAM)");
        }
        let id: u32 = read_trim(ctl)?
            .parse()
            .map_err(|_| Failure::Fail(format!("{ctl}: not a device number")))?;
        let mut z = ZramSwap {
            id,
            dev: format!("/dev/zram{id}"),
            on: false,
        };
        write_file(&format!("/sys/block/zram{id}/disksize"), size)?;
        if !present(&z.dev)? {
            fail!("{} missing after hot_add", z.dev);
        }
        run_cmd("mkswap", &[&z.dev])?;
        let c = CString::new(z.dev.clone()).unwrap();
        // SAFETY: a NUL-terminated path.
        if unsafe { libc::swapon(c.as_ptr(), 0) } != 0 {
            fail!("swapon {}: {}", z.dev, errname(errno()));
        }
        z.on = true;
        Ok(z)
    }
}

impl Drop for ZramSwap {
    fn drop(&mut self) {
        let c = CString::new(self.dev.clone()).unwrap();
        // SAFETY: a NUL-terminated path.
        if self.on && unsafe { libc::swapoff(c.as_ptr()) } != 0 {
            note!("warning: swapoff {}: {}", self.dev, errname(errno()));
        }
        let _ = fs::write(format!("/sys/block/zram{}/reset", self.id), "1");
        let _ = fs::write("/sys/class/zram-control/hot_remove", self.id.to_string());
    }
}

/// MADV_PAGEOUT of mapped guest pages to zram (pagemap shows them swapped,
/// the mirror drops them): the guest reads them back (swap-in through the
/// driver's fault), its writes reach the VMM; swapped again, the VMM reads
/// them back and the guest sees them.
pub fn scen_swap_pageout() -> TResult {
    let _swap = ZramSwap::on("64M")?;
    scenario(|vm| {
        const SIZE: usize = MIB;
        const PAGES: usize = SIZE / PAGE;
        let mut data = Mmap::anon(SIZE)?;
        let seed = 0x7377_6170;
        fill_pattern(&mut data, 0, SIZE, GPA as u64, seed);
        vm.p.map(&data, 0, SIZE, GFN, MEM_RWX)?;
        let mut m = Monitor::start(&vm.vcpu)?;
        m.expect_pattern(GPA, SIZE, seed, "before MADV_PAGEOUT")?;
        let (code_checked, _) = mirror_check(&vm.p)?;

        let swapped = |when: &str| -> TResult<usize> {
            let pm = pagemap(&data, 0, PAGES)?;
            let n = pm.iter().filter(|(s, _)| *s).count();
            note!("{when}: {n} of {PAGES} pages swapped");
            if n != 0 && n != PAGES {
                let resident: Vec<usize> = (0..PAGES).filter(|&i| !pm[i].0).collect();
                note!("resident pages: {resident:?}");
            }
            Ok(n)
        };
        // MADV_PAGEOUT drains only the calling CPU's LRU batches and skips
        // pages still sitting in another CPU's batch (faulted in by the VP
        // before the scheduler moved this thread). Each attempt runs on the
        // next CPU, so within one attempt per CPU every batch is drained.
        let cpus = online_cpus();
        let page_out = |when: &str| -> TResult<usize> {
            let mut n = 0;
            for attempt in 1..=5 {
                on_cpu(attempt % cpus, || {
                    madvise(&data, 0, SIZE, libc::MADV_PAGEOUT, "MADV_PAGEOUT")
                })?;
                n = swapped(&format!("{when} (attempt {attempt})"))?;
                if n == PAGES {
                    break;
                }
            }
            Ok(n)
        };
        ensure_eq!(page_out("after MADV_PAGEOUT")?, PAGES, "pages swapped out");
        let (checked, v) = mirror_check(&vm.p)?;
        ensure_eq!(v, 0, "mirror violations after MADV_PAGEOUT");
        ensure!(
            checked + PAGES as u64 <= code_checked,
            "accessible entries after swapping out the {PAGES} data pages: {checked} (before: {code_checked})"
        );
        m.expect_pattern(GPA, SIZE, seed, "guest read of the swapped-out pages")?;
        ensure_eq!(swapped("after the guest read")?, 0, "pages still swapped");
        let seed2 = 0x696e_2121;
        m.pattern_write(GPA, dwords(SIZE), seed2)?;

        ensure_eq!(
            page_out("after the second MADV_PAGEOUT")?,
            PAGES,
            "pages swapped out by the second MADV_PAGEOUT"
        );
        verify_pattern(
            &data,
            0,
            SIZE,
            GPA as u64,
            seed2,
            "the VMM's view of the guest's writes, swapped in",
        )?;
        m.expect_pattern(
            GPA,
            SIZE,
            seed2,
            "guest read after the VMM swapped the pages in",
        )?;
        expect_mirror(&vm.p, PAGES as u64, "at the end")?;
        m.halt()
    })
}

// ---------------------------------------------------------------------------
// 6. fork

/// Runs `f` in a forked child; returns its wait status. The child never
/// returns into the test: it exits with `f`'s code.
fn in_child(f: impl FnOnce() -> i32) -> TResult<i32> {
    // SAFETY: the test process is single-threaded here; the child only runs
    // `f` and then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(errno_failure("fork", errno()));
    }
    if pid == 0 {
        let code = f();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        fail!("waitpid: {}", errname(errno()));
    }
    Ok(status)
}

fn show_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

/// fork() of the VMM with private guest memory mapped: the guest writes
/// (COW break in the parent) while the child still shares the pages, and
/// the child must not see those writes; the child writes its own copy, and
/// neither the guest nor the parent sees that.
pub fn scen_fork_cow() -> TResult {
    scenario(|vm| {
        const SIZE: usize = 256 * 1024;
        const HALF: usize = SIZE / 2;
        let mut data = Mmap::anon(SIZE)?;
        let seed = 0x666f_726b;
        fill_pattern(&mut data, 0, SIZE, GPA as u64, seed);
        vm.p.map(&data, 0, SIZE, GFN, MEM_RWX)?;
        let mut m = Monitor::start(&vm.vcpu)?;
        m.expect_pattern(GPA, SIZE, seed, "before fork")?;

        let mut fds = [0i32; 2];
        // SAFETY: an array of two descriptors.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            fail!("pipe: {}", errname(errno()));
        }
        let (rd, wr) = (fds[0], fds[1]);
        let base = data.addr() as usize;
        // SAFETY: see in_child; the child only reads/writes its copy of
        // `data` (through raw addresses) and reads the pipe.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(errno_failure("fork", errno()));
        }
        if pid == 0 {
            let mut b = [0u8; 1];
            // SAFETY: our pipe end, a one-byte buffer.
            let n = unsafe { libc::read(rd, b.as_mut_ptr().cast(), 1) };
            let word = |o: usize| {
                // SAFETY: in bounds of the child's copy of `data`.
                unsafe { std::ptr::read_volatile((base + o) as *const u32) }
            };
            let mut code = if n == 1 { 0 } else { 10 };
            // The guest's writes in the parent (second half) must not be here.
            for o in (HALF..SIZE).step_by(4) {
                if word(o) != pattern_word(GPA as u64 + o as u64, seed) {
                    code = 11;
                    break;
                }
            }
            // The child's own writes to the first half.
            for o in (0..HALF).step_by(4) {
                // SAFETY: as above.
                unsafe { std::ptr::write_volatile((base + o) as *mut u32, 0xc41d_0000 | o as u32) };
            }
            for o in (0..HALF).step_by(4) {
                if word(o) != 0xc41d_0000 | o as u32 {
                    code = 12;
                    break;
                }
            }
            // SAFETY: ends the child.
            unsafe { libc::_exit(code) };
        }
        // SAFETY: the parent's copy of the read end.
        unsafe { libc::close(rd) };
        let seed_g = 0x6775_6573;
        let r = (|| -> TResult {
            m.pattern_write(GPA + HALF as u32, dwords(HALF), seed_g)?;
            verify_pattern(
                &data,
                HALF,
                HALF,
                GPA as u64 + HALF as u64,
                seed_g,
                "the parent's view of the guest's writes after fork",
            )?;
            expect_mirror(&vm.p, 0, "after the guest wrote with the child alive")
        })();
        // SAFETY: our pipe end; releases the child.
        unsafe {
            libc::write(wr, [1u8].as_ptr().cast(), 1);
            libc::close(wr);
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
            fail!("waitpid: {}", errname(errno()));
        }
        r?;
        ensure!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the forked child's checks (11: it saw the guest's writes made in the parent; 12: its own writes did not stick)\nexpected: exit status 0\nactual:   {}",
            show_status(status)
        );
        m.expect_pattern(GPA, HALF, seed, "first half after the child wrote its copy")?;
        verify_pattern(
            &data,
            0,
            HALF,
            GPA as u64,
            seed,
            "the parent's first half after the child wrote its copy",
        )?;
        m.expect_pattern(GPA + HALF as u32, HALF, seed_g, "the guest's own writes")?;
        data.write_u32(0x100, 0xfa7e_0001);
        ensure_eq!(
            Hex(m.read(GPA + 0x100)? as u64),
            Hex(0xfa7e_0001),
            "guest read of a parent write after the child exited"
        );
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "at the end")?;
        m.halt()
    })
}

// ---------------------------------------------------------------------------
// 7. shmem (memfd), hugetlbfs, tmpfs files

fn memfd(name: &str, size: usize, flags: u32) -> TResult<i32> {
    let c = CString::new(name).unwrap();
    // SAFETY: a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(errno_failure("memfd_create", errno()));
    }
    // SAFETY: our new descriptor.
    if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
        let e = errno();
        // SAFETY: our descriptor.
        unsafe { libc::close(fd) };
        return Err(errno_failure("ftruncate of the memfd", e));
    }
    Ok(fd)
}

/// Closes a descriptor on drop.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: a descriptor we own.
        unsafe { libc::close(self.0) };
    }
}

fn punch_hole(fd: i32, off: usize, len: usize) -> TResult {
    // SAFETY: fallocate on our own descriptor.
    let r = unsafe {
        libc::fallocate(
            fd,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off as libc::off_t,
            len as libc::off_t,
        )
    };
    if r != 0 {
        return Err(errno_failure("fallocate(PUNCH_HOLE)", errno()));
    }
    Ok(())
}

/// A memfd (shmem) mapped MAP_SHARED as guest RAM, plus a second VMM
/// mapping of the same file and a third, PROT_READ mapping of it given to
/// the guest read-only at another GPA: all three views agree, a hole punched
/// with fallocate(PUNCH_HOLE) behind the driver reads as zeros (the old pages
/// are gone from the guest too), guest writes there reach the file, and a
/// guest write through the read-only alias is an intercept.
pub fn scen_memfd_punch_hole() -> TResult {
    scenario(|vm| {
        const SIZE: usize = 512 * 1024;
        const RO_GFN: u64 = 0x800;
        let ro_gpa = (RO_GFN * PAGE as u64) as u32;
        let fd = Fd(memfd("mshv-scen", SIZE, 0)?);
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let mut guest_view = Mmap::map(SIZE, rw, libc::MAP_SHARED, fd.0)?;
        let vmm_view = Mmap::map(SIZE, rw, libc::MAP_SHARED, fd.0)?;
        let ro_view = Mmap::map(SIZE, libc::PROT_READ, libc::MAP_SHARED, fd.0)?;
        let seed = 0x7368_6d65;
        fill_pattern(&mut guest_view, 0, SIZE, GPA as u64, seed);
        vm.p.map(&guest_view, 0, SIZE, GFN, MEM_RWX)?;
        vm.p.map(&ro_view, 0, SIZE, RO_GFN, MEM_EXECUTABLE)?;
        let mut m = Monitor::start(&vm.vcpu)?;
        m.expect_pattern(GPA, SIZE, seed, "memfd region")?;
        // The read-only alias holds the same bytes (pattern of GPA, not of ro_gpa).
        ensure_eq!(
            Hex(m.read(ro_gpa + 0x1004)? as u64),
            Hex(pattern_word(GPA as u64 + 0x1004, seed) as u64),
            "guest read through the read-only alias"
        );
        let seed_g = 0x6775_6573;
        m.pattern_write(GPA, dwords(64 * 1024), seed_g)?;
        verify_pattern(
            &vmm_view,
            0,
            64 * 1024,
            GPA as u64,
            seed_g,
            "the second mapping's view of the guest's writes",
        )?;
        ensure_eq!(
            Hex(m.read(ro_gpa + 0x2008)? as u64),
            Hex(pattern_word(GPA as u64 + 0x2008, seed_g) as u64),
            "guest read of its own write through the read-only alias"
        );
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "with the memfd mapped")?;

        // Punch 64 KiB at 256 KiB.
        let hole = (256 * 1024, 64 * 1024);
        punch_hole(fd.0, hole.0, hole.1)?;
        expect_mirror(&vm.p, 0, "after PUNCH_HOLE")?;
        m.expect_const(GPA + hole.0 as u32, hole.1, 0, "the punched hole")?;
        m.expect_pattern(GPA + 64 * 1024, hole.0 - 64 * 1024, seed, "below the hole")?;
        m.expect_pattern(
            GPA + (hole.0 + hole.1) as u32,
            SIZE - hole.0 - hole.1,
            seed,
            "above the hole",
        )?;
        m.write(GPA + hole.0 as u32 + 0x10, 0x9090_1010)?;
        ensure_eq!(
            Hex(vmm_view.read_u32(hole.0 + 0x10) as u64),
            Hex(0x9090_1010),
            "the second mapping's view of a guest write into the punched hole"
        );
        ensure_eq!(
            Hex(m.read(ro_gpa + hole.0 as u32 + 0x10)? as u64),
            Hex(0x9090_1010),
            "the read-only alias after the guest wrote into the hole"
        );

        // A guest write through the read-only alias is an intercept.
        let gpa = ro_gpa + 0x3000;
        m.begin(CMD_WRITE, &[gpa, 0xbad0_0bad])?;
        let exit = m.run()?;
        expect_mem_exit(
            &exit,
            MemKind::Intercept,
            ACCESS_WRITE,
            gpa as u64,
            crate::guest::monitor32::WRITE_INSN,
            &[0x89, 0x07],
            "guest write to the read-only memfd alias",
        )?;
        m.jump(crate::guest::monitor32::WRITE_END, None)?;
        m.finish("WRITE after the skipped store")?;
        ensure_eq!(
            Hex(vmm_view.read_u32(0x3000) as u64),
            Hex(pattern_word(GPA as u64 + 0x3000, seed_g) as u64),
            "the file's dword the guest tried to write through the read-only alias"
        );
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "at the end")?;
        m.halt()
    })
}

/// hugetlbfs-backed guest RAM (MAP_HUGETLB, two 2 MiB pages reserved via
/// nr_hugepages): the guest reads and writes it; the SLAT maps it with 2 MiB
/// entries.
pub fn scen_hugetlb() -> TResult {
    let nr = "/proc/sys/vm/nr_hugepages";
    if !present(nr)? {
        skip!("no {nr} (CONFIG_HUGETLBFS)");
    }
    const SIZE: usize = 4 * MIB;
    let mut restore = Restore::new();
    let old = read_num(nr)?;
    restore.set(nr, &(old + 2).to_string())?;
    let free = read_num("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")?;
    ensure!(
        free >= 2,
        "free 2 MiB huge pages after raising nr_hugepages to {}: {free}",
        old + 2
    );
    scenario(|vm| {
        let mut mem = Mmap::map(
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
            -1,
        )?;
        let seed = 0x6875_6765;
        fill_pattern(&mut mem, 0, SIZE, GPA as u64, seed);
        vm.p.map(&mem, 0, SIZE, GFN, MEM_RWX)?;
        let mut m = Monitor::start(&vm.vcpu)?;
        m.expect_pages(
            GPA,
            (SIZE / PAGE) as u32,
            seed,
            "hugetlb region, first dword of each page",
        )?;
        m.expect_pattern(GPA + MIB as u32, 64 * 1024, seed, "hugetlb region, 64 KiB")?;
        let s = sim_slat(&vm.p)?;
        note!("sim_slat: {}", show_kv(&s));
        ensure_eq!(
            s["large_entries"],
            2,
            "2 MiB SLAT entries for two huge pages"
        );
        for o in [0usize, 2 * MIB - 4, 2 * MIB, SIZE - 4] {
            m.write(GPA + o as u32, 0x4854_0000 | o as u32 >> 8)?;
            ensure_eq!(
                Hex(mem.read_u32(o) as u64),
                Hex((0x4854_0000 | o as u32 >> 8) as u64),
                "the VMM's view of a guest write at {o:#x}"
            );
        }
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "at the end")?;
        m.halt()
    })
}

/// A tmpfs file (on a tmpfs mounted for the test) mapped MAP_SHARED as guest
/// RAM: file writes (pwrite) reach the guest, guest writes reach the file
/// (pread), and a truncate-and-extend behind the driver makes the upper half
/// read as zeros.
pub fn scen_tmpfs_file() -> TResult {
    let dir = PathBuf::from(format!("/run/mshv-scen-tmpfs-{}", std::process::id()));
    fs::create_dir_all(&dir).ctx("mkdir for the tmpfs")?;
    let cdir = CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: NUL-terminated strings.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            cdir.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=8m".as_ptr().cast(),
        )
    };
    if r != 0 {
        let e = errno();
        let _ = fs::remove_dir(&dir);
        fail!("mount tmpfs on {}: {}", dir.display(), errname(e));
    }
    struct Unmount(PathBuf, CString);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(self.1.as_ptr(), libc::MNT_DETACH) };
            let _ = fs::remove_dir(&self.0);
        }
    }
    let _mnt = Unmount(dir.clone(), cdir);
    let r = scenario(|vm| {
        use std::os::unix::fs::FileExt;
        use std::os::unix::io::AsRawFd;
        const SIZE: usize = 512 * 1024;
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("guest-ram"))
            .ctx("create the tmpfs file")?;
        let seed = 0x746d_7066;
        let mut buf = vec![0u8; SIZE];
        for (i, c) in buf.chunks_exact_mut(4).enumerate() {
            c.copy_from_slice(&pattern_word(GPA as u64 + (i * 4) as u64, seed).to_le_bytes());
        }
        file.write_all_at(&buf, 0).ctx("write the tmpfs file")?;
        let mem = Mmap::map(
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
        )?;
        vm.p.map(&mem, 0, SIZE, GFN, MEM_RWX)?;
        let mut m = Monitor::start(&vm.vcpu)?;
        m.expect_pattern(GPA, SIZE, seed, "tmpfs file")?;
        file.write_all_at(&0x7777_0000u32.to_le_bytes(), 0x5000)
            .ctx("pwrite")?;
        ensure_eq!(
            Hex(m.read(GPA + 0x5000)? as u64),
            Hex(0x7777_0000),
            "guest read of a pwrite to the file"
        );
        m.write(GPA + 0x6000, 0x8888_0000)?;
        let mut w = [0u8; 4];
        file.read_exact_at(&mut w, 0x6000).ctx("pread")?;
        ensure_eq!(
            Hex(u32::from_le_bytes(w) as u64),
            Hex(0x8888_0000),
            "pread of a guest write"
        );
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "with the file mapped")?;

        file.set_len((SIZE / 2) as u64).ctx("truncate to half")?;
        file.set_len(SIZE as u64).ctx("extend back")?;
        expect_mirror(&vm.p, 0, "after truncate and extend")?;
        m.expect_const(
            GPA + (SIZE / 2) as u32,
            SIZE / 2,
            0,
            "the truncated upper half",
        )?;
        m.expect_pattern(GPA + 0x8000, SIZE / 2 - 0x8000, seed, "the lower half")?;
        m.write(GPA + (SIZE / 2) as u32 + 0x40, 0x9999_0000)?;
        file.read_exact_at(&mut w, (SIZE / 2 + 0x40) as u64)
            .ctx("pread")?;
        ensure_eq!(
            Hex(u32::from_le_bytes(w) as u64),
            Hex(0x9999_0000),
            "pread of a guest write into the re-extended half"
        );
        expect_mirror(&vm.p, (SIZE / PAGE) as u64 / 2, "at the end")?;
        m.halt()
    });
    r
}

// ---------------------------------------------------------------------------
// 8. UNMAP racing a faulting VP

/// What the VP saw while the region came and went.
#[derive(Default, Debug)]
struct RaceCounts {
    done: u64,
    unmapped_exits: u64,
    intercepts: u64,
    errnos: Vec<i32>,
}

/// Runs the current monitor command to its result, retrying the guest
/// access whenever the data region is missing (HVMSG_UNMAPPED_GPA inside
/// `[lo, hi)`) or RUN_VP ends with a clean errno.
fn finish_retrying(
    m: &mut Monitor,
    lo: u64,
    hi: u64,
    c: &mut RaceCounts,
    stop: &AtomicBool,
) -> TResult<Option<u32>> {
    loop {
        match m.run_raw() {
            Ok(
                exit @ Exit::Io {
                    port,
                    write: true,
                    rax,
                    ..
                },
            ) if port == PORT_RESULT || port == PORT_AUX => {
                complete_io(m.vcpu, &exit, None)?;
                if port == PORT_RESULT {
                    c.done += 1;
                    return Ok(Some(rax as u32));
                }
            }
            // The region is gone (UNMAPPED_GPA), or its NO_ACCESS entries were
            // hit while it was being removed (GPA_INTERCEPT for a GPA that
            // no region covers: passed to the VMM, as upstream does).
            Ok(Exit::Mem { kind, gpa, .. }) if (lo..hi).contains(&gpa) => {
                if kind == MemKind::Unmapped {
                    c.unmapped_exits += 1;
                } else {
                    c.intercepts += 1;
                }
                // `stop`: the unmapper is done, its last step was a map (or
                // it failed): the region must not be missing any more.
                if stop.load(Ordering::Acquire) {
                    fail!("RUN_VP after the last remap: the region is still missing ({kind:?} exit for {gpa:#x})");
                }
                std::thread::yield_now();
            }
            Ok(other) => {
                fail!("RUN_VP while the region is unmapped and remapped: unexpected exit {other}")
            }
            // Only under injected failures: a correct driver ends RUN_VP
            // with an errno here only when a hypercall or an allocation
            // failed (the allow-list of the injected status), never
            // because the region came and went.
            Err(e) if faults_mode() && faults_allow(e) => {
                if c.errnos.len() < 16 {
                    c.errnos.push(e);
                }
            }
            Err(e) => {
                return Err(errno_failure(
                    "RUN_VP while the region is unmapped and remapped",
                    e,
                ))
            }
        }
    }
}

/// MSHV_SET_GUEST_MEMORY UNMAP and map of a region, in a loop on another
/// thread, while the VP faults pages of that region in (REP STOSD over it):
/// every RUN_VP ends in a clean exit (the data, or HVMSG_UNMAPPED_GPA /
/// HVMSG_GPA_INTERCEPT inside the region, which the VP retries) and, without
/// MSHV_FAULTS, never in an errno; at the end the region is mapped and both sides
/// agree on its bytes.
pub fn scen_unmap_race() -> TResult {
    scenario(|vm| {
        const SIZE: usize = 256 * 1024;
        const ROUNDS: u32 = 200;
        let data = Mmap::anon(SIZE)?;
        vm.p.map(&data, 0, SIZE, GFN, MEM_RWX)?;
        let region = mshv_user_mem_region {
            size: SIZE as u64,
            guest_pfn: GFN,
            userspace_addr: data.addr(),
            flags: MEM_RWX,
            ..Default::default()
        };
        let stop = AtomicBool::new(false);
        let remaps = AtomicU64::new(0);
        let mut m = Monitor::start(&vm.vcpu)?;
        let mut c = RaceCounts::default();
        let (lo, hi) = (GPA as u64, GPA as u64 + SIZE as u64);
        let vmfd = &vm.p.vm;
        std::thread::scope(|s| -> TResult {
            let unmapper = s.spawn(|| -> TResult {
                /// Sets `stop` whatever way the unmapper ends.
                struct Done<'a>(&'a AtomicBool);
                impl Drop for Done<'_> {
                    fn drop(&mut self) {
                        self.0.store(true, Ordering::Release);
                    }
                }
                let _done = Done(&stop);
                for _ in 0..ROUNDS {
                    vmfd.unmap_user_memory(region)
                        .map_err(|e| errno_failure("SET_GUEST_MEMORY unmap", e.errno()))?;
                    std::thread::yield_now();
                    vmfd.map_user_memory(region)
                        .map_err(|e| errno_failure("SET_GUEST_MEMORY map", e.errno()))?;
                    remaps.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(())
            });
            let mut i = 0u32;
            let r = (|| -> TResult {
                while !stop.load(Ordering::Acquire) {
                    i += 1;
                    m.begin(CMD_FILL, &[GPA, dwords(SIZE), i])?;
                    finish_retrying(&mut m, lo, hi, &mut c, &stop)?;
                }
                Ok(())
            })();
            let u = unmapper
                .join()
                .map_err(|_| Failure::Fail("the unmapper thread panicked".into()))?;
            // The unmapper's error first: when a map fails (an accepted
            // clean error under MSHV_FAULTS) the region stays missing, and
            // the VP's "still missing" failure is only its consequence.
            u.and(r)
        })?;
        note!(
            "{} remaps; the VP completed {} fills, saw {} HVMSG_UNMAPPED_GPA, {} HVMSG_GPA_INTERCEPT, errnos {:?}",
            remaps.load(Ordering::Relaxed),
            c.done,
            c.unmapped_exits,
            c.intercepts,
            c.errnos.iter().map(|&e| errname(e)).collect::<Vec<_>>()
        );
        ensure_eq!(
            remaps.load(Ordering::Relaxed),
            ROUNDS as u64,
            "completed unmap/map rounds"
        );
        ensure!(c.done >= 1, "fills completed during the race: {}", c.done);
        // Final state: mapped, coherent.
        let seed = 0x7261_6365;
        m.pattern_write(GPA, dwords(SIZE), seed)?;
        verify_pattern(
            &data,
            0,
            SIZE,
            GPA as u64,
            seed,
            "the VMM's view after the race",
        )?;
        m.expect_pattern(GPA, SIZE, seed, "the guest's view after the race")?;
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "after the race")?;
        m.halt()
    })
}

// ---------------------------------------------------------------------------
// 9. Stress

fn stress_secs() -> u64 {
    std::env::var("MSHV_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// Two VPs (threads, each running monitor32 on its own range) fault
/// concurrently while a third thread loops MADV_DONTNEED on a range both
/// VPs touch and move_pages (between the two NUMA nodes) of the VPs' own
/// ranges, for MSHV_STRESS_SECS seconds (default 60). The migrated ranges
/// keep their bytes throughout (each VP re-checks its pattern every round);
/// at the end both sides agree on every byte and the mirror is clean.
pub fn scen_stress() -> TResult {
    scenario(|vm| {
        const PART: usize = 128 * 1024;
        const SIZE: usize = 3 * PART;
        let secs = stress_secs();
        let nodes = numa_nodes()?;
        let mut data = Mmap::anon(SIZE)?;
        let seeds = [0x5354_5230u32, 0x5354_5231];
        for (i, &seed) in seeds.iter().enumerate() {
            fill_pattern(
                &mut data,
                i * PART,
                PART,
                GPA as u64 + (i * PART) as u64,
                seed,
            );
        }
        vm.p.map(&data, 0, SIZE, GFN, MEM_RWX)?;
        let vcpu1 = vm.p.vcpu(1)?;
        let stop = AtomicBool::new(false);
        let rounds = [AtomicU64::new(0), AtomicU64::new(0)];
        let (mut dontneeds, mut moved, mut move_errs) = (0u64, 0u64, 0u64);
        let base = data.addr() as usize;
        let deadline = Instant::now() + Duration::from_secs(secs);
        note!("stress for {secs} s (MSHV_STRESS_SECS), {nodes} NUMA node(s)");
        let vp_loop = |vcpu: &VcpuFd, idx: usize| -> TResult {
            let mut m = Monitor::start_vp(vcpu, idx as u32)?;
            let gpa = GPA + (idx * PART) as u32;
            let shared = GPA + (2 * PART) as u32;
            while !stop.load(Ordering::Relaxed) {
                m.expect_pattern(
                    gpa,
                    PART,
                    seeds[idx],
                    &format!("VP {idx}: its migrated range"),
                )?;
                m.touch(shared, (PART / PAGE) as u32)?;
                rounds[idx].fetch_add(1, Ordering::Relaxed);
            }
            m.halt()
        };
        std::thread::scope(|s| -> TResult {
            let vcpu0 = &vm.vcpu;
            let vp_loop = &vp_loop;
            let t0 = s.spawn(move || vp_loop(vcpu0, 0));
            let t1 = s.spawn(move || vp_loop(&vcpu1, 1));
            let mut node = 0;
            let addrs: Vec<u64> = (0..2 * PART / PAGE)
                .map(|i| (base + i * PAGE) as u64)
                .collect();
            while Instant::now() < deadline && !t0.is_finished() && !t1.is_finished() {
                // SAFETY: a range of `data`, which outlives the scope.
                if unsafe {
                    libc::madvise(
                        (base + 2 * PART) as *mut libc::c_void,
                        PART,
                        libc::MADV_DONTNEED,
                    )
                } == 0
                {
                    dontneeds += 1;
                }
                if nodes >= 2 {
                    node = 1 - node;
                    match move_pages(&addrs, Some(&vec![node; addrs.len()])) {
                        Ok(st) => moved += on_node(&st, node) as u64,
                        Err(_) => move_errs += 1,
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::Relaxed);
            let r0 = t0
                .join()
                .map_err(|_| Failure::Fail("VP 0 thread panicked".into()))?;
            let r1 = t1
                .join()
                .map_err(|_| Failure::Fail("VP 1 thread panicked".into()))?;
            r0.and(r1)
        })?;
        let r = [
            rounds[0].load(Ordering::Relaxed),
            rounds[1].load(Ordering::Relaxed),
        ];
        note!("rounds per VP {r:?}; {dontneeds} MADV_DONTNEED, {moved} pages moved, {move_errs} failed move_pages");
        vm.p.note_stats("after the stress");
        ensure!(r[0] >= 1 && r[1] >= 1, "rounds completed by each VP: {r:?}");
        ensure!(dontneeds >= 1, "MADV_DONTNEED calls made: {dontneeds}");
        if nodes >= 2 {
            ensure!(moved >= 1, "pages migrated by move_pages: {moved}");
        }
        // Final content: migrated ranges exact on both sides; the dropped range
        // takes a fresh pattern that the VMM must see.
        let mut m = Monitor::start(&vm.vcpu)?;
        for (i, &seed) in seeds.iter().enumerate() {
            let off = i * PART;
            verify_pattern(
                &data,
                off,
                PART,
                GPA as u64 + off as u64,
                seed,
                &format!("the VMM's view of VP {i}'s range"),
            )?;
            m.expect_pattern(
                GPA + off as u32,
                PART,
                seed,
                &format!("VP {i}'s range after the stress"),
            )?;
        }
        let seed = 0x656e_6421;
        m.pattern_write(GPA + (2 * PART) as u32, dwords(PART), seed)?;
        verify_pattern(
            &data,
            2 * PART,
            PART,
            GPA as u64 + (2 * PART) as u64,
            seed,
            "the VMM's view of the shared range",
        )?;
        expect_mirror(&vm.p, (SIZE / PAGE) as u64, "after the stress")?;
        m.halt()
    })
}

// ---------------------------------------------------------------------------
// 10. memcg pressure

const CGROOT: &str = "/sys/fs/cgroup";

/// A child memory cgroup (cgroup v2), removed on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    /// memory.max = `max`, memory.high = `high`.
    fn new(max: &str, high: &str) -> TResult<Cgroup> {
        if !Path::new(CGROOT).join("cgroup.controllers").exists() {
            let _ = fs::create_dir_all(CGROOT);
            // SAFETY: NUL-terminated strings.
            let r = unsafe {
                libc::mount(
                    c"cgroup2".as_ptr(),
                    c"/sys/fs/cgroup".as_ptr(),
                    c"cgroup2".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                skip!(
                    "no cgroup2 at {CGROOT} and mounting it failed: {}",
                    errname(errno())
                );
            }
        }
        let ctl = read_trim(&format!("{CGROOT}/cgroup.controllers"))?;
        if !ctl.split_whitespace().any(|c| c == "memory") {
            skip!("no memory controller in {CGROOT}/cgroup.controllers ({ctl:?})");
        }
        write_file(&format!("{CGROOT}/cgroup.subtree_control"), "+memory")?;
        let dir = PathBuf::from(format!("{CGROOT}/mshv-scen-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| io_failure("mkdir the test cgroup", e))?;
        let cg = Cgroup(dir);
        write_file(cg.0.join("memory.max").to_str().unwrap(), max)?;
        write_file(cg.0.join("memory.high").to_str().unwrap(), high)?;
        Ok(cg)
    }

    fn kv(&self, file: &str) -> TResult<std::collections::BTreeMap<String, u64>> {
        read_kv(&self.0.join(file)).ctx(file)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.0) {
            note!("warning: rmdir {}: {e}", self.0.display());
        }
    }
}

/// The VMM's guest-touching part runs in a child process inside a memory
/// cgroup whose memory.max (24 MiB) and memory.high (16 MiB) are below the
/// guest's 32 MiB working set, with zram swap: reclaim swaps guest pages out
/// behind the driver while the guest keeps checking them; memory.stat shows
/// the reclaim (pgscan > 0), there is no OOM kill, and both sides see
/// exactly the right bytes. (With memory.max 16M and no memory.high the
/// memcg OOM-killed the child under TCG: reclaim could not keep up with the
/// guest refaulting its pages.)
pub fn scen_memcg_pressure() -> TResult {
    let _swap = ZramSwap::on("128M")?;
    let cg = Cgroup::new("24M", "16M")?;
    let procs = cg.0.join("cgroup.procs");
    let status = in_child(|| {
        let r = (|| -> TResult {
            write_file(procs.to_str().unwrap(), "0")?;
            scenario(|vm| {
                const SIZE: usize = 32 * MIB;
                const PAGES: u32 = (SIZE / PAGE) as u32;
                let mut data = Mmap::anon(SIZE)?;
                let seed = 0x6d65_6d63;
                fill_pattern(&mut data, 0, SIZE, GPA as u64, seed);
                vm.p.map(&data, 0, SIZE, GFN, MEM_RWX)?;
                let mut m = Monitor::start(&vm.vcpu)?;
                for pass in 0..3 {
                    m.expect_pages(
                        GPA,
                        PAGES,
                        seed,
                        &format!("pass {pass}: first dword of each page"),
                    )?;
                    expect_mirror(&vm.p, 0, &format!("after pass {pass}"))?;
                }
                let seed2 = 0x7072_6573;
                // The guest rewrites the first dword of each page... with its
                // own value P (TOUCH), the VMM checks every byte.
                m.touch(GPA, PAGES)?;
                for i in 0..SIZE / 4 {
                    let off = i * 4;
                    let gpa = GPA as u64 + off as u64;
                    let want = if off % PAGE == 0 {
                        gpa as u32
                    } else {
                        pattern_word(gpa, seed)
                    };
                    let got = data.read_u32(off);
                    ensure!(got == want, "the VMM's view at offset {off:#x}\nexpected: {want:#010x}\nactual:   {got:#010x}");
                }
                fill_pattern(&mut data, 0, SIZE, GPA as u64, seed2);
                m.expect_pages(GPA, PAGES, seed2, "after the VMM rewrote everything")?;
                m.expect_pattern(
                    GPA + 8 * MIB as u32,
                    64 * 1024,
                    seed2,
                    "64 KiB checked in full",
                )?;
                vm.p.note_stats("at the end");
                m.halt()
            })
        })();
        match r {
            Ok(()) => 0,
            Err(Failure::Fail(e)) => {
                note!("in the cgroup child: {e}");
                1
            }
            Err(Failure::Skip(e)) => {
                note!("in the cgroup child: SKIP {e}");
                2
            }
        }
    })?;
    let stat = cg.kv("memory.stat")?;
    let events = cg.kv("memory.events")?;
    note!(
        "memory.events: {}; memory.stat pgscan {} pgsteal {} pswpout {:?}",
        show_kv(&events),
        stat.get("pgscan").copied().unwrap_or(0),
        stat.get("pgsteal").copied().unwrap_or(0),
        stat.get("pswpout")
    );
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 2 && faults_mode() {
        skip!("MSHV_FAULTS: clean error accepted in the cgroup child (see the notes)");
    }
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the guest-touching child in the cgroup\nexpected: exit status 0\nactual:   {}",
        show_status(status)
    );
    ensure!(
        stat.get("pgscan").copied().unwrap_or(0) > 0,
        "memory.stat pgscan after a 32 MiB working set under memory.max 16M: {}",
        show_kv(&stat)
    );
    ensure_eq!(
        events.get("oom_kill").copied().unwrap_or(0),
        0,
        "memory.events oom_kill"
    );
    Ok(())
}

/// Guest writes through a writable SLAT entry never reach the VMM's page
/// table, so its dirty bit cannot tell Linux the page was written: the
/// driver must mark a page dirty when it maps it writable. The trap: a
/// shared shmem mapping gets a *writable but clean* PTE on a read fault (no
/// write notification for shmem), HMM reports it writable, the driver maps
/// it writable, the guest writes with no further fault, and MADV_PAGEOUT
/// then finds a clean, unmapped shmem folio and drops it from the page
/// cache: without the dirty mark the guest's write is lost and the page
/// reads as zeros. (Found by `make run`'s demo: memfd, holes, two VPs.)
pub fn scen_memfd_guest_write_survives_pageout() -> TResult {
    scenario(|vm| {
        const SIZE: usize = 256 * 1024;
        const LEN: usize = 64 * 1024;
        let fd = Fd(memfd("mshv-scen-dirty", SIZE, 0)?);
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // Neither view is ever written by the VMM: every page starts as a
        // hole, and its first fault comes from the guest.
        let guest_view = Mmap::map(SIZE, rw, libc::MAP_SHARED, fd.0)?;
        let vmm_view = Mmap::map(SIZE, libc::PROT_READ, libc::MAP_SHARED, fd.0)?;
        vm.p.map(&guest_view, 0, SIZE, GFN, MEM_RWX)?;
        let mut m = Monitor::start(&vm.vcpu)?;
        // Read faults first (holes read as zeros), then guest writes.
        m.expect_const(GPA, LEN, 0, "the memfd's holes")?;
        let seed = 0x6469_7274;
        m.pattern_write(GPA, dwords(LEN), seed)?;
        // The checker requires every writable entry's page to be dirty: it
        // catches the missing mark before reclaim turns it into data loss.
        expect_mirror(
            &vm.p,
            (LEN / PAGE) as u64,
            "after the guest wrote its pages",
        )?;
        madvise(&guest_view, 0, LEN, libc::MADV_PAGEOUT, "MADV_PAGEOUT")?;
        m.expect_pattern(GPA, LEN, seed, "the guest's writes after MADV_PAGEOUT")?;
        verify_pattern(
            &vmm_view,
            0,
            LEN,
            GPA as u64,
            seed,
            "the VMM's view of the guest's writes after MADV_PAGEOUT",
        )?;
        m.halt()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(s: &str) -> TResult {
        Err(Failure::Fail(s.into()))
    }

    fn skip(s: &str) -> TResult {
        Err(Failure::Skip(s.into()))
    }

    fn show(r: TResult) -> String {
        match r {
            Ok(()) => "ok".into(),
            Err(Failure::Fail(s)) => format!("fail: {s}"),
            Err(Failure::Skip(s)) => format!("skip: {s}"),
        }
    }

    #[test]
    fn a_body_failure_wins() {
        assert_eq!(show(verdict(fail("body"), skip("mirror"))), "fail: body");
        assert_eq!(show(verdict(fail("body"), Ok(()))), "fail: body");
        assert_eq!(
            show(verdict(fail("body"), fail("mirror"))),
            "fail: body\nand the mirror check at the end: mirror"
        );
        assert_eq!(show(verdict(skip("body"), fail("mirror"))), "fail: mirror");
        assert_eq!(show(verdict(Ok(()), fail("mirror"))), "fail: mirror");
        assert_eq!(show(verdict(skip("body"), skip("mirror"))), "skip: body");
        assert_eq!(show(verdict(Ok(()), skip("mirror"))), "skip: mirror");
        assert_eq!(show(verdict(Ok(()), Ok(()))), "ok");
    }
}
