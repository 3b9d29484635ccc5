// SPDX-License-Identifier: GPL-2.0

//! The root's SynIC: per-CPU message and event-ring pages, and the handler
//! the SynIC interrupt runs (docs/design.md, "The SynIC").
//!
//! Each CPU, through a CPU-hotplug state, maps the message page (SIMP) and
//! the event-ring page (SIRBP) the hypervisor provides, enables SIMP, SIEFP
//! and SCONTROL unless VMBus already owns them, and programs SINT0
//! (intercepts and scheduler messages) and SINT5 (doorbells, delivered as
//! intercepts) with the callback vector. Going offline undoes exactly that:
//! what VMBus enabled stays enabled.
//!
//! The interrupt handler runs in hard-IRQ context (a system vector on
//! Hyper-V, a hard irq_work in the emulator), where not even a `spinlock_t`
//! may be taken (`PROVE_RAW_LOCK_NESTING`, PREEMPT_RT). It only queues this
//! CPU's deferred work ([`crate::sys::cpu::Deferred`]); the slot stays busy
//! until then, so the hypervisor holds further messages. The deferred part
//! reads SINT0's slot of its CPU's message page, dispatches the message, and
//! always acknowledges it (message type NONE, a full barrier, and `EOM` when
//! `message_pending` says another is queued). Upstream leaves unknown
//! messages unacknowledged, which blocks the slot for good; here they are
//! counted (`unhandled`) and dropped. The deferred part takes only IRQ-safe
//! spinlocks and hands EOIs (whose receivers take mutexes) to a work item.

use super::{
    abi,
    hyperv::{Guest, HyperV},
};
use crate::sys::cpu::{self, Deferred, Hotplug, HvPageMap};
use core::{
    ptr,
    sync::atomic::{fence, AtomicPtr, AtomicU8, Ordering},
};
use kernel::{
    new_spinlock,
    prelude::*,
    sync::{atomic::Relaxed, Arc, SpinLock},
};

/// Bytes of one SINT's slot in the message page, and of one event ring.
const SLOT: usize = 256;
/// Offset of `message_flags` in a message.
const FLAGS_OFFSET: usize = 5;

/// The pages this module mapped on one CPU.
struct Maps {
    /// Mapped while the CPU is online (the handler reads it through `msg`).
    _msg: HvPageMap,
    /// Likewise, read through `ring`.
    _ring: HvPageMap,
    /// SIMP, SIEFP and SCONTROL were enabled here (VMBus was absent).
    enabled_by_us: bool,
}

/// One CPU's SynIC as the handler sees it.
struct CpuSynic {
    /// The message page, or null while the CPU is offline. Written only by
    /// the hotplug callbacks of that CPU; read by its handler.
    msg: AtomicPtr<u8>,
    /// The event-ring page, likewise.
    ring: AtomicPtr<u8>,
    /// The SINT5 ring's next slot to read (only this CPU's handler).
    tail: AtomicU8,
    /// The mappings. Only the hotplug callbacks take it (a leaf).
    maps: Pin<KBox<SpinLock<Option<Maps>>>>,
}

/// The SynIC of every CPU and the backend its messages are for.
pub(crate) struct Synic {
    hv: Arc<HyperV>,
    cpus: KVec<CpuSynic>,
}

/// The live SynIC: the handler is installed and every online CPU is set up.
/// Dropping it removes the handler first, waits until no handler runs,
/// takes every CPU's SynIC down, and waits for deferred EOIs.
pub(crate) struct SynicGuard {
    synic: KBox<Synic>,
    hotplug: Option<Hotplug>,
    deferred: Option<Deferred>,
}

/// The SynIC the handler and the hotplug callbacks use; set while a
/// [`SynicGuard`] lives.
static SYNIC: AtomicPtr<Synic> = AtomicPtr::new(ptr::null_mut());

