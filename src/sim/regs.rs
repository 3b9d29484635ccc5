// SPDX-License-Identifier: GPL-2.0

//! The register file of a simulated VP, addressed by Hyper-V register name.
//!
//! The registers the interpreter uses live in a [`cpu::Regs`] and are mapped
//! to and from their 128-bit Hyper-V encodings here:
//!
//! - `RAX`..`R15`, `RIP`, `RFLAGS`, `CR0`, `CR2`, `CR3`, `CR4`, `EFER` and
//!   `CR8` (kept next to the interpreter's state): the value in the low
//!   64 bits (`INTERMEDIATE_CR0/3/4/8` alias `CR0/3/4/8`: no nested paging);
//! - `ES`, `CS`, `SS`, `DS`, `FS`, `GS`, `LDTR`, `TR`
//!   (`struct hv_x64_segment_register`): base in bits 0..63, limit in
//!   64..95, selector in 96..111, attributes in 112..127;
//! - `GDTR`, `IDTR` (`struct hv_x64_table_register`): limit in bits 48..63,
//!   base in 64..127;
//! - the suspend registers (`EXPLICIT_SUSPEND`, `INTERCEPT_SUSPEND`,
//!   `DISPATCH_SUSPEND`): bit 0;
//! - `VP_ROOT_SIGNAL_COUNT`: the scheduler signals sent for the VP (root
//!   scheduler), read-only (a write is `INVALID_PARAMETER`).
//!
//! Every other register name Hyper-V defines for x64 (debug registers, MSRs,
//! FP/XMM state, SynIC and synthetic timer registers, pending events, ...) is
//! stored verbatim in a small table whose capacity is reserved when the VP is
//! created, so reads and writes never allocate. Unknown names fail with
//! `HV_STATUS_INVALID_PARAMETER`.

use super::cpu;
use crate::tlfs::{abi, HvError, HvResult, RegValue};
use kernel::prelude::*;

/// How many registers outside [`cpu::Regs`] a VP can hold.
pub(crate) const EXTRA_SLOTS: usize = 192;

// Register names `hv::abi` does not list (yet).
/// `HV_X64_REGISTER_INTERMEDIATE_CR0`.
const INTERMEDIATE_CR0: u32 = 0x0004_1000;
/// `HV_X64_REGISTER_INTERMEDIATE_CR3`.
const INTERMEDIATE_CR3: u32 = 0x0004_1002;
/// `HV_X64_REGISTER_INTERMEDIATE_CR4`.
const INTERMEDIATE_CR4: u32 = 0x0004_1003;
/// `HV_X64_REGISTER_INTERMEDIATE_CR8`.
const INTERMEDIATE_CR8: u32 = 0x0004_1004;
/// `HV_X64_REGISTER_DR6`.
const DR6: u32 = 0x0005_0004;
/// `HV_X64_REGISTER_INITIAL_APIC_ID`.
const INITIAL_APIC_ID: u32 = 0x0008_000c;

/// Physical address bits of the simulated host (`APIC_BASE` above them is
/// reserved).
const PA_BITS: u32 = 46;

