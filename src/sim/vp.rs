// SPDX-License-Identifier: GPL-2.0

//! Simulated virtual processors: their registers, the run loop on the
//! interpreter, the guest-memory path through the SLAT, and the intercept
//! messages a VP leaves in its message page.
//!
//! # Guest memory and the SLAT lock
//!
//! Every guest-physical access of the interpreter (instruction fetches and
//! page-table reads included) goes through [`VpMemory`], which takes the
//! partition's spinlock, translates the gfn through the SLAT *and copies the
//! bytes* before releasing it. Map and unmap take the same lock, so when an
//! unmap or a NO_ACCESS remap returns, no guest access can still be using a
//! page it removed: the driver may let Linux free the page right away.
//!
//! # Exits
//!
//! The interpreter runs in chunks of [`CHUNK`] instructions with no lock held
//! between them; after each chunk the loop checks for a pending signal
//! (returning [`RunExit::Signal`]) and calls `cond_resched()`. Any other exit
//! writes a `struct hv_message` into the VP's intercept message page and
//! returns [`RunExit::Message`]:
//!
//! | interpreter exit | message | RIP |
//! |---|---|---|
//! | HLT | `HVMSG_X64_HALT` | after the HLT (the message reports the HLT's address) |
//! | IN/OUT | `HVMSG_X64_IO_PORT_INTERCEPT` | at the instruction |
//! | memory, nothing mapped | `HVMSG_UNMAPPED_GPA` | at the instruction |
//! | memory, no permission | `HVMSG_GPA_INTERCEPT` | at the instruction |
//! | CPUID | `HVMSG_X64_CPUID_INTERCEPT` | at the instruction |
//! | RDMSR/WRMSR of an MSR with no register | `HVMSG_X64_MSR_INTERCEPT` | at the instruction |
//! | exception, unsupported instruction | `HVMSG_UNRECOVERABLE_EXCEPTION` | at the instruction |
//!
//! Entries mapped `HV_MAP_GPA_NOT_CACHED` (device memory) are never
//! accessed: the interpreter gets a GPA intercept for them.
//!
//! RDMSR/WRMSR of MSRs that are VP registers (EFER, FS/GS base, the
//! `HV_X64_REGISTER_*` MSRs such as PAT, APIC base, SYSENTER, STAR..SFMASK)
//! complete inside the hypervisor, as on Hyper-V.

use super::{cpu, intercept, irq, lapic, regs, regs::RegFile, slat, ChildPartition};
use crate::sys::page;
use crate::tlfs::{abi, HvError, HvResult, HV_PAGE, HV_PAGE_SHIFT};
use kernel::{
    new_spinlock,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed, Release},
        Arc, SpinLock,
    },
    transmute::AsBytes,
};

/// Pool pages a VP costs: its register page, its intercept message page,
/// its two stats pages (SELF and PARENT), and [`VP_BOOKKEEPING_PAGES`]
/// charged for the emulator's own structures of the VP.
pub(crate) const VP_PAGES: usize = 4 + VP_BOOKKEEPING_PAGES;
/// Pool pages charged for a VP's bookkeeping (`super::pool::pages_for`): the
/// [`Vp`] itself, its four state buffers (LAPIC, XSAVE, SIMP, SIEFP), its
/// register file's room for other registers and its node in the partition's
/// VP table.
pub(crate) const VP_BOOKKEEPING_PAGES: usize = super::pool::pages_for(
    core::mem::size_of::<Vp>()
        + 4 * crate::tlfs::HV_PAGE
        + regs::EXTRA_SLOTS * core::mem::size_of::<(u32, crate::tlfs::RegValue)>()
        + super::TABLE_NODE_BYTES,
);
/// Index in a VP's pages of the register page (`HV_VP_STATE_PAGE_REGISTERS`).
pub(crate) const REGISTER_PAGE: usize = 0;
/// Index in a VP's pages of the intercept message page.
pub(crate) const MESSAGE_PAGE: usize = 1;
/// Index in a VP's pages of its SELF stats page (`HVCALL_MAP_STATS_PAGE`).
pub(crate) const STATS_SELF_PAGE: usize = 2;
/// Index in a VP's pages of its PARENT stats page, where the root scheduler
/// keeps `ROOT_DISPATCH_THREAD_BLOCKED`.
pub(crate) const STATS_PARENT_PAGE: usize = 3;
/// Instructions per interpreter run between signal checks.
const CHUNK: u64 = 1 << 16;
/// Instructions per interpreter run while an interrupt is pending but masked,
/// so that it is taken soon after the guest unmasks it.
const PENDING_CHUNK: u64 = 1024;
/// `HV_CACHE_TYPE_WRITE_BACK`.
const CACHE_TYPE_WRITE_BACK: u32 = 6;
/// `hv_x64_memory_access_info.gva_valid`.
const ACCESS_INFO_GVA_VALID: u8 = 1 << 0;
/// `hv_x64_memory_access_info.gva_gpa_valid`.
const ACCESS_INFO_GVA_GPA_VALID: u8 = 1 << 1;

