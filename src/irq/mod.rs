// SPDX-License-Identifier: GPL-2.0

//! A partition's interrupt plumbing: the MSI routing table
//! (`MSHV_SET_MSI_ROUTING`, [`routing`]), irqfds (`MSHV_IRQFD`, [`irqfd`])
//! and ioeventfds (`MSHV_IOEVENTFD`, [`ioeventfd`]).
//!
//! Everything here is above the [`Hypervisor`] trait: interrupts go out as
//! `HVCALL_ASSERT_VIRTUAL_INTERRUPT`, ioeventfds are hypervisor doorbells,
//! and the hypervisor's notifications (doorbell rung, level-triggered EOI)
//! come back through [`Notify`], which [`IrqState`] implements.
//!
//! # Locking
//!
//! - `Core::routes` (mutex): the routing table; held across the assert
//!   hypercall of an irqfd (see [`irqfd::Irqfd::fire`]).
//! - `Core::irqfds` (mutex): the irqfd list. `routes` may be taken while it
//!   is held (assign, EOI), never the reverse. An entry is never dropped
//!   with it held: dropping one waits for the hook's work items, and the hup
//!   work item ([`irqfd::Irqfd::hup`]) takes `irqfds`.
//! - `IrqState::ioeventfd_ioctl` (mutex): serializes `MSHV_IOEVENTFD`, like
//!   upstream's `pt_mutex`; protects the next port id.
//! - `IrqState::ioeventfds` (IRQ-safe spinlock): the ioeventfd list, looked
//!   up when a doorbell rings, in hard-IRQ context (the SynIC interrupt
//!   handler, `hv::synic`). Taken inside `ioeventfd_ioctl`, never across a
//!   hypercall; entries are dropped outside it.

/// `HV_X64_INTERRUPT_TYPE_EXTINT`.
const HV_X64_INTERRUPT_TYPE_EXTINT: u32 = 7;

pub(crate) mod ioeventfd;
pub(crate) mod irqfd;
pub(crate) mod routing;

use crate::{
    hv::{Doorbell, Hypervisor, Notify},
    mem::Stats,
    sys::eventfd::EventFd,
    uapi::{self, MshvUserIoeventfd, MshvUserIrqEntry, MshvUserIrqTable, MshvUserIrqfd},
};
use core::sync::atomic::Ordering;
use kernel::{
    new_mutex, new_spinlock_irq,
    prelude::*,
    sync::{Arc, Mutex, SpinLockIrq},
    uaccess::{UserPtr, UserSlice},
};
use routing::Route;

/// What irqfd work items share with the partition.
#[pin_data]
pub(crate) struct Core {
    hv: Arc<dyn Hypervisor>,
    pt: u64,
    /// The routing table, indexed by GSI.
    #[pin]
    routes: Mutex<KVec<Option<Route>>>,
    /// The irqfds. Each entry holds an `Arc<Core>` through its hook's
    /// owner: [`IrqState::release`] empties the list, which breaks the cycle.
    #[pin]
    irqfds: Mutex<KVec<irqfd::Entry>>,
}

/// A partition's routing table, irqfds and ioeventfds.
#[pin_data]
pub(crate) struct IrqState {
    core: Arc<Core>,
    /// The partition's statistics (`doorbells`).
    stats: Arc<Stats>,
    /// The next doorbell port id.
    #[pin]
    ioeventfd_ioctl: Mutex<u32>,
    /// IRQ-safe: the SynIC interrupt handler rings doorbells from here.
    #[pin]
    ioeventfds: SpinLockIrq<KVec<ioeventfd::Entry>>,
}

