// SPDX-License-Identifier: GPL-2.0

//! GPA page access states of the simulated hypervisor
//! (`HVCALL_GET_GPA_PAGES_ACCESS_STATES` and the
//! `HV_PARTITION_PROPERTY_GPA_PAGE_ACCESS_TRACKING` property).
//!
//! The accessed and dirty bits live in the SLAT leaf entries: guest accesses
//! set them ([`super::slat::Slat::translate`]), remaps keep them, and the
//! hypercall reads, clears or sets them. The model of the property (Hyper-V
//! documents little of it; this follows what the client crate and Cloud
//! Hypervisor rely on):
//!
//! - tracking off (the initial state): the hypervisor keeps no record the
//!   VMM could trust, so every page reads as accessed and dirty and the
//!   clear/set flags change nothing;
//! - turning it on marks every mapped page accessed and dirty (the VMM then
//!   reads with CLEAR to start a round);
//! - turning it off is refused with `HV_STATUS_OPERATION_DENIED` while any
//!   mapped page has a cleared bit: the VMM must set the bits again first
//!   (mshv-ioctls: "it is required to set the dirty bits if cleared
//!   previously"; Cloud Hypervisor reads every slot with SET before it
//!   disables tracking).

use super::{slat, PartInner, PartState, Sim};
use crate::tlfs::{abi, status, HvError, HvResult, RepError, RepResult, GPA_ACCESS_STATES_BATCH};

/// The property's "enabled" bit (bit 1 is a granularity the sim ignores).
const TRACKING_ENABLED: u64 = 1 << 0;
/// Values the property accepts.
const TRACKING_VALID: u64 = 0x3;

/// Whether access tracking is on in `inner` (of a partition created with
/// `create`).
fn tracking(inner: &PartInner, create: &crate::tlfs::CreatePartition) -> bool {
    inner
        .props
        .get(abi::HV_PARTITION_PROPERTY_GPA_PAGE_ACCESS_TRACKING, create)
        & TRACKING_ENABLED
        != 0
}

impl Sim {
    /// `HVCALL_GET_GPA_PAGES_ACCESS_STATES` for `out.len()` pages from
    /// `base_gfn`; see [`crate::hv::Hypervisor::get_gpa_access_states`].
    pub(super) fn gpa_access_states(
        &self,
        pt: u64,
        base_gfn: u64,
        flags: u64,
        out: &mut [u8],
    ) -> RepResult {
        let at_start = |s| RepError {
            done: 0,
            error: HvError(s),
        };
        let part = self.partition(pt).map_err(|e| at_start(e.0))?;
        if out.len() > GPA_ACCESS_STATES_BATCH {
            return Err(at_start(status::INVALID_PARAMETER));
        }
        let op = slat::StateOp::from_flags(flags).ok_or(at_start(status::INVALID_PARAMETER))?;
        let mut guard = part.inner.lock();
        let inner = &mut *guard;
        if inner.state != PartState::Initialized {
            return Err(at_start(status::INVALID_PARTITION_STATE));
        }
        if !tracking(inner, &part.create) {
            out.fill(slat::STATE_ACCESSED | slat::STATE_DIRTY);
            return Ok(());
        }
        inner.slat.access_states(&mut inner.pool, base_gfn, out, op)
    }

    /// Sets `GPA_PAGE_ACCESS_TRACKING` of a partition (whose lock the caller
    /// holds) to `value`, with the transitions described in the module
    /// documentation.
    pub(super) fn set_access_tracking(
        inner: &mut PartInner,
        create: &crate::tlfs::CreatePartition,
        value: u64,
    ) -> HvResult {
        if value & !TRACKING_VALID != 0 {
            return Err(HvError::PROPERTY_VALUE_OUT_OF_RANGE);
        }
        let was = tracking(inner, create);
        let on = value & TRACKING_ENABLED != 0;
        let ad = slat::ACCESSED | slat::DIRTY;
        if was && !on && !inner.slat.all_marked(ad) {
            return Err(HvError::OPERATION_DENIED);
        }
        inner
            .props
            .set(abi::HV_PARTITION_PROPERTY_GPA_PAGE_ACCESS_TRACKING, value)?;
        if on && !was {
            inner.slat.mark_all(ad);
        }
        Ok(())
    }
}
