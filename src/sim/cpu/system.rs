// SPDX-License-Identifier: GPL-2.0

//! Privileged and system instructions: MOV to and from control registers, LGDT, LIDT, SGDT,
//! SIDT, LMSW, SMSW, INVLPG, CLTS, INVD/WBINVD, RDMSR/WRMSR, CPUID, IN/OUT, HLT, CLI/STI,
//! INT3/INT n and IRET; segment register loads from the GDT, and interrupt delivery through
//! the IVT or IDT.

use super::{
    alu::size_mask, decode::Rm, Access, Cpu, Exit, GuestMemory, Seg, Segment, Step, Stop, Table,
    AC, ATTR_G, ATTR_L, ATTR_P, ATTR_S, CR0_ET, CR0_PE, CR0_PG, CR0_TS, CR4_LA57, CR4_PAE,
    EFER_LMA, EFER_LME, IF, NT, POPF_MASK, RF, RFLAGS_FIXED, TF, VEC_GP, VEC_NP, VEC_SS, VEC_UD,
};
use core::cmp::min;

impl<M: GuestMemory> Cpu<'_, M> {
    /// The one-byte system opcodes: INT3, INT n, IRET, IN, OUT, HLT, CLI and STI.
    pub(super) fn exec_system(&mut self, op: u8) -> Step {
        match op {
            0xcc => return Err(Stop::Exc(3)),
            0xcf => self.iret()?,
            0xcd => {
                let v = self.imm(1)?;
                return Err(Stop::Exc(v as u8));
            }
            0xe4..=0xe7 | 0xec..=0xef => {
                let size = if op & 1 == 0 {
                    1
                } else if self.opsize == 2 {
                    2
                } else {
                    4
                };
                let port = if op < 0xe8 {
                    self.imm(1)? as u16
                } else {
                    self.reg(2, 2) as u16
                };
                let write = op & 2 != 0;
                let value = if write { self.reg(0, size) as u32 } else { 0 };
                match self.mem.io(port, size, write, value) {
                    Some(v) => {
                        if !write {
                            self.set_reg(0, size, u64::from(v));
                        }
                    }
                    None => {
                        return Err(Stop::Exit(Exit::Io {
                            port,
                            size,
                            write,
                            value,
                            instruction_length: self.pos as u8,
                        }))
                    }
                }
            }
            0xf4 => return Ok(Some(Exit::Halt)),
            0xfa => self.regs.rflags &= !IF,
            0xfb => {
                if self.regs.rflags & IF == 0 {
                    self.regs.interrupt_shadow = true;
                }
                self.regs.rflags |= IF;
            }
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(None)
    }

    /// The two-byte system opcodes: group 7, CLTS, INVD/WBINVD, MOV CR, RDMSR/WRMSR and CPUID.
    pub(super) fn exec_system_0f(&mut self, op: u8) -> Step {
        match op {
            0x01 => self.group7()?,
            0x06 => self.regs.cr0 &= !CR0_TS,
            // INVD and WBINVD: there are no caches to flush.
            0x08 | 0x09 => {}
            0x20 | 0x22 => self.mov_cr(op == 0x22)?,
            0x30 | 0x32 => {
                let write = op == 0x30;
                let value = if write {
                    (self.reg(2, 4) << 32) | self.reg(0, 4)
                } else {
                    0
                };
                return Err(Stop::Exit(Exit::Msr {
                    write,
                    msr: self.reg(1, 4) as u32,
                    value,
                    instruction_length: self.pos as u8,
                }));
            }
            0xa2 => return Err(Stop::Exit(Exit::Cpuid)),
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(None)
    }

    // Segment and control register loads.

    /// Loads segment register `seg` with selector `sel`.
    pub(super) fn load_segment(&mut self, seg: Seg, sel: u16) -> Result<(), Stop> {
        let new = if self.regs.cr0 & CR0_PE == 0 {
            let mut s = *self.seg(seg);
            s.selector = sel;
            s.base = u64::from(sel) << 4;
            s
        } else if sel & !3 == 0 {
            if seg == Seg::Cs || (seg == Seg::Ss && !self.long64) {
                return Err(Stop::Exc(VEC_GP));
            }
            // A null selector makes the segment unusable.
            Segment {
                selector: sel,
                base: 0,
                limit: 0,
                attributes: 0,
            }
        } else {
            self.descriptor(seg, sel)?
        };
        *self.seg_mut(seg) = new;
        Ok(())
    }

    /// Reads the GDT descriptor of `sel` for segment register `seg`.
    fn descriptor(&mut self, seg: Seg, sel: u16) -> Result<Segment, Stop> {
        if sel & 4 != 0 {
            // LDT selectors are not modelled.
            return Err(Stop::Exc(VEC_GP));
        }
        let index = u64::from(sel & !7);
        if index + 7 > u64::from(self.regs.gdtr.limit) {
            return Err(Stop::Exc(VEC_GP));
        }
        let lin = self.wrap_lin(self.regs.gdtr.base.wrapping_add(index));
        let mut b = [0u8; 8];
        self.read_lin(lin, &mut b, Access::Read)?;
        let d = u64::from_le_bytes(b);
        let attributes = ((d >> 40) & 0xf0ff) as u16;
        let code = attributes & 8 != 0;
        let writable_or_readable = attributes & 2 != 0;
        let ok = attributes & ATTR_S != 0
            && match seg {
                Seg::Cs => code,
                Seg::Ss => !code && writable_or_readable,
                _ => !code || writable_or_readable,
            };
        if !ok {
            return Err(Stop::Exc(VEC_GP));
        }
        if attributes & ATTR_P == 0 {
            return Err(Stop::Exc(if seg == Seg::Ss { VEC_SS } else { VEC_NP }));
        }
        let mut limit = ((d & 0xffff) | ((d >> 32) & 0xf_0000)) as u32;
        if attributes & ATTR_G != 0 {
            limit = (limit << 12) | 0xfff;
        }
        let base = ((d >> 16) & 0xff_ffff) | ((d >> 32) & 0xff00_0000);
        Ok(Segment {
            selector: sel,
            base,
            limit,
            attributes,
        })
    }

    /// The CPL: the RPL of CS in protected mode, 0 in real mode.
    fn cpl(&self) -> u16 {
        if self.regs.cr0 & CR0_PE == 0 {
            0
        } else {
            self.regs.cs.selector & 3
        }
    }

    /// Reads the `size`-byte entry `index` of the IDT (or IVT), checking the table limit.
    fn idt_entry(&mut self, index: u64, size: u64) -> Result<[u8; 16], Stop> {
        let off = index * size;
        if off + size - 1 > u64::from(self.regs.idtr.limit) {
            return Err(Stop::Exc(VEC_GP));
        }
        let lin = self.wrap_lin(self.regs.idtr.base.wrapping_add(off));
        let mut b = [0u8; 16];
        let n = min(size, 16) as usize;
        self.read_lin(lin, &mut b[..n], Access::Read)?;
        Ok(b)
    }

    /// Loads CS for an interrupt gate's selector: a code segment at the current privilege.
    fn gate_cs(&mut self, sel: u16) -> Result<Segment, Stop> {
        if sel & !3 == 0 {
            return Err(Stop::Exc(VEC_GP));
        }
        let cs = self.descriptor(Seg::Cs, sel)?;
        let dpl = (cs.attributes >> 5) & 3;
        if dpl != self.cpl() {
            // A privilege change needs a TSS stack switch, which is not modelled.
            return Err(Stop::Exc(VEC_GP));
        }
        Ok(Segment {
            selector: (sel & !3) | dpl,
            ..cs
        })
    }

    /// Delivers `vector`; see [`deliver_interrupt`](super::deliver_interrupt).
    pub(super) fn deliver(&mut self, vector: u8) -> Result<(), Stop> {
        let v = u64::from(vector);
        let flags = self.regs.rflags;
        if self.regs.cr0 & CR0_PE == 0 {
            let e = self.idt_entry(v, 4)?;
            let ip = u64::from(u16::from_le_bytes([e[0], e[1]]));
            let sel = u16::from_le_bytes([e[2], e[3]]);
            self.push(2, flags & 0xffff)?;
            self.push(2, u64::from(self.regs.cs.selector))?;
            self.push(2, self.regs.rip & 0xffff)?;
            self.regs.rflags &= !(IF | TF | AC | RF);
            self.load_segment(Seg::Cs, sel)?;
            self.regs.rip = ip;
            return Ok(());
        }
        let long = self.regs.efer & EFER_LMA != 0;
        if long && !self.long64 {
            // Compatibility-mode code would need a stack-size switch: not modelled.
            return Err(Stop::Exc(VEC_GP));
        }
        let e = self.idt_entry(v, if long { 16 } else { 8 })?;
        let lo = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
        let sel = ((lo >> 16) & 0xffff) as u16;
        let kind = (lo >> 40) & 0xf;
        let present = lo & (1 << 47) != 0;
        // 0xE: 32-bit (64-bit in long mode) interrupt gate, 0xF: trap gate.
        if kind != 0xe && kind != 0xf {
            return Err(Stop::Exc(VEC_GP));
        }
        if !present {
            return Err(Stop::Exc(VEC_NP));
        }
        let mut target = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000);
        if long {
            let hi = u64::from_le_bytes([e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15]]);
            target |= (hi & 0xffff_ffff) << 32;
        }
        let cs = self.gate_cs(sel)?;
        if long {
            if cs.attributes & ATTR_L == 0 {
                return Err(Stop::Exc(VEC_GP));
            }
            let (old_ss, old_rsp) = (u64::from(self.regs.ss.selector), self.sp());
            // The stack is aligned to 16 bytes before the frame is pushed.
            self.set_sp(old_rsp & !0xf);
            for item in [
                old_ss,
                old_rsp,
                flags,
                u64::from(self.regs.cs.selector),
                self.regs.rip,
            ] {
                if let Err(e) = self.push(8, item) {
                    self.set_sp(old_rsp);
                    return Err(e);
                }
            }
        } else {
            self.push(4, flags & 0xffff_ffff)?;
            self.push(4, u64::from(self.regs.cs.selector))?;
            self.push(4, self.regs.rip & 0xffff_ffff)?;
        }
        if kind == 0xe {
            self.regs.rflags &= !IF;
        }
        self.regs.rflags &= !(TF | NT | RF);
        self.regs.cs = cs;
        self.regs.rip = target;
        Ok(())
    }

    /// IRET at the current privilege level (no task return, no privilege change).
    fn iret(&mut self) -> Result<(), Stop> {
        if self.regs.cr0 & CR0_PE != 0 && self.regs.rflags & NT != 0 {
            // A nested-task return is not modelled.
            return Err(Stop::Exc(VEC_GP));
        }
        let size = self.opsize;
        let step = u64::from(size);
        let ip = self.read_stack(0, size)?;
        let sel = self.read_stack(step, size)? as u16;
        let fl = self.read_stack(2 * step, size)?;
        let pe = self.regs.cr0 & CR0_PE != 0;
        if pe && sel & 3 != self.cpl() {
            return Err(Stop::Exc(VEC_GP));
        }
        let stack = if self.long64 {
            Some((
                self.read_stack(3 * step, size)?,
                self.read_stack(4 * step, size)? as u16,
            ))
        } else {
            None
        };
        // The flags IRET may change: as POPF at CPL 0, within the operand size.
        let mask = POPF_MASK & size_mask(size);
        let new_flags = (self.regs.rflags & !mask) | (fl & mask) | RFLAGS_FIXED;
        let sp = self.sp_plus(3 * step);
        self.far_jump(sel, ip & size_mask(size))?;
        if let Some((rsp, ss)) = stack {
            self.load_segment(Seg::Ss, ss)?;
            self.set_reg(4, 8, rsp);
        } else {
            self.set_sp(sp);
        }
        self.regs.rflags = new_flags;
        Ok(())
    }

    fn write_cr0(&mut self, v: u64) -> Result<(), Stop> {
        if v >> 32 != 0 {
            return Err(Stop::Exc(VEC_GP));
        }
        let v = v | CR0_ET;
        let old = self.regs.cr0;
        let mut efer = self.regs.efer;
        if v & CR0_PG != 0 {
            if v & CR0_PE == 0 {
                return Err(Stop::Exc(VEC_GP));
            }
            if old & CR0_PG == 0 {
                // Legacy 32-bit and PAE paging are not modelled.
                if efer & EFER_LME == 0 || self.regs.cr4 & CR4_PAE == 0 {
                    return Err(Stop::Exc(VEC_GP));
                }
                efer |= EFER_LMA;
            }
        } else {
            if self.long64 {
                return Err(Stop::Exc(VEC_GP));
            }
            efer &= !EFER_LMA;
        }
        self.regs.cr0 = v;
        self.regs.efer = efer;
        self.tlb.flush();
        Ok(())
    }

    fn write_cr4(&mut self, v: u64) -> Result<(), Stop> {
        if v & CR4_LA57 != 0 || (self.regs.efer & EFER_LMA != 0 && v & CR4_PAE == 0) {
            return Err(Stop::Exc(VEC_GP));
        }
        self.regs.cr4 = v;
        self.tlb.flush();
        Ok(())
    }

    /// Group 7 (0F 01): SGDT, SIDT, LGDT, LIDT, SMSW, LMSW, INVLPG.
    fn group7(&mut self) -> Result<(), Stop> {
        let m = self.modrm()?;
        let mr = match (m.sub, m.rm) {
            (4, Rm::Reg(r)) => {
                let v = self.regs.cr0;
                self.set_reg(r, self.opsize, v);
                return Ok(());
            }
            (6, Rm::Reg(r)) => {
                let v = self.reg(r, 2);
                return self.lmsw(v);
            }
            (_, Rm::Reg(_)) => return Err(Stop::Exc(VEC_UD)),
            (_, Rm::Mem(mr)) => mr,
        };
        let off = self.addr(mr);
        let table_len = if self.long64 { 10 } else { 6 };
        match m.sub {
            0 | 1 => {
                let t = if m.sub == 0 {
                    self.regs.gdtr
                } else {
                    self.regs.idtr
                };
                let mut b = [0u8; 10];
                b[..2].copy_from_slice(&t.limit.to_le_bytes());
                b[2..].copy_from_slice(&t.base.to_le_bytes());
                let lin = self.linear(mr.seg, off)?;
                self.write_lin(lin, &b[..table_len])?;
            }
            2 | 3 => {
                let lin = self.linear(mr.seg, off)?;
                let mut b = [0u8; 10];
                self.read_lin(lin, &mut b[..table_len], Access::Read)?;
                let limit = u16::from_le_bytes([b[0], b[1]]);
                let mut base = [0u8; 8];
                base.copy_from_slice(&b[2..]);
                let mut base = u64::from_le_bytes(base);
                if !self.long64 {
                    base &= if self.opsize == 2 {
                        0x00ff_ffff
                    } else {
                        0xffff_ffff
                    };
                }
                let t = Table { base, limit };
                if m.sub == 2 {
                    self.regs.gdtr = t;
                } else {
                    self.regs.idtr = t;
                }
            }
            4 => {
                let v = self.regs.cr0;
                self.write_mem(mr.seg, off, 2, v)?;
            }
            6 => {
                let v = self.read_mem(mr.seg, off, 2)?;
                self.lmsw(v)?;
            }
            7 => self.tlb.flush(),
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(())
    }

    /// LMSW: loads CR0 bits 0-3; PE can be set but not cleared.
    fn lmsw(&mut self, v: u64) -> Result<(), Stop> {
        let cr0 = self.regs.cr0;
        self.write_cr0((cr0 & !0xe) | (v & 0xf))
    }

    /// MOV to or from a control register (0F 20, 0F 22).
    fn mov_cr(&mut self, to_cr: bool) -> Result<(), Stop> {
        let b = self.byte()?;
        let cr = ((b >> 3) & 7) | ((self.rex & 4) << 1);
        let r = (b & 7) | ((self.rex & 1) << 3);
        let size = if self.long64 { 8 } else { 4 };
        if to_cr {
            let v = self.reg(r, size);
            match cr {
                0 => self.write_cr0(v)?,
                2 => self.regs.cr2 = v,
                3 => {
                    self.regs.cr3 = v;
                    self.tlb.flush();
                }
                4 => self.write_cr4(v)?,
                // The task-priority register is not modelled.
                8 => {}
                _ => return Err(Stop::Exc(VEC_UD)),
            }
        } else {
            let v = match cr {
                0 => self.regs.cr0,
                2 => self.regs.cr2,
                3 => self.regs.cr3,
                4 => self.regs.cr4,
                8 => 0,
                _ => return Err(Stop::Exc(VEC_UD)),
            };
            self.set_reg(r, size, v);
        }
        Ok(())
    }
}
