// SPDX-License-Identifier: GPL-2.0

//! Mode switches, 4-level paging and 64-bit instructions.

use mshv_rs_host_tests::cpu::{
    linear_to_physical, run, set_efer, Access, Exit, MemFault, Regs, TranslateError, EFER_LMA,
    EFER_LME, EFER_NXE, MSR_EFER,
};
use mshv_rs_host_tests::testmem::{identity_map, long64, prot32, Asm, TestMem, PD, PDPT};

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSP: usize = 4;
const RDI: usize = 7;

fn le32(v: u64) -> [u8; 4] {
    (v as u32).to_le_bytes()
}

/// Runs until HLT, acting as the VMM for RDMSR/WRMSR of EFER.
fn run_with_vmm(r: &mut Regs, mem: &mut TestMem) -> Vec<Exit> {
    let mut exits = Vec::new();
    loop {
        let (exit, _) = run(r, mem, 1_000_000);
        exits.push(exit);
        match exit {
            Exit::Msr {
                write,
                msr,
                value,
                instruction_length,
            } => {
                assert_eq!(msr, MSR_EFER);
                if write {
                    set_efer(r, value);
                } else {
                    r.gpr[RAX] = r.efer & 0xffff_ffff;
                    r.gpr[RDX] = r.efer >> 32;
                }
                r.rip += u64::from(instruction_length);
            }
            Exit::Halt => return exits,
            other => panic!("unexpected exit {other:?} at {:#x}", r.rip),
        }
    }
}