/// One simulated VP.
///
/// Its pool pages are recorded by the partition (`VpEntry`), not here: they
/// belong to the partition's pool accounting.
#[pin_data]
pub(crate) struct Vp {
    /// The VP index.
    pub(crate) index: u32,
    /// Set while a thread runs the VP in [`run`]. Written only under the
    /// partition's lock, so delete and finalize (which check it under that
    /// lock) never free the pages of a running VP; read without it by
    /// register writes.
    pub(crate) running: Atomic<bool>,
    /// The registers. Never held together with the partition's lock.
    #[pin]
    pub(crate) regs: SpinLock<RegFile>,
    /// The local APIC and the HLT state. Never held together with `regs`
    /// or the partition's lock.
    #[pin]
    pub(crate) lapic: SpinLock<lapic::Lapic>,
    /// Its last dispatch answered BLOCKED and no signal was sent since:
    /// the next event that makes it runnable sends one. Set under `lapic`.
    pub(crate) blocked: Atomic<bool>,
    /// Its PARENT stats page (set at creation, before the VP is visible).
    pub(crate) stats_pfn: Atomic<u64>,
    /// Core scheduler: a runner exists for it (`sched`'s module
    /// documentation says how ownership passes).
    pub(crate) core_owned: Atomic<bool>,
    /// Core scheduler: its last intercept's opaque message is held back by
    /// the test knob until the root explicitly suspends it.
    pub(crate) held_kick: Atomic<bool>,
    /// The state blobs (LAPIC, XSAVE, SynIC pages, timers). A leaf lock:
    /// nothing else is taken while holding it.
    #[pin]
    pub(crate) state: SpinLock<super::vp_state::VpState>,
}

impl Vp {
    /// Allocates VP `index` in the x86 reset state. May sleep.
    pub(crate) fn new(index: u32) -> Result<Arc<Vp>> {
        let regs = RegFile::new(index)?;
        let apic = lapic::Lapic::new(index);
        let state = super::vp_state::VpState::new(index)?;
        Arc::pin_init(
            pin_init!(Vp {
                index,
                running: Atomic::new(false),
                regs <- new_spinlock!(regs, "mshv_rs_sim_vp_regs"),
                lapic <- new_spinlock!(apic, "mshv_rs_sim_vp_lapic"),
                blocked: Atomic::new(false),
                stats_pfn: Atomic::new(0),
                core_owned: Atomic::new(false),
                held_kick: Atomic::new(false),
                state <- new_spinlock!(state, "mshv_rs_sim_vp_state"),
            }),
            GFP_ATOMIC,
        )
    }
}

/// Guest physical memory of one partition as the interpreter sees it: every
/// access is translated through the SLAT and performed under the partition's
/// lock (see the module documentation).
pub(crate) struct VpMemory<'a> {
    /// The partition whose SLAT translates.
    pub(crate) part: &'a ChildPartition,
    /// The VP whose local APIC answers at [`lapic::APIC_BASE`] (none for
    /// accesses on no VP's behalf).
    pub(crate) vp: Option<&'a Vp>,
}

impl VpMemory<'_> {
    /// Translates `gpa` for `access` and, under the SLAT lock, lets `copy` move
    /// `len` bytes at offset `off` of the backing page.
    fn access(
        &self,
        gpa: u64,
        len: usize,
        access: cpu::Access,
        copy: impl FnOnce(u64, usize),
    ) -> Result<(), cpu::MemFault> {
        let fault = |unmapped| cpu::MemFault {
            gpa,
            access,
            unmapped,
        };
        let off = (gpa & 0xfff) as usize;
        if off + len > HV_PAGE {
            // The interpreter never crosses a page; refuse rather than overrun.
            return Err(fault(true));
        }
        let mut inner = self.part.inner.lock();
        let gfn = gpa >> HV_PAGE_SHIFT;
        match inner.slat.translate(gfn, access) {
            // Device memory (an MMIO region: the pfn may have no struct page
            // and no direct mapping) is never touched by the interpreter: the
            // access goes to the VMM as a GPA intercept.
            Ok(t) if t.uncached => Err(fault(false)),
            Ok(_) if inner.take_spurious(gfn) => Err(fault(false)),
            Ok(t) => {
                copy(t.pfn, off);
                Ok(())
            }
            Err(f) => Err(fault(f == slat::GpaFault::Unmapped)),
        }
    }
}

