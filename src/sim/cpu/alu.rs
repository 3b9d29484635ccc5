// SPDX-License-Identifier: GPL-2.0

//! Integer arithmetic and logic: the flag and ALU helpers every group uses, and the ALU
//! instructions (ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, INC/DEC r, TEST, group 3: NOT, NEG,
//! MUL, IMUL, DIV, IDIV, the IMUL forms, shifts and rotates, SETcc and the flag instructions
//! CLC, STC, CMC, CLD, STD, SAHF and LAHF).

use super::{
    decode::Rm, Cpu, GuestMemory, Step, Stop, AF, ARITH_FLAGS, CF, DF, OF, PF, RFLAGS_FIXED, SF,
    VEC_DE, VEC_UD, ZF,
};

// Arithmetic helpers shared by the instructions.

pub(super) const fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

pub(super) const fn sign_bit(size: u8) -> u64 {
    match size {
        1 => 0x80,
        2 => 0x8000,
        4 => 0x8000_0000,
        _ => 1 << 63,
    }
}

/// Sign-extends the low `size` bytes of `v` to 64 bits.
pub(super) const fn sext(v: u64, size: u8) -> u64 {
    match size {
        1 => v as u8 as i8 as i64 as u64,
        2 => v as u16 as i16 as i64 as u64,
        4 => v as u32 as i32 as i64 as u64,
        _ => v,
    }
}

/// Returns ZF, SF and PF for `res` of `size` bytes.
fn szp(res: u64, size: u8) -> u64 {
    let mut f = 0;
    if res & size_mask(size) == 0 {
        f |= ZF;
    }
    if res & sign_bit(size) != 0 {
        f |= SF;
    }
    if (res as u8).count_ones() & 1 == 0 {
        f |= PF;
    }
    f
}

/// Computes ALU operation `op` (ADD, OR, ADC, SBB, AND, SUB, XOR, CMP in encoding order).
///
/// Returns the result and the new arithmetic flags (the other RFLAGS bits are not included).
fn alu(op: u8, a: u64, b: u64, size: u8, flags: u64) -> (u64, u64) {
    let m = size_mask(size);
    let s = sign_bit(size);
    let (a, b) = (a & m, b & m);
    let carry = u64::from(flags & CF != 0);
    match op & 7 {
        0 | 2 => {
            let c = if op == 2 { carry } else { 0 };
            let full = u128::from(a) + u128::from(b) + u128::from(c);
            let res = (full as u64) & m;
            let mut f = szp(res, size);
            if full > u128::from(m) {
                f |= CF;
            }
            if (a ^ res) & (b ^ res) & s != 0 {
                f |= OF;
            }
            if (a ^ b ^ res) & 0x10 != 0 {
                f |= AF;
            }
            (res, f)
        }
        3 | 5 | 7 => {
            let c = if op == 3 { carry } else { 0 };
            let res = a.wrapping_sub(b).wrapping_sub(c) & m;
            let mut f = szp(res, size);
            if u128::from(a) < u128::from(b) + u128::from(c) {
                f |= CF;
            }
            if (a ^ b) & (a ^ res) & s != 0 {
                f |= OF;
            }
            if (a ^ b ^ res) & 0x10 != 0 {
                f |= AF;
            }
            (res, f)
        }
        1 => (a | b, szp(a | b, size)),
        4 => (a & b, szp(a & b, size)),
        _ => (a ^ b, szp(a ^ b, size)),
    }
}

/// Computes INC or DEC; CF is kept from `flags`.
pub(super) fn incdec(a: u64, size: u8, dec: bool, flags: u64) -> (u64, u64) {
    let (res, f) = alu(if dec { 5 } else { 0 }, a, 1, size, 0);
    (res, (f & !CF) | (flags & CF))
}

