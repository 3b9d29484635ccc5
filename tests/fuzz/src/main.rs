// SPDX-License-Identifier: GPL-2.0
//
// mshv-fuzz: a structure-aware fuzzer of /dev/mshv (issue 14).
//
// Several threads share tables of fds (/dev/mshv, partitions, VPs, eventfds)
// and a pool of anonymous memory slots, and each runs a random sequence of
// operations drawn from its own generator (seed + thread index): every ioctl
// of the three fd types with valid, boundary and garbage arguments and bad
// user pointers, VP mmaps, tiny real-mode guests that touch mapped, unmapped
// and read-only memory, memory churn on the slots that back guest regions
// (madvise, partial munmap, mremap, mprotect, fork), and closing or
// replacing fds other threads are using.
//
// Replay: the sequence of operations and arguments of thread i depends only
// on (seed, i), never on results, so the same seed replays the same
// sequence per thread (with one thread, the same run). Results do depend on
// the interleaving of threads.
//
// The run stops at --minutes, at --calls, or as soon as the kernel log
// shows a report (WARN, BUG, KASAN, lockdep, ...), which it prints with the
// last operations of every thread; exit 0 only with no report. At the end
// it prints the calls made, per-ioctl counts and the errno histogram.
//
// Memory stays bounded: the fd tables and memory slots are fixed-size and
// every buffer the kernel may write through lies in a per-thread scratch
// area followed by a guard (PROT_NONE) area, so an overlong write by the
// driver faults (EFAULT) instead of corrupting the fuzzer.

mod stop;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// The ABI (Linux 7.3 include/uapi/linux/mshv.h)

const MSHV_IOCTL: u64 = 0xB8;
const fn ioc(dir: u64, nr: u64, size: u64) -> u64 {
    (dir << 30) | (size << 16) | (MSHV_IOCTL << 8) | nr
}
const DEV_CREATE_PARTITION: u64 = ioc(1, 0, 16);
const ROOT_HVCALL: u64 = ioc(3, 7, 32);
const PT_INITIALIZE: u64 = ioc(0, 0, 0);
const PT_CREATE_VP: u64 = ioc(1, 1, 4);
const PT_SET_GUEST_MEMORY: u64 = ioc(1, 2, 32);
const PT_IRQFD: u64 = ioc(1, 3, 16);
const PT_IOEVENTFD: u64 = ioc(1, 4, 32);
const PT_SET_MSI_ROUTING: u64 = ioc(1, 5, 8);
const PT_GET_GPAP: u64 = ioc(3, 6, 32);
const VP_RUN: u64 = ioc(2, 0, 256);
const VP_GET_STATE: u64 = ioc(3, 1, 16);
const VP_SET_STATE: u64 = ioc(3, 2, 16);

