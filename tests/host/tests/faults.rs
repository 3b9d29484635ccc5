// SPDX-License-Identifier: GPL-2.0

//! Memory faults, restartable REP string instructions, the budget and exceptions.

use mshv_rs_host_tests::cpu::{run, Access, Exit, MemFault, Regs};
use mshv_rs_host_tests::testmem::{prot32, real_mode, TestMem};

const RAX: usize = 0;
const RCX: usize = 1;
const RBX: usize = 3;
const RSP: usize = 4;
const RSI: usize = 6;
const RDI: usize = 7;

const CODE: u64 = 0x1000;

fn setup(code: &[u8]) -> (Regs, TestMem) {
    let mut mem = TestMem::new(0x20000);
    mem.load(CODE, code);
    (prot32(CODE), mem)
}

fn insn_bytes(code: &[u8]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..code.len()].copy_from_slice(code);
    b
}

#[test]
fn data_read_fault_has_no_side_effects() {
    // mov eax, [0x5000]
    let insn = [0xa1, 0x00, 0x50, 0x00, 0x00];
    let (mut r, mut mem) = setup(&insn);
    mem.no_access.insert(5);
    r.gpr[RAX] = 0x1111;
    let before = r.clone();
    let (exit, n) = run(&mut r, &mut mem, 10);
    assert_eq!(
        exit,
        Exit::Memory {
            fault: MemFault {
                gpa: 0x5000,
                access: Access::Read,
                unmapped: false
            },
            gva: 0x5000,
            instruction_bytes: insn_bytes(&insn),
            instruction_length: 5
        }
    );
    assert_eq!(n, 0);
    assert_eq!(r, before);

    // After the VMM maps the page, the same instruction completes.
    mem.no_access.clear();
    mem.load(0x5000, &0xdead_beefu32.to_le_bytes());
    mem.load(CODE + 5, &[0xf4]);
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 2));
    assert_eq!(r.gpr[RAX], 0xdead_beef);
}

#[test]
fn data_write_fault_in_read_modify_write() {
    // add dword [ebx+4], 1 with EBX = 0x5ffc: the read succeeds, the write faults.
    let insn = [0x83, 0x43, 0x04, 0x01];
    let (mut r, mut mem) = setup(&insn);
    mem.read_only.insert(6);
    mem.ram[0x6000] = 0x7f;
    r.gpr[RBX] = 0x5ffc;
    r.rflags = 0x2 | 0x1;
    let before = r.clone();
    let (exit, _) = run(&mut r, &mut mem, 10);
    assert_eq!(
        exit,
        Exit::Memory {
            fault: MemFault {
                gpa: 0x6000,
                access: Access::Write,
                unmapped: false
            },
            gva: 0x6000,
            instruction_bytes: insn_bytes(&insn),
            instruction_length: 4
        }
    );
    // Flags and memory unchanged.
    assert_eq!(r, before);
    assert_eq!(mem.ram[0x6000], 0x7f);

    // mov [0x9000], ebx on an unmapped page.
    let insn = [0x89, 0x1d, 0x00, 0x90, 0x00, 0x00];
    let (mut r, mut mem) = setup(&insn);
    mem.unmapped.insert(9);
    let (exit, n) = run(&mut r, &mut mem, 10);
    assert_eq!(n, 0);
    let Exit::Memory { fault, gva, .. } = exit else {
        panic!("{exit:?}");
    };
    assert_eq!(
        fault,
        MemFault {
            gpa: 0x9000,
            access: Access::Write,
            unmapped: true
        }
    );
    assert_eq!(gva, 0x9000);
    assert_eq!(r.rip, CODE);
}

#[test]
fn push_fault_leaves_stack_pointer() {
    // call +0 with the stack page not accessible.
    let (mut r, mut mem) = setup(&[0xe8, 0, 0, 0, 0]);
    mem.no_access.insert(6);
    r.gpr[RSP] = 0x7000;
    let before = r.clone();
    let (exit, _) = run(&mut r, &mut mem, 10);
    assert!(matches!(exit, Exit::Memory { gva: 0x6ffc, .. }), "{exit:?}");
    assert_eq!(r, before);
}

