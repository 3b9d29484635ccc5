// SPDX-License-Identifier: GPL-2.0

//! Results and flags of the ALU, shift, multiply and divide instructions at edge values.
//!
//! Every expectation is written out by hand. Sizes 1, 2 and 4 run in 32-bit protected mode,
//! size 8 in 64-bit mode.

use mshv_rs_host_tests::cpu::{run, Exit, Regs};
use mshv_rs_host_tests::testmem::{identity_map, long64, prot32, TestMem};

const CF: u64 = 0x1;
const PF: u64 = 0x4;
const AF: u64 = 0x10;
const ZF: u64 = 0x40;
const SF: u64 = 0x80;
const OF: u64 = 0x800;
const ARITH: u64 = CF | PF | AF | ZF | SF | OF;

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;

const ADD: u8 = 0;
const OR: u8 = 1;
const ADC: u8 = 2;
const SBB: u8 = 3;
const AND: u8 = 4;
const SUB: u8 = 5;
const XOR: u8 = 6;
const CMP: u8 = 7;

/// Runs `code` followed by HLT with registers prepared by `setup`; 64-bit mode if `long`.
fn exec(code: &[u8], long: bool, setup: impl FnOnce(&mut Regs)) -> Regs {
    let mut mem = TestMem::new(0x20000);
    let mut r = if long {
        identity_map(&mut mem);
        long64(0x10000)
    } else {
        prot32(0x10000)
    };
    setup(&mut r);
    let mut code = code.to_vec();
    code.push(0xf4);
    mem.load(0x10000, &code);
    let (exit, _) = run(&mut r, &mut mem, 100);
    assert_eq!(exit, Exit::Halt, "code {code:02x?}");
    r
}

/// Encodes `op r/m, reg` with r/m = rAX and reg = rCX for an operand of `size` bytes.
fn rm_reg(opcode: u8, size: u8) -> Vec<u8> {
    let mut v = Vec::new();
    match size {
        2 => v.push(0x66),
        8 => v.push(0x48),
        _ => {}
    }
    v.push(if size == 1 { opcode } else { opcode | 1 });
    v.push(0xc8);
    v
}

fn mask(size: u8) -> u64 {
    if size == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    }
}

struct AluCase {
    op: u8,
    size: u8,
    a: u64,
    b: u64,
    cf_in: bool,
    res: u64,
    flags: u64,
}

