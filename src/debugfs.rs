// SPDX-License-Identifier: GPL-2.0

//! debugfs: `/sys/kernel/debug/mshv_rs/`
//!
//! - `live_objects`: `partitions N`, `vps N`, `regions N` — objects alive
//!   now, `pinned_pages` and `deposited_pages` (tests compare them before
//!   and after to catch leaks);
//! - `force_pinned`: write 1 to make new RAM regions pinned (tests);
//! - `partitions/<id>/stats`: one `name value` line per counter of
//!   [`crate::mem::Stats`];
//! - with `backend=sim`: `partitions/<id>/sim_slat` (the simulated
//!   hypervisor's view: pool pages, SLAT tables, 4 KiB, 2 MiB and accessible
//!   entries), `sim/inject_insufficient_memory` (write N: the next N map or
//!   create hypercalls fail with INSUFFICIENT_MEMORY) and
//!   `sim/inject_fail_at_rep` (write `REP STATUS`: the next map or unmap call
//!   fails with STATUS after REP reps), `sim/inject_probability` (write
//!   `PER_MILLE STATUS`: from now on each map or unmap call fails with
//!   STATUS at a random rep with that probability; `0 0` stops it),
//!   `sim/inject_finalize_failure` (write N: the next N finalize calls
//!   fail, so the partition cannot be deleted either),
//!   `partitions/<id>/sim_entries` (every accessible SLAT entry inside the
//!   partition's regions: `GFN PFN FLAGS` per line), `partitions/<id>/mirror_check`
//!   (reading it runs the mirror checker, [`crate::mem::check`]: `checked N`,
//!   `violations M`) and `sim/inject_corrupt_entry` (write `PT GFN`: point
//!   that accessible SLAT entry at a wrong page, to test the checker), and
//!   `sim/pfnmap` (test only: `mmap` it `MAP_SHARED` at any offset to get a
//!   `VM_IO | VM_PFNMAP` mapping of up to 16 module-owned pages whose
//!   `vm_pgoff` is that offset, not their pfn; see `src/sys/testdev.c`).

use crate::{
    mem::Stats,
    partition::RegionSet,
    sim::Sim,
    stats::{self, Live},
};
use core::{fmt, sync::atomic::Ordering};
use kernel::{
    debugfs::{Dir, File, Reader},
    prelude::*,
    str::CString,
    sync::{atomic::Atomic, Arc},
    uaccess::UserSliceReader,
};

fn show_live(_: &(), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let get = stats::live;
    writeln!(f, "partitions {}", get(Live::Partitions))?;
    writeln!(f, "vps {}", get(Live::Vps))?;
    writeln!(f, "regions {}", get(Live::Regions))?;
    writeln!(f, "pinned_pages {}", get(Live::PinnedPages))?;
    writeln!(f, "deposited_pages {}", get(Live::DepositedPages))?;
    writeln!(f, "irqfds {}", get(Live::Irqfds))?;
    writeln!(f, "ioeventfds {}", get(Live::Ioeventfds))
}

fn show_stats(s: &Arc<Stats>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let r = |c: &core::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    writeln!(f, "hypercalls {}", r(&s.hypercalls))?;
    writeln!(f, "gpa_intercepts {}", r(&s.gpa_intercepts))?;
    writeln!(f, "mapped_4k {}", r(&s.mapped_4k))?;
    writeln!(f, "mapped_2m {}", r(&s.mapped_2m))?;
    writeln!(f, "invalidations {}", r(&s.invalidations))?;
    writeln!(f, "invalidations_busy {}", r(&s.invalidations_busy))?;
    writeln!(f, "fault_retries {}", r(&s.fault_retries))?;
    writeln!(f, "deposit_retries {}", r(&s.deposit_retries))?;
    writeln!(f, "invalidate_failures {}", r(&s.invalidate_failures))?;
    writeln!(f, "unmapped_refaults {}", r(&s.unmapped_refaults))?;
    writeln!(f, "remapped_4k {}", r(&s.remapped_4k))?;
    writeln!(f, "fault_ns {}", r(&s.fault_ns))?;
    writeln!(f, "doorbells {}", r(&s.doorbells))
}

/// Reads up to 32 bytes of whitespace-separated decimal numbers.
fn read_numbers<const N: usize>(r: &mut UserSliceReader) -> Result<[u64; N]> {
    let mut buf = [0u8; 32];
    let n = r.len();
    let dst = buf.get_mut(..n).ok_or(EINVAL)?;
    r.read_slice(dst)?;
    let s = core::str::from_utf8(dst).map_err(|_| EINVAL)?;
    let mut out = [0u64; N];
    let mut words = s.split_whitespace();
    for v in out.iter_mut() {
        *v = words.next().ok_or(EINVAL)?.parse().map_err(|_| EINVAL)?;
    }
    if words.next().is_some() {
        return Err(EINVAL);
    }
    Ok(out)
}

