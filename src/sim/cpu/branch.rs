// SPDX-License-Identifier: GPL-2.0

//! Control transfer: Jcc, JMP, CALL, RET and RETF (near and far), LOOP/LOOPE/LOOPNE/JCXZ,
//! and groups 4 and 5 (INC, DEC, CALL, JMP and PUSH of an r/m operand).

use super::{
    alu::{incdec, sext, size_mask},
    decode::Rm,
    Cpu, GuestMemory, Seg, Step, Stop, VEC_UD, ZF,
};

impl<M: GuestMemory> Cpu<'_, M> {
    /// The one-byte control-transfer opcodes (and groups 4 and 5); `wide` is the operand size
    /// of the odd (non-byte) forms.
    pub(super) fn exec_branch(&mut self, op: u8, wide: u8) -> Step {
        match op {
            0x70..=0x7f => {
                let rel = self.imm8s()?;
                if self.cond(op) {
                    self.jump = Some(self.branch_target(rel));
                }
            }
            0xc2 | 0xc3 => {
                let extra = if op == 0xc2 { self.imm(2)? } else { 0 };
                let size = self.near_size();
                let target = self.read_stack(0, size)?;
                self.set_sp(self.sp_plus(u64::from(size) + extra));
                self.jump = Some(target);
            }
            0xca | 0xcb => {
                let extra = if op == 0xca { self.imm(2)? } else { 0 };
                let size = self.opsize;
                let off = self.read_stack(0, size)?;
                let sel = self.read_stack(u64::from(size), size)?;
                let sp = self.sp_plus(2 * u64::from(size) + extra);
                self.far_jump(sel as u16, off)?;
                self.set_sp(sp);
            }
            0xe0..=0xe3 => {
                let rel = self.imm8s()?;
                let asz = self.addrsize;
                let take = if op == 0xe3 {
                    self.reg(1, asz) == 0
                } else {
                    let c = self.reg(1, asz).wrapping_sub(1) & size_mask(asz);
                    self.set_reg(1, asz, c);
                    let z = self.regs.rflags & ZF != 0;
                    c != 0
                        && match op {
                            0xe0 => !z,
                            0xe1 => z,
                            _ => true,
                        }
                };
                if take {
                    self.jump = Some(self.branch_target(rel));
                }
            }
            0xe8 => {
                let rel = sext(self.imm(self.near_size().min(4))?, self.near_size().min(4));
                let size = self.near_size();
                let ret = self.next_ip();
                let target = self.branch_target(rel);
                self.push(size, ret)?;
                self.jump = Some(target);
            }
            0xe9 => {
                let n = self.near_size().min(4);
                let rel = sext(self.imm(n)?, n);
                self.jump = Some(self.branch_target(rel));
            }
            0xea if !self.long64 => {
                let off = self.imm(self.opsize)?;
                let sel = self.imm(2)?;
                self.far_jump(sel as u16, off)?;
            }
            0xeb => {
                let rel = self.imm8s()?;
                self.jump = Some(self.branch_target(rel));
            }
            0xfe | 0xff => self.group45(op, wide)?,
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(None)
    }

    /// The two-byte control-transfer opcodes: Jcc with a 16- or 32-bit displacement.
    pub(super) fn exec_branch_0f(&mut self, op: u8) -> Step {
        match op {
            0x80..=0x8f => {
                let n = self.near_size().min(4);
                let rel = sext(self.imm(n)?, n);
                if self.cond(op) {
                    self.jump = Some(self.branch_target(rel));
                }
            }
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(None)
    }

    pub(super) fn far_jump(&mut self, sel: u16, off: u64) -> Result<(), Stop> {
        self.load_segment(Seg::Cs, sel)?;
        self.jump = Some(off);
        Ok(())
    }

    /// Groups 4 and 5: INC, DEC, CALL, JMP (near and far) and PUSH.
    fn group45(&mut self, op: u8, size: u8) -> Result<(), Stop> {
        let m = self.modrm()?;
        self.check_lock(&m, m.sub <= 1)?;
        if op == 0xfe && m.sub > 1 {
            return Err(Stop::Exc(VEC_UD));
        }
        match m.sub {
            0 | 1 => {
                let a = self.read_rm(m.rm, size)?;
                let (res, f) = incdec(a, size, m.sub == 1, self.regs.rflags);
                self.write_rm(m.rm, size, res)?;
                self.set_arith(f);
            }
            2 => {
                let size = self.near_size();
                let target = self.read_rm(m.rm, size)?;
                let ret = self.next_ip();
                self.push(size, ret)?;
                self.jump = Some(target);
            }
            4 => {
                let target = self.read_rm(m.rm, self.near_size())?;
                self.jump = Some(target);
            }
            5 => {
                let Rm::Mem(mr) = m.rm else {
                    return Err(Stop::Exc(VEC_UD));
                };
                let off = self.addr(mr);
                let size = self.opsize;
                let target = self.read_mem(mr.seg, off, size)?;
                let sel_off = off.wrapping_add(u64::from(size)) & size_mask(self.addrsize);
                let sel = self.read_mem(mr.seg, sel_off, 2)?;
                self.far_jump(sel as u16, target)?;
            }
            6 => {
                let size = self.stack_opsize();
                let v = self.read_rm(m.rm, size)?;
                self.push(size, v)?;
            }
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(())
    }
}