#[rustfmt::skip]
const ALU_CASES: &[AluCase] = &[
    // ADD
    AluCase { op: ADD, size: 1, a: 0x00, b: 0x00, cf_in: true, res: 0x00, flags: ZF | PF },
    AluCase { op: ADD, size: 1, a: 0x7f, b: 0x01, cf_in: false, res: 0x80, flags: OF | SF | AF },
    AluCase { op: ADD, size: 1, a: 0xff, b: 0x01, cf_in: false, res: 0x00, flags: CF | ZF | AF | PF },
    AluCase { op: ADD, size: 1, a: 0x80, b: 0x80, cf_in: false, res: 0x00, flags: CF | OF | ZF | PF },
    AluCase { op: ADD, size: 1, a: 0x0f, b: 0x01, cf_in: false, res: 0x10, flags: AF },
    AluCase { op: ADD, size: 2, a: 0x7fff, b: 0x0001, cf_in: false, res: 0x8000, flags: OF | SF | AF | PF },
    AluCase { op: ADD, size: 2, a: 0xffff, b: 0x0001, cf_in: false, res: 0x0000, flags: CF | ZF | AF | PF },
    AluCase { op: ADD, size: 4, a: 0x7fff_ffff, b: 1, cf_in: false, res: 0x8000_0000, flags: OF | SF | AF | PF },
    AluCase { op: ADD, size: 4, a: 0xffff_ffff, b: 1, cf_in: false, res: 0, flags: CF | ZF | AF | PF },
    AluCase { op: ADD, size: 4, a: 0x1234_5678, b: 0x0101_0101, cf_in: false, res: 0x1335_5779, flags: 0 },
    AluCase { op: ADD, size: 8, a: 0x7fff_ffff_ffff_ffff, b: 1, cf_in: false, res: 1 << 63, flags: OF | SF | AF | PF },
    AluCase { op: ADD, size: 8, a: u64::MAX, b: 1, cf_in: false, res: 0, flags: CF | ZF | AF | PF },
    AluCase { op: ADD, size: 8, a: 1 << 32, b: 0xffff_ffff, cf_in: false, res: 0x1_ffff_ffff, flags: PF },
    // ADC
    AluCase { op: ADC, size: 1, a: 0xff, b: 0x00, cf_in: true, res: 0x00, flags: CF | ZF | AF | PF },
    AluCase { op: ADC, size: 1, a: 0x7f, b: 0x00, cf_in: true, res: 0x80, flags: OF | SF | AF },
    AluCase { op: ADC, size: 2, a: 0xfffe, b: 0x0001, cf_in: true, res: 0x0000, flags: CF | ZF | AF | PF },
    AluCase { op: ADC, size: 4, a: 0, b: 0, cf_in: false, res: 0, flags: ZF | PF },
    AluCase { op: ADC, size: 8, a: u64::MAX, b: u64::MAX, cf_in: true, res: u64::MAX, flags: CF | SF | AF | PF },
    // SUB
    AluCase { op: SUB, size: 1, a: 0x00, b: 0x01, cf_in: false, res: 0xff, flags: CF | SF | AF | PF },
    AluCase { op: SUB, size: 1, a: 0x80, b: 0x01, cf_in: false, res: 0x7f, flags: OF | AF },
    AluCase { op: SUB, size: 1, a: 0x05, b: 0x05, cf_in: true, res: 0x00, flags: ZF | PF },
    AluCase { op: SUB, size: 1, a: 0x10, b: 0x01, cf_in: false, res: 0x0f, flags: AF | PF },
    AluCase { op: SUB, size: 1, a: 0x7f, b: 0xff, cf_in: false, res: 0x80, flags: CF | OF | SF },
    AluCase { op: SUB, size: 2, a: 0x8000, b: 0x0001, cf_in: false, res: 0x7fff, flags: OF | AF | PF },
    AluCase { op: SUB, size: 4, a: 0, b: 1, cf_in: false, res: 0xffff_ffff, flags: CF | SF | AF | PF },
    AluCase { op: SUB, size: 8, a: 1 << 63, b: 1, cf_in: false, res: 0x7fff_ffff_ffff_ffff, flags: OF | AF | PF },
    AluCase { op: SUB, size: 8, a: 0, b: 1, cf_in: false, res: u64::MAX, flags: CF | SF | AF | PF },
    // SBB
    AluCase { op: SBB, size: 1, a: 0x00, b: 0x00, cf_in: true, res: 0xff, flags: CF | SF | AF | PF },
    AluCase { op: SBB, size: 1, a: 0x80, b: 0x00, cf_in: true, res: 0x7f, flags: OF | AF },
    AluCase { op: SBB, size: 2, a: 0x0001, b: 0x0000, cf_in: true, res: 0x0000, flags: ZF | PF },
    AluCase { op: SBB, size: 4, a: 5, b: 5, cf_in: true, res: 0xffff_ffff, flags: CF | SF | AF | PF },
    AluCase { op: SBB, size: 8, a: 0, b: u64::MAX, cf_in: true, res: 0, flags: CF | ZF | AF | PF },
    // CMP leaves the destination alone.
    AluCase { op: CMP, size: 1, a: 0x01, b: 0x02, cf_in: false, res: 0x01, flags: CF | SF | AF | PF },
    AluCase { op: CMP, size: 4, a: 5, b: 5, cf_in: true, res: 5, flags: ZF | PF },
    AluCase { op: CMP, size: 8, a: 1 << 63, b: 1, cf_in: false, res: 1 << 63, flags: OF | AF | PF },
    // AND, OR, XOR clear CF and OF (AF is undefined and not compared).
    AluCase { op: AND, size: 1, a: 0xf0, b: 0x0f, cf_in: true, res: 0x00, flags: ZF | PF },
    AluCase { op: AND, size: 1, a: 0xff, b: 0x80, cf_in: true, res: 0x80, flags: SF },
    AluCase { op: OR, size: 2, a: 0x8000, b: 0x0001, cf_in: true, res: 0x8001, flags: SF },
    AluCase { op: OR, size: 4, a: 0, b: 0, cf_in: false, res: 0, flags: ZF | PF },
    AluCase { op: XOR, size: 1, a: 0xff, b: 0xff, cf_in: true, res: 0, flags: ZF | PF },
    AluCase { op: XOR, size: 8, a: 1 << 63, b: 3, cf_in: false, res: (1 << 63) | 3, flags: SF | PF },
];

