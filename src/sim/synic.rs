// SPDX-License-Identifier: GPL-2.0

//! The emulator's SynIC: what the root's synthetic interrupt controller is
//! to the driver, per CPU (docs/sim.md; TLFS "Synthetic Interrupt
//! Controller").
//!
//! Each possible CPU has a message page, an event-flags page and an
//! event-ring page that the emulator provides (on the root, Hyper-V provides
//! them: the driver finds them in SIMP, SIEFP and SIRBP and maps them by
//! pfn), and the registers SCONTROL, SINT0..15, SIMP, SIEFP and SIRBP.
//!
//! Messages go to SINT0's slot (the only SINT the root driver uses for
//! messages). Slot semantics as the TLFS gives them: a free slot (message
//! type NONE) gets the message and the CPU gets the interrupt; a busy slot
//! queues it and sets `message_pending` in the busy slot; the root frees the
//! slot and, seeing `message_pending`, writes EOM, and the next queued
//! message is delivered. Doorbells go into SINT5's event ring as port ids;
//! a `HVMSG_SYNIC_SINT_INTERCEPT` message on SINT0 reports a ring that has
//! entries unless the root masked the ring's signal; a full ring sets
//! `ring_full` and keeps the port until `HVCALL_NOTIFY_PORT_RING_EMPTY`.
//!
//! A message or doorbell goes to the calling CPU if its SynIC can take it
//! (SCONTROL enabled, SIMP enabled, the SINT unmasked), else to the lowest
//! CPU that can. With none, it is counted in `lost` (Hyper-V would hold it;
//! the driver enables every online CPU at load, so a loss is a driver bug
//! the tests check for).
//!
//! Choices where the TLFS leaves behaviour open: writes of reserved SINT
//! bits, or of a SIMP/SIEFP/SIRBP gpa other than the provided page, are
//! ignored and counted in `violations` (Hyper-V raises #GP on a reserved-bit
//! write; the seam has no way to fault the caller, so tests assert the
//! counter stays 0). The queue behind a busy slot holds [`QUEUE`] messages.
//!
//! Locking: each CPU's `state` is an IRQ-safe spinlock, a leaf taken after
//! any sim lock; the interrupt is raised with it released.

use crate::sys::{cpu, cpu::Ipi, page::OwnedPage};
use crate::tlfs::{abi, seam::SynicHandler};
use core::{ptr, sync::atomic::fence, sync::atomic::Ordering};
use kernel::{
    new_spinlock_irq,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        SpinLockIrq,
    },
};

/// Messages one CPU queues behind a busy SINT0 slot.
const QUEUE: usize = 64;
/// Ports one CPU keeps while its SINT5 ring is full.
const OVERFLOW: usize = 256;
/// Bytes of a message slot and of an event ring.
const SLOT: usize = 256;

/// One CPU's SynIC registers and the messages waiting for its slot.
struct Regs {
    scontrol: u64,
    simp_enabled: bool,
    siefp_enabled: bool,
    sirbp_enabled: bool,
    sint: [u64; abi::HV_SYNIC_SINT_COUNT],
    /// Messages behind a busy SINT0 slot, oldest first.
    queue: KVec<[u8; SLOT]>,
    /// The SINT5 ring's next slot to write.
    ring_head: usize,
    /// Ports that did not fit the SINT5 ring.
    overflow: KVec<u32>,
}

/// One CPU's SynIC.
struct EmuCpu {
    msg: OwnedPage,
    eflags: OwnedPage,
    ring: OwnedPage,
    state: Pin<KBox<SpinLockIrq<Regs>>>,
}

/// The emulated SynIC of every possible CPU.
pub(crate) struct EmuSynic {
    cpus: KVec<EmuCpu>,
    ipi: Ipi,
    /// Messages and doorbells no CPU could take.
    pub(crate) lost: Atomic<u64>,
    /// MSR writes Hyper-V would refuse (see the module documentation).
    pub(crate) violations: Atomic<u64>,
    /// Messages delivered into a slot.
    pub(crate) delivered: Atomic<u64>,
    /// Messages that waited behind a busy slot.
    pub(crate) queued: Atomic<u64>,
}