/// Whether `value` (the low 64 bits) is an architecturally valid value for
/// register `name`. Checked: reserved bits of CR0 (and PG without PE, NW
/// without CD), CR4, EFER, RFLAGS and APIC_BASE, the memory types of PAT, and
/// XFEM (x87 always set, only x87/SSE/AVX). Everything else is taken as is.
pub(crate) fn valid_value(name: u32, value: u64) -> bool {
    let bit = |b: u32| value & (1 << b) != 0;
    match name {
        abi::HV_X64_REGISTER_CR0 | INTERMEDIATE_CR0 => {
            // PG needs PE; NW needs CD.
            let pg_ok = bit(0) || !bit(31);
            let nw_ok = bit(30) || !bit(29);
            value >> 32 == 0 && pg_ok && nw_ok
        }
        abi::HV_X64_REGISTER_CR4 | INTERMEDIATE_CR4 => value >> 25 == 0 && !bit(15),
        // SCE, LME, LMA, NXE, SVME, LMSLE, FFXSR, TCE.
        abi::HV_X64_REGISTER_EFER => value & !0xfd01 == 0,
        // Bits 3, 5, 15 and 22..63 are reserved.
        abi::HV_X64_REGISTER_RFLAGS => value & !0x003f_7fd7 == 0,
        // Bits 0..7 and 9 and those above the physical address width.
        abi::HV_X64_REGISTER_APIC_BASE => value & 0x2ff == 0 && value >> PA_BITS == 0,
        // Every entry UC, WC, WT, WP, WB or UC-.
        abi::HV_X64_REGISTER_PAT => {
            (0..8).all(|i| matches!((value >> (8 * i)) & 0xff, 0 | 1 | 4..=7))
        }
        abi::HV_X64_REGISTER_XFEM => bit(0) && value & !0x7 == 0,
        // Bits 32..63 are reserved (a MOV to DR6/DR7 with them set #GPs).
        DR6 | abi::HV_X64_REGISTER_DR7 => value >> 32 == 0,
        // TLFS, SynIC: SCONTROL has one bit (enable); SIMP and SIEFP an
        // enable bit, bits 1..11 reserved, then a page number; a SINT the
        // vector (0..7), masked (16), auto-EOI (17) and polling (18), the
        // rest reserved, and an unmasked SINT needs a vector of 16 or more.
        abi::HV_REGISTER_SCONTROL => value & !1 == 0,
        abi::HV_REGISTER_SIMP | abi::HV_REGISTER_SIEFP => value & 0xffe == 0,
        n if (abi::HV_REGISTER_SINT0..abi::HV_REGISTER_SINT0 + 16).contains(&n) => {
            value & !0x7_00ff == 0 && (bit(16) || value & 0xff >= 16)
        }
        _ => true,
    }
}

/// Inclusive ranges of the register names (`enum hv_register_name`, x64)
/// that the simulator stores.
const KNOWN: &[(u32, u32)] = &[
    // Suspend, emulation hints, internal activity.
    (0x0000_0000, 0x0000_0004),
    // Version, feature and crash registers.
    (0x0000_0100, 0x0000_0100),
    (0x0000_0200, 0x0000_0208),
    (0x0000_0210, 0x0000_0215),
    (0x0000_0220, 0x0000_0225),
    (0x0000_0240, 0x0000_0241),
    (0x0000_0250, 0x0000_0250),
    (0x0000_0260, 0x0000_0260),
    (0x0000_0270, 0x0000_0270),
    // Pending interruption, interrupt state, pending events,
    // deliverability notifications, pending debug exception.
    (0x0001_0002, 0x0001_0007),
    // General purpose, RIP, RFLAGS.
    (0x0002_0000, 0x0002_0011),
    // XMM, FP/MMX, FP and XMM control/status.
    (0x0003_0000, 0x0003_0019),
    // Control registers and XFEM.
    (0x0004_0000, 0x0004_0005),
    (0x0004_1000, 0x0004_1000),
    (0x0004_1003, 0x0004_1004),
    // Debug registers.
    (0x0005_0000, 0x0005_0005),
    // Segment and table registers.
    (0x0006_0000, 0x0006_0007),
    (0x0007_0000, 0x0007_0001),
    // Virtualized MSRs, MTRRs, TSC_AUX .. VMX capability MSRs.
    (0x0008_0000, 0x0008_000e),
    (0x0008_0010, 0x0008_001f),
    (0x0008_0040, 0x0008_004f),
    (0x0008_0070, 0x0008_00b2),
    // Performance monitoring, LBR and processor trace MSRs.
    (0x0008_1000, 0x0008_100c),
    (0x0008_1100, 0x0008_13ff),
    (0x0008_1400, 0x0008_1407),
    (0x0008_2000, 0x0008_2003),
    (0x0008_2100, 0x0008_22ff),
    (0x0008_3300, 0x0008_33ff),
    // APIC id and version.
    (0x0008_4802, 0x0008_4803),
    // Hypervisor-defined registers (hypercall, VP index, synthetic APIC,
    // reference TSC, register page, GHCB, timer assists, SEV).
    (0x0009_0000, 0x0009_0042),
    (0x0009_1003, 0x0009_1003),
    // SynIC and nested SynIC.
    (0x000a_0000, 0x000a_0015),
    (0x000a_1000, 0x000a_1015),
    // Synthetic timers.
    (0x000b_0000, 0x000b_0007),
    (0x000b_0100, 0x000b_0101),
    // VSM and isolation.
    (0x000d_0002, 0x000d_0020),
    (0x000d_0100, 0x000d_0100),
    // Intercept control.
    (0x000e_0000, 0x000e_0003),
];

