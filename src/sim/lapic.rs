// SPDX-License-Identifier: GPL-2.0

//! A local APIC model for the simulated hypervisor: enough of the xAPIC for
//! `HVCALL_ASSERT_VIRTUAL_INTERRUPT` and the guest's end of interrupt.
//!
//! The state is the architectural IRR, ISR and TMR (one bit per vector), the
//! task priority, a pending NMI and a pending ExtINT vector. Delivery follows
//! the xAPIC rules the guests we run depend on:
//!
//! - a fixed (or lowest-priority, treated as fixed to the addressed APIC)
//!   interrupt sets its IRR bit, and its TMR bit if level-triggered; vectors
//!   0-15 are illegal and refused;
//! - the highest IRR vector is deliverable when `RFLAGS.IF` allows it and
//!   its priority class (vector / 16) is above both the highest in-service
//!   vector's class and the TPR's class; accepting it moves it to the ISR;
//! - an EOI (a write to offset 0xB0 of the APIC page or to x2APIC MSR 0x80B)
//!   retires the highest in-service vector and reports whether it was
//!   level-triggered (for resampling);
//! - ExtINT is delivered when `RFLAGS.IF` allows it, without touching IRR or
//!   ISR (the vector comes from the "PIC"); NMI is delivered regardless of IF.
//!
//! Not modelled: the software-enable bit of the spurious-interrupt register
//! (the APIC always accepts), NMI blocking until IRET, the timer, LINT
//! pins, the ICR (IPIs), logical destinations and the APIC base relocation
//! (the page is at [`APIC_BASE`]).
//!
//! Plain `core` code so the host tests can include it.

/// The guest-physical address of the xAPIC page.
pub const APIC_BASE: u64 = 0xfee0_0000;
/// The x2APIC EOI MSR.
pub const MSR_X2APIC_EOI: u32 = 0x80b;

/// `HV_X64_INTERRUPT_TYPE_FIXED`.
pub const TYPE_FIXED: u32 = 0;
/// `HV_X64_INTERRUPT_TYPE_LOWESTPRIORITY`.
pub const TYPE_LOWEST_PRIORITY: u32 = 1;
/// `HV_X64_INTERRUPT_TYPE_NMI`.
pub const TYPE_NMI: u32 = 4;
/// `HV_X64_INTERRUPT_TYPE_EXTINT`.
pub const TYPE_EXTINT: u32 = 7;

/// Register offsets in the APIC page.
const REG_ID: u32 = 0x20;
const REG_VERSION: u32 = 0x30;
const REG_TPR: u32 = 0x80;
const REG_PPR: u32 = 0xa0;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ISR: u32 = 0x100;
const REG_TMR: u32 = 0x180;
const REG_IRR: u32 = 0x200;
/// Version 0x14, 6 LVT entries (max LVT index 5).
const VERSION: u32 = 0x0005_0014;

/// Why an interrupt was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssertError {
    /// An interrupt type the model does not implement (SMI, INIT, SIPI, ...).
    UnsupportedType,
    /// A fixed interrupt with a vector below 16.
    IllegalVector,
}

/// The interrupt the processor should take next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// An NMI (vector 2).
    Nmi,
    /// An ExtINT with this vector.
    ExtInt(u8),
    /// A fixed interrupt with this vector (in the IRR).
    Fixed(u8),
}

impl Pending {
    /// The IDT vector to deliver through.
    pub fn vector(self) -> u8 {
        match self {
            Pending::Nmi => 2,
            Pending::ExtInt(v) | Pending::Fixed(v) => v,
        }
    }
}

/// An end of interrupt the guest signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eoi {
    /// The vector that left the ISR.
    pub vector: u8,
    /// Whether it was level-triggered (TMR set).
    pub level: bool,
}

/// A 256-bit vector set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bits([u64; 4]);

impl Bits {
    /// The set from the eight 32-bit registers of the APIC page layout.
    fn from_regs(regs: &[u32; 8]) -> Self {
        let mut b = Bits::default();
        for (i, word) in b.0.iter_mut().enumerate() {
            let lo = regs.get(2 * i).copied().unwrap_or(0);
            let hi = regs.get(2 * i + 1).copied().unwrap_or(0);
            *word = u64::from(lo) | (u64::from(hi) << 32);
        }
        b
    }

    fn set(&mut self, v: u8, on: bool) {
        let (w, b) = (usize::from(v / 64), 1u64 << (v % 64));
        if let Some(word) = self.0.get_mut(w) {
            if on {
                *word |= b;
            } else {
                *word &= !b;
            }
        }
    }

    fn get(&self, v: u8) -> bool {
        self.0
            .get(usize::from(v / 64))
            .is_some_and(|w| w & (1u64 << (v % 64)) != 0)
    }

    /// The highest vector in the set.
    fn highest(&self) -> Option<u8> {
        for (i, &w) in self.0.iter().enumerate().rev() {
            if w != 0 {
                return Some((i as u32 * 64 + 63 - w.leading_zeros()) as u8);
            }
        }
        None
    }

    /// The 32 bits at register index `i` (0..8) of the APIC page layout.
    fn reg(&self, i: u32) -> u32 {
        let word = self.0.get((i / 2) as usize).copied().unwrap_or(0);
        (word >> ((i % 2) * 32)) as u32
    }
}

