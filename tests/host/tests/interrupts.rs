// SPDX-License-Identifier: GPL-2.0

//! External interrupt delivery, IRET and the STI shadow.

use mshv_rs_host_tests::cpu::{deliver_interrupt, run, Access, Exit, Table};
use mshv_rs_host_tests::testmem::{identity_map, long64, prot32, real_mode, TestMem};

const RSP: usize = 4;
const IF: u64 = 1 << 9;

/// A flat GDT at 0x500: null, 32-bit code 0x08, data 0x10, 64-bit code 0x18.
fn gdt(mem: &mut TestMem) -> Table {
    mem.set_u64(0x500, 0);
    mem.set_u64(0x508, 0x00cf_9b00_0000_ffff);
    mem.set_u64(0x510, 0x00cf_9300_0000_ffff);
    mem.set_u64(0x518, 0x00af_9b00_0000_ffff);
    Table {
        base: 0x500,
        limit: 0x1f,
    }
}

/// A 32-bit IDT gate: `kind` 0xE interrupt gate, 0xF trap gate; `present`.
fn gate32(target: u32, sel: u16, kind: u64, present: bool) -> u64 {
    u64::from(target & 0xffff)
        | (u64::from(sel) << 16)
        | (kind << 40)
        | (u64::from(present) << 47)
        | (u64::from(target >> 16) << 48)
}

#[test]
fn real_mode_ivt_delivery_and_iret() {
    let mut mem = TestMem::new(0x10000);
    // IVT entry 0x20 -> 0x0040:0x0010 (linear 0x410): IRET.
    mem.load(0x20 * 4, &[0x10, 0x00, 0x40, 0x00]);
    mem.load(0x410, &[0xcf]);
    let mut r = real_mode(0x1000);
    r.idtr = Table {
        base: 0,
        limit: 0x3ff,
    };
    r.rflags |= IF | (1 << 0);
    deliver_interrupt(&mut r, &mut mem, 0x20).unwrap();
    assert_eq!((r.cs.selector, r.cs.base, r.rip), (0x40, 0x400, 0x10));
    assert_eq!(r.rflags & IF, 0);
    assert_eq!(r.gpr[RSP], 0x7000 - 6);
    // IP, CS, FLAGS from the top of the stack.
    assert_eq!(
        mem.bytes(0x7000 - 6, 6),
        &[0x00, 0x10, 0x00, 0x00, 0x03, 0x02]
    );
    let (exit, n) = run(&mut r, &mut mem, 1);
    assert_eq!((exit, n), (Exit::Budget, 1));
    assert_eq!((r.cs.selector, r.cs.base, r.rip), (0, 0, 0x1000));
    assert_eq!(r.rflags, 0x203);
    assert_eq!(r.gpr[RSP], 0x7000);
}

#[test]
fn sti_shadow_covers_one_instruction() {
    let mut mem = TestMem::new(0x10000);
    // sti; nop; nop
    mem.load(0x1000, &[0xfb, 0x90, 0x90]);
    let mut r = real_mode(0x1000);
    assert!(!r.interrupts_enabled());
    assert_eq!(run(&mut r, &mut mem, 1), (Exit::Budget, 1));
    assert!(r.interrupt_shadow);
    assert!(!r.interrupts_enabled());
    assert_eq!(run(&mut r, &mut mem, 1), (Exit::Budget, 1));
    assert!(!r.interrupt_shadow);
    assert!(r.interrupts_enabled());
    // STI with IF already set makes no shadow.
    mem.load(0x1003, &[0xfb]);
    assert_eq!(run(&mut r, &mut mem, 2), (Exit::Budget, 2));
    assert!(r.interrupts_enabled());
}

#[test]
fn sti_hlt_halts_inside_the_shadow() {
    let mut mem = TestMem::new(0x10000);
    mem.load(0x1000, &[0xfb, 0xf4]);
    let mut r = real_mode(0x1000);
    let (exit, _) = run(&mut r, &mut mem, 100);
    assert_eq!(exit, Exit::Halt);
    assert_eq!(r.rip, 0x1002);
    // After the HLT retired the shadow is over: an interrupt may wake it.
    assert!(r.interrupts_enabled());
}