#[test]
fn alu_register_forms() {
    for c in ALU_CASES {
        let code = rm_reg(c.op << 3, c.size);
        let r = exec(&code, c.size == 8, |r| {
            r.gpr[RAX] = c.a;
            r.gpr[RCX] = c.b;
            r.rflags = 0x2 | if c.cf_in { CF } else { 0 };
        });
        let logic = matches!(c.op, AND | OR | XOR);
        let compared = if logic { ARITH & !AF } else { ARITH };
        let what = format!("op {} size {} {:#x}, {:#x}", c.op, c.size, c.a, c.b);
        assert_eq!(r.gpr[RAX] & mask(c.size), c.res, "{what}");
        assert_eq!(r.rflags & compared, c.flags, "{what}");
        assert_eq!(r.gpr[RCX], c.b, "{what}");
    }
}

#[test]
fn alu_encodings() {
    // Each line: code, EAX before, ECX before, EAX after, flags after.
    #[rustfmt::skip]
    let cases: &[(&[u8], u64, u64, u64, u64)] = &[
        (&[0x02, 0xc1], 0x7f, 0x01, 0x80, OF | SF | AF),         // add al, cl
        (&[0x2b, 0xc1], 0, 1, 0xffff_ffff, CF | SF | AF | PF),   // sub eax, ecx
        (&[0x04, 0xff], 0x01, 0, 0x00, CF | ZF | AF | PF),       // add al, 0xff
        (&[0x05, 0x01, 0, 0, 0x80], 0, 0, 0x8000_0001, SF),      // add eax, 0x80000001
        (&[0x66, 0x2d, 0x01, 0x00], 0x8000, 0, 0x7fff, OF | AF | PF), // sub ax, 1
        (&[0x3c, 0x10], 0x10, 0, 0x10, ZF | PF),                 // cmp al, 0x10
        (&[0x80, 0xc0, 0x01], 0xff, 0, 0x00, CF | ZF | AF | PF), // add al, 1 (80 /0)
        (&[0x81, 0xe8, 0, 0, 0, 0x80], 0, 0, 0x8000_0000, CF | OF | SF | PF), // sub eax, 0x80000000
        (&[0x83, 0xc0, 0xff], 1, 0, 0, CF | ZF | AF | PF),       // add eax, -1
        (&[0x83, 0xf8, 0xff], 0, 0, 0, CF | AF),                 // cmp eax, -1
        (&[0x83, 0xe0, 0xf0], 0x1234_5678, 0, 0x1234_5670, 0),   // and eax, -16
        (&[0x0c, 0x80], 0x01, 0, 0x81, SF | PF),                 // or al, 0x80
        (&[0x34, 0xff], 0x0f, 0, 0xf0, SF | PF),                 // xor al, 0xff
        (&[0x14, 0x00], 0xff, 0, 0x00, CF | ZF | AF | PF),       // adc al, 0 (CF set)
        (&[0x84, 0xc1], 0x80, 0x80, 0x80, SF),                   // test cl, al
        (&[0x85, 0xc1], 0x8000_0000, 0x7fff_ffff, 0x8000_0000, ZF | PF), // test ecx, eax
        (&[0xa8, 0x01], 0x02, 0, 0x02, ZF | PF),                 // test al, 1
        (&[0xa9, 0, 0, 0, 0x80], 0x8000_0000, 0, 0x8000_0000, SF | PF), // test eax, 0x80000000
        (&[0xf6, 0xc0, 0x81], 0x01, 0, 0x01, 0),                 // test al, 0x81
        (&[0xf7, 0xc0, 0, 0, 0, 0], 0x1234, 0, 0x1234, ZF | PF), // test eax, 0
    ];
    for (code, a, b, res, flags) in cases {
        let r = exec(code, false, |r| {
            r.gpr[RAX] = *a;
            r.gpr[RCX] = *b;
            r.rflags = 0x2 | OF | CF;
        });
        let logic = matches!(
            code[0],
            0x0c | 0x34 | 0x83 | 0x84 | 0x85 | 0xa8 | 0xa9 | 0xf6 | 0xf7
        ) && !(code[0] == 0x83 && code[1] != 0xe0);
        let compared = if logic { ARITH & !AF } else { ARITH };
        assert_eq!(r.gpr[RAX], *res, "{code:02x?}");
        assert_eq!(r.rflags & compared, *flags, "{code:02x?}");
    }
}