/// The registers of `hv_local_interrupt_controller_state` the model owns
/// (see [`Lapic::save`]), as the 32-bit words of that layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SavedState {
    /// In-service register (`apic_isr`).
    pub isr: [u32; 8],
    /// Trigger-mode register (`apic_tmr`): level-triggered vectors.
    pub tmr: [u32; 8],
    /// Interrupt request register (`apic_irr`).
    pub irr: [u32; 8],
    /// Spurious-interrupt vector register (`apic_spurious`).
    pub svr: u32,
}

/// One VP's local APIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lapic {
    id: u32,
    irr: Bits,
    isr: Bits,
    tmr: Bits,
    tpr: u8,
    svr: u32,
    nmi: bool,
    pub(crate) extint: Option<u8>,
    /// The VP executed HLT with interrupts enabled and waits for one
    /// (its activity state; RIP is past the HLT).
    pub halted: bool,
}

impl Lapic {
    /// The reset state of the APIC with id `id`.
    pub fn new(id: u32) -> Self {
        Lapic {
            id,
            irr: Bits::default(),
            isr: Bits::default(),
            tmr: Bits::default(),
            tpr: 0,
            svr: 0xff,
            nmi: false,
            extint: None,
            halted: false,
        }
    }

    /// Records an interrupt of Hyper-V type `kind` (`TYPE_*`).
    pub fn assert(&mut self, kind: u32, vector: u8, level: bool) -> Result<(), AssertError> {
        match kind {
            TYPE_FIXED | TYPE_LOWEST_PRIORITY => {
                if vector < 16 {
                    return Err(AssertError::IllegalVector);
                }
                self.irr.set(vector, true);
                self.tmr.set(vector, level);
            }
            TYPE_NMI => self.nmi = true,
            TYPE_EXTINT => self.extint = Some(vector),
            _ => return Err(AssertError::UnsupportedType),
        }
        Ok(())
    }

    /// The processor priority class: the higher of the TPR's and the
    /// highest in-service vector's.
    fn ppr_class(&self) -> u8 {
        let isr = self.isr.highest().map_or(0, |v| v >> 4);
        isr.max(self.tpr >> 4)
    }

    /// What the processor takes next, if anything; `if_enabled` is whether a
    /// maskable interrupt can be accepted now (`Regs::interrupts_enabled`).
    pub fn pending(&self, if_enabled: bool) -> Option<Pending> {
        if self.nmi {
            return Some(Pending::Nmi);
        }
        if !if_enabled {
            return None;
        }
        if let Some(v) = self.extint {
            return Some(Pending::ExtInt(v));
        }
        let v = self.irr.highest()?;
        (v >> 4 > self.ppr_class()).then_some(Pending::Fixed(v))
    }

    /// Whether anything at all is pending (deliverable or not).
    pub fn any_pending(&self) -> bool {
        self.nmi || self.extint.is_some() || self.irr.highest().is_some()
    }

    /// The processor took `p` (returned by [`Lapic::pending`]).
    pub fn accept(&mut self, p: Pending) {
        match p {
            Pending::Nmi => self.nmi = false,
            Pending::ExtInt(_) => self.extint = None,
            Pending::Fixed(v) => {
                self.irr.set(v, false);
                self.isr.set(v, true);
            }
        }
        self.halted = false;
    }

    /// An EOI: retires the highest in-service vector, if any.
    pub fn eoi(&mut self) -> Option<Eoi> {
        let vector = self.isr.highest()?;
        self.isr.set(vector, false);
        let level = self.tmr.get(vector);
        self.tmr.set(vector, false);
        Some(Eoi { vector, level })
    }

    /// The part of the APIC that `HV_GET_SET_VP_STATE_LAPIC_STATE` carries
    /// and this model keeps: in-service, trigger-mode and request registers
    /// and the spurious-vector register.
    pub fn save(&self) -> SavedState {
        let regs = |b: &Bits| core::array::from_fn(|i| b.reg(i as u32));
        SavedState {
            isr: regs(&self.isr),
            tmr: regs(&self.tmr),
            irr: regs(&self.irr),
            svr: self.svr,
        }
    }

    /// Loads what [`Lapic::save`] returns (a VMM restoring a VP's LAPIC
    /// state), bit for bit, so that a later save returns the same bytes.
    /// Request bits of vectors 0..15 are kept but never delivered: their
    /// priority class 0 is never above the processor's.
    pub fn restore(&mut self, st: &SavedState) {
        self.isr = Bits::from_regs(&st.isr);
        self.tmr = Bits::from_regs(&st.tmr);
        self.irr = Bits::from_regs(&st.irr);
        self.svr = st.svr;
    }

    /// A 32-bit read at offset `off` of the APIC page.
    pub fn read(&self, off: u32) -> u32 {
        let i = (off >> 4) & 7;
        match off & !0xf {
            REG_ID => self.id << 24,
            REG_VERSION => VERSION,
            REG_TPR => u32::from(self.tpr),
            REG_PPR => u32::from(self.ppr_class()) << 4,
            REG_SVR => self.svr,
            o if o & !0x70 == REG_ISR => self.isr.reg(i),
            o if o & !0x70 == REG_TMR => self.tmr.reg(i),
            o if o & !0x70 == REG_IRR => self.irr.reg(i),
            _ => 0,
        }
    }

    /// A 32-bit write of `value` at offset `off` of the APIC page; returns
    /// the EOI it caused. Read-only and unmodelled registers ignore writes.
    pub fn write(&mut self, off: u32, value: u32) -> Option<Eoi> {
        match off & !0xf {
            REG_TPR => self.tpr = value as u8,
            REG_SVR => self.svr = value & 0x1ff,
            REG_EOI => return self.eoi(),
            _ => {}
        }
        None
    }
}
