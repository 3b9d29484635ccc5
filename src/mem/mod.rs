// SPDX-License-Identifier: GPL-2.0

//! Guest memory regions: the kinds, the HMM mirror of movable RAM, MMIO
//! regions, and the pure arithmetic they share.

pub(crate) mod check;
pub(crate) mod geometry;
pub(crate) mod mmio;
pub(crate) mod movable;
pub(crate) mod region;

/// Where a region that follows Linux with an interval notifier (movable
/// and MMIO) is in its life; kept under the region's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// In the partition's region set: faults map, invalidations unmap or
    /// remap NO_ACCESS.
    Live,
    /// Removed, its whole GPA range unmapped: nothing to do any more (the
    /// range may already belong to another region).
    Removed,
    /// Removal failed (the hypervisor refused an unmap): the region is
    /// held until the partition is deleted and its GPA range stays reserved
    /// to it, so invalidations go on unmapping what Linux takes back.
    Kept,
}
