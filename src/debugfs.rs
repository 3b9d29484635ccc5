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
//!   (reading it runs the mirror checker, [`check`]: `checked N`,
//!   `violations M`) and `sim/inject_corrupt_entry` (write `PT GFN`: point
//!   that accessible SLAT entry at a wrong page, to test the checker),
//!   `sim/inject_spurious_intercept` (write `PT GFN N`: the next N guest
//!   accesses to that gfn are GPA intercepts although the SLAT allows them;
//!   `N` 0 disarms), and
//!   `sim/pfnmap` (test only: `mmap` it `MAP_SHARED` at any offset to get a
//!   `VM_IO | VM_PFNMAP` mapping of up to 16 module-owned pages whose
//!   `vm_pgoff` is that offset, not their pfn; see `src/sys/testdev.c`),
//!   `sim/inject_call_pending` (write N: the next N `SET_PARTITION_PROPERTY`
//!   calls answer `CALL_PENDING` and complete by message), and `sim/synic`
//!   (the emulated SynIC's `delivered`, `queued`, `lost`
//!   and `violations` counters). These are the emulator's side channels
//!   (`debugfs/emu.rs`), built only with `CONFIG_MSHV_RS_EMULATOR`.

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
mod check;
#[cfg(CONFIG_MSHV_RS_EMULATOR)]
mod emu;

/// Without the emulator there are no side channels.
#[cfg(not(CONFIG_MSHV_RS_EMULATOR))]
mod emu {
    use crate::mem::regions::RegionSet;
    use kernel::{debugfs::Dir, prelude::*, sync::Arc};

    /// Never constructed.
    pub(crate) type Source = core::convert::Infallible;
    /// Never constructed.
    pub(crate) enum Global {}
    /// Never constructed.
    pub(crate) enum PerPartition {}

    impl Global {
        pub(crate) fn new(_root: &Dir, source: Source) -> Option<Pin<KBox<Self>>> {
            match source {}
        }
        pub(crate) fn partition(
            &self,
            _dir: &Dir,
            _id: u64,
            _r: Arc<RegionSet>,
        ) -> Result<PerPartition> {
            match *self {}
        }
    }
}

pub(crate) use emu::Source as EmulatorSource;

use crate::{
    mem::regions::RegionSet,
    mem::Stats,
    stats::{self, Live},
};
use core::{fmt, sync::atomic::Ordering};
use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    str::CString,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc,
    },
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
pub(crate) fn read_numbers<const N: usize>(r: &mut UserSliceReader) -> Result<[u64; N]> {
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

fn show_knob(knob: &Arc<Atomic<u32>>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "{}", knob.load(Relaxed))
}

fn write_knob(knob: &Arc<Atomic<u32>>, r: &mut UserSliceReader) -> Result {
    let [v] = read_numbers::<1>(r)?;
    knob.store(u32::try_from(v).map_err(|_| EINVAL)?, Relaxed);
    Ok(())
}

/// The module's debugfs tree: a view of the objects below it (it imports
/// them; none of them imports it), created by the crate root and reached
/// from `/dev/mshv`'s opens, which attach each partition's files to it.
#[pin_data]
pub(crate) struct Debugfs {
    /// `force_pinned`: [`crate::shared::Shared::force_pinned`].
    #[pin]
    force_pinned: File<Arc<Atomic<u32>>>,
    #[pin]
    live: File<()>,
    partitions: Dir,
    /// The emulator's side channels, with `backend=sim`.
    emu: Option<Pin<KBox<emu::Global>>>,
    root: Dir,
}

impl Debugfs {
    /// Creates the tree; `force_pinned` is the knob the file writes.
    pub(crate) fn new(
        source: Option<EmulatorSource>,
        force_pinned: Arc<Atomic<u32>>,
    ) -> impl PinInit<Self, Error> {
        let root = Dir::new(c"mshv_rs");
        let partitions = root.subdir(c"partitions");
        let emu = source.and_then(|s| emu::Global::new(&root, s));
        try_pin_init!(Self {
            force_pinned <- root.read_write_callback_file(
                c"force_pinned",
                force_pinned,
                &show_knob,
                &write_knob,
            ),
            live <- root.read_callback_file(c"live_objects", (), &show_live),
            partitions,
            emu,
            root,
        }? Error)
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
        let emu = match &self.emu {
            Some(g) => Some(g.partition(&dir, id, regions)?),
            None => None,
        };
        Ok(PartitionFiles {
            _stats: stats,
            _emu: emu,
            _dir: dir,
        })
    }
}

/// A partition's debugfs files.
pub(crate) struct PartitionFiles {
    _stats: Pin<KBox<File<Arc<Stats>>>>,
    _emu: Option<emu::PerPartition>,
    _dir: Dir,
}
