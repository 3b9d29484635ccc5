// SPDX-License-Identifier: GPL-2.0

//! VP state blobs of the simulated hypervisor (`HVCALL_GET_VP_STATE` /
//! `HVCALL_SET_VP_STATE`): the local APIC page, the XSAVE area, the SynIC
//! message and event flags pages and the synthetic timers.
//!
//! The sim stores each blob as bytes per VP ([`VpState`]) and moves them
//! byte-exact: what a VMM sets is what it gets back. This is the one place
//! these bytes live; a LAPIC model reads and updates the LAPIC page through
//! [`VpState::lapic`] / [`VpState::lapic_mut`].
//!
//! The LAPIC blob and the interrupt model (`super::lapic`) agree: a GET
//! copies the model's ISR, TMR, IRR and spurious-vector register into the
//! blob first, a SET loads them from the blob into the model afterwards (so
//! pending and in-service interrupts survive a save/restore). The model's
//! lock and this blob's are never held together.
//!
//! A SET of the XSAVE area is refused (`INVALID_PARAMETER`) where the
//! processor's `XRSTORS` of it would fault, which Hyper-V must check before
//! it loads the area into a VP ([`xsave_acceptable`]: compacted format,
//! only the partition's enabled states, a clean header, no reserved MXCSR
//! bits).
//!
//! Approximations: the other blobs are not tied to the rest of the VP (the
//! XSAVE area's x87/SSE part is not the interpreter's register file), and
//! a SET of the LAPIC, SynIC or timer blobs is checked only for its size:
//! the TLFS states no rule for their contents that the emulator could
//! follow rather than invent.

use super::{le, Sim};
use crate::sys::page;
use crate::tlfs::{
    abi, HvError, HvResult, VpStateData, HV_GET_SET_VP_STATE_LAPIC_STATE,
    HV_GET_SET_VP_STATE_SIEF_PAGE, HV_GET_SET_VP_STATE_SIM_PAGE,
    HV_GET_SET_VP_STATE_SYNTHETIC_TIMERS, HV_GET_SET_VP_STATE_TYPE_PFN, HV_GET_SET_VP_STATE_XSAVE,
    HV_PAGE, VP_STATE_INLINE,
};
use kernel::prelude::*;

/// A 4 KiB state page.
type StatePage = [u8; HV_PAGE];

/// XSAVE legacy states the hypervisor always transfers (x87, SSE).
const XSAVE_LEGACY: u64 = 0x3;
/// Offset of MXCSR in the XSAVE legacy area.
const XSAVE_MXCSR: usize = 24;
/// Offset and size of the XSAVE header (`XSTATE_BV`, `XCOMP_BV`, 48 bytes
/// that must be zero).
const XSAVE_HEADER: usize = 512;
const XSAVE_HEADER_LEN: usize = 64;
/// `XCOMP_BV[63]`: the area is in the compacted format.
const XCOMP_COMPACTED: u64 = 1 << 63;

/// Whether the processor would load an XSAVE area with this MXCSR and
/// header (`header`: the 64 bytes at offset 512) with `XRSTORS`, the
/// instruction that restores a compacted area, when the states `enabled`
/// are enabled (SDM vol. 1, 13.12): `XCOMP_BV` has bit 63 and only enabled
/// states, `XSTATE_BV` only states in `XCOMP_BV`, the header's other 48
/// bytes are zero, and MXCSR has none of its reserved bits 16-31 (what
/// `MXCSR_MASK` 0xffff allows).
pub(crate) fn xsave_acceptable(mxcsr: u32, header: &[u8; XSAVE_HEADER_LEN], enabled: u64) -> bool {
    let (Some(xstate_bv), Some(xcomp_bv)) = (le::u64_at(header, 0), le::u64_at(header, 8)) else {
        return false;
    };
    let components = xcomp_bv & !XCOMP_COMPACTED;
    xcomp_bv & XCOMP_COMPACTED != 0
        && components & !enabled == 0
        && xstate_bv & !components == 0
        && header[16..].iter().all(|&b| b == 0)
        && mxcsr >> 16 == 0
}