#[test]
fn fetch_fault() {
    // jmp 0x7000: the JMP retires, the fetch at 0x7000 faults.
    let (mut r, mut mem) = setup(&[0xe9, 0xfb, 0x5f, 0x00, 0x00]);
    mem.no_access.insert(7);
    let (exit, n) = run(&mut r, &mut mem, 10);
    assert_eq!(
        exit,
        Exit::Memory {
            fault: MemFault {
                gpa: 0x7000,
                access: Access::Execute,
                unmapped: false
            },
            gva: 0x7000,
            instruction_bytes: [0; 16],
            instruction_length: 0
        }
    );
    assert_eq!(n, 1);
    assert_eq!(r.rip, 0x7000);
}

#[test]
fn instruction_crossing_into_a_faulting_page() {
    // A HLT in the last byte of a page before a no-access page runs: nothing past it is
    // fetched. A 5-byte MOV crossing into that page faults on the fetch.
    let mut mem = TestMem::new(0x20000);
    mem.no_access.insert(2);
    mem.load(0x1fff, &[0xf4]);
    let mut r = prot32(0x1fff);
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 1));
    mem.load(0x1ffd, &[0xb8, 0x01, 0x02]);
    let mut r = prot32(0x1ffd);
    let (exit, n) = run(&mut r, &mut mem, 10);
    assert_eq!(n, 0);
    let Exit::Memory {
        fault,
        instruction_length,
        ..
    } = exit
    else {
        panic!("{exit:?}");
    };
    assert_eq!((fault.gpa, fault.access), (0x2000, Access::Execute));
    assert_eq!(instruction_length, 0);
    // Once mapped, the instruction is fetched from both pages.
    mem.no_access.clear();
    mem.load(0x2000, &[0x03, 0x04, 0xf4]);
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 2));
    assert_eq!(r.gpr[RAX], 0x0403_0201);
}

#[test]
fn rep_stosb_fault_is_restartable() {
    // rep stosb over 0x2000..0x5000 with page 4 not accessible; then hlt.
    let (mut r, mut mem) = setup(&[0xf3, 0xaa, 0xf4]);
    mem.no_access.insert(4);
    r.gpr[RDI] = 0x2000;
    r.gpr[RCX] = 0x3000;
    r.gpr[RAX] = 0xa5;
    let (exit, n) = run(&mut r, &mut mem, 1_000_000);
    assert_eq!(
        exit,
        Exit::Memory {
            fault: MemFault {
                gpa: 0x4000,
                access: Access::Write,
                unmapped: false
            },
            gva: 0x4000,
            instruction_bytes: insn_bytes(&[0xf3, 0xaa]),
            instruction_length: 2
        }
    );
    assert_eq!(n, 0x2000);
    assert_eq!(r.rip, CODE);
    assert_eq!(r.gpr[RCX], 0x1000);
    assert_eq!(r.gpr[RDI], 0x4000);
    assert!(mem.bytes(0x2000, 0x2000).iter().all(|&b| b == 0xa5));
    assert_eq!(mem.ram[0x1fff], 0);

    mem.no_access.clear();
    let (exit, n) = run(&mut r, &mut mem, 1_000_000);
    assert_eq!((exit, n), (Exit::Halt, 0x1000 + 1));
    assert_eq!(r.gpr[RCX], 0);
    assert_eq!(r.gpr[RDI], 0x5000);
    assert!(mem.bytes(0x2000, 0x3000).iter().all(|&b| b == 0xa5));
    assert_eq!(mem.ram[0x5000], 0);
}

