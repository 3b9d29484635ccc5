// SPDX-License-Identifier: GPL-2.0

//! Reset state and 16-bit real-mode programs.

use mshv_rs_host_tests::cpu::{run, Exit, Regs, Segment, Table};
use mshv_rs_host_tests::testmem::{real_mode, run_at, TestMem};

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSP: usize = 4;
const RBP: usize = 5;
const RSI: usize = 6;
const RDI: usize = 7;

#[test]
fn reset_state_is_architectural() {
    let r = Regs::reset();
    assert_eq!(r.rip, 0xfff0);
    assert_eq!(r.rflags, 0x2);
    assert_eq!(
        r.cs,
        Segment {
            selector: 0xf000,
            base: 0xffff_0000,
            limit: 0xffff,
            attributes: 0x9b
        }
    );
    for s in [r.ds, r.es, r.fs, r.gs, r.ss] {
        assert_eq!(
            s,
            Segment {
                selector: 0,
                base: 0,
                limit: 0xffff,
                attributes: 0x93
            }
        );
    }
    assert_eq!(r.cr0, 0x6000_0010);
    assert_eq!((r.cr2, r.cr3, r.cr4, r.efer), (0, 0, 0, 0));
    assert_eq!(
        r.gdtr,
        Table {
            base: 0,
            limit: 0xffff
        }
    );
    assert_eq!(r.idtr, r.gdtr);
    let mut gpr = [0u64; 16];
    gpr[RDX] = 0x600;
    assert_eq!(r.gpr, gpr);
    assert_eq!(Regs::default(), r);
}

/// The reset vector in a 64 KiB ROM below 4 GiB: a near JMP to offset 0xFF00, then port I/O as
/// in `tests/guest/hello16.S`.
#[test]
fn reset_vector_rom_with_port_io() {
    let mut mem = TestMem::new(0x1000);
    mem.rom = vec![0xf4; 0x10000];
    // 0xFFF0: jmp near 0xFF00 (E9 rel16: 0xFF00 - 0xFFF3 = 0xFF0D).
    mem.load(0xffff_fff0, &[0xe9, 0x0d, 0xff]);
    #[rustfmt::skip]
    let code = [
        0xba, 0xf8, 0x03, // FF00: mov dx, 0x3f8
        0xb0, b'h',       // FF03: mov al, 'h'
        0xee,             // FF05: out dx, al
        0xe4, 0xe0,       // FF06: in al, 0xe0
        0x04, 0x01,       // FF08: add al, 1
        0xe6, 0xe1,       // FF0A: out 0xe1, al
        0xf4,             // FF0C: hlt
    ];
    mem.load(0xffff_ff00, &code);
    let mut r = Regs::reset();

    let (exit, n) = run(&mut r, &mut mem, 100);
    assert_eq!(
        exit,
        Exit::Io {
            port: 0x3f8,
            size: 1,
            write: true,
            value: u32::from(b'h'),
            instruction_length: 1
        }
    );
    assert_eq!(n, 3);
    assert_eq!(r.rip, 0xff05);
    r.rip += 1;

    let (exit, n) = run(&mut r, &mut mem, 100);
    assert_eq!(
        exit,
        Exit::Io {
            port: 0xe0,
            size: 1,
            write: false,
            value: 0,
            instruction_length: 2
        }
    );
    assert_eq!(n, 0);
    assert_eq!(r.rip, 0xff06);
    // The VMM emulates the IN: it sets AL and advances RIP.
    r.gpr[RAX] = (r.gpr[RAX] & !0xff) | 0x41;
    r.rip += 2;

    let (exit, _) = run(&mut r, &mut mem, 100);
    assert_eq!(
        exit,
        Exit::Io {
            port: 0xe1,
            size: 1,
            write: true,
            value: 0x42,
            instruction_length: 2
        }
    );
    r.rip += 2;
    let (exit, n) = run(&mut r, &mut mem, 100);
    assert_eq!((exit, n), (Exit::Halt, 1));
    assert_eq!(r.rip, 0xff0d);
    assert_eq!(r.cs.base, 0xffff_0000);
}