/// `hv_local_interrupt_controller_state` offsets.
mod lapic {
    pub(super) const APIC_ID: usize = 0;
    pub(super) const VERSION: usize = 4;
    pub(super) const DFR: usize = 12;
    pub(super) const SPURIOUS: usize = 16;
    pub(super) const ISR: usize = 20;
    pub(super) const TMR: usize = 52;
    pub(super) const IRR: usize = 84;
    /// `apic_lvt_timer` through `apic_lvt_cmci`: 7 registers.
    pub(super) const LVT_FIRST: usize = 128;
    pub(super) const LVT_COUNT: usize = 7;
}

/// The state blobs of one VP.
pub(crate) struct VpState {
    /// `hv_local_interrupt_controller_state` at offset 0 of a page.
    lapic: KBox<StatePage>,
    /// The compacted XSAVE area (its first `MAX_XSAVE_DATA_SIZE` bytes move).
    xsave: KBox<StatePage>,
    /// The SynIC message page.
    simp: KBox<StatePage>,
    /// The SynIC event flags page.
    siefp: KBox<StatePage>,
    /// `hv_synthetic_timers_state`.
    timers: [u8; VP_STATE_INLINE],
    /// CPUID results registered for the VP (`intercept`).
    pub(crate) cpuid: super::intercept::CpuidResults,
}

// Offsets into a blob are constants inside it: the fallbacks never apply.
fn put32(b: &mut [u8], off: usize, v: u32) {
    le::set_u32(b, off, v);
}

fn get32(b: &[u8], off: usize) -> u32 {
    le::u32_at(b, off).unwrap_or(0)
}

/// Writes the model's registers into a LAPIC blob.
fn put_apic(blob: &mut [u8], st: &super::lapic::SavedState) {
    for (base, regs) in [
        (lapic::ISR, &st.isr),
        (lapic::TMR, &st.tmr),
        (lapic::IRR, &st.irr),
    ] {
        for (i, &v) in regs.iter().enumerate() {
            put32(blob, base + 4 * i, v);
        }
    }
    put32(blob, lapic::SPURIOUS, st.svr);
}

/// Reads the model's registers from a LAPIC blob.
fn get_apic(blob: &[u8]) -> super::lapic::SavedState {
    let regs = |base: usize| core::array::from_fn(|i| get32(blob, base + 4 * i));
    super::lapic::SavedState {
        isr: regs(lapic::ISR),
        tmr: regs(lapic::TMR),
        irr: regs(lapic::IRR),
        svr: get32(blob, lapic::SPURIOUS),
    }
}

