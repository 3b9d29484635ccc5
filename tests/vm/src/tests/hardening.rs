// SPDX-License-Identifier: GPL-2.0
//
// Issue 14 (hardening), defects 2, 3 and part of 6: ioctls from a foreign
// mm, unbounded and unkillable region set-up, CREATE_VP's deposit on
// failure, write faults of a whole 2 MiB window, and the unkillable wait for
// a busy VP.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::tests::exits::install_sigalrm;
use crate::uapi::*;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure, ensure_eq, fail, note, skip};

const LIVE_CHECKED: [&str; 5] = [
    "partitions",
    "vps",
    "regions",
    "pinned_pages",
    "deposited_pages",
];

/// The live-object counters (a missing file is a failure: `live_objects`).
fn live_now() -> TResult<BTreeMap<String, u64>> {
    live_objects()
}

/// Waits (up to `limit`) for the counters to come back to `start`: teardown
/// of a partition whose last fd a dying process held runs when that process
/// exits, which may be a moment after `waitpid` returns for it.
fn expect_live_back(start: &BTreeMap<String, u64>, limit: Duration, when: &str) -> TResult {
    let t0 = Instant::now();
    loop {
        let now = live_now()?;
        let diff: Vec<String> = LIVE_CHECKED
            .iter()
            .filter(|n| now[**n] != start[**n])
            .map(|n| format!("{n}: {} -> {}", start[*n], now[*n]))
            .collect();
        if diff.is_empty() {
            return Ok(());
        }
        if t0.elapsed() > limit {
            fail!(
                "live_objects {when}\nexpected: back to {}\nactual:   {}",
                show_kv(start),
                diff.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scale() -> f64 {
    std::env::var("MSHV_VMTESTS_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0)
}

fn scaled(d: Duration) -> Duration {
    d.mul_f64(scale())
}

/// Writes `s` to `fd` (one `write`; what it cannot take is lost).
fn write_fd(fd: i32, s: &str) {
    // SAFETY: writes from a valid buffer; a bad fd is only an error.
    let _ = unsafe { libc::write(fd, s.as_ptr().cast(), s.len()) };
}

/// A pipe; both ends closed on drop.
struct Pipe {
    r: i32,
    w: i32,
}

impl Pipe {
    fn new() -> TResult<Pipe> {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for two fds.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(errno_failure("pipe", errno()));
        }
        Ok(Pipe {
            r: fds[0],
            w: fds[1],
        })
    }

    fn close_w(&mut self) {
        if self.w >= 0 {
            // SAFETY: our own fd.
            unsafe { libc::close(self.w) };
            self.w = -1;
        }
    }

    fn close_r(&mut self) {
        if self.r >= 0 {
            // SAFETY: our own fd.
            unsafe { libc::close(self.r) };
            self.r = -1;
        }
    }

    fn write(&self, s: &str) {
        write_fd(self.w, s);
    }

    /// Reads up to the first newline, EOF or `limit`.
    fn read_line(&self, limit: Duration) -> String {
        let t0 = Instant::now();
        let mut out = Vec::new();
        while !out.ends_with(b"\n") && t0.elapsed() < limit {
            let mut b = [0u8; 1];
            // SAFETY: reads into a valid buffer from our own fd.
            if unsafe { libc::read(self.r, b.as_mut_ptr().cast(), 1) } != 1 {
                break;
            }
            out.push(b[0]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Reads until EOF or `limit`; returns what was read and whether EOF came.
    fn read_to_eof(&self, limit: Duration) -> (String, bool) {
        let t0 = Instant::now();
        let mut out = Vec::new();
        loop {
            let left = limit.saturating_sub(t0.elapsed());
            if left.is_zero() {
                return (String::from_utf8_lossy(&out).into_owned(), false);
            }
            let mut pfd = libc::pollfd {
                fd: self.r,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
            if n <= 0 {
                continue;
            }
            let mut buf = [0u8; 512];
            // SAFETY: reads into a valid buffer from our own fd.
            let got = unsafe { libc::read(self.r, buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                return (String::from_utf8_lossy(&out).into_owned(), true);
            }
            out.extend_from_slice(&buf[..got as usize]);
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.close_w();
        self.close_r();
    }
}

/// `ioctl(fd, req, arg)`: Ok(ret) or Err(errno).
fn raw_ioctl(fd: i32, req: u64, arg: u64) -> Result<i64, i32> {
    // SAFETY: the driver validates `arg` as a user pointer; every buffer
    // passed here is large enough for the request.
    let r = unsafe { libc::ioctl(fd, req as _, arg) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as i64)
    }
}

fn show_res(r: Result<i64, i32>) -> String {
    match r {
        Ok(v) => format!("success ({v})"),
        Err(e) => errname(e),
    }
}

fn fork() -> TResult<i32> {
    // SAFETY: the child only runs code that is fine after fork (the tests
    // run single-threaded) and ends with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(errno_failure("fork", errno()));
    }
    Ok(pid)
}

fn exit_now(code: i32) -> ! {
    // SAFETY: ends the process without running the test's destructors.
    unsafe { libc::_exit(code) }
}

/// Polls `waitpid(pid)` until `limit`; `Some(status)` once it is reaped.
fn wait_for(pid: i32, limit: Duration) -> Option<i32> {
    let t0 = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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

/// Kills `pid` and reaps it, waiting up to 30 s (a child stuck in the
/// kernel is left behind, and said so), for cleanup after a failed check.
fn kill_and_reap(pid: i32) {
    // SAFETY: signals our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    if wait_for(pid, Duration::from_secs(30)).is_none() {
        note!("child {pid} still alive 30 s after SIGKILL; left behind");
    }
}

/// A wait status that must say "killed by SIGKILL" (`who`: whose).
fn expect_sigkilled(status: i32, who: &str) -> TResult {
    ensure!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "{who}'s status\nexpected: killed by signal 9\nactual:   {}",
        show_status(status)
    );
    Ok(())
}

/// SIGKILLs child `pid` (`what`: where it is) and expects it dead within
/// 3 s (scaled), killed by SIGKILL, and the driver's objects back to
/// `start` within 30 s (`when` names that moment).
fn kill_expect_prompt_death(
    pid: i32,
    start: &BTreeMap<String, u64>,
    what: &str,
    when: &str,
) -> TResult {
    // SAFETY: signals our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let t0 = Instant::now();
    let limit = scaled(Duration::from_secs(3));
    let Some(status) = wait_for(pid, limit) else {
        let more = wait_for(pid, Duration::from_secs(120));
        fail!(
            "SIGKILL of {what}\nexpected: dead within {limit:?}\nactual:   {}",
            match more {
                Some(s) => format!("{} only after {:?}", show_status(s), t0.elapsed()),
                None => format!("still alive after {:?}", t0.elapsed()),
            }
        );
    };
    note!(
        "child {} {:.0} ms after SIGKILL",
        show_status(status),
        t0.elapsed().as_secs_f64() * 1e3
    );
    expect_sigkilled(status, "the killed child")?;
    expect_live_back(start, scaled(Duration::from_secs(30)), when)
}

// ---------------------------------------------------------------------------
// Defect 2: ioctls from a foreign mm

const REGION_GFN: u64 = 0x100;
const REGION_GPA: u32 = 0x10_0000;
const REGION: usize = 4 * MIB;

/// `fork()` of a VMM: the child keeps the partition and VP fds. Every ioctl
/// the child makes on them fails with EIO (as KVM does for a foreign mm),
/// first while the VMM lives, then after it has exited, when the guest is
/// about to touch pages it never touched (so a fault would run
/// `hmm_range_fault` on the dead VMM's mm). The partition goes away with the
/// child's last fd.
pub fn foreign_mm_ioctls_eio() -> TResult {
    let start = live_now()?;
    let mut report = Pipe::new()?;
    let vmm = fork()?;
    if vmm == 0 {
        report.close_r();
        exit_now(foreign_mm_vmm(&report));
    }
    report.close_w();
    let (text, eof) = report.read_to_eof(scaled(Duration::from_secs(60)));
    let vmm_status = wait_for(vmm, scaled(Duration::from_secs(10)));
    if vmm_status.is_none() {
        kill_and_reap(vmm);
    }
    for line in text.lines().filter(|l| !l.starts_with("FAIL ")) {
        note!("{line}");
    }
    ensure!(
        eof,
        "the forked child did not finish within 60 s; it reported:\n{text}"
    );
    let mut failures = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("FAIL ") {
            failures.push(f.to_string());
        }
    }
    ensure!(
        text.lines().any(|l| l == "DONE"),
        "the forked child did not get through its checks; it reported:\n{text}"
    );
    if !failures.is_empty() {
        fail!("{}", failures.join("\n"));
    }
    ensure_eq!(
        vmm_status.map(show_status),
        Some(show_status(0)),
        "the VMM process's exit"
    );
    expect_live_back(
        &start,
        scaled(Duration::from_secs(10)),
        "after the child closed the fds",
    )
}

/// The VMM: sets a guest up to TOUCH pages it has not touched, forks the
/// child, waits for its first round of checks and exits.
fn foreign_mm_vmm(report: &Pipe) -> i32 {
    let say = |s: String| report.write(&format!("{s}\n"));
    let setup = || -> TResult<_> {
        let mshv = open_mshv()?;
        let p = Partition::new(&mshv)?;
        let code = load_monitor(&p)?;
        let data = Mmap::anon(REGION)?;
        p.map(&data, 0, REGION, REGION_GFN, MEM_RWX)?;
        let vcpu = p.vcpu(0)?;
        let mut m = Monitor::start(&vcpu)?;
        // Touch the first page from the VMM itself: the set-up works here.
        m.touch(REGION_GPA, 1)?;
        // The guest will TOUCH 64 new pages on its next run.
        m.begin(CMD_TOUCH, &[REGION_GPA + PAGE as u32, 64])?;
        Ok((mshv, p, code, data, vcpu))
    };
    let (_mshv, p, _code, _data, vcpu) = match setup() {
        Ok(v) => v,
        Err(Failure::Fail(e) | Failure::Skip(e)) => {
            say(format!("FAIL VMM set-up: {e}"));
            return 1;
        }
    };
    // The child writes one byte on `sync` after its first round.
    let Ok(mut sync) = Pipe::new() else {
        say("FAIL pipe".into());
        return 1;
    };
    let pt_fd = p.vm.as_raw_fd();
    let vp_fd = vcpu.as_raw_fd();
    let vmm_pid = std::process::id() as i32;
    let child = match fork() {
        Ok(c) => c,
        Err(_) => {
            say("FAIL fork of the child".into());
            return 1;
        }
    };
    if child == 0 {
        sync.close_r();
        foreign_mm_child(report, &sync, pt_fd, vp_fd, vmm_pid);
        say("DONE".into());
        exit_now(0);
    }
    sync.close_w();
    let (_, eof) = sync.read_to_eof(Duration::from_secs(30));
    if !eof {
        say("FAIL the child's first round did not finish within 30 s".into());
    }
    // Exit with the fds, the mappings and the mm: the child has its own.
    0
}

/// The child: every ioctl on the inherited partition and VP fds fails with
/// EIO, while the VMM lives and after it exits.
fn foreign_mm_child(report: &Pipe, sync: &Pipe, pt_fd: i32, vp_fd: i32, vmm_pid: i32) {
    let say = |s: String| report.write(&format!("{s}\n"));
    let mut run_buf = [0u8; 256];
    let check = |round: &str, what: &str, r: Result<i64, i32>| {
        if r == Err(libc::EIO) {
            say(format!("ok {round}: {what}: EIO"));
        } else {
            say(format!(
                "FAIL {round}: {what} from a child of the VMM (another mm)\nexpected: EIO\nactual:   {}",
                show_res(r)
            ));
        }
    };
    let mem = Mmap::anon(64 * 1024);
    let mem_addr = mem.as_ref().map_or(0, |m| m.addr());
    let region = UserMemRegion {
        size: 64 * 1024,
        guest_pfn: 0x8000,
        userspace_addr: mem_addr,
        flags: MEM_RWX,
        rsvd: [0; 7],
    };
    let create_vp = CreateVp { vp_index: 1 };
    let rounds = |round: &str, run_buf: &mut [u8; 256]| {
        check(
            round,
            "MSHV_RUN_VP (the guest's next instructions touch new pages)",
            raw_ioctl(vp_fd, MSHV_RUN_VP, run_buf.as_mut_ptr() as u64),
        );
        check(
            round,
            "MSHV_SET_GUEST_MEMORY (map)",
            raw_ioctl(pt_fd, MSHV_SET_GUEST_MEMORY, &region as *const _ as u64),
        );
        check(
            round,
            "MSHV_CREATE_VP",
            raw_ioctl(pt_fd, MSHV_CREATE_VP, &create_vp as *const _ as u64),
        );
        check(
            round,
            "MSHV_INITIALIZE_PARTITION",
            raw_ioctl(pt_fd, MSHV_INITIALIZE_PARTITION, 0),
        );
        let hvcall = RootHvcall {
            code: HVCALL_GET_PARTITION_PROPERTY,
            ..Default::default()
        };
        check(
            round,
            "MSHV_ROOT_HVCALL on the partition fd",
            raw_ioctl(pt_fd, MSHV_ROOT_HVCALL, &hvcall as *const _ as u64),
        );
        check(
            round,
            "MSHV_ROOT_HVCALL on the VP fd",
            raw_ioctl(vp_fd, MSHV_ROOT_HVCALL, &hvcall as *const _ as u64),
        );
    };
    rounds("while the VMM lives", &mut run_buf);
    // Closing our end of `sync` (by exiting would be too late): write a
    // byte and close it, so the VMM's read sees EOF.
    sync.write("1");
    // SAFETY: our own fd; the VMM's read end then sees EOF.
    unsafe { libc::close(sync.w) };
    // Wait for the VMM to exit (we are reparented).
    let t0 = Instant::now();
    // SAFETY: getppid has no preconditions.
    while unsafe { libc::getppid() } == vmm_pid {
        if t0.elapsed() > Duration::from_secs(30) {
            say("FAIL the VMM did not exit within 30 s".into());
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    rounds("after the VMM exited", &mut run_buf);
}

// ---------------------------------------------------------------------------
// Defect 3: region size bounds and killable set-up

/// Runs `f` in a forked child that reports one line on a pipe; waits up to
/// `limit` for it. Returns the line and the time it took, or `None` (the
/// child is then killed and reaped).
fn timed_child(limit: Duration, f: impl FnOnce() -> String) -> TResult<Option<(String, Duration)>> {
    let mut report = Pipe::new()?;
    let t0 = Instant::now();
    let pid = fork()?;
    if pid == 0 {
        report.close_r();
        let line = f();
        report.write(&line);
        exit_now(0);
    }
    report.close_w();
    let (line, eof) = report.read_to_eof(limit);
    let dt = t0.elapsed();
    if !eof {
        kill_and_reap(pid);
        return Ok(None);
    }
    let _ = wait_for(pid, Duration::from_secs(10));
    Ok(Some((line, dt)))
}

/// `MSHV_SET_GUEST_MEMORY` in a fresh partition, of `size` bytes at `gfn`
/// from `uaddr` (a mapping of `map_len` bytes if `uaddr` is 0, with its
/// second page unmapped if `hole`): the errno (or "success").
fn set_memory_in_child(size: u64, gfn: u64, map_len: usize, hole: bool) -> String {
    let r = (|| -> TResult<Result<i64, i32>> {
        let mshv = open_mshv()?;
        let p = Partition::new(&mshv)?;
        let mem = Mmap::anon(map_len)?;
        if hole {
            // SAFETY: unmaps the second page of our own mapping.
            unsafe { libc::munmap((mem.addr() + PAGE as u64) as *mut _, PAGE) };
        }
        let region = UserMemRegion {
            size,
            guest_pfn: gfn,
            userspace_addr: mem.addr(),
            flags: MEM_RWX,
            rsvd: [0; 7],
        };
        let r = raw_ioctl(
            p.vm.as_raw_fd(),
            MSHV_SET_GUEST_MEMORY,
            &region as *const _ as u64,
        );
        if hole {
            // Do not let Mmap's drop unmap a page that is not ours.
            std::mem::forget(mem);
        }
        Ok(r)
    })();
    match r {
        Ok(r) => show_res(r),
        Err(Failure::Fail(e) | Failure::Skip(e)) => format!("set-up failed: {e}"),
    }
}

/// Regions of 2^62, 2^52 and 2^44 bytes over a 4 KiB mapping, a gfn range
/// past 2^52 pages and a range with a hole: each `MSHV_SET_GUEST_MEMORY`
/// fails at once with EINVAL (upstream's `access_ok` check, and the user
/// range must be mapped), no WARN (the VM run fails on a kernel splat), and
/// leaves nothing behind.
pub fn set_memory_bounds() -> TResult {
    let start = live_now()?;
    let cases: [(&str, u64, u64, usize, bool); 6] = [
        (
            "2^62 bytes over a 4 KiB mapping",
            1 << 62,
            0x100,
            PAGE,
            false,
        ),
        (
            "2^52 bytes over a 4 KiB mapping",
            1 << 52,
            0x100,
            PAGE,
            false,
        ),
        (
            "2^44 bytes over a 4 KiB mapping",
            1 << 44,
            0x100,
            PAGE,
            false,
        ),
        ("2^47 bytes over a 4 KiB mapping", 1 << 47, 0, PAGE, false),
        (
            "8 KiB at gfn 2^52 - 1 (GPA past 2^64)",
            2 * PAGE as u64,
            (1 << 52) - 1,
            2 * PAGE,
            false,
        ),
        (
            "3 pages with the middle one unmapped",
            3 * PAGE as u64,
            0x100,
            3 * PAGE,
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (what, size, gfn, map_len, hole) in cases {
        let limit = scaled(Duration::from_secs(20));
        match timed_child(limit, || set_memory_in_child(size, gfn, map_len, hole))? {
            None => failures.push(format!(
                "{what}\nexpected: EINVAL at once\nactual:   no answer within {limit:?} (child killed)"
            )),
            Some((line, dt)) => {
                note!("{what}: {line} in {:.1} ms", dt.as_secs_f64() * 1e3);
                if line != errname(libc::EINVAL) {
                    failures.push(format!("{what}\nexpected: EINVAL\nactual:   {line}"));
                } else if dt > scaled(Duration::from_secs(2)) {
                    failures.push(format!(
                        "{what}\nexpected: EINVAL within 2 s\nactual:   EINVAL after {dt:?}"
                    ));
                }
            }
        }
    }
    if !failures.is_empty() {
        fail!("{}", failures.join("\n"));
    }
    expect_live_back(
        &start,
        scaled(Duration::from_secs(10)),
        "after the refused regions",
    )
}

/// A valid but huge movable region (32 TiB of `MAP_NORESERVE` memory: 2^24
/// NO_ACCESS 2 MiB entries to set up) in a child that is SIGKILLed one
/// second into `MSHV_SET_GUEST_MEMORY`: the child dies promptly (the set-up
/// loop checks for a fatal signal between batches and undoes what it did),
/// and every driver object and deposited page goes away with it.
pub fn region_setup_killable() -> TResult {
    let start = live_now()?;
    const SIZE: usize = 1 << 45;
    let mut ready = Pipe::new()?;
    let pid = fork()?;
    if pid == 0 {
        ready.close_r();
        let r = (|| -> TResult<Result<i64, i32>> {
            let mshv = open_mshv()?;
            let p = Partition::new(&mshv)?;
            let mem = Mmap::anon(SIZE)?;
            let region = UserMemRegion {
                size: SIZE as u64,
                guest_pfn: 0,
                userspace_addr: mem.addr(),
                flags: MEM_RWX,
                rsvd: [0; 7],
            };
            ready.write("go");
            Ok(raw_ioctl(
                p.vm.as_raw_fd(),
                MSHV_SET_GUEST_MEMORY,
                &region as *const _ as u64,
            ))
        })();
        let code = match r {
            Ok(Ok(_)) => 10,
            Ok(Err(_)) => 11,
            Err(_) => 12,
        };
        exit_now(code);
    }
    ready.close_w();
    let mut b = [0u8; 2];
    // SAFETY: reads into a valid buffer from our own fd.
    let n = unsafe { libc::read(ready.r, b.as_mut_ptr().cast(), 2) };
    if n != 2 {
        kill_and_reap(pid);
        fail!("the child could not set up its partition and 32 TiB mapping");
    }
    std::thread::sleep(Duration::from_secs(1));
    if let Some(status) = wait_for(pid, Duration::ZERO) {
        fail!(
            "the 32 TiB region set-up ended within 1 s ({}): nothing to kill; the test needs a longer set-up",
            show_status(status)
        );
    }
    kill_expect_prompt_death(
        pid,
        &start,
        "a process inside a 32 TiB MSHV_SET_GUEST_MEMORY",
        "after the killed set-up",
    )
}

/// `struct mshv_gpap_access_bitmap`.
#[repr(C)]
struct GpapAccessBitmap {
    access_type: u8,
    access_op: u8,
    rsvd: [u8; 6],
    page_count: u64,
    gpap_base: u64,
    bitmap_ptr: u64,
}
const MSHV_GET_GPAP_ACCESS_BITMAP: u64 = 0xC020_B806;

/// `MSHV_GET_GPAP_ACCESS_BITMAP` over 2^30 pages (300 000 hypercalls, into
/// a 128 MiB bitmap the child has populated, so that copying it out cannot
/// fail) in a child that is SIGKILLed one second in: the walk stops at the
/// next batch and the child dies promptly; nothing is left behind.
pub fn gpap_walk_killable() -> TResult {
    let start = live_now()?;
    const PAGES: u64 = 1 << 30;
    let mut ready = Pipe::new()?;
    let pid = fork()?;
    if pid == 0 {
        ready.close_r();
        let r = (|| -> TResult<Result<i64, i32>> {
            let mshv = open_mshv()?;
            let p = Partition::new(&mshv)?;
            let bitmap = Mmap::anon((PAGES / 8) as usize)?;
            if bitmap
                .madvise(0, bitmap.len(), MADV_POPULATE_WRITE)
                .is_err()
            {
                fail!("MADV_POPULATE_WRITE of the bitmap");
            }
            let a = GpapAccessBitmap {
                access_type: 1,
                access_op: 0,
                rsvd: [0; 6],
                page_count: PAGES,
                gpap_base: 0,
                bitmap_ptr: bitmap.addr(),
            };
            ready.write("go");
            Ok(raw_ioctl(
                p.vm.as_raw_fd(),
                MSHV_GET_GPAP_ACCESS_BITMAP,
                &a as *const _ as u64,
            ))
        })();
        exit_now(match r {
            Ok(Ok(_)) => 10,
            Ok(Err(_)) => 11,
            Err(_) => 12,
        });
    }
    ready.close_w();
    let mut b = [0u8; 2];
    // SAFETY: reads into a valid buffer from our own fd.
    let n = unsafe { libc::read(ready.r, b.as_mut_ptr().cast(), 2) };
    if n != 2 {
        kill_and_reap(pid);
        fail!("the child could not set up its partition and bitmap");
    }
    std::thread::sleep(Duration::from_secs(1));
    if let Some(status) = wait_for(pid, Duration::ZERO) {
        fail!(
            "the 2^30-page GPAP walk ended within 1 s ({}): nothing to kill",
            show_status(status)
        );
    }
    kill_expect_prompt_death(
        pid,
        &start,
        "a process inside a 2^30-page MSHV_GET_GPAP_ACCESS_BITMAP",
        "after the killed GPAP walk",
    )
}

// ---------------------------------------------------------------------------
// A fatal signal during a fault (issue 16)

/// A VMM SIGKILLed while the driver's fault for its guest waits inside
/// Linux's fault handling: the guest touches a page of a region whose
/// memory is registered with userfaultfd (missing-page mode), and the VMM's
/// fault thread reports the fault but never fills the page. The fault waits
/// killably (7.3's HMM faults with FAULT_FLAG_KILLABLE); SIGKILL must end
/// it, the fault path must give up (EINTR) instead of faulting again, and
/// the child must die promptly with every driver object gone.
pub fn uffd_fault_killable() -> TResult {
    const PAGES: usize = 64;
    let start = live_now()?;
    let mut ready = Pipe::new()?;
    let pid = fork()?;
    if pid == 0 {
        ready.close_r();
        let r = (|| -> TResult<()> {
            let (p, _code, vcpu) = monitor_partition()?;
            let data = Mmap::anon(PAGES * PAGE)?;
            let base = data.addr();
            let uf = Userfault::register(&data)?;
            p.map(&data, 0, data.len(), REGION_GFN, MEM_RWX)?;
            let w = ready.w;
            std::thread::spawn(move || loop {
                if let Ok(Some(addr)) = uf.next_fault(Duration::from_secs(600)) {
                    write_fd(w, &format!("fault {:#x}\n", addr - base));
                }
            });
            let mut m = Monitor::start(&vcpu)?;
            // Blocks in the fault until the child is killed.
            m.touch(REGION_GPA, 1)?;
            let _keep = (p, data);
            Ok(())
        })();
        let line = match r {
            Ok(()) => "returned\n".to_string(),
            Err(Failure::Fail(e) | Failure::Skip(e)) => format!("error {e}\n"),
        };
        ready.write(&line);
        exit_now(1);
    }
    ready.close_w();
    let line = ready.read_line(scaled(Duration::from_secs(60)));
    if line != "fault 0x0\n" {
        kill_and_reap(pid);
        fail!("the child's guest access\nexpected: a userfault at offset 0x0 of its region\nactual:   {line:?}");
    }
    // The fault is waiting (and stays so: nothing fills the page).
    std::thread::sleep(Duration::from_millis(200));
    ensure!(
        wait_for(pid, Duration::ZERO).is_none(),
        "the child ended while its fault was to wait for the page"
    );
    kill_expect_prompt_death(
        pid,
        &start,
        "a VMM whose guest's fault waits for a userfault",
        "after the VMM killed in a fault",
    )
}

// ---------------------------------------------------------------------------
// Allocation failures in MSHV_SET_GUEST_MEMORY (issue 16)

/// failslab's settings this test changes, put back on drop.
struct FailslabSettings(Vec<(PathBuf, String)>);

impl FailslabSettings {
    /// Sets each `(file, value)` under /sys/kernel/debug/failslab.
    fn set(values: &[(&str, &str)]) -> TResult<FailslabSettings> {
        let mut saved = FailslabSettings(Vec::new());
        for (name, value) in values {
            let path = PathBuf::from("/sys/kernel/debug/failslab").join(name);
            let old = fs::read_to_string(&path).ctx(&format!("read {}", path.display()))?;
            fs::write(&path, value).ctx(&format!("write {value} to {}", path.display()))?;
            saved.0.push((path, old.trim().to_string()));
        }
        Ok(saved)
    }
}

impl Drop for FailslabSettings {
    fn drop(&mut self) {
        for (path, old) in &self.0 {
            let _ = fs::write(path, old);
        }
    }
}

/// What one `MSHV_SET_GUEST_MEMORY` did with its `n`-th slab allocation
/// failed (`/proc/thread-self/fail-nth`).
#[derive(Debug, PartialEq)]
enum NthOutcome {
    /// The call made fewer than `n` allocations: nothing was failed.
    NotReached,
    /// A movable region (no pages pinned).
    Movable,
    /// A pinned region (the fallback when the movable set-up fails).
    Pinned,
    /// The call failed with this errno.
    Failed(i32),
}

/// Every slab allocation of a RAM region's `MSHV_SET_GUEST_MEMORY` failed
/// in turn (fail-nth 1, 2, ... until the call makes fewer allocations than
/// that; the debug kernel's failslab, `ignore-gfp-wait` off): each call
/// either fails with `ENOMEM` and leaves nothing (no region, no pin, no
/// deposit: live_objects as before) or succeeds with a region that unmaps
/// cleanly. Where the movable set-up's own allocations fail the region is
/// pinned instead, as upstream falls back when it cannot register the
/// notifier: at least one `n` must end so ("the pinned fallback"), with
/// exactly the region's pages pinned. The kernel log's leak and KASAN
/// checks run over every error path the sweep takes.
pub fn set_memory_allocation_failures() -> TResult {
    const PAGES: usize = 256;
    let fail_nth = PathBuf::from("/proc/thread-self/fail-nth");
    if !fail_nth.exists() || !Path::new("/sys/kernel/debug/failslab").exists() {
        skip!("no {} or failslab: a kernel without CONFIG_FAULT_INJECTION/FAILSLAB (make check-debug runs this case)", fail_nth.display());
    }
    let _failslab = FailslabSettings::set(&[("ignore-gfp-wait", "N"), ("verbose", "0")])?;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let data = Mmap::anon(PAGES * PAGE)?;
    data.madvise(0, data.len(), MADV_POPULATE_WRITE)
        .map_err(|e| errno_failure("MADV_POPULATE_WRITE", e))?;
    let region = |flags: u8| UserMemRegion {
        size: (PAGES * PAGE) as u64,
        guest_pfn: REGION_GFN,
        userspace_addr: data.addr(),
        flags,
        rsvd: [0; 7],
    };
    let set = |r: &UserMemRegion| {
        raw_ioctl(
            p.vm.as_raw_fd(),
            MSHV_SET_GUEST_MEMORY,
            r as *const _ as u64,
        )
    };
    // One open file: fail-nth counts this thread's allocations from the
    // write that arms it, and opening the file allocates.
    let nth = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fail_nth)
        .ctx("open fail-nth")?;
    let arm = |n: u32| {
        nth.write_at(n.to_string().as_bytes(), 0)
            .map(|_| ())
            .ctx("write fail-nth")
    };
    let start = live_now()?;
    let mut outcomes = Vec::new();
    for n in 1..=500u32 {
        arm(n)?;
        let r = set(&region(MEM_RWX));
        let mut buf = [0u8; 16];
        let got = nth.read_at(&mut buf, 0).ctx("read fail-nth")?;
        arm(0)?;
        let left: u32 = String::from_utf8_lossy(&buf[..got])
            .trim()
            .parse()
            .map_err(|e| Failure::Fail(format!("fail-nth: {e}")))?;
        let now = live_now()?;
        let pinned = now["pinned_pages"] - start["pinned_pages"];
        let outcome = match r {
            Err(e) if left != 0 => fail!(
                "MSHV_SET_GUEST_MEMORY with nothing failed (fail-nth {n} not reached): {}",
                errname(e)
            ),
            Err(e) => NthOutcome::Failed(e),
            Ok(_) if left != 0 => NthOutcome::NotReached,
            Ok(_) if pinned == 0 => NthOutcome::Movable,
            Ok(_) => NthOutcome::Pinned,
        };
        match &outcome {
            NthOutcome::Failed(e) => {
                ensure_eq!(
                    errname(*e),
                    errname(libc::ENOMEM),
                    "MSHV_SET_GUEST_MEMORY with its allocation {n} failed"
                );
                expect_live_back(
                    &start,
                    Duration::ZERO,
                    &format!("after the failed call {n}"),
                )?;
            }
            NthOutcome::Pinned => ensure_eq!(
                pinned,
                PAGES as u64,
                "pinned_pages of the region that fell back to pinned (allocation {n} failed)"
            ),
            NthOutcome::NotReached => ensure_eq!(
                pinned,
                0,
                "pinned_pages of the region made with nothing failed (a movable one)"
            ),
            NthOutcome::Movable => {}
        }
        if !matches!(outcome, NthOutcome::Failed(_)) {
            set(&region(MEM_RWX | MEM_UNMAP)).map_err(|e| {
                errno_failure(&format!("unmap the region of call {n} ({outcome:?})"), e)
            })?;
            expect_live_back(
                &start,
                Duration::ZERO,
                &format!("after unmapping the region of call {n}"),
            )?;
        }
        let done = outcome == NthOutcome::NotReached;
        outcomes.push(format!("{n}: {outcome:?}"));
        if done {
            break;
        }
    }
    note!("{}", outcomes.join(", "));
    ensure!(
        outcomes.last().is_some_and(|o| o.ends_with("NotReached")),
        "a call that made fewer allocations than the one failed\nexpected: within 500 calls\nactual:   {}",
        outcomes.join(", ")
    );
    ensure!(
        outcomes.iter().any(|o| o.ends_with("Pinned")),
        "a region that fell back to pinned when the movable set-up could not allocate\nexpected: at least one\nactual:   {}",
        outcomes.join(", ")
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Non-blockable invalidations (issue 16)

/// Pages of the region the reaper test's child maps.
const REAP_PAGES: u64 = 1024;
/// Children the reaper test may try.
const TRIES: usize = 20;

/// A VMM killed and reaped with `process_mrelease` (what the OOM reaper
/// does): the reaper unmaps the dying process's memory with *non-blockable*
/// MMU-notifier invalidations while the VMM's partition still lives. The
/// driver must take them (try-lock, remap NO_ACCESS, say it succeeded)
/// rather than refuse or ignore them: the reap returns 0 on its first call,
/// and the trace shows one non-blockable invalidation of exactly each of
/// its two movable regions (`mshv_rs_invalidate`, blockable=0, the gfn
/// and page count of the code and of the data region). The
/// child's exit races the reaper (an invalidation of the exit path holding
/// a region's lock makes the reaper's try-lock fail: `EAGAIN`, as a correct
/// driver answers), so up to [`TRIES`] children are tried until one reap
/// came first; every one of them must leave nothing behind.
pub fn reaped_vmm_nonblocking_invalidation() -> TResult {
    let start = live_now()?;
    let tracing = super::trace::Tracing::on()?;
    let mut outcomes = Vec::new();
    let mut seen = false;
    for _ in 0..TRIES {
        let (id, reap) = reap_one_vmm()?;
        expect_live_back(
            &start,
            scaled(Duration::from_secs(30)),
            "after the reaped child",
        )?;
        let records = tracing.records()?;
        let pt = id.to_string();
        let mine: Vec<_> = super::trace::of(&records, "mshv_rs_invalidate")
            .into_iter()
            .filter(|r| r.get("partition_id") == pt)
            .collect();
        let mut nonblocking: Vec<_> = mine
            .iter()
            .filter(|r| r.get("blockable") == "0")
            .map(|r| (r.get("gfn").to_string(), r.get("pages").to_string()))
            .collect();
        nonblocking.sort();
        let all: Vec<_> = mine
            .iter()
            .map(|r| r.values(&["gfn", "pages", "blockable"]).join("/"))
            .collect();
        outcomes.push(format!(
            "pt {id}: process_mrelease {}, invalidations (gfn/pages/blockable) {all:?}",
            show_res(reap)
        ));
        if reap == Ok(0) && !nonblocking.is_empty() {
            ensure_eq!(
                nonblocking,
                vec![
                    (format!("{CODE_GFN:#x}"), (CODE_SIZE / PAGE).to_string()),
                    (format!("{REGION_GFN:#x}"), REAP_PAGES.to_string())
                ],
                "non-blockable invalidations of pt {id}'s code and data regions (gfn, pages)"
            );
            seen = true;
            break;
        }
    }
    note!("{}", outcomes.join("\n"));
    ensure!(
        seen,
        "a reap that came before the child's own exit\nexpected: one in {} tries\nactual:   none:\n{}",
        outcomes.len(),
        outcomes.join("\n")
    );
    Ok(())
}

/// Forks a child VMM (a partition, a movable region the guest has touched,
/// then `pause()`), SIGKILLs it and reaps its memory at once with
/// `process_mrelease`; returns the partition id and the reap's result once
/// the child is gone.
fn reap_one_vmm() -> TResult<(u64, Result<i64, i32>)> {
    let mut ready = Pipe::new()?;
    let pid = fork()?;
    if pid == 0 {
        ready.close_r();
        let r = (|| -> TResult<(Partition, Mmap, Mmap, mshv_ioctls::VcpuFd, u64)> {
            let (p, code, vcpu) = monitor_partition()?;
            let data = Mmap::anon(REAP_PAGES as usize * PAGE)?;
            p.map(&data, 0, data.len(), REGION_GFN, MEM_RWX)?;
            let mut m = Monitor::start(&vcpu)?;
            m.touch(REGION_GPA, REAP_PAGES as u32)?;
            m.halt()?;
            let id = p.id()?;
            Ok((p, code, data, vcpu, id))
        })();
        // Threads that only wait: the address space is torn down when the
        // last of them has exited, which leaves the reaper a wider window.
        for _ in 0..8 {
            std::thread::spawn(|| loop {
                std::thread::park();
            });
        }
        match &r {
            Ok((.., id)) => ready.write(&format!("{id}\n")),
            Err(Failure::Fail(e) | Failure::Skip(e)) => ready.write(&format!("error {e}\n")),
        }
        // SAFETY: waits for the signal; the child never returns from here.
        loop {
            unsafe { libc::pause() };
        }
    }
    ready.close_w();
    let line = ready.read_line(scaled(Duration::from_secs(60)));
    let Some(id) = line.trim().parse::<u64>().ok() else {
        kill_and_reap(pid);
        fail!("the child VMM could not set up: {line:?}");
    };
    // SAFETY: a plain syscall on our own child's pid.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd < 0 {
        let e = errno();
        kill_and_reap(pid);
        return Err(errno_failure("pidfd_open", e));
    }
    // Real-time priority from the kill to the end of the reap: a woken task
    // is placed on its waker's CPU first, where it now cannot preempt the
    // reaper (on the test VM's two CPUs this made the first child count in
    // every run; without it about one child in four did).
    let set_policy = |policy, priority| {
        let param = libc::sched_param {
            sched_priority: priority,
        };
        // SAFETY: sets this thread's own scheduling policy from a valid
        // parameter block.
        unsafe { libc::sched_setscheduler(0, policy, &param) }
    };
    if set_policy(libc::SCHED_FIFO, 1) != 0 {
        note!("sched_setscheduler(SCHED_FIFO): {}", errname(errno()));
    }
    // SAFETY: signals our own child, then reaps its address space through
    // our own pidfd.
    let reap = unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::syscall(libc::SYS_process_mrelease, pidfd, 0)
    };
    let reap = if reap < 0 { Err(errno()) } else { Ok(reap) };
    set_policy(libc::SCHED_OTHER, 0);
    // SAFETY: our own fd.
    unsafe { libc::close(pidfd) };
    let Some(status) = wait_for(pid, scaled(Duration::from_secs(30))) else {
        fail!("the SIGKILLed child VMM {pid} is still alive after 30 s");
    };
    expect_sigkilled(status, "the reaped child")?;
    Ok((id, reap))
}

// ---------------------------------------------------------------------------
// Defect 6: CREATE_VP's deposit, write faults, the VP lock

/// `MSHV_CREATE_VP` on a partition that was never initialized fails, 50
/// times: the pages deposited for it (90 each time) do not stay in the
/// partition's pool (`deposited_pages` in live_objects does not move).
pub fn create_vp_failure_keeps_no_deposit() -> TResult {
    let mshv = open_mshv()?;
    let vm = crate_call("create_vm", || mshv.create_vm())?
        .map_err(|e| errno_failure("create_vm", e.errno()))?;
    let before = live_now()?;
    let mut errs = BTreeMap::new();
    for _ in 0..50 {
        let c = CreateVp { vp_index: 0 };
        let r = raw_ioctl(vm.as_raw_fd(), MSHV_CREATE_VP, &c as *const _ as u64);
        *errs.entry(show_res(r)).or_insert(0) += 1;
    }
    let after = live_now()?;
    note!("50 CREATE_VP on an uninitialized partition: {errs:?}");
    ensure!(
        !errs.keys().any(|k| k.starts_with("success")),
        "CREATE_VP on an uninitialized partition\nexpected: failure\nactual:   {errs:?}"
    );
    ensure_eq!(
        after["deposited_pages"],
        before["deposited_pages"],
        "deposited_pages after 50 failed CREATE_VPs on an uninitialized partition"
    );
    drop(vm);
    Ok(())
}

fn memfd_with_pages(pages: usize, magic: u32) -> TResult<i32> {
    let name = std::ffi::CString::new("mshv-write-fault").unwrap_or_default();
    // SAFETY: a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    if fd < 0 {
        return Err(errno_failure("memfd_create", errno()));
    }
    let mut buf = vec![0u8; pages * PAGE];
    for i in 0..pages {
        buf[i * PAGE..i * PAGE + 4].copy_from_slice(&(magic + i as u32).to_ne_bytes());
    }
    // SAFETY: writes our buffer to our own fd.
    let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        return Err(errno_failure("pwrite of the memfd", errno()));
    }
    Ok(fd)
}

/// A guest write faults only the written page for writing; the rest of its
/// 2 MiB window is faulted for reading. Two 2 MiB frames of a `MAP_PRIVATE`
/// memfd mapping (a private file mapping: a write fault copies the page):
///
/// - frame A: the guest writes page 5; afterwards page 5 is an anonymous
///   copy and every other page of the frame is still the file's page
///   (pagemap: present, file), and the guest reads the file's bytes there;
/// - frame B, whose upper half the VMM made read-only (`mprotect`, another
///   VMA in the same frame): the guest's write to page 3 works (a write
///   fault of the whole frame fails with EPERM on the read-only VMA), and
///   the read-only half reads right.
pub fn write_fault_only_written_page() -> TResult {
    const FRAME: usize = 2 * MIB;
    const PAGES: usize = FRAME / PAGE;
    const MAGIC: u32 = 0x5a00_0000;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let fd = memfd_with_pages(2 * PAGES, MAGIC)?;
    let mem = Mmap::map(
        2 * FRAME,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
        fd,
    )?;
    // SAFETY: our own fd; the mapping keeps the file.
    unsafe { libc::close(fd) };
    mem.mprotect(FRAME + FRAME / 2, FRAME / 2, libc::PROT_READ)?;
    // Frames A and B at GPA 4 MiB and 6 MiB (2 MiB aligned gfn frames).
    const GFN: u64 = 0x400;
    const GPA: u32 = 0x40_0000;
    p.map(&mem, 0, 2 * FRAME, GFN, MEM_RWX)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;

    m.write(GPA + 5 * PAGE as u32, 0x1111_1111)?;
    let r = m.read(GPA + 7 * PAGE as u32)?;
    ensure_eq!(
        Hex(r.into()),
        Hex((MAGIC + 7).into()),
        "guest read of page 7 of frame A (the file's bytes)"
    );
    let mut wrong = Vec::new();
    for i in 0..PAGES {
        let e = pagemap(mem.addr() + (i * PAGE) as u64)?;
        let (present, file) = (e & PM_PRESENT != 0, e & PM_FILE != 0);
        let want_file = i != 5;
        if !present || file != want_file {
            wrong.push(format!(
                "page {i}: present {present} file {file} (expected present, file {want_file})"
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "frame A after one guest write to page 5: only page 5 may be copied for writing; {} pages wrong:\n{}",
        wrong.len(),
        wrong.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
    ensure_eq!(
        Hex(mem.read_u32(5 * PAGE).into()),
        Hex(0x1111_1111),
        "the VMM's view of the guest's write to frame A page 5"
    );

    let wb = m.cmd(
        CMD_WRITE,
        &[GPA + (FRAME + 3 * PAGE) as u32, 0x2222_2222],
        "guest write to frame B page 3 (read-only VMA in the upper half of the frame)",
    );
    wb?;
    ensure_eq!(
        Hex(mem.read_u32(FRAME + 3 * PAGE).into()),
        Hex(0x2222_2222),
        "the VMM's view of the guest's write to frame B page 3"
    );
    let r = m.read(GPA + (FRAME + 400 * PAGE) as u32)?;
    ensure_eq!(
        Hex(r.into()),
        Hex((MAGIC + PAGES as u32 + 400).into()),
        "guest read of frame B page 400 (read-only VMA)"
    );
    let e = pagemap(mem.addr() + (FRAME + 400 * PAGE) as u64)?;
    ensure!(
        e & PM_FILE != 0,
        "frame B page 400 (read-only VMA) after the guest's write to page 3: still the file's page (pagemap {e:#x})"
    );
    m.halt()
}

/// A second `MSHV_RUN_VP` caller waiting for a VP that another caller runs
/// (a guest spinning in `jmp .`) can be killed: a process sharing the VMM's
/// mm (`clone(CLONE_VM)`, so it passes the mm check) blocks on the VP and is
/// SIGKILLed; it is gone within 2 s, while the first caller still runs.
pub fn vp_wait_killable() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    m.begin(CMD_SPIN, &[])?;
    install_sigalrm()?;
    let vp_fd = vcpu.as_raw_fd();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        let _ = tx.send(unsafe { libc::pthread_self() });
        let mut buf = [0u8; 256];
        raw_ioctl(vp_fd, MSHV_RUN_VP, buf.as_mut_ptr() as u64)
    });
    let Ok(spinner) = rx.recv() else {
        fail!("the spinning thread did not start");
    };
    std::thread::sleep(Duration::from_millis(300));
    let r = blocked_clone_is_killable(vp_fd, &|| stop_spinner(spinner, &h));
    stop_spinner(spinner, &h);
    match h.join() {
        Ok(run) => note!("the spinning RUN_VP returned {}", show_res(run)),
        Err(_) => fail!("the spinning thread panicked"),
    }
    r
}

/// Sends SIGALRM (handled, no SA_RESTART) to `thread` until `h` finishes:
/// its RUN_VP returns EINTR.
fn stop_spinner<T>(thread: libc::pthread_t, h: &std::thread::JoinHandle<T>) {
    let t0 = Instant::now();
    while !h.is_finished() && t0.elapsed() < Duration::from_secs(60) {
        // SAFETY: the thread has not finished and is not joined yet.
        unsafe { libc::pthread_kill(thread, libc::SIGALRM) };
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The child of `clone(CLONE_VM)`: RUN_VP on the VP fd, then exit.
extern "C" fn clone_run_vp(arg: *mut libc::c_void) -> libc::c_int {
    let fd = arg as usize;
    let mut buf = [0u8; 256];
    // Raw syscalls only: this child shares the test's memory and TLS.
    // SAFETY: ioctl and exit_group with valid arguments.
    unsafe {
        let ret: isize;
        std::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_ioctl as isize => ret,
            in("rdi") fd,
            in("rsi") MSHV_RUN_VP as usize,
            in("rdx") buf.as_mut_ptr() as usize,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
        let code = if ret == -(libc::EIO as isize) { 3 } else { 4 };
        std::arch::asm!(
            "syscall",
            in("rax") libc::SYS_exit_group as isize,
            in("rdi") code,
            options(noreturn, nostack),
        );
    }
}

fn blocked_clone_is_killable(vp_fd: i32, stop_spinner: &dyn Fn()) -> TResult {
    let mut stack = vec![0u8; 256 * 1024];
    // SAFETY: the stack top is 16-byte aligned and inside `stack`, which
    // outlives the child (we reap it before returning).
    let top = unsafe { stack.as_mut_ptr().add(stack.len() - 64) };
    let top = (top as usize & !15) as *mut libc::c_void;
    // SAFETY: the child runs `clone_run_vp` on its own stack and exits.
    let pid = unsafe {
        libc::clone(
            clone_run_vp,
            top,
            libc::CLONE_VM | libc::SIGCHLD,
            vp_fd as usize as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(errno_failure("clone(CLONE_VM)", errno()));
    }
    std::thread::sleep(Duration::from_millis(500));
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|t| t.trim().chars().next().unwrap_or('?'))
        })
        .unwrap_or('?');
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    note!("the second RUN_VP caller (pid {pid}) after 500 ms: state {state}, wchan {wchan}");
    if let Some(status) = wait_for(pid, Duration::ZERO) {
        fail!(
            "the second RUN_VP caller did not wait for the busy VP: {}",
            show_status(status)
        );
    }
    // SAFETY: signals our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let t0 = Instant::now();
    let limit = scaled(Duration::from_secs(2));
    let res = wait_for(pid, limit);
    let Some(status) = res else {
        // It can only go once the first caller leaves the VP.
        stop_spinner();
        let later = wait_for(pid, Duration::from_secs(60));
        fail!(
            "SIGKILL of a process waiting for a busy VP in MSHV_RUN_VP\nexpected: dead within {limit:?}\nactual:   {}",
            match later {
                Some(s) => format!("{} only after the other RUN_VP returned ({:?})", show_status(s), t0.elapsed()),
                None => "still alive".into(),
            }
        );
    };
    note!(
        "the second caller {} {:.0} ms after SIGKILL",
        show_status(status),
        t0.elapsed().as_secs_f64() * 1e3
    );
    ensure!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "the second RUN_VP caller's status\nexpected: killed by signal 9\nactual:   {}",
        show_status(status)
    );
    drop(stack);
    Ok(())
}

/// A movable region that the hypervisor refuses part-way through its
/// set-up (its last two pages lie past the guest physical address width:
/// the simulator's is 48 bits, gfn 2^36, as on hardware with 48-bit
/// physical addresses) fails with the hypervisor's errno, and removing it
/// unmaps only what its set-up mapped. Before, the removal unmapped the
/// whole region, the hypervisor refused the pages it had never mapped, and
/// the region was kept for the partition's life ("unmapping region ...
/// failed; not released" in the log, which scripts/vm-run takes for a broken
/// invariant): the fuzzer found it.
pub fn region_past_gpa_width_released() -> TResult {
    let mem = Mmap::anon(4 * PAGE)?;
    past_gpa_width_released("movable", mem.addr())
}

/// The same for a pinned region (`force_pinned`): its set-up maps up front,
/// and its removal must stop where that mapping stopped.
pub fn pinned_region_past_gpa_width_released() -> TResult {
    let _pinned = ForcePinned::on()?;
    let mem = Mmap::anon(4 * PAGE)?;
    past_gpa_width_released("pinned", mem.addr())
}

/// A region of 4 pages at `uaddr` (which the caller keeps mapped), at gfn
/// 2^36 - 2: refused with `EINVAL`, released without a failed-removal
/// message, and its first two pages mappable afterwards.
pub(super) fn past_gpa_width_released(kind: &str, uaddr: u64) -> TResult {
    // The driver's failed-removal messages so far (dmesg, whole lines).
    let failed_removals = || -> TResult<usize> {
        let out = std::process::Command::new("dmesg")
            .output()
            .ctx("run dmesg")?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("mshv_rs") && l.contains("failed; not released"))
            .count())
    };
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let before = live_now()?;
    let logged = failed_removals()?;
    let region = UserMemRegion {
        size: 4 * PAGE as u64,
        guest_pfn: (1 << 36) - 2,
        userspace_addr: uaddr,
        flags: MEM_RWX,
        rsvd: [0; 7],
    };
    let r = raw_ioctl(
        p.vm.as_raw_fd(),
        MSHV_SET_GUEST_MEMORY,
        &region as *const _ as u64,
    );
    ensure_eq!(
        show_res(r),
        errname(libc::EINVAL),
        "{kind}: SET_GUEST_MEMORY of 4 pages at gfn 2^36 - 2 (the last two past the GPA width)"
    );
    let after = live_now()?;
    ensure_eq!(
        after.get("regions").copied(),
        before.get("regions").copied(),
        "{kind}: live regions after the refused region"
    );
    ensure_eq!(
        failed_removals()?,
        logged,
        "{kind}: driver messages 'unmapping region ... failed; not released' after the refused region"
    );
    // The first two pages were mapped NO_ACCESS and unmapped again: the
    // partition can map them in a region of their own.
    let region = UserMemRegion {
        size: 2 * PAGE as u64,
        ..region
    };
    let r = raw_ioctl(
        p.vm.as_raw_fd(),
        MSHV_SET_GUEST_MEMORY,
        &region as *const _ as u64,
    );
    ensure_eq!(
        show_res(r),
        "success (0)".to_string(),
        "{kind}: SET_GUEST_MEMORY of the 2 pages below gfn 2^36 afterwards"
    );
    Ok(())
}