/// Computes shift or rotate `op` (ROL, ROR, RCL, RCR, SHL, SHR, SAL, SAR) of `a` by `count`.
///
/// Returns the result and the complete new RFLAGS, or `None` if the masked count is zero (the
/// instruction then changes nothing).
fn shift(op: u8, a: u64, count: u8, size: u8, flags: u64) -> Option<(u64, u64)> {
    let bits = u32::from(size) * 8;
    let cnt = u32::from(count) & if size == 8 { 0x3f } else { 0x1f };
    if cnt == 0 {
        return None;
    }
    let m = size_mask(size);
    let s = sign_bit(size);
    let a = a & m;
    let msb = |v: u64| u64::from(v & s != 0);
    match op & 7 {
        0 | 1 => {
            let c = cnt % bits;
            let res = if c == 0 {
                a
            } else if op & 7 == 0 {
                ((a << c) | (a >> (bits - c))) & m
            } else {
                ((a >> c) | (a << (bits - c))) & m
            };
            let (cf, of) = if op & 7 == 0 {
                (res & 1, msb(res) ^ (res & 1))
            } else {
                (msb(res), msb(res) ^ msb(res << 1))
            };
            Some((res, (flags & !(CF | OF)) | cf | (of << 11)))
        }
        2 | 3 => {
            let c = match size {
                1 => cnt % 9,
                2 => cnt % 17,
                _ => cnt,
            };
            let mut v = a;
            let mut cf = flags & CF != 0;
            for _ in 0..c {
                if op & 7 == 2 {
                    let out = v & s != 0;
                    v = ((v << 1) | u64::from(cf)) & m;
                    cf = out;
                } else {
                    let out = v & 1 != 0;
                    v = (v >> 1) | if cf { s } else { 0 };
                    cf = out;
                }
            }
            let of = if op & 7 == 2 {
                msb(v) ^ u64::from(cf)
            } else {
                msb(v) ^ msb(v << 1)
            };
            Some((v, (flags & !(CF | OF)) | u64::from(cf) | (of << 11)))
        }
        4 | 6 => {
            let full = u128::from(a) << cnt;
            let res = (full as u64) & m;
            let cf = ((full >> bits) & 1) as u64;
            let f = szp(res, size) | cf | ((msb(res) ^ cf) << 11);
            Some((res, (flags & !ARITH_FLAGS) | f))
        }
        5 => {
            let res = (a >> cnt) & m;
            let cf = (a >> (cnt - 1)) & 1;
            let f = szp(res, size) | cf | (msb(a) << 11);
            Some((res, (flags & !ARITH_FLAGS) | f))
        }
        _ => {
            let sa = sext(a, size) as i64;
            let res = ((sa >> cnt.min(63)) as u64) & m;
            let cf = ((sa >> (cnt - 1).min(63)) & 1) as u64;
            let f = szp(res, size) | cf;
            Some((res, (flags & !ARITH_FLAGS) | f))
        }
    }
}

