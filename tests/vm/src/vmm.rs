// SPDX-License-Identifier: GPL-2.0
//
// The tests' side of the mini-VMM: the shared one (tests/mini-vmm: partition
// set-up, VP registers, exit decoding) with test failures for errors, the
// partition's debugfs view, and a driver for the monitor32 guest's port
// protocol.

use std::path::PathBuf;

use mshv_bindings::*;
use mshv_ioctls::{Mshv, MshvError, VcpuFd, VmFd};
pub use mshv_mini_vmm::exit::{decode, Exit, MemKind, ACCESS_EXECUTE, ACCESS_READ, ACCESS_WRITE};
use mshv_mini_vmm::partition;
use mshv_mini_vmm::regs;
pub use mshv_mini_vmm::regs::reg64;

use crate::guest;
use crate::uapi::MEM_RWX;
use crate::util::*;
use crate::{ensure, ensure_eq, fail, note};

/// `MshvError` → errno.
pub fn err_no(e: MshvError) -> i32 {
    e.errno()
}

pub fn show_err(e: MshvError) -> String {
    match e {
        MshvError::Errno(_) => errname(e.errno()),
        other => other.to_string(),
    }
}

pub fn open_mshv() -> TResult<Mshv> {
    Mshv::new().map_err(|e| Failure::Fail(format!("open /dev/mshv: {}", show_err(e))))
}

/// A partition created and initialized the way a VMM does it
/// ([`partition::create`]), with its debugfs view.
pub struct Partition {
    pub vm: VmFd,
    /// Its debugfs directory, or why there is none.
    pub debugfs: Result<PathBuf, String>,
}

impl Partition {
    pub fn new(mshv: &Mshv) -> TResult<Partition> {
        let vm = crate_call("create_vm", || partition::create(mshv))??;
        let debugfs = latest_partition_dir();
        Ok(Partition { vm, debugfs })
    }

    /// Maps `size` bytes of `mem` starting at `off` at guest page `gfn`.
    pub fn map(&self, mem: &Mmap, off: usize, size: usize, gfn: u64, flags: u8) -> TResult {
        self.map_addr(mem.addr() + off as u64, size, gfn, flags)
    }

    pub fn map_addr(&self, uaddr: u64, size: usize, gfn: u64, flags: u8) -> TResult {
        Ok(partition::map_user(
            &self.vm,
            uaddr,
            size as u64,
            gfn,
            flags,
        )?)
    }

    pub fn vcpu(&self, index: u8) -> TResult<VcpuFd> {
        Ok(partition::create_vp(&self.vm, index)?)
    }

    /// Its debugfs directory, which must exist (the driver creates it on
    /// every backend). A missing one fails the test, except under
    /// MSHV_FAULTS (see [`debugfs_missing`]): failslab may fail the
    /// driver's debugfs_create_dir, and the driver, as kernel code should,
    /// carries on without its debugfs files.
    pub fn debugfs_dir(&self) -> TResult<PathBuf> {
        match &self.debugfs {
            Ok(d) => Ok(d.clone()),
            Err(e) => {
                note!("no partition debugfs directory: {e}");
                Err(debugfs_missing(&partitions_dir().join("<id>"), false))
            }
        }
    }