/// Whether `gpa` is in the xAPIC page.
fn is_apic(gpa: u64) -> bool {
    gpa >> HV_PAGE_SHIFT == lapic::APIC_BASE >> HV_PAGE_SHIFT
}

impl cpu::GuestMemory for VpMemory<'_> {
    fn read(&mut self, gpa: u64, buf: &mut [u8], access: cpu::Access) -> Result<(), cpu::MemFault> {
        if let (Some(vp), true, true) = (self.vp, is_apic(gpa), access == cpu::Access::Read) {
            // The APIC registers are 32 bits wide at 16-byte strides; bytes
            // past a register read as zero.
            let off = (gpa & 0xfff) as u32;
            let reg = vp.lapic.lock().read(off & !0xf).to_le_bytes();
            for (i, b) in buf.iter_mut().enumerate() {
                *b = reg.get((off & 0xf) as usize + i).copied().unwrap_or(0);
            }
            return Ok(());
        }
        let len = buf.len();
        self.access(gpa, len, access, |pfn, off| {
            // SAFETY: the SLAT maps `pfn` and we hold its lock: the driver
            // keeps a mapped page allocated until an unmap or remap of it
            // returns, and those take this lock. `off + len <= 4096`.
            unsafe { page::read(pfn, off, buf) }
        })
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), cpu::MemFault> {
        if let (Some(vp), true) = (self.vp, is_apic(gpa)) {
            // Only aligned 32-bit writes reach a register (as on hardware,
            // where others are undefined); the rest are dropped.
            let off = (gpa & 0xfff) as u32;
            if let (0, Ok(b)) = (off & 0xf, <[u8; 4]>::try_from(data)) {
                let eoi = vp.lapic.lock().write(off, u32::from_le_bytes(b));
                irq::report_eoi(self.part, vp.index, eoi);
            }
            return Ok(());
        }
        let res = self.access(gpa, data.len(), cpu::Access::Write, |pfn, off| {
            // SAFETY: as in `read`.
            unsafe { page::write(pfn, off, data) }
        });
        if res.is_err() {
            // A write the SLAT does not complete may ring a doorbell, which
            // completes it instead of an intercept.
            if let Some(port) = self.part.doorbell_for(gpa, data) {
                self.part.synic.ring(port);
                return Ok(());
            }
        }
        res
    }
}

/// The VP execution state bits of an intercept header
/// (`hv_x64_vp_execution_state`).
fn execution_state(r: &cpu::Regs) -> u16 {
    let pe = r.cr0 & 1 != 0;
    let cpl = if pe { r.cs.selector & 3 } else { 0 };
    let am = ((r.cr0 >> 18) & 1) as u16;
    let lma = u16::from(r.efer & cpu::EFER_LMA != 0);
    cpl | (u16::from(pe) << 2) | (am << 3) | (lma << 4)
}

/// A segment in the message layout.
fn hv_seg(s: &cpu::Segment) -> abi::HvX64SegmentRegister {
    abi::HvX64SegmentRegister {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        attributes: s.attributes,
    }
}

/// The common intercept header.
fn header(
    vp: u32,
    r: &cpu::Regs,
    cr8: u64,
    rip: u64,
    len: u8,
    access: u8,
) -> abi::HvX64InterceptMessageHeader {
    abi::HvX64InterceptMessageHeader {
        vp_index: vp,
        instruction_length_cr8: (len & 0xf) | (((cr8 & 0xf) as u8) << 4),
        intercept_access_type: access,
        execution_state: execution_state(r),
        cs_segment: hv_seg(&r.cs),
        rip,
        rflags: r.rflags,
    }
}

/// The intercept access type of an interpreter access.
fn access_type(a: cpu::Access) -> u8 {
    match a {
        cpu::Access::Read => abi::HV_INTERCEPT_ACCESS_READ,
        cpu::Access::Write => abi::HV_INTERCEPT_ACCESS_WRITE,
        cpu::Access::Execute => abi::HV_INTERCEPT_ACCESS_EXECUTE,
    }
}

