// SPDX-License-Identifier: GPL-2.0

//! The stack: push and pop helpers, and PUSH and POP of registers, segment registers,
//! immediates and r/m operands, PUSHF, POPF and LEAVE.

use super::{
    alu::size_mask, seg_from, Cpu, GuestMemory, Seg, Step, Stop, POPF_MASK, PUSHF_MASK,
    RFLAGS_FIXED, VEC_UD,
};

impl<M: GuestMemory> Cpu<'_, M> {
    // Stack access.

    pub(super) fn sp(&self) -> u64 {
        self.reg(4, self.stack)
    }

    pub(super) fn set_sp(&mut self, v: u64) {
        self.set_reg(4, self.stack, v);
    }

    pub(super) fn push(&mut self, size: u8, v: u64) -> Result<(), Stop> {
        let sp = self.sp().wrapping_sub(u64::from(size)) & size_mask(self.stack);
        self.write_mem(Seg::Ss, sp, size, v)?;
        self.set_sp(sp);
        Ok(())
    }

    /// Reads the stack slot `delta` bytes above the stack pointer.
    pub(super) fn read_stack(&mut self, delta: u64, size: u8) -> Result<u64, Stop> {
        let off = self.sp().wrapping_add(delta) & size_mask(self.stack);
        self.read_mem(Seg::Ss, off, size)
    }

    /// The stack pointer after releasing `bytes` bytes.
    pub(super) fn sp_plus(&self, bytes: u64) -> u64 {
        self.sp().wrapping_add(bytes) & size_mask(self.stack)
    }

    /// The one-byte stack opcodes.
    pub(super) fn exec_stack(&mut self, op: u8) -> Step {
        match op {
            0x06 | 0x0e | 0x16 | 0x1e if !self.long64 => {
                let Some(s) = seg_from(op >> 3) else {
                    return Err(Stop::Exc(VEC_UD));
                };
                let sel = self.seg(s).selector;
                self.push(self.opsize, u64::from(sel))?;
            }
            0x07 | 0x17 | 0x1f if !self.long64 => {
                let Some(s) = seg_from(op >> 3) else {
                    return Err(Stop::Exc(VEC_UD));
                };
                self.pop_seg(s)?;
            }
            0x50..=0x57 => {
                let size = self.stack_opsize();
                let v = self.reg((op & 7) | ((self.rex & 1) << 3), size);
                self.push(size, v)?;
            }
            0x58..=0x5f => {
                let size = self.stack_opsize();
                let v = self.read_stack(0, size)?;
                self.set_sp(self.sp_plus(u64::from(size)));
                self.set_reg((op & 7) | ((self.rex & 1) << 3), size, v);
            }
            0x68 | 0x6a => {
                let size = self.stack_opsize();
                let v = if op == 0x6a {
                    self.imm8s()?
                } else {
                    self.imm_op(size)?
                };
                self.push(size, v & size_mask(size))?;
            }
            0x8f => {
                let m = self.modrm()?;
                if m.sub != 0 {
                    return Err(Stop::Exc(VEC_UD));
                }
                let size = self.stack_opsize();
                let v = self.read_stack(0, size)?;
                // The destination address is computed with the incremented stack pointer.
                let old = self.regs.gpr[4];
                self.set_sp(self.sp_plus(u64::from(size)));
                if let Err(e) = self.write_rm(m.rm, size, v) {
                    self.regs.gpr[4] = old;
                    return Err(e);
                }
            }
            0x9c => {
                let size = self.stack_opsize();
                self.push(size, self.regs.rflags & PUSHF_MASK)?;
            }
            0x9d => {
                let size = self.stack_opsize();
                let v = self.read_stack(0, size)?;
                let mask = POPF_MASK & size_mask(size);
                self.set_sp(self.sp_plus(u64::from(size)));
                self.regs.rflags = (self.regs.rflags & !mask) | (v & mask) | RFLAGS_FIXED;
            }
            0xc9 => {
                let size = self.stack_opsize();
                let bp = self.reg(5, self.stack);
                let v = self.read_mem(Seg::Ss, bp, size)?;
                self.set_sp(bp.wrapping_add(u64::from(size)) & size_mask(self.stack));
                self.set_reg(5, size, v);
            }
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(None)
    }

    /// The two-byte stack opcodes: PUSH and POP of FS and GS.
    pub(super) fn exec_stack_0f(&mut self, op: u8) -> Step {
        match op {
            0xa0 | 0xa8 => {
                let s = if op == 0xa0 { Seg::Fs } else { Seg::Gs };
                let sel = u64::from(self.seg(s).selector);
                self.push(self.stack_opsize(), sel)?;
            }
            0xa1 | 0xa9 => self.pop_seg(if op == 0xa1 { Seg::Fs } else { Seg::Gs })?,
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(None)
    }

    fn pop_seg(&mut self, s: Seg) -> Result<(), Stop> {
        let size = self.stack_opsize();
        let v = self.read_stack(0, size)?;
        self.load_segment(s, v as u16)?;
        self.set_sp(self.sp_plus(u64::from(size)));
        Ok(())
    }
}