/// Allowed hypercall codes (upstream's lists) and a few that are not.
const HVCALLS: [u16; 18] = [
    0x44, 0x101, 0x45, 0x4d, 0x50, 0x51, 0x52, 0x56, 0x91, 0x94, 0xc9, 0xc0, 0xc1, 0xf4, 0x40,
    0x48, 0x4b, 0xffff,
];

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CreatePartitionV2 {
    pt_flags: u64,
    pt_isolation: u64,
    pt_num_cpu_fbanks: u16,
    pt_rsvd: [u8; 6],
    pt_cpu_fbanks: [u64; 2],
    pt_rsvd1: [u64; 2],
    pt_disabled_xsave: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct MemRegion {
    size: u64,
    guest_pfn: u64,
    userspace_addr: u64,
    flags: u8,
    rsvd: [u8; 7],
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Irqfd {
    fd: i32,
    resamplefd: i32,
    gsi: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Ioeventfd {
    datamatch: u64,
    addr: u64,
    len: u32,
    fd: i32,
    flags: u32,
    rsvd: [u8; 4],
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Gpap {
    access_type: u8,
    access_op: u8,
    rsvd: [u8; 6],
    page_count: u64,
    gpap_base: u64,
    bitmap_ptr: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Hvcall {
    code: u16,
    reps: u16,
    in_sz: u16,
    out_sz: u16,
    status: u16,
    rsvd: [u8; 6],
    in_ptr: u64,
    out_ptr: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct VpState {
    type_: u8,
    rsvd: [u8; 3],
    buf_sz: u32,
    buf_ptr: u64,
}

// ---------------------------------------------------------------------------
// Seeded generator (splitmix64)

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    /// A u64 biased to boundaries.
    fn wild(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << self.below(64),
            3 => (1 << self.below(64)) - 1,
            4 => self.below(0x1_0000),
            5 => u32::MAX as u64 + self.below(3),
            _ => self.next(),
        }
    }
}

// ---------------------------------------------------------------------------
// Shared state

const PAGE: u64 = 4096;
const SLOTS: usize = 6;
const SLOT_LEN: u64 = 4 << 20;
/// Fixed, far below mmap_base: holes punched here are never chosen by the
/// kernel for the fuzzer's own allocations (top-down placement), so slot
/// resets with MAP_FIXED clobber nothing but the pool.
const POOL_BASE: u64 = 0x1000_0000_0000;
/// The MMIO window, right after the pool: the emulator's test-only
/// `VM_PFNMAP` file (`sim/pfnmap`, 16 pages whose `vm_pgoff` is not their
/// pfn) mapped shared, when the module runs the emulator.
const MMIO_BASE: u64 = POOL_BASE + SLOTS as u64 * SLOT_LEN;
const MMIO_PAGES: u64 = 16;
const PFNMAP: &std::ffi::CStr = c"/sys/kernel/debug/mshv_rs/sim/pfnmap";
const SCRATCH_LEN: u64 = 64 << 10;
const GUARD_LEN: u64 = 1 << 20;
/// Kernel and non-canonical addresses for bad pointers.
const BAD_PTRS: [u64; 5] = [
    0,
    0xffff_8880_0000_0000,
    0xffff_ffff_8100_0000,
    0x8000_0000_0000_0000,
    0x0000_7fff_ffff_f000,
];

struct Shared {
    dev: [AtomicI32; 2],
    parts: [AtomicI32; 6],
    vps: [AtomicI32; 8],
    efds: [AtomicI32; 12],
    /// Serializes slot resets (MAP_FIXED) with one another.
    slot_lock: Vec<Mutex<()>>,
    stop: AtomicBool,
    calls: AtomicU64,
    /// Per thread: ms since start when its current ioctl began, 0 when not
    /// in one (the watchdog signals it after a second: a RUN_VP of a guest
    /// that never exits, or a sleeping HLT, returns EINTR).
    in_run: Vec<AtomicU64>,
    tids: Vec<AtomicU64>,
    /// Kernel thread ids (for /proc/self/task/<tid>).
    ktids: Vec<AtomicI32>,
    logs: Vec<Mutex<VecDeque<String>>>,
    start: Instant,
    wild_sizes: bool,
    fork_ioctls: bool,
    /// `sim/pfnmap` open read-write, or -1 (no emulator: no MMIO regions).
    pfnmap: i32,
}

fn slot_addr(i: usize) -> u64 {
    POOL_BASE + i as u64 * SLOT_LEN
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn errname(e: i32) -> String {
    let names: &[(i32, &str)] = &[
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::ENXIO, "ENXIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::EBADF, "EBADF"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::ENODEV, "ENODEV"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::ENOTTY, "ENOTTY"),
        (libc::ERANGE, "ERANGE"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::EOVERFLOW, "EOVERFLOW"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::EHWPOISON, "EHWPOISON"),
    ];
    match names.iter().find(|(n, _)| *n == e) {
        Some((_, s)) => s.to_string(),
        None if e == 0 => "ok".into(),
        None => format!("errno{e}"),
    }
}

/// One thread's counters: calls per operation and (operation, result).
#[derive(Default)]
struct Stats {
    calls: BTreeMap<&'static str, u64>,
    results: BTreeMap<(&'static str, i32), u64>,
}

struct Worker {
    id: usize,
    rng: Rng,
    sh: Arc<Shared>,
    st: Stats,
    scratch: u64,
    seq: u64,
}

impl Worker {
    fn log(&mut self, s: String) {
        self.seq += 1;
        let mut l = self.sh.logs[self.id].lock().unwrap();
        if l.len() >= 24 {
            l.pop_front();
        }
        l.push_back(format!("#{} {s}", self.seq));
    }

    fn count(&mut self, op: &'static str, r: i64) -> i64 {
        let e = if r < 0 { errno() } else { 0 };
        *self.st.calls.entry(op).or_default() += 1;
        *self.st.results.entry((op, e)).or_default() += 1;
        self.sh.calls.fetch_add(1, Relaxed);
        if r < 0 {
            -(e as i64)
        } else {
            r
        }
    }

    /// ioctl(fd, cmd, arg), logged and counted.
    fn ioctl(&mut self, op: &'static str, fd: i32, cmd: u64, arg: u64) -> i64 {
        self.log(format!("{op} fd {fd} cmd {cmd:#x} arg {arg:#x}"));
        let now = self.sh.start.elapsed().as_millis() as u64 + 1;
        self.sh.in_run[self.id].store(now, Relaxed);
        // SAFETY: every pointer argument is either a bad pointer the kernel
        // must refuse or lies in this thread's scratch area (followed by a
        // guard), a memory slot, or a live local; the kernel writes at most
        // within those or faults.
        let r = unsafe { libc::ioctl(fd, cmd as _, arg) } as i64;
        self.sh.in_run[self.id].store(0, Relaxed);
        self.count(op, r)
    }

    fn fd(&mut self, table: &[AtomicI32]) -> i32 {
        if self.rng.chance(20) {
            // Never 0..2: a write to the console may block (the first
            // stall this fuzzer found was its own).
            return self.rng.pick(&[-1, 1000, 4095, i32::MAX]);
        }
        table[self.rng.below(table.len() as u64) as usize].load(Relaxed)
    }

    /// Stores `fd` in a random entry of `table`, closing what was there.
    fn store(&mut self, table: &[AtomicI32], fd: i32) {
        let i = self.rng.below(table.len() as u64) as usize;
        let old = table[i].swap(fd, Relaxed);
        if old >= 0 {
            self.log(format!("close {old} (replaced)"));
            // SAFETY: only the thread that swaps an fd out of a table closes it.
            unsafe { libc::close(old) };
        }
    }

    /// A user pointer for an argument of `len` bytes: mostly the end of the
    /// scratch area (an overrun hits the guard), sometimes bad.
    fn ptr(&mut self, len: u64) -> u64 {
        match self.rng.below(10) {
            0 => self.rng.pick(&BAD_PTRS),
            1 => self.scratch + SCRATCH_LEN, // the guard
            2 => self.scratch + SCRATCH_LEN - len.min(SCRATCH_LEN) / 2, // straddles it
            3 => slot_addr(self.rng.below(SLOTS as u64) as usize) + self.rng.below(SLOT_LEN),
            _ => self.scratch + SCRATCH_LEN - len.min(SCRATCH_LEN),
        }
    }

    /// Copies `v` to the end of the scratch area; its address.
    fn put<T: Copy>(&mut self, v: &T) -> u64 {
        let n = size_of::<T>() as u64;
        let at = self.scratch + SCRATCH_LEN - n;
        // SAFETY: the scratch area is ours, mapped read-write, n <= SCRATCH_LEN.
        unsafe {
            std::ptr::copy_nonoverlapping(v as *const T as *const u8, at as *mut u8, n as usize)
        };
        at
    }

    fn fill_scratch(&mut self, len: u64) {
        let len = len.min(SCRATCH_LEN);
        let at = self.scratch + SCRATCH_LEN - len;
        for off in (0..len).step_by(8) {
            let v = if self.rng.chance(500) {
                0
            } else {
                self.rng.wild()
            };
            let n = (len - off).min(8) as usize;
            // SAFETY: within the scratch area.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    &v as *const u64 as *const u8,
                    (at + off) as *mut u8,
                    n,
                )
            };
        }
    }

    // ----------------------------------------------------------------------
    // Operations

    fn op_open_dev(&mut self) {
        self.log("open /dev/mshv".into());
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(c"/dev/mshv".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        self.count("open", fd as i64);
        if fd >= 0 {
            let sh = self.sh.clone();
            self.store(&sh.dev, fd);
        }
    }

    fn op_create_partition(&mut self) {
        let dev = self.fd(&self.sh.clone().dev);
        let mut a = CreatePartitionV2 {
            pt_flags: (1 << 0) | (1 << 3),
            pt_num_cpu_fbanks: 2,
            ..Default::default()
        };
        match self.rng.below(6) {
            0 => a.pt_flags = self.rng.wild(),
            1 => a.pt_flags = 1,
            2 => a.pt_isolation = self.rng.below(3),
            3 => a.pt_num_cpu_fbanks = self.rng.below(4) as u16,
            4 => a.pt_rsvd[self.rng.below(6) as usize] = 1,
            _ => {}
        }
        let p = if self.rng.chance(50) {
            self.ptr(48)
        } else {
            self.put(&a)
        };
        let fd = self.ioctl("CREATE_PARTITION", dev, DEV_CREATE_PARTITION, p);
        if fd >= 0 {
            if self.rng.chance(800) {
                self.ioctl("INITIALIZE_PARTITION", fd as i32, PT_INITIALIZE, 0);
            }
            let sh = self.sh.clone();
            self.store(&sh.parts, fd as i32);
        }
    }

    fn op_initialize(&mut self) {
        let p = self.fd(&self.sh.clone().parts);
        let arg = self.rng.wild();
        self.ioctl("INITIALIZE_PARTITION", p, PT_INITIALIZE, arg);
    }

    fn op_create_vp(&mut self) {
        let p = self.fd(&self.sh.clone().parts);
        let idx: u32 = match self.rng.below(4) {
            0 => self.rng.pick(&[255, 256, 1024, u32::MAX]),
            _ => self.rng.below(4) as u32,
        };
        let ptr = if self.rng.chance(50) {
            self.ptr(4)
        } else {
            self.put(&idx)
        };
        let fd = self.ioctl("CREATE_VP", p, PT_CREATE_VP, ptr);
        if fd >= 0 {
            let sh = self.sh.clone();
            self.store(&sh.vps, fd as i32);
        }
    }

    fn op_hvcall(&mut self) {
        let sh = self.sh.clone();
        let fd = match self.rng.below(3) {
            0 => self.fd(&sh.dev),
            1 => self.fd(&sh.parts),
            _ => self.fd(&sh.vps),
        };
        let in_sz = self.rng.pick(&[0u16, 8, 16, 24, 64, 4096, 4097, u16::MAX]);
        let out_sz = self.rng.pick(&[0u16, 8, 16, 64, 4096, 4097, u16::MAX]);
        self.fill_scratch(8192);
        let in_ptr = self.scratch + SCRATCH_LEN - 8192 - 4096;
        let a = Hvcall {
            code: if self.rng.chance(100) {
                self.rng.next() as u16
            } else {
                self.rng.pick(&HVCALLS)
            },
            reps: self.rng.pick(&[0u16, 0, 1, 2, 64, u16::MAX]),
            in_sz,
            out_sz,
            status: if self.rng.chance(50) { 1 } else { 0 },
            rsvd: if self.rng.chance(30) {
                [1, 0, 0, 0, 0, 0]
            } else {
                [0; 6]
            },
            in_ptr: if self.rng.chance(100) {
                self.ptr(in_sz as u64)
            } else {
                in_ptr
            },
            out_ptr: self.ptr(out_sz as u64),
        };
        let p = if self.rng.chance(30) {
            self.ptr(32)
        } else {
            self.put(&a)
        };
        self.ioctl("ROOT_HVCALL", fd, ROOT_HVCALL, p);
    }

    /// A user address for a region of `size` bytes.
    fn region_uaddr(&mut self, size: u64) -> u64 {
        match self.rng.below(12) {
            0 => self.rng.pick(&BAD_PTRS),
            1 => self.scratch + self.rng.below(SCRATCH_LEN + GUARD_LEN) / PAGE * PAGE,
            2 => slot_addr(self.rng.below(SLOTS as u64) as usize) + 1,
            _ => {
                let s = slot_addr(self.rng.below(SLOTS as u64) as usize);
                let room = SLOT_LEN.saturating_sub(size.min(SLOT_LEN));
                s + self.rng.below(room / PAGE + 1) * PAGE
            }
        }
    }

    fn region_size(&mut self) -> u64 {
        match self.rng.below(10) {
            0 => 0,
            1 => self.rng.below(SLOT_LEN) | 1,
            2 => SLOT_LEN + PAGE, // longer than the VMA
            3 if self.sh.wild_sizes => 1 << self.rng.pick(&[32u64, 44, 52, 62]),
            3 => 2 * SLOT_LEN,
            4 => 2 << 20,
            _ => (1 + self.rng.below(SLOT_LEN / PAGE / 4)) * PAGE,
        }
    }

    fn region_gfn(&mut self) -> u64 {
        match self.rng.below(8) {
            0 => self.rng.wild(),
            1 => (1u64 << 40) - 1,
            2 => 0xffff0,
            _ => self.rng.below(0x100) * 0x10,
        }
    }

    fn op_set_memory(&mut self) {
        let p = self.fd(&self.sh.clone().parts);
        let (size, userspace_addr) = if self.sh.pfnmap >= 0 && self.rng.chance(125) {
            // An MMIO region: within the window, or one page past it.
            let pages = 1 + self.rng.below(MMIO_PAGES + 1);
            let first = self.rng.below(MMIO_PAGES.saturating_sub(pages) + 1);
            (pages * PAGE, MMIO_BASE + first * PAGE)
        } else {
            let size = self.region_size();
            (size, self.region_uaddr(size))
        };
        let mut r = MemRegion {
            size,
            guest_pfn: self.region_gfn(),
            userspace_addr,
            flags: match self.rng.below(8) {
                0 => self.rng.next() as u8,
                1 => 1 << 2, // unmap
                2 => 0,      // read-only
                3 => 2,
                _ => 3,
            },
            rsvd: [0; 7],
        };
        if self.rng.chance(30) {
            r.rsvd[self.rng.below(7) as usize] = 1;
        }
        let ptr = if self.rng.chance(30) {
            self.ptr(32)
        } else {
            self.put(&r)
        };
        let res = self.ioctl("SET_GUEST_MEMORY", p, PT_SET_GUEST_MEMORY, ptr);
        // Unmap it again soon, sometimes.
        if res == 0 && r.flags & 4 == 0 && self.rng.chance(300) {
            r.flags = 4;
            let ptr = self.put(&r);
            self.ioctl("SET_GUEST_MEMORY", p, PT_SET_GUEST_MEMORY, ptr);
        }
    }

    fn op_irqfd(&mut self) {
        let sh = self.sh.clone();
        let p = self.fd(&sh.parts);
        let a = Irqfd {
            fd: self.fd(&sh.efds),
            resamplefd: self.fd(&sh.efds),
            gsi: if self.rng.chance(100) {
                self.rng.wild() as u32
            } else {
                self.rng.below(32) as u32
            },
            flags: match self.rng.below(8) {
                0 => self.rng.next() as u32,
                1 | 2 => 1, // deassign
                3 => 2,     // resample
                _ => 0,
            },
        };
        let ptr = if self.rng.chance(30) {
            self.ptr(16)
        } else {
            self.put(&a)
        };
        self.ioctl("IRQFD", p, PT_IRQFD, ptr);
    }

    fn op_ioeventfd(&mut self) {
        let sh = self.sh.clone();
        let p = self.fd(&sh.parts);
        let mut a = Ioeventfd {
            datamatch: self.rng.wild(),
            addr: if self.rng.chance(100) {
                self.rng.wild()
            } else {
                0xd000_0000 + self.rng.below(16) * 8
            },
            len: self.rng.pick(&[0, 1, 2, 3, 4, 8, 16]),
            fd: self.fd(&sh.efds),
            flags: match self.rng.below(8) {
                0 => self.rng.next() as u32,
                1 | 2 => 4 | (self.rng.below(2) as u32),
                3 => 2,
                4 => 1,
                _ => 0,
            },
            rsvd: [0; 4],
        };
        if self.rng.chance(30) {
            a.rsvd[0] = 1;
        }
        let ptr = if self.rng.chance(30) {
            self.ptr(32)
        } else {
            self.put(&a)
        };
        self.ioctl("IOEVENTFD", p, PT_IOEVENTFD, ptr);
    }

    fn op_msi_routing(&mut self) {
        let p = self.fd(&self.sh.clone().parts);
        let nr = match self.rng.below(8) {
            0 => self.rng.pick(&[4096u32, 4097, u32::MAX, 1 << 20]),
            1 => 0,
            _ => 1 + self.rng.below(8) as u32,
        };
        let n = (nr as u64).min(4096);
        let len = 8 + 16 * n;
        let at = self.scratch + SCRATCH_LEN - len.min(SCRATCH_LEN);
        let mut words = vec![nr, if self.rng.chance(30) { 1 } else { 0 }];
        for _ in 0..n.min((SCRATCH_LEN - 8) / 16) {
            let gsi = if self.rng.chance(50) {
                self.rng.wild() as u32
            } else {
                self.rng.below(32) as u32
            };
            let apic = self.rng.below(5) as u32;
            let lo = if self.rng.chance(50) {
                self.rng.next() as u32
            } else {
                0xfee0_0000 | (apic << 12)
            };
            let hi = if self.rng.chance(30) { 1 } else { 0 };
            let data = if self.rng.chance(50) {
                self.rng.next() as u32
            } else {
                (0x20 + self.rng.below(0xe0) as u32) | ((self.rng.below(2) as u32) << 15)
            };
            words.extend_from_slice(&[gsi, lo, hi, data]);
        }
        let bytes = (words.len() * 4) as u64;
        let at = at.max(self.scratch + SCRATCH_LEN - bytes);
        // SAFETY: `bytes` <= SCRATCH_LEN, within the scratch area.
        unsafe {
            std::ptr::copy_nonoverlapping(
                words.as_ptr() as *const u8,
                at as *mut u8,
                bytes as usize,
            )
        };
        let ptr = if self.rng.chance(30) {
            self.ptr(len)
        } else {
            at
        };
        self.ioctl("SET_MSI_ROUTING", p, PT_SET_MSI_ROUTING, ptr);
    }

    fn op_gpap(&mut self) {
        let p = self.fd(&self.sh.clone().parts);
        let page_count = match self.rng.below(6) {
            0 => self.rng.wild(),
            1 => 0,
            2 => SCRATCH_LEN * 8 + 1, // one bit more than the buffer
            _ => 1 + self.rng.below(0x2000),
        };
        let a = Gpap {
            access_type: self.rng.below(3) as u8,
            access_op: self.rng.below(4) as u8,
            rsvd: if self.rng.chance(30) {
                [1, 0, 0, 0, 0, 0]
            } else {
                [0; 6]
            },
            page_count,
            gpap_base: self.region_gfn(),
            // Large counts only into the scratch area: its guard ends the
            // copy-out early instead of the driver walking 2^32 pages.
            bitmap_ptr: if page_count <= 0x2000 {
                self.ptr(page_count.div_ceil(8))
            } else {
                self.scratch + SCRATCH_LEN - 4096
            },
        };
        let ptr = if self.rng.chance(30) {
            self.ptr(32)
        } else {
            self.put(&a)
        };
        self.ioctl("GET_GPAP_ACCESS_BITMAP", p, PT_GET_GPAP, ptr);
    }

    fn op_vp_state(&mut self) {
        let vp = self.fd(&self.sh.clone().vps);
        let buf_sz = self
            .rng
            .pick(&[0u32, 1, 4096, 8192, 4095, 0x10000, 0x10001, u32::MAX]);
        let set = self.rng.chance(400);
        if set {
            self.fill_scratch(buf_sz as u64);
        }
        let a = VpState {
            type_: self.rng.below(7) as u8,
            rsvd: if self.rng.chance(30) {
                [1, 0, 0]
            } else {
                [0; 3]
            },
            buf_sz,
            buf_ptr: self.ptr(buf_sz as u64),
        };
        let ptr = if self.rng.chance(30) {
            self.ptr(16)
        } else {
            self.put(&a)
        };
        if set {
            self.ioctl("SET_VP_STATE", vp, VP_SET_STATE, ptr);
        } else {
            self.ioctl("GET_VP_STATE", vp, VP_GET_STATE, ptr);
        }
    }

    fn op_run_vp(&mut self) {
        let vp = self.fd(&self.sh.clone().vps);
        let ptr = self.ptr(256);
        self.run_vp(vp, ptr);
    }

    fn run_vp(&mut self, vp: i32, ptr: u64) -> i64 {
        self.ioctl("RUN_VP", vp, VP_RUN, ptr)
    }

    fn op_vp_mmap(&mut self) {
        let vp = self.fd(&self.sh.clone().vps);
        let off = self.rng.pick(&[0u64, 1, 1, 2, 3, 1 << 20]) * PAGE;
        let len = self.rng.pick(&[PAGE, PAGE, 2 * PAGE, 3 * PAGE]);
        let prot = self.rng.pick(&[
            libc::PROT_READ,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_EXEC,
        ]);
        let flags = if self.rng.chance(100) {
            libc::MAP_PRIVATE
        } else {
            libc::MAP_SHARED
        };
        self.log(format!(
            "mmap vp fd {vp} off {off:#x} len {len:#x} prot {prot} flags {flags}"
        ));
        // SAFETY: a new mapping chosen by the kernel.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                prot,
                flags,
                vp,
                off as i64,
            )
        };
        let r = if m == libc::MAP_FAILED { -1 } else { 0 };
        self.count("mmap_vp", r);
        if m != libc::MAP_FAILED {
            // Read it through the kernel: a fault is an error, not a SIGBUS.
            let mut buf = [0u8; 64];
            let n = read_self(m as u64, &mut buf);
            self.count("mmap_vp_read", n);
            if self.rng.chance(300) && prot & libc::PROT_WRITE != 0 {
                let n = write_self(m as u64 + 8, &[0xaa; 16]);
                self.count("mmap_vp_write", n);
            }
            // Sometimes a RUN_VP while it is mapped.
            if self.rng.chance(200) {
                let ptr = self.ptr(256);
                self.run_vp(vp, ptr);
            }
            // SAFETY: the mapping made above.
            unsafe { libc::munmap(m, len as usize) };
        }
    }

    fn op_eventfd(&mut self) {
        let sh = self.sh.clone();
        match self.rng.below(4) {
            0 | 1 => {
                // SAFETY: plain syscall.
                let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
                self.count("eventfd", fd as i64);
                if fd >= 0 {
                    self.store(&sh.efds, fd);
                }
            }
            2 => {
                let fd = self.fd(&sh.efds);
                let v: u64 = 1;
                self.log(format!("eventfd write fd {fd}"));
                // SAFETY: 8 bytes from a local.
                let r = unsafe { libc::write(fd, &v as *const u64 as *const _, 8) };
                self.count("eventfd_write", r as i64);
            }
            _ => {
                let i = self.rng.below(sh.efds.len() as u64) as usize;
                let old = sh.efds[i].swap(-1, Relaxed);
                if old >= 0 {
                    self.log(format!("close eventfd {old}"));
                    // SAFETY: swapped out of the table: ours to close.
                    unsafe { libc::close(old) };
                }
            }
        }
    }

    /// Closes an fd another thread may be using, or dup2s one over another.
    fn op_close(&mut self) {
        let sh = self.sh.clone();
        let tables: [&[AtomicI32]; 3] = [&sh.dev, &sh.parts, &sh.vps];
        let t = tables[self.rng.below(3) as usize];
        let i = self.rng.below(t.len() as u64) as usize;
        if self.rng.chance(200) {
            // Replace an fd with a dup of another: the number stays valid
            // but names another file.
            let other = self.fd(&sh.parts);
            // SAFETY: plain syscall.
            let d = unsafe { libc::fcntl(other, libc::F_DUPFD_CLOEXEC, 0) };
            self.count("dup", d as i64);
            if d >= 0 {
                self.store(t, d);
            }
            return;
        }
        let old = t[i].swap(-1, Relaxed);
        if old >= 0 {
            self.log(format!("close {old}"));
            // SAFETY: swapped out of the table: ours to close.
            let r = unsafe { libc::close(old) };
            self.count("close", r as i64);
        }
    }

    /// Linux moves, drops or protects the pages behind guest regions.
    fn op_churn(&mut self) {
        if self.sh.pfnmap >= 0 && self.rng.chance(100) {
            return self.churn_mmio();
        }
        let s = self.rng.below(SLOTS as u64) as usize;
        let base = slot_addr(s);
        let off = self.rng.below(SLOT_LEN / PAGE) * PAGE;
        let len = (1 + self.rng.below(256)).min((SLOT_LEN - off) / PAGE) * PAGE;
        let a = base + off;
        let sh = self.sh.clone();
        match self.rng.below(12) {
            0..=3 => {
                let adv = self.rng.pick(&[
                    libc::MADV_DONTNEED,
                    libc::MADV_PAGEOUT,
                    libc::MADV_COLD,
                    libc::MADV_HUGEPAGE,
                    libc::MADV_NOHUGEPAGE,
                    libc::MADV_FREE,
                    libc::MADV_COLLAPSE,
                    libc::MADV_WILLNEED,
                ]);
                self.log(format!("madvise {a:#x} {len:#x} {adv}"));
                // SAFETY: within the pool, which holds nothing of ours.
                let r = unsafe { libc::madvise(a as *mut _, len as usize, adv) };
                self.count("madvise", r as i64);
            }
            4 => {
                self.log(format!("munmap {a:#x} {len:#x}"));
                // SAFETY: within the pool.
                let r = unsafe { libc::munmap(a as *mut _, len as usize) };
                self.count("munmap", r as i64);
            }
            5 => {
                let prot = self.rng.pick(&[
                    libc::PROT_NONE,
                    libc::PROT_READ,
                    libc::PROT_READ | libc::PROT_WRITE,
                ]);
                self.log(format!("mprotect {a:#x} {len:#x} {prot}"));
                // SAFETY: within the pool.
                let r = unsafe { libc::mprotect(a as *mut _, len as usize, prot) };
                self.count("mprotect", r as i64);
            }
            6 => {
                // Move a piece to another place in the same slot.
                let to = base + self.rng.below((SLOT_LEN - len) / PAGE + 1) * PAGE;
                self.log(format!("mremap {a:#x} {len:#x} -> {to:#x}"));
                // SAFETY: source and target within the pool.
                let r = unsafe {
                    libc::mremap(
                        a as *mut _,
                        len as usize,
                        len as usize,
                        libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                        to as *mut libc::c_void,
                    )
                };
                self.count("mremap", if r == libc::MAP_FAILED { -1 } else { 0 });
            }
            7 => {
                // Reset the slot: fresh anonymous memory.
                let _g = sh.slot_lock[s].lock().unwrap();
                self.log(format!("reset slot {s}"));
                let r = map_slot(s);
                self.count("mmap_slot", r);
            }
            8 => self.fork_child(s),
            _ => {
                // The VMM writes (through the kernel: no SIGSEGV on a hole).
                let v = vec![self.rng.next() as u8; len.min(64 * PAGE) as usize];
                self.log(format!("write {a:#x} {:#x}", v.len()));
                let r = write_self(a, &v);
                self.count("vmm_write", r);
            }
        }
    }

    /// Linux takes away or changes the MMIO window behind MMIO regions.
    fn churn_mmio(&mut self) {
        let off = self.rng.below(MMIO_PAGES) * PAGE;
        let len = (1 + self.rng.below(MMIO_PAGES - off / PAGE)) * PAGE;
        let a = MMIO_BASE + off;
        match self.rng.below(3) {
            0 => {
                self.log(format!("munmap mmio {a:#x} {len:#x}"));
                // SAFETY: within the MMIO window, which holds nothing of ours.
                let r = unsafe { libc::munmap(a as *mut _, len as usize) };
                self.count("munmap_mmio", r as i64);
            }
            1 => {
                let prot = self
                    .rng
                    .pick(&[libc::PROT_READ, libc::PROT_READ | libc::PROT_WRITE]);
                self.log(format!("mprotect mmio {a:#x} {len:#x} {prot}"));
                // SAFETY: within the MMIO window.
                let r = unsafe { libc::mprotect(a as *mut _, len as usize, prot) };
                self.count("mprotect_mmio", r as i64);
            }
            _ => {
                self.log("reset mmio window".into());
                let r = map_mmio(self.sh.pfnmap);
                self.count("mmap_mmio", r);
            }
        }
    }

    fn fork_child(&mut self, s: usize) {
        let sh = self.sh.clone();
        let vp = self.fd(&sh.vps);
        let pt = self.fd(&sh.parts);
        let what = self.rng.below(3);
        let page = slot_addr(s) + self.rng.below(SLOT_LEN / PAGE) * PAGE;
        let run = self.scratch + SCRATCH_LEN - 256;
        let fork_ioctls = self.sh.fork_ioctls;
        self.log(format!(
            "fork (child: write {page:#x}, then {what} on vp {vp} pt {pt})"
        ));
        // SAFETY: the child only makes system calls and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // A VP left halted with interrupts on would block RUN_VP:
            // SIGALRM's default action ends the child.
            // SAFETY: plain syscall.
            unsafe { libc::alarm(2) };
            // SAFETY: a NUL-terminated path; the parent's /proc/self/mem
            // names the parent's mm.
            let mem = unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR) };
            let _ = write_mem(mem, page, &[0x55; 64]);
            if fork_ioctls {
                // SAFETY: raw syscalls in the child; pointers into memory
                // the child inherited.
                unsafe {
                    match what {
                        0 => libc::ioctl(vp, VP_RUN as _, run),
                        1 => libc::ioctl(pt, PT_INITIALIZE as _, 0),
                        _ => 0,
                    };
                }
            }
            // SAFETY: leaves the child without running atexit handlers.
            unsafe { libc::_exit(0) };
        }
        self.count("fork", pid as i64);
        if pid > 0 {
            let mut st = 0;
            // Five seconds, then SIGKILL; a child that does not die even
            // then is stuck in the kernel, and the stall check reports it.
            for _ in 0..500 {
                // SAFETY: our child.
                if unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } != 0 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            self.log(format!("child {pid} still running after 5 s: SIGKILL"));
            // SAFETY: our child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut st, 0)
            };
        }
    }

    /// A tiny real-mode guest from the reset vector: loads and stores at
    /// random places (regions mapped read-write and read-only, and
    /// unmapped ones), a REP STOSB/MOVSB, then HLT.
    fn op_guest(&mut self) {
        let sh = self.sh.clone();
        let dev = self.fd(&sh.dev);
        let a = CreatePartitionV2 {
            pt_flags: (1 << 0) | (1 << 3),
            pt_num_cpu_fbanks: 2,
            ..Default::default()
        };
        let ap = self.put(&a);
        let pt = self.ioctl("CREATE_PARTITION", dev, DEV_CREATE_PARTITION, ap);
        if pt < 0 {
            return;
        }
        let pt = pt as i32;
        self.ioctl("INITIALIZE_PARTITION", pt, PT_INITIALIZE, 0);
        // Code: 64 KiB at GPA 0xFFFF0000 from a slot.
        let s = self.rng.below(SLOTS as u64) as usize;
        let code_at = slot_addr(s) + self.rng.below((SLOT_LEN - 0x10000) / PAGE) * PAGE;
        let mut code = vec![0xf4u8; 0x10000];
        // At the reset vector (offset 0xFFF0): JMP near to 0xFF00.
        code[0xfff0] = 0xe9;
        code[0xfff1..0xfff3].copy_from_slice(&(0xff00u16.wrapping_sub(0xfff3)).to_le_bytes());
        let mut c = Vec::new();
        for _ in 0..self.rng.below(12) + 1 {
            match self.rng.below(6) {
                0 => {
                    let seg = self.rng.pick(&[0u16, 0x1000, 0x4000, 0x8000, 0xf000]);
                    c.push(0xb8);
                    c.extend_from_slice(&seg.to_le_bytes());
                    c.extend_from_slice(&[0x8e, 0xd8, 0x8e, 0xc0]); // mov ds, ax; mov es, ax
                }
                1 | 2 => {
                    let off = self.rng.next() as u16;
                    c.push(0xbb);
                    c.extend_from_slice(&off.to_le_bytes());
                    c.extend_from_slice(if self.rng.chance(500) {
                        &[0x8a, 0x07]
                    } else {
                        &[0x88, 0x07]
                    });
                }
                3 => {
                    let di = self.rng.next() as u16;
                    let si = self.rng.next() as u16;
                    let cx = self.rng.below(0x3000) as u16;
                    c.push(0xbf);
                    c.extend_from_slice(&di.to_le_bytes());
                    c.push(0xbe);
                    c.extend_from_slice(&si.to_le_bytes());
                    c.push(0xb9);
                    c.extend_from_slice(&cx.to_le_bytes());
                    c.extend_from_slice(&[
                        0xfc,
                        0xf3,
                        if self.rng.chance(500) { 0xaa } else { 0xa4 },
                    ]);
                }
                4 => c.extend_from_slice(&[0xe6, 0x80]), // out 0x80, al
                _ => c.push(0x90),
            }
        }
        c.push(0xf4);
        c.truncate(0xf0);
        code[0xff00..0xff00 + c.len()].copy_from_slice(&c);
        let w = write_self(code_at, &code);
        self.count("vmm_write", w);
        let mut r = MemRegion {
            size: 0x10000,
            guest_pfn: 0xffff0,
            userspace_addr: code_at,
            flags: 3,
            rsvd: [0; 7],
        };
        let rp = self.put(&r);
        self.ioctl("SET_GUEST_MEMORY", pt, PT_SET_GUEST_MEMORY, rp);
        // Data: a few regions below 1 MiB + 64 KiB, some read-only.
        for _ in 0..self.rng.below(4) {
            let pages = 1 + self.rng.below(64);
            let s = self.rng.below(SLOTS as u64) as usize;
            r = MemRegion {
                size: pages * PAGE,
                guest_pfn: self.rng.below(0x110),
                userspace_addr: slot_addr(s) + self.rng.below(SLOT_LEN / PAGE - pages) * PAGE,
                flags: self.rng.pick(&[0u8, 3, 3, 1, 2]),
                rsvd: [0; 7],
            };
            let rp = self.put(&r);
            self.ioctl("SET_GUEST_MEMORY", pt, PT_SET_GUEST_MEMORY, rp);
        }
        let idx: u32 = 0;
        let ip = self.put(&idx);
        let vp = self.ioctl("CREATE_VP", pt, PT_CREATE_VP, ip);
        if vp >= 0 {
            let run = self.scratch + SCRATCH_LEN - 256;
            for _ in 0..self.rng.below(6) + 1 {
                if self.run_vp(vp as i32, run) < 0 {
                    break;
                }
            }
            // Leave them to the other threads.
            self.store(&sh.vps, vp as i32);
        }
        self.store(&sh.parts, pt);
    }

    /// An ioctl number the driver does not know, or a known one on the
    /// wrong fd type.
    fn op_garbage_ioctl(&mut self) {
        let sh = self.sh.clone();
        let fd = match self.rng.below(3) {
            0 => self.fd(&sh.dev),
            1 => self.fd(&sh.parts),
            _ => self.fd(&sh.vps),
        };
        let cmd = match self.rng.below(3) {
            0 => self.rng.next() & 0xffff_ffff,
            1 => ioc(
                self.rng.below(4),
                self.rng.below(0x20),
                self.rng.below(0x400),
            ),
            _ => self.rng.pick(&[
                DEV_CREATE_PARTITION,
                ROOT_HVCALL,
                PT_INITIALIZE,
                PT_CREATE_VP,
                PT_SET_GUEST_MEMORY,
                PT_IRQFD,
                PT_IOEVENTFD,
                PT_SET_MSI_ROUTING,
                PT_GET_GPAP,
                VP_RUN,
                VP_GET_STATE,
                VP_SET_STATE,
            ]),
        };
        self.fill_scratch(4096);
        let p = self.ptr(4096);
        self.ioctl("garbage", fd, cmd, p);
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=1 => self.op_open_dev(),
            2..=5 => self.op_create_partition(),
            6..=7 => self.op_initialize(),
            8..=12 => self.op_create_vp(),
            13..=20 => self.op_hvcall(),
            21..=30 => self.op_set_memory(),
            31..=36 => self.op_irqfd(),
            37..=41 => self.op_ioeventfd(),
            42..=45 => self.op_msi_routing(),
            46..=49 => self.op_gpap(),
            50..=55 => self.op_vp_state(),
            56..=62 => self.op_run_vp(),
            63..=66 => self.op_vp_mmap(),
            67..=72 => self.op_eventfd(),
            73..=75 => self.op_close(),
            76..=87 => self.op_churn(),
            88..=93 => self.op_guest(),
            _ => self.op_garbage_ioctl(),
        }
    }
}

