// SPDX-License-Identifier: GPL-2.0

//! Raw hypercalls (`MSHV_ROOT_HVCALL`) on the simulated hypervisor.
//!
//! The driver has already checked the code against its allow-list and put
//! the target partition id in the first `u64` of the zero-filled input page.
//! This decodes the input with the Hyper-V layouts, runs the call and encodes
//! the output, returning the raw result word (status in bits 0..15, reps
//! completed in bits 32..43). Supported:
//!
//! - `GET_VP_REGISTERS` / `SET_VP_REGISTERS` (rep; honour `rep_start`);
//! - `GET_PARTITION_PROPERTY` and `_EX` (root: host values; child: stored or
//!   derived values; `_EX` also answers the root's banked properties
//!   `VMM_CAPABILITIES` and `ASSIGNABLE_SYNTHETIC_PROC_FEATURES`, see
//!   `props`);
//! - `SET_PARTITION_PROPERTY` (see `props::write_rule`: early properties
//!   only before initialization, read-only ones `ACCESS_DENIED`, unknown ones
//!   `UNKNOWN_PROPERTY`, invalid values `PROPERTY_VALUE_OUT_OF_RANGE`;
//!   `GPA_PAGE_ACCESS_TRACKING` as in `access`);
//! - `ASSERT_VIRTUAL_INTERRUPT`: the sim's LAPIC model (see `super::irq`);
//! - `INSTALL_INTERCEPT`, `REGISTER_INTERCEPT_RESULT` (CPUID),
//!   `GET_VP_CPUID_VALUES` (rep): see `intercept`;
//! - `CLEAR_VIRTUAL_INTERRUPT`,
//!   `SIGNAL_EVENT_DIRECT`, `POST_MESSAGE_DIRECT`: accepted, no effect yet;
//! - `TRANSLATE_VIRTUAL_ADDRESS`: a walk of the VP's page tables.
//!
//! Anything else fails with `HV_STATUS_INVALID_HYPERCALL_CODE`.

use super::{cpu, intercept, le, reg_page, regs::RegFile, slat, vp, PartState, Sim};
use crate::tlfs::{abi, status, HV_PAGE, HV_PAGE_SHIFT};

/// Bytes of the VP-register input header (`partition_id`, `vp_index`, VTL).
const VP_REGS_HEADER: usize = 16;
/// Bytes per name of `GET_VP_REGISTERS`.
const NAME_SIZE: usize = 4;
/// Bytes per value of `GET_VP_REGISTERS`.
const VALUE_SIZE: usize = 16;
/// Bytes per `struct hv_register_assoc`.
const ASSOC_SIZE: usize = 32;

/// `HV_TRANSLATE_GVA_VALIDATE_WRITE`.
const GVA_VALIDATE_WRITE: u64 = 1 << 1;
/// `HV_TRANSLATE_GVA_VALIDATE_EXECUTE`.
const GVA_VALIDATE_EXECUTE: u64 = 1 << 2;
/// `HV_TRANSLATE_GVA_SUCCESS`.
const GVA_SUCCESS: u32 = 0;
/// `HV_TRANSLATE_GVA_PAGE_NOT_PRESENT`.
const GVA_PAGE_NOT_PRESENT: u32 = 1;
/// `HV_TRANSLATE_GVA_PRIVILEGE_VIOLATION`.
const GVA_PRIVILEGE_VIOLATION: u32 = 2;
/// `HV_TRANSLATE_GVA_GPA_UNMAPPED`.
const GVA_GPA_UNMAPPED: u32 = 4;
/// `HV_TRANSLATE_GVA_GPA_NO_READ_ACCESS`.
const GVA_GPA_NO_READ_ACCESS: u32 = 5;
/// `HV_TRANSLATE_GVA_GPA_NO_WRITE_ACCESS`.
const GVA_GPA_NO_WRITE_ACCESS: u32 = 6;

/// A hypercall's outcome: status and reps completed.
type Outcome = (u16, u16);

/// Success of a simple (non-rep) call.
const OK: Outcome = (status::SUCCESS, 0);

/// Failure of a simple call.
fn fail(status: u16) -> Outcome {
    (status, 0)
}

