// SPDX-License-Identifier: GPL-2.0

//! `MSHV_IRQFD`: eventfds that raise a guest interrupt through the MSI
//! routing table when signalled (KVM's irqfd, as upstream `mshv_eventfd.c`).
//!
//! Injection runs from a work item of the system workqueue (process
//! context), not in the eventfd's wakeup callback: the wakeup runs with the
//! eventfd's wait-queue lock held and interrupts off, possibly in hard-IRQ
//! context when a device signals, and keeping the hypervisor backend's locks
//! out of that context is simpler than proving them IRQ-safe. (Upstream
//! issues the hypercall from the wakeup; the cost here is one work-item
//! latency per batch of signals.)
//!
//! When the eventfd file is released (its last fd closed), the hook is
//! unhooked in the wakeup (`EPOLLHUP`) and the irqfd is dropped from the
//! partition's list by a second work item ([`Irqfd::hup`]), as upstream and
//! KVM do: an irqfd never outlives its eventfd, so the list is bounded by the
//! caller's open eventfds (each irqfd needs its own), and its memory is
//! charged to the caller's memcg.
//!
//! Difference from upstream: resampling matches the EOI's vector against
//! the vector of each resampling irqfd's current route (upstream compares
//! the vector with the GSI number, which only works when they are equal).

use super::{routing::Route, Core};
use crate::sys::eventfd::{EventFd, EventHook, EventHookOwner};
use kernel::{prelude::*, sync::Arc};

/// What the work item of one irqfd needs.
pub(crate) struct Irqfd {
    core: Arc<Core>,
    gsi: u32,
}

impl EventHookOwner for Irqfd {
    /// The eventfd was signalled: asserts the interrupt the GSI's route names,
    /// if it has one (an irqfd may be registered before its route).
    fn fire(&self) {
        // The routing lock is held across the hypercall, so a route replaced
        // by SET_MSI_ROUTING is never used after that ioctl returns.
        let routes = self.core.routes.lock();
        if let Some(r) = route(&routes, self.gsi) {
            if let Err(e) = self
                .core
                .hv
                .assert_virtual_interrupt(self.core.pt, &r.interrupt())
            {
                pr_debug!(
                    "pt {}: irqfd gsi {}: assert failed ({:#x})\n",
                    self.core.pt,
                    self.gsi,
                    e.0
                );
            }
        }
    }

    /// The eventfd file was released: drops this irqfd's entry from the
    /// partition's list, unless a deassign or the partition's release took
    /// it first (they then wait for this call before freeing the hook).
    /// Called from the hook's hup work item, without locks held.
    fn hup(self: Arc<Self>) {
        let removed = {
            let mut list = self.core.irqfds.lock();
            let i = list.iter().position(|e| Arc::ptr_eq(e.hook.owner(), &self));
            i.and_then(|i| list.remove(i).ok())
        };
        // Outside the list lock: destroying the hook waits for its fire
        // work item (which takes `routes`), never for this one.
        drop(removed);
    }
}

/// The route of `gsi` in `table`.
pub(crate) fn route(table: &[Option<Route>], gsi: u32) -> Option<Route> {
    table.get(gsi as usize).copied().flatten()
}

/// A registered irqfd (counted in `live_objects` as `irqfds`).
pub(crate) struct Entry {
    /// The wait-queue hook; dropped first, which stops the work item.
    pub(crate) hook: EventHook<Irqfd>,
    /// Signalled when the guest ends a level-triggered interrupt of this
    /// irqfd's route.
    pub(crate) resample: Option<EventFd>,
}

impl Entry {
    /// The GSI.
    pub(crate) fn gsi(&self) -> u32 {
        self.hook.owner().gsi
    }
}

/// Creates the hook of a new irqfd on `eventfd` (fd `fd`) for `gsi`.
pub(crate) fn hook(
    core: &Arc<Core>,
    fd: i32,
    eventfd: EventFd,
    gsi: u32,
) -> Result<EventHook<Irqfd>> {
    let irqfd = Arc::new(
        Irqfd {
            core: core.clone(),
            gsi,
        },
        GFP_KERNEL_ACCOUNT,
    )?;
    EventHook::new(fd, eventfd, irqfd)
}