impl IrqState {
    /// The state of partition `pt`, with no routes, irqfds or ioeventfds.
    pub(crate) fn new(hv: Arc<dyn Hypervisor>, pt: u64, stats: Arc<Stats>) -> Result<Arc<Self>> {
        let core = Arc::pin_init(
            pin_init!(Core {
                hv,
                pt,
                routes <- new_mutex!(KVec::new(), "mshv_rs_irq_routes"),
                irqfds <- new_mutex!(KVec::new(), "mshv_rs_irqfds"),
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        Arc::pin_init(
            pin_init!(IrqState {
                core,
                stats,
                ioeventfd_ioctl <- new_mutex!(1, "mshv_rs_ioeventfd_ioctl"),
                ioeventfds <- new_spinlock_irq!(KVec::new(), "IrqState::ioeventfds"),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// Releases every irqfd and ioeventfd (the partition fd was closed).
    pub(crate) fn release(&self) {
        let irqfds = core::mem::take(&mut *self.core.irqfds.lock());
        // Each hook waits for its work items here, outside the lock.
        drop(irqfds);
        let _ioctl = self.ioeventfd_ioctl.lock();
        let entries = core::mem::take(&mut *self.ioeventfds.lock());
        for e in entries.iter() {
            let _ = self.core.hv.disconnect_doorbell(self.core.pt, e.port);
        }
    }

    /// `MSHV_IRQFD`.
    pub(crate) fn irqfd_ioctl(&self, user: UserPtr) -> Result {
        let args: MshvUserIrqfd = UserSlice::new(user, size_of::<MshvUserIrqfd>())
            .reader()
            .read()?;
        if args.flags & !uapi::MSHV_IRQFD_FLAGS_MASK != 0 {
            return Err(EINVAL);
        }
        if args.flags & (1 << uapi::MSHV_IRQFD_BIT_DEASSIGN) != 0 {
            return self.irqfd_deassign(&args);
        }
        self.irqfd_assign(&args)
    }

    fn irqfd_assign(&self, args: &MshvUserIrqfd) -> Result {
        let eventfd = EventFd::from_fd(args.fd)?;
        let resample = if args.flags & (1 << uapi::MSHV_IRQFD_BIT_RESAMPLE) != 0 {
            Some(EventFd::from_fd(args.resamplefd)?)
        } else {
            None
        };
        let mut irqfds = self.core.irqfds.lock();
        if irqfds.iter().any(|e| e.hook.eventfd().same(&eventfd)) {
            return Err(EBUSY);
        }
        if resample.is_some() {
            // Resampling is for level-triggered routes only (checked against
            // the route at assign time, as upstream).
            let routes = self.core.routes.lock();
            if !irqfd::route(&routes, args.gsi).is_some_and(|r| r.interrupt().level) {
                return Err(EINVAL);
            }
        }
        irqfds.reserve(1, GFP_KERNEL_ACCOUNT)?;
        // Hooked under the list lock: an EPOLLHUP that comes at once waits
        // for the entry to be in the list before looking for it.
        let hook = irqfd::hook(&self.core, args.fd, eventfd, args.gsi)?;
        if let Err(e) = irqfds.push_within_capacity(irqfd::Entry { hook, resample }) {
            // Unreachable after the reservation; dropped outside the lock.
            drop(irqfds);
            drop(e);
            return Err(ENOMEM);
        }
        Ok(())
    }

    fn irqfd_deassign(&self, args: &MshvUserIrqfd) -> Result {
        let eventfd = EventFd::from_fd(args.fd)?;
        let removed = {
            let mut list = self.core.irqfds.lock();
            let i = list
                .iter()
                .position(|e| e.hook.eventfd().same(&eventfd) && e.gsi() == args.gsi);
            // At most one: assign refuses a second irqfd on an eventfd.
            i.and_then(|i| list.remove(i).ok())
        };
        // Dropping the entry unhooks it and waits for its work items, which
        // may take the list lock: outside it. Nothing matching is not an
        // error (upstream).
        drop(removed);
        Ok(())
    }

    /// `MSHV_SET_MSI_ROUTING`.
    pub(crate) fn set_msi_routing(&self, user: UserPtr) -> Result {
        let head = size_of::<MshvUserIrqTable>();
        let args: MshvUserIrqTable = UserSlice::new(user, head).reader().read()?;
        if args.nr > uapi::MSHV_MAX_GUEST_IRQS || args.rsvd != 0 {
            return Err(EINVAL);
        }
        let n = args.nr as usize;
        let mut entries = KVec::<MshvUserIrqEntry>::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        let mut reader = UserSlice::new(user, head + n * size_of::<MshvUserIrqEntry>()).reader();
        reader.skip(head)?;
        for _ in 0..n {
            entries.push(reader.read()?, GFP_KERNEL_ACCOUNT)?;
        }
        let table = routing::build(&entries)?;
        // Replaced wholesale: an irqfd work item sees the old table or the
        // new one, and none uses the old one after this returns.
        let old = core::mem::replace(&mut *self.core.routes.lock(), table);
        drop(old);
        Ok(())
    }

    /// `MSHV_IOEVENTFD`.
    pub(crate) fn ioeventfd_ioctl(&self, user: UserPtr) -> Result {
        let args: MshvUserIoeventfd = UserSlice::new(user, size_of::<MshvUserIoeventfd>())
            .reader()
            .read()?;
        if args.flags & !uapi::MSHV_IOEVENTFD_FLAGS_MASK != 0 || args.rsvd != [0; 4] {
            return Err(EINVAL);
        }
        if args.flags & (1 << uapi::MSHV_IOEVENTFD_BIT_PIO) != 0 {
            return Err(EOPNOTSUPP);
        }
        let datamatch =
            (args.flags & (1 << uapi::MSHV_IOEVENTFD_BIT_DATAMATCH) != 0).then_some(args.datamatch);
        let doorbell = Doorbell {
            gpa: args.addr,
            len: args.len,
            datamatch,
        };
        if args.flags & (1 << uapi::MSHV_IOEVENTFD_BIT_DEASSIGN) != 0 {
            return self.ioeventfd_deassign(args.fd, &doorbell);
        }
        ioeventfd::check_range(&args)?;
        let eventfd = EventFd::from_fd(args.fd)?;
        let mut next_port = self.ioeventfd_ioctl.lock();
        {
            let list = self.ioeventfds.lock();
            if list
                .iter()
                .any(|e| ioeventfd::collides(&e.doorbell, &doorbell))
            {
                return Err(EEXIST);
            }
            if list.len() >= ioeventfd::MAX_IOEVENTFDS {
                return Err(ENOSPC);
            }
        }
        let port = *next_port;
        let next = port.checked_add(1).ok_or(ENOSPC)?;
        // Room in the list first, so nothing can fail after the connect.
        self.reserve_ioeventfd()?;
        self.core
            .hv
            .connect_doorbell(self.core.pt, port, &doorbell)?;
        *next_port = next;
        let entry = ioeventfd::Entry::new(port, doorbell, eventfd);
        if let Err(e) = self.ioeventfds.lock().push_within_capacity(entry) {
            // Unreachable: room was made under the same ioctl mutex.
            drop(e);
            let _ = self.core.hv.disconnect_doorbell(self.core.pt, port);
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// Makes room for one more ioeventfd without allocating under the list's
    /// spinlock. The caller holds `ioeventfd_ioctl`, so only it changes the
    /// list.
    fn reserve_ioeventfd(&self) -> Result {
        let (len, cap) = {
            let list = self.ioeventfds.lock();
            (list.len(), list.capacity())
        };
        if len < cap {
            return Ok(());
        }
        let mut grown = KVec::with_capacity(len * 2 + 4, GFP_KERNEL_ACCOUNT)?;
        let mut list = self.ioeventfds.lock();
        for e in list.drain_all() {
            // Within capacity: `len` entries into room for more.
            if grown.push_within_capacity(e).is_err() {
                return Err(ENOMEM);
            }
        }
        *list = grown;
        Ok(())
    }

    fn ioeventfd_deassign(&self, fd: i32, doorbell: &Doorbell) -> Result {
        let eventfd = EventFd::from_fd(fd)?;
        let _ioctl = self.ioeventfd_ioctl.lock();
        let port = self
            .ioeventfds
            .lock()
            .iter()
            .find(|e| e.eventfd.same(&eventfd) && e.doorbell == *doorbell)
            .map(|e| e.port)
            .ok_or(ENOENT)?;
        // Disconnect first: when it returns the doorbell no longer rings.
        let res = self.core.hv.disconnect_doorbell(self.core.pt, port);
        let removed = {
            let mut list = self.ioeventfds.lock();
            match list.iter().position(|e| e.port == port) {
                Some(i) => list.remove(i).ok(),
                None => None,
            }
        };
        // The eventfd reference is dropped outside the spinlock.
        drop(removed);
        res.map_err(Into::into)
    }
}

impl Notify for IrqState {
    fn doorbell(&self, port: u32) {
        let list = self.ioeventfds.lock();
        if let Some(e) = list.iter().find(|e| e.port == port) {
            e.eventfd.signal();
            self.stats.doorbells.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn eoi(&self, _vp: u32, vector: u32) {
        let irqfds = self.core.irqfds.lock();
        let routes = self.core.routes.lock();
        for e in irqfds.iter() {
            if let Some(rs) = &e.resample {
                let Some(irq) = irqfd::route(&routes, e.gsi()).map(|r| r.interrupt()) else {
                    continue;
                };
                if irq.level && irq.vector == vector {
                    // An ExtINT is cleared in the hypervisor before the line
                    // is resampled, as upstream does.
                    if irq.kind == HV_X64_INTERRUPT_TYPE_EXTINT {
                        let _ = self.core.hv.clear_virtual_interrupt(self.core.pt);
                    }
                    rs.signal();
                }
            }
        }
    }
}