impl Sim {
    /// Executes a passthrough hypercall; see the module documentation.
    pub(super) fn raw_call(
        &self,
        code: u16,
        reps: u16,
        rep_start: u16,
        input: &[u8; HV_PAGE],
        output: &mut [u8; HV_PAGE],
    ) -> u64 {
        let rep = matches!(
            code,
            abi::HVCALL_GET_VP_REGISTERS
                | abi::HVCALL_SET_VP_REGISTERS
                | abi::HVCALL_GET_GPA_PAGES_ACCESS_STATES
                | abi::HVCALL_GET_VP_CPUID_VALUES
        );
        let (st, done) = if rep && (reps > 0xfff || rep_start > reps) {
            (status::INVALID_HYPERCALL_INPUT, rep_start)
        } else if !rep && (reps != 0 || rep_start != 0) && code_known(code) {
            fail(status::INVALID_HYPERCALL_INPUT)
        } else {
            match code {
                abi::HVCALL_GET_VP_REGISTERS => {
                    self.hc_get_vp_registers(reps, rep_start, input, output)
                }
                abi::HVCALL_SET_VP_REGISTERS => self.hc_set_vp_registers(reps, rep_start, input),
                abi::HVCALL_GET_PARTITION_PROPERTY => self.hc_get_property(input, output, false),
                abi::HVCALL_GET_PARTITION_PROPERTY_EX => self.hc_get_property(input, output, true),
                abi::HVCALL_SET_PARTITION_PROPERTY => {
                    let out = self.hc_set_property(input);
                    if self.inject.take_call_pending() {
                        // The call completes later: its status goes to the
                        // root in a message (sent before this returns, so the
                        // root may see it before it starts waiting).
                        let pt = le::u64_at(input, 0).unwrap_or(0);
                        self.synic.async_completion(pt, out.0);
                        (status::CALL_PENDING, 0)
                    } else {
                        out
                    }
                }
                abi::HVCALL_ASSERT_VIRTUAL_INTERRUPT => self.hc_assert_interrupt(input),
                abi::HVCALL_INSTALL_INTERCEPT => self.hc_install_intercept(input),
                abi::HVCALL_REGISTER_INTERCEPT_RESULT => self.hc_register_intercept_result(input),
                abi::HVCALL_GET_VP_CPUID_VALUES => {
                    self.hc_get_vp_cpuid_values(reps, rep_start, input, output)
                }
                abi::HVCALL_CLEAR_VIRTUAL_INTERRUPT
                | abi::HVCALL_SIGNAL_EVENT_DIRECT
                | abi::HVCALL_POST_MESSAGE_DIRECT => self.hc_accept(input),
                abi::HVCALL_TRANSLATE_VIRTUAL_ADDRESS => self.hc_translate(input, output),
                abi::HVCALL_GET_GPA_PAGES_ACCESS_STATES => {
                    self.hc_gpa_access_states(reps, rep_start, input, output)
                }
                _ => fail(status::INVALID_HYPERCALL_CODE),
            }
        };
        abi::result(st, done)
    }

    /// `HVCALL_ASSERT_VIRTUAL_INTERRUPT` (`hv_input_assert_virtual_interrupt`:
    /// partition id, control with the type in bits 0-31, level bit 32 and
    /// logical bit 33, destination, vector, target VTL which must be 0).
    /// Other control bits are ignored (mshv-ioctls sets bit 62 for a
    /// "long mode" request).
    fn hc_assert_interrupt(&self, input: &[u8]) -> Outcome {
        let (Some(pt), Some(control), Some(dest), Some(vector), Some(vtl)) = (
            le::u64_at(input, 0),
            le::u64_at(input, 8),
            le::u64_at(input, 16),
            le::u32_at(input, 24),
            le::u32_at(input, 28),
        ) else {
            return fail(status::INVALID_HYPERCALL_INPUT);
        };
        if vtl & 0xff != 0 {
            return fail(status::INVALID_PARAMETER);
        }
        let irq = crate::tlfs::VirtualInterrupt {
            kind: control as u32,
            vector,
            dest,
            level: control & (1 << 32) != 0,
            logical: control & (1 << 33) != 0,
        };
        match self.assert_interrupt(pt, &irq) {
            Ok(()) => OK,
            Err(e) => fail(e.0),
        }
    }