#[test]
fn rep_movsd_fault_on_source_is_restartable() {
    // rep movsd from 0x8000 to 0x3000, 0x800 dwords, source page 9 not accessible.
    let (mut r, mut mem) = setup(&[0xf3, 0xa5, 0xf4]);
    for i in 0..0x2000u64 {
        mem.ram[0x8000 + i as usize] = i as u8;
    }
    mem.no_access.insert(9);
    r.gpr[RSI] = 0x8000;
    r.gpr[RDI] = 0x3000;
    r.gpr[RCX] = 0x800;
    let (exit, n) = run(&mut r, &mut mem, 1_000_000);
    let Exit::Memory { fault, gva, .. } = exit else {
        panic!("{exit:?}");
    };
    assert_eq!(
        (fault.gpa, fault.access, gva),
        (0x9000, Access::Read, 0x9000)
    );
    assert_eq!(n, 0x400);
    assert_eq!(
        (r.gpr[RCX], r.gpr[RSI], r.gpr[RDI], r.rip),
        (0x400, 0x9000, 0x4000, CODE)
    );
    mem.no_access.clear();
    assert_eq!(run(&mut r, &mut mem, 1_000_000).0, Exit::Halt);
    assert_eq!(mem.bytes(0x3000, 0x2000), mem.bytes(0x8000, 0x2000));
}

#[test]
fn page_crossing_write_is_all_or_nothing() {
    // mov [0x4ffe], eax: the second page faults, nothing is written.
    let insn = [0xa3, 0xfe, 0x4f, 0x00, 0x00];
    let (mut r, mut mem) = setup(&insn);
    mem.no_access.insert(5);
    r.gpr[RAX] = 0x1122_3344;
    let (exit, _) = run(&mut r, &mut mem, 10);
    let Exit::Memory { fault, gva, .. } = exit else {
        panic!("{exit:?}");
    };
    assert_eq!(
        (fault.gpa, fault.access, gva),
        (0x5000, Access::Write, 0x5000)
    );
    assert_eq!(mem.bytes(0x4ffe, 2), &[0, 0]);
    assert_eq!(r.rip, CODE);

    // The first page faults: the second page keeps its old bytes.
    mem.no_access.clear();
    mem.read_only.insert(4);
    mem.load(0x5000, &[0xaa, 0xbb, 0xcc]);
    let (exit, _) = run(&mut r, &mut mem, 10);
    let Exit::Memory { fault, gva, .. } = exit else {
        panic!("{exit:?}");
    };
    assert_eq!(
        (fault.gpa, fault.access, gva),
        (0x4ffe, Access::Write, 0x4ffe)
    );
    assert_eq!(mem.bytes(0x4ffe, 5), &[0, 0, 0xaa, 0xbb, 0xcc]);

    // Both writable: the write is split across the pages.
    mem.read_only.clear();
    mem.load(CODE + 5, &[0xf4]);
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 2));
    assert_eq!(mem.bytes(0x4ffe, 5), &[0x44, 0x33, 0x22, 0x11, 0xcc]);
}

#[test]
fn page_crossing_read() {
    // mov eax, [0x5ffd]: a read split across two pages.
    let (mut r, mut mem) = setup(&[0xa1, 0xfd, 0x5f, 0x00, 0x00, 0xf4]);
    mem.load(0x5ffd, &[1, 2, 3, 4]);
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 2));
    assert_eq!(r.gpr[RAX], 0x0403_0201);
}

/// A program that mixes loops, REP string instructions, calls and memory operations.
fn busy_program() -> Vec<u8> {
    #[rustfmt::skip]
    let code = vec![
        0xbf, 0x00, 0x40, 0x00, 0x00, // mov edi, 0x4000
        0xb9, 0x10, 0x27, 0x00, 0x00, // mov ecx, 10000
        0xb0, 0x3c,                   // mov al, 0x3c
        0xf3, 0xaa,                   // rep stosb
        0xbe, 0x00, 0x40, 0x00, 0x00, // mov esi, 0x4000
        0xbf, 0x00, 0x80, 0x00, 0x00, // mov edi, 0x8000
        0xb9, 0xc4, 0x09, 0x00, 0x00, // mov ecx, 2500
        0xf3, 0xa5,                   // rep movsd
        0xb9, 0x64, 0x00, 0x00, 0x00, // mov ecx, 100
        0x31, 0xd2,                   // xor edx, edx
        0x01, 0xca,                   // l: add edx, ecx
        0xe8, 0x03, 0x00, 0x00, 0x00, // call f
        0xe2, 0xf7,                   // loop l
        0xf4,                         // hlt
        0x01, 0x15, 0x00, 0xc0, 0x00, 0x00, // f: add [0xc000], edx
        0xc3,                         // ret
    ];
    code
}