    /// The partition's id, from the name of its debugfs directory (which
    /// every backend creates: a partition without one fails the test).
    pub fn id(&self) -> TResult<u64> {
        let dir = self
            .debugfs
            .as_ref()
            .map_err(|e| Failure::Fail(format!("no partition debugfs directory: {e}")))?;
        dir.file_name()
            .and_then(|n| n.to_str())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Failure::Fail(format!("no partition id in {}", dir.display())))
    }

    /// The partition's `stats`, which must exist.
    pub fn stats(&self) -> TResult<std::collections::BTreeMap<String, u64>> {
        let dir = self.debugfs_dir()?;
        retry_under_faults(|| partition_stats(&dir))
    }

    /// Logs the stats as a diagnostic, if they can be read.
    pub fn note_stats(&self, when: &str) {
        match self.stats() {
            Ok(s) => note!("stats {when}: {}", show_kv(&s)),
            Err(Failure::Fail(e) | Failure::Skip(e)) => note!("stats {when}: unavailable: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Registers

pub fn set_regs(vcpu: &VcpuFd, regs: &[hv_register_assoc]) -> TResult {
    Ok(regs::set_regs(vcpu, regs)?)
}

pub fn get_reg64(vcpu: &VcpuFd, name: hv_register_name) -> TResult<u64> {
    Ok(regs::get_reg64(vcpu, name)?)
}

pub fn get_seg(vcpu: &VcpuFd, name: hv_register_name) -> TResult<hv_x64_segment_register> {
    Ok(regs::get_seg(vcpu, name)?)
}

/// Puts the VP in 64-bit mode with paging at `entry`, page tables at `cr3`
/// (see [`regs::enter_long_mode`]).
pub fn enter_long_mode(vcpu: &VcpuFd, cr3: u64, entry: u64) -> TResult {
    Ok(regs::enter_long_mode(vcpu, cr3, entry)?)
}

/// Puts the VP in 32-bit flat protected mode at `entry` with RSP = `esp`
/// (see [`regs::enter_protected_mode`]).
pub fn enter_protected_mode(vcpu: &VcpuFd, entry: u64, esp: u64) -> TResult {
    Ok(regs::enter_protected_mode(vcpu, entry, esp, &[])?)
}

// ---------------------------------------------------------------------------
// Exits (decoded by mshv-mini-vmm)

/// One MSHV_RUN_VP; `Err(errno)` when the ioctl fails.
pub fn run(vcpu: &VcpuFd) -> Result<Exit, i32> {
    vcpu.run().map(|m| decode(&m)).map_err(err_no)
}

/// Completes a port access as a VMM does: RIP += instruction length and, for
/// an IN, RAX = the value (merged into the low `size` bytes).
pub fn complete_io(vcpu: &VcpuFd, exit: &Exit, in_value: Option<u32>) -> TResult {
    let Some(regs) = exit.io_completion(in_value) else {
        fail!("complete_io on a non-I/O exit: {exit}");
    };
    set_regs(vcpu, &regs)
}

// ---------------------------------------------------------------------------
// The monitor32 guest

pub const CMD_HALT: u32 = 0;
pub const CMD_READ: u32 = 1;
pub const CMD_WRITE: u32 = 2;
pub const CMD_FILL: u32 = 3;
pub const CMD_PATTERN_WRITE: u32 = 4;
pub const CMD_PATTERN_CHECK: u32 = 5;
pub const CMD_CHECK_CONST: u32 = 6;
pub const CMD_TOUCH: u32 = 7;
pub const CMD_UD2: u32 = 8;
pub const CMD_SPIN: u32 = 9;
pub const CMD_PAGE_CHECK: u32 = 10;

pub const PORT_CMD: u16 = 0x20;
pub const PORT_ARG: u16 = 0x21;
pub const PORT_RESULT: u16 = 0x22;
pub const PORT_AUX: u16 = 0x23;
pub const PORT_BAD_CMD: u16 = 0x2f;

/// Code region of the monitor tests: GPA 0..64 KiB, the monitor at 0x1000.
pub const CODE_GFN: u64 = 0;
pub const CODE_SIZE: usize = 64 * 1024;
pub const MONITOR_STACK: u64 = 0xf000;

/// Allocates and maps the code region, loads monitor32 into it.
pub fn load_monitor(p: &Partition) -> TResult<Mmap> {
    let mut code = Mmap::anon(CODE_SIZE)?;
    let off = (guest::monitor32::LOAD - CODE_GFN * PAGE as u64) as usize;
    code.bytes_mut(off, guest::MONITOR32.len())
        .copy_from_slice(guest::MONITOR32);
    p.map(&code, 0, CODE_SIZE, CODE_GFN, MEM_RWX)?;
    Ok(code)
}

/// A new partition with monitor32 loaded, its code mapping (keep it while
/// the VP runs) and VP 0.
pub fn monitor_partition() -> TResult<(Partition, Mmap, VcpuFd)> {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let code = load_monitor(&p)?;
    let vcpu = p.vcpu(0)?;
    Ok((p, code, vcpu))
}

/// Drives monitor32 (see tests/guest/monitor32.S for the protocol).
pub struct Monitor<'a> {
    pub vcpu: &'a VcpuFd,
    pub exits: u64,
    /// The VP index its port intercepts must carry.
    pub vp: u32,
}

/// What a CHECK command found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    pub gpa: u32,
    pub found: u32,
}

impl<'a> Monitor<'a> {
    /// Sets the VP up to run monitor32 (already loaded by `load_monitor`).
    pub fn start(vcpu: &'a VcpuFd) -> TResult<Monitor<'a>> {
        Self::start_vp(vcpu, 0)
    }

    /// As `start`, for VP `vp` (all VPs can share the monitor's code: it
    /// uses no stack and no data of its own).
    pub fn start_vp(vcpu: &'a VcpuFd, vp: u32) -> TResult<Monitor<'a>> {
        enter_protected_mode(vcpu, guest::monitor32::START, MONITOR_STACK)?;
        Ok(Monitor { vcpu, exits: 0, vp })
    }

    /// One RUN_VP, errors as errno.
    pub fn run_raw(&mut self) -> Result<Exit, i32> {
        let r = run(self.vcpu);
        if r.is_ok() {
            self.exits += 1;
        }
        r
    }

    /// One RUN_VP that must succeed.
    pub fn run(&mut self) -> TResult<Exit> {
        self.run_raw()
            .map_err(|e| errno_failure("MSHV_RUN_VP failed", e))
    }

    /// Checks what every monitor port access must look like.
    fn check_io(&self, exit: &Exit) -> TResult {
        if let Exit::Io { vp, size, len, .. } = *exit {
            ensure_eq!(vp, self.vp, "vp_index of the intercept ({exit})");
            ensure_eq!(size, 4, "access size of a 32-bit IN/OUT imm8 ({exit})");
            ensure_eq!(
                len,
                2,
                "instruction_length of IN/OUT imm8, 2 bytes ({exit})"
            );
        }
        Ok(())
    }

    /// Runs until the guest reads `port`, answers `value`.
    fn answer_in(&mut self, port: u16, value: u32, what: &str) -> TResult {
        let exit = self.run()?;
        match exit {
            Exit::Io {
                port: p,
                write: false,
                ..
            } if p == port => {
                self.check_io(&exit)?;
                complete_io(self.vcpu, &exit, Some(value))
            }
            other => fail!("{what}: expected the guest to read port {port:#x} (IN), got {other}"),
        }
    }

    /// Feeds a command and its arguments; the guest then executes it.
    pub fn begin(&mut self, cmd: u32, args: &[u32]) -> TResult {
        self.answer_in(PORT_CMD, cmd, &format!("command {cmd}"))?;
        for (i, a) in args.iter().enumerate() {
            self.answer_in(PORT_ARG, *a, &format!("command {cmd} argument {i}"))?;
        }
        Ok(())
    }

    /// Runs until the command's final result; returns (aux, result).
    pub fn finish(&mut self, what: &str) -> TResult<(Option<u32>, u32)> {
        let mut aux = None;
        loop {
            let exit = self.run()?;
            match exit {
                Exit::Io {
                    port,
                    write: true,
                    rax,
                    ..
                } if port == PORT_AUX || port == PORT_RESULT => {
                    self.check_io(&exit)?;
                    complete_io(self.vcpu, &exit, None)?;
                    if port == PORT_AUX {
                        aux = Some(rax as u32);
                    } else {
                        return Ok((aux, rax as u32));
                    }
                }
                Exit::Io {
                    port: PORT_BAD_CMD,
                    rax,
                    ..
                } => fail!("{what}: the guest did not understand command {rax:#x}"),
                other => {
                    fail!("{what}: expected the guest's result (OUT {PORT_RESULT:#x}), got {other}")
                }
            }
        }
    }

    pub fn cmd(&mut self, cmd: u32, args: &[u32], what: &str) -> TResult<u32> {
        self.begin(cmd, args)?;
        Ok(self.finish(what)?.1)
    }

    pub fn read(&mut self, gpa: u32) -> TResult<u32> {
        self.cmd(CMD_READ, &[gpa], &format!("guest read of {gpa:#x}"))
    }

    pub fn write(&mut self, gpa: u32, v: u32) -> TResult {
        let r = self.cmd(CMD_WRITE, &[gpa, v], &format!("guest write of {gpa:#x}"))?;
        ensure_eq!(Hex(r as u64), Hex(v as u64), "WRITE result");
        Ok(())
    }

    pub fn fill(&mut self, gpa: u32, count: u32, v: u32) -> TResult {
        self.cmd(CMD_FILL, &[gpa, count, v], "guest fill")?;
        Ok(())
    }

    pub fn pattern_write(&mut self, gpa: u32, count: u32, seed: u32) -> TResult {
        let what = format!("guest pattern write of {count:#x} dwords at {gpa:#x}");
        let r = self.cmd(CMD_PATTERN_WRITE, &[gpa, count, seed], &what)?;
        ensure_eq!(r, 0, "{what}: result");
        Ok(())
    }

    fn check(
        &mut self,
        cmd: u32,
        gpa: u32,
        count: u32,
        v: u32,
        what: &str,
    ) -> TResult<Option<Mismatch>> {
        self.begin(cmd, &[gpa, count, v])?;
        let (aux, r) = self.finish(what)?;
        let Some(found) = aux else {
            fail!("{what}: the guest reported no auxiliary value before its result");
        };
        if r == u32::MAX {
            return Ok(None);
        }
        Ok(Some(Mismatch { gpa: r, found }))
    }

    /// The guest checks `count` dwords at `gpa` against the pattern.
    pub fn pattern_check(&mut self, gpa: u32, count: u32, seed: u32) -> TResult<Option<Mismatch>> {
        self.check(
            CMD_PATTERN_CHECK,
            gpa,
            count,
            seed,
            &format!("guest pattern check of {count:#x} dwords at {gpa:#x}"),
        )
    }

    /// The guest checks `count` dwords at `gpa` against `value`.
    pub fn check_const(&mut self, gpa: u32, count: u32, value: u32) -> TResult<Option<Mismatch>> {
        self.check(
            CMD_CHECK_CONST,
            gpa,
            count,
            value,
            &format!("guest check of {count:#x} dwords at {gpa:#x}"),
        )
    }

    /// Like `pattern_check`, failing with expected vs actual on a mismatch.
    pub fn expect_pattern(&mut self, gpa: u32, len: usize, seed: u32, what: &str) -> TResult {
        if let Some(m) = self.pattern_check(gpa, dwords(len), seed)? {
            fail!(
                "{what}: the guest sees a wrong dword at GPA {:#x}\nexpected: {:#010x}\nactual:   {:#010x}",
                m.gpa,
                pattern_word(m.gpa as u64, seed),
                m.found
            );
        }
        Ok(())
    }

    /// Like `check_const`, failing with expected vs actual on a mismatch.
    pub fn expect_const(&mut self, gpa: u32, len: usize, value: u32, what: &str) -> TResult {
        if let Some(m) = self.check_const(gpa, dwords(len), value)? {
            fail!(
                "{what}: the guest sees a wrong dword at GPA {:#x}\nexpected: {value:#010x}\nactual:   {:#010x}",
                m.gpa,
                m.found
            );
        }
        Ok(())
    }

    /// The guest checks the first dword of each of `pages` pages at `gpa`
    /// against the pattern (`P ^ seed` at page address P).
    pub fn expect_pages(&mut self, gpa: u32, pages: u32, seed: u32, what: &str) -> TResult {
        self.begin(CMD_PAGE_CHECK, &[gpa, pages, seed])?;
        let (aux, r) = self.finish(what)?;
        let Some(found) = aux else {
            fail!("{what}: the guest reported no auxiliary value before its result");
        };
        if r != u32::MAX {
            fail!(
                "{what}: the guest sees a wrong dword at GPA {r:#x}\nexpected: {:#010x}\nactual:   {found:#010x}",
                pattern_word(r as u64, seed)
            );
        }
        Ok(())
    }

    pub fn touch(&mut self, gpa: u32, pages: u32) -> TResult {
        let r = self.cmd(CMD_TOUCH, &[gpa, pages], "guest touch")?;
        ensure_eq!(r, 0, "TOUCH result");
        Ok(())
    }

    /// HALT: the run must end with HVMSG_X64_HALT at hlt_insn.
    pub fn halt(&mut self) -> TResult {
        self.answer_in(PORT_CMD, CMD_HALT, "command HALT")?;
        let exit = self.run()?;
        match exit {
            Exit::Halt { rip } => {
                let h = guest::monitor32::HLT_INSN;
                ensure!(
                    rip == h || rip == h + 1,
                    "HVMSG_X64_HALT rip\nexpected: {:#x} (hlt_insn) or {:#x}\nactual:   {rip:#x}",
                    h,
                    h + 1
                );
                Ok(())
            }
            other => fail!("HALT: expected HVMSG_X64_HALT, got {other}"),
        }
    }

    /// Sets RIP (and optionally RAX): used to emulate an intercepted access.
    pub fn jump(&mut self, rip: u64, rax: Option<u64>) -> TResult {
        let mut regs = vec![reg64(hv_register_name_HV_X64_REGISTER_RIP, rip)];
        if let Some(v) = rax {
            regs.push(reg64(hv_register_name_HV_X64_REGISTER_RAX, v));
        }
        set_regs(self.vcpu, &regs)
    }
}

/// Checks a memory intercept: kind, access type, GPA, RIP, and the
/// instruction bytes if the message carries any.
pub fn expect_mem_exit(
    exit: &Exit,
    kind: MemKind,
    access: u8,
    gpa: u64,
    rip: u64,
    insn: &[u8],
    what: &str,
) -> TResult {
    let Exit::Mem {
        kind: k,
        access: a,
        gpa: g,
        rip: r,
        insn: bytes,
        vp,
    } = exit
    else {
        fail!(
            "{what}\nexpected: {} for GPA {gpa:#x}\nactual:   {exit}",
            match kind {
                MemKind::Unmapped => "HVMSG_UNMAPPED_GPA",
                MemKind::Intercept => "HVMSG_GPA_INTERCEPT",
            }
        );
    };
    ensure_eq!(*k, kind, "{what}: message type ({exit})");
    ensure_eq!(*vp, 0, "{what}: vp_index ({exit})");
    ensure_eq!(
        *a,
        access,
        "{what}: intercept_access_type (0 read, 1 write) ({exit})"
    );
    ensure_eq!(Hex(*g), Hex(gpa), "{what}: guest_physical_address ({exit})");
    ensure_eq!(
        Hex(*r),
        Hex(rip),
        "{what}: rip of the faulting instruction ({exit})"
    );
    if !bytes.is_empty() {
        let n = bytes.len().min(insn.len());
        ensure_eq!(
            &bytes[..n],
            &insn[..n],
            "{what}: instruction_bytes ({exit})"
        );
    }
    Ok(())
}