/// /proc/self/mem, opened once (a forked child opens its own).
static SELF_MEM: AtomicI32 = AtomicI32::new(-1);

fn self_mem() -> i32 {
    SELF_MEM.load(Relaxed)
}

/// Copies `buf` to our own address `addr` through /proc/self/mem (as a
/// debugger would, FOLL_FORCE: read-only pages are written too): a hole is
/// EIO, not a signal. Bytes written, or -1 with errno set.
fn write_self(addr: u64, buf: &[u8]) -> i64 {
    write_mem(self_mem(), addr, buf)
}

fn write_mem(fd: i32, addr: u64, buf: &[u8]) -> i64 {
    // SAFETY: the kernel checks the target range; the source is `buf`.
    unsafe { libc::pwrite(fd, buf.as_ptr() as *const _, buf.len(), addr as i64) as i64 }
}

fn read_self(addr: u64, buf: &mut [u8]) -> i64 {
    // SAFETY: as in write_mem; the destination is `buf`.
    unsafe {
        libc::pread(
            self_mem(),
            buf.as_mut_ptr() as *mut _,
            buf.len(),
            addr as i64,
        ) as i64
    }
}

/// `mmap` read-write at exactly `addr` (`MAP_FIXED` plus `flags`), over
/// whatever is there: 0, or -1 on failure.
///
/// # Safety
///
/// `[addr, addr + len)` holds nothing the program uses but the pool or the
/// MMIO window, which these mappings replace.
unsafe fn map_fixed(addr: u64, len: u64, flags: i32, fd: i32) -> i64 {
    // SAFETY: by the function's contract the range is ours to replace.
    let m = unsafe {
        libc::mmap(
            addr as *mut _,
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            flags | libc::MAP_FIXED,
            fd,
            0,
        )
    };
    if m == libc::MAP_FAILED {
        -1
    } else {
        0
    }
}