impl<M: GuestMemory> Cpu<'_, M> {
    // Flags and condition codes.

    pub(super) fn set_arith(&mut self, f: u64) {
        self.regs.rflags = (self.regs.rflags & !ARITH_FLAGS) | (f & ARITH_FLAGS);
    }

    pub(super) fn cond(&self, cc: u8) -> bool {
        let f = self.regs.rflags;
        let sf_ne_of = (f & SF != 0) != (f & OF != 0);
        let r = match (cc >> 1) & 7 {
            0 => f & OF != 0,
            1 => f & CF != 0,
            2 => f & ZF != 0,
            3 => f & (CF | ZF) != 0,
            4 => f & SF != 0,
            5 => f & PF != 0,
            6 => sf_ne_of,
            _ => f & ZF != 0 || sf_ne_of,
        };
        r != (cc & 1 != 0)
    }

    /// The one-byte ALU opcodes; `wide` is the operand size of the odd (non-byte) forms.
    pub(super) fn exec_alu(&mut self, op: u8, wide: u8) -> Step {
        match op {
            0x00..=0x3f if op & 7 < 6 => self.alu_op(op)?,
            0x40..=0x4f => {
                // INC/DEC r16/r32 (REX prefixes in 64-bit mode never get here).
                let r = op & 7;
                let (res, f) = incdec(
                    self.reg(r, self.opsize),
                    self.opsize,
                    op >= 0x48,
                    self.regs.rflags,
                );
                self.set_reg(r, self.opsize, res);
                self.set_arith(f);
            }
            0x69 | 0x6b => {
                let size = self.opsize;
                let m = self.modrm()?;
                let b = if op == 0x6b {
                    self.imm8s()?
                } else {
                    self.imm_op(size)?
                };
                let a = self.read_rm(m.rm, size)?;
                self.imul2(m.reg, a, b, size);
            }
            0x80..=0x83 => {
                if op == 0x82 && self.long64 {
                    return Err(Stop::Exc(VEC_UD));
                }
                let size = if op & 1 == 0 { 1 } else { self.opsize };
                let m = self.modrm()?;
                self.check_lock(&m, m.sub != 7)?;
                let b = match op {
                    0x81 => self.imm_op(size)?,
                    0x83 => self.imm8s()? & size_mask(size),
                    _ => self.imm(1)?,
                };
                self.alu_rm(m.sub, m.rm, size, b)?;
            }
            0x84 | 0x85 => {
                let m = self.modrm()?;
                let a = self.read_rm(m.rm, wide)?;
                let b = self.reg(m.reg, wide);
                self.set_arith(szp(a & b, wide));
            }
            0x9e => {
                let ah = self.reg(4, 1);
                let mask = SF | ZF | AF | PF | CF;
                self.regs.rflags = (self.regs.rflags & !mask) | (ah & mask) | RFLAGS_FIXED;
            }
            0x9f => {
                let f = (self.regs.rflags & (SF | ZF | AF | PF | CF)) | RFLAGS_FIXED;
                // AH is register 4 without REX; LAHF ignores REX.
                self.regs.gpr[0] = (self.regs.gpr[0] & !0xff00) | (f << 8);
            }
            0xa8 | 0xa9 => {
                let b = self.imm_op(wide)?;
                let a = self.reg(0, wide);
                self.set_arith(szp(a & b, wide));
            }
            0xc0 | 0xc1 | 0xd0..=0xd3 => {
                let m = self.modrm()?;
                let count = match op {
                    0xc0 | 0xc1 => self.imm(1)? as u8,
                    0xd0 | 0xd1 => 1,
                    _ => self.reg(1, 1) as u8,
                };
                let a = self.read_rm(m.rm, wide)?;
                if let Some((res, f)) = shift(m.sub, a, count, wide, self.regs.rflags) {
                    self.write_rm(m.rm, wide, res)?;
                    self.regs.rflags = f;
                }
            }
            0xf5 => self.regs.rflags ^= CF,
            0xf6 | 0xf7 => self.group3(wide)?,
            0xf8 => self.regs.rflags &= !CF,
            0xf9 => self.regs.rflags |= CF,
            0xfc => self.regs.rflags &= !DF,
            0xfd => self.regs.rflags |= DF,
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(None)
    }

    /// The two-byte ALU opcodes: SETcc and IMUL r, r/m.
    pub(super) fn exec_alu_0f(&mut self, op: u8) -> Step {
        match op {
            0x90..=0x9f => {
                let m = self.modrm()?;
                let v = u64::from(self.cond(op));
                self.write_rm(m.rm, 1, v)?;
            }
            0xaf => {
                let size = self.opsize;
                let m = self.modrm()?;
                let b = self.read_rm(m.rm, size)?;
                let a = self.reg(m.reg, size);
                self.imul2(m.reg, a, b, size);
            }
            _ => return Err(Stop::Exc(VEC_UD)),
        }
        Ok(None)
    }

    /// The classic ALU encodings 00-3D.
    fn alu_op(&mut self, op: u8) -> Result<(), Stop> {
        let kind = op >> 3;
        let size = if op & 1 == 0 { 1 } else { self.opsize };
        match op & 7 {
            0 | 1 => {
                let m = self.modrm()?;
                self.check_lock(&m, kind != 7)?;
                let b = self.reg(m.reg, size);
                self.alu_rm(kind, m.rm, size, b)
            }
            2 | 3 => {
                if self.lock {
                    return Err(Stop::Exc(VEC_UD));
                }
                let m = self.modrm()?;
                let a = self.reg(m.reg, size);
                let b = self.read_rm(m.rm, size)?;
                let (res, f) = alu(kind, a, b, size, self.regs.rflags);
                if kind != 7 {
                    self.set_reg(m.reg, size, res);
                }
                self.set_arith(f);
                Ok(())
            }
            _ => {
                let b = self.imm_op(size)?;
                let a = self.reg(0, size);
                let (res, f) = alu(kind, a, b, size, self.regs.rflags);
                if kind != 7 {
                    self.set_reg(0, size, res);
                }
                self.set_arith(f);
                Ok(())
            }
        }
    }

    /// `r/m = r/m op b`, with flags; CMP (7) only sets flags.
    fn alu_rm(&mut self, kind: u8, rm: Rm, size: u8, b: u64) -> Result<(), Stop> {
        let a = self.read_rm(rm, size)?;
        let (res, f) = alu(kind, a, b, size, self.regs.rflags);
        if kind != 7 {
            self.write_rm(rm, size, res)?;
        }
        self.set_arith(f);
        Ok(())
    }

    /// `reg = a * b` truncated to `size`, for the 2- and 3-operand IMUL forms.
    fn imul2(&mut self, reg: u8, a: u64, b: u64, size: u8) {
        let full = i128::from(sext(a, size) as i64) * i128::from(sext(b, size) as i64);
        let res = (full as u64) & size_mask(size);
        let overflow = full != i128::from(sext(res, size) as i64);
        self.set_reg(reg, size, res);
        self.set_mul_flags(overflow);
    }

    fn set_mul_flags(&mut self, overflow: bool) {
        self.regs.rflags &= !(CF | OF);
        if overflow {
            self.regs.rflags |= CF | OF;
        }
    }

    /// Group 3: TEST, NOT, NEG, MUL, IMUL, DIV, IDIV.
    fn group3(&mut self, size: u8) -> Result<(), Stop> {
        let m = self.modrm()?;
        self.check_lock(&m, m.sub == 2 || m.sub == 3)?;
        let mask = size_mask(size);
        let bits = u32::from(size) * 8;
        match m.sub {
            0 | 1 => {
                let b = self.imm_op(size)?;
                let a = self.read_rm(m.rm, size)?;
                self.set_arith(szp(a & b, size));
            }
            2 => {
                let a = self.read_rm(m.rm, size)?;
                self.write_rm(m.rm, size, !a & mask)?;
            }
            3 => {
                let a = self.read_rm(m.rm, size)?;
                let (res, f) = alu(5, 0, a, size, 0);
                self.write_rm(m.rm, size, res)?;
                self.set_arith(f);
            }
            4 | 5 => {
                let b = self.read_rm(m.rm, size)?;
                let a = self.reg(0, size);
                let (lo, hi, overflow) = if m.sub == 4 {
                    let full = u128::from(a) * u128::from(b);
                    let hi = ((full >> bits) as u64) & mask;
                    ((full as u64) & mask, hi, hi != 0)
                } else {
                    let full = i128::from(sext(a, size) as i64) * i128::from(sext(b, size) as i64);
                    let lo = (full as u64) & mask;
                    let hi = ((full >> bits) as u64) & mask;
                    (lo, hi, full != i128::from(sext(lo, size) as i64))
                };
                if size == 1 {
                    self.set_reg(0, 2, lo | (hi << 8));
                } else {
                    self.set_reg(0, size, lo);
                    self.set_reg(2, size, hi);
                }
                self.set_mul_flags(overflow);
            }
            _ => {
                let b = self.read_rm(m.rm, size)?;
                if b == 0 {
                    return Err(Stop::Exc(VEC_DE));
                }
                let (lo, hi) = if size == 1 {
                    let ax = self.reg(0, 2);
                    (ax & 0xff, ax >> 8)
                } else {
                    (self.reg(0, size), self.reg(2, size))
                };
                let raw = (u128::from(hi) << bits) | u128::from(lo);
                let (q, r) = if m.sub == 6 {
                    let (q, r) = udiv128(raw, u128::from(b));
                    if q > u128::from(mask) {
                        return Err(Stop::Exc(VEC_DE));
                    }
                    (q as u64, r as u64)
                } else {
                    let sh = 128 - 2 * bits;
                    let dividend = ((raw << sh) as i128) >> sh;
                    let d = i128::from(sext(b, size) as i64);
                    let (qm, rm) = udiv128(dividend.unsigned_abs(), d.unsigned_abs());
                    let negative = (dividend < 0) != (d < 0);
                    // The quotient must fit the signed destination.
                    let limit = u128::from(sign_bit(size));
                    if (negative && qm > limit) || (!negative && qm >= limit) {
                        return Err(Stop::Exc(VEC_DE));
                    }
                    // NO-OVERFLOW: `qm <= 2^63` and `rm < |d| <= 2^63` here.
                    let q = if negative {
                        (qm as i128).wrapping_neg()
                    } else {
                        qm as i128
                    };
                    let r = if dividend < 0 {
                        (rm as i128).wrapping_neg()
                    } else {
                        rm as i128
                    };
                    (q as u64 & mask, r as u64 & mask)
                };
                if size == 1 {
                    self.set_reg(0, 2, (q & 0xff) | ((r & 0xff) << 8));
                } else {
                    self.set_reg(0, size, q);
                    self.set_reg(2, size, r);
                }
            }
        }
        Ok(())
    }
}

/// Unsigned 128-bit division by shift and subtract: the kernel links no
/// 128-bit division routines (`__udivti3`). `d` must be non-zero and below
/// 2^127 (divisors here are at most 64 bits wide).
fn udiv128(n: u128, d: u128) -> (u128, u128) {
    let mut q = 0u128;
    let mut r = 0u128;
    if d == 0 {
        return (0, 0);
    }
    for i in (0..128).rev() {
        r = (r << 1) | ((n >> i) & 1);
        if r >= d {
            r -= d;
            q |= 1 << i;
        }
    }
    (q, r)
}
