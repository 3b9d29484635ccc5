// SPDX-License-Identifier: GPL-2.0

//! Instruction fetch and decode: prefixes, ModRM and SIB, immediates, the operand and
//! address sizes, and reading and writing register and r/m operands.

use super::{
    alu::{sext, size_mask},
    seg_from, Access, Cpu, GuestMemory, Seg, Segment, Stop, MAX_INSN, PAGE_OFFSET, PAGE_SIZE,
    VEC_GP, VEC_UD,
};
use core::cmp::min;

/// A memory operand: segment and offset, or a RIP-relative displacement.
#[derive(Clone, Copy)]
pub(super) struct MemRef {
    pub(super) seg: Seg,
    off: u64,
    rip_rel: bool,
}

/// The r/m operand of a ModRM byte.
#[derive(Clone, Copy)]
pub(super) enum Rm {
    Reg(u8),
    Mem(MemRef),
}

#[derive(Clone, Copy)]
pub(super) struct ModRm {
    /// The reg field, extended by REX.R.
    pub(super) reg: u8,
    /// The raw 3-bit reg field (the opcode extension of group instructions).
    pub(super) sub: u8,
    pub(super) rm: Rm,
}

impl ModRm {
    fn is_mem(&self) -> bool {
        matches!(self.rm, Rm::Mem(_))
    }
}