/// Real mode -> 32-bit protected mode -> long mode with identity-mapped 2 MiB pages, starting
/// from the reset vector.
#[test]
fn real_to_protected_to_long_mode() {
    let mut a = Asm::new(0x7c00);
    // 16-bit real mode.
    a.emit(&[0xfa]); // cli
    a.emit(&[0x31, 0xc0]); // xor ax, ax
    a.emit(&[0x8e, 0xd8]); // mov ds, ax
    a.emit(&[0x8e, 0xd0]); // mov ss, ax
    a.emit(&[0xbc, 0x00, 0x7c]); // mov sp, 0x7c00
    let lgdt = a.emit(&[0x0f, 0x01, 0x16, 0, 0]); // lgdt [gdt_ptr]
    a.emit(&[0x0f, 0x20, 0xc0]); // mov eax, cr0
    a.emit(&[0x66, 0x83, 0xc8, 0x01]); // or eax, 1
    a.emit(&[0x0f, 0x22, 0xc0]); // mov cr0, eax
    let jmp32 = a.emit(&[0x66, 0xea, 0, 0, 0, 0, 0x08, 0x00]); // jmp dword 0x08:pm32
                                                               // 32-bit protected mode.
    let pm32 = a.here();
    a.emit(&[0x66, 0xb8, 0x10, 0x00]); // mov ax, 0x10
    a.emit(&[0x8e, 0xd8]); // mov ds, ax
    a.emit(&[0x8e, 0xc0]); // mov es, ax
    a.emit(&[0x8e, 0xd0]); // mov ss, ax
    a.emit(&[0xbc, 0x00, 0x7c, 0x00, 0x00]); // mov esp, 0x7c00
                                             // Clear the page tables at 0x1000..0x4000.
    a.emit(&[0xbf, 0x00, 0x10, 0x00, 0x00]); // mov edi, 0x1000
    a.emit(&[0xb9, 0x00, 0x0c, 0x00, 0x00]); // mov ecx, 0xc00
    a.emit(&[0x31, 0xc0]); // xor eax, eax
    a.emit(&[0xfc]); // cld
    a.emit(&[0xf3, 0xab]); // rep stosd
                           // PML4[0] = PDPT, PDPT[0] = PD, PD[0..4] = 2 MiB pages.
    a.emit(&[0xc7, 0x05, 0x00, 0x10, 0x00, 0x00, 0x03, 0x20, 0x00, 0x00]); // mov dword [0x1000], 0x2003
    a.emit(&[0xc7, 0x05, 0x00, 0x20, 0x00, 0x00, 0x03, 0x30, 0x00, 0x00]); // mov dword [0x2000], 0x3003
    a.emit(&[0xb8, 0x83, 0x00, 0x00, 0x00]); // mov eax, 0x83
    a.emit(&[0xbf, 0x00, 0x30, 0x00, 0x00]); // mov edi, 0x3000
    a.emit(&[0xb9, 0x04, 0x00, 0x00, 0x00]); // mov ecx, 4
    a.emit(&[0x89, 0x07]); // fill: mov [edi], eax
    a.emit(&[0x05, 0x00, 0x00, 0x20, 0x00]); // add eax, 0x200000
    a.emit(&[0x83, 0xc7, 0x08]); // add edi, 8
    a.emit(&[0xe2, 0xf4]); // loop fill
                           // CR4.PAE, CR3, EFER.LME, CR0.PG.
    a.emit(&[0x0f, 0x20, 0xe0]); // mov eax, cr4
    a.emit(&[0x83, 0xc8, 0x20]); // or eax, 0x20
    a.emit(&[0x0f, 0x22, 0xe0]); // mov cr4, eax
    a.emit(&[0xb8, 0x00, 0x10, 0x00, 0x00]); // mov eax, 0x1000
    a.emit(&[0x0f, 0x22, 0xd8]); // mov cr3, eax
    a.emit(&[0xb9, 0x80, 0x00, 0x00, 0xc0]); // mov ecx, 0xc0000080
    a.emit(&[0x0f, 0x32]); // rdmsr
    a.emit(&[0x0d, 0x00, 0x01, 0x00, 0x00]); // or eax, 0x100
    a.emit(&[0x0f, 0x30]); // wrmsr
    a.emit(&[0x0f, 0x20, 0xc0]); // mov eax, cr0
    a.emit(&[0x0d, 0x00, 0x00, 0x00, 0x80]); // or eax, 0x80000000
    a.emit(&[0x0f, 0x22, 0xc0]); // mov cr0, eax
    let jmp64 = a.emit(&[0xea, 0, 0, 0, 0, 0x18, 0x00]); // jmp 0x18:lm64
                                                         // 64-bit long mode.
    let lm64 = a.here();
    a.emit(&[0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]); // mov rax, 0x1122334455667788
    a.emit(&[0x48, 0xbf, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00]); // mov rdi, 0x200000
    a.emit(&[0xb9, 0x04, 0x00, 0x00, 0x00]); // mov ecx, 4
    a.emit(&[0xf3, 0x48, 0xab]); // rep stosq
    a.emit(&[0x48, 0x8d, 0x1d, 0xf0, 0xff, 0xff, 0xff]); // lea rbx, [rip - 0x10]
    let after_lea = a.here();
    a.emit(&[0xf4]); // hlt
                     // The GDT and its pointer.
    while !a.here().is_multiple_of(8) {
        a.emit(&[0]);
    }
    let gdt = a.emit(&[0; 8]);
    a.emit(&[0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00]); // 0x08: 32-bit code
    a.emit(&[0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00]); // 0x10: data
    a.emit(&[0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00]); // 0x18: 64-bit code
    let gdt_ptr = a.emit(&[0x1f, 0x00]);
    a.emit(&le32(gdt));
    a.patch(lgdt + 3, &(gdt_ptr as u16).to_le_bytes());
    a.patch(jmp32 + 2, &le32(pm32));
    a.patch(jmp64 + 1, &le32(lm64));

    let mut mem = TestMem::new(0x40_0000);
    mem.rom = vec![0; 0x10000];
    mem.load(0xffff_fff0, &[0xea, 0x00, 0x7c, 0x00, 0x00]); // jmp 0x0000:0x7c00
    mem.load(0x7c00, &a.code);
    let mut r = Regs::reset();
    let exits = run_with_vmm(&mut r, &mut mem);
    assert_eq!(
        exits,
        vec![
            Exit::Msr {
                write: false,
                msr: MSR_EFER,
                value: 0,
                instruction_length: 2
            },
            Exit::Msr {
                write: true,
                msr: MSR_EFER,
                value: EFER_LME,
                instruction_length: 2
            },
            Exit::Halt
        ]
    );
    assert_eq!(r.efer, EFER_LME | EFER_LMA);
    assert_eq!(r.cr0, 0xe000_0011);
    assert_eq!(r.cr4, 0x20);
    assert_eq!(r.cr3, 0x1000);
    assert_eq!(r.gdtr.base, gdt);
    assert_eq!(r.gdtr.limit, 0x1f);
    assert_eq!(r.cs.selector, 0x18);
    assert_eq!(r.cs.attributes, 0xa09a);
    assert_eq!(r.ss.selector, 0x10);
    assert_eq!(r.ss.attributes, 0xc092);
    assert_eq!(r.ss.limit, 0xffff_ffff);
    assert_eq!(r.rip, after_lea + 1);
    assert_eq!(r.gpr[RDI], 0x20_0020);
    assert_eq!(r.gpr[RCX], 0);
    assert_eq!(r.gpr[RBX], after_lea - 0x10);
    assert_eq!(r.gpr[RSP], 0x7c00);
    for i in 0..4 {
        assert_eq!(mem.u64_at(0x20_0000 + 8 * i), 0x1122_3344_5566_7788);
    }
    assert_eq!(mem.u64_at(0x20_0020), 0);
    assert_eq!(mem.u64_at(0x3000 + 8 * 3), 0x60_0083);
    assert_eq!(mem.u64_at(0x3000 + 8 * 4), 0);
}

