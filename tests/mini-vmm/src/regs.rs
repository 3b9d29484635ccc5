// SPDX-License-Identifier: GPL-2.0
//
// VP registers: building register associations, getting and setting them,
// and the switch to 32-bit flat protected mode that every guest here starts
// in (without paging).

use mshv_bindings::*;
use mshv_ioctls::VcpuFd;

use crate::Error;

/// A 64-bit register value.
pub fn reg64(name: hv_register_name, v: u64) -> hv_register_assoc {
    hv_register_assoc {
        name,
        value: hv_register_value { reg64: v },
        ..Default::default()
    }
}

/// A segment register value.
pub fn seg(base: u64, limit: u32, selector: u16, attributes: u16) -> hv_x64_segment_register {
    hv_x64_segment_register {
        base,
        limit,
        selector,
        __bindgen_anon_1: hv_x64_segment_register__bindgen_ty_1 { attributes },
    }
}

pub fn seg_reg(name: hv_register_name, s: hv_x64_segment_register) -> hv_register_assoc {
    hv_register_assoc {
        name,
        value: hv_register_value { segment: s },
        ..Default::default()
    }
}

/// HVCALL_SET_VP_REGISTERS of `regs`, in one call.
pub fn set_regs(vcpu: &VcpuFd, regs: &[hv_register_assoc]) -> Result<(), Error> {
    vcpu.set_reg(regs)
        .map_err(|e| Error::new("HVCALL_SET_VP_REGISTERS", e))
}

fn get_reg(vcpu: &VcpuFd, name: hv_register_name) -> Result<hv_register_value, Error> {
    let mut regs = [reg64(name, 0)];
    vcpu.get_reg(&mut regs)
        .map_err(|e| Error::new(format!("HVCALL_GET_VP_REGISTERS({name:#x})"), e))?;
    Ok(regs[0].value)
}

/// A register read as a plain 64-bit value.
pub fn get_reg64(vcpu: &VcpuFd, name: hv_register_name) -> Result<u64, Error> {
    let v = get_reg(vcpu, name)?;
    // SAFETY: a plain integer view of the returned value.
    Ok(unsafe { v.reg64 })
}

/// A segment register.
pub fn get_seg(vcpu: &VcpuFd, name: hv_register_name) -> Result<hv_x64_segment_register, Error> {
    let v = get_reg(vcpu, name)?;
    // SAFETY: segment registers are returned in the segment layout.
    Ok(unsafe { v.segment })
}

/// Puts the VP in 32-bit flat protected mode at `entry`: CR0.PE = 1 (the
/// other CR0 bits as they are), CS = base 0 / limit 4 GiB / selector 0x08 /
/// attributes 0xC09B, DS/ES/SS/FS/GS = base 0 / limit 4 GiB / selector 0x10 /
/// attributes 0xC093, RFLAGS = 0x2, RSP = `esp`, then `extra` (say a
/// parameter pointer in RBP), all in one HVCALL_SET_VP_REGISTERS.
pub fn enter_protected_mode(
    vcpu: &VcpuFd,
    entry: u64,
    esp: u64,
    extra: &[hv_register_assoc],
) -> Result<(), Error> {
    let cr0 = get_reg64(vcpu, hv_register_name_HV_X64_REGISTER_CR0)?;
    let code = seg(0, 0xffff_ffff, 0x08, 0xc09b);
    let data = seg(0, 0xffff_ffff, 0x10, 0xc093);
    let mut regs = vec![
        reg64(hv_register_name_HV_X64_REGISTER_CR0, cr0 | 1),
        seg_reg(hv_register_name_HV_X64_REGISTER_CS, code),
        seg_reg(hv_register_name_HV_X64_REGISTER_DS, data),
        seg_reg(hv_register_name_HV_X64_REGISTER_ES, data),
        seg_reg(hv_register_name_HV_X64_REGISTER_SS, data),
        seg_reg(hv_register_name_HV_X64_REGISTER_FS, data),
        seg_reg(hv_register_name_HV_X64_REGISTER_GS, data),
        reg64(hv_register_name_HV_X64_REGISTER_RFLAGS, 0x2),
        reg64(hv_register_name_HV_X64_REGISTER_RSP, esp),
        reg64(hv_register_name_HV_X64_REGISTER_RIP, entry),
    ];
    regs.extend_from_slice(extra);
    set_regs(vcpu, &regs)
}

/// Puts the VP in 64-bit mode with paging at `entry`: CR3 = `cr3` (a
/// 4-level page table the caller built), CR4.PAE, EFER.LME|LMA, CR0.PG|PE|ET,
/// CS = a 64-bit code segment (selector 0x08, attributes 0xA09B), DS/SS =
/// flat data (0x10, 0xC093), RFLAGS = 0x2, in one HVCALL_SET_VP_REGISTERS.
pub fn enter_long_mode(vcpu: &VcpuFd, cr3: u64, entry: u64) -> Result<(), Error> {
    let code = seg(0, 0xffff_ffff, 0x08, 0xa09b);
    let data = seg(0, 0xffff_ffff, 0x10, 0xc093);
    set_regs(
        vcpu,
        &[
            reg64(hv_register_name_HV_X64_REGISTER_CR3, cr3),
            reg64(hv_register_name_HV_X64_REGISTER_CR4, 0x20),
            reg64(hv_register_name_HV_X64_REGISTER_EFER, 0x500),
            reg64(hv_register_name_HV_X64_REGISTER_CR0, 0x8000_0011),
            seg_reg(hv_register_name_HV_X64_REGISTER_CS, code),
            seg_reg(hv_register_name_HV_X64_REGISTER_DS, data),
            seg_reg(hv_register_name_HV_X64_REGISTER_SS, data),
            reg64(hv_register_name_HV_X64_REGISTER_RFLAGS, 0x2),
            reg64(hv_register_name_HV_X64_REGISTER_RIP, entry),
        ],
    )
}
