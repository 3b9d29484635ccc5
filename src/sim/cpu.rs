// SPDX-License-Identifier: GPL-2.0

//! A small x86 guest CPU interpreter for the simulated hypervisor.
//!
//! The simulated hypervisor runs guest virtual processors on this interpreter instead of on
//! hardware. It models real mode, 16-bit and 32-bit protected mode (segment bases honoured,
//! limits ignored) and 64-bit long mode with 4-level paging. Every guest-physical access, page
//! table reads included, goes through [`GuestMemory`], so the hypervisor's second-level
//! translation decides what the guest can reach.
//!
//! The interpreter implements the instructions that boot code and simple test guests use and
//! reports everything else as [`Exit::Exception`] with vector 6 (#UD). It never panics on guest
//! input and needs nothing but `core`.
//!
//! An instruction either retires completely or has no visible effect: all reads happen before
//! the (at most one) memory write, and registers are only updated after that write succeeded.
//! The one exception is a REP string instruction, which makes its progress visible in RCX, RSI
//! and RDI after every completed iteration, as on hardware.

use core::cmp::min;

/// The index of the `IA32_EFER` MSR.
pub const MSR_EFER: u32 = 0xc000_0080;
/// `EFER.LME`: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// `EFER.LMA`: long mode active, which the CPU sets when paging is enabled with `EFER.LME`.
pub const EFER_LMA: u64 = 1 << 10;
/// `EFER.NXE`: no-execute enable.
pub const EFER_NXE: u64 = 1 << 11;

const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const AF: u64 = 1 << 4;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const TF: u64 = 1 << 8;
const IF: u64 = 1 << 9;
const DF: u64 = 1 << 10;
const OF: u64 = 1 << 11;
const NT: u64 = 1 << 14;
const RF: u64 = 1 << 16;
const AC: u64 = 1 << 18;
const ARITH_FLAGS: u64 = CF | PF | AF | ZF | SF | OF;
/// The RFLAGS bits that POPF may change at CPL 0 (VM, VIF, VIP and RF are kept).
const POPF_MASK: u64 = 0x0024_7fd5;
/// The RFLAGS bits that PUSHF stores (VM and RF read as zero).
const PUSHF_MASK: u64 = 0x00fc_ffff;
/// RFLAGS bit 1 is always set.
const RFLAGS_FIXED: u64 = 0x2;

const CR0_PE: u64 = 1 << 0;
const CR0_TS: u64 = 1 << 3;
const CR0_ET: u64 = 1 << 4;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;

const ATTR_S: u16 = 1 << 4;
const ATTR_P: u16 = 1 << 7;
const ATTR_L: u16 = 1 << 13;
const ATTR_DB: u16 = 1 << 14;
const ATTR_G: u16 = 1 << 15;

const PAGE_SIZE: u64 = 4096;
const PAGE_OFFSET: u64 = PAGE_SIZE - 1;
/// The physical-address bits of a page-table entry.
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_PS: u64 = 1 << 7;
const PTE_NX: u64 = 1 << 63;

/// The longest x86 instruction, in bytes.
const MAX_INSN: usize = 15;

const VEC_DE: u8 = 0;
const VEC_UD: u8 = 6;
const VEC_NP: u8 = 11;
const VEC_SS: u8 = 12;
const VEC_GP: u8 = 13;
const VEC_PF: u8 = 14;

/// The kind of a guest-physical access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read, including page-table and descriptor-table reads.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

/// A failed guest-physical access.
///
/// It is produced by the [`GuestMemory`] implementation; the CPU passes it through unchanged in
/// [`Exit::Memory`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemFault {
    /// The guest-physical address that could not be accessed.
    pub gpa: u64,
    /// The kind of access that failed.
    pub access: Access,
    /// Whether nothing is mapped at `gpa` (as opposed to mapped without the needed access).
    pub unmapped: bool,
}

/// Guest physical memory as the CPU sees it through the hypervisor's second-level translation.
pub trait GuestMemory {
    /// Reads `buf.len()` bytes (1..=16) at guest physical address `gpa`.
    ///
    /// The CPU never asks for a range that crosses a 4 KiB page boundary (it splits such
    /// accesses itself). `access` is [`Access::Read`] for data reads and [`Access::Execute`]
    /// for instruction fetches.
    fn read(&mut self, gpa: u64, buf: &mut [u8], access: Access) -> Result<(), MemFault>;

    /// Writes `data` (1..=16 bytes, never crossing a 4 KiB page) at `gpa`.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemFault>;