#[test]
fn enabling_legacy_paging_is_unsupported() {
    // mov cr0, eax with PG set and EFER.LME clear.
    let mut mem = TestMem::new(0x20000);
    mem.load(0x1000, &[0x0f, 0x22, 0xc0]);
    let mut r = prot32(0x1000);
    r.gpr[RAX] = 0x8000_0011;
    let before = r.clone();
    assert_eq!(
        run(&mut r, &mut mem, 10).0,
        Exit::Exception {
            vector: 13,
            rip: 0x1000
        }
    );
    assert_eq!(r, before);
    r.cr0 |= 0x8000_0000;
    assert_eq!(
        linear_to_physical(&r, &mut mem, 0x1000, Access::Read),
        Err(TranslateError::UnsupportedPagingMode)
    );
}

#[test]
fn set_efer_computes_lma() {
    let mut r = prot32(0);
    set_efer(&mut r, EFER_LME | EFER_LMA);
    assert_eq!(r.efer, EFER_LME);
    r.cr0 |= 0x8000_0000;
    set_efer(&mut r, EFER_LME | EFER_NXE);
    assert_eq!(r.efer, EFER_LME | EFER_LMA | EFER_NXE);
    set_efer(&mut r, 0);
    assert_eq!(r.efer, 0);
}

/// 4 MiB of RAM with [`identity_map`] plus: PDPT[1] -> PD2 at 0x4000 with PD2[0] mapping
/// 0x4000_0000 to 0x20_0000 (2 MiB), PD[3] -> PT at 0x5000 with 4 KiB pages, PDPT[3] a 1 GiB
/// page at 0xC000_0000 -> 0.
fn paged_memory() -> TestMem {
    let mut mem = TestMem::new(0x40_0000);
    identity_map(&mut mem);
    mem.set_u64(PDPT + 8, 0x4000 | 3);
    mem.set_u64(0x4000, 0x20_0000 | 0x83);
    mem.set_u64(PD + 8 * 3, 0x5000 | 3);
    // PT[0]: 0x60_0000 -> 0x10_0000, PT[1] not present, PT[2] read-only -> 0x10_2000.
    mem.set_u64(0x5000, 0x10_0000 | 3);
    mem.set_u64(0x5000 + 16, 0x10_2000 | 1);
    mem.set_u64(PDPT + 24, 0x83);
    mem
}

