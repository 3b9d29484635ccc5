// SPDX-License-Identifier: GPL-2.0

//! A flat guest-physical memory for testing the CPU interpreter.

use crate::cpu::{self, Access, Exit, GuestMemory, MemFault, Regs, Segment};
use std::collections::{BTreeSet, VecDeque};

/// The page size the CPU splits accesses at.
pub const PAGE: u64 = 4096;

/// A `Vec<u8>`-backed guest memory starting at GPA 0, plus an optional ROM that ends at 4 GiB.
///
/// Pages can be made inaccessible ("no access": mapped, but every access faults) or unmapped.
/// Every call checks the [`GuestMemory`] contract (1..=16 bytes, no page crossing) and panics
/// if the CPU breaks it.
#[derive(Default)]
pub struct TestMem {
    /// RAM at GPA 0.
    pub ram: Vec<u8>,
    /// ROM ending at GPA 0x1_0000_0000 (read and execute only, like a firmware region).
    pub rom: Vec<u8>,
    /// Page numbers (GPA >> 12) that are mapped without any access.
    pub no_access: BTreeSet<u64>,
    /// Page numbers (GPA >> 12) that are not mapped.
    pub unmapped: BTreeSet<u64>,
    /// Page numbers (GPA >> 12) that are mapped read-only.
    pub read_only: BTreeSet<u64>,
    /// Values returned for IN instructions handled without an exit; an empty queue makes IN
    /// exit.
    pub io_in: VecDeque<u32>,
    /// Whether OUT instructions are handled without an exit (they are then logged).
    pub io_out_handled: bool,
    /// The port accesses handled without an exit: port, size, write, value.
    pub io_log: Vec<(u16, u8, bool, u32)>,
    /// The number of `read` calls.
    pub reads: u64,
    /// The number of `write` calls.
    pub writes: u64,
    /// Every `read` call: GPA, length and access.
    pub read_log: Vec<(u64, usize, Access)>,
    /// Whether to record `read_log`.
    pub log_reads: bool,
    /// When set, every successful write records the GPA and the bytes it replaced.
    pub undo_log: Option<Vec<(u64, Vec<u8>)>>,
}

impl TestMem {
    /// Creates `size` bytes of zeroed RAM.
    pub fn new(size: usize) -> Self {
        TestMem {
            ram: vec![0; size],
            ..Default::default()
        }
    }

    fn rom_base(&self) -> u64 {
        0x1_0000_0000 - self.rom.len() as u64
    }

    fn check(&self, gpa: u64, len: usize, access: Access) -> Result<(), MemFault> {
        assert!((1..=16).contains(&len), "access of {len} bytes");
        let last = gpa
            .checked_add(len as u64 - 1)
            .expect("access wraps around the address space");
        assert_eq!(
            gpa / PAGE,
            last / PAGE,
            "access at {gpa:#x} of {len} bytes crosses a page"
        );
        let page = gpa / PAGE;
        let fault = |unmapped| {
            Err(MemFault {
                gpa,
                access,
                unmapped,
            })
        };
        if self.unmapped.contains(&page) {
            return fault(true);
        }
        if self.no_access.contains(&page) {
            return fault(false);
        }
        if access == Access::Write && self.read_only.contains(&page) {
            return fault(false);
        }
        let end = u128::from(last) + 1;
        if end <= self.ram.len() as u128 {
            return Ok(());
        }
        if !self.rom.is_empty() && gpa >= self.rom_base() && end <= 0x1_0000_0000 {
            if access == Access::Write {
                return fault(false);
            }
            return Ok(());
        }
        fault(true)
    }

    /// Copies `data` into memory at `gpa` (RAM or ROM), bypassing all checks.
    pub fn load(&mut self, gpa: u64, data: &[u8]) {
        if gpa >= self.rom_base() && !self.rom.is_empty() {
            let off = (gpa - self.rom_base()) as usize;
            self.rom[off..off + data.len()].copy_from_slice(data);
        } else {
            let off = gpa as usize;
            self.ram[off..off + data.len()].copy_from_slice(data);
        }
    }

    /// Returns `len` bytes of RAM at `gpa`.
    pub fn bytes(&self, gpa: u64, len: usize) -> &[u8] {
        &self.ram[gpa as usize..gpa as usize + len]
    }

    /// Reads a little-endian u64 from RAM.
    pub fn u64_at(&self, gpa: u64) -> u64 {
        u64::from_le_bytes(self.bytes(gpa, 8).try_into().unwrap())
    }

    /// Reads a little-endian u32 from RAM.
    pub fn u32_at(&self, gpa: u64) -> u32 {
        u32::from_le_bytes(self.bytes(gpa, 4).try_into().unwrap())
    }

    /// Whether the writes recorded in `undo_log` left memory as it was before them.
    pub fn writes_undone(&self) -> bool {
        let Some(log) = &self.undo_log else {
            return true;
        };
        let mut original = std::collections::BTreeMap::new();
        for (gpa, old) in log {
            for (i, b) in old.iter().enumerate() {
                original.entry(gpa + i as u64).or_insert(*b);
            }
        }
        original
            .iter()
            .all(|(&gpa, &b)| self.ram[gpa as usize] == b)
    }