#[test]
fn inc_dec_keep_carry() {
    // Each line: code, value, CF before, result, flags after.
    #[rustfmt::skip]
    let cases: &[(&[u8], u64, bool, u64, u64)] = &[
        (&[0xfe, 0xc0], 0x7f, true, 0x80, CF | OF | SF | AF),        // inc al
        (&[0xfe, 0xc0], 0xff, false, 0x00, ZF | AF | PF),            // inc al
        (&[0xfe, 0xc8], 0x80, false, 0x7f, OF | AF),                 // dec al
        (&[0x66, 0x48], 0x0001, true, 0x0000, CF | ZF | PF),         // dec ax
        (&[0x48], 0, false, 0xffff_ffff, SF | AF | PF),              // dec eax
        (&[0x40], 0x7fff_ffff, false, 0x8000_0000, OF | SF | AF | PF), // inc eax
        (&[0xff, 0xc0], 0xffff_ffff, true, 0, CF | ZF | AF | PF),    // inc eax (ff /0)
        (&[0xff, 0xc8], 0x10, false, 0x0f, AF | PF),                 // dec eax (ff /1)
    ];
    for (code, v, cf, res, flags) in cases {
        let r = exec(code, false, |r| {
            r.gpr[RAX] = *v;
            r.rflags = 0x2 | if *cf { CF } else { 0 };
        });
        assert_eq!(r.gpr[RAX], *res, "{code:02x?}");
        assert_eq!(r.rflags & ARITH, *flags, "{code:02x?}");
    }
    // 64-bit: inc rax / dec r9 (FF /0 and FF /1 with REX.W; 40-4F are REX prefixes there).
    let r = exec(&[0x48, 0xff, 0xc0, 0x49, 0xff, 0xc9], true, |r| {
        r.gpr[RAX] = 0x7fff_ffff_ffff_ffff;
        r.gpr[9] = 0;
        r.rflags = 0x2 | CF;
    });
    assert_eq!(r.gpr[RAX], 1 << 63);
    assert_eq!(r.gpr[9], u64::MAX);
    assert_eq!(r.rflags & ARITH, CF | SF | AF | PF);
}

#[test]
fn neg_and_not() {
    // Each line: code, value, result, flags (NOT keeps the flags given before: OF | ZF).
    #[rustfmt::skip]
    let cases: &[(&[u8], bool, u64, u64, u64)] = &[
        (&[0xf6, 0xd8], false, 0x00, 0x00, ZF | PF),                  // neg al
        (&[0xf6, 0xd8], false, 0x80, 0x80, CF | OF | SF),             // neg al
        (&[0xf6, 0xd8], false, 0x01, 0xff, CF | SF | AF | PF),        // neg al
        (&[0xf7, 0xd8], false, 0x8000_0000, 0x8000_0000, CF | OF | SF | PF), // neg eax
        (&[0x48, 0xf7, 0xd8], true, 1, u64::MAX, CF | SF | AF | PF),  // neg rax
        (&[0xf6, 0xd0], false, 0x0f, 0xf0, OF | ZF),                  // not al
        (&[0xf7, 0xd0], false, 0, 0xffff_ffff, OF | ZF),              // not eax
        (&[0x48, 0xf7, 0xd0], true, 0, u64::MAX, OF | ZF),            // not rax
    ];
    for (code, long, v, res, flags) in cases {
        let r = exec(code, *long, |r| {
            r.gpr[RAX] = *v;
            r.rflags = 0x2 | OF | ZF;
        });
        assert_eq!(r.gpr[RAX], *res, "{code:02x?}");
        assert_eq!(r.rflags & ARITH, *flags, "{code:02x?}");
    }
}