/// Where a message or doorbell goes.
fn takes(r: &Regs, sint: usize) -> bool {
    r.scontrol & 1 != 0
        && r.simp_enabled
        && r.sint
            .get(sint)
            .is_some_and(|s| s & abi::HV_SINT_MASKED == 0)
}

impl EmuSynic {
    /// Every possible CPU's pages, all registers at their reset values
    /// (SINTs masked, pages disabled).
    pub(crate) fn new() -> Result<Self> {
        let n = cpu::nr_cpu_ids() as usize;
        let mut cpus = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            let regs = Regs {
                scontrol: 0,
                simp_enabled: false,
                siefp_enabled: false,
                sirbp_enabled: false,
                sint: [abi::HV_SINT_MASKED; abi::HV_SYNIC_SINT_COUNT],
                queue: KVec::with_capacity(QUEUE, GFP_KERNEL)?,
                ring_head: 0,
                overflow: KVec::with_capacity(OVERFLOW, GFP_KERNEL)?,
            };
            cpus.push(
                EmuCpu {
                    msg: OwnedPage::new()?,
                    eflags: OwnedPage::new()?,
                    ring: OwnedPage::new()?,
                    state: KBox::pin_init(new_spinlock_irq!(regs, "EmuCpu::state"), GFP_KERNEL)?,
                },
                GFP_KERNEL,
            )?;
        }
        Ok(Self {
            cpus,
            ipi: Ipi::new()?,
            lost: Atomic::new(0),
            violations: Atomic::new(0),
            delivered: Atomic::new(0),
            queued: Atomic::new(0),
        })
    }

    /// The handler the interrupt calls.
    pub(crate) fn set_handler(&self, handler: Option<SynicHandler>) {
        self.ipi.set_handler(handler);
    }

    fn page_msr(pfn: u64, enabled: bool) -> u64 {
        (pfn << abi::HV_SYNIC_PAGE_GPA_SHIFT) | u64::from(enabled)
    }

    /// `RDMSR` of a SynIC register on the calling CPU.
    pub(crate) fn read_msr(&self, msr: u32) -> u64 {
        let Some(c) = self.cpus.get(cpu::current() as usize) else {
            return 0;
        };
        let r = c.state.lock();
        match msr {
            abi::HV_MSR_SCONTROL => r.scontrol,
            abi::HV_MSR_SIMP => Self::page_msr(c.msg.pfn(), r.simp_enabled),
            abi::HV_MSR_SIEFP => Self::page_msr(c.eflags.pfn(), r.siefp_enabled),
            abi::HV_MSR_SIRBP => Self::page_msr(c.ring.pfn(), r.sirbp_enabled),
            m if (abi::HV_MSR_SINT0..abi::HV_MSR_SINT0 + 16).contains(&m) => r
                .sint
                .get((m - abi::HV_MSR_SINT0) as usize)
                .copied()
                .unwrap_or(0),
            _ => {
                drop(r);
                self.violation(msr, 0);
                0
            }
        }
    }

    /// A message or doorbell no CPU could take.
    fn lose(&self) {
        self.lost.fetch_add(1, Relaxed);
        kernel::pr_warn_once!("emulator: lost a SynIC message or doorbell\n");
    }

    fn violation(&self, msr: u32, value: u64) {
        self.violations.fetch_add(1, Relaxed);
        kernel::pr_warn_once!(
            "emulator: refused SynIC MSR write {:#x} = {:#x}\n",
            msr,
            value
        );
    }

    /// `WRMSR` of a SynIC register on the calling CPU.
    pub(crate) fn write_msr(&self, msr: u32, value: u64) {
        let cpu = cpu::current();
        let Some(c) = self.cpus.get(cpu as usize) else {
            return;
        };
        let page_ok = |pfn: u64| value >> abi::HV_SYNIC_PAGE_GPA_SHIFT == pfn;
        let mut r = c.state.lock();
        match msr {
            abi::HV_MSR_SCONTROL if value & !1 == 0 => r.scontrol = value,
            abi::HV_MSR_SIMP if page_ok(c.msg.pfn()) => r.simp_enabled = value & 1 != 0,
            abi::HV_MSR_SIEFP if page_ok(c.eflags.pfn()) => r.siefp_enabled = value & 1 != 0,
            abi::HV_MSR_SIRBP if page_ok(c.ring.pfn()) => r.sirbp_enabled = value & 1 != 0,
            abi::HV_MSR_EOM => {
                drop(r);
                self.deliver_next(cpu);
            }
            m if (abi::HV_MSR_SINT0..abi::HV_MSR_SINT0 + 16).contains(&m)
                && value & !abi::HV_SINT_VALID == 0 =>
            {
                if let Some(s) = r.sint.get_mut((m - abi::HV_MSR_SINT0) as usize) {
                    *s = value;
                }
            }
            _ => {
                drop(r);
                self.violation(msr, value);
            }
        }
    }

    /// The CPU a message for `sint` goes to: the caller's if it can take it.
    fn target(&self, sint: usize) -> Option<u32> {
        let me = cpu::current();
        if let Some(c) = self.cpus.get(me as usize) {
            if takes(&c.state.lock(), sint) {
                return Some(me);
            }
        }
        (0..self.cpus.len() as u32).find(|&i| {
            cpu::online(i)
                && self
                    .cpus
                    .get(i as usize)
                    .is_some_and(|c| takes(&c.state.lock(), sint))
        })
    }

    /// Posts `msg` (a whole `hv_message`) to SINT0 of some root CPU.
    pub(crate) fn post(&self, msg: &[u8; SLOT]) {
        let Some(cpu) = self.target(abi::HV_SYNIC_INTERCEPTION_SINT_INDEX) else {
            self.lose();
            return;
        };
        let Some(c) = self.cpus.get(cpu as usize) else {
            return;
        };
        let slot = c.msg.as_ptr();
        let mut r = c.state.lock();
        // SAFETY: `slot` is this CPU's message page, SINT0's slot is its
        // first 256 bytes; the root writes it concurrently (volatile).
        let busy = unsafe { ptr::read_volatile(slot.cast::<u32>()) } != abi::HVMSG_NONE;
        if busy || !r.queue.is_empty() {
            if r.queue.push_within_capacity(*msg).is_err() {
                drop(r);
                self.lose();
                return;
            }
            self.queued.fetch_add(1, Relaxed);
            // SAFETY: as above; byte 5 is `message_flags`.
            unsafe { ptr::write_volatile(slot.add(5), abi::HV_MESSAGE_FLAG_PENDING) };
            fence(Ordering::SeqCst);
            // The root may have freed the slot before it saw the flag.
            // SAFETY: as above.
            if unsafe { ptr::read_volatile(slot.cast::<u32>()) } != abi::HVMSG_NONE {
                return;
            }
            drop(r);
            self.deliver_next(cpu);
            return;
        }
        Self::write_slot(slot, msg, false);
        drop(r);
        self.delivered.fetch_add(1, Relaxed);
        self.ipi.raise(cpu);
    }

    /// Writes `msg` into a free slot: payload first, type last.
    fn write_slot(slot: *mut u8, msg: &[u8; SLOT], pending: bool) {
        for (i, &b) in msg.iter().enumerate().skip(4) {
            // SAFETY: within the 256-byte slot of a message page we own.
            unsafe { ptr::write_volatile(slot.add(i), b) };
        }
        let flags = if pending {
            abi::HV_MESSAGE_FLAG_PENDING
        } else {
            0
        };
        // SAFETY: as above.
        unsafe { ptr::write_volatile(slot.add(5), flags) };
        fence(Ordering::SeqCst);
        let ty = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
        // SAFETY: as above; the slot is 4-byte aligned (page start).
        unsafe { ptr::write_volatile(slot.cast::<u32>(), ty) };
    }

    /// EOM on `cpu`: the next queued message, if the slot is free.
    fn deliver_next(&self, cpu: u32) {
        let Some(c) = self.cpus.get(cpu as usize) else {
            return;
        };
        let slot = c.msg.as_ptr();
        let mut r = c.state.lock();
        // SAFETY: as in `post`.
        if unsafe { ptr::read_volatile(slot.cast::<u32>()) } != abi::HVMSG_NONE
            || r.queue.is_empty()
        {
            return;
        }
        let Ok(next) = r.queue.remove(0) else { return };
        let more = !r.queue.is_empty();
        Self::write_slot(slot, &next, more);
        drop(r);
        self.delivered.fetch_add(1, Relaxed);
        self.ipi.raise(cpu);
    }

    /// A message of `ty` from `sender` with `payload`.
    pub(crate) fn message(ty: u32, sender: u64, payload: &[u8]) -> [u8; SLOT] {
        let mut m = [0u8; SLOT];
        m[0..4].copy_from_slice(&ty.to_le_bytes());
        let n = payload.len().min(abi::HV_MESSAGE_PAYLOAD_BYTES);
        m[4] = n as u8;
        m[8..16].copy_from_slice(&sender.to_le_bytes());
        m[16..16 + n].copy_from_slice(&payload[..n]);
        m
    }

    /// VP `vp` of partition `pt` became runnable: a scheduler signal.
    pub(crate) fn signal(&self, pt: u64, vp: u32) {
        let mut p = abi::HvVpSignalPairSchedulerMessage {
            overflow_count: 0,
            vp_count: 1,
            reserved1: [0; 3],
            partition_ids: [0; abi::HV_SIGNAL_PAIR_COUNT],
            vp_indexes: [0; abi::HV_SIGNAL_PAIR_COUNT],
            reserved2: [0; 4],
        };
        p.partition_ids[0] = pt;
        p.vp_indexes[0] = vp;
        let m = Self::message(
            abi::HVMSG_SCHEDULER_VP_SIGNAL_PAIR,
            0,
            kernel::transmute::AsBytes::as_bytes(&p),
        );
        self.post(&m);
    }

    /// The guest ended level-triggered `vector` on VP `vp` of `pt`.
    pub(crate) fn eoi(&self, pt: u64, vp: u32, vector: u32) {
        let e = abi::HvX64ApicEoiMessage {
            vp_index: vp,
            interrupt_vector: vector,
        };
        let m = Self::message(
            abi::HVMSG_X64_APIC_EOI,
            pt,
            kernel::transmute::AsBytes::as_bytes(&e),
        );
        self.post(&m);
    }

    /// An asynchronous call about partition `pt` completed with `status`.
    pub(crate) fn async_completion(&self, pt: u64, status: u16) {
        let c = abi::HvAsyncCompletionMessage {
            partition_id: pt,
            status: u32::from(status),
            completion_count: 1,
            sub_status: 0,
        };
        let m = Self::message(
            abi::HVMSG_ASYNC_CALL_COMPLETION,
            0,
            kernel::transmute::AsBytes::as_bytes(&c),
        );
        self.post(&m);
    }

    /// A doorbell port was rung: its id goes into SINT5's event ring of
    /// some CPU, and SINT0 hears of it unless the ring's signal is masked.
    pub(crate) fn ring(&self, port: u32) {
        let Some(cpu) = self.target(abi::HV_SYNIC_DOORBELL_SINT_INDEX) else {
            self.lose();
            return;
        };
        let Some(c) = self.cpus.get(cpu as usize) else {
            return;
        };
        let ring = c
            .ring
            .as_ptr()
            .wrapping_add(abi::HV_SYNIC_DOORBELL_SINT_INDEX * SLOT);
        let notify = {
            let mut r = c.state.lock();
            if !r.overflow.is_empty() || !Self::ring_put(ring, &mut r, port) {
                if !r.overflow.contains(&port) && r.overflow.push_within_capacity(port).is_err() {
                    drop(r);
                    self.lose();
                    return;
                }
                // SAFETY: byte 1 of a ring in our page is `ring_full`.
                unsafe { ptr::write_volatile(ring.add(1), 1) };
            }
            // SAFETY: byte 0 is `signal_masked`.
            let masked = unsafe { ptr::read_volatile(ring) };
            masked == 0
        };
        if notify {
            let n = abi::HvNotificationMessagePayload {
                sint_index: abi::HV_SYNIC_DOORBELL_SINT_INDEX as u32,
            };
            let m = Self::message(
                abi::HVMSG_SYNIC_SINT_INTERCEPT,
                0,
                kernel::transmute::AsBytes::as_bytes(&n),
            );
            self.post(&m);
        }
    }

    /// Puts `port` at the ring's head; `false` if that slot is still full.
    fn ring_put(ring: *mut u8, r: &mut Regs, port: u32) -> bool {
        let head = r.ring_head % abi::HV_SYNIC_EVENT_RING_MESSAGE_COUNT;
        let slot = ring.wrapping_add(4 + head * 4).cast::<u32>();
        // SAFETY: within the 256-byte ring of a page we own.
        if unsafe { ptr::read_volatile(slot) } != 0 {
            return false;
        }
        // SAFETY: as above.
        unsafe { ptr::write_volatile(slot, port) };
        r.ring_head = (head + 1) % abi::HV_SYNIC_EVENT_RING_MESSAGE_COUNT;
        true
    }

    /// `HVCALL_NOTIFY_PORT_RING_EMPTY` for `sint` on the calling CPU: refill
    /// the ring from the ports that did not fit.
    pub(crate) fn ring_empty(&self, sint: u64) -> u16 {
        if sint != abi::HV_SYNIC_DOORBELL_SINT_INDEX as u64 {
            return crate::tlfs::status::INVALID_PARAMETER;
        }
        let Some(c) = self.cpus.get(cpu::current() as usize) else {
            return crate::tlfs::status::INVALID_PARAMETER;
        };
        let ring = c
            .ring
            .as_ptr()
            .wrapping_add(abi::HV_SYNIC_DOORBELL_SINT_INDEX * SLOT);
        let mut r = c.state.lock();
        while let Some(&port) = r.overflow.first() {
            if !Self::ring_put(ring, &mut r, port) {
                // SAFETY: byte 1 is `ring_full`.
                unsafe { ptr::write_volatile(ring.add(1), 1) };
                break;
            }
            let _ = r.overflow.remove(0);
        }
        crate::tlfs::status::SUCCESS
    }
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_emu_synic)]
mod tests {
    use super::*;

