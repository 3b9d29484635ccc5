// SPDX-License-Identifier: GPL-2.0

//! debugfs: `/sys/kernel/debug/mshv_rs/`
//!
//! - `live_objects`: `partitions N`, `vps N`, `regions N` — objects alive
//!   now, `pinned_pages` and `deposited_pages` (tests compare them before
//!   and after to catch leaks);
//! - `force_pinned`: write 1 to make new RAM regions pinned (tests);
//! - `partitions/<id>/stats`: one `name value` line per counter of
//!   [`crate::mem::movable::Stats`].

use crate::mem::movable::Stats;
use core::{
    fmt,
    sync::atomic::{AtomicI64, Ordering},
};
use kernel::{
    debugfs::{Dir, File},
    prelude::*,
    str::CString,
    sync::{atomic::Atomic, Arc},
};

/// A kind of object counted in `live_objects`.
#[derive(Clone, Copy)]
pub(crate) enum Live {
    /// Partitions.
    Partitions = 0,
    /// VP objects.
    Vps = 1,
    /// Memory regions.
    Regions = 2,
    /// Pages pinned by pinned regions.
    PinnedPages = 3,
    /// Pages deposited into child partitions and not yet withdrawn.
    DepositedPages = 4,
}

static LIVE: [AtomicI64; 5] = [
    AtomicI64::new(0),
    AtomicI64::new(0),
    AtomicI64::new(0),
    AtomicI64::new(0),
    AtomicI64::new(0),
];

/// Adds `n` to the live count of `kind`.
pub(crate) fn live_add(kind: Live, n: i64) {
    if let Some(c) = LIVE.get(kind as usize) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

fn show_live(_: &(), f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let get = |k: Live| {
        LIVE.get(k as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    };
    writeln!(f, "partitions {}", get(Live::Partitions))?;
    writeln!(f, "vps {}", get(Live::Vps))?;
    writeln!(f, "regions {}", get(Live::Regions))?;
    writeln!(f, "pinned_pages {}", get(Live::PinnedPages))?;
    writeln!(f, "deposited_pages {}", get(Live::DepositedPages))
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
    writeln!(f, "invalidate_failures {}", r(&s.invalidate_failures))
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
    root: Dir,
}

impl Debugfs {
    /// Creates the tree.
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        let root = Dir::new(c"mshv_rs");
        let partitions = root.subdir(c"partitions");
        try_pin_init!(Self {
            force_pinned <- root.read_write_file(c"force_pinned", Atomic::new(0u32)),
            live <- root.read_callback_file(c"live_objects", (), &show_live),
            partitions,
            root,
        }? Error)
    }

    /// Whether tests asked for pinned RAM regions.
    pub(crate) fn force_pinned(&self) -> bool {
        self.force_pinned.load(kernel::sync::atomic::Relaxed) != 0
    }

    /// Creates `partitions/<id>/stats`; removed when the result is dropped.
    pub(crate) fn partition(&self, id: u64, stats: Arc<Stats>) -> Result<PartitionFiles> {
        let name = CString::try_from_fmt(fmt!("{id}"))?;
        let dir = self.partitions.subdir(&name);
        let stats = KBox::pin_init(
            dir.read_callback_file(c"stats", stats, &show_stats),
            GFP_KERNEL,
        )?;
        Ok(PartitionFiles {
            _stats: stats,
            _dir: dir,
        })
    }
}

/// A partition's debugfs files.
pub(crate) struct PartitionFiles {
    _stats: Pin<KBox<File<Arc<Stats>>>>,
    _dir: Dir,
}