    /// Writes a little-endian u64 to RAM.
    pub fn set_u64(&mut self, gpa: u64, v: u64) {
        self.load(gpa, &v.to_le_bytes());
    }
}

impl GuestMemory for TestMem {
    fn read(&mut self, gpa: u64, buf: &mut [u8], access: Access) -> Result<(), MemFault> {
        assert_ne!(access, Access::Write, "read with Access::Write");
        self.reads += 1;
        if self.log_reads {
            self.read_log.push((gpa, buf.len(), access));
        }
        self.check(gpa, buf.len(), access)?;
        let end = gpa as usize + buf.len();
        if end <= self.ram.len() {
            buf.copy_from_slice(&self.ram[gpa as usize..end]);
        } else {
            let off = (gpa - self.rom_base()) as usize;
            buf.copy_from_slice(&self.rom[off..off + buf.len()]);
        }
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemFault> {
        self.writes += 1;
        self.check(gpa, data.len(), Access::Write)?;
        let range = gpa as usize..gpa as usize + data.len();
        if let Some(log) = &mut self.undo_log {
            log.push((gpa, self.ram[range.clone()].to_vec()));
        }
        self.ram[range].copy_from_slice(data);
        Ok(())
    }

    fn io(&mut self, port: u16, size: u8, write: bool, value: u32) -> Option<u32> {
        if write {
            if self.io_out_handled {
                self.io_log.push((port, size, write, value));
                return Some(0);
            }
            None
        } else {
            let v = self.io_in.pop_front()?;
            self.io_log.push((port, size, write, v));
            Some(v)
        }
    }
}

/// Registers for 16-bit real mode with CS = DS = ES = SS = 0, IP = `ip` and SP = 0x7000.
pub fn real_mode(ip: u64) -> Regs {
    let mut r = Regs::reset();
    r.cs.selector = 0;
    r.cs.base = 0;
    r.rip = ip;
    r.gpr = [0; 16];
    r.gpr[4] = 0x7000;
    r
}

/// A flat 4 GiB 32-bit segment with the given type attributes.
pub fn flat32(selector: u16, attributes: u16) -> Segment {
    Segment {
        selector,
        base: 0,
        limit: 0xffff_ffff,
        attributes,
    }
}

/// Registers for flat 32-bit protected mode (paging off) at `eip`, ESP = 0x7000.
pub fn prot32(eip: u64) -> Regs {
    let mut r = real_mode(eip);
    r.cr0 |= 1;
    r.cs = flat32(0x08, 0xc09b);
    let data = flat32(0x10, 0xc093);
    r.ds = data;
    r.es = data;
    r.fs = data;
    r.gs = data;
    r.ss = data;
    r
}

/// The GPA of the PML4 that [`identity_map`] builds.
pub const PML4: u64 = 0x1000;
/// The GPA of the PDPT that [`identity_map`] builds.
pub const PDPT: u64 = 0x2000;
/// The GPA of the page directory that [`identity_map`] builds.
pub const PD: u64 = 0x3000;

/// Builds page tables at 0x1000-0x3FFF identity-mapping the first 1 GiB with 2 MiB pages.
pub fn identity_map(mem: &mut TestMem) {
    mem.set_u64(PML4, PDPT | 3);
    mem.set_u64(PDPT, PD | 3);
    for i in 0..512u64 {
        mem.set_u64(PD + 8 * i, (i << 21) | 0x83);
    }
}

/// Registers for 64-bit long mode at `rip` with paging rooted at [`PML4`], RSP = 0x7000.
pub fn long64(rip: u64) -> Regs {
    let mut r = prot32(rip);
    r.cs = Segment {
        selector: 0x18,
        base: 0,
        limit: 0xffff_ffff,
        attributes: 0xa09b,
    };
    r.cr4 = 0x20;
    r.cr3 = PML4;
    r.efer = cpu::EFER_LME | cpu::EFER_LMA;
    r.cr0 |= 0x8000_0000;
    r
}

/// Loads `code` at `at` and runs until an exit, with a budget of one million.
pub fn run_at(regs: &mut Regs, mem: &mut TestMem, at: u64, code: &[u8]) -> (Exit, u64) {
    mem.load(at, code);
    cpu::run(regs, mem, 1_000_000)
}

/// A tiny assembler helper: emits bytes at a known address and patches forward references.
pub struct Asm {
    /// The GPA (and offset for CS base 0) of the first byte.
    pub origin: u64,
    /// The bytes emitted so far.
    pub code: Vec<u8>,
}

impl Asm {
    /// Starts emitting at `origin`.
    pub fn new(origin: u64) -> Self {
        Asm {
            origin,
            code: Vec::new(),
        }
    }

    /// The address of the next byte.
    pub fn here(&self) -> u64 {
        self.origin + self.code.len() as u64
    }

    /// Appends `bytes` and returns the address of the first one.
    pub fn emit(&mut self, bytes: &[u8]) -> u64 {
        let at = self.here();
        self.code.extend_from_slice(bytes);
        at
    }

    /// Overwrites the bytes at address `at` with `bytes`.
    pub fn patch(&mut self, at: u64, bytes: &[u8]) {
        let off = (at - self.origin) as usize;
        self.code[off..off + bytes.len()].copy_from_slice(bytes);
    }
}
