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
//!
//! The interpreter is split by instruction group, so an instruction's implementation is found by
//! its group:
//!
//! - `mod.rs` (this file): the public API ([`run`], [`deliver_interrupt`],
//!   [`linear_to_physical`], [`set_efer`], [`Regs`], [`Exit`], [`GuestMemory`], [`Access`], ...),
//!   the interpreter state (`Cpu`), one instruction step and the opcode dispatchers, which hand
//!   each opcode (one-byte and 0F xx) to the method of its group;
//! - `decode.rs`: instruction fetch, prefixes, ModRM and SIB, immediates, operand and address
//!   sizes, register and r/m operand reads and writes;
//! - `alu.rs`: the arithmetic and flag helpers (ALU, shifts, condition codes, 128-bit division)
//!   and the integer instructions: ADD to CMP, INC/DEC r, TEST, NOT, NEG, MUL, IMUL, DIV, IDIV,
//!   shifts and rotates, SETcc, CLC, STC, CMC, CLD, STD, SAHF, LAHF;
//! - `mov.rs`: data moves: MOV (segment registers and memory offsets included), XCHG, LEA,
//!   MOVSXD, MOVZX, MOVSX, CMOVcc, CBW and CWD and their wider forms, NOP and hint NOPs;
//! - `stack.rs`: the stack helpers, PUSH and POP (registers, segment registers, immediates, r/m),
//!   PUSHF, POPF, LEAVE;
//! - `branch.rs`: Jcc, JMP, CALL, RET, RETF, LOOP and JCXZ, and groups 4 and 5 (INC, DEC, CALL,
//!   JMP and PUSH of an r/m operand);
//! - `string.rs`: MOVS, STOS and LODS, with and without REP;
//! - `system.rs`: MOV to and from control registers, LGDT, LIDT, SGDT, SIDT, LMSW, SMSW, INVLPG,
//!   CLTS, INVD, RDMSR, WRMSR, CPUID, IN, OUT, HLT, CLI, STI, INT3, INT n, IRET, segment register
//!   loads, and interrupt delivery through the IVT or IDT;
//! - `paging.rs`: the guest page walk, its permission check and the translation cache,
//!   segmentation (linear addresses), and memory reads and writes through them.

mod alu;
mod branch;
mod decode;
mod mov;
mod paging;
mod stack;
mod string;
mod system;

use paging::{canonical, permits, walk, Paging, Tlb};

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
            tlb: Tlb::new(),
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

    // Instruction execution.

    /// Executes the one-byte opcode `op` by handing it to its instruction group.
    fn exec(&mut self, op: u8) -> Step {
        if self.lock && !lockable(op) {
            return Err(Stop::Exc(VEC_UD));
        }
        let wide = if op & 1 == 0 { 1 } else { self.opsize };
        match op {
            0x0f => self.exec_0f(),
            // ADD to CMP, INC/DEC r, IMUL with an immediate, group 1, TEST, shifts and rotates,
            // group 3.
            0x00..=0x3f if op & 7 < 6 => self.exec_alu(op, wide),
            0x40..=0x4f | 0x69 | 0x6b | 0x80..=0x85 | 0xa8 | 0xa9 => self.exec_alu(op, wide),
            0xc0 | 0xc1 | 0xd0..=0xd3 | 0xf6 | 0xf7 => self.exec_alu(op, wide),
            // SAHF, LAHF, CMC, CLC, STC, CLD, STD.
            0x9e | 0x9f | 0xf5 | 0xf8 | 0xf9 | 0xfc | 0xfd => self.exec_alu(op, wide),
            // MOVSXD, XCHG, MOV, LEA, NOP, CBW, CWD, MOV with a memory offset or an immediate.
            0x63 | 0x86..=0x8e | 0x90..=0x99 | 0xa0..=0xa3 => self.exec_mov(op, wide),
            0xb0..=0xbf | 0xc6 | 0xc7 => self.exec_mov(op, wide),
            // PUSH and POP of segment registers, registers, immediates and r/m; PUSHF, POPF,
            // LEAVE.
            0x06 | 0x07 | 0x0e | 0x16 | 0x17 | 0x1e | 0x1f => self.exec_stack(op),
            0x50..=0x5f | 0x68 | 0x6a | 0x8f | 0x9c | 0x9d | 0xc9 => self.exec_stack(op),
            // Jcc, RET, RETF, LOOP and JCXZ, CALL, JMP, groups 4 and 5.
            0x70..=0x7f | 0xc2 | 0xc3 | 0xca | 0xcb => self.exec_branch(op, wide),
            0xe0..=0xe3 | 0xe8..=0xeb | 0xfe | 0xff => self.exec_branch(op, wide),
            // MOVS, STOS, LODS.
            0xa4 | 0xa5 | 0xaa..=0xad => self.exec_string(op, wide),
            // INT3, INT n, IRET, IN, OUT, HLT, CLI, STI.
            0xcc | 0xcd | 0xcf | 0xe4..=0xe7 | 0xec..=0xef | 0xf4 | 0xfa | 0xfb => {
                self.exec_system(op)
            }
            _ => Err(Stop::Exc(VEC_UD)),
        }
    }

    /// Executes a two-byte opcode (0F xx) by handing it to its instruction group.
    fn exec_0f(&mut self) -> Step {
        let op = self.byte()?;
        match op {
            // SETcc, IMUL r, r/m.
            0x90..=0x9f | 0xaf => self.exec_alu_0f(op),
            // Hint NOPs, CMOVcc, MOVZX, MOVSX.
            0x18..=0x1f | 0x40..=0x4f | 0xb6 | 0xb7 | 0xbe | 0xbf => self.exec_mov_0f(op),
            // PUSH and POP of FS and GS.
            0xa0 | 0xa1 | 0xa8 | 0xa9 => self.exec_stack_0f(op),
            // Jcc with a 16- or 32-bit displacement.
            0x80..=0x8f => self.exec_branch_0f(op),
            // Group 7, CLTS, INVD, WBINVD, MOV CR, WRMSR, RDMSR, CPUID.
            0x01 | 0x06 | 0x08 | 0x09 | 0x20 | 0x22 | 0x30 | 0x32 | 0xa2 => self.exec_system_0f(op),
            _ => Err(Stop::Exc(VEC_UD)),
        }
    }
}
