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

/// A write-only `sim/inject_*` file: writing `N` whitespace-separated
/// decimal numbers calls `apply` with them (`EINVAL` for anything else, or
/// for a number out of the range `apply` takes).
struct Inject<const N: usize> {
    sim: Arc<Sim>,
    apply: fn(&Sim, [u64; N]) -> Result,
}

impl<const N: usize> Inject<N> {
    fn new(sim: &Arc<Sim>, apply: fn(&Sim, [u64; N]) -> Result) -> Self {
        Self {
            sim: sim.clone(),
            apply,
        }
    }
}

impl<const N: usize> Reader for Inject<N> {
    fn read_from_slice(&self, r: &mut UserSliceReader) -> Result {
        (self.apply)(&self.sim, read_numbers::<N>(r)?)
    }
}

/// `v` as a narrower integer, or `EINVAL`.
fn narrow<T: TryFrom<u64>>(v: u64) -> Result<T> {
    T::try_from(v).map_err(|_| EINVAL)
}

/// `sim/inject_probability`: `PER_MILLE STATUS`.
fn inject_probability(sim: &Sim, [per_mille, status]: [u64; 2]) -> Result {
    if per_mille > 1000 {
        return Err(EINVAL);
    }
    sim.inject_random(per_mille as u32, narrow(status)?);
    Ok(())
}

/// `sim/inject_contiguous`: writing 1 arms it.
fn inject_contiguous(sim: &Sim, [arm]: [u64; 1]) -> Result {
    if arm != 1 {
        return Err(EINVAL);
    }
    sim.inject_contiguous();
    Ok(())
}

/// `sim/inject_call`: `code status rep count` (any call code; 0 disarms).
fn inject_call(sim: &Sim, [code, status, rep, count]: [u64; 4]) -> Result {
    sim.inject_call_failure(narrow(code)?, narrow(status)?, narrow(rep)?, narrow(count)?);
    Ok(())
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

/// `sim/root_pool`: the root's deposit pool, the pages of every pool
/// (`all_pools`, the root's included), and what a partition and a VP cost
/// the pools that pay for them.
fn show_root_pool(sim: &Arc<Sim>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "pages {}", sim.root_pool_pages())?;
    writeln!(f, "free {}", sim.root_pool_free())?;
    writeln!(f, "all_pools {}", sim.deposited_pages())?;
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
    no_memory: File<Inject<1>>,
    #[pin]
    fail_at_rep: File<Inject<2>>,
    #[pin]
    corrupt: File<Inject<2>>,
    #[pin]
    spurious: File<Inject<3>>,
    #[pin]
    probability: File<Inject<2>>,
    #[pin]
    finalize: File<Inject<1>>,
    #[pin]
    call_pending: File<Inject<1>>,
    #[pin]
    hold_kick: File<Inject<1>>,
    #[pin]
    stale_signal: File<Inject<1>>,
    #[pin]
    contiguous: File<Inject<1>>,
    #[pin]
    call: File<Inject<4>>,
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
        let no_memory = Inject::new(&source, |s, [n]| {
            s.inject_insufficient_memory(narrow(n)?);
            Ok(())
        });
        let fail_at_rep = Inject::new(&source, |s, [rep, status]| {
            s.inject_fail_at_rep(narrow(rep)?, narrow(status)?);
            Ok(())
        });
        let corrupt = Inject::new(&source, |s, [pt, gfn]| Ok(s.corrupt_entry(pt, gfn)?));
        let spurious = Inject::new(&source, |s, [pt, gfn, n]| {
            Ok(s.inject_spurious_intercept(pt, gfn, narrow(n)?)?)
        });
        let probability = Inject::new(&source, inject_probability);
        let finalize = Inject::new(&source, |s, [n]| {
            s.inject_finalize_failure(narrow(n)?);
            Ok(())
        });
        let call_pending = Inject::new(&source, |s, [n]| {
            s.inject_call_pending(narrow(n)?);
            Ok(())
        });
        let hold_kick = Inject::new(&source, |s, [n]| {
            s.sched.hold_kicks(narrow(n)?);
            Ok(())
        });
        let stale_signal = Inject::new(&source, |s, [n]| {
            s.sched.stale_signals(narrow(n)?);
            Ok(())
        });
        let contiguous = Inject::new(&source, inject_contiguous);
        let call = Inject::new(&source, inject_call);
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
                spurious <- dir.write_only_file(c"inject_spurious_intercept", spurious),
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