#[test]
fn budget_exhaustion_resumes_to_the_same_state() {
    let (mut reference, mut ref_mem) = setup(&busy_program());
    reference.gpr[RSP] = 0x1000;
    let mut expected_steps = 0;
    let (exit, n) = run(&mut reference, &mut ref_mem, u64::MAX);
    expected_steps += n;
    assert_eq!(exit, Exit::Halt);
    assert_eq!(
        ref_mem.u32_at(0xc000),
        (1..=100u32).map(|c| (c..=100).sum::<u32>()).sum()
    );
    assert!(ref_mem.bytes(0x8000, 10000).iter().all(|&b| b == 0x3c));

    for budget in [1u64, 2, 3, 7, 100, 4095, 4096, 4097, 9999] {
        let (mut r, mut mem) = setup(&busy_program());
        r.gpr[RSP] = 0x1000;
        let mut total = 0;
        let mut calls = 0;
        loop {
            let (exit, n) = run(&mut r, &mut mem, budget);
            assert!(n <= budget);
            total += n;
            calls += 1;
            match exit {
                Exit::Budget => assert_eq!(n, budget),
                Exit::Halt => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(r, reference, "budget {budget}");
        assert_eq!(mem.ram, ref_mem.ram, "budget {budget}");
        assert_eq!(total, expected_steps, "budget {budget}");
        assert!(calls >= expected_steps / budget);
    }
}

#[test]
fn rep_stosb_of_a_gigabyte_stops_on_budget() {
    // rep stosb with ECX = 1 GiB into memory that is only 128 KiB: the budget stops it long
    // before it would run off the end.
    let (mut r, mut mem) = setup(&[0xf3, 0xaa]);
    r.gpr[RDI] = 0x4000;
    r.gpr[RCX] = 1 << 30;
    let (exit, n) = run(&mut r, &mut mem, 0x8000);
    assert_eq!((exit, n), (Exit::Budget, 0x8000));
    assert_eq!(r.rip, CODE);
    assert_eq!(r.gpr[RCX], (1 << 30) - 0x8000);
    assert_eq!(r.gpr[RDI], 0xc000);
    // The fast path writes 16 bytes per call.
    assert!(mem.writes <= 0x8000 / 16 + 8, "{} writes", mem.writes);
    let (exit, n) = run(&mut r, &mut mem, 0);
    assert_eq!((exit, n), (Exit::Budget, 0));
}

#[test]
fn string_direction_and_overlap_match_element_by_element_semantics() {
    // Each case: DF, element size, source, destination, count.
    let cases: &[(bool, u8, u64, u64, u64)] = &[
        (false, 1, 0x4000, 0x4001, 0x1800), // forward overlap: replicates the first byte
        (false, 2, 0x4000, 0x4006, 0x900),
        (false, 4, 0x4ff1, 0x6ff3, 0x500), // misaligned, crossing pages
        (false, 1, 0x4001, 0x4000, 0x2000), // backward overlap, forward copy
        (true, 1, 0x5fff, 0x6000, 0x1800), // DF = 1
        (true, 4, 0x6ffc, 0x6ff8, 0x600),  // DF = 1, overlapping
        (true, 2, 0x4001, 0x7003, 0x800),  // DF = 1, crossing pages
    ];
    for &(df, size, src, dst, count) in cases {
        let mut mem = TestMem::new(0x20000);
        for i in 0..0x8000usize {
            mem.ram[0x3000 + i] = (i * 7 + i / 251) as u8;
        }
        let op = match size {
            1 => vec![0xf3, 0xa4],
            2 => vec![0xf3, 0x66, 0xa5],
            _ => vec![0xf3, 0xa5],
        };
        mem.load(CODE, &op);
        mem.load(CODE + op.len() as u64, &[0xf4]);
        // Element-by-element reference.
        let mut expect = mem.ram.clone();
        for i in 0..count {
            let delta = i * u64::from(size);
            let (s, d) = if df {
                (src - delta, dst - delta)
            } else {
                (src + delta, dst + delta)
            };
            for b in 0..u64::from(size) {
                expect[(d + b) as usize] = expect[(s + b) as usize];
            }
        }
        let mut r = prot32(CODE);
        r.gpr[RSI] = src;
        r.gpr[RDI] = dst;
        r.gpr[RCX] = count;
        if df {
            r.rflags |= 0x400;
        }
        assert_eq!(run(&mut r, &mut mem, 1_000_000).0, Exit::Halt);
        let end = count * u64::from(size);
        let (es, ed) = if df {
            (src - end, dst - end)
        } else {
            (src + end, dst + end)
        };
        assert_eq!((r.gpr[RSI], r.gpr[RDI], r.gpr[RCX]), (es, ed, 0));
        let first = mem.ram.iter().zip(&expect).position(|(a, b)| a != b);
        assert!(
            first.is_none(),
            "case {df} {size} {src:#x} {dst:#x}: {first:x?}"
        );
    }
}

#[test]
fn stos_directions_and_sizes() {
    // std; rep stosw from 0x5002 down over a page boundary; then cld; stosd; lodsb.
    #[rustfmt::skip]
    let code = [
        0xfd,             // std
        0xf3, 0x66, 0xab, // rep stosw
        0xfc,             // cld
        0xab,             // stosd
        0xac,             // lodsb
        0xf4,
    ];
    let (mut r, mut mem) = setup(&code);
    r.gpr[RAX] = 0x1234_5678;
    r.gpr[RDI] = 0x5002;
    r.gpr[RCX] = 0x10;
    r.gpr[RSI] = 0x4ff0;
    assert_eq!(run(&mut r, &mut mem, 1000), (Exit::Halt, 0x10 + 5));
    // The words at 0x4fe4..0x5004; STOSD then overwrote 0x4fe2..0x4fe6.
    assert_eq!(mem.bytes(0x4fe6, 0x1e), [0x78, 0x56].repeat(15).as_slice());
    assert_eq!((mem.ram[0x4fe1], mem.ram[0x5004]), (0, 0));
    // After the REP, EDI = 0x4fe2; STOSD writes there and advances by 4.
    assert_eq!(r.gpr[RDI], 0x4fe6);
    assert_eq!(mem.u32_at(0x4fe2), 0x1234_5678);
    assert_eq!(r.gpr[RAX], 0x1234_5678);
    assert_eq!(r.gpr[RSI], 0x4ff1);
    assert_eq!(r.gpr[RCX], 0);

    // A non-REP STOSB faulting leaves EDI alone; a REP with ECX = 0 does nothing.
    let (mut r, mut mem) = setup(&[0xaa]);
    mem.no_access.insert(5);
    r.gpr[RDI] = 0x5000;
    assert!(matches!(run(&mut r, &mut mem, 10).0, Exit::Memory { .. }));
    assert_eq!(r.gpr[RDI], 0x5000);
    let (mut r, mut mem) = setup(&[0xf3, 0xaa, 0xf4]);
    mem.no_access.insert(5);
    r.gpr[RDI] = 0x5000;
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 2));
}