impl VpState {
    /// The reset state of VP `index`. May sleep.
    pub(crate) fn new(index: u32) -> Result<Self> {
        let mut lapic = KBox::new([0u8; HV_PAGE], GFP_ATOMIC)?;
        put32(&mut lapic[..], lapic::APIC_ID, index);
        // Integrated APIC version 0x14, 6 LVT entries (max LVT index 5).
        put32(&mut lapic[..], lapic::VERSION, 0x0005_0014);
        put32(&mut lapic[..], lapic::DFR, 0xffff_ffff);
        put32(&mut lapic[..], lapic::SPURIOUS, 0xff);
        for i in 0..lapic::LVT_COUNT {
            // Masked.
            put32(&mut lapic[..], lapic::LVT_FIRST + 4 * i, 0x1_0000);
        }
        let mut xsave = KBox::new([0u8; HV_PAGE], GFP_ATOMIC)?;
        // FCW 0x37f, MXCSR 0x1f80, XCOMP_BV: compacted format, x87/SSE/AVX.
        xsave[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        put32(&mut xsave[..], XSAVE_MXCSR, 0x1f80);
        put32(&mut xsave[..], XSAVE_MXCSR + 4, 0xffff);
        xsave[XSAVE_HEADER + 8..XSAVE_HEADER + 16]
            .copy_from_slice(&(XCOMP_COMPACTED | 0x7).to_le_bytes());
        Ok(Self {
            lapic,
            xsave,
            simp: KBox::new([0u8; HV_PAGE], GFP_ATOMIC)?,
            siefp: KBox::new([0u8; HV_PAGE], GFP_ATOMIC)?,
            timers: [0; VP_STATE_INLINE],
            cpuid: super::intercept::CpuidResults::new()?,
        })
    }

    /// The blob of `kind` and how many of its bytes move (`xsave_size` for
    /// XSAVE).
    fn blob(&mut self, kind: u32, xsave_size: usize) -> Option<&mut [u8]> {
        match kind {
            HV_GET_SET_VP_STATE_LAPIC_STATE => Some(&mut self.lapic[..]),
            HV_GET_SET_VP_STATE_XSAVE => self.xsave.get_mut(..xsave_size),
            HV_GET_SET_VP_STATE_SIM_PAGE => Some(&mut self.simp[..]),
            HV_GET_SET_VP_STATE_SIEF_PAGE => Some(&mut self.siefp[..]),
            HV_GET_SET_VP_STATE_SYNTHETIC_TIMERS => Some(&mut self.timers[..]),
            _ => None,
        }
    }
}

impl Sim {
    /// `HVCALL_GET_VP_STATE` (`set == false`: blob → `pfns` or `inline`) or
    /// `HVCALL_SET_VP_STATE` (`pfns` or `inline` → blob).
    ///
    /// The caller keeps every page of `pfns` pinned for the call.
    pub(super) fn vp_state(
        &self,
        pt: u64,
        vp: u32,
        data: &VpStateData,
        pfns: &[u64],
        inline: &mut [u8],
        set: bool,
    ) -> HvResult {
        let invalid = HvError::INVALID_PARAMETER;
        let (part, vp) = self.vp_of(pt, vp)?;
        let (xsave_size, xsave_states) = {
            let inner = part.inner.lock();
            let p = |code| inner.props.get(code, &part.create);
            (
                p(abi::HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE),
                p(abi::HV_PARTITION_PROPERTY_XSAVE_STATES) | XSAVE_LEGACY,
            )
        };
        let xsave_size = usize::try_from(xsave_size).map_err(|_| invalid)?;
        if data.kind == HV_GET_SET_VP_STATE_XSAVE
            && (data.xsave_flags != 0 || data.xsave_states & !xsave_states != 0)
        {
            return Err(invalid);
        }
        if data.kind != HV_GET_SET_VP_STATE_XSAVE && (data.xsave_flags | data.xsave_states) != 0 {
            return Err(invalid);
        }
        let by_pfn = data.kind & HV_GET_SET_VP_STATE_TYPE_PFN != 0;
        if set && data.kind == HV_GET_SET_VP_STATE_XSAVE {
            let mut mxcsr = [0u8; 4];
            let mut header = [0u8; XSAVE_HEADER_LEN];
            match pfns.first() {
                Some(&pfn) => {
                    // SAFETY: the caller keeps every page of `pfns` pinned
                    // for the call; both ranges lie in the first page.
                    unsafe {
                        page::read(pfn, XSAVE_MXCSR, &mut mxcsr);
                        page::read(pfn, XSAVE_HEADER, &mut header);
                    }
                }
                None => {
                    let at = |off: usize, len: usize| inline.get(off..off + len).ok_or(invalid);
                    mxcsr.copy_from_slice(at(XSAVE_MXCSR, 4)?);
                    header.copy_from_slice(at(XSAVE_HEADER, XSAVE_HEADER_LEN)?);
                }
            }
            if !xsave_acceptable(u32::from_le_bytes(mxcsr), &header, xsave_states) {
                return Err(invalid);
            }
        }
        let is_lapic = data.kind == HV_GET_SET_VP_STATE_LAPIC_STATE;
        // The model's registers, taken before (and never under) `state`.
        let model = (is_lapic && !set).then(|| vp.lapic.lock().save());
        let mut state = vp.state.lock();
        if let Some(m) = &model {
            put_apic(&mut state.lapic[..], m);
        }
        self.move_blob(&mut state, data, xsave_size, by_pfn, pfns, inline, set)?;
        if is_lapic && set {
            let saved = get_apic(&state.lapic[..]);
            drop(state);
            vp.lapic.lock().restore(&saved);
        }
        Ok(())
    }