    /// `HVCALL_GET_VP_REGISTERS`.
    fn hc_get_vp_registers(
        &self,
        reps: u16,
        start: u16,
        input: &[u8],
        output: &mut [u8],
    ) -> Outcome {
        let (pt, vp) = match (le::u64_at(input, 0), le::u32_at(input, 8)) {
            (Some(pt), Some(vp)) => (pt, vp),
            _ => return (status::INVALID_HYPERCALL_INPUT, start),
        };
        let (part, vp) = match self.vp_of(pt, vp) {
            Ok(pv) => pv,
            Err(e) => return (e.0, start),
        };
        reg_page::with_regs(&part, &vp, |regs| {
            Self::get_regs_rep(regs, reps, start, input, output)
        })
    }

    /// The reps of `GET_VP_REGISTERS` from `start` on a register file.
    fn get_regs_rep(
        regs: &mut RegFile,
        reps: u16,
        start: u16,
        input: &[u8],
        output: &mut [u8],
    ) -> Outcome {
        for i in start..reps {
            let at = usize::from(i);
            let Some(name) = le::u32_at(input, VP_REGS_HEADER + at * NAME_SIZE) else {
                return (status::INVALID_HYPERCALL_INPUT, i);
            };
            let value = match regs.get(name) {
                Ok(v) => v,
                Err(e) => return (e.0, i),
            };
            let off = at * VALUE_SIZE;
            if !(le::set_u64(output, off, value[0]) && le::set_u64(output, off + 8, value[1])) {
                return (status::INVALID_HYPERCALL_INPUT, i);
            }
        }
        (status::SUCCESS, reps)
    }

    /// `HVCALL_SET_VP_REGISTERS`.
    fn hc_set_vp_registers(&self, reps: u16, start: u16, input: &[u8]) -> Outcome {
        let (pt, vp) = match (le::u64_at(input, 0), le::u32_at(input, 8)) {
            (Some(pt), Some(vp)) => (pt, vp),
            _ => return (status::INVALID_HYPERCALL_INPUT, start),
        };
        let (part, vp) = match self.vp_of(pt, vp) {
            Ok(pv) => pv,
            Err(e) => return (e.0, start),
        };
        reg_page::with_regs(&part, &vp, |regs| {
            Self::set_regs_rep(regs, &vp, reps, start, input)
        })
    }

    /// The reps of `SET_VP_REGISTERS` from `start` on `vp`'s register file.
    fn set_regs_rep(
        regs: &mut RegFile,
        vp: &vp::Vp,
        reps: u16,
        start: u16,
        input: &[u8],
    ) -> Outcome {
        for i in start..reps {
            let off = VP_REGS_HEADER + usize::from(i) * ASSOC_SIZE;
            let (Some(name), Some(lo), Some(hi)) = (
                le::u32_at(input, off),
                le::u64_at(input, off + 16),
                le::u64_at(input, off + 24),
            ) else {
                return (status::INVALID_HYPERCALL_INPUT, i);
            };
            if !vp::writable_now(vp, name) {
                return (status::INVALID_VP_STATE, i);
            }
            if let Err(e) = regs.set(name, [lo, hi]) {
                return (e.0, i);
            }
        }
        (status::SUCCESS, reps)
    }