/// Writes a message of type `message_type` with `payload` into the
/// intercept message page `pfn`.
fn post(pfn: u64, message_type: u32, payload: &[u8]) {
    let n = payload.len().min(abi::HV_MESSAGE_PAYLOAD_BYTES);
    let mut msg = abi::HvMessage {
        header: abi::HvMessageHeader {
            message_type,
            payload_size: n as u8,
            ..Default::default()
        },
        payload: [0; abi::HV_MESSAGE_PAYLOAD_BYTES],
    };
    if let (Some(dst), Some(src)) = (msg.payload.get_mut(..n), payload.get(..n)) {
        dst.copy_from_slice(src);
    }
    // SAFETY: `pfn` is the message page of a VP that is running, so it cannot
    // be deleted (its pages stay lent to it); a message fits in the page.
    unsafe { page::write(pfn, 0, msg.as_bytes()) };
}

/// The linear address of the instruction at RIP.
fn code_address(r: &cpu::Regs) -> u64 {
    let long64 = r.efer & cpu::EFER_LMA != 0 && r.cs.attributes & (1 << 13) != 0;
    if long64 {
        r.rip
    } else {
        r.cs.base.wrapping_add(r.rip) & 0xffff_ffff
    }
}

/// Reads up to `len` bytes of the instruction at RIP (for messages the
/// interpreter gives no bytes for). Returns the bytes and how many it read.
fn fetch(r: &cpu::Regs, mem: &mut VpMemory<'_>, len: u8) -> ([u8; 16], u8) {
    use cpu::GuestMemory;
    let mut bytes = [0u8; 16];
    let want = usize::from(len).min(bytes.len());
    let mut done = 0;
    while done < want {
        let lin = code_address(r).wrapping_add(done as u64);
        let Ok(gpa) = cpu::linear_to_physical(r, mem, lin, cpu::Access::Execute) else {
            break;
        };
        let chunk = (want - done).min(HV_PAGE - (gpa & 0xfff) as usize);
        let Some(buf) = bytes.get_mut(done..done + chunk) else {
            break;
        };
        if mem.read(gpa, buf, cpu::Access::Execute).is_err() {
            break;
        }
        done += chunk;
    }
    (bytes, done as u8)
}

/// The VP register behind an MSR, for MSRs the hypervisor itself handles.
fn msr_register(msr: u32) -> Option<u32> {
    Some(match msr {
        0x10 => abi::HV_X64_REGISTER_TSC,
        0x1b => abi::HV_X64_REGISTER_APIC_BASE,
        0x174 => abi::HV_X64_REGISTER_SYSENTER_CS,
        0x175 => abi::HV_X64_REGISTER_SYSENTER_CS + 2,
        0x176 => abi::HV_X64_REGISTER_SYSENTER_CS + 1,
        0x277 => abi::HV_X64_REGISTER_PAT,
        0xc000_0081..=0xc000_0084 => abi::HV_X64_REGISTER_SYSENTER_CS + 3 + (msr - 0xc000_0081),
        0xc000_0102 => abi::HV_X64_REGISTER_KERNEL_GS_BASE,
        0xc000_0103 => abi::HV_X64_REGISTER_TSC_AUX,
        _ => return None,
    })
}

/// Whether the hypervisor implements `msr` (completes it as VP state).
fn msr_implemented(msr: u32) -> bool {
    matches!(msr, cpu::MSR_EFER | 0xc000_0100 | 0xc000_0101) || msr_register(msr).is_some()
}

/// Completes RDMSR/WRMSR inside the hypervisor if `msr` is VP state.
/// Returns whether it did (RIP then points after the instruction).
fn handle_msr(rf: &mut RegFile, write: bool, msr: u32, value: u64, len: u8) -> bool {
    let r = &mut rf.cpu;
    let read_value = match msr {
        cpu::MSR_EFER => {
            if write {
                cpu::set_efer(r, value);
            }
            r.efer
        }
        0xc000_0100 => {
            if write {
                r.fs.base = value;
            }
            r.fs.base
        }
        0xc000_0101 => {
            if write {
                r.gs.base = value;
            }
            r.gs.base
        }
        _ => {
            let Some(name) = msr_register(msr) else {
                return false;
            };
            if write {
                if rf.set(name, [value, 0]).is_err() {
                    return false;
                }
                value
            } else {
                match rf.get(name) {
                    Ok(v) => v[0],
                    Err(_) => return false,
                }
            }
        }
    };
    let r = &mut rf.cpu;
    if !write {
        if let Some(rax) = r.gpr.get_mut(0) {
            *rax = read_value & 0xffff_ffff;
        }
        if let Some(rdx) = r.gpr.get_mut(2) {
            *rdx = read_value >> 32;
        }
    }
    r.rip = r.rip.wrapping_add(u64::from(len));
    true
}