#[test]
fn page_walk_translations() {
    let mut mem = paged_memory();
    let r = long64(0);
    let t = |mem: &mut TestMem, gva, access| linear_to_physical(&r, mem, gva, access);
    assert_eq!(t(&mut mem, 0x12_3456, Access::Read), Ok(0x12_3456));
    assert_eq!(t(&mut mem, 0x4012_3456, Access::Write), Ok(0x32_3456));
    assert_eq!(t(&mut mem, 0x60_0123, Access::Execute), Ok(0x10_0123));
    assert_eq!(
        t(&mut mem, 0x60_1000, Access::Read),
        Err(TranslateError::PageNotPresent)
    );
    assert_eq!(t(&mut mem, 0x60_2abc, Access::Read), Ok(0x10_2abc));
    // CR0.WP is clear in these registers: a supervisor write to a read-only page is allowed.
    assert_eq!(t(&mut mem, 0x60_2abc, Access::Write), Ok(0x10_2abc));
    assert_eq!(t(&mut mem, 0xc012_3456, Access::Read), Ok(0x12_3456));
    assert_eq!(
        t(&mut mem, 0x8000_0000, Access::Read),
        Err(TranslateError::PageNotPresent)
    );
    assert_eq!(
        t(&mut mem, 0x0000_8000_0000_0000, Access::Read),
        Err(TranslateError::NonCanonical)
    );
    // With CR0.WP the read-only page refuses writes.
    let mut wp = r.clone();
    wp.cr0 |= 1 << 16;
    assert_eq!(
        linear_to_physical(&wp, &mut mem, 0x60_2abc, Access::Write),
        Err(TranslateError::PrivilegeViolation)
    );
    // NX applies to fetches only when EFER.NXE is set.
    mem.set_u64(PD + 8, (1 << 63) | 0x20_0000 | 0x83);
    assert_eq!(
        linear_to_physical(&r, &mut mem, 0x20_0000, Access::Execute),
        Ok(0x20_0000)
    );
    let mut nx = r.clone();
    nx.efer |= EFER_NXE;
    assert_eq!(
        linear_to_physical(&nx, &mut mem, 0x20_0000, Access::Execute),
        Err(TranslateError::PrivilegeViolation)
    );
    assert_eq!(
        linear_to_physical(&nx, &mut mem, 0x20_0000, Access::Read),
        Ok(0x20_0000)
    );
    // Paging off: linear is physical.
    let flat = prot32(0);
    assert_eq!(
        linear_to_physical(&flat, &mut mem, 0x1234_5678, Access::Write),
        Ok(0x1234_5678)
    );
}

#[test]
fn page_walk_reads_go_through_guest_memory() {
    let mut mem = paged_memory();
    mem.log_reads = true;
    let r = long64(0);
    assert_eq!(
        linear_to_physical(&r, &mut mem, 0x60_1234 - 0x1000 + 0x2000, Access::Read),
        Ok(0x10_2234)
    );
    assert_eq!(
        mem.read_log,
        vec![
            (0x1000, 8, Access::Read),
            (0x2000, 8, Access::Read),
            (0x3000 + 8 * 3, 8, Access::Read),
            (0x5000 + 8 * 2, 8, Access::Read),
        ]
    );
    // A no-access table page is reported with the entry's GPA.
    mem.no_access.insert(5);
    assert_eq!(
        linear_to_physical(&r, &mut mem, 0x60_2000, Access::Read),
        Err(TranslateError::Memory(MemFault {
            gpa: 0x5010,
            access: Access::Read,
            unmapped: false
        }))
    );
}

#[test]
fn no_access_page_table_page_exits_then_walk_succeeds() {
    let mut mem = paged_memory();
    mem.set_u64(0x20_0000, 0xfeed_f00d_1234_5678);
    // mov rax, [0x40000000]; hlt
    let insn = [0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x40];
    mem.load(0x10000, &insn);
    mem.load(0x10008, &[0xf4]);
    mem.no_access.insert(4);
    let mut r = long64(0x10000);
    let before = r.clone();
    let (exit, n) = run(&mut r, &mut mem, 10);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&insn);
    assert_eq!(
        exit,
        Exit::Memory {
            fault: MemFault {
                gpa: 0x4000,
                access: Access::Read,
                unmapped: false
            },
            gva: 0x4000_0000,
            instruction_bytes: bytes,
            instruction_length: 8
        }
    );
    assert_eq!(n, 0);
    assert_eq!(r, before);
    mem.no_access.clear();
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 2));
    assert_eq!(r.gpr[RAX], 0xfeed_f00d_1234_5678);

    // The same for the instruction fetch: code at 0x21_0000 uses PD entry 1.
    mem.load(0x21_0000, &[0xf4]);
    mem.no_access.insert(3);
    let mut r = long64(0x21_0000);
    let (exit, _) = run(&mut r, &mut mem, 10);
    assert_eq!(
        exit,
        Exit::Memory {
            fault: MemFault {
                gpa: 0x3008,
                access: Access::Read,
                unmapped: false
            },
            gva: 0x21_0000,
            instruction_bytes: [0; 16],
            instruction_length: 0
        }
    );
    mem.no_access.clear();
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 1));
}