    /// Reads the SINT0 slot of `cpu`: type and flags.
    fn slot(s: &EmuSynic, cpu: u32) -> (u32, u8) {
        let p = s.cpus[cpu as usize].msg.as_ptr();
        // SAFETY: our own message page.
        unsafe {
            (
                ptr::read_volatile(p.cast::<u32>()),
                ptr::read_volatile(p.add(5)),
            )
        }
    }

    /// Frees the SINT0 slot of `cpu` as the root does.
    fn free_slot(s: &EmuSynic, cpu: u32) {
        let p = s.cpus[cpu as usize].msg.as_ptr();
        // SAFETY: our own message page.
        unsafe { ptr::write_volatile(p.cast::<u32>(), abi::HVMSG_NONE) };
    }

    /// Enables the calling CPU's SynIC as the driver does; returns the CPU.
    fn enable(s: &EmuSynic) -> u32 {
        let me = cpu::current();
        let simp = s.read_msr(abi::HV_MSR_SIMP) | 1;
        s.write_msr(abi::HV_MSR_SIMP, simp);
        s.write_msr(abi::HV_MSR_SINT0, 0xf3);
        s.write_msr(abi::HV_MSR_SINT0 + 5, 0xf3 | abi::HV_SINT_AS_INTERCEPT);
        s.write_msr(abi::HV_MSR_SCONTROL, 1);
        me
    }

