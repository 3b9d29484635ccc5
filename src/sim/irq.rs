// SPDX-License-Identifier: GPL-2.0

//! Interrupts and doorbells of the simulated hypervisor.
//!
//! `ASSERT_VIRTUAL_INTERRUPT` finds the VP whose APIC id is the destination
//! (the sim's APIC ids are the VP indices, as CPUID leaf 1 reports them),
//! records the interrupt in its [`lapic::Lapic`] and wakes the VP if it
//! sleeps in HLT; the run loop ([`super::vp::run`]) delivers it through the
//! guest's IDT. Logical destinations are refused with
//! `HV_STATUS_INVALID_PARAMETER`, an unknown APIC id with
//! `HV_STATUS_INVALID_VP_INDEX`, a type the LAPIC model lacks or a fixed
//! vector below 16 with `HV_STATUS_INVALID_PARAMETER`.
//!
//! Doorbells: a guest write that the SLAT does not complete (unmapped, no
//! write access, or device memory) and that matches a connected doorbell is
//! completed by the hypervisor (the data is dropped, the instruction
//! retires) and reported through [`Notify::doorbell`], without an intercept.
//!
//! # Locking
//!
//! [`SimIrq`] is behind a mutex of its own (`ChildPartition::irq`), never held
//! with `inner` or a VP's locks; notifications are called with no sim lock
//! held. A VP's `lapic` spinlock is never held with its `regs`.

use super::{lapic, ChildPartition, PartState, Sim};
use crate::tlfs::{Doorbell, HvError, HvResult, VirtualInterrupt};
use kernel::prelude::*;

/// Most doorbells one partition may connect (Hyper-V limits ports too).
const MAX_DOORBELLS: usize = 4096;

/// A partition's connected doorbells.
pub(crate) struct SimIrq {
    /// Connected doorbells by (global) port id.
    doorbells: KVec<(u32, Doorbell)>,
}

impl SimIrq {
    /// No doorbells.
    pub(crate) fn new() -> Self {
        SimIrq {
            doorbells: KVec::new(),
        }
    }
}

impl ChildPartition {
    /// The port of the doorbell a guest write of `data` at `gpa` rings, if
    /// any.
    pub(crate) fn doorbell_for(&self, gpa: u64, data: &[u8]) -> Option<u32> {
        self.irq
            .lock()
            .doorbells
            .iter()
            .find(|(_, d)| d.matches(gpa, data))
            .map(|&(p, _)| p)
    }
}

impl Sim {
    /// `HVCALL_ASSERT_VIRTUAL_INTERRUPT`.
    pub(super) fn assert_interrupt(&self, pt: u64, irq: &VirtualInterrupt) -> HvResult {
        let part = self.partition(pt)?;
        if part.inner.lock().state != PartState::Initialized {
            return Err(HvError::INVALID_PARTITION_STATE);
        }
        if irq.logical {
            return Err(HvError::INVALID_PARAMETER);
        }
        let vector = u8::try_from(irq.vector).map_err(|_| HvError::INVALID_PARAMETER)?;
        let index = u32::try_from(irq.dest).map_err(|_| HvError::INVALID_VP_INDEX)?;
        let (_, vp) = self.vp_of(pt, index)?;
        vp.lapic
            .lock()
            .assert(irq.kind, vector, irq.level)
            .map_err(|_| HvError::INVALID_PARAMETER)?;
        super::sched::wake(&part, &vp);
        Ok(())
    }

    /// Connects doorbell `port`.
    pub(super) fn connect(&self, pt: u64, port: u32, db: &Doorbell) -> HvResult {
        let part = self.partition(pt)?;
        if port == 0 || !matches!(db.len, 0 | 1 | 2 | 4 | 8) {
            return Err(HvError::INVALID_PARAMETER);
        }
        let mut irq = part.irq.lock();
        if irq.doorbells.iter().any(|&(p, _)| p == port) {
            return Err(HvError::INVALID_PORT_ID);
        }
        if irq.doorbells.len() >= MAX_DOORBELLS {
            return Err(HvError::INSUFFICIENT_BUFFERS);
        }
        irq.doorbells
            .push((port, *db), GFP_ATOMIC)
            .map_err(|_| HvError::INSUFFICIENT_MEMORY)
    }

    /// Disconnects doorbell `port`.
    pub(super) fn disconnect(&self, pt: u64, port: u32) -> HvResult {
        let part = self.partition(pt)?;
        let mut irq = part.irq.lock();
        let i = irq
            .doorbells
            .iter()
            .position(|&(p, _)| p == port)
            .ok_or(HvError::INVALID_PORT_ID)?;
        irq.doorbells
            .remove(i)
            .map_err(|_| HvError::INVALID_PORT_ID)?;
        Ok(())
    }
}

/// The EOI a guest caused, reported if level-triggered.
pub(crate) fn report_eoi(part: &ChildPartition, vp: u32, eoi: Option<lapic::Eoi>) {
    if let Some(e) = eoi.filter(|e| e.level) {
        part.synic.eoi(part.id, vp, u32::from(e.vector));
    }
}
