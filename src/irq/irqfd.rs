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
//! Differences from upstream: an irqfd stays registered when its eventfd
//! file is closed (upstream drops it on EPOLLHUP) until it is deassigned or
//! the partition is released; resampling matches the EOI's vector against
//! the vector of each resampling irqfd's current route (upstream compares
//! the vector with the GSI number, which only works when they are equal).

use super::{routing::Route, Core};
use crate::sys::eventfd::{EventFd, EventHook};
use kernel::{prelude::*, sync::Arc};

/// What the work item of one irqfd needs.
pub(crate) struct Irqfd {
    core: Arc<Core>,
    gsi: u32,
}

impl Irqfd {
    /// The eventfd was signalled: asserts the interrupt the GSI's route names,
    /// if it has one (an irqfd may be registered before its route).
    pub(crate) fn fire(&self) {
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
}

/// The route of `gsi` in `table`.
pub(crate) fn route(table: &[Option<Route>], gsi: u32) -> Option<Route> {
    table.get(gsi as usize).copied().flatten()
}

/// A registered irqfd.
pub(crate) struct Entry {
    /// The wait-queue hook; dropped first, which stops the work item.
    pub(crate) hook: EventHook,
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
pub(crate) fn hook(core: &Arc<Core>, fd: i32, eventfd: EventFd, gsi: u32) -> Result<EventHook> {
    let irqfd = Arc::new(
        Irqfd {
            core: core.clone(),
            gsi,
        },
        GFP_KERNEL_ACCOUNT,
    )?;
    EventHook::new(fd, eventfd, irqfd)
}