#[test]
fn far_jump_from_reset_vector_loads_real_mode_cs() {
    let mut mem = TestMem::new(0x10000);
    mem.rom = vec![0; 0x10000];
    // jmp 0x0700:0x0C00 (linear 0x7C00).
    mem.load(0xffff_fff0, &[0xea, 0x00, 0x0c, 0x00, 0x07]);
    mem.load(0x7c00, &[0xf4]);
    let mut r = Regs::reset();
    assert_eq!(run(&mut r, &mut mem, 10), (Exit::Halt, 2));
    assert_eq!(r.cs.selector, 0x0700);
    assert_eq!(r.cs.base, 0x7000);
    assert_eq!(r.cs.attributes, 0x9b);
    assert_eq!(r.rip, 0x0c01);
}

#[test]
fn arithmetic_loop_and_branches() {
    #[rustfmt::skip]
    let code = [
        0xb8, 0x34, 0x12, // mov ax, 0x1234
        0xbb, 0x11, 0x11, // mov bx, 0x1111
        0x01, 0xd8,       // add ax, bx        ; ax = 0x2345
        0x29, 0xc3,       // sub bx, ax        ; bx = 0xedcc, CF = 1
        0x40,             // inc ax            ; ax = 0x2346
        0x4b,             // dec bx            ; bx = 0xedcb
        0xb9, 0x05, 0x00, // mov cx, 5
        0x31, 0xf6,       // xor si, si
        0x01, 0xce,       // l: add si, cx
        0xe2, 0xfc,       // loop l            ; si = 5+4+3+2+1
        0x83, 0xfe, 0x0f, // cmp si, 15
        0x75, 0x02,       // jne skip
        0xb2, 0x01,       // mov dl, 1
        0x72, 0x02,       // skip: jc bad      ; CF = 0 after cmp (equal)
        0xeb, 0x02,       // jmp ok
        0xb2, 0xee,       // bad: mov dl, 0xee
        0xf4,             // ok: hlt
    ];
    let mut mem = TestMem::new(0x10000);
    let mut r = real_mode(0x7c00);
    r.gpr[RAX] = 0xdead_0000_0000_0000;
    let (exit, n) = run_at(&mut r, &mut mem, 0x7c00, &code);
    assert_eq!(exit, Exit::Halt);
    assert_eq!(n, 8 + 2 * 5 + 6);
    // 16-bit writes keep the upper bits.
    assert_eq!(r.gpr[RAX], 0xdead_0000_0000_2346);
    assert_eq!(r.gpr[RBX], 0xedcb);
    assert_eq!(r.gpr[RCX], 0);
    assert_eq!(r.gpr[RSI], 15);
    assert_eq!(r.gpr[RDX], 1);
    assert_eq!(r.rip, 0x7c00 + code.len() as u64);
    // ZF from CMP, IF unchanged.
    assert_eq!(r.rflags & 0x8d5, 0x44);
}

#[test]
fn sixteen_bit_addressing_and_segments() {
    #[rustfmt::skip]
    let code = [
        0xb8, 0x00, 0x10,             // mov ax, 0x1000
        0x8e, 0xd8,                   // mov ds, ax          ; ds.base = 0x10000
        0xbb, 0x00, 0x02,             // mov bx, 0x200
        0xbe, 0x04, 0x00,             // mov si, 4
        0xc7, 0x00, 0xef, 0xbe,       // mov word [bx+si], 0xbeef
        0xc6, 0x40, 0x02, 0x55,       // mov byte [bx+si+2], 0x55
        0x8b, 0x08,                   // mov cx, [bx+si]
        0x26, 0x89, 0x0e, 0x00, 0x05, // mov es:[0x500], cx
        0xbd, 0x00, 0x03,             // mov bp, 0x300
        0xc7, 0x46, 0x02, 0x34, 0x12, // mov word [bp+2], 0x1234 ; ss:0x302
        0x8d, 0x52, 0xfe,             // lea dx, [bp+si-2]     ; 0x302
        0x8c, 0xdf,                   // mov di, ds
        0x0e,                         // push cs
        0x07,                         // pop es
        0xa0, 0x06, 0x02,             // mov al, [0x206]       ; ds:0x206 = 0x55
        0xf4,                         // hlt
    ];
    let mut mem = TestMem::new(0x20000);
    let mut r = real_mode(0x7c00);
    assert_eq!(run_at(&mut r, &mut mem, 0x7c00, &code).0, Exit::Halt);
    assert_eq!(mem.bytes(0x10204, 3), &[0xef, 0xbe, 0x55]);
    assert_eq!(r.gpr[RCX], 0xbeef);
    assert_eq!(mem.bytes(0x500, 2), &[0xef, 0xbe]);
    assert_eq!(mem.bytes(0x302, 2), &[0x34, 0x12]);
    assert_eq!(r.gpr[RDX], 0x302);
    assert_eq!(r.gpr[RDI], 0x1000);
    assert_eq!(r.ds.base, 0x10000);
    assert_eq!(r.es.selector, 0);
    assert_eq!(r.gpr[RAX], 0x1055);
    assert_eq!(r.gpr[RSP], 0x7000);
}

