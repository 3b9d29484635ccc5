// SPDX-License-Identifier: GPL-2.0

//! The emulator's side channels in debugfs (built with
//! `CONFIG_MSHV_RS_EMULATOR`): fault injection under `sim/`, the emulated
//! SynIC's counters (`sim/synic`), and per partition the emulator's view of
//! the SLAT (`sim_slat`, `sim_entries`) and the mirror checker
//! (`mirror_check`). See the parent module for each file's format.

use super::read_numbers;
use crate::{mem::regions::RegionSet, sim::Sim};
use core::fmt;
use kernel::{
    debugfs::{Dir, File, Reader},
    prelude::*,
    sync::{atomic::Relaxed, Arc},
    uaccess::UserSliceReader,
};

/// What the module hands the debugfs tree when the emulator runs.
pub(crate) type Source = Arc<Sim>;

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

/// `sim/inject_call_pending`.
struct InjectCallPending(Arc<Sim>);

impl Reader for InjectCallPending {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        let [count] = read_numbers::<1>(r)?;
        self.0
            .inject_call_pending(u32::try_from(count).map_err(|_| EINVAL)?);
        Ok(())
    }
}

/// `sim/inject_contiguous`: writing 1 arms it; reading shows how many
/// `CREATE_VP` calls it refused.
struct InjectContiguous(Arc<Sim>);

impl Reader for InjectContiguous {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        let [arm] = read_numbers::<1>(r)?;
        if arm != 1 {
            return Err(EINVAL);
        }
        self.0.inject_contiguous();
        Ok(())
    }
}

/// `sim/inject_call`: `code status rep count` (any call code; 0 disarms).
struct InjectCall(Arc<Sim>);

impl Reader for InjectCall {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        let [code, status, rep, count] = read_numbers::<4>(r)?;
        let small = |v: u64| u16::try_from(v).map_err(|_| EINVAL);
        self.0
            .inject_call_failure(small(code)?, small(status)?, small(rep)?, small(count)?);
        Ok(())
    }
}

/// `sim/inject_hold_kick`.
struct InjectHoldKick(Arc<Sim>);

impl Reader for InjectHoldKick {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        let [count] = read_numbers::<1>(r)?;
        self.0
            .sched
            .hold_kicks(u32::try_from(count).map_err(|_| EINVAL)?);
        Ok(())
    }
}

/// `sim/inject_stale_signal`.
struct InjectStaleSignal(Arc<Sim>);

impl Reader for InjectStaleSignal {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        let [count] = read_numbers::<1>(r)?;
        self.0
            .sched
            .stale_signals(u32::try_from(count).map_err(|_| EINVAL)?);
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
    match super::check::check_partition(&d.sim, d.pt, &d.regions) {
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

fn show_synic(sim: &Arc<Sim>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let s = &sim.synic;
    writeln!(f, "delivered {}", s.delivered.load(Relaxed))?;
    writeln!(f, "queued {}", s.queued.load(Relaxed))?;
    writeln!(f, "lost {}", s.lost.load(Relaxed))?;
    writeln!(f, "violations {}", s.violations.load(Relaxed))
}

/// `sim/injected`: what the injections did.
fn show_injected(sim: &Arc<Sim>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "contiguous_refused {}", sim.contiguous_refused())?;
    writeln!(f, "call_failures {}", sim.call_failures())
}

/// `sim/root_pool`: the root's deposit pool, and what a partition and a VP
/// cost the pools that pay for them.
fn show_root_pool(sim: &Arc<Sim>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "pages {}", sim.root_pool_pages())?;
    writeln!(f, "free {}", sim.root_pool_free())?;
    writeln!(f, "partition_charge {}", crate::sim::PART_ROOT_PAGES)?;
    writeln!(f, "vp_charge {}", crate::sim::VP_PAGES)
}

/// `sim/calls`: hypercalls that succeeded, one line per call code:
/// `0xCODE N`.
fn show_calls(sim: &Arc<Sim>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (code, n) in sim.calls.nonzero() {
        writeln!(f, "{code:#06x} {n}")?;
    }
    Ok(())
}

fn show_sched(sim: &Arc<Sim>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let s = &sim.sched;
    writeln!(f, "scheduler_type {}", s.kind.hv_type())?;
    writeln!(f, "runners {}", s.runners.load(Relaxed))?;
    writeln!(f, "opaque_intercepts {}", s.kicks.load(Relaxed))?;
    writeln!(f, "held {}", s.held.load(Relaxed))?;
    writeln!(f, "signals {}", s.signals.load(Relaxed))?;
    writeln!(f, "dispatch_suspends {}", s.dispatch_suspends.load(Relaxed))?;
    writeln!(f, "stale_signals {}", s.stale_sent.load(Relaxed))?;
    writeln!(
        f,
        "dispatches_while_blocked {}",
        s.dispatches_while_blocked.load(Relaxed)
    )
}

