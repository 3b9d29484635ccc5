// SPDX-License-Identifier: GPL-2.0

//! Random instruction streams: the interpreter must never panic (the tests run with overflow
//! checks), must respect the `GuestMemory` contract (checked by `TestMem`), and an instruction
//! that exits without retiring must leave no trace.

use mshv_rs_host_tests::cpu::{run, Exit, Regs, Segment};
use mshv_rs_host_tests::testmem::{identity_map, long64, prot32, real_mode, TestMem};

/// How many times more programs to run (`CPU_FUZZ_SCALE`, default 1), and the seed offset.
fn scale() -> u64 {
    std::env::var("CPU_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// xorshift64*: deterministic, so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A register value that often points into (or just around) guest memory.
    fn value(&mut self) -> u64 {
        match self.below(6) {
            0 => self.next(),
            1 => self.below(0x20),
            2 => 0x1000 * self.below(0x20) + 0x1000 - self.below(8),
            3 => self.below(0x20000),
            4 => u64::MAX - self.below(0x10),
            _ => self.below(0x100) << 8,
        }
    }
}

/// Opcodes the interpreter implements, to make random streams less dominated by #UD.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x03, 0x05, 0x0f, 0x29, 0x31, 0x39, 0x3c, 0x48, 0x50, 0x58, 0x66, 0x67, 0x68, 0x6b,
    0x74, 0x80, 0x83, 0x85, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x99, 0x9d, 0xa1,
    0xa3, 0xa4, 0xa5, 0xaa, 0xab, 0xac, 0xb8, 0xc1, 0xc3, 0xc7, 0xc9, 0xcb, 0xd3, 0xe2, 0xe8, 0xea,
    0xeb, 0xef, 0xf3, 0xf6, 0xf7, 0xfe, 0xff, 0x26, 0x64, 0x41, 0x49, 0xa2, 0x01, 0x20, 0x22, 0xaf,
    0xb6, 0xbf, 0x44, 0x84, 0x94,
];

fn random_regs(rng: &mut Rng, mode: u64) -> Regs {
    let mut r = match mode {
        0 => real_mode(0x8000),
        1 => prot32(0x8000),
        _ => long64(0x8000),
    };
    if mode == 3 {
        // Compatibility mode: 32-bit code under 4-level paging.
        r.cs.attributes = 0xc09b;
    }
    for g in r.gpr.iter_mut() {
        *g = rng.value();
    }
    if rng.below(2) == 0 {
        r.gpr[4] = 0x7000 + rng.below(0x20);
    }
    if rng.below(4) == 0 {
        r.rflags |= 0x400;
    }
    if rng.below(4) == 0 {
        r.fs = Segment {
            base: rng.value(),
            ..r.fs
        };
    }
    r.gdtr.base = 0x9000;
    r.gdtr.limit = 0x3f;
    r
}

fn random_memory(rng: &mut Rng, mode: u64) -> TestMem {
    let mut mem = TestMem::new(0x20000);
    for b in mem.ram.iter_mut() {
        *b = rng.next() as u8;
    }
    // A plausible GDT: null, 32-bit code, data, 64-bit code, then random descriptors.
    let gdt: [u64; 4] = [
        0,
        0x00cf_9a00_0000_ffff,
        0x00cf_9200_0000_ffff,
        0x00af_9a00_0000_ffff,
    ];
    for (i, d) in gdt.iter().enumerate() {
        mem.set_u64(0x9000 + 8 * i as u64, *d);
    }
    if mode >= 2 {
        identity_map(&mut mem);
    }
    let mut code = [0u8; 256];
    for b in code.iter_mut() {
        *b = if rng.below(2) == 0 {
            INTERESTING[rng.below(INTERESTING.len() as u64) as usize]
        } else {
            rng.next() as u8
        };
    }
    mem.load(0x8000, &code);
    for _ in 0..rng.below(4) {
        let page = rng.below(0x24);
        match rng.below(3) {
            0 => mem.no_access.insert(page),
            1 => mem.read_only.insert(page),
            _ => mem.unmapped.insert(page),
        };
    }
    // Keep the code page itself executable most of the time.
    if rng.below(4) != 0 {
        mem.no_access.remove(&8);
        mem.unmapped.remove(&8);
    }
    mem
}