#[test]
fn sixteen_bit_rep_wraps_the_offset() {
    // Real mode: rep stosb with DI = 0xfff0 and CX = 0x20 wraps DI inside the segment.
    let mut mem = TestMem::new(0x30000);
    mem.load(0x7c00, &[0xf3, 0xaa, 0xf4]);
    let mut r = real_mode(0x7c00);
    r.es.selector = 0x1000;
    r.es.base = 0x10000;
    r.gpr[RAX] = 0xee;
    r.gpr[RDI] = 0xfff0;
    r.gpr[RCX] = 0x20;
    assert_eq!(run(&mut r, &mut mem, 100).0, Exit::Halt);
    assert_eq!(r.gpr[RDI], 0x10);
    assert!(mem.bytes(0x1fff0, 0x10).iter().all(|&b| b == 0xee));
    assert!(mem.bytes(0x10000, 0x10).iter().all(|&b| b == 0xee));
    assert_eq!(mem.ram[0x20000], 0);
}

#[test]
fn undefined_opcodes_raise_ud() {
    let cases: &[&[u8]] = &[
        &[0x0f, 0x0b],       // ud2
        &[0xd6],             // salc (undefined)
        &[0x0f, 0xff],       // ud0
        &[0xf0, 0x89, 0x08], // lock mov [eax], ecx
        &[0xf0, 0x01, 0xc8], // lock add eax, ecx (register destination)
        &[0x8e, 0xc8],       // mov cs, ax
        &[0x8d, 0xc0],       // lea eax, eax
        &[0xc6, 0xc8, 0x00], // c6 /1
        &[0xfe, 0xd0],       // fe /2
        &[0x0f, 0x20, 0xe8], // mov eax, cr5
        &[0x0f, 0x01, 0xc8], // monitor
        &[0xa6],             // cmpsb (not implemented)
    ];
    for code in cases {
        let (mut r, mut mem) = setup(code);
        r.gpr[RAX] = 0x8000;
        let before = r.clone();
        let (exit, n) = run(&mut r, &mut mem, 10);
        assert_eq!(
            exit,
            Exit::Exception {
                vector: 6,
                rip: CODE
            },
            "{code:02x?}"
        );
        assert_eq!(n, 0);
        assert_eq!(r, before);
    }
    // A lockable form is accepted: lock add [eax], ecx.
    let (mut r, mut mem) = setup(&[0xf0, 0x01, 0x08, 0xf4]);
    r.gpr[RAX] = 0x8000;
    r.gpr[RCX] = 5;
    assert_eq!(run(&mut r, &mut mem, 10).0, Exit::Halt);
    assert_eq!(mem.u32_at(0x8000), 5);
}