    /// Called for OUT and IN.
    ///
    /// Returns `None` to make the CPU exit with [`Exit::Io`] (the usual case: the VMM emulates
    /// the port), or `Some(value)` if the port was handled without leaving (`value` is the IN
    /// result; it is ignored for OUT).
    fn io(&mut self, port: u16, size: u8, write: bool, value: u32) -> Option<u32> {
        let _ = (port, size, write, value);
        None
    }
}

/// A segment register with its hidden descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// The visible selector.
    pub selector: u16,
    /// The segment base.
    pub base: u64,
    /// The segment limit in bytes (granularity already applied).
    pub limit: u32,
    /// The attributes in Hyper-V/VMX layout: type in bits 0-3, S in bit 4, DPL in bits 5-6,
    /// P in bit 7, AVL in bit 12, L in bit 13, D/B in bit 14 and G in bit 15.
    pub attributes: u16,
}

/// A descriptor-table register (GDTR or IDTR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The linear base address of the table.
    pub base: u64,
    /// The table limit (size in bytes minus one).
    pub limit: u16,
}

/// The architectural state of one virtual processor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regs {
    /// General-purpose registers in encoding order: RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI,
    /// R8 to R15.
    pub gpr: [u64; 16],
    /// The instruction pointer (an offset from CS.base outside 64-bit mode).
    pub rip: u64,
    /// The flags register.
    pub rflags: u64,
    /// The code segment.
    pub cs: Segment,
    /// The data segment.
    pub ds: Segment,
    /// The extra segment (destination of string instructions).
    pub es: Segment,
    /// The FS segment.
    pub fs: Segment,
    /// The GS segment.
    pub gs: Segment,
    /// The stack segment.
    pub ss: Segment,
    /// The task register; the interpreter keeps it but never uses it.
    pub tr: Segment,
    /// The LDT register; the interpreter keeps it but never uses it (LDT selectors raise #GP).
    pub ldtr: Segment,
    /// Control register 0.
    pub cr0: u64,
    /// Control register 2 (the last page-fault address).
    pub cr2: u64,
    /// Control register 3 (the page-table root).
    pub cr3: u64,
    /// Control register 4.
    pub cr4: u64,
    /// The `IA32_EFER` MSR.
    pub efer: u64,
    /// The global descriptor table register.
    pub gdtr: Table,
    /// The interrupt descriptor table register.
    pub idtr: Table,
    /// Set by an STI that enabled interrupts, for the one instruction after it: external
    /// interrupts are not accepted until that instruction has retired (the STI shadow that
    /// makes `sti; hlt` race-free).
    pub interrupt_shadow: bool,
}

impl Regs {
    /// Returns the architectural x86 reset state.
    ///
    /// CS is 0xF000 with base 0xFFFF0000 and RIP 0xFFF0, so the first instruction is fetched at
    /// 0xFFFFFFF0. EDX holds 0x600 (family 6, model 0, stepping 0).
    pub fn reset() -> Self {
        let data = Segment {
            selector: 0,
            base: 0,
            limit: 0xffff,
            attributes: 0x93,
        };
        let mut gpr = [0; 16];
        gpr[2] = 0x600;
        Regs {
            gpr,
            rip: 0xfff0,
            rflags: RFLAGS_FIXED,
            cs: Segment {
                selector: 0xf000,
                base: 0xffff_0000,
                limit: 0xffff,
                attributes: 0x9b,
            },
            ds: data,
            es: data,
            fs: data,
            gs: data,
            ss: data,
            tr: Segment {
                selector: 0,
                base: 0,
                limit: 0xffff,
                attributes: 0x8b,
            },
            ldtr: Segment {
                selector: 0,
                base: 0,
                limit: 0xffff,
                attributes: 0x82,
            },
            cr0: 0x6000_0010,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            efer: 0,
            gdtr: Table {
                base: 0,
                limit: 0xffff,
            },
            idtr: Table {
                base: 0,
                limit: 0xffff,
            },
            interrupt_shadow: false,
        }
    }

    /// Whether a maskable external interrupt can be accepted now: `RFLAGS.IF` is set and no STI
    /// shadow is in effect.
    pub fn interrupts_enabled(&self) -> bool {
        self.rflags & IF != 0 && !self.interrupt_shadow
    }
}

impl Default for Regs {
    fn default() -> Self {
        Self::reset()
    }
}