#[test]
fn call_ret_push_pop() {
    #[rustfmt::skip]
    let code = [
        0xb8, 0xcd, 0xab, // 7C00: mov ax, 0xabcd
        0x50,             // 7C03: push ax
        0xe8, 0x04, 0x00, // 7C04: call 0x7c0b
        0x5b,             // 7C07: pop bx
        0xf4,             // 7C08: hlt
        0x90, 0x90,       // 7C09
        0xb9, 0x11, 0x00, // 7C0B: mov cx, 0x11
        0x9c,             // 7C0E: pushf
        0xf9,             // 7C0F: stc
        0x9d,             // 7C10: popf            ; CF back to 0
        0xc3,             // 7C11: ret
    ];
    let mut mem = TestMem::new(0x10000);
    let mut r = real_mode(0x7c00);
    assert_eq!(run_at(&mut r, &mut mem, 0x7c00, &code).0, Exit::Halt);
    assert_eq!(r.gpr[RSP], 0x7000);
    assert_eq!(r.gpr[RBX], 0xabcd);
    assert_eq!(r.gpr[RCX], 0x11);
    assert_eq!(mem.bytes(0x6ffe, 2), &[0xcd, 0xab]);
    assert_eq!(mem.bytes(0x6ffc, 2), &[0x07, 0x7c]);
    assert_eq!(mem.bytes(0x6ffa, 2), &[0x02, 0x00]);
    assert_eq!(r.rflags, 0x2);
    assert_eq!(r.rip, 0x7c09);
}

#[test]
fn loop_counter_honours_address_size() {
    // loop $ with a 16-bit counter: CX = 1, so one iteration; the upper half of ECX stays.
    let mut mem = TestMem::new(0x10000);
    let mut r = real_mode(0x7c00);
    r.gpr[RCX] = 0x0001_0001;
    assert_eq!(
        run_at(&mut r, &mut mem, 0x7c00, &[0xe2, 0xfe, 0xf4]),
        (Exit::Halt, 2)
    );
    assert_eq!(r.gpr[RCX], 0x0001_0000);

    // With an address-size prefix the counter is ECX: 0x10001 iterations.
    let mut r = real_mode(0x7c00);
    r.gpr[RCX] = 0x0001_0001;
    assert_eq!(
        run_at(&mut r, &mut mem, 0x7c00, &[0x67, 0xe2, 0xfd, 0xf4]),
        (Exit::Halt, 0x10002)
    );
    assert_eq!(r.gpr[RCX], 0);

    // JCXZ is taken with CX = 0 even if ECX is not zero; LOOPNE stops on ZF.
    #[rustfmt::skip]
    let code = [
        0xe3, 0x01,       // jcxz +1
        0xf4,             // hlt (skipped)
        0xb9, 0x05, 0x00, // mov cx, 5
        0x31, 0xc0,       // xor ax, ax
        0x40,             // l: inc ax
        0x3c, 0x02,       // cmp al, 2
        0xe0, 0xfb,       // loopne l
        0xf4,             // hlt
    ];
    let mut r = real_mode(0x7c00);
    r.gpr[RCX] = 0x0007_0000;
    assert_eq!(run_at(&mut r, &mut mem, 0x7c00, &code).0, Exit::Halt);
    assert_eq!(r.rip, 0x7c00 + code.len() as u64);
    assert_eq!(r.gpr[RAX], 2);
    assert_eq!(r.gpr[RCX], 0x0007_0003);
}