    /// `HVCALL_GET_PARTITION_PROPERTY` (and `_EX` with `ex`).
    fn hc_get_property(&self, input: &[u8], output: &mut [u8], ex: bool) -> Outcome {
        let (Some(pt), Some(code)) = (le::u64_at(input, 0), le::u32_at(input, 8)) else {
            return fail(status::INVALID_HYPERCALL_INPUT);
        };
        // Banked properties (`struct hv_partition_property_vmm_capabilities`
        // shape: `bank_count` u16, three reserved u16, then the banks), of
        // the root only and through `_EX` only.
        let bank = match code {
            // Only `assignable_synthetic_proc_features` (no overlay pages,
            // no integrated scheduler).
            abi::HV_PARTITION_PROPERTY_VMM_CAPABILITIES => {
                Some(super::props::HOST_VMM_CAPABILITIES)
            }
            super::props::ASSIGNABLE_SYNTHETIC_PROC_FEATURES if pt == abi::HV_PARTITION_ID_SELF => {
                Some(super::props::HOST_ASSIGNABLE_SYNTHETIC)
            }
            _ => None,
        };
        if let (true, Some(bank)) = (ex, bank) {
            if !(le::set_u64(output, 0, 1) && le::set_u64(output, 8, bank)) {
                return fail(status::INVALID_HYPERCALL_INPUT);
            }
            return OK;
        }
        let value = if pt == abi::HV_PARTITION_ID_SELF {
            match super::props::host(code) {
                Some(v) => v,
                None => return fail(status::UNKNOWN_PROPERTY),
            }
        } else {
            match self.partition(pt) {
                Ok(part) => match part.inner.lock().props.lookup(code, &part.create) {
                    Ok(v) => v,
                    Err(e) => return fail(e.0),
                },
                Err(e) => return fail(e.0),
            }
        };
        if le::set_u64(output, 0, value) {
            OK
        } else {
            fail(status::INVALID_HYPERCALL_INPUT)
        }
    }

    /// `HVCALL_SET_PARTITION_PROPERTY`.
    fn hc_set_property(&self, input: &[u8]) -> Outcome {
        let (Some(pt), Some(code), Some(value)) = (
            le::u64_at(input, 0),
            le::u32_at(input, 8),
            le::u64_at(input, 16),
        ) else {
            return fail(status::INVALID_HYPERCALL_INPUT);
        };
        if pt == abi::HV_PARTITION_ID_SELF {
            return fail(status::ACCESS_DENIED);
        }
        let part = match self.partition(pt) {
            Ok(p) => p,
            Err(e) => return fail(e.0),
        };
        let mut inner = part.inner.lock();
        let early = inner.state == PartState::Created;
        let res = if code == abi::HV_PARTITION_PROPERTY_GPA_PAGE_ACCESS_TRACKING {
            Sim::set_access_tracking(&mut inner, &part.create, value)
        } else {
            inner.props.store(code, value, early)
        };
        match res {
            Ok(()) => OK,
            Err(e) => fail(e.0),
        }
    }

    /// `HVCALL_GET_GPA_PAGES_ACCESS_STATES`: input `{partition_id, flags,
    /// base gfn}`, output one state byte per rep (at the rep's index).
    fn hc_gpa_access_states(
        &self,
        reps: u16,
        start: u16,
        input: &[u8],
        output: &mut [u8],
    ) -> Outcome {
        let (Some(pt), Some(flags), Some(gfn)) = (
            le::u64_at(input, 0),
            le::u64_at(input, 8),
            le::u64_at(input, 16),
        ) else {
            return (status::INVALID_HYPERCALL_INPUT, start);
        };
        let Some(out) = output.get_mut(usize::from(start)..usize::from(reps)) else {
            return (status::INVALID_HYPERCALL_INPUT, start);
        };
        match self.gpa_access_states(pt, gfn.saturating_add(u64::from(start)), flags, out) {
            Ok(()) => (status::SUCCESS, reps),
            Err(e) => (e.error.0, start + e.done as u16),
        }
    }

    /// `HVCALL_INSTALL_INTERCEPT`: input `{partition_id, access_type u32,
    /// intercept_type u32, intercept_parameter u64}`.
    fn hc_install_intercept(&self, input: &[u8]) -> Outcome {
        let (Some(pt), Some(access), Some(kind), Some(param)) = (
            le::u64_at(input, 0),
            le::u32_at(input, 8),
            le::u32_at(input, 12),
            le::u64_at(input, 16),
        ) else {
            return fail(status::INVALID_HYPERCALL_INPUT);
        };
        let part = match self.partition(pt) {
            Ok(p) => p,
            Err(e) => return fail(e.0),
        };
        let res = part.inner.lock().intercepts.install(kind, access, param);
        match res {
            Ok(()) => OK,
            Err(e) => fail(e.0),
        }
    }