fn synic() -> Option<&'static Synic> {
    let p = SYNIC.load(Ordering::Acquire);
    // SAFETY: a non-null `SYNIC` points into the `KBox` of the live
    // `SynicGuard`, whose drop nulls it (and waits for handlers and hotplug
    // callbacks to finish) before freeing it.
    unsafe { p.as_ref() }
}

/// Sets the SynIC of every online CPU up and installs the handler.
pub(crate) fn start(hv: Arc<HyperV>) -> Result<SynicGuard> {
    let n = cpu::nr_cpu_ids() as usize;
    let mut cpus = KVec::with_capacity(n, GFP_KERNEL)?;
    for _ in 0..n {
        cpus.push(
            CpuSynic {
                msg: AtomicPtr::new(ptr::null_mut()),
                ring: AtomicPtr::new(ptr::null_mut()),
                tail: AtomicU8::new(0),
                maps: KBox::pin_init(new_spinlock!(None, "CpuSynic::maps"), GFP_KERNEL)?,
            },
            GFP_KERNEL,
        )?;
    }
    let mut guard = SynicGuard {
        synic: KBox::new(Synic { hv, cpus }, GFP_KERNEL)?,
        hotplug: None,
        deferred: None,
    };
    let p: *mut Synic = &mut *guard.synic;
    SYNIC.store(p, Ordering::Release);
    guard.deferred = Some(Deferred::new(synic_deferred));
    guard.hotplug = Some(Hotplug::new(c"mshv_rs:synic", cpu_online, cpu_offline)?);
    guard.synic.hv.seam.set_handler(Some(synic_interrupt));
    Ok(guard)
}

impl Drop for SynicGuard {
    fn drop(&mut self) {
        self.synic.hv.seam.set_handler(None);
        // Handlers already running on other CPUs finish within a grace
        // period (hard-IRQ code is an RCU read-side section).
        cpu::synchronize_rcu();
        // Deferred work already queued runs to its end first.
        drop(self.deferred.take());
        drop(self.hotplug.take());
        SYNIC.store(ptr::null_mut(), Ordering::Release);
        self.synic.hv.flush_eois();
    }
}

