// SPDX-License-Identifier: GPL-2.0

//! Guest paging and segmentation: the 4-level page walk and its permission check, the
//! translation cache, linear addresses, and memory reads and writes through them.

use super::{
    Access, Cpu, GuestMemory, Regs, Seg, Stop, TranslateError, CR0_WP, EFER_NXE, PAGE_OFFSET,
    PAGE_SIZE, VEC_GP, VEC_PF, VEC_SS,
};
use core::cmp::min;

/// The physical-address bits of a page-table entry.
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_PS: u64 = 1 << 7;
const PTE_NX: u64 = 1 << 63;

// Guest paging.

pub(super) struct Walk {
    pub(super) gpa: u64,
    pub(super) writable: bool,
    pub(super) nx: bool,
}

/// Walks the 4-level page tables for `lin`; permissions are checked by [`permits`].
pub(super) fn walk<M: GuestMemory>(
    regs: &Regs,
    mem: &mut M,
    lin: u64,
) -> Result<Walk, TranslateError> {
    let nxe = regs.efer & EFER_NXE != 0;
    let mut table = regs.cr3 & PTE_ADDR;
    let mut writable = true;
    let mut nx = false;
    let mut level: u32 = 4;
    while level > 0 {
        level -= 1;
        let shift = 12 + 9 * level;
        let entry_addr = table | (((lin >> shift) & 0x1ff) << 3);
        let mut b = [0u8; 8];
        mem.read(entry_addr, &mut b, Access::Read)
            .map_err(TranslateError::Memory)?;
        let e = u64::from_le_bytes(b);
        if e & PTE_P == 0 {
            return Err(TranslateError::PageNotPresent);
        }
        writable &= e & PTE_RW != 0;
        nx |= nxe && e & PTE_NX != 0;
        if level == 0 || ((level == 1 || level == 2) && e & PTE_PS != 0) {
            let offset_mask = (1u64 << shift) - 1;
            let gpa = (e & PTE_ADDR & !offset_mask) | (lin & offset_mask);
            return Ok(Walk { gpa, writable, nx });
        }
        table = e & PTE_ADDR;
    }
    // The loop always returns at level 0.
    Err(TranslateError::PageNotPresent)
}

/// Whether a CPL-0 `access` is allowed to a page with the given effective permissions.
pub(super) fn permits(regs: &Regs, writable: bool, nx: bool, access: Access) -> bool {
    match access {
        Access::Read => true,
        Access::Write => writable || regs.cr0 & CR0_WP == 0,
        Access::Execute => !nx,
    }
}

/// The number of entries of the interpreter's translation cache (a power of two).
const TLB_ENTRIES: usize = 32;
const TLB_WRITABLE: u64 = 1 << 0;
const TLB_NX: u64 = 1 << 1;

/// A direct-mapped cache of guest page walks, local to one [`run`](super::run) call.
///
/// Like a hardware TLB it may hold stale entries after the guest changes its page tables; it
/// is flushed when the guest writes CR0, CR3 or CR4 or executes INVLPG.
pub(super) struct Tlb {
    /// The virtual page number plus one, zero for an empty entry.
    tag: [u64; TLB_ENTRIES],
    /// The guest physical page address, or-ed with `TLB_WRITABLE` and `TLB_NX`.
    val: [u64; TLB_ENTRIES],
}

impl Tlb {
    /// An empty cache.
    pub(super) const fn new() -> Self {
        Tlb {
            tag: [0; TLB_ENTRIES],
            val: [0; TLB_ENTRIES],
        }
    }