    /// `HVCALL_REGISTER_INTERCEPT_RESULT` (CPUID only): input
    /// `{partition_id, vp_index u32, intercept_type u32,
    /// hv_register_x64_cpuid_result_parameters}`.
    fn hc_register_intercept_result(&self, input: &[u8]) -> Outcome {
        let (Some(pt), Some(vp), Some(kind)) = (
            le::u64_at(input, 0),
            le::u32_at(input, 8),
            le::u32_at(input, 12),
        ) else {
            return fail(status::INVALID_HYPERCALL_INPUT);
        };
        if kind != intercept::TYPE_CPUID {
            return fail(status::INVALID_PARAMETER);
        }
        let word = |i: usize| le::u32_at(input, 28 + 4 * i).unwrap_or(0);
        let (Some(leaf), Some(subleaf), Some(flags)) = (
            le::u32_at(input, 16),
            le::u32_at(input, 20),
            le::u32_at(input, 24),
        ) else {
            return fail(status::INVALID_HYPERCALL_INPUT);
        };
        let r = intercept::CpuidResult {
            leaf,
            subleaf,
            subleaf_specific: flags & 0xff != 0,
            always_override: (flags >> 8) & 0xff != 0,
            value: [word(0), word(2), word(4), word(6)],
            mask: [word(1), word(3), word(5), word(7)],
        };
        let vp = match self.vp_of(pt, vp) {
            Ok((_, vp)) => vp,
            Err(e) => return fail(e.0),
        };
        let res = vp.state.lock().cpuid.register(r);
        match res {
            Ok(()) => OK,
            Err(e) => fail(e.0),
        }
    }

    /// `HVCALL_GET_VP_CPUID_VALUES` (rep): input `{partition_id, vp_index
    /// u32, flags u32 (use_vp_xfem_xss, apply_registered_values), reserved,
    /// padding}` then `hv_cpuid_leaf_info` (24 bytes) per rep; output
    /// `[eax, ebx, ecx, edx]` per rep.
    fn hc_get_vp_cpuid_values(
        &self,
        reps: u16,
        start: u16,
        input: &[u8],
        output: &mut [u8],
    ) -> Outcome {
        let (Some(pt), Some(vp), Some(flags)) = (
            le::u64_at(input, 0),
            le::u32_at(input, 8),
            le::u32_at(input, 12),
        ) else {
            return (status::INVALID_HYPERCALL_INPUT, start);
        };
        let (part, vp) = match self.vp_of(pt, vp) {
            Ok(pv) => pv,
            Err(e) => return (e.0, start),
        };
        let (cr4, vp_xcr0) = {
            let rf = vp.regs.lock();
            (
                rf.cpu.cr4,
                rf.get(abi::HV_X64_REGISTER_XFEM).map_or(1, |v| v[0]),
            )
        };
        let env = {
            let inner = part.inner.lock();
            intercept::CpuidEnv::of(&inner, &part.create)
        };
        for i in start..reps {
            let off = 24 + 24 * usize::from(i);
            let (Some(leaf), Some(subleaf), Some(xfem)) = (
                le::u32_at(input, off),
                le::u32_at(input, off + 4),
                le::u64_at(input, off + 8),
            ) else {
                return (status::INVALID_HYPERCALL_INPUT, i);
            };
            let xcr0 = if flags & 1 != 0 { vp_xcr0 } else { xfem };
            let mut v = intercept::base_cpuid(&env, leaf, subleaf, vp.index, cr4, xcr0);
            if flags & 2 != 0 {
                v = vp.state.lock().cpuid.apply(leaf, subleaf, v);
            }
            let out = 16 * usize::from(i);
            let lo = u64::from(v[0]) | (u64::from(v[1]) << 32);
            let hi = u64::from(v[2]) | (u64::from(v[3]) << 32);
            if !(le::set_u64(output, out, lo) && le::set_u64(output, out + 8, hi)) {
                return (status::INVALID_HYPERCALL_INPUT, i);
            }
        }
        (status::SUCCESS, reps)
    }

    /// Calls accepted without effect: only the target partition is checked.
    fn hc_accept(&self, input: &[u8]) -> Outcome {
        let Some(pt) = le::u64_at(input, 0) else {
            return fail(status::INVALID_HYPERCALL_INPUT);
        };
        match self.partition(pt) {
            Ok(_) => OK,
            Err(e) => fail(e.0),
        }
    }