#[test]
fn prot32_interrupt_gate_and_iret() {
    let mut mem = TestMem::new(0x10000);
    let mut r = prot32(0x1000);
    r.gdtr = gdt(&mut mem);
    r.idtr = Table {
        base: 0x800,
        limit: 0x7ff,
    };
    mem.set_u64(0x800 + 0x30 * 8, gate32(0x2000, 0x08, 0xe, true));
    mem.set_u64(0x800 + 0x31 * 8, gate32(0x2000, 0x08, 0xf, true));
    mem.load(0x2000, &[0xcf]);
    r.rflags |= IF;
    deliver_interrupt(&mut r, &mut mem, 0x30).unwrap();
    assert_eq!((r.cs.selector, r.rip), (0x08, 0x2000));
    assert_eq!(r.rflags & IF, 0);
    assert_eq!(r.gpr[RSP], 0x7000 - 12);
    assert_eq!(mem.u32_at(0x7000 - 12), 0x1000);
    assert_eq!(mem.u32_at(0x7000 - 8), 0x08);
    assert_eq!(mem.u32_at(0x7000 - 4), 0x202);
    assert_eq!(run(&mut r, &mut mem, 1), (Exit::Budget, 1));
    assert_eq!((r.cs.selector, r.rip, r.rflags), (0x08, 0x1000, 0x202));
    assert_eq!(r.gpr[RSP], 0x7000);
    // A trap gate leaves IF set.
    deliver_interrupt(&mut r, &mut mem, 0x31).unwrap();
    assert_eq!(r.rip, 0x2000);
    assert_eq!(r.rflags & IF, IF);
}

#[test]
fn prot32_bad_gates_leave_state_unchanged() {
    let mut mem = TestMem::new(0x10000);
    let mut r = prot32(0x1000);
    r.gdtr = gdt(&mut mem);
    r.idtr = Table {
        base: 0x800,
        limit: 0x30 * 8 + 7,
    };
    mem.set_u64(0x800 + 0x30 * 8, gate32(0x2000, 0x08, 0xe, false));
    mem.set_u64(0x800 + 0x2f * 8, gate32(0x2000, 0x10, 0xe, true));
    mem.set_u64(0x800 + 0x2e * 8, gate32(0x2000, 0x08, 0x6, true));
    let before = r.clone();
    for (vector, want) in [(0x30, 11), (0x31, 13), (0x2f, 13), (0x2e, 13)] {
        match deliver_interrupt(&mut r, &mut mem, vector) {
            Err(Exit::Exception { vector: v, rip }) => assert_eq!((v, rip), (want, 0x1000)),
            other => panic!("vector {vector:#x}: {other:?}"),
        }
        assert_eq!(r, before);
    }
}

#[test]
fn delivery_with_an_unmapped_stack_is_a_memory_exit_and_retryable() {
    let mut mem = TestMem::new(0x10000);
    let mut r = prot32(0x1000);
    r.gdtr = gdt(&mut mem);
    r.idtr = Table {
        base: 0x800,
        limit: 0x7ff,
    };
    mem.set_u64(0x800 + 0x30 * 8, gate32(0x2000, 0x08, 0xe, true));
    mem.unmapped.insert(6);
    let before = r.clone();
    match deliver_interrupt(&mut r, &mut mem, 0x30) {
        Err(Exit::Memory {
            fault,
            instruction_length,
            ..
        }) => {
            assert_eq!(fault.access, Access::Write);
            assert!(fault.unmapped);
            assert_eq!(fault.gpa >> 12, 6);
            assert_eq!(instruction_length, 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r, before);
    mem.unmapped.clear();
    deliver_interrupt(&mut r, &mut mem, 0x30).unwrap();
    assert_eq!(r.rip, 0x2000);
}

#[test]
fn long_mode_gate_and_iretq() {
    let mut mem = TestMem::new(0x20000);
    identity_map(&mut mem);
    let mut r = long64(0x8000);
    r.gdtr = gdt(&mut mem);
    r.idtr = Table {
        base: 0x9000,
        limit: 0xfff,
    };
    let lo = gate32(0xa000, 0x18, 0xe, true);
    mem.set_u64(0x9000 + 0x40 * 16, lo);
    mem.set_u64(0x9000 + 0x40 * 16 + 8, 0);
    mem.load(0xa000, &[0x48, 0xcf]); // iretq
    r.ss.selector = 0x10;
    r.gpr[RSP] = 0x7008;
    r.rflags |= IF;
    deliver_interrupt(&mut r, &mut mem, 0x40).unwrap();
    assert_eq!((r.cs.selector, r.rip), (0x18, 0xa000));
    assert_eq!(r.rflags & IF, 0);
    // Aligned to 16 first: frame below 0x7000.
    assert_eq!(r.gpr[RSP], 0x7000 - 40);
    assert_eq!(mem.u64_at(0x7000 - 40), 0x8000);
    assert_eq!(mem.u64_at(0x7000 - 32), 0x18);
    assert_eq!(mem.u64_at(0x7000 - 24), 0x202);
    assert_eq!(mem.u64_at(0x7000 - 16), 0x7008);
    assert_eq!(mem.u64_at(0x7000 - 8), 0x10);
    assert_eq!(run(&mut r, &mut mem, 1), (Exit::Budget, 1));
    assert_eq!((r.cs.selector, r.rip, r.rflags), (0x18, 0x8000, 0x202));
    assert_eq!((r.gpr[RSP], r.ss.selector), (0x7008, 0x10));
}