#[test]
fn software_interrupts_and_overlong_instructions() {
    let (mut r, mut mem) = setup(&[0x90, 0xcd, 0x21]);
    assert_eq!(
        run(&mut r, &mut mem, 10),
        (
            Exit::Exception {
                vector: 0x21,
                rip: CODE + 1
            },
            1
        )
    );
    // 15 prefixes and an opcode: longer than 15 bytes is #GP.
    let mut code = vec![0x66; 15];
    code.push(0x90);
    let (mut r, mut mem) = setup(&code);
    assert_eq!(
        run(&mut r, &mut mem, 10).0,
        Exit::Exception {
            vector: 13,
            rip: CODE
        }
    );
    // 14 prefixes and an opcode are fine.
    let mut code = vec![0x66; 14];
    code.extend([0x90, 0xf4]);
    let (mut r, mut mem) = setup(&code);
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 2));
}

#[test]
fn cpuid_and_msr_exits_leave_rip() {
    // cpuid; rdmsr; wrmsr; hlt
    let (mut r, mut mem) = setup(&[0x0f, 0xa2, 0x0f, 0x32, 0x0f, 0x30, 0xf4]);
    r.gpr[RAX] = 1;
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Cpuid, 0));
    assert_eq!(r.rip, CODE);
    r.gpr[RAX] = 0x0000_0663;
    r.gpr[RBX] = 0;
    r.rip += 2;
    r.gpr[RCX] = 0x1b;
    assert_eq!(
        run(&mut r, &mut mem, 10).0,
        Exit::Msr {
            write: false,
            msr: 0x1b,
            value: 0,
            instruction_length: 2
        }
    );
    assert_eq!(r.rip, CODE + 2);
    r.gpr[RAX] = 0xfee0_0900;
    r.gpr[2] = 0x1;
    r.rip += 2;
    assert_eq!(
        run(&mut r, &mut mem, 10).0,
        Exit::Msr {
            write: true,
            msr: 0x1b,
            value: 0x1_fee0_0900,
            instruction_length: 2
        }
    );
    r.rip += 2;
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 1));
}