/// Whether `name` is a register name the simulator knows.
pub(crate) fn is_known(name: u32) -> bool {
    KNOWN.iter().any(|&(lo, hi)| (lo..=hi).contains(&name))
}

/// Whether `name` is one of the suspend registers, which may be written
/// while the VP runs.
pub(crate) fn is_suspend(name: u32) -> bool {
    matches!(
        name,
        abi::HV_REGISTER_EXPLICIT_SUSPEND
            | abi::HV_REGISTER_INTERCEPT_SUSPEND
            | abi::HV_REGISTER_DISPATCH_SUSPEND
    )
}

/// Encodes a segment register as `struct hv_x64_segment_register`.
pub(crate) fn seg_to_value(s: &cpu::Segment) -> RegValue {
    [
        s.base,
        u64::from(s.limit) | (u64::from(s.selector) << 32) | (u64::from(s.attributes) << 48),
    ]
}

/// Decodes a `struct hv_x64_segment_register`.
pub(crate) fn seg_from_value(v: RegValue) -> cpu::Segment {
    cpu::Segment {
        base: v[0],
        limit: v[1] as u32,
        selector: (v[1] >> 32) as u16,
        attributes: (v[1] >> 48) as u16,
    }
}

/// Encodes a descriptor-table register as `struct hv_x64_table_register`.
fn table_to_value(t: &cpu::Table) -> RegValue {
    [u64::from(t.limit) << 48, t.base]
}

/// Decodes a `struct hv_x64_table_register`.
fn table_from_value(v: RegValue) -> cpu::Table {
    cpu::Table {
        limit: (v[0] >> 48) as u16,
        base: v[1],
    }
}

/// A 64-bit register value.
fn low(v: u64) -> RegValue {
    [v, 0]
}

/// The registers of one VP.
pub(crate) struct RegFile {
    /// The state the interpreter runs on.
    pub(crate) cpu: cpu::Regs,
    /// CR8 (the task priority; the interpreter does not use it).
    pub(crate) cr8: u64,
    /// `HV_REGISTER_EXPLICIT_SUSPEND`: set until the first run.
    pub(crate) explicit_suspend: bool,
    /// `HV_REGISTER_INTERCEPT_SUSPEND`: set while an intercept is pending.
    pub(crate) intercept_suspend: bool,
    /// `HV_REGISTER_DISPATCH_SUSPEND`: the root scheduler neither
    /// dispatches nor signals the VP (teardown).
    pub(crate) dispatch_suspend: bool,
    /// `HV_REGISTER_VP_ROOT_SIGNAL_COUNT`.
    pub(crate) root_signals: u64,
    /// The VP's index (for the registers that report it).
    vp_index: u32,
    /// Other registers by name, in the order first written. Its capacity
    /// ([`EXTRA_SLOTS`]) is reserved by [`RegFile::new`] and never exceeded.
    extra: KVec<(u32, RegValue)>,
}