/// General-purpose register `i` (0 = RAX, 1 = RCX, 2 = RDX, 3 = RBX, ...).
fn gpr(r: &cpu::Regs, i: usize) -> u64 {
    r.gpr.get(i).copied().unwrap_or(0)
}

/// Builds the message for `exit` and writes it into `msg_pfn`. `r` is the
/// state after the exit.
fn post_exit(
    exit: cpu::Exit,
    r: &cpu::Regs,
    vp: u32,
    cr8: u64,
    cpuid_values: [u32; 4],
    mem: &mut VpMemory<'_>,
    msg_pfn: u64,
) {
    match exit {
        cpu::Exit::Halt => {
            // The interpreter moved RIP past the one-byte HLT; the message
            // reports the HLT itself.
            let h = header(vp, r, cr8, r.rip.wrapping_sub(1), 1, 0);
            post(msg_pfn, abi::HVMSG_X64_HALT, h.as_bytes());
        }
        cpu::Exit::Io {
            port,
            size,
            write,
            instruction_length,
            ..
        } => {
            let (instruction_bytes, count) = fetch(r, mem, instruction_length);
            let access = if write {
                abi::HV_INTERCEPT_ACCESS_WRITE
            } else {
                abi::HV_INTERCEPT_ACCESS_READ
            };
            let m = abi::HvX64IoPortInterceptMessage {
                header: header(vp, r, cr8, r.rip, instruction_length, access),
                port_number: port,
                access_info: size & 0x7,
                instruction_byte_count: count,
                reserved: 0,
                rax: gpr(r, 0),
                instruction_bytes,
                ds_segment: hv_seg(&r.ds),
                es_segment: hv_seg(&r.es),
                rcx: gpr(r, 1),
                rsi: gpr(r, 6),
                rdi: gpr(r, 7),
            };
            post(msg_pfn, abi::HVMSG_X64_IO_PORT_INTERCEPT, m.as_bytes());
        }
        cpu::Exit::Memory {
            fault,
            gva,
            instruction_bytes,
            instruction_length,
        } => {
            // The GVA translates to the faulting GPA unless the fault was on
            // a guest page-table read during that translation.
            let direct = match cpu::linear_to_physical(r, mem, gva, fault.access) {
                Ok(gpa) => gpa == fault.gpa,
                Err(_) => false,
            };
            let info = ACCESS_INFO_GVA_VALID | if direct { ACCESS_INFO_GVA_GPA_VALID } else { 0 };
            let m = abi::HvX64MemoryInterceptMessage {
                header: header(
                    vp,
                    r,
                    cr8,
                    r.rip,
                    instruction_length,
                    access_type(fault.access),
                ),
                cache_type: CACHE_TYPE_WRITE_BACK,
                instruction_byte_count: instruction_length.min(16),
                memory_access_info: info,
                tpr_priority: 0,
                reserved1: 0,
                guest_virtual_address: gva,
                guest_physical_address: fault.gpa,
                instruction_bytes,
            };
            let ty = if fault.unmapped {
                abi::HVMSG_UNMAPPED_GPA
            } else {
                abi::HVMSG_GPA_INTERCEPT
            };
            post(msg_pfn, ty, m.as_bytes());
        }
        cpu::Exit::Cpuid => {
            let (rax, rcx) = (gpr(r, 0), gpr(r, 1));
            let [a, b, c, d] = cpuid_values;
            let m = abi::HvX64CpuidInterceptMessage {
                header: header(vp, r, cr8, r.rip, 2, 0),
                rax,
                rcx,
                rdx: gpr(r, 2),
                rbx: gpr(r, 3),
                default_result_rax: u64::from(a),
                default_result_rcx: u64::from(c),
                default_result_rdx: u64::from(d),
                default_result_rbx: u64::from(b),
            };
            post(msg_pfn, abi::HVMSG_X64_CPUID_INTERCEPT, m.as_bytes());
        }
        cpu::Exit::Msr {
            write,
            msr,
            instruction_length,
            ..
        } => {
            let access = if write {
                abi::HV_INTERCEPT_ACCESS_WRITE
            } else {
                abi::HV_INTERCEPT_ACCESS_READ
            };
            let m = abi::HvX64MsrInterceptMessage {
                header: header(vp, r, cr8, r.rip, instruction_length, access),
                msr_number: msr,
                reserved: 0,
                rdx: gpr(r, 2),
                rax: gpr(r, 0),
            };
            post(msg_pfn, abi::HVMSG_X64_MSR_INTERCEPT, m.as_bytes());
        }
        cpu::Exit::Exception { rip, .. } => {
            let h = header(vp, r, cr8, rip, 0, 0);
            post(msg_pfn, abi::HVMSG_UNRECOVERABLE_EXCEPTION, h.as_bytes());
        }
        cpu::Exit::Budget => {}
    }
}