/// A shift test: code, value, CL, CF before, result, flags, flags compared.
type ShiftCase = (&'static [u8], u64, u64, bool, u64, u64, u64);

#[test]
fn shifts_and_rotates() {
    let count1 = ARITH & !AF;
    let multi = ARITH & !AF & !OF;
    let rot = CF | OF;
    #[rustfmt::skip]
    let cases: &[ShiftCase] = &[
        (&[0xd0, 0xe0], 0x80, 0, false, 0x00, CF | OF | ZF | PF, count1),  // shl al, 1
        (&[0xd0, 0xe0], 0x40, 0, false, 0x80, OF | SF, count1),            // shl al, 1
        (&[0xd0, 0xe8], 0x81, 0, false, 0x40, CF | OF, count1),            // shr al, 1
        (&[0xd0, 0xf8], 0x81, 0, false, 0xc0, CF | SF | PF, count1),       // sar al, 1
        (&[0xc1, 0xe0, 0x04], 0x1234_5678, 0, false, 0x2345_6780, CF, multi), // shl eax, 4
        (&[0xc1, 0xe8, 0x04], 0x1234_5678, 0, false, 0x0123_4567, CF, multi), // shr eax, 4
        (&[0x48, 0xd3, 0xe8], 1 << 63, 63, false, 1, 0, multi),           // shr rax, cl
        (&[0x66, 0xd3, 0xf8], 0x8000, 20, false, 0xffff, CF | SF | PF, multi), // sar ax, cl
        (&[0xd3, 0xe0], 0x1234_5678, 32, true, 0x1234_5678, CF | OF | ZF, ARITH), // shl eax, cl (count 0)
        (&[0xd0, 0xc0], 0x81, 0, false, 0x03, CF | OF, rot),              // rol al, 1
        (&[0xd0, 0xc8], 0x01, 0, false, 0x80, CF | OF, rot),              // ror al, 1
        (&[0xd0, 0xd0], 0x80, 0, true, 0x01, CF | OF, rot),               // rcl al, 1
        (&[0xd0, 0xd8], 0x01, 0, false, 0x00, CF, rot),                   // rcr al, 1
        (&[0xc1, 0xc0, 0x08], 0x1234_5678, 0, false, 0x3456_7812, 0, CF), // rol eax, 8
        (&[0x66, 0xc1, 0xc8, 0x04], 0x1234, 0, false, 0x4123, 0, CF),     // ror ax, 4
        (&[0xc0, 0xd0, 0x09], 0x55, 0, true, 0x55, CF, CF),               // rcl al, 9 (a full turn)
    ];
    for (code, v, cl, cf, res, flags, compared) in cases {
        let r = exec(code, code[0] == 0x48, |r| {
            r.gpr[RAX] = *v;
            r.gpr[RCX] = *cl;
            r.rflags = 0x2 | if *cf { CF | OF | ZF } else { 0 };
        });
        assert_eq!(r.gpr[RAX], *res, "{code:02x?}");
        assert_eq!(r.rflags & compared, *flags, "{code:02x?}");
    }
}

#[test]
fn multiply() {
    // mul cl: AX = AL * CL.
    let r = exec(&[0xf6, 0xe1], false, |r| {
        r.gpr[RAX] = 0x80;
        r.gpr[RCX] = 2;
    });
    assert_eq!((r.gpr[RAX], r.rflags & (CF | OF)), (0x100, CF | OF));
    // mul ecx: EDX:EAX.
    let r = exec(&[0xf7, 0xe1], false, |r| {
        r.gpr[RAX] = 0xffff_ffff;
        r.gpr[RCX] = 2;
    });
    assert_eq!(
        (r.gpr[RAX], r.gpr[RDX], r.rflags & (CF | OF)),
        (0xffff_fffe, 1, CF | OF)
    );
    let r = exec(&[0xf7, 0xe1], false, |r| {
        r.gpr[RAX] = 0x1000;
        r.gpr[RCX] = 0x10;
        r.rflags = 0x2 | CF | OF;
    });
    assert_eq!(
        (r.gpr[RAX], r.gpr[RDX], r.rflags & (CF | OF)),
        (0x10000, 0, 0)
    );
    // mul rcx: RDX:RAX.
    let r = exec(&[0x48, 0xf7, 0xe1], true, |r| {
        r.gpr[RAX] = 1 << 63;
        r.gpr[RCX] = 4;
    });
    assert_eq!(
        (r.gpr[RAX], r.gpr[RDX], r.rflags & (CF | OF)),
        (0, 2, CF | OF)
    );
    // imul cl: -1 * 2 fits.
    let r = exec(&[0xf6, 0xe9], false, |r| {
        r.gpr[RAX] = 0xff;
        r.gpr[RCX] = 2;
        r.rflags = 0x2 | CF | OF;
    });
    assert_eq!((r.gpr[RAX], r.rflags & (CF | OF)), (0xfffe, 0));
    // imul cx: 0x4000 * 2 does not fit in 16 bits.
    let r = exec(&[0x66, 0xf7, 0xe9], false, |r| {
        r.gpr[RAX] = 0x4000;
        r.gpr[RCX] = 2;
    });
    assert_eq!(
        (r.gpr[RAX], r.gpr[RDX], r.rflags & (CF | OF)),
        (0x8000, 0, CF | OF)
    );
    // imul eax, ecx (0F AF): -3 * 7.
    let r = exec(&[0x0f, 0xaf, 0xc1], false, |r| {
        r.gpr[RAX] = 0xffff_fffd;
        r.gpr[RCX] = 7;
    });
    assert_eq!((r.gpr[RAX], r.rflags & (CF | OF)), (0xffff_ffeb, 0));
    // imul rax, rcx, 4 (69 with imm32): overflow.
    let r = exec(&[0x48, 0x69, 0xc1, 4, 0, 0, 0], true, |r| {
        r.gpr[RCX] = 0x4000_0000_0000_0000;
    });
    assert_eq!((r.gpr[RAX], r.rflags & (CF | OF)), (0, CF | OF));
    // imul eax, ecx, -2 (6B with imm8).
    let r = exec(&[0x6b, 0xc1, 0xfe], false, |r| {
        r.gpr[RCX] = 5;
    });
    assert_eq!((r.gpr[RAX], r.rflags & (CF | OF)), (0xffff_fff6, 0));
}

#[test]
fn divide() {
    // div cl: AX / CL.
    let r = exec(&[0xf6, 0xf1], false, |r| {
        r.gpr[RAX] = 0x0101;
        r.gpr[RCX] = 2;
    });
    assert_eq!(r.gpr[RAX], 0x0180);
    // div ecx: EDX:EAX / ECX.
    let r = exec(&[0xf7, 0xf1], false, |r| {
        r.gpr[RAX] = 0;
        r.gpr[RDX] = 1;
        r.gpr[RCX] = 2;
    });
    assert_eq!((r.gpr[RAX], r.gpr[RDX]), (0x8000_0000, 0));
    // div rcx with a 128-bit dividend.
    let r = exec(&[0x48, 0xf7, 0xf1], true, |r| {
        r.gpr[RAX] = 7;
        r.gpr[RDX] = 3;
        r.gpr[RCX] = 4;
    });
    assert_eq!((r.gpr[RAX], r.gpr[RDX]), ((3 << 62) + 1, 3));
    // idiv ecx: -7 / 2 = -3 remainder -1.
    let r = exec(&[0xf7, 0xf9], false, |r| {
        r.gpr[RAX] = 0xffff_fff9;
        r.gpr[RDX] = 0xffff_ffff;
        r.gpr[RCX] = 2;
    });
    assert_eq!((r.gpr[RAX], r.gpr[RDX]), (0xffff_fffd, 0xffff_ffff));
    // idiv rcx: -100 / 7 = -14 remainder -2.
    let r = exec(&[0x48, 0xf7, 0xf9], true, |r| {
        r.gpr[RAX] = (-100i64) as u64;
        r.gpr[RDX] = u64::MAX;
        r.gpr[RCX] = 7;
    });
    assert_eq!((r.gpr[RAX], r.gpr[RDX]), ((-14i64) as u64, (-2i64) as u64));
    // idiv cl: -128 / -1 ... as AX = 0xff80, quotient 128 overflows, see `divide_errors`.
    let r = exec(&[0xf6, 0xf9], false, |r| {
        r.gpr[RAX] = 0xff81;
        r.gpr[RCX] = 0xff;
    });
    assert_eq!(r.gpr[RAX], 0x007f);
}

#[test]
fn divide_errors() {
    // Each line: code, RAX, RDX, RCX, long mode.
    #[rustfmt::skip]
    let cases: &[(&[u8], u64, u64, u64, bool)] = &[
        (&[0xf6, 0xf1], 0x10, 0, 0, false),                   // div cl by 0
        (&[0xf7, 0xf1], 0x10, 0, 0, false),                   // div ecx by 0
        (&[0x48, 0xf7, 0xf1], 0x10, 0, 0, true),              // div rcx by 0
        (&[0x66, 0xf7, 0xf1], 0x0000, 0x0002, 1, false),      // div cx: quotient 0x20000
        (&[0xf6, 0xf9], 0x8000, 0, 0xff, false),              // idiv cl: -32768 / -1
        (&[0xf6, 0xf9], 0xff80, 0, 0xff, false),              // idiv cl: -128 / -1
        (&[0x48, 0xf7, 0xf9], 0, 1 << 63, u64::MAX, true),    // idiv rcx: -2^127 / -1
        (&[0x48, 0xf7, 0xf9], 0, 1 << 63, 0, true),           // idiv rcx by 0
    ];
    for (code, rax, rdx, rcx, long) in cases {
        let mut mem = TestMem::new(0x20000);
        let mut r = if *long {
            identity_map(&mut mem);
            long64(0x10000)
        } else {
            prot32(0x10000)
        };
        r.gpr[RAX] = *rax;
        r.gpr[RDX] = *rdx;
        r.gpr[RCX] = *rcx;
        let before = r.clone();
        mem.load(0x10000, code);
        let (exit, n) = run(&mut r, &mut mem, 10);
        assert_eq!(
            exit,
            Exit::Exception {
                vector: 0,
                rip: 0x10000
            },
            "{code:02x?}"
        );
        assert_eq!(n, 0);
        assert_eq!(r, before, "{code:02x?}");
    }
}

#[test]
fn setcc_cmovcc_and_flag_instructions() {
    #[rustfmt::skip]
    let code = [
        0x39, 0xc8,       // cmp eax, ecx        ; 1 - 2: CF, SF
        0x0f, 0x92, 0xc3, // setb bl
        0x0f, 0x9c, 0xc7, // setl bh
        0x0f, 0x94, 0xc2, // sete dl
        0x0f, 0x42, 0xf1, // cmovb esi, ecx
        0x0f, 0x43, 0xf8, // cmovae edi, eax (not taken)
        0xf5,             // cmc                 ; CF = 0
        0xfd,             // std
        0x9f,             // lahf
    ];
    let r = exec(&code, false, |r| {
        r.gpr[RAX] = 1;
        r.gpr[RCX] = 2;
        r.gpr[RDX] = 0xff;
        r.gpr[6] = 0;
        r.gpr[7] = 0x77;
    });
    assert_eq!(r.gpr[3] & 0xffff, 0x0101);
    assert_eq!(r.gpr[RDX], 0);
    assert_eq!(r.gpr[6], 2);
    assert_eq!(r.gpr[7], 0x77);
    assert_eq!(r.rflags & (CF | 0x400), 0x400);
    // LAHF: SF, AF, PF set by the CMP (CF already complemented), bit 1 set.
    assert_eq!((r.gpr[RAX] >> 8) & 0xff, SF | AF | PF | 0x2);
    // SAHF and CLC/STC/CLI/STI/CLD.
    let r = exec(&[0x9e, 0xf9, 0xfb, 0xfc], false, |r| {
        r.gpr[RAX] = 0x4100;
    });
    assert_eq!(r.rflags, 0x2 | ZF | CF | 0x200);
    let r = exec(&[0xf8, 0xfa], false, |r| {
        r.rflags = 0x202 | CF;
    });
    assert_eq!(r.rflags, 0x2);
}