    #[test]
    fn busy_slot_queues_and_eom_delivers() -> Result {
        // No handler: nothing consumes the slot but this test.
        let s = EmuSynic::new()?;
        cpu::without_preemption(|| {
            // Disabled SynIC: the message is lost, not delivered.
            s.post(&EmuSynic::message(abi::HVMSG_X64_APIC_EOI, 1, &[]));
            assert_eq!(s.lost.load(Relaxed), 1);
            let me = enable(&s);
            s.post(&EmuSynic::message(
                abi::HVMSG_X64_APIC_EOI,
                7,
                &[1, 0, 0, 0],
            ));
            assert_eq!(slot(&s, me), (abi::HVMSG_X64_APIC_EOI, 0));
            // Busy: queued, and the busy slot says another is pending.
            s.post(&EmuSynic::message(
                abi::HVMSG_SCHEDULER_VP_SIGNAL_PAIR,
                0,
                &[],
            ));
            s.post(&EmuSynic::message(abi::HVMSG_OPAQUE_INTERCEPT, 0, &[]));
            assert_eq!(s.queued.load(Relaxed), 2);
            assert_eq!(
                slot(&s, me),
                (abi::HVMSG_X64_APIC_EOI, abi::HV_MESSAGE_FLAG_PENDING)
            );
            // EOM with the slot still busy delivers nothing.
            s.write_msr(abi::HV_MSR_EOM, 0);
            assert_eq!(slot(&s, me).0, abi::HVMSG_X64_APIC_EOI);
            // Freed, then EOM: the next in order, still pending one more.
            free_slot(&s, me);
            s.write_msr(abi::HV_MSR_EOM, 0);
            assert_eq!(
                slot(&s, me),
                (
                    abi::HVMSG_SCHEDULER_VP_SIGNAL_PAIR,
                    abi::HV_MESSAGE_FLAG_PENDING
                )
            );
            free_slot(&s, me);
            s.write_msr(abi::HV_MSR_EOM, 0);
            assert_eq!(slot(&s, me), (abi::HVMSG_OPAQUE_INTERCEPT, 0));
            free_slot(&s, me);
            s.write_msr(abi::HV_MSR_EOM, 0);
            assert_eq!(slot(&s, me).0, abi::HVMSG_NONE);
            assert_eq!(s.delivered.load(Relaxed), 3);
            assert_eq!(s.violations.load(Relaxed), 0);
        });
        Ok(())
    }