/// Why [`run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// HLT executed; RIP points after the HLT.
    Halt,
    /// IN or OUT that [`GuestMemory::io`] did not handle.
    ///
    /// RIP is not advanced: it points at the IN/OUT and `instruction_length` lets the VMM
    /// advance it. For OUT, `value` is the data written (masked to `size` bytes); for IN the
    /// VMM supplies AL/AX/EAX and advances RIP.
    Io {
        /// The port number.
        port: u16,
        /// The access size in bytes (1, 2 or 4).
        size: u8,
        /// Whether this is an OUT.
        write: bool,
        /// The value written by an OUT, zero for an IN.
        value: u32,
        /// The length of the IN/OUT instruction, prefixes included.
        instruction_length: u8,
    },
    /// A guest-physical access failed.
    ///
    /// The instruction did not retire and has no visible side effect (except for the
    /// iterations a REP string instruction completed, which RCX, RSI and RDI reflect).
    Memory {
        /// The failed access as reported by [`GuestMemory`].
        fault: MemFault,
        /// The linear address being accessed (for a page-table read, the address being
        /// translated).
        gva: u64,
        /// The bytes of the instruction (zero past `instruction_length`).
        instruction_bytes: [u8; 16],
        /// The number of valid bytes in `instruction_bytes`; 0 if the fault was on the
        /// instruction fetch itself.
        instruction_length: u8,
    },
    /// An instruction the interpreter does not implement, or an architectural exception it does
    /// not model (#UD, #GP, #DE, #PF in guest paging, ...).
    ///
    /// RIP points at the instruction. A software interrupt (INT3, INT n) is reported with its
    /// vector as well, because the interpreter does not deliver interrupts through the IDT.
    Exception {
        /// The exception vector.
        vector: u8,
        /// The address of the faulting instruction.
        rip: u64,
    },
    /// The instruction budget ran out; the processor can be resumed with [`run`] again.
    Budget,
    /// CPUID executed.
    ///
    /// RIP still points at the CPUID: the caller fills RAX, RBX, RCX and RDX (reading the leaf
    /// from EAX and the subleaf from ECX) and advances RIP by 2.
    Cpuid,
    /// RDMSR or WRMSR executed; RIP still points at the instruction.
    ///
    /// For RDMSR the caller stores the value in EDX:EAX (zero-extending RAX and RDX); for WRMSR
    /// it applies `value` (for [`MSR_EFER`] through [`set_efer`]). Either way it then advances
    /// RIP by `instruction_length`.
    Msr {
        /// Whether this is a WRMSR.
        write: bool,
        /// The MSR index (ECX).
        msr: u32,
        /// The value to write (EDX:EAX), zero for RDMSR.
        value: u64,
        /// The length of the instruction, prefixes included.
        instruction_length: u8,
    },
}

/// Why a linear address could not be translated by [`linear_to_physical`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// A guest page-table entry on the path is not present.
    PageNotPresent,
    /// The page is present, but does not allow the access (a write to a read-only page with
    /// `CR0.WP` set, or an instruction fetch from a no-execute page).
    PrivilegeViolation,
    /// The address is not canonical.
    NonCanonical,
    /// Paging is enabled without long mode (32-bit or PAE paging), which is not modelled.
    UnsupportedPagingMode,
    /// Reading a guest page table failed.
    Memory(MemFault),
}

/// Writes `value` to `EFER` with the semantics of a guest WRMSR.
///
/// `EFER.LMA` is read-only: it becomes set when `EFER.LME` is set while `CR0.PG` is set, and
/// clear otherwise. To restore a saved register state, assign [`Regs::efer`] directly instead.
pub fn set_efer(regs: &mut Regs, value: u64) {
    let lma = if value & EFER_LME != 0 && regs.cr0 & CR0_PG != 0 {
        EFER_LMA
    } else {
        0
    };
    regs.efer = (value & !EFER_LMA) | lma;
}

/// Translates the linear address `gva` to a guest physical address as the guest's paging
/// structures say.
///
/// With paging disabled the address is returned unchanged. In long mode the 4-level page walk
/// reads every table entry through [`GuestMemory::read`] with [`Access::Read`]. The accessed
/// and dirty bits of the guest's entries are not updated.
pub fn linear_to_physical(
    regs: &Regs,
    mem: &mut impl GuestMemory,
    gva: u64,
    access: Access,
) -> Result<u64, TranslateError> {
    if regs.cr0 & CR0_PG == 0 {
        return Ok(gva);
    }
    if regs.efer & EFER_LMA == 0 {
        return Err(TranslateError::UnsupportedPagingMode);
    }
    if !canonical(gva) {
        return Err(TranslateError::NonCanonical);
    }
    let w = walk(regs, mem, gva)?;
    if !permits(regs, w.writable, w.nx, access) {
        return Err(TranslateError::PrivilegeViolation);
    }
    Ok(w.gpa)
}