/// What the run loop does about interrupts before running guest code.
enum Interrupts {
    /// Nothing pending.
    None,
    /// An interrupt is pending but masked: run in short chunks.
    Masked,
}

/// How a time slice ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Leave {
    /// A message is in the intercept page; the VP is intercept-suspended.
    Intercept,
    /// Halted with nothing to deliver: the VP is blocked.
    Blocked,
    /// The time slice ended, or the root has work (signal, `need_resched`).
    Ready,
}

/// Writes `ROOT_DISPATCH_THREAD_BLOCKED` of `vp` into its PARENT stats page.
/// The caller keeps the VP's pages lent to it: the VP is in a slice, or the
/// caller holds the partition's lock and found the VP there.
pub(crate) fn set_dispatch_thread_blocked(vp: &Vp, blocked: bool) {
    let off = abi::HV_VP_COUNTER_ROOT_DISPATCH_THREAD_BLOCKED * 8;
    // SAFETY: the page is the VP's PARENT stats page, lent to it by the
    // pool (caller's promise); the counter is within it.
    unsafe {
        page::write(
            vp.stats_pfn.load(Relaxed),
            off,
            &u64::from(blocked).to_le_bytes(),
        )
    };
}

/// Whether `vp`'s `ROOT_DISPATCH_THREAD_BLOCKED` is set. The caller keeps
/// the VP's pages lent to it, as for [`set_dispatch_thread_blocked`].
pub(crate) fn dispatch_thread_blocked(vp: &Vp) -> bool {
    let mut b = [0u8; 8];
    // SAFETY: as in `set_dispatch_thread_blocked`.
    unsafe {
        page::read(
            vp.stats_pfn.load(Relaxed),
            abi::HV_VP_COUNTER_ROOT_DISPATCH_THREAD_BLOCKED * 8,
            &mut b,
        )
    };
    u64::from_le_bytes(b) != 0
}

/// The VP's dispatch answers BLOCKED (root scheduler): the dispatch thread
/// is blocked until the VP is signalled ([`super::sched::wake`] clears the
/// counter first). Called during the VP's slice or dispatch.
fn block(part: &ChildPartition, vp: &Vp) {
    if part.sched.kind == super::sched::Scheduler::Root {
        set_dispatch_thread_blocked(vp, true);
    }
    // After the counter: a waker that sees `blocked` sees the counter set.
    vp.blocked.store(true, Release);
}

/// Whether `vp` could run now (not halted with nothing deliverable, not
/// explicitly or dispatch-suspended).
pub(crate) fn runnable(vp: &Vp) -> bool {
    let (enabled, suspended) = {
        let rf = vp.regs.lock();
        (
            rf.cpu.interrupts_enabled(),
            rf.explicit_suspend || rf.dispatch_suspend,
        )
    };
    let apic = vp.lapic.lock();
    !suspended && (!apic.halted || apic.pending(enabled).is_some())
}

/// Delivers the interrupt the LAPIC has for the guest, if it can take one.
/// `Err` ends the dispatch: blocked (halted, nothing deliverable; marked
/// under the LAPIC lock, so an interrupt asserted after the check sees the
/// mark and signals), or the message of a delivery that faulted (the
/// interrupt stays pending and is delivered again on the next dispatch).
fn interrupts(
    part: &ChildPartition,
    vp: &Vp,
    msg_pfn: u64,
) -> core::result::Result<Interrupts, Leave> {
    let mut r = vp.regs.lock().cpu.clone();
    let enabled = r.interrupts_enabled();
    let pending = {
        let apic = vp.lapic.lock();
        if apic.halted && apic.pending(enabled).is_none() {
            block(part, vp);
            return Err(Leave::Blocked);
        }
        match apic.pending(enabled) {
            Some(p) => p,
            None if apic.any_pending() => return Ok(Interrupts::Masked),
            None => return Ok(Interrupts::None),
        }
    };
    let mut mem = VpMemory { part, vp: Some(vp) };
    match cpu::deliver_interrupt(&mut r, &mut mem, pending.vector()) {
        Ok(()) => {
            vp.regs.lock().cpu.clone_from(&r);
            vp.lapic.lock().accept(pending);
            Ok(Interrupts::None)
        }
        Err(exit) => {
            let cr8 = vp.regs.lock().cr8;
            post_exit(exit, &r, vp.index, cr8, [0; 4], &mut mem, msg_pfn);
            vp.regs.lock().intercept_suspend = true;
            Err(Leave::Intercept)
        }
    }
}