/// Maps the whole MMIO window (shared, read-write) over whatever is there.
fn map_mmio(fd: i32) -> i64 {
    // SAFETY: the MMIO window holds nothing else.
    unsafe { map_fixed(MMIO_BASE, MMIO_PAGES * PAGE, libc::MAP_SHARED, fd) }
}

fn map_slot(s: usize) -> i64 {
    // SAFETY: the pool holds nothing but slots.
    unsafe {
        map_fixed(
            slot_addr(s),
            SLOT_LEN,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
        )
    }
}

// ---------------------------------------------------------------------------
// Kernel log watch

const REPORT: [&str; 9] = [
    "BUG:",
    "WARNING:",
    "Oops",
    "KASAN",
    "possible circular locking",
    "possible recursive locking",
    "Call Trace",
    "kmemleak:",
    "UBSAN",
];

/// /dev/kmsg from its end; lines that look like a kernel report.
struct Kmsg(Option<std::fs::File>);

impl Kmsg {
    fn open() -> Kmsg {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok();
        if let Some(f) = &f {
            use std::os::fd::AsRawFd;
            // SAFETY: plain syscall on our fd.
            unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_END) };
        }
        Kmsg(f)
    }

    /// New kernel log lines, and whether one of them is a report.
    fn poll(&mut self, out: &mut Vec<String>) -> bool {
        let Some(f) = &mut self.0 else { return false };
        let mut hit = false;
        let mut buf = vec![0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let s = String::from_utf8_lossy(&buf[..n]).to_string();
                    let text = s
                        .split_once(';')
                        .map_or(s.as_str(), |(_, t)| t)
                        .trim_end()
                        .to_string();
                    if REPORT.iter().any(|p| text.contains(p)) {
                        hit = true;
                    }
                    out.push(text);
                    if out.len() > 400 {
                        out.remove(0);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        hit
    }
}

// ---------------------------------------------------------------------------

/// No call completing for this long is a failure (a hang).
const STALL_SECS: u64 = 60;

fn print_report(sh: &Shared, klog: &[String], seed: u64) {
    println!(
        "mshv-fuzz: KERNEL REPORT or STALL (seed {seed:#018x}); the kernel log since the start:"
    );
    for l in klog {
        println!("  | {l}");
    }
    for (i, l) in sh.logs.iter().enumerate() {
        println!("mshv-fuzz: thread {i}'s last operations:");
        for s in l.lock().unwrap().iter() {
            println!("    {s}");
        }
    }
}

/// Where each thread (and each child of ours) waits in the kernel.
fn show_tasks(sh: &Shared) {
    let read = |p: String| std::fs::read_to_string(&p).unwrap_or_else(|e| format!("({p}: {e})"));
    let mut pids = Vec::new();
    for (i, t) in sh.ktids.iter().enumerate() {
        let tid = t.load(Relaxed);
        println!(
            "mshv-fuzz: thread {i} (tid {tid}): wchan {} state {}",
            read(format!("/proc/self/task/{tid}/wchan")),
            read(format!("/proc/self/task/{tid}/stat"))
                .split(' ')
                .nth(2)
                .unwrap_or("?")
        );
        print!("{}", read(format!("/proc/self/task/{tid}/stack")));
        println!(
            "mshv-fuzz: thread {i} syscall: {}",
            read(format!("/proc/self/task/{tid}/syscall")).trim()
        );
        if let Ok(c) = std::fs::read_to_string(format!("/proc/self/task/{tid}/children")) {
            pids.extend(c.split_whitespace().map(str::to_string));
        }
    }
    // The driver's trace events (enabled at start, see `enable_trace`):
    // what the stuck calls did last.
    if let Some(dir) = TRACEFS
        .iter()
        .find(|d| std::path::Path::new(d).join("trace").exists())
    {
        let t = read(format!("{dir}/trace"));
        let lines: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        println!(
            "mshv-fuzz: last mshv_rs trace events ({} buffered):",
            lines.len()
        );
        for l in &lines[lines.len().saturating_sub(40)..] {
            println!("    {l}");
        }
    }
    for pid in pids {
        println!(
            "mshv-fuzz: child {pid}: wchan {} stat {}",
            read(format!("/proc/{pid}/wchan")),
            read(format!("/proc/{pid}/stat"))
        );
        print!("{}", read(format!("/proc/{pid}/stack")));
    }
}

/// Where tracefs may be mounted.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Enables the driver's trace events into a small ring buffer, so that a
/// stall report can show what the stuck calls did last. Best effort.
fn enable_trace() {
    for dir in TRACEFS {
        let events = format!("{dir}/events/mshv_rs/enable");
        if std::path::Path::new(&events).exists() {
            let _ = std::fs::write(format!("{dir}/buffer_size_kb"), "256");
            let _ = std::fs::write(format!("{dir}/trace"), "");
            let _ = std::fs::write(&events, "1");
            return;
        }
    }
}

struct Args {
    seed: u64,
    minutes: f64,
    calls: u64,
    threads: usize,
    wild_sizes: bool,
    fork_ioctls: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        seed: 0,
        minutes: 1.0,
        calls: u64::MAX,
        threads: 4,
        wild_sizes: true,
        fork_ioctls: true,
    };
    let mut seeded = false;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{k} needs a value")))
        };
        match k.as_str() {
            "--seed" => {
                let v = val();
                a.seed = if let Some(h) = v.strip_prefix("0x") {
                    u64::from_str_radix(h, 16)
                } else {
                    v.parse()
                }
                .unwrap_or_else(|_| usage("bad --seed"));
                seeded = true;
            }
            "--minutes" => a.minutes = val().parse().unwrap_or_else(|_| usage("bad --minutes")),
            "--calls" => a.calls = val().parse().unwrap_or_else(|_| usage("bad --calls")),
            "--threads" => a.threads = val().parse().unwrap_or_else(|_| usage("bad --threads")),
            "--wild-sizes" => a.wild_sizes = true,
            "--no-wild-sizes" => a.wild_sizes = false,
            "--no-fork-ioctls" => a.fork_ioctls = false,
            _ => usage(&format!("unknown argument {k}")),
        }
    }
    if !seeded {
        let mut b = [0u8; 8];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = f.read_exact(&mut b);
        }
        a.seed = u64::from_le_bytes(b);
    }
    a.threads = a.threads.clamp(1, 16);
    a
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "mshv-fuzz: {msg}\nusage: mshv-fuzz [--seed N|0xHEX] [--minutes M] [--calls N] [--threads T] [--no-wild-sizes] [--no-fork-ioctls]"
    );
    std::process::exit(2)
}