impl RegFile {
    /// The x86 reset state of VP `vp_index`. Allocates the extra-register
    /// table.
    pub(crate) fn new(vp_index: u32) -> Result<Self> {
        Ok(Self {
            cpu: cpu::Regs::reset(),
            cr8: 0,
            explicit_suspend: true,
            intercept_suspend: false,
            dispatch_suspend: false,
            root_signals: 0,
            vp_index,
            extra: KVec::with_capacity(EXTRA_SLOTS, GFP_ATOMIC)?,
        })
    }

    /// The value a register outside the interpreter's state has before any
    /// write: the x86 reset value, or zero.
    fn extra_default(&self, name: u32) -> RegValue {
        match name {
            DR6 => low(0xffff_0ff0),
            abi::HV_X64_REGISTER_DR7 => low(0x400),
            abi::HV_X64_REGISTER_APIC_BASE => {
                let bsp = if self.vp_index == 0 { 0x100 } else { 0 };
                low(0xfee0_0000 | 0x800 | bsp)
            }
            abi::HV_X64_REGISTER_PAT => low(0x0007_0406_0007_0406),
            INITIAL_APIC_ID | abi::HV_REGISTER_VP_INDEX => low(u64::from(self.vp_index)),
            abi::HV_X64_REGISTER_XFEM => low(1),
            // TLFS: every SINT starts masked.
            n if (abi::HV_REGISTER_SINT0..abi::HV_REGISTER_SINT0 + 16).contains(&n) => {
                low(0x1_0000)
            }
            // FCW = 0x37f.
            abi::HV_X64_REGISTER_FP_CONTROL_STATUS => low(0x37f),
            // MXCSR = 0x1f80 (the `xmm_status_control` field at byte 8).
            abi::HV_X64_REGISTER_XMM_CONTROL_STATUS => [0, 0x1f80],
            _ => [0, 0],
        }
    }

    /// Reads register `name`.
    pub(crate) fn get(&self, name: u32) -> HvResult<RegValue> {
        let r = &self.cpu;
        let v = match name {
            abi::HV_X64_REGISTER_RAX..=abi::HV_X64_REGISTER_R15 => {
                let i = (name - abi::HV_X64_REGISTER_RAX) as usize;
                low(r.gpr.get(i).copied().unwrap_or(0))
            }
            abi::HV_X64_REGISTER_RIP => low(r.rip),
            abi::HV_X64_REGISTER_RFLAGS => low(r.rflags),
            abi::HV_X64_REGISTER_CR0 | INTERMEDIATE_CR0 => low(r.cr0),
            abi::HV_X64_REGISTER_CR2 => low(r.cr2),
            abi::HV_X64_REGISTER_CR3 | INTERMEDIATE_CR3 => low(r.cr3),
            abi::HV_X64_REGISTER_CR4 | INTERMEDIATE_CR4 => low(r.cr4),
            abi::HV_X64_REGISTER_CR8 | INTERMEDIATE_CR8 => low(self.cr8),
            abi::HV_X64_REGISTER_EFER => low(r.efer),
            abi::HV_X64_REGISTER_ES => seg_to_value(&r.es),
            abi::HV_X64_REGISTER_CS => seg_to_value(&r.cs),
            abi::HV_X64_REGISTER_SS => seg_to_value(&r.ss),
            abi::HV_X64_REGISTER_DS => seg_to_value(&r.ds),
            abi::HV_X64_REGISTER_FS => seg_to_value(&r.fs),
            abi::HV_X64_REGISTER_GS => seg_to_value(&r.gs),
            abi::HV_X64_REGISTER_LDTR => seg_to_value(&r.ldtr),
            abi::HV_X64_REGISTER_TR => seg_to_value(&r.tr),
            abi::HV_X64_REGISTER_IDTR => table_to_value(&r.idtr),
            abi::HV_X64_REGISTER_GDTR => table_to_value(&r.gdtr),
            abi::HV_REGISTER_EXPLICIT_SUSPEND => low(u64::from(self.explicit_suspend)),
            abi::HV_REGISTER_INTERCEPT_SUSPEND => low(u64::from(self.intercept_suspend)),
            abi::HV_REGISTER_DISPATCH_SUSPEND => low(u64::from(self.dispatch_suspend)),
            abi::HV_REGISTER_VP_ROOT_SIGNAL_COUNT => low(self.root_signals),
            _ if is_known(name) => match self.extra.iter().find(|(n, _)| *n == name) {
                Some(&(_, v)) => v,
                None => self.extra_default(name),
            },
            _ => return Err(HvError::INVALID_PARAMETER),
        };
        Ok(v)
    }

