// SPDX-License-Identifier: GPL-2.0

//! Module-wide statistics: counts of live objects, bumped by every layer
//! and shown by debugfs (`live_objects`). A leaf: it imports nothing from
//! the driver, so any layer may count (docs/design.md, "Layers").

use core::sync::atomic::{AtomicI64, Ordering};

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
    /// Registered irqfds.
    Irqfds = 5,
    /// Registered ioeventfds.
    Ioeventfds = 6,
}

static LIVE: [AtomicI64; 7] = [
    AtomicI64::new(0),
    AtomicI64::new(0),
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

/// The live count of `kind` now.
pub(crate) fn live(kind: Live) -> i64 {
    LIVE.get(kind as usize)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}
