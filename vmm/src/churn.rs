// SPDX-License-Identifier: GPL-2.0
//
// --churn: while the guest runs, a VMM thread keeps taking guest RAM away
// from under it in ways that preserve its content: move_pages between NUMA
// nodes and MADV_PAGEOUT, one random 2 MiB chunk at a time. (Holes, which
// do not preserve content, are punched at the guest's sync points instead;
// see main.rs and examples/guest/demo32.S.) Every one of these makes the
// driver invalidate the chunk's second-level entries; the guest's faults
// then map the pages again wherever they now are.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::vm::{GuestRam, HUGE, PAGE};

/// `MADV_PAGEOUT` (Linux 5.4).
const MADV_PAGEOUT: i32 = 21;
/// `MPOL_MF_MOVE` of move_pages(2).
const MPOL_MF_MOVE: i32 = 1 << 1;

#[derive(Default)]
pub struct Counters {
    /// move_pages calls, and pages they reported on the target node.
    pub move_calls: AtomicU64,
    pub pages_moved: AtomicU64,
    /// MADV_PAGEOUT calls (a no-op for pages that cannot be reclaimed, e.g.
    /// anonymous memory without swap).
    pub pageouts: AtomicU64,
    /// Chunks dropped at the guest's sync points, and their bytes.
    pub holes: AtomicU64,
    pub hole_bytes: AtomicU64,
}

/// The NUMA nodes with memory (from sysfs).
pub fn memory_nodes() -> Vec<i32> {
    let s = std::fs::read_to_string("/sys/devices/system/node/has_memory").unwrap_or_default();
    let mut nodes = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            nodes.extend(a..=b);
        }
    }
    nodes
}

/// xorshift64*: no dependency for a few random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Moves the pages of `[off, off + len)` of guest RAM to `node`. Returns how
/// many ended up there.
fn move_chunk(ram: &GuestRam, off: u64, len: u64, node: i32) -> Result<u64, i32> {
    let n = (len / PAGE) as usize;
    let pages: Vec<*mut libc::c_void> = (0..n)
        .map(|i| (ram.map.addr() + off + i as u64 * PAGE) as *mut libc::c_void)
        .collect();
    let nodes = vec![node; n];
    let mut status = vec![0i32; n];
    // SAFETY: move_pages(2) on our own process with arrays of `n` entries;
    // it only reads `pages`/`nodes` and writes `status`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0,
            n as libc::c_ulong,
            pages.as_ptr(),
            nodes.as_ptr(),
            status.as_mut_ptr(),
            MPOL_MF_MOVE,
        )
    };
    if r < 0 {
        return Err(mshv_mini_vmm::errno());
    }
    Ok(status.iter().filter(|&&s| s == node).count() as u64)
}

/// The churn thread's body: runs until `stop`.
pub fn churn(ram: &GuestRam, stop: &AtomicBool, c: &Counters, period: Duration) {
    let nodes = memory_nodes();
    let chunks = ram.size().div_ceil(HUGE);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let chunk = rng.next() % chunks;
        let off = chunk * HUGE;
        let len = HUGE.min(ram.size() - off);
        if nodes.len() >= 2 && round.is_multiple_of(2) {
            let node = nodes[(rng.next() % nodes.len() as u64) as usize];
            c.move_calls.fetch_add(1, Ordering::Relaxed);
            if let Ok(n) = move_chunk(ram, off, len, node) {
                c.pages_moved.fetch_add(n, Ordering::Relaxed);
            }
        } else {
            c.pageouts.fetch_add(1, Ordering::Relaxed);
            let _ = ram.map.madvise(off, len, MADV_PAGEOUT);
        }
        round += 1;
        std::thread::sleep(period);
    }
}
