// SPDX-License-Identifier: GPL-2.0

//! String instructions: MOVS, STOS and LODS, with and without REP. A REP instruction runs
//! in chunks that stay within one page, and makes its progress visible after each chunk.

use super::{
    alu::size_mask, Access, Cpu, Exit, GuestMemory, Seg, Step, Stop, DF, PAGE_OFFSET, PAGE_SIZE,
    VEC_UD,
};
use core::cmp::min;

#[derive(Clone, Copy, PartialEq, Eq)]
enum StrOp {
    Movs,
    Stos,
    Lods,
}

/// A result of a string-instruction chunk: the elements completed, and an error if it stopped.
type Chunk = Result<u64, (u64, Stop)>;

impl<M: GuestMemory> Cpu<'_, M> {
    // String instructions.

    /// MOVS (A4, A5), STOS (AA, AB) and LODS (AC, AD); `wide` is the operand size of the odd
    /// (non-byte) forms.
    pub(super) fn exec_string(&mut self, op: u8, wide: u8) -> Step {
        match op {
            0xa4 | 0xa5 => self.string(StrOp::Movs, wide),
            0xaa | 0xab => self.string(StrOp::Stos, wide),
            0xac | 0xad => self.string(StrOp::Lods, wide),
            _ => Err(Stop::Exc(VEC_UD)),
        }
    }

    /// Executes MOVS, STOS or LODS with elements of `size` bytes, with or without REP.
    fn string(&mut self, kind: StrOp, size: u8) -> Step {
        if self.rep == 0 {
            let (_, r) = self.string_chunk(kind, size, 1, false);
            r?;
            return Ok(None);
        }
        let count = self.reg(1, self.addrsize);
        if count == 0 {
            return Ok(None);
        }
        let n = min(count, self.budget);
        let mut done: u64 = 0;
        while done < n {
            let (k, r) = self.string_chunk(kind, size, n - done, true);
            done += k;
            if let Err(e) = r {
                self.partial = done;
                return Err(e);
            }
        }
        self.cost = done;
        if done < count {
            self.partial = done;
            return Err(Stop::Exit(Exit::Budget));
        }
        Ok(None)
    }

    /// Executes between 1 and `max` iterations and updates RSI, RDI and (with REP) RCX for the
    /// iterations completed.
    fn string_chunk(
        &mut self,
        kind: StrOp,
        size: u8,
        max: u64,
        rep: bool,
    ) -> (u64, Result<(), Stop>) {
        let r = match kind {
            StrOp::Stos => self.stos_chunk(size, max),
            StrOp::Movs => self.movs_chunk(size, max),
            StrOp::Lods => self.lods_one(size),
        };
        let (k, r) = match r {
            Ok(k) => (k, Ok(())),
            Err((k, e)) => (k, Err(e)),
        };
        if k != 0 {
            let asz = self.addrsize;
            let amask = size_mask(asz);
            let delta = k.wrapping_mul(u64::from(size));
            let down = self.regs.rflags & DF != 0;
            let adv = |v: u64| {
                if down {
                    v.wrapping_sub(delta) & amask
                } else {
                    v.wrapping_add(delta) & amask
                }
            };
            if kind != StrOp::Lods {
                let di = adv(self.reg(7, asz));
                self.set_reg(7, asz, di);
            }
            if kind != StrOp::Stos {
                let si = adv(self.reg(6, asz));
                self.set_reg(6, asz, si);
            }
            if rep {
                let c = self.reg(1, asz).wrapping_sub(k) & amask;
                self.set_reg(1, asz, c);
            }
        }
        (k, r)
    }

    /// How many elements of `size` bytes starting at `lin` (offset `off`) lie in one page and
    /// in the address space, in the direction given by DF; 0 if the first element crosses.
    fn fit(&self, lin: u64, off: u64, size: u8) -> u64 {
        // `size` is 1, 2, 4 or 8; `max(1)` lets the compiler drop the
        // divide-by-zero panic path.
        let s = u64::from(size).max(1);
        let pg = lin & PAGE_OFFSET;
        let amask = size_mask(self.addrsize);
        if self.regs.rflags & DF != 0 {
            if pg + s > PAGE_SIZE || amask - off < s - 1 {
                return 0;
            }
            min(pg / s + 1, (off / s).saturating_add(1))
        } else {
            min((PAGE_SIZE - pg) / s, (amask - off).saturating_add(1) / s)
        }
    }

    fn stos_chunk(&mut self, size: u8, max: u64) -> Chunk {
        let di = self.reg(7, self.addrsize);
        let value = self.reg(0, size);
        let lin = self.linear(Seg::Es, di).map_err(|e| (0, e))?;
        let k = min(max, self.fit(lin, di, size));
        if k <= 1 {
            self.write_mem(Seg::Es, di, size, value)
                .map_err(|e| (0, e))?;
            return Ok(1);
        }
        let s = u64::from(size).max(1);
        let bytes = k * s;
        let down = self.regs.rflags & DF != 0;
        let below = if down { (k - 1) * s } else { 0 };
        let lo = lin - below;
        // Translate the first element, so that a page fault reports its address; the whole
        // chunk lies in the same page.
        let gpa = self.translate(lin, Access::Write).map_err(|e| (0, e))? - below;
        let mut pattern = [0u8; 16];
        let vb = value.to_le_bytes();
        for (i, b) in pattern.iter_mut().enumerate() {
            *b = vb[i % usize::from(size.clamp(1, 8))];
        }
        let mut written: u64 = 0;
        while written < bytes {
            let c = min(16, bytes - written);
            let at = if down { bytes - written - c } else { written };
            if let Err(fault) = self.mem.write(gpa.wrapping_add(at), &pattern[..c as usize]) {
                let stop = Stop::Mem {
                    fault,
                    gva: lo.wrapping_add(at),
                    fetch: false,
                };
                return Err((written / s, stop));
            }
            written += c;
        }
        Ok(k)
    }

    fn movs_chunk(&mut self, size: u8, max: u64) -> Chunk {
        let asz = self.addrsize;
        let si = self.reg(6, asz);
        let di = self.reg(7, asz);
        let sseg = self.seg_ovr.unwrap_or(Seg::Ds);
        let slin = self.linear(sseg, si).map_err(|e| (0, e))?;
        let dlin = self.linear(Seg::Es, di).map_err(|e| (0, e))?;
        let k = min(max, min(self.fit(slin, si, size), self.fit(dlin, di, size)));
        if k <= 1 {
            let v = self.read_mem(sseg, si, size).map_err(|e| (0, e))?;
            self.write_mem(Seg::Es, di, size, v).map_err(|e| (0, e))?;
            return Ok(1);
        }
        let s = u64::from(size).max(1);
        let bytes = k * s;
        let down = self.regs.rflags & DF != 0;
        let below = if down { (k - 1) * s } else { 0 };
        let (slo, dlo) = (slin - below, dlin - below);
        let sg = self.translate(slin, Access::Read).map_err(|e| (0, e))? - below;
        let dg = self.translate(dlin, Access::Write).map_err(|e| (0, e))? - below;
        // Copying in chunks must not read bytes that an earlier element of the same chunk
        // would have written.
        let dist = if down {
            sg.wrapping_sub(dg)
        } else {
            dg.wrapping_sub(sg)
        };
        let chunk = if dist != 0 && dist < 16 {
            (dist - dist % s).max(s)
        } else {
            16
        };
        let mut done: u64 = 0;
        while done < bytes {
            let c = min(chunk, bytes - done);
            let at = if down { bytes - done - c } else { done };
            let mut tmp = [0u8; 16];
            let tmp = &mut tmp[..c as usize];
            if let Err(fault) = self.mem.read(sg.wrapping_add(at), tmp, Access::Read) {
                let stop = Stop::Mem {
                    fault,
                    gva: slo.wrapping_add(at),
                    fetch: false,
                };
                return Err((done / s, stop));
            }
            if let Err(fault) = self.mem.write(dg.wrapping_add(at), tmp) {
                let stop = Stop::Mem {
                    fault,
                    gva: dlo.wrapping_add(at),
                    fetch: false,
                };
                return Err((done / s, stop));
            }
            done += c;
        }
        Ok(k)
    }

    fn lods_one(&mut self, size: u8) -> Chunk {
        let si = self.reg(6, self.addrsize);
        let sseg = self.seg_ovr.unwrap_or(Seg::Ds);
        let v = self.read_mem(sseg, si, size).map_err(|e| (0, e))?;
        self.set_reg(0, size, v);
        Ok(1)
    }
}