    pub(super) fn flush(&mut self) {
        self.tag = [0; TLB_ENTRIES];
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Paging {
    Off,
    Long,
    Unsupported,
}

pub(super) const fn canonical(v: u64) -> bool {
    (((v as i64) << 16) >> 16) as u64 == v
}

impl<M: GuestMemory> Cpu<'_, M> {
    // Memory access through segmentation and paging.

    /// Wraps a linear address to the width of the current mode.
    pub(super) fn wrap_lin(&self, lin: u64) -> u64 {
        if self.long64 {
            lin
        } else {
            lin & 0xffff_ffff
        }
    }

    /// Computes the linear address of `seg:off`.
    pub(super) fn linear(&self, seg: Seg, off: u64) -> Result<u64, Stop> {
        if self.long64 {
            let lin = match seg {
                Seg::Fs => self.regs.fs.base.wrapping_add(off),
                Seg::Gs => self.regs.gs.base.wrapping_add(off),
                _ => off,
            };
            if !canonical(lin) {
                return Err(Stop::Exc(if seg == Seg::Ss { VEC_SS } else { VEC_GP }));
            }
            Ok(lin)
        } else {
            Ok(self.seg(seg).base.wrapping_add(off) & 0xffff_ffff)
        }
    }

    /// Translates a linear address through the guest's paging structures.
    pub(super) fn translate(&mut self, lin: u64, access: Access) -> Result<u64, Stop> {
        match self.paging {
            Paging::Off => Ok(lin),
            Paging::Unsupported => Err(Stop::Exc(VEC_GP)),
            Paging::Long => {
                let vpn = lin >> 12;
                let i = (vpn as usize) & (TLB_ENTRIES - 1);
                if self.tlb.tag[i] == vpn + 1 {
                    let val = self.tlb.val[i];
                    if permits(
                        self.regs,
                        val & TLB_WRITABLE != 0,
                        val & TLB_NX != 0,
                        access,
                    ) {
                        return Ok((val & !PAGE_OFFSET) | (lin & PAGE_OFFSET));
                    }
                }
                let w = match walk(self.regs, self.mem, lin) {
                    Ok(w) => w,
                    Err(TranslateError::Memory(fault)) => {
                        return Err(Stop::Mem {
                            fault,
                            gva: lin,
                            fetch: false,
                        })
                    }
                    Err(_) => {
                        self.regs.cr2 = lin;
                        return Err(Stop::Exc(VEC_PF));
                    }
                };
                if !permits(self.regs, w.writable, w.nx, access) {
                    self.regs.cr2 = lin;
                    return Err(Stop::Exc(VEC_PF));
                }
                self.tlb.tag[i] = vpn + 1;
                self.tlb.val[i] = (w.gpa & !PAGE_OFFSET)
                    | if w.writable { TLB_WRITABLE } else { 0 }
                    | if w.nx { TLB_NX } else { 0 };
                Ok(w.gpa)
            }
        }
    }

    /// Reads `buf.len()` (at most 16) bytes at linear address `lin`.
    pub(super) fn read_lin(
        &mut self,
        lin: u64,
        buf: &mut [u8],
        access: Access,
    ) -> Result<(), Stop> {
        if buf.is_empty() {
            return Ok(());
        }
        let first = min(buf.len() as u64, PAGE_SIZE - (lin & PAGE_OFFSET)) as usize;
        let (a, b) = buf.split_at_mut(first);
        let gpa = self.translate(lin, access)?;
        let lin2 = self.wrap_lin(lin.wrapping_add(first as u64));
        let gpa2 = if b.is_empty() {
            0
        } else {
            self.translate(lin2, access)?
        };
        if let Err(fault) = self.mem.read(gpa, a, access) {
            return Err(Stop::Mem {
                fault,
                gva: lin,
                fetch: false,
            });
        }
        if !b.is_empty() {
            if let Err(fault) = self.mem.read(gpa2, b, access) {
                return Err(Stop::Mem {
                    fault,
                    gva: lin2,
                    fetch: false,
                });
            }
        }
        Ok(())
    }

    /// Writes `data` (at most 16 bytes) at linear address `lin`.
    ///
    /// A write that crosses a page boundary translates both pages first, writes the second
    /// page before the first and undoes that write if the first page then faults, so a fault
    /// on either page leaves memory unchanged.
    pub(super) fn write_lin(&mut self, lin: u64, data: &[u8]) -> Result<(), Stop> {
        if data.is_empty() {
            return Ok(());
        }
        let first = min(data.len() as u64, PAGE_SIZE - (lin & PAGE_OFFSET)) as usize;
        let (a, b) = data.split_at(first);
        let gpa = self.translate(lin, Access::Write)?;
        if b.is_empty() {
            return self.mem.write(gpa, a).map_err(|fault| Stop::Mem {
                fault,
                gva: lin,
                fetch: false,
            });
        }
        let lin2 = self.wrap_lin(lin.wrapping_add(first as u64));
        let gpa2 = self.translate(lin2, Access::Write)?;
        let mut old = [0u8; 16];
        let n2 = b.len().min(old.len());
        let saved = self.mem.read(gpa2, &mut old[..n2], Access::Read).is_ok();
        if let Err(fault) = self.mem.write(gpa2, b) {
            return Err(Stop::Mem {
                fault,
                gva: lin2,
                fetch: false,
            });
        }
        if let Err(fault) = self.mem.write(gpa, a) {
            if saved {
                // Best effort: the page was writable a moment ago.
                let _ = self.mem.write(gpa2, &old[..n2]);
            }
            return Err(Stop::Mem {
                fault,
                gva: lin,
                fetch: false,
            });
        }
        Ok(())
    }

    pub(super) fn read_mem(&mut self, seg: Seg, off: u64, size: u8) -> Result<u64, Stop> {
        let lin = self.linear(seg, off)?;
        let mut b = [0u8; 8];
        let n = usize::from(size).min(8);
        self.read_lin(lin, &mut b[..n], Access::Read)?;
        Ok(u64::from_le_bytes(b))
    }

    pub(super) fn write_mem(&mut self, seg: Seg, off: u64, size: u8, v: u64) -> Result<(), Stop> {
        let lin = self.linear(seg, off)?;
        let n = usize::from(size).min(8);
        self.write_lin(lin, &v.to_le_bytes()[..n])
    }
}