/// `sim/inject_insufficient_memory`.
struct InjectNoMemory(Arc<Sim>);

impl Reader for InjectNoMemory {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        let [count] = read_numbers::<1>(r)?;
        self.0
            .inject_insufficient_memory(u32::try_from(count).map_err(|_| EINVAL)?);
        Ok(())
    }
}

/// `sim/inject_fail_at_rep`.
struct InjectFailAtRep(Arc<Sim>);

impl Reader for InjectFailAtRep {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        let [rep, status] = read_numbers::<2>(r)?;
        let rep = u32::try_from(rep).map_err(|_| EINVAL)?;
        let status = u16::try_from(status).map_err(|_| EINVAL)?;
        self.0.inject_fail_at_rep(rep, status);
        Ok(())
    }
}

/// `sim/inject_finalize_failure`.
struct InjectFinalize(Arc<Sim>);

impl Reader for InjectFinalize {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        let [count] = read_numbers::<1>(r)?;
        self.0
            .inject_finalize_failure(u32::try_from(count).map_err(|_| EINVAL)?);
        Ok(())
    }
}

/// `sim/inject_probability`.
struct InjectProbability(Arc<Sim>);

impl Reader for InjectProbability {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        let [per_mille, status] = read_numbers::<2>(r)?;
        if per_mille > 1000 {
            return Err(EINVAL);
        }
        let status = u16::try_from(status).map_err(|_| EINVAL)?;
        self.0.inject_random(per_mille as u32, status);
        Ok(())
    }
}

/// `sim/inject_corrupt_entry`.
struct InjectCorruptEntry(Arc<Sim>);

impl Reader for InjectCorruptEntry {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        let [pt, gfn] = read_numbers::<2>(r)?;
        Ok(self.0.corrupt_entry(pt, gfn)?)
    }
}

/// Data of `partitions/<id>/mirror_check`.
struct MirrorCheck {
    sim: Arc<Sim>,
    pt: u64,
    regions: Arc<RegionSet>,
}

fn show_mirror_check(d: &MirrorCheck, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match crate::mem::check::check_partition(&d.sim, d.pt, &d.regions) {
        Ok(r) => {
            writeln!(f, "checked {}", r.checked)?;
            writeln!(f, "violations {}", r.violations)
        }
        Err(e) => writeln!(f, "error {}", e.to_errno()),
    }
}

/// `partitions/<id>/sim_entries`: every accessible SLAT entry inside the
/// partition's regions, one line each: `GFN PFN FLAGS` (hex; FLAGS `w` or
/// `-` for writable, then `L` or `-` for a 2 MiB entry).
fn show_entries(d: &MirrorCheck, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Ok(regions) = d.regions.snapshot() else {
        return writeln!(f, "error {}", ENOMEM.to_errno());
    };
    let mut res = Ok(());
    for r in regions.iter() {
        let walked = d.sim.for_each_gpa_entry(
            d.pt,
            r.spec.start_gfn,
            r.spec.pages,
            |gfn, pfn, accessible, large, writable| {
                if accessible && res.is_ok() {
                    res = writeln!(
                        f,
                        "{gfn:#x} {pfn:#x} {}{}",
                        if writable { 'w' } else { '-' },
                        if large { 'L' } else { '-' }
                    );
                }
            },
        );
        if walked.is_err() {
            return writeln!(f, "gone");
        }
    }
    res
}

fn show_sim(d: &(Arc<Sim>, u64), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Ok(s) = d.0.partition_stats(d.1) else {
        return writeln!(f, "gone");
    };
    writeln!(f, "pool_pages {}", s.pool_pages)?;
    writeln!(f, "pool_free {}", s.pool_free)?;
    writeln!(f, "slat_tables {}", s.slat_tables)?;
    writeln!(f, "small_entries {}", s.small_entries)?;
    writeln!(f, "large_entries {}", s.large_entries)?;
    writeln!(f, "accessible_entries {}", s.accessible_entries)?;
    writeln!(f, "vps {}", s.vps)
}

/// Fault-injection files of the simulated hypervisor.
#[pin_data]
struct SimFiles {
    /// `sim/pfnmap` (tests only); first, so it goes before the directory.
    _pfnmap: Option<crate::sys::testdev::TestPfnmap>,
    #[pin]
    no_memory: File<InjectNoMemory>,
    #[pin]
    fail_at_rep: File<InjectFailAtRep>,
    #[pin]
    corrupt: File<InjectCorruptEntry>,
    #[pin]
    probability: File<InjectProbability>,
    #[pin]
    finalize: File<InjectFinalize>,
    _dir: Dir,
}