    /// Writes register `name`. Never allocates. Values the architecture
    /// forbids (see [`valid_value`]) fail with `HV_STATUS_INVALID_PARAMETER`
    /// and change nothing.
    pub(crate) fn set(&mut self, name: u32, v: RegValue) -> HvResult {
        if !valid_value(name, v[0]) {
            return Err(HvError::INVALID_PARAMETER);
        }
        let r = &mut self.cpu;
        match name {
            abi::HV_X64_REGISTER_RAX..=abi::HV_X64_REGISTER_R15 => {
                let i = (name - abi::HV_X64_REGISTER_RAX) as usize;
                if let Some(g) = r.gpr.get_mut(i) {
                    *g = v[0];
                }
            }
            abi::HV_X64_REGISTER_RIP => r.rip = v[0],
            // Bit 1 of RFLAGS always reads as one.
            abi::HV_X64_REGISTER_RFLAGS => r.rflags = v[0] | 0x2,
            abi::HV_X64_REGISTER_CR0 | INTERMEDIATE_CR0 => r.cr0 = v[0],
            abi::HV_X64_REGISTER_CR2 => r.cr2 = v[0],
            abi::HV_X64_REGISTER_CR3 | INTERMEDIATE_CR3 => r.cr3 = v[0],
            abi::HV_X64_REGISTER_CR4 | INTERMEDIATE_CR4 => r.cr4 = v[0],
            abi::HV_X64_REGISTER_CR8 | INTERMEDIATE_CR8 => self.cr8 = v[0],
            // A state restore: LMA is taken as given (see `cpu::set_efer`).
            abi::HV_X64_REGISTER_EFER => r.efer = v[0],
            abi::HV_X64_REGISTER_ES => r.es = seg_from_value(v),
            abi::HV_X64_REGISTER_CS => r.cs = seg_from_value(v),
            abi::HV_X64_REGISTER_SS => r.ss = seg_from_value(v),
            abi::HV_X64_REGISTER_DS => r.ds = seg_from_value(v),
            abi::HV_X64_REGISTER_FS => r.fs = seg_from_value(v),
            abi::HV_X64_REGISTER_GS => r.gs = seg_from_value(v),
            abi::HV_X64_REGISTER_LDTR => r.ldtr = seg_from_value(v),
            abi::HV_X64_REGISTER_TR => r.tr = seg_from_value(v),
            abi::HV_X64_REGISTER_IDTR => r.idtr = table_from_value(v),
            abi::HV_X64_REGISTER_GDTR => r.gdtr = table_from_value(v),
            abi::HV_REGISTER_EXPLICIT_SUSPEND => self.explicit_suspend = v[0] & 1 != 0,
            abi::HV_REGISTER_INTERCEPT_SUSPEND => self.intercept_suspend = v[0] & 1 != 0,
            abi::HV_REGISTER_DISPATCH_SUSPEND => self.dispatch_suspend = v[0] & 1 != 0,
            abi::HV_REGISTER_VP_ROOT_SIGNAL_COUNT => return Err(HvError::INVALID_PARAMETER),
            _ if is_known(name) => {
                if let Some(slot) = self.extra.iter_mut().find(|(n, _)| *n == name) {
                    slot.1 = v;
                } else if self.extra.push_within_capacity((name, v)).is_err() {
                    return Err(HvError::INSUFFICIENT_BUFFERS);
                }
            }
            _ => return Err(HvError::INVALID_PARAMETER),
        }
        Ok(())
    }
}