/// The emulator's files under `sim/`.
#[pin_data]
pub(crate) struct Global {
    sim: Arc<Sim>,
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
    #[pin]
    call_pending: File<InjectCallPending>,
    #[pin]
    hold_kick: File<InjectHoldKick>,
    #[pin]
    stale_signal: File<InjectStaleSignal>,
    #[pin]
    contiguous: File<InjectContiguous>,
    #[pin]
    call: File<InjectCall>,
    #[pin]
    synic: File<Arc<Sim>>,
    #[pin]
    sched: File<Arc<Sim>>,
    #[pin]
    injected: File<Arc<Sim>>,
    #[pin]
    root_pool: File<Arc<Sim>>,
    #[pin]
    calls: File<Arc<Sim>>,
    _dir: Dir,
}

impl Global {
    /// Creates `sim/` under `root` (best effort: `None` if it fails).
    pub(crate) fn new(root: &Dir, source: Arc<Sim>) -> Option<Pin<KBox<Self>>> {
        let dir = root.subdir(c"sim");
        let no_memory = InjectNoMemory(source.clone());
        let fail_at_rep = InjectFailAtRep(source.clone());
        let corrupt = InjectCorruptEntry(source.clone());
        let probability = InjectProbability(source.clone());
        let finalize = InjectFinalize(source.clone());
        let call_pending = InjectCallPending(source.clone());
        let hold_kick = InjectHoldKick(source.clone());
        let stale_signal = InjectStaleSignal(source.clone());
        let contiguous = InjectContiguous(source.clone());
        let call = InjectCall(source.clone());
        let counters = source.clone();
        let sched = source.clone();
        let injected = source.clone();
        let root_pool = source.clone();
        let calls = source.clone();
        // SAFETY: the module has one debugfs tree, so one `TestPfnmap`.
        // Best effort, like the other files.
        let pfnmap = unsafe { crate::sys::testdev::TestPfnmap::create() }.ok();
        KBox::pin_init(
            try_pin_init!(Global {
                sim: source,
                _pfnmap: pfnmap,
                no_memory <- dir.write_only_file(c"inject_insufficient_memory", no_memory),
                fail_at_rep <- dir.write_only_file(c"inject_fail_at_rep", fail_at_rep),
                corrupt <- dir.write_only_file(c"inject_corrupt_entry", corrupt),
                probability <- dir.write_only_file(c"inject_probability", probability),
                finalize <- dir.write_only_file(c"inject_finalize_failure", finalize),
                call_pending <- dir.write_only_file(c"inject_call_pending", call_pending),
                hold_kick <- dir.write_only_file(c"inject_hold_kick", hold_kick),
                stale_signal <- dir.write_only_file(c"inject_stale_signal", stale_signal),
                contiguous <- dir.write_only_file(c"inject_contiguous", contiguous),
                call <- dir.write_only_file(c"inject_call", call),
                synic <- dir.read_callback_file(c"synic", counters, &show_synic),
                sched <- dir.read_callback_file(c"sched", sched, &show_sched),
                injected <- dir.read_callback_file(c"injected", injected, &show_injected),
                root_pool <- dir.read_callback_file(c"root_pool", root_pool, &show_root_pool),
                calls <- dir.read_callback_file(c"calls", calls, &show_calls),
                _dir: dir,
            }? Error),
            GFP_KERNEL,
        )
        .ok()
    }

    /// Creates the emulator's files of partition `id` in `dir`.
    pub(crate) fn partition(
        &self,
        dir: &Dir,
        id: u64,
        regions: Arc<RegionSet>,
    ) -> Result<PerPartition> {
        let sim = &self.sim;
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
        Ok(PerPartition {
            _slat: slat,
            _check: check,
            _entries: entries,
        })
    }
}

/// `partitions/<id>/sim_slat`: the simulator and the partition id.
type SimSlatFile = File<(Arc<Sim>, u64)>;

/// A partition's emulator files.
pub(crate) struct PerPartition {
    _slat: Pin<KBox<SimSlatFile>>,
    _check: Pin<KBox<File<MirrorCheck>>>,
    _entries: Pin<KBox<File<MirrorCheck>>>,
}