/// Most trips through the loop of one dispatch (CPUID and MSR exits the
/// hypervisor completes itself do not consume the instruction budget).
const MAX_TRIPS: u32 = 4096;

/// `HVCALL_DISPATCH_VP` of `vp` of `part` (root scheduler): runs it on the
/// calling CPU, which has preemption disabled, for at most one time slice
/// ([`CHUNK`] instructions). Nothing here sleeps. Returns
/// `(dispatch_state, dispatch_event)`:
///
/// - READY + INTERCEPT: a message is in `msg_pfn` (its intercept page) and
///   the VP is intercept-suspended until a dispatch with
///   `CLEAR_INTERCEPT_SUSPEND`; dispatching it without that flag is
///   `HV_STATUS_INVALID_VP_STATE`;
/// - BLOCKED: HLT with interrupts enabled and nothing to deliver (event
///   none), or explicitly suspended (event SUSPEND); a scheduler signal
///   follows when the VP becomes runnable ([`ChildPartition::wake`]);
/// - READY + none: the slice ended, or the root has work (a pending signal
///   or `need_resched`) and gets its CPU back.
///
/// Interrupts: before each chunk of guest code the VP's LAPIC delivers what
/// it has (NMI always, others with `RFLAGS.IF` set and no STI shadow)
/// through the guest's IDT. HLT with interrupts disabled exits with
/// `HVMSG_X64_HALT`. An x2APIC EOI completes here.
///
/// The caller marked the VP running under the partition lock (so its pages
/// stay lent to it) and clears the mark afterwards.
pub(crate) fn dispatch(
    part: &ChildPartition,
    vp: &Vp,
    msg_pfn: u64,
    flags: u32,
) -> HvResult<(u32, u32)> {
    {
        let mut rf = vp.regs.lock();
        if rf.intercept_suspend {
            if flags & abi::HV_DISPATCH_VP_FLAG_CLEAR_INTERCEPT_SUSPEND == 0 {
                return Err(HvError::INVALID_VP_STATE);
            }
            rf.intercept_suspend = false;
        }
    }
    vp.blocked.store(false, Relaxed);
    let leave = slice(part, vp, msg_pfn);
    if leave.is_none() {
        block(part, vp);
    }
    if matches!(leave, None | Some(Leave::Blocked)) {
        super::sched::dispatch_blocked(part, vp);
    }
    Ok(match leave {
        None => (
            abi::HV_VP_DISPATCH_STATE_BLOCKED,
            abi::HV_VP_DISPATCH_EVENT_SUSPEND,
        ),
        Some(Leave::Intercept) => (
            abi::HV_VP_DISPATCH_STATE_READY,
            abi::HV_VP_DISPATCH_EVENT_INTERCEPT,
        ),
        Some(Leave::Blocked) => (
            abi::HV_VP_DISPATCH_STATE_BLOCKED,
            abi::HV_VP_DISPATCH_EVENT_INVALID,
        ),
        Some(Leave::Ready) => (
            abi::HV_VP_DISPATCH_STATE_READY,
            abi::HV_VP_DISPATCH_EVENT_INVALID,
        ),
    })
}

/// One time slice of `vp` (either scheduler; the caller has preemption
/// disabled and marked the VP running): the register classes the VMM wrote
/// through the register page take effect, then, unless the VP is explicitly
/// suspended (`None`), it runs until it leaves. The register page shows
/// the state afterwards.
pub(crate) fn slice(part: &ChildPartition, vp: &Vp, msg_pfn: u64) -> Option<Leave> {
    let dirty = super::reg_page::take_dirty(part, vp.index);
    let suspended = {
        let mut rf = vp.regs.lock();
        if let Some((img, dirty)) = &dirty {
            super::reg_page::import(&mut rf, img, *dirty);
        }
        rf.explicit_suspend || rf.dispatch_suspend
    };
    let leave = if suspended {
        None
    } else {
        Some(run_loop(part, vp, msg_pfn))
    };
    let mut img = [0u8; super::reg_page::IMAGE];
    super::reg_page::export(&vp.regs.lock(), &mut img);
    super::reg_page::publish(part, vp.index, &img);
    leave
}