impl<M: GuestMemory> Cpu<'_, M> {
    // Instruction fetch and decode.

    /// Fetches more instruction bytes, up to the end of the page or the 15-byte limit.
    pub(super) fn fetch(&mut self) -> Result<(), Stop> {
        let want = MAX_INSN.saturating_sub(self.fetched);
        if want == 0 {
            return Err(Stop::Exc(VEC_GP));
        }
        let off = self.rip.wrapping_add(self.fetched as u64) & size_mask(self.code);
        let lin = self.linear(Seg::Cs, off)?;
        let n = min(want as u64, PAGE_SIZE - (lin & PAGE_OFFSET)) as usize;
        let gpa = match self.translate(lin, Access::Execute) {
            Ok(gpa) => gpa,
            Err(Stop::Mem { fault, gva, .. }) => {
                return Err(Stop::Mem {
                    fault,
                    gva,
                    fetch: true,
                })
            }
            Err(e) => return Err(e),
        };
        let end = self.fetched + n;
        let Some(dst) = self.buf.get_mut(self.fetched..end) else {
            return Err(Stop::Exc(VEC_GP));
        };
        if let Err(fault) = self.mem.read(gpa, dst, Access::Execute) {
            return Err(Stop::Mem {
                fault,
                gva: lin,
                fetch: true,
            });
        }
        self.fetched = end;
        Ok(())
    }

    pub(super) fn byte(&mut self) -> Result<u8, Stop> {
        if self.pos >= self.fetched {
            self.fetch()?;
        }
        let Some(&b) = self.buf.get(self.pos) else {
            return Err(Stop::Exc(VEC_GP));
        };
        self.pos += 1;
        Ok(b)
    }

    /// Reads an `n`-byte little-endian immediate (n <= 8).
    pub(super) fn imm(&mut self, n: u8) -> Result<u64, Stop> {
        let n = usize::from(n).min(8);
        let end = self.pos + n;
        if end <= self.fetched {
            if let Some(src) = self.buf.get(self.pos..end) {
                let mut b = [0u8; 8];
                b[..n].copy_from_slice(src);
                self.pos = end;
                return Ok(u64::from_le_bytes(b));
            }
        }
        let mut v = 0;
        for i in 0..n {
            v |= u64::from(self.byte()?) << (8 * i);
        }
        Ok(v)
    }

    /// Reads the immediate of an operand of `size` bytes (a sign-extended imm32 for 8).
    pub(super) fn imm_op(&mut self, size: u8) -> Result<u64, Stop> {
        match size {
            8 => Ok(sext(self.imm(4)?, 4)),
            _ => self.imm(size),
        }
    }

    /// Reads a sign-extended 8-bit immediate.
    pub(super) fn imm8s(&mut self) -> Result<u64, Stop> {
        Ok(sext(self.imm(1)?, 1))
    }

    /// Decodes the legacy and REX prefixes and returns the opcode byte.
    pub(super) fn prefixes(&mut self) -> Result<u8, Stop> {
        let mut p66 = false;
        let mut p67 = false;
        let op = loop {
            let b = self.byte()?;
            match b {
                0x66 => p66 = true,
                0x67 => p67 = true,
                0xf0 => self.lock = true,
                0xf2 | 0xf3 => self.rep = b,
                0x26 | 0x2e | 0x36 | 0x3e => {
                    // These overrides have no effect in 64-bit mode.
                    if !self.long64 {
                        self.seg_ovr = seg_from((b >> 3) & 3);
                    }
                }
                0x64 => self.seg_ovr = Some(Seg::Fs),
                0x65 => self.seg_ovr = Some(Seg::Gs),
                0x40..=0x4f if self.long64 => {
                    self.rex = b;
                    continue;
                }
                _ => break b,
            }
            // A REX prefix only counts right before the opcode.
            self.rex = 0;
        };
        if self.long64 {
            self.opsize = if self.rex & 8 != 0 {
                8
            } else if p66 {
                2
            } else {
                4
            };
            self.addrsize = if p67 { 4 } else { 8 };
        } else {
            let other = 6 - self.code;
            self.opsize = if p66 { other } else { self.code };
            self.addrsize = if p67 { other } else { self.code };
        }
        Ok(op)
    }

    pub(super) fn modrm(&mut self) -> Result<ModRm, Stop> {
        let b = self.byte()?;
        let md = b >> 6;
        let sub = (b >> 3) & 7;
        let reg = sub | ((self.rex & 4) << 1);
        let low = b & 7;
        if md == 3 {
            let rm = Rm::Reg(low | ((self.rex & 1) << 3));
            return Ok(ModRm { reg, sub, rm });
        }
        let g = &self.regs.gpr;
        let mut seg = Seg::Ds;
        let mut rip_rel = false;
        let off;
        if self.addrsize == 2 {
            let (bx, bp, si, di) = (g[3], g[5], g[6], g[7]);
            let base = match low {
                0 => bx.wrapping_add(si),
                1 => bx.wrapping_add(di),
                2 => {
                    seg = Seg::Ss;
                    bp.wrapping_add(si)
                }
                3 => {
                    seg = Seg::Ss;
                    bp.wrapping_add(di)
                }
                4 => si,
                5 => di,
                6 if md == 0 => 0,
                6 => {
                    seg = Seg::Ss;
                    bp
                }
                _ => bx,
            };
            let disp = match md {
                0 if low == 6 => self.imm(2)?,
                0 => 0,
                1 => self.imm8s()?,
                _ => self.imm(2)?,
            };
            off = base.wrapping_add(disp) & 0xffff;
        } else {
            let mut base: u64 = 0;
            let mut disp32 = md == 2;
            if low == 4 {
                let sib = self.byte()?;
                let g = &self.regs.gpr;
                let index = ((sib >> 3) & 7) | ((self.rex & 2) << 2);
                let b = (sib & 7) | ((self.rex & 1) << 3);
                if index != 4 {
                    base = g[usize::from(index & 15)] << (sib >> 6);
                }
                if b & 7 == 5 && md == 0 {
                    disp32 = true;
                } else {
                    base = base.wrapping_add(g[usize::from(b & 15)]);
                    if b == 4 || b == 5 {
                        seg = Seg::Ss;
                    }
                }
            } else if low == 5 && md == 0 {
                disp32 = true;
                rip_rel = self.long64;
            } else {
                let r = low | ((self.rex & 1) << 3);
                base = self.regs.gpr[usize::from(r & 15)];
                if r == 5 {
                    seg = Seg::Ss;
                }
            }
            let disp = if disp32 {
                sext(self.imm(4)?, 4)
            } else if md == 1 {
                self.imm8s()?
            } else {
                0
            };
            off = if rip_rel {
                disp
            } else {
                base.wrapping_add(disp) & size_mask(self.addrsize)
            };
        }
        let seg = self.seg_ovr.unwrap_or(seg);
        Ok(ModRm {
            reg,
            sub,
            rm: Rm::Mem(MemRef { seg, off, rip_rel }),
        })
    }

    /// The RIP after the bytes decoded so far, masked to the code size.
    pub(super) fn next_ip(&self) -> u64 {
        self.rip.wrapping_add(self.pos as u64) & size_mask(self.code)
    }

    /// The offset of a memory operand; only valid once all immediates are decoded.
    pub(super) fn addr(&self, m: MemRef) -> u64 {
        if m.rip_rel {
            self.rip.wrapping_add(self.pos as u64).wrapping_add(m.off) & size_mask(self.addrsize)
        } else {
            m.off
        }
    }

    /// The target of a relative branch by `rel` from the next instruction.
    pub(super) fn branch_target(&self, rel: u64) -> u64 {
        let mask = if self.long64 {
            u64::MAX
        } else {
            size_mask(self.opsize)
        };
        self.rip.wrapping_add(self.pos as u64).wrapping_add(rel) & mask
    }

    /// The operand size of near branches, CALL and RET.
    pub(super) fn near_size(&self) -> u8 {
        if self.long64 {
            8
        } else {
            self.opsize
        }
    }

    /// The operand size of PUSH and POP.
    pub(super) fn stack_opsize(&self) -> u8 {
        if self.long64 && self.opsize != 2 {
            8
        } else {
            self.opsize
        }
    }

    pub(super) fn check_lock(&self, m: &ModRm, allowed: bool) -> Result<(), Stop> {
        if self.lock && !(allowed && m.is_mem()) {
            Err(Stop::Exc(VEC_UD))
        } else {
            Ok(())
        }
    }

    // Register access.

    pub(super) fn reg(&self, r: u8, size: u8) -> u64 {
        let i = usize::from(r & 15);
        match size {
            1 if self.rex == 0 && (4..8).contains(&i) => (self.regs.gpr[i - 4] >> 8) & 0xff,
            _ => self.regs.gpr[i] & size_mask(size),
        }
    }

    pub(super) fn set_reg(&mut self, r: u8, size: u8, v: u64) {
        let i = usize::from(r & 15);
        let rex = self.rex;
        let g = &mut self.regs.gpr;
        match size {
            1 if rex == 0 && (4..8).contains(&i) => {
                g[i - 4] = (g[i - 4] & !0xff00) | ((v & 0xff) << 8);
            }
            1 => g[i] = (g[i] & !0xff) | (v & 0xff),
            2 => g[i] = (g[i] & !0xffff) | (v & 0xffff),
            4 => g[i] = v & 0xffff_ffff,
            _ => g[i] = v,
        }
    }

    pub(super) fn seg(&self, s: Seg) -> &Segment {
        match s {
            Seg::Es => &self.regs.es,
            Seg::Cs => &self.regs.cs,
            Seg::Ss => &self.regs.ss,
            Seg::Ds => &self.regs.ds,
            Seg::Fs => &self.regs.fs,
            Seg::Gs => &self.regs.gs,
        }
    }

    pub(super) fn seg_mut(&mut self, s: Seg) -> &mut Segment {
        match s {
            Seg::Es => &mut self.regs.es,
            Seg::Cs => &mut self.regs.cs,
            Seg::Ss => &mut self.regs.ss,
            Seg::Ds => &mut self.regs.ds,
            Seg::Fs => &mut self.regs.fs,
            Seg::Gs => &mut self.regs.gs,
        }
    }

    pub(super) fn read_rm(&mut self, rm: Rm, size: u8) -> Result<u64, Stop> {
        match rm {
            Rm::Reg(r) => Ok(self.reg(r, size)),
            Rm::Mem(m) => {
                let off = self.addr(m);
                self.read_mem(m.seg, off, size)
            }
        }
    }

    pub(super) fn write_rm(&mut self, rm: Rm, size: u8, v: u64) -> Result<(), Stop> {
        match rm {
            Rm::Reg(r) => {
                self.set_reg(r, size, v);
                Ok(())
            }
            Rm::Mem(m) => {
                let off = self.addr(m);
                self.write_mem(m.seg, off, size, v)
            }
        }
    }
}
