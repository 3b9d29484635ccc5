// SPDX-License-Identifier: GPL-2.0

//! Data moves: MOV in all its forms (segment registers and memory offsets included), XCHG,
//! LEA, MOVSXD, MOVZX and MOVSX, CMOVcc, CBW/CWDE/CDQE and CWD/CDQ/CQO, NOP and the hint NOPs.

use super::{
    alu::{sext, sign_bit, size_mask},
    decode::Rm,
    seg_from, Cpu, GuestMemory, Seg, Step, Stop, VEC_UD,
};

impl<M: GuestMemory> Cpu<'_, M> {
    /// The one-byte data-move opcodes; `wide` is the operand size of the odd (non-byte) forms.
    pub(super) fn exec_mov(&mut self, op: u8, wide: u8) -> Step {
        match op {
            0x63 if self.long64 => {
                let m = self.modrm()?;
                let v = self.read_rm(m.rm, 4)?;
                self.set_reg(m.reg, self.opsize, sext(v, 4));
            }
            0x86 | 0x87 => {
                let m = self.modrm()?;
                self.check_lock(&m, true)?;
                let a = self.read_rm(m.rm, wide)?;
                let b = self.reg(m.reg, wide);
                self.write_rm(m.rm, wide, b)?;
                self.set_reg(m.reg, wide, a);
            }
            0x88 | 0x89 => {
                let m = self.modrm()?;
                let v = self.reg(m.reg, wide);
                self.write_rm(m.rm, wide, v)?;
            }
            0x8a | 0x8b => {
                let m = self.modrm()?;
                let v = self.read_rm(m.rm, wide)?;
                self.set_reg(m.reg, wide, v);
            }
            0x8c => {
                let m = self.modrm()?;
                let Some(s) = seg_from(m.sub) else {
                    return Err(Stop::Exc(VEC_UD));
                };
                let sel = u64::from(self.seg(s).selector);
                match m.rm {
                    Rm::Reg(r) => self.set_reg(r, self.opsize, sel),
                    rm => self.write_rm(rm, 2, sel)?,
                }
            }
            0x8d => {
                let m = self.modrm()?;
                let Rm::Mem(mr) = m.rm else {
                    return Err(Stop::Exc(VEC_UD));
                };
                let off = self.addr(mr);
                self.set_reg(m.reg, self.opsize, off);
            }
            0x8e => {
                let m = self.modrm()?;
                let s = match seg_from(m.sub) {
                    Some(Seg::Cs) | None => return Err(Stop::Exc(VEC_UD)),
                    Some(s) => s,
                };
                let sel = self.read_rm(m.rm, 2)?;
                self.load_segment(s, sel as u16)?;
            }
            0x90 if self.rex & 1 == 0 => {}
            0x90..=0x97 => {
                let r = (op & 7) | ((self.rex & 1) << 3);
                let size = self.opsize;
                let a = self.reg(0, size);
                let b = self.reg(r, size);
                self.set_reg(0, size, b);
                self.set_reg(r, size, a);
            }
            0x98 => {
                let size = self.opsize;
                let half = size / 2;
                let v = sext(self.reg(0, half), half);
                self.set_reg(0, size, v);
            }
            0x99 => {
                let size = self.opsize;
                let v = if self.reg(0, size) & sign_bit(size) != 0 {
                    u64::MAX
                } else {
                    0
                };
                self.set_reg(2, size, v);
            }
            0xa0..=0xa3 => {
                let off = self.imm(self.addrsize)?;
                let seg = self.seg_ovr.unwrap_or(Seg::Ds);
                if op < 0xa2 {
                    let v = self.read_mem(seg, off, wide)?;
                    self.set_reg(0, wide, v);
                } else {
                    let v = self.reg(0, wide);
                    self.write_mem(seg, off, wide, v)?;
                }
            }
            0xb0..=0xb7 => {
                let v = self.imm(1)?;
                self.set_reg((op & 7) | ((self.rex & 1) << 3), 1, v);
            }
            0xb8..=0xbf => {
                let size = self.opsize;
                let v = self.imm(size)?;
                self.set_reg((op & 7) | ((self.rex & 1) << 3), size, v);
            }
            0xc6 | 0xc7 => {
                let m = self.modrm()?;
                if m.sub != 0 {
                    return Err(Stop::Exc(VEC_UD));
                }
                let v = self.imm_op(wide)?;
                self.write_rm(m.rm, wide, v)?;
            }
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(None)
    }

    /// The two-byte data-move opcodes: hint NOPs, CMOVcc, MOVZX and MOVSX.
    pub(super) fn exec_mov_0f(&mut self, op: u8) -> Step {
        match op {
            // Hint NOPs (NOP r/m, prefetch hints, ENDBR).
            0x18..=0x1f => {
                self.modrm()?;
            }
            0x40..=0x4f => {
                let size = self.opsize;
                let m = self.modrm()?;
                let v = self.read_rm(m.rm, size)?;
                if self.cond(op) {
                    self.set_reg(m.reg, size, v);
                } else if size == 4 {
                    // A 32-bit CMOV zero-extends its destination even when not taken.
                    let keep = self.reg(m.reg, 4);
                    self.set_reg(m.reg, 4, keep);
                }
            }
            0xb6 | 0xb7 | 0xbe | 0xbf => {
                let src = if op & 1 == 0 { 1 } else { 2 };
                let size = self.opsize;
                let m = self.modrm()?;
                let v = self.read_rm(m.rm, src)?;
                let v = if op >= 0xbe { sext(v, src) } else { v };
                self.set_reg(m.reg, size, v & size_mask(size));
            }
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(None)
    }
}