    #[test]
    fn full_event_ring_keeps_ports_until_ring_empty() -> Result {
        let s = EmuSynic::new()?;
        cpu::without_preemption(|| {
            let me = enable(&s);
            let ring = s.cpus[me as usize].ring.as_ptr().wrapping_add(5 * SLOT);
            // The root drains with the signal masked: no message per port.
            // SAFETY: our own ring page (below likewise).
            unsafe { ptr::write_volatile(ring, 1) };
            for port in 1..=65u32 {
                s.ring(port);
            }
            // 63 slots hold ports 1..63; 64 and 65 wait; the ring is full.
            let data = |i: usize| {
                // SAFETY: slot `i` (< 63) of the ring in our own page.
                unsafe { ptr::read_volatile(ring.add(4 + 4 * i).cast::<u32>()) }
            };
            let full = || {
                // SAFETY: the ring's `ring_full` byte, in our own page.
                unsafe { ptr::read_volatile(ring.add(1)) }
            };
            assert_eq!((data(0), data(62)), (1, 63));
            assert_eq!(full(), 1);
            assert_eq!(slot(&s, me).0, abi::HVMSG_NONE);
            // The root takes two entries and reports the ring empty.
            for i in 0..2 {
                // SAFETY: as above.
                unsafe { ptr::write_volatile(ring.add(4 + 4 * i).cast::<u32>(), 0) };
            }
            // SAFETY: as above.
            unsafe { ptr::write_volatile(ring.add(1), 0) };
            assert_eq!(s.ring_empty(5), crate::tlfs::status::SUCCESS);
            assert_eq!((data(0), data(1), data(2)), (64, 65, 3));
            assert_eq!(full(), 0);
            assert_eq!(s.ring_empty(4), crate::tlfs::status::INVALID_PARAMETER);
            // Unmasked: the next port also posts SYNIC_SINT_INTERCEPT.
            // SAFETY: as above.
            unsafe { ptr::write_volatile(ring, 0) };
            for i in 0..63 {
                // SAFETY: as above.
                unsafe { ptr::write_volatile(ring.add(4 + 4 * i).cast::<u32>(), 0) };
            }
            s.ring(99);
            assert_eq!(slot(&s, me).0, abi::HVMSG_SYNIC_SINT_INTERCEPT);
            assert_eq!(s.lost.load(Relaxed), 0);
        });
        Ok(())
    }

    #[test]
    fn reserved_msr_bits_are_refused() -> Result {
        let s = EmuSynic::new()?;
        cpu::without_preemption(|| {
            let simp = s.read_msr(abi::HV_MSR_SIMP);
            // Another page than the one provided.
            s.write_msr(abi::HV_MSR_SIMP, simp + (1 << 12) + 1);
            assert_eq!(s.read_msr(abi::HV_MSR_SIMP), simp);
            s.write_msr(abi::HV_MSR_SINT0, abi::HV_SINT_VALID + 1);
            assert_eq!(s.read_msr(abi::HV_MSR_SINT0), abi::HV_SINT_MASKED);
            s.write_msr(abi::HV_MSR_SCONTROL, 2);
            assert_eq!(s.read_msr(abi::HV_MSR_SCONTROL), 0);
            assert_eq!(s.violations.load(Relaxed), 3);
        });
        Ok(())
    }
}