/// Whether `after` differs from `before` only in the registers a REP string instruction
/// updates, and CR2.
fn only_string_progress(before: &Regs, after: &Regs) -> bool {
    let mut a = after.clone();
    a.cr2 = before.cr2;
    for i in [1, 6, 7] {
        a.gpr[i] = before.gpr[i];
    }
    a == *before
}

#[test]
fn single_steps_leave_no_trace_when_not_retiring() {
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ scale());
    let mut exits = [0u32; 8];
    for program in 0..1200 * scale() {
        let mode = program % 4;
        let mut r = random_regs(&mut rng, mode);
        let mut mem = random_memory(&mut rng, mode);
        for _ in 0..64 {
            let before = r.clone();
            mem.undo_log = Some(Vec::new());
            let (exit, n) = run(&mut r, &mut mem, 1);
            assert!(n <= 1);
            let unchanged = {
                let mut a = r.clone();
                a.cr2 = before.cr2;
                a == before
            };
            let stop = match exit {
                Exit::Halt => {
                    exits[0] += 1;
                    assert_eq!(n, 1);
                    false
                }
                Exit::Budget => {
                    exits[1] += 1;
                    assert_eq!(n, 1);
                    false
                }
                Exit::Io {
                    write,
                    instruction_length,
                    ..
                } => {
                    exits[2] += 1;
                    assert!(unchanged && n == 0 && mem.writes_undone(), "{exit:?}");
                    if !write {
                        r.gpr[0] = rng.next() & 0xffff_ffff;
                    }
                    r.rip = r.rip.wrapping_add(u64::from(instruction_length));
                    false
                }
                Exit::Cpuid => {
                    exits[3] += 1;
                    assert!(unchanged && n == 0);
                    r.rip = r.rip.wrapping_add(2);
                    false
                }
                Exit::Msr {
                    instruction_length, ..
                } => {
                    exits[4] += 1;
                    assert!(unchanged && n == 0);
                    r.rip = r.rip.wrapping_add(u64::from(instruction_length));
                    false
                }
                Exit::Memory { .. } | Exit::Exception { .. } => {
                    exits[if matches!(exit, Exit::Memory { .. }) {
                        5
                    } else {
                        6
                    }] += 1;
                    assert_eq!(r.rip, before.rip, "{exit:?}");
                    if n == 0 {
                        assert!(unchanged, "{exit:?}: {before:x?} -> {r:x?}");
                        assert!(mem.writes_undone(), "{exit:?} left writes behind");
                    } else {
                        // One REP iteration completed before the fault.
                        assert!(only_string_progress(&before, &r), "{exit:?}");
                    }
                    true
                }
            };
            if stop {
                break;
            }
        }
    }
    // The random streams exercise more than #UD: HLT, budget, I/O, memory and exception exits
    // all occur.
    println!("exits: {exits:?}");
    for kind in [0, 1, 2, 5, 6] {
        assert!(exits[kind] > 0, "{exits:?}");
    }
}

#[test]
fn long_runs_do_not_panic() {
    let mut rng = Rng(0x0bad_cafe_dead_beef ^ scale());
    for program in 0..1500 * scale() {
        let mode = program % 4;
        let mut r = random_regs(&mut rng, mode);
        let mut mem = random_memory(&mut rng, mode);
        for _ in 0..8 {
            let (exit, n) = run(&mut r, &mut mem, 5000);
            assert!(n <= 5000);
            match exit {
                Exit::Io {
                    instruction_length, ..
                }
                | Exit::Msr {
                    instruction_length, ..
                } => r.rip = r.rip.wrapping_add(u64::from(instruction_length)),
                Exit::Cpuid => r.rip = r.rip.wrapping_add(2),
                Exit::Halt | Exit::Budget => {}
                Exit::Memory { .. } | Exit::Exception { .. } => break,
            }
        }
    }
}

#[test]
fn inconsistent_register_state_does_not_panic() {
    // 64-bit code segment and LMA with paging off, as a careless VMM might set: addresses are
    // then full 64-bit GPAs.
    let mut rng = Rng(42);
    for _ in 0..300 {
        let mut mem = random_memory(&mut rng, 1);
        let mut r = long64(0x8000);
        r.cr0 &= !0x8000_0000;
        for g in r.gpr.iter_mut() {
            *g = rng.value();
        }
        mem.load(0x8000, &[0xf3, 0x48, 0xab, 0xf3, 0xa4]);
        let _ = run(&mut r, &mut mem, 1000);
    }
}