#[test]
fn in_out_sizes_and_vmm_emulation() {
    #[rustfmt::skip]
    let code = [
        0xba, 0x00, 0x01, // mov dx, 0x100
        0xef,             // out dx, ax
        0x66, 0xef,       // out dx, eax
        0x66, 0xe5, 0x40, // in eax, 0x40
        0xed,             // in ax, dx
        0xec,             // in al, dx
        0xf4,             // hlt
    ];
    let mut mem = TestMem::new(0x10000);
    let mut r = real_mode(0x7c00);
    r.gpr[RAX] = 0x1122_3344_5566_7788;
    let (exit, _) = run_at(&mut r, &mut mem, 0x7c00, &code);
    assert_eq!(
        exit,
        Exit::Io {
            port: 0x100,
            size: 2,
            write: true,
            value: 0x7788,
            instruction_length: 1
        }
    );
    r.rip += 1;
    let (exit, n) = run(&mut r, &mut mem, 100);
    assert_eq!(n, 0);
    assert_eq!(
        exit,
        Exit::Io {
            port: 0x100,
            size: 4,
            write: true,
            value: 0x5566_7788,
            instruction_length: 2
        }
    );
    r.rip += 2;
    let (exit, _) = run(&mut r, &mut mem, 100);
    assert_eq!(
        exit,
        Exit::Io {
            port: 0x40,
            size: 4,
            write: false,
            value: 0,
            instruction_length: 3
        }
    );
    // The VMM supplies EAX (zero-extending RAX, as a 32-bit write does) and advances RIP.
    r.gpr[RAX] = 0xcafe_f00d;
    r.rip += 3;
    // The next two INs are handled by GuestMemory::io without an exit.
    mem.io_in.extend([0xaaaa_1234, 0xbbbb_bb56]);
    assert_eq!(run(&mut r, &mut mem, 100), (Exit::Halt, 3));
    assert_eq!(r.gpr[RAX], 0xcafe_1256);
    assert_eq!(
        mem.io_log,
        vec![
            (0x100, 2, false, 0xaaaa_1234),
            (0x100, 1, false, 0xbbbb_bb56)
        ]
    );
}

#[test]
fn out_handled_without_exit() {
    let mut mem = TestMem::new(0x10000);
    mem.io_out_handled = true;
    let mut r = real_mode(0x7c00);
    r.gpr[RAX] = 0x1234_5678;
    // out 0x80, al; out 0x81, ax; hlt
    let code = [0xe6, 0x80, 0xe7, 0x81, 0xf4];
    assert_eq!(run_at(&mut r, &mut mem, 0x7c00, &code), (Exit::Halt, 3));
    assert_eq!(
        mem.io_log,
        vec![(0x80, 1, true, 0x78), (0x81, 2, true, 0x5678)]
    );
}

#[test]
fn rep_stos_and_movs_in_real_mode() {
    #[rustfmt::skip]
    let code = [
        0xb8, 0x00, 0x20, // mov ax, 0x2000
        0x8e, 0xc0,       // mov es, ax
        0x31, 0xff,       // xor di, di
        0xb0, 0x5a,       // mov al, 0x5a
        0xb9, 0x00, 0x01, // mov cx, 0x100
        0xfc,             // cld
        0xf3, 0xaa,       // rep stosb          ; 0x20000..0x200ff = 0x5a
        0x1e,             // push ds
        0x06,             // push es
        0x1f,             // pop ds             ; ds = 0x2000
        0xbe, 0x00, 0x00, // mov si, 0
        0xbf, 0x00, 0x10, // mov di, 0x1000
        0xb9, 0x40, 0x00, // mov cx, 0x40
        0xf3, 0x66, 0xa5, // rep movsd          ; 0x21000..0x210ff
        0x1f,             // pop ds
        0xf4,             // hlt
    ];
    let mut mem = TestMem::new(0x30000);
    let mut r = real_mode(0x7c00);
    assert_eq!(run_at(&mut r, &mut mem, 0x7c00, &code).0, Exit::Halt);
    assert!(mem.bytes(0x20000, 0x100).iter().all(|&b| b == 0x5a));
    assert_eq!(mem.bytes(0x20100, 1), &[0]);
    assert!(mem.bytes(0x21000, 0x100).iter().all(|&b| b == 0x5a));
    assert_eq!(r.gpr[RDI], 0x1100);
    assert_eq!(r.gpr[RSI], 0x100);
    assert_eq!(r.gpr[RCX], 0);
    assert_eq!(r.ds.selector, 0);
    assert_eq!(r.gpr[RBP], 0);
}