/// The dispatch loop proper; see [`dispatch`].
fn run_loop(part: &ChildPartition, vp: &Vp, msg_pfn: u64) -> Leave {
    for _ in 0..MAX_TRIPS {
        if page::signal_pending() || crate::sys::cpu::need_resched() {
            return Leave::Ready;
        }
        let budget = match interrupts(part, vp, msg_pfn) {
            Ok(Interrupts::None) => CHUNK,
            Ok(Interrupts::Masked) => PENDING_CHUNK,
            Err(exit) => return exit,
        };
        let mut r = vp.regs.lock().cpu.clone();
        let mut mem = VpMemory { part, vp: Some(vp) };
        let (exit, _) = cpu::run(&mut r, &mut mem, budget);
        if let cpu::Exit::Msr {
            write: true,
            msr: lapic::MSR_X2APIC_EOI,
            instruction_length,
            ..
        } = exit
        {
            // An x2APIC EOI completes in the hypervisor, whatever the
            // partition's MSR intercepts say.
            {
                let mut rf = vp.regs.lock();
                rf.cpu.clone_from(&r);
                rf.cpu.rip = rf.cpu.rip.wrapping_add(u64::from(instruction_length));
            }
            let eoi = vp.lapic.lock().eoi();
            irq::report_eoi(part, vp.index, eoi);
            continue;
        }
        // CPUID and MSR policy first: it takes the partition's lock, which
        // never nests with the registers'.
        let mut cpuid_values = [0u32; 4];
        let mut to_vmm = true;
        let mut ignore_unimplemented = false;
        match exit {
            cpu::Exit::Cpuid => {
                let xcr0 = vp
                    .regs
                    .lock()
                    .get(abi::HV_X64_REGISTER_XFEM)
                    .map_or(1, |v| v[0]);
                let (values, intercepted) = intercept::evaluate_cpuid(
                    part,
                    vp,
                    gpr(&r, 0) as u32,
                    gpr(&r, 1) as u32,
                    r.cr4,
                    xcr0,
                );
                cpuid_values = values;
                to_vmm = intercepted;
            }
            cpu::Exit::Msr { write, msr, .. } => {
                let (intercepted, ignore) =
                    intercept::msr_policy(part, msr, write, msr_implemented(msr));
                to_vmm = intercepted;
                ignore_unimplemented = ignore;
            }
            _ => {}
        }
        let cr8 = {
            let mut rf = vp.regs.lock();
            rf.cpu.clone_from(&r);
            match exit {
                cpu::Exit::Cpuid if !to_vmm => {
                    // RAX, RCX, RDX, RBX get EAX, ECX, EDX, EBX.
                    let [a, b, c, d] = cpuid_values;
                    for (i, v) in [(0, a), (1, c), (2, d), (3, b)] {
                        if let Some(g) = rf.cpu.gpr.get_mut(i) {
                            *g = u64::from(v);
                        }
                    }
                    rf.cpu.rip = rf.cpu.rip.wrapping_add(2);
                    continue;
                }
                cpu::Exit::Msr {
                    write,
                    msr,
                    value,
                    instruction_length,
                } if !to_vmm => {
                    if handle_msr(&mut rf, write, msr, value, instruction_length) {
                        continue;
                    }
                    if ignore_unimplemented {
                        if !write {
                            for i in [0, 2] {
                                if let Some(g) = rf.cpu.gpr.get_mut(i) {
                                    *g = 0;
                                }
                            }
                        }
                        rf.cpu.rip = rf.cpu.rip.wrapping_add(u64::from(instruction_length));
                        continue;
                    }
                }
                _ => {}
            }
            rf.cr8
        };
        if exit == cpu::Exit::Budget {
            // The time slice is over.
            return Leave::Ready;
        }
        if exit == cpu::Exit::Halt && r.interrupts_enabled() {
            // Halted inside the hypervisor until an interrupt arrives.
            vp.lapic.lock().halted = true;
            continue;
        }
        post_exit(exit, &r, vp.index, cr8, cpuid_values, &mut mem, msg_pfn);
        vp.regs.lock().intercept_suspend = true;
        return Leave::Intercept;
    }
    Leave::Ready
}

/// Whether register `name` may be written now: the suspend registers always,
/// the others only while the VP is not in a time slice (its state is then
/// owned by the run loop).
pub(crate) fn writable_now(vp: &Vp, name: u32) -> bool {
    regs::is_suspend(name) || !vp.running.load(Relaxed)
}