    /// `HVCALL_TRANSLATE_VIRTUAL_ADDRESS`: input `{partition_id, vp_index,
    /// padding, control_flags, gva_page}`, output `{result_code u32,
    /// cache_type u32, gpa_page u64}`.
    fn hc_translate(&self, input: &[u8], output: &mut [u8]) -> Outcome {
        let (Some(pt), Some(vp), Some(flags), Some(gva_page)) = (
            le::u64_at(input, 0),
            le::u32_at(input, 8),
            le::u64_at(input, 16),
            le::u64_at(input, 24),
        ) else {
            return fail(status::INVALID_HYPERCALL_INPUT);
        };
        let (part, vp) = match self.vp_of(pt, vp) {
            Ok(pv) => pv,
            Err(e) => return fail(e.0),
        };
        let access = if flags & GVA_VALIDATE_WRITE != 0 {
            cpu::Access::Write
        } else if flags & GVA_VALIDATE_EXECUTE != 0 {
            cpu::Access::Execute
        } else {
            cpu::Access::Read
        };
        let no_access = if access == cpu::Access::Write {
            GVA_GPA_NO_WRITE_ACCESS
        } else {
            GVA_GPA_NO_READ_ACCESS
        };
        let regs = vp.regs.lock().cpu.clone();
        let mut mem = vp::VpMemory {
            part: &part,
            vp: None,
        };
        let gva = gva_page.wrapping_shl(12);
        let (result, gpa_page) = match cpu::linear_to_physical(&regs, &mut mem, gva, access) {
            Ok(gpa) => match part.inner.lock().slat.check(gpa >> HV_PAGE_SHIFT, access) {
                Ok(_) => (GVA_SUCCESS, gpa >> HV_PAGE_SHIFT),
                Err(slat::GpaFault::Unmapped) => (GVA_GPA_UNMAPPED, gpa >> HV_PAGE_SHIFT),
                Err(slat::GpaFault::Intercept) => (no_access, gpa >> HV_PAGE_SHIFT),
            },
            Err(cpu::TranslateError::PageNotPresent) | Err(cpu::TranslateError::NonCanonical) => {
                (GVA_PAGE_NOT_PRESENT, 0)
            }
            Err(cpu::TranslateError::PrivilegeViolation) => (GVA_PRIVILEGE_VIOLATION, 0),
            // A page-table page of the walk is not accessible: its page
            // (the driver faults a movable one in and asks again).
            Err(cpu::TranslateError::Memory(f)) if f.unmapped => {
                (GVA_GPA_UNMAPPED, f.gpa >> HV_PAGE_SHIFT)
            }
            Err(cpu::TranslateError::Memory(f)) => (GVA_GPA_NO_READ_ACCESS, f.gpa >> HV_PAGE_SHIFT),
            Err(cpu::TranslateError::UnsupportedPagingMode) => {
                return fail(status::INVALID_PARAMETER)
            }
        };
        if le::set_u64(output, 0, u64::from(result)) && le::set_u64(output, 8, gpa_page) {
            OK
        } else {
            fail(status::INVALID_HYPERCALL_INPUT)
        }
    }
}

/// Whether the simulator implements hypercall `code` (so its rep fields can
/// be checked).
fn code_known(code: u16) -> bool {
    matches!(
        code,
        abi::HVCALL_GET_PARTITION_PROPERTY
            | abi::HVCALL_GET_PARTITION_PROPERTY_EX
            | abi::HVCALL_SET_PARTITION_PROPERTY
            | abi::HVCALL_INSTALL_INTERCEPT
            | abi::HVCALL_REGISTER_INTERCEPT_RESULT
            | abi::HVCALL_ASSERT_VIRTUAL_INTERRUPT
            | abi::HVCALL_CLEAR_VIRTUAL_INTERRUPT
            | abi::HVCALL_SIGNAL_EVENT_DIRECT
            | abi::HVCALL_POST_MESSAGE_DIRECT
            | abi::HVCALL_TRANSLATE_VIRTUAL_ADDRESS
            | abi::HVCALL_GET_GPA_PAGES_ACCESS_STATES
            | abi::HVCALL_GET_VP_CPUID_VALUES
    )
}