/// The module's debugfs tree.
#[pin_data]
pub(crate) struct Debugfs {
    /// `force_pinned` (0 or 1).
    #[pin]
    force_pinned: File<Atomic<u32>>,
    #[pin]
    live: File<()>,
    partitions: Dir,
    sim: Option<(Arc<Sim>, Pin<KBox<SimFiles>>)>,
    root: Dir,
}

impl Debugfs {
    /// Creates the tree.
    pub(crate) fn new(sim: Option<Arc<Sim>>) -> impl PinInit<Self, Error> {
        let root = Dir::new(c"mshv_rs");
        let partitions = root.subdir(c"partitions");
        let sim = sim.and_then(|sim| {
            let dir = root.subdir(c"sim");
            let (no_memory, fail_at_rep) =
                (InjectNoMemory(sim.clone()), InjectFailAtRep(sim.clone()));
            let corrupt = InjectCorruptEntry(sim.clone());
            let probability = InjectProbability(sim.clone());
            let finalize = InjectFinalize(sim.clone());
            // SAFETY: the module has one debugfs tree, so one `TestPfnmap`.
            // Best effort, like the other files.
            let pfnmap = unsafe { crate::sys::testdev::TestPfnmap::create() }.ok();
            let files = KBox::pin_init(
                try_pin_init!(SimFiles {
                    _pfnmap: pfnmap,
                    no_memory <- dir.write_only_file(c"inject_insufficient_memory", no_memory),
                    fail_at_rep <- dir.write_only_file(c"inject_fail_at_rep", fail_at_rep),
                    corrupt <- dir.write_only_file(c"inject_corrupt_entry", corrupt),
                    probability <- dir.write_only_file(c"inject_probability", probability),
                    finalize <- dir.write_only_file(c"inject_finalize_failure", finalize),
                    _dir: dir,
                }? Error),
                GFP_KERNEL,
            )
            .ok()?;
            Some((sim, files))
        });
        try_pin_init!(Self {
            force_pinned <- root.read_write_file(c"force_pinned", Atomic::new(0u32)),
            live <- root.read_callback_file(c"live_objects", (), &show_live),
            partitions,
            sim,
            root,
        }? Error)
    }

    /// Whether tests asked for pinned RAM regions.
    pub(crate) fn force_pinned(&self) -> bool {
        self.force_pinned.load(kernel::sync::atomic::Relaxed) != 0
    }

    /// Creates `partitions/<id>/stats`; removed when the result is dropped.
    pub(crate) fn partition(
        &self,
        id: u64,
        stats: Arc<Stats>,
        regions: Arc<RegionSet>,
    ) -> Result<PartitionFiles> {
        let name = CString::try_from_fmt(fmt!("{id}"))?;
        let dir = self.partitions.subdir(&name);
        let stats = KBox::pin_init(
            dir.read_callback_file(c"stats", stats, &show_stats),
            GFP_KERNEL,
        )?;
        let (sim, check, entries) = match &self.sim {
            Some((sim, _)) => {
                let slat = KBox::pin_init(
                    dir.read_callback_file(c"sim_slat", (sim.clone(), id), &show_sim),
                    GFP_KERNEL,
                )?;
                let data = MirrorCheck {
                    sim: sim.clone(),
                    pt: id,
                    regions: regions.clone(),
                };
                let check = KBox::pin_init(
                    dir.read_callback_file(c"mirror_check", data, &show_mirror_check),
                    GFP_KERNEL,
                )?;
                let data = MirrorCheck {
                    sim: sim.clone(),
                    pt: id,
                    regions,
                };
                let entries = KBox::pin_init(
                    dir.read_callback_file(c"sim_entries", data, &show_entries),
                    GFP_KERNEL,
                )?;
                (Some(slat), Some(check), Some(entries))
            }
            None => (None, None, None),
        };
        Ok(PartitionFiles {
            _stats: stats,
            _sim: sim,
            _check: check,
            _entries: entries,
            _dir: dir,
        })
    }
}

/// `partitions/<id>/sim_slat`: the simulator and the partition id.
type SimSlatFile = File<(Arc<Sim>, u64)>;

/// A partition's debugfs files.
pub(crate) struct PartitionFiles {
    _stats: Pin<KBox<File<Arc<Stats>>>>,
    _sim: Option<Pin<KBox<SimSlatFile>>>,
    _check: Option<Pin<KBox<File<MirrorCheck>>>>,
    _entries: Option<Pin<KBox<File<MirrorCheck>>>>,
    _dir: Dir,
}