#[test]
fn guest_page_faults() {
    let mut mem = paged_memory();
    // mov rax, [rbx]
    mem.load(0x10000, &[0x48, 0x8b, 0x03]);
    for (rbx, vector) in [
        (0x8000_0000u64, 14u8),
        (0x60_1000, 14),
        (0x0000_8000_0000_0000, 13),
    ] {
        let mut r = long64(0x10000);
        r.gpr[RBX] = rbx;
        assert_eq!(
            run(&mut r, &mut mem, 10),
            (
                Exit::Exception {
                    vector,
                    rip: 0x10000
                },
                0
            )
        );
        if vector == 14 {
            assert_eq!(r.cr2, rbx);
        }
    }
    // A write to a read-only page faults only with CR0.WP: mov [rbx], eax.
    mem.load(0x10000, &[0x89, 0x03, 0xf4]);
    let mut r = long64(0x10000);
    r.gpr[RBX] = 0x60_2010;
    r.gpr[RAX] = 0x99;
    assert_eq!(run(&mut r, &mut mem, 10).0, Exit::Halt);
    assert_eq!(mem.ram[0x10_2010], 0x99);
    let mut r = long64(0x10000);
    r.cr0 |= 1 << 16;
    r.gpr[RBX] = 0x60_2010;
    assert_eq!(
        run(&mut r, &mut mem, 10).0,
        Exit::Exception {
            vector: 14,
            rip: 0x10000
        }
    );
}

fn run64(code: &[u8], setup: impl FnOnce(&mut Regs, &mut TestMem)) -> (Regs, TestMem) {
    let mut mem = paged_memory();
    let mut r = long64(0x10000);
    mem.load(0x10000, code);
    setup(&mut r, &mut mem);
    let (exit, _) = run(&mut r, &mut mem, 1000);
    assert_eq!(exit, Exit::Halt, "{code:02x?} stopped at {:#x}", r.rip);
    (r, mem)
}

#[test]
fn rex_registers_and_sizes() {
    #[rustfmt::skip]
    let code = [
        0x49, 0xbf, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // mov r15, imm64
        0x4d, 0x01, 0xf8,                   // add r8, r15
        0x88, 0xe1,                         // mov cl, ah
        0x40, 0x88, 0xe2,                   // mov dl, spl
        0x45, 0x88, 0xc1,                   // mov r9b, r8b
        0x48, 0xc7, 0xc3, 0xff, 0xff, 0xff, 0xff, // mov rbx, -1
        0x89, 0xde,                         // mov esi, ebx (zero-extends)
        0x66, 0xbf, 0x34, 0x12,             // mov di, 0x1234
        0x41, 0xb4, 0x7f,                   // mov r12b, 0x7f
        0x48, 0x63, 0xe9,                   // movsxd rbp, ecx
        0xf4,
    ];
    let (r, _) = run64(&code, |r, _| {
        r.gpr[RAX] = 0xab00;
        r.gpr[8] = 1;
        r.gpr[RCX] = 0xffff_ffff_8000_0000;
        r.gpr[RDX] = 0xffff;
        r.gpr[RDI] = 0xffff_ffff_ffff_ffff;
        r.gpr[12] = 0x1111;
    });
    assert_eq!(r.gpr[15], 0x1122_3344_5566_7788);
    assert_eq!(r.gpr[8], 0x1122_3344_5566_7789);
    assert_eq!(r.gpr[RCX], 0xffff_ffff_8000_00ab);
    assert_eq!(r.gpr[RDX], 0xff00);
    assert_eq!(r.gpr[9], 0x89);
    assert_eq!(r.gpr[RBX], u64::MAX);
    assert_eq!(r.gpr[6], 0xffff_ffff);
    assert_eq!(r.gpr[RDI], 0xffff_ffff_ffff_1234);
    assert_eq!(r.gpr[12], 0x117f);
    assert_eq!(r.gpr[5], 0xffff_ffff_8000_00ab);
}