/// Runs the processor until an exit or until `budget` instructions have retired.
///
/// Returns the exit and the number of instructions retired. Every iteration of a REP string
/// instruction counts as one instruction, so a long `rep stosb` returns [`Exit::Budget`] part
/// way through and resumes where it stopped on the next call.
pub fn run(regs: &mut Regs, mem: &mut impl GuestMemory, budget: u64) -> (Exit, u64) {
    let mut cpu = Cpu::new(regs, mem);
    let mut retired: u64 = 0;
    while retired < budget {
        cpu.budget = budget - retired;
        // The shadow of an STI covers exactly the next instruction.
        let shadow = core::mem::take(&mut cpu.regs.interrupt_shadow);
        match cpu.step() {
            Ok(None) => retired = retired.saturating_add(cpu.cost),
            Ok(Some(exit)) => return (exit, retired.saturating_add(cpu.cost)),
            Err(stop) => {
                // The instruction did not retire: its shadow is still pending.
                cpu.regs.interrupt_shadow = shadow;
                let partial = cpu.partial;
                return (cpu.finish(stop), retired.saturating_add(partial));
            }
        }
    }
    (Exit::Budget, retired)
}

/// Delivers external interrupt (or NMI) `vector` through the guest's interrupt table, as the
/// processor does between two instructions: in real mode through the IVT (FLAGS, CS and IP are
/// pushed), in 32-bit protected mode through a 32-bit interrupt or trap gate of the IDT (EFLAGS,
/// CS and EIP are pushed) and in 64-bit mode through a 64-bit gate (SS, RSP, RFLAGS, CS and RIP
/// are pushed on the 16-byte aligned stack). An interrupt gate clears `RFLAGS.IF`; every form
/// clears TF, NT, RF and (real mode) AC.
///
/// Only deliveries that stay at the current privilege level are modelled (the handler's code
/// segment must have the current CPL; no TSS stack switch, no IST); anything else, a missing or
/// malformed gate, or a gate outside the table limit is reported as [`Exit::Exception`] with
/// #GP (or #NP for a gate that is not present). A guest-physical access that fails (the stack or
/// the table in unmapped memory) is reported as [`Exit::Memory`] with an instruction length of
/// 0. On any error `regs` is unchanged, so the delivery can be retried.
///
/// The caller checks [`Regs::interrupts_enabled`] for maskable interrupts; this function does
/// not.
pub fn deliver_interrupt(
    regs: &mut Regs,
    mem: &mut impl GuestMemory,
    vector: u8,
) -> Result<(), Exit> {
    let saved = regs.clone();
    let mut cpu = Cpu::new(regs, mem);
    cpu.begin();
    match cpu.deliver(vector) {
        Ok(()) => {
            cpu.regs.interrupt_shadow = false;
            Ok(())
        }
        Err(stop) => {
            let exit = cpu.finish(stop);
            *cpu.regs = saved;
            Err(exit)
        }
    }
}

// Arithmetic helpers shared by the instructions.

const fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

const fn sign_bit(size: u8) -> u64 {
    match size {
        1 => 0x80,
        2 => 0x8000,
        4 => 0x8000_0000,
        _ => 1 << 63,
    }
}

/// Sign-extends the low `size` bytes of `v` to 64 bits.
const fn sext(v: u64, size: u8) -> u64 {
    match size {
        1 => v as u8 as i8 as i64 as u64,
        2 => v as u16 as i16 as i64 as u64,
        4 => v as u32 as i32 as i64 as u64,
        _ => v,
    }
}