    /// Moves the bytes of `data.kind`'s blob between `state` and `pfns` or
    /// `inline` (see [`Sim::vp_state`]).
    #[expect(clippy::too_many_arguments)]
    fn move_blob(
        &self,
        state: &mut VpState,
        data: &VpStateData,
        xsave_size: usize,
        by_pfn: bool,
        pfns: &[u64],
        inline: &mut [u8],
        set: bool,
    ) -> HvResult {
        let invalid = HvError::INVALID_PARAMETER;
        let blob = state.blob(data.kind, xsave_size).ok_or(invalid)?;
        if !by_pfn {
            if !pfns.is_empty() {
                return Err(invalid);
            }
            let io = inline.get_mut(..blob.len()).ok_or(invalid)?;
            if set {
                blob.copy_from_slice(io);
            } else {
                io.copy_from_slice(blob);
            }
            return Ok(());
        }
        if pfns.len() < blob.len().div_ceil(HV_PAGE) {
            return Err(invalid);
        }
        for (chunk, &pfn) in blob.chunks_mut(HV_PAGE).zip(pfns) {
            if set {
                // SAFETY: the caller keeps `pfn` pinned for the call; a chunk
                // is at most one page.
                unsafe { page::read(pfn, 0, chunk) };
            } else {
                // SAFETY: as above.
                unsafe { page::write(pfn, 0, chunk) };
            }
        }
        Ok(())
    }
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_sim_vp_state)]
mod tests {
    use super::*;

    /// A header with `XSTATE_BV`, `XCOMP_BV` and one byte of the reserved
    /// part (`(offset, value)`, offset 16..64).
    fn header(xstate_bv: u64, xcomp_bv: u64, reserved: Option<(usize, u8)>) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[0..8].copy_from_slice(&xstate_bv.to_le_bytes());
        h[8..16].copy_from_slice(&xcomp_bv.to_le_bytes());
        if let Some((off, v)) = reserved {
            h[off] = v;
        }
        h
    }

    #[test]
    fn xsave_area_checks() {
        let c = XCOMP_COMPACTED;
        // (MXCSR, XSTATE_BV, XCOMP_BV, a reserved header byte, enabled states)
        let rows: [(u32, u64, u64, Option<(usize, u8)>, u64, bool); 12] = [
            // The reset area and a used one.
            (0x1f80, 0, c | 0x7, None, 0x7, true),
            (0xffff, 0x7, c | 0x7, None, 0x7, true),
            // Fewer components than enabled; XSTATE_BV within them.
            (0x1f80, 0x3, c | 0x3, None, 0x7, true),
            // The standard (non-compacted) format.
            (0x1f80, 0x3, 0x7, None, 0x7, false),
            // A component the partition has not enabled (AVX-512 opmask).
            (0x1f80, 0, c | 0x27, None, 0x7, false),
            (0x1f80, 0, c | 0x7, None, 0x3, false),
            // A state in XSTATE_BV that XCOMP_BV does not hold.
            (0x1f80, 0x4, c | 0x3, None, 0x7, false),
            // The reserved 48 bytes, first and last.
            (0x1f80, 0, c | 0x7, Some((16, 1)), 0x7, false),
            (0x1f80, 0, c | 0x7, Some((63, 0x80)), 0x7, false),
            // MXCSR reserved bits, lowest and highest.
            (0x1_1f80, 0, c | 0x7, None, 0x7, false),
            (0x8000_1f80, 0, c | 0x7, None, 0x7, false),
            // Bit 63 alone: no component, nothing to restore.
            (0x1f80, 0, c, None, 0x7, true),
        ];
        for (i, &(mxcsr, xstate, xcomp, reserved, enabled, want)) in rows.iter().enumerate() {
            let got = xsave_acceptable(mxcsr, &header(xstate, xcomp, reserved), enabled);
            assert_eq!((i, got), (i, want));
        }
    }
}