fn main() {
    let args = parse_args();
    println!(
        "mshv-fuzz: seed {:#018x} threads {} minutes {} calls {}{}{}",
        args.seed,
        args.threads,
        args.minutes,
        if args.calls == u64::MAX {
            "unlimited".into()
        } else {
            args.calls.to_string()
        },
        if args.wild_sizes {
            ""
        } else {
            " no-wild-sizes"
        },
        if args.fork_ioctls {
            ""
        } else {
            " no-fork-ioctls"
        },
    );
    stop::install_wake_handler();
    // The pool: reserve it, then map each slot.
    // SAFETY: a fixed address far from everything (MAP_FIXED_NOREPLACE).
    let m = unsafe {
        libc::mmap(
            POOL_BASE as *mut _,
            (SLOTS as u64 * SLOT_LEN) as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if m as u64 != POOL_BASE {
        eprintln!("mshv-fuzz: cannot reserve the pool at {POOL_BASE:#x}");
        std::process::exit(2);
    }
    for s in 0..SLOTS {
        map_slot(s);
    }
    // SAFETY: a NUL-terminated path.
    let pfnmap = unsafe { libc::open(PFNMAP.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if pfnmap >= 0 {
        // The window is reserved first, so a reset never lands elsewhere.
        // SAFETY: a fixed address right after the pool (MAP_FIXED_NOREPLACE).
        let m = unsafe {
            libc::mmap(
                MMIO_BASE as *mut _,
                (MMIO_PAGES * PAGE) as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if m as u64 != MMIO_BASE || map_mmio(pfnmap) != 0 {
            eprintln!("mshv-fuzz: cannot map {PFNMAP:?} at {MMIO_BASE:#x}");
            std::process::exit(2);
        }
    }
    println!(
        "mshv-fuzz: MMIO regions: {}",
        if pfnmap >= 0 {
            "sim/pfnmap"
        } else {
            "none (no emulator)"
        }
    );
    let sh = Arc::new(Shared {
        dev: std::array::from_fn(|_| AtomicI32::new(-1)),
        parts: std::array::from_fn(|_| AtomicI32::new(-1)),
        vps: std::array::from_fn(|_| AtomicI32::new(-1)),
        efds: std::array::from_fn(|_| AtomicI32::new(-1)),
        slot_lock: (0..SLOTS).map(|_| Mutex::new(())).collect(),
        stop: AtomicBool::new(false),
        calls: AtomicU64::new(0),
        in_run: (0..args.threads).map(|_| AtomicU64::new(0)).collect(),
        tids: (0..args.threads).map(|_| AtomicU64::new(0)).collect(),
        ktids: (0..args.threads).map(|_| AtomicI32::new(0)).collect(),
        logs: (0..args.threads)
            .map(|_| Mutex::new(VecDeque::new()))
            .collect(),
        start: Instant::now(),
        wild_sizes: args.wild_sizes,
        fork_ioctls: args.fork_ioctls,
        pfnmap,
    });
    enable_trace();
    // SAFETY: a NUL-terminated path.
    let mem = unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if mem < 0 {
        eprintln!("mshv-fuzz: open /proc/self/mem: {}", errname(errno()));
        std::process::exit(2);
    }
    SELF_MEM.store(mem, Relaxed);
    // SAFETY: a NUL-terminated path.
    let dev = unsafe { libc::open(c"/dev/mshv".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if dev < 0 {
        eprintln!("mshv-fuzz: open /dev/mshv: {}", errname(errno()));
        std::process::exit(2);
    }
    sh.dev[0].store(dev, Relaxed);
    let mut kmsg = Kmsg::open();
    let mut klog = Vec::new();
    kmsg.poll(&mut klog);
    klog.clear();

    let mut handles = Vec::new();
    for id in 0..args.threads {
        let sh = sh.clone();
        let seed = args.seed ^ (id as u64).wrapping_mul(0xa076_1d64_78bd_642f);
        let limit = args.calls;
        handles.push(std::thread::spawn(move || {
            // SAFETY: pthread_self is always safe.
            sh.tids[id].store(unsafe { libc::pthread_self() } as u64, Relaxed);
            // SAFETY: plain syscall.
            sh.ktids[id].store(unsafe { libc::gettid() }, Relaxed);
            // Scratch + guard, placed by the kernel.
            // SAFETY: a new private mapping.
            let scratch = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    (SCRATCH_LEN + GUARD_LEN) as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            } as u64;
            // SAFETY: the guard part of that mapping.
            unsafe {
                libc::mprotect(
                    (scratch + SCRATCH_LEN) as *mut _,
                    GUARD_LEN as usize,
                    libc::PROT_NONE,
                )
            };
            let mut w = Worker {
                id,
                rng: Rng(seed),
                sh: sh.clone(),
                st: Stats::default(),
                scratch,
                seq: 0,
            };
            while !sh.stop.load(Relaxed) && sh.calls.load(Relaxed) < limit {
                w.step();
            }
            w.st
        }));
    }

    let deadline = sh.start + Duration::from_secs_f64(args.minutes * 60.0);
    let mut last_print = Instant::now();
    let mut report = false;
    let mut stalled = false;
    let mut last_calls = 0;
    let mut last_progress = Instant::now();
    while Instant::now() < deadline && sh.calls.load(Relaxed) < args.calls {
        std::thread::sleep(Duration::from_millis(100));
        let now = sh.start.elapsed().as_millis() as u64;
        for (i, r) in sh.in_run.iter().enumerate() {
            let since = r.load(Relaxed);
            if since != 0 && now.saturating_sub(since) > 1000 {
                // SAFETY: a thread of ours, joined only after this loop.
                unsafe { stop::wake(sh.tids[i].load(Relaxed)) };
            }
        }
        if kmsg.poll(&mut klog) {
            report = true;
            break;
        }
        let calls = sh.calls.load(Relaxed);
        if calls != last_calls {
            last_calls = calls;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_secs(STALL_SECS) {
            println!(
                "mshv-fuzz: STALL: no call completed for {STALL_SECS} s (seed {:#018x})",
                args.seed
            );
            show_tasks(&sh);
            stalled = true;
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            println!(
                "mshv-fuzz: {:.0} s: {} calls",
                sh.start.elapsed().as_secs_f64(),
                sh.calls.load(Relaxed)
            );
        }
    }
    sh.stop.store(true, Relaxed);
    if stalled {
        kmsg.poll(&mut klog);
        print_report(&sh, &klog, args.seed);
        // Threads stuck in the kernel cannot be joined.
        std::process::exit(1);
    }
    // Threads blocked in RUN_VP get a signal until they leave (all of them,
    // every round: see stop.rs); one that does not leave within the stall
    // time is stuck in the kernel.
    let results = stop::join_all(
        handles,
        &sh.tids,
        Duration::from_millis(50),
        Duration::from_secs(STALL_SECS),
    );
    let results = match results {
        Ok(r) => r,
        Err(i) => {
            println!(
                "mshv-fuzz: STALL: thread {i} did not stop within {STALL_SECS} s (seed {:#018x})",
                args.seed
            );
            show_tasks(&sh);
            kmsg.poll(&mut klog);
            print_report(&sh, &klog, args.seed);
            std::process::exit(1);
        }
    };
    let mut stats = Stats::default();
    for st in results.into_iter().map(Option::unwrap_or_default) {
        for (k, v) in st.calls {
            *stats.calls.entry(k).or_default() += v;
        }
        for (k, v) in st.results {
            *stats.results.entry(k).or_default() += v;
        }
    }
    // Close everything, so that an rmmod afterwards finds no user.
    for t in [&sh.dev[..], &sh.parts[..], &sh.vps[..], &sh.efds[..]] {
        for f in t {
            let fd = f.swap(-1, Relaxed);
            if fd >= 0 {
                // SAFETY: ours.
                unsafe { libc::close(fd) };
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    report |= kmsg.poll(&mut klog);

    let total: u64 = stats.calls.values().sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mshv-fuzz: seed {:#018x}: {} calls in {:.1} s, {} threads",
        args.seed,
        total,
        sh.start.elapsed().as_secs_f64(),
        args.threads
    );
    let _ = writeln!(out, "per operation (calls: results):");
    for (op, n) in &stats.calls {
        let mut res: Vec<String> = stats
            .results
            .iter()
            .filter(|((o, _), _)| o == op)
            .map(|((_, e), c)| format!("{} {c}", errname(*e)))
            .collect();
        res.sort();
        let _ = writeln!(out, "  {op:<24} {n:>9}: {}", res.join(", "));
    }
    let mut hist: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, e), c) in &stats.results {
        *hist.entry(errname(*e)).or_default() += c;
    }
    let _ = writeln!(
        out,
        "errno histogram: {}",
        hist.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print!("{out}");
    if report {
        print_report(&sh, &klog, args.seed);
        std::process::exit(1);
    }
    println!("mshv-fuzz: no kernel report");
}