const fn canonical(v: u64) -> bool {
    (((v as i64) << 16) >> 16) as u64 == v
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
fn incdec(a: u64, size: u8, dec: bool, flags: u64) -> (u64, u64) {
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

// Guest paging.

struct Walk {
    gpa: u64,
    writable: bool,
    nx: bool,
}

/// Walks the 4-level page tables for `lin`; permissions are checked by [`permits`].
fn walk<M: GuestMemory>(regs: &Regs, mem: &mut M, lin: u64) -> Result<Walk, TranslateError> {
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
fn permits(regs: &Regs, writable: bool, nx: bool, access: Access) -> bool {
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

/// A direct-mapped cache of guest page walks, local to one [`run`] call.
///
/// Like a hardware TLB it may hold stale entries after the guest changes its page tables; it
/// is flushed when the guest writes CR0, CR3 or CR4 or executes INVLPG.
struct Tlb {
    /// The virtual page number plus one, zero for an empty entry.
    tag: [u64; TLB_ENTRIES],
    /// The guest physical page address, or-ed with `TLB_WRITABLE` and `TLB_NX`.
    val: [u64; TLB_ENTRIES],
}

impl Tlb {
    fn flush(&mut self) {
        self.tag = [0; TLB_ENTRIES];
    }
}

// The interpreter proper.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Seg {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

fn seg_from(i: u8) -> Option<Seg> {
    match i {
        0 => Some(Seg::Es),
        1 => Some(Seg::Cs),
        2 => Some(Seg::Ss),
        3 => Some(Seg::Ds),
        4 => Some(Seg::Fs),
        5 => Some(Seg::Gs),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Paging {
    Off,
    Long,
    Unsupported,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StrOp {
    Movs,
    Stos,
    Lods,
}

/// A memory operand: segment and offset, or a RIP-relative displacement.
#[derive(Clone, Copy)]
struct MemRef {
    seg: Seg,
    off: u64,
    rip_rel: bool,
}

/// The r/m operand of a ModRM byte.
#[derive(Clone, Copy)]
enum Rm {
    Reg(u8),
    Mem(MemRef),
}

#[derive(Clone, Copy)]
struct ModRm {
    /// The reg field, extended by REX.R.
    reg: u8,
    /// The raw 3-bit reg field (the opcode extension of group instructions).
    sub: u8,
    rm: Rm,
}

impl ModRm {
    fn is_mem(&self) -> bool {
        matches!(self.rm, Rm::Mem(_))
    }
}

/// Why an instruction stopped before retiring.
enum Stop {
    /// A failed guest-physical access.
    Mem {
        fault: MemFault,
        gva: u64,
        fetch: bool,
    },
    /// An architectural exception.
    Exc(u8),
    /// An exit that leaves RIP at the instruction.
    Exit(Exit),
}

/// The result of one instruction: `Ok(Some(exit))` retires it and then exits.
type Step = Result<Option<Exit>, Stop>;

/// A result of a string-instruction chunk: the elements completed, and an error if it stopped.
type Chunk = Result<u64, (u64, Stop)>;

/// Whether LOCK may prefix opcode `op` (the handlers check the operand form).
fn lockable(op: u8) -> bool {
    matches!(
        op,
        0x00 | 0x01
            | 0x08
            | 0x09
            | 0x10
            | 0x11
            | 0x18
            | 0x19
            | 0x20
            | 0x21
            | 0x28
            | 0x29
            | 0x30
            | 0x31
            | 0x80..=0x83 | 0x86 | 0x87 | 0xf6 | 0xf7 | 0xfe | 0xff
    )
}

struct Cpu<'a, M: GuestMemory> {
    regs: &'a mut Regs,
    mem: &'a mut M,
    tlb: Tlb,
    /// The instruction bytes fetched so far.
    buf: [u8; 16],
    fetched: usize,
    /// The decode position in `buf`.
    pos: usize,
    /// RIP of the current instruction.
    rip: u64,
    long64: bool,
    /// The default operand and address size of the code segment, in bytes.
    code: u8,
    /// The stack address size, in bytes.
    stack: u8,
    paging: Paging,
    opsize: u8,
    addrsize: u8,
    rex: u8,
    seg_ovr: Option<Seg>,
    rep: u8,
    lock: bool,
    /// The new RIP of a taken branch.
    jump: Option<u64>,
    /// How many budget units the instruction used when it retired.
    cost: u64,
    /// How many budget units an instruction that did not retire used (REP iterations).
    partial: u64,
    /// The budget units left.
    budget: u64,
}

impl<'a, M: GuestMemory> Cpu<'a, M> {
    fn new(regs: &'a mut Regs, mem: &'a mut M) -> Self {
        Cpu {
            regs,
            mem,
            tlb: Tlb {
                tag: [0; TLB_ENTRIES],
                val: [0; TLB_ENTRIES],
            },
            buf: [0; 16],
            fetched: 0,
            pos: 0,
            rip: 0,
            long64: false,
            code: 2,
            stack: 2,
            paging: Paging::Off,
            opsize: 2,
            addrsize: 2,
            rex: 0,
            seg_ovr: None,
            rep: 0,
            lock: false,
            jump: None,
            cost: 1,
            partial: 0,
            budget: 0,
        }
    }

    /// Executes one instruction.
    fn step(&mut self) -> Step {
        self.begin();
        self.fetch()?;
        let op = self.prefixes()?;
        let r = self.exec(op)?;
        self.regs.rip = match self.jump {
            Some(target) => target,
            None => self.next_ip(),
        };
        Ok(r)
    }

    /// Derives the mode from the registers and resets the per-instruction state.
    fn begin(&mut self) {
        let r = &*self.regs;
        let pe = r.cr0 & CR0_PE != 0;
        let lma = r.efer & EFER_LMA != 0;
        self.long64 = lma && r.cs.attributes & ATTR_L != 0;
        self.code = if self.long64 {
            8
        } else if pe && r.cs.attributes & ATTR_DB != 0 {
            4
        } else {
            2
        };
        self.stack = if self.long64 {
            8
        } else if pe && r.ss.attributes & ATTR_DB != 0 {
            4
        } else {
            2
        };
        self.paging = if r.cr0 & CR0_PG == 0 {
            Paging::Off
        } else if lma {
            Paging::Long
        } else {
            Paging::Unsupported
        };
        self.rip = r.rip;
        self.fetched = 0;
        self.pos = 0;
        self.rex = 0;
        self.seg_ovr = None;
        self.rep = 0;
        self.lock = false;
        self.jump = None;
        self.cost = 1;
        self.partial = 0;
    }

    /// Converts a stop into the exit reported to the caller.
    fn finish(&mut self, stop: Stop) -> Exit {
        match stop {
            Stop::Mem { fault, gva, fetch } => {
                let mut instruction_bytes = [0u8; 16];
                let n = if fetch { 0 } else { self.pos.min(MAX_INSN) };
                instruction_bytes[..n].copy_from_slice(&self.buf[..n]);
                Exit::Memory {
                    fault,
                    gva,
                    instruction_bytes,
                    instruction_length: n as u8,
                }
            }
            Stop::Exc(vector) => Exit::Exception {
                vector,
                rip: self.rip,
            },
            Stop::Exit(exit) => exit,
        }
    }

    // Instruction fetch and decode.

    /// Fetches more instruction bytes, up to the end of the page or the 15-byte limit.
    fn fetch(&mut self) -> Result<(), Stop> {
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

    fn byte(&mut self) -> Result<u8, Stop> {
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
    fn imm(&mut self, n: u8) -> Result<u64, Stop> {
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
    fn imm_op(&mut self, size: u8) -> Result<u64, Stop> {
        match size {
            8 => Ok(sext(self.imm(4)?, 4)),
            _ => self.imm(size),
        }
    }

    /// Reads a sign-extended 8-bit immediate.
    fn imm8s(&mut self) -> Result<u64, Stop> {
        Ok(sext(self.imm(1)?, 1))
    }

    /// Decodes the legacy and REX prefixes and returns the opcode byte.
    fn prefixes(&mut self) -> Result<u8, Stop> {
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

    fn modrm(&mut self) -> Result<ModRm, Stop> {
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
    fn next_ip(&self) -> u64 {
        self.rip.wrapping_add(self.pos as u64) & size_mask(self.code)
    }

    /// The offset of a memory operand; only valid once all immediates are decoded.
    fn addr(&self, m: MemRef) -> u64 {
        if m.rip_rel {
            self.rip.wrapping_add(self.pos as u64).wrapping_add(m.off) & size_mask(self.addrsize)
        } else {
            m.off
        }
    }

    /// The target of a relative branch by `rel` from the next instruction.
    fn branch_target(&self, rel: u64) -> u64 {
        let mask = if self.long64 {
            u64::MAX
        } else {
            size_mask(self.opsize)
        };
        self.rip.wrapping_add(self.pos as u64).wrapping_add(rel) & mask
    }

    /// The operand size of near branches, CALL and RET.
    fn near_size(&self) -> u8 {
        if self.long64 {
            8
        } else {
            self.opsize
        }
    }

    /// The operand size of PUSH and POP.
    fn stack_opsize(&self) -> u8 {
        if self.long64 && self.opsize != 2 {
            8
        } else {
            self.opsize
        }
    }

    fn check_lock(&self, m: &ModRm, allowed: bool) -> Result<(), Stop> {
        if self.lock && !(allowed && m.is_mem()) {
            Err(Stop::Exc(VEC_UD))
        } else {
            Ok(())
        }
    }

    // Register access.

    fn reg(&self, r: u8, size: u8) -> u64 {
        let i = usize::from(r & 15);
        match size {
            1 if self.rex == 0 && (4..8).contains(&i) => (self.regs.gpr[i - 4] >> 8) & 0xff,
            _ => self.regs.gpr[i] & size_mask(size),
        }
    }

    fn set_reg(&mut self, r: u8, size: u8, v: u64) {
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

    fn set_arith(&mut self, f: u64) {
        self.regs.rflags = (self.regs.rflags & !ARITH_FLAGS) | (f & ARITH_FLAGS);
    }

    fn seg(&self, s: Seg) -> &Segment {
        match s {
            Seg::Es => &self.regs.es,
            Seg::Cs => &self.regs.cs,
            Seg::Ss => &self.regs.ss,
            Seg::Ds => &self.regs.ds,
            Seg::Fs => &self.regs.fs,
            Seg::Gs => &self.regs.gs,
        }
    }

    fn seg_mut(&mut self, s: Seg) -> &mut Segment {
        match s {
            Seg::Es => &mut self.regs.es,
            Seg::Cs => &mut self.regs.cs,
            Seg::Ss => &mut self.regs.ss,
            Seg::Ds => &mut self.regs.ds,
            Seg::Fs => &mut self.regs.fs,
            Seg::Gs => &mut self.regs.gs,
        }
    }

    fn cond(&self, cc: u8) -> bool {
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

    // Memory access through segmentation and paging.

    /// Wraps a linear address to the width of the current mode.
    fn wrap_lin(&self, lin: u64) -> u64 {
        if self.long64 {
            lin
        } else {
            lin & 0xffff_ffff
        }
    }

    /// Computes the linear address of `seg:off`.
    fn linear(&self, seg: Seg, off: u64) -> Result<u64, Stop> {
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
    fn translate(&mut self, lin: u64, access: Access) -> Result<u64, Stop> {
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
    fn read_lin(&mut self, lin: u64, buf: &mut [u8], access: Access) -> Result<(), Stop> {
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
    fn write_lin(&mut self, lin: u64, data: &[u8]) -> Result<(), Stop> {
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

    fn read_mem(&mut self, seg: Seg, off: u64, size: u8) -> Result<u64, Stop> {
        let lin = self.linear(seg, off)?;
        let mut b = [0u8; 8];
        let n = usize::from(size).min(8);
        self.read_lin(lin, &mut b[..n], Access::Read)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_mem(&mut self, seg: Seg, off: u64, size: u8, v: u64) -> Result<(), Stop> {
        let lin = self.linear(seg, off)?;
        let n = usize::from(size).min(8);
        self.write_lin(lin, &v.to_le_bytes()[..n])
    }

    fn read_rm(&mut self, rm: Rm, size: u8) -> Result<u64, Stop> {
        match rm {
            Rm::Reg(r) => Ok(self.reg(r, size)),
            Rm::Mem(m) => {
                let off = self.addr(m);
                self.read_mem(m.seg, off, size)
            }
        }
    }

    fn write_rm(&mut self, rm: Rm, size: u8, v: u64) -> Result<(), Stop> {
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

    // Stack access.

    fn sp(&self) -> u64 {
        self.reg(4, self.stack)
    }

    fn set_sp(&mut self, v: u64) {
        self.set_reg(4, self.stack, v);
    }

    fn push(&mut self, size: u8, v: u64) -> Result<(), Stop> {
        let sp = self.sp().wrapping_sub(u64::from(size)) & size_mask(self.stack);
        self.write_mem(Seg::Ss, sp, size, v)?;
        self.set_sp(sp);
        Ok(())
    }

    /// Reads the stack slot `delta` bytes above the stack pointer.
    fn read_stack(&mut self, delta: u64, size: u8) -> Result<u64, Stop> {
        let off = self.sp().wrapping_add(delta) & size_mask(self.stack);
        self.read_mem(Seg::Ss, off, size)
    }

    /// The stack pointer after releasing `bytes` bytes.
    fn sp_plus(&self, bytes: u64) -> u64 {
        self.sp().wrapping_add(bytes) & size_mask(self.stack)
    }

    // Segment and control register loads.

    /// Loads segment register `seg` with selector `sel`.
    fn load_segment(&mut self, seg: Seg, sel: u16) -> Result<(), Stop> {
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

    /// Delivers `vector`; see [`deliver_interrupt`].
    fn deliver(&mut self, vector: u8) -> Result<(), Stop> {
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

    fn far_jump(&mut self, sel: u16, off: u64) -> Result<(), Stop> {
        self.load_segment(Seg::Cs, sel)?;
        self.jump = Some(off);
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

    // Instruction execution.

    fn exec(&mut self, op: u8) -> Step {
        if self.lock && !lockable(op) {
            return Err(Stop::Exc(VEC_UD));
        }
        let wide = if op & 1 == 0 { 1 } else { self.opsize };
        match op {
            0x00..=0x3f if op & 7 < 6 => self.alu_op(op)?,
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
            0x0f => return self.exec_0f(),
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
            0x63 if self.long64 => {
                let m = self.modrm()?;
                let v = self.read_rm(m.rm, 4)?;
                self.set_reg(m.reg, self.opsize, sext(v, 4));
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
            0x70..=0x7f => {
                let rel = self.imm8s()?;
                if self.cond(op) {
                    self.jump = Some(self.branch_target(rel));
                }
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
            0xa4 | 0xa5 => return self.string(StrOp::Movs, wide),
            0xa8 | 0xa9 => {
                let b = self.imm_op(wide)?;
                let a = self.reg(0, wide);
                self.set_arith(szp(a & b, wide));
            }
            0xaa | 0xab => return self.string(StrOp::Stos, wide),
            0xac | 0xad => return self.string(StrOp::Lods, wide),
            0xb0..=0xb7 => {
                let v = self.imm(1)?;
                self.set_reg((op & 7) | ((self.rex & 1) << 3), 1, v);
            }
            0xb8..=0xbf => {
                let size = self.opsize;
                let v = self.imm(size)?;
                self.set_reg((op & 7) | ((self.rex & 1) << 3), size, v);
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
            0xc2 | 0xc3 => {
                let extra = if op == 0xc2 { self.imm(2)? } else { 0 };
                let size = self.near_size();
                let target = self.read_stack(0, size)?;
                self.set_sp(self.sp_plus(u64::from(size) + extra));
                self.jump = Some(target);
            }
            0xc6 | 0xc7 => {
                let m = self.modrm()?;
                if m.sub != 0 {
                    return Err(Stop::Exc(VEC_UD));
                }
                let v = self.imm_op(wide)?;
                self.write_rm(m.rm, wide, v)?;
            }
            0xc9 => {
                let size = self.stack_opsize();
                let bp = self.reg(5, self.stack);
                let v = self.read_mem(Seg::Ss, bp, size)?;
                self.set_sp(bp.wrapping_add(u64::from(size)) & size_mask(self.stack));
                self.set_reg(5, size, v);
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
            0xcc => return Err(Stop::Exc(3)),
            0xcf => self.iret()?,
            0xcd => {
                let v = self.imm(1)?;
                return Err(Stop::Exc(v as u8));
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
            0xf4 => return Ok(Some(Exit::Halt)),
            0xf5 => self.regs.rflags ^= CF,
            0xf6 | 0xf7 => self.group3(wide)?,
            0xf8 => self.regs.rflags &= !CF,
            0xf9 => self.regs.rflags |= CF,
            0xfa => self.regs.rflags &= !IF,
            0xfb => {
                if self.regs.rflags & IF == 0 {
                    self.regs.interrupt_shadow = true;
                }
                self.regs.rflags |= IF;
            }
            0xfc => self.regs.rflags &= !DF,
            0xfd => self.regs.rflags |= DF,
            0xfe | 0xff => self.group45(op, wide)?,
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

    fn pop_seg(&mut self, s: Seg) -> Result<(), Stop> {
        let size = self.stack_opsize();
        let v = self.read_stack(0, size)?;
        self.load_segment(s, v as u16)?;
        self.set_sp(self.sp_plus(u64::from(size)));
        Ok(())
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

    /// The two-byte opcodes (0F xx).
    fn exec_0f(&mut self) -> Step {
        let op = self.byte()?;
        match op {
            0x01 => self.group7()?,
            0x06 => self.regs.cr0 &= !CR0_TS,
            // INVD and WBINVD: there are no caches to flush.
            0x08 | 0x09 => {}
            // Hint NOPs (NOP r/m, prefetch hints, ENDBR).
            0x18..=0x1f => {
                self.modrm()?;
            }
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
            0x80..=0x8f => {
                let n = self.near_size().min(4);
                let rel = sext(self.imm(n)?, n);
                if self.cond(op) {
                    self.jump = Some(self.branch_target(rel));
                }
            }
            0x90..=0x9f => {
                let m = self.modrm()?;
                let v = u64::from(self.cond(op));
                self.write_rm(m.rm, 1, v)?;
            }
            0xa0 | 0xa8 => {
                let s = if op == 0xa0 { Seg::Fs } else { Seg::Gs };
                let sel = u64::from(self.seg(s).selector);
                self.push(self.stack_opsize(), sel)?;
            }
            0xa1 | 0xa9 => self.pop_seg(if op == 0xa1 { Seg::Fs } else { Seg::Gs })?,
            0xa2 => return Err(Stop::Exit(Exit::Cpuid)),
            0xaf => {
                let size = self.opsize;
                let m = self.modrm()?;
                let b = self.read_rm(m.rm, size)?;
                let a = self.reg(m.reg, size);
                self.imul2(m.reg, a, b, size);
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

    // String instructions.

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