extern "C" fn cpu_online(cpu: u32) -> i32 {
    let Some(s) = synic() else { return 0 };
    match s.online(cpu as usize) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

extern "C" fn cpu_offline(cpu: u32) -> i32 {
    if let Some(s) = synic() {
        s.offline(cpu as usize);
    }
    0
}

/// The pfn a SIMP, SIEFP or SIRBP value points at.
fn page_pfn(msr: u64) -> u64 {
    msr >> abi::HV_SYNIC_PAGE_GPA_SHIFT
}

impl Synic {
    /// Runs on `cpu`: maps its pages and programs its SINTs.
    fn online(&self, cpu: usize) -> Result {
        let c = self.cpus.get(cpu).ok_or(EINVAL)?;
        let seam = &*self.hv.seam;
        let id = self.hv.identity;
        let mut simp = seam.read_msr(abi::HV_MSR_SIMP);
        if !id.vmbus {
            simp |= abi::HV_SYNIC_PAGE_ENABLE;
            seam.write_msr(abi::HV_MSR_SIMP, simp);
        }
        let msg = HvPageMap::new(page_pfn(simp))?;
        if !id.vmbus {
            let siefp = seam.read_msr(abi::HV_MSR_SIEFP) | abi::HV_SYNIC_PAGE_ENABLE;
            seam.write_msr(abi::HV_MSR_SIEFP, siefp);
        }
        // On the root the hypervisor provides the event-ring page.
        let sirbp = seam.read_msr(abi::HV_MSR_SIRBP);
        let ring = match HvPageMap::new(page_pfn(sirbp)) {
            Ok(r) => r,
            Err(e) => {
                self.disable_pages(id.vmbus);
                return Err(e);
            }
        };
        seam.write_msr(abi::HV_MSR_SIRBP, sirbp | abi::HV_SYNIC_PAGE_ENABLE);
        c.tail.store(0, Ordering::Relaxed);
        c.msg.store(msg.as_ptr(), Ordering::Release);
        c.ring.store(ring.as_ptr(), Ordering::Release);
        let base = u64::from(id.vector)
            | if id.auto_eoi {
                abi::HV_SINT_AUTO_EOI
            } else {
                0
            };
        let sint = |i: usize| abi::HV_MSR_SINT0 + i as u32;
        seam.write_msr(sint(abi::HV_SYNIC_INTERCEPTION_SINT_INDEX), base);
        seam.write_msr(
            sint(abi::HV_SYNIC_DOORBELL_SINT_INDEX),
            base | abi::HV_SINT_AS_INTERCEPT,
        );
        if !id.vmbus {
            let sc = seam.read_msr(abi::HV_MSR_SCONTROL) | 1;
            seam.write_msr(abi::HV_MSR_SCONTROL, sc);
        }
        *c.maps.lock() = Some(Maps {
            _msg: msg,
            _ring: ring,
            enabled_by_us: !id.vmbus,
        });
        Ok(())
    }

    /// Turns SIMP and SIEFP off again if this module turned them on.
    fn disable_pages(&self, vmbus: bool) {
        if vmbus {
            return;
        }
        let seam = &*self.hv.seam;
        for msr in [abi::HV_MSR_SIEFP, abi::HV_MSR_SIMP] {
            let v = seam.read_msr(msr) & !abi::HV_SYNIC_PAGE_ENABLE;
            seam.write_msr(msr, v);
        }
    }

    /// Runs on `cpu`: masks its SINTs and undoes what [`Synic::online`] did.
    fn offline(&self, cpu: usize) {
        let Some(c) = self.cpus.get(cpu) else { return };
        let seam = &*self.hv.seam;
        for i in [
            abi::HV_SYNIC_INTERCEPTION_SINT_INDEX,
            abi::HV_SYNIC_DOORBELL_SINT_INDEX,
        ] {
            seam.write_msr(abi::HV_MSR_SINT0 + i as u32, abi::HV_SINT_MASKED);
        }
        // The handler runs on this CPU only, between our instructions: once
        // the pointers are null it no longer touches the pages.
        c.msg.store(ptr::null_mut(), Ordering::Release);
        c.ring.store(ptr::null_mut(), Ordering::Release);
        let Some(maps) = c.maps.lock().take() else {
            return;
        };
        let sirbp = seam.read_msr(abi::HV_MSR_SIRBP) & !abi::HV_SYNIC_PAGE_ENABLE;
        seam.write_msr(abi::HV_MSR_SIRBP, sirbp);
        if maps.enabled_by_us {
            let sc = seam.read_msr(abi::HV_MSR_SCONTROL) & !1;
            seam.write_msr(abi::HV_MSR_SCONTROL, sc);
            self.disable_pages(false);
        }
        drop(maps);
    }

    /// The handler proper, on `cpu`.
    fn interrupt(&self, cpu: usize) {
        let Some(c) = self.cpus.get(cpu) else { return };
        let page = c.msg.load(Ordering::Acquire);
        if page.is_null() {
            return;
        }
        // SAFETY: `page` is this CPU's mapped message page (4 KiB); SINT0's
        // slot is its first 256 bytes. The hypervisor writes it, so every
        // access is volatile.
        let ty = unsafe { ptr::read_volatile(page.cast::<u32>()) };
        if ty == abi::HVMSG_NONE {
            return;
        }
        let mut m = [0u8; SLOT];
        for (i, b) in m.iter_mut().enumerate() {
            // SAFETY: as above, within the slot.
            *b = unsafe { ptr::read_volatile(page.add(i)) };
        }
        if !self.dispatch(c, ty, &m) {
            self.hv.unhandled.fetch_add(1, Relaxed);
        }
        // Acknowledge: free the slot, then ask for the next message if the
        // hypervisor queued one behind it.
        // SAFETY: as above.
        unsafe { ptr::write_volatile(page.cast::<u32>(), abi::HVMSG_NONE) };
        fence(Ordering::SeqCst);
        // SAFETY: as above.
        let flags = unsafe { ptr::read_volatile(page.add(FLAGS_OFFSET)) };
        if flags & abi::HV_MESSAGE_FLAG_PENDING != 0 {
            self.hv.seam.write_msr(abi::HV_MSR_EOM, 0);
        }
    }

    /// Acts on one message; `false` if nothing wanted it.
    fn dispatch(&self, c: &CpuSynic, ty: u32, m: &[u8; SLOT]) -> bool {
        let sender: u64 = abi::read_at(m, 8).unwrap_or(0);
        let payload = &m[16..];
        match ty {
            abi::HVMSG_SYNIC_SINT_INTERCEPT => {
                let n: abi::HvNotificationMessagePayload =
                    abi::read_at(payload, 0).unwrap_or_default();
                if n.sint_index as usize != abi::HV_SYNIC_DOORBELL_SINT_INDEX {
                    return false;
                }
                self.drain_doorbells(c);
                true
            }
            abi::HVMSG_SCHEDULER_VP_SIGNAL_PAIR => {
                let Some(p) = abi::read_at::<abi::HvVpSignalPairSchedulerMessage>(payload, 0)
                else {
                    return false;
                };
                let count = (p.vp_count as usize).min(abi::HV_SIGNAL_PAIR_COUNT);
                let (pts, vps) = (p.partition_ids, p.vp_indexes);
                for i in 0..count {
                    self.kick(pts[i], vps[i]);
                }
                true
            }
            abi::HVMSG_SCHEDULER_VP_SIGNAL_BITSET => {
                self.signal_bitset(payload);
                true
            }
            abi::HVMSG_X64_APIC_EOI => {
                let e: abi::HvX64ApicEoiMessage = abi::read_at(payload, 0).unwrap_or_default();
                self.hv
                    .as_arc_borrow()
                    .queue_eoi(sender, e.vp_index, e.interrupt_vector);
                true
            }
            abi::HVMSG_ASYNC_CALL_COMPLETION => {
                let a: abi::HvAsyncCompletionMessage = abi::read_at(payload, 0).unwrap_or_default();
                match self.hv.guest(a.partition_id) {
                    Some(g) => {
                        g.complete_async(a.status as u16);
                        true
                    }
                    None => false,
                }
            }
            abi::HVMSG_OPAQUE_INTERCEPT => {
                let o: abi::HvOpaqueInterceptMessage = abi::read_at(payload, 0).unwrap_or_default();
                self.kick(sender, o.vp_index)
            }
            _ => false,
        }
    }

    /// Kicks VP `vp` of partition `pt`; `false` if there is no such VP.
    fn kick(&self, pt: u64, vp: u32) -> bool {
        match self.hv.guest(pt).and_then(|g: Arc<Guest>| g.vp(vp)) {
            Some(run) => {
                run.kick();
                true
            }
            None => false,
        }
    }

    /// `HVMSG_SCHEDULER_VP_SIGNAL_BITSET`: a partition id, an overflow count,
    /// a VP count, and a sparse VP set (`HV_GENERIC_SET_SPARSE_4K`: a mask of
    /// valid 64-VP banks, then one u64 per valid bank).
    fn signal_bitset(&self, payload: &[u8]) {
        let pt: u64 = abi::read_at(payload, 0).unwrap_or(0);
        let format: u64 = abi::read_at(payload, 16).unwrap_or(u64::MAX);
        if format != 0 {
            return;
        }
        let valid: u64 = abi::read_at(payload, 24).unwrap_or(0);
        let mut slot = 0;
        for bank in 0..64u32 {
            if valid & (1 << bank) == 0 {
                continue;
            }
            let Some(bits) = abi::read_at::<u64>(payload, 32 + slot * 8) else {
                return;
            };
            slot += 1;
            for bit in 0..64u32 {
                if bits & (1 << bit) != 0 {
                    self.kick(pt, bank * 64 + bit);
                }
            }
        }
    }

    /// Takes every port id out of this CPU's SINT5 event ring and rings the
    /// doorbell of each.
    fn drain_doorbells(&self, c: &CpuSynic) {
        let ring = c.ring.load(Ordering::Acquire);
        if ring.is_null() {
            return;
        }
        // SAFETY: `ring` is this CPU's mapped event-ring page; SINT5's ring
        // is the 256 bytes at `5 * SLOT`.
        let ring = unsafe { ring.add(abi::HV_SYNIC_DOORBELL_SINT_INDEX * SLOT) };
        while let Some(port) = self.next_port(c, ring) {
            let entry = self.hv.ports.lock().get(&port).cloned();
            match entry.and_then(|e| e.guest.notify().map(|n| (n, e.driver_port))) {
                Some((notify, driver_port)) => notify.doorbell(driver_port),
                None => {
                    self.hv.unhandled.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// The next port id of one event ring (`hv_synic_event_ring`: masked
    /// and full flags, then 63 u32 slots; 0 is empty). While it drains,
    /// the handler masks the ring's signal; an empty ring is unmasked and
    /// checked once more, and a ring the hypervisor marked full is reported
    /// empty (`HVCALL_NOTIFY_PORT_RING_EMPTY`) so it refills it.
    fn next_port(&self, c: &CpuSynic, ring: *mut u8) -> Option<u32> {
        let tail = c.tail.load(Ordering::Relaxed) as usize % abi::HV_SYNIC_EVENT_RING_MESSAGE_COUNT;
        // Every access below stays within the 256-byte ring (`signal_masked`
        // at 0, `ring_full` at 1, 63 u32 slots from 4) and is volatile: the
        // hypervisor writes the ring concurrently.
        let slot = ring.wrapping_add(4 + tail * 4).cast::<u32>();
        let masked = ring;
        let full = ring.wrapping_add(1);
        // SAFETY: `slot` is a u32 slot of this CPU's mapped event ring (above).
        let mut port = unsafe { ptr::read_volatile(slot) };
        if port == 0 {
            // SAFETY: `full` is the ring's `ring_full` byte (above).
            if unsafe { ptr::read_volatile(full) } != 0 {
                // SAFETY: `full` is the ring's `ring_full` byte (above).
                unsafe { ptr::write_volatile(full, 0) };
                self.hv.seam.fast_hypercall8(
                    abi::HVCALL_NOTIFY_PORT_RING_EMPTY,
                    abi::HV_SYNIC_DOORBELL_SINT_INDEX as u64,
                );
                // SAFETY: `slot` is a u32 slot of this CPU's mapped event ring (above).
                port = unsafe { ptr::read_volatile(slot) };
            }
            if port == 0 {
                // SAFETY: `masked` is the ring's `signal_masked` byte (above).
                unsafe { ptr::write_volatile(masked, 0) };
                fence(Ordering::SeqCst);
                // SAFETY: `slot` is a u32 slot of this CPU's mapped event ring (above).
                port = unsafe { ptr::read_volatile(slot) };
                if port == 0 {
                    return None;
                }
            }
            // SAFETY: `masked` is the ring's `signal_masked` byte (above).
            unsafe { ptr::write_volatile(masked, 1) };
        }
        // SAFETY: `slot` is a u32 slot of this CPU's mapped event ring (above).
        unsafe { ptr::write_volatile(slot, 0) };
        c.tail.store(
            ((tail + 1) % abi::HV_SYNIC_EVENT_RING_MESSAGE_COUNT) as u8,
            Ordering::Relaxed,
        );
        Some(port)
    }
}

/// The SynIC interrupt handler (`hv_setup_mshv_handler`). Hard-IRQ
/// context: it takes no lock at all, only queues this CPU's deferred work.
extern "C" fn synic_interrupt() {
    Deferred::raise();
}

/// The deferred part of the handler, on the interrupted CPU.
extern "C" fn synic_deferred() {
    if let Some(s) = synic() {
        s.interrupt(cpu::current() as usize);
    }
}