#[test]
fn rip_relative_and_memory_forms() {
    #[rustfmt::skip]
    let code = [
        0xc7, 0x05, 0xf6, 0x0f, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12, // 10000: mov dword [rip+0xff6], 0x12345678 -> 0x11000
        0x48, 0x8b, 0x05, 0xef, 0x0f, 0x00, 0x00,                   // 1000A: mov rax, [rip+0xfef] -> 0x11000
        0x64, 0x48, 0x8b, 0x1c, 0x25, 0x10, 0x00, 0x00, 0x00,       // 10011: mov rbx, fs:[0x10]
        0x67, 0x8b, 0x0f,                                           // 1001A: mov ecx, [edi]
        0x48, 0x8b, 0x6c, 0xce, 0xf8,                               // 1001D: mov rbp, [rsi+rcx*8-8]
        0x48, 0x98,                                                 // 10022: cdqe
        0x48, 0x99,                                                 // 10024: cqo
        0xf4,
    ];
    let (r, mem) = run64(&code, |r, mem| {
        r.fs.base = 0x8000;
        mem.set_u64(0x8010, 0xaaaa_bbbb_cccc_dddd);
        r.gpr[RDI] = 0xffff_ffff_0000_9000;
        mem.set_u64(0x9000, 2);
        r.gpr[6] = 0xa000;
        mem.set_u64(0xa008, 0x8765_4321);
    });
    assert_eq!(mem.u32_at(0x11000), 0x1234_5678);
    assert_eq!(r.gpr[RBX], 0xaaaa_bbbb_cccc_dddd);
    assert_eq!(r.gpr[RCX], 2);
    assert_eq!(r.gpr[RAX], 0x1234_5678);
    assert_eq!(r.gpr[RDX], 0);
    assert_eq!(r.gpr[5], 0x8765_4321);
    let (r, _) = run64(&[0x48, 0x98, 0x48, 0x99, 0xf4], |r, _| {
        r.gpr[RAX] = 0x8000_0000;
    });
    assert_eq!((r.gpr[RAX], r.gpr[RDX]), (0xffff_ffff_8000_0000, u64::MAX));
}

#[test]
fn stack_and_calls_in_long_mode() {
    #[rustfmt::skip]
    let code = [
        0x41, 0x50,                   // 10000: push r8
        0x66, 0x50,                   // 10002: push ax
        0x6a, 0xff,                   // 10004: push -1
        0xe8, 0x07, 0x00, 0x00, 0x00, // 10006: call 0x10012
        0x41, 0x5f,                   // 1000B: pop r15
        0x66, 0x5e,                   // 1000D: pop si
        0x5d,                         // 1000F: pop rbp
        0xf4,                         // 10010: hlt
        0x90,                         // 10011
        0x48, 0x8d, 0x05, 0x06, 0x00, 0x00, 0x00, // 10012: lea rax, [rip+6] -> 0x1001f
        0xff, 0xd0,                   // 10019: call rax
        0xc3,                         // 1001B: ret
        0x90, 0x90, 0x90,             // 1001C
        0xff, 0x25, 0x00, 0x00, 0x00, 0x00, // 1001F: jmp [rip+0] (the qword at 0x10025)
        0x2d, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // 10025: dq 0x1002d
        0x9c,                         // 1002D: pushfq
        0x58,                         // 1002E: pop rax
        0xc3,                         // 1002F: ret
    ];
    let (r, mem) = run64(&code, |r, _| {
        r.gpr[RSP] = 0x8000;
        r.gpr[8] = 0x0102_0304_0506_0708;
        r.gpr[RAX] = 0xbeef;
        r.rflags = 0x2 | 0x1;
    });
    assert_eq!(r.gpr[RSP], 0x8000);
    assert_eq!(mem.u64_at(0x7ff8), 0x0102_0304_0506_0708);
    assert_eq!(mem.bytes(0x7ff6, 2), &[0xef, 0xbe]);
    assert_eq!(mem.u64_at(0x7fee), u64::MAX);
    assert_eq!(mem.u64_at(0x7fe6), 0x1000b);
    assert_eq!(mem.u64_at(0x7fde), 0x1001b);
    assert_eq!(r.gpr[RAX], 0x3);
    assert_eq!(r.gpr[15], u64::MAX);
    assert_eq!(r.gpr[6] & 0xffff, 0xbeef);
    assert_eq!(r.gpr[5], 0x0102_0304_0506_0708);
    assert_eq!(r.rip, 0x10011);
}

#[test]
fn far_return_to_64_bit_code() {
    // From compatibility mode (32-bit code, LMA): push 0x18; push target; retf.
    #[rustfmt::skip]
    let code = [
        0x6a, 0x18,                   // push 0x18
        0x68, 0x00, 0x01, 0x01, 0x00, // push 0x10100
        0xcb,                         // retf
    ];
    let mut mem = paged_memory();
    mem.load(0x10000, &code);
    mem.load(0x10100, &[0x48, 0x31, 0xc0, 0xf4]); // xor rax, rax; hlt
    let mut gdt = [0u8; 32];
    gdt[0x18..].copy_from_slice(&[0xff, 0xff, 0, 0, 0, 0x9b, 0xaf, 0]);
    mem.load(0x9000, &gdt);
    let mut r = long64(0x10000);
    r.cs.attributes = 0xc09b;
    r.gdtr.base = 0x9000;
    r.gdtr.limit = 0x1f;
    r.gpr[RSP] = 0x8000;
    r.gpr[RAX] = u64::MAX;
    assert_eq!(run(&mut r, &mut mem, 100), (Exit::Halt, 5));
    assert_eq!(r.cs.selector, 0x18);
    assert_eq!(r.cs.attributes, 0xa09b);
    assert_eq!(r.gpr[RAX], 0);
    assert_eq!(r.gpr[RSP], 0x8000);
    assert_eq!(r.rip, 0x10104);
}

#[test]
fn descriptor_errors() {
    // mov ds, ax with selectors that do not work.
    let mut mem = TestMem::new(0x20000);
    mem.load(0x1000, &[0x8e, 0xd8, 0xf4]);
    let mut gdt = [0u8; 32];
    gdt[0x08..0x10].copy_from_slice(&[0xff, 0xff, 0, 0, 0, 0x12, 0xcf, 0]); // not present
    gdt[0x10..0x18].copy_from_slice(&[0xff, 0xff, 0, 0, 0, 0x89, 0x40, 0]); // system (TSS)
    gdt[0x18..0x20].copy_from_slice(&[0xff, 0xff, 0, 0x10, 0x20, 0x93, 0xcf, 0x30]); // data
    mem.load(0x9000, &gdt);
    for (sel, vector) in [
        (0x08u64, Some(11u8)),
        (0x10, Some(13)),
        (0x20, Some(13)),
        (0x1c, Some(13)),
        (0x18, None),
        (0, None),
    ] {
        let mut r = prot32(0x1000);
        r.gdtr.base = 0x9000;
        r.gdtr.limit = 0x1f;
        r.gpr[RAX] = sel;
        let (exit, _) = run(&mut r, &mut mem, 10);
        match vector {
            Some(vector) => assert_eq!(
                exit,
                Exit::Exception {
                    vector,
                    rip: 0x1000
                },
                "selector {sel:#x}"
            ),
            None => assert_eq!(exit, Exit::Halt, "selector {sel:#x}"),
        }
        if sel == 0x18 {
            assert_eq!(r.ds.base, 0x3020_1000);
            assert_eq!(r.ds.limit, 0xffff_ffff);
            assert_eq!(r.ds.attributes, 0xc093);
        }
    }
}

#[test]
fn rep_stos_down_from_the_top_of_the_address_space() {
    // std; rep stosb with RDI = 0xFFFF_FFFF_FFFF_FFFF: a guest page fault, not an overflow.
    let (mut r, mut mem) = (long64(0x10000), paged_memory());
    mem.load(0x10000, &[0xfd, 0xf3, 0xaa]);
    r.gpr[RDI] = u64::MAX;
    r.gpr[RCX] = 0x100;
    assert_eq!(
        run(&mut r, &mut mem, 100),
        (
            Exit::Exception {
                vector: 14,
                rip: 0x10001
            },
            1
        )
    );
    assert_eq!((r.cr2, r.gpr[RDI], r.gpr[RCX]), (u64::MAX, u64::MAX, 0x100));
}
