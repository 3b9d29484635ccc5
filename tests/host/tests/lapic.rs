// SPDX-License-Identifier: GPL-2.0

//! The simulated local APIC: priorities, EOI, register reads.

use mshv_rs_host_tests::lapic::{
    AssertError, Eoi, Lapic, Pending, SavedState, TYPE_EXTINT, TYPE_FIXED, TYPE_LOWEST_PRIORITY,
    TYPE_NMI,
};

#[test]
fn fixed_interrupts_by_priority_class() {
    let mut a = Lapic::new(3);
    assert_eq!(a.pending(true), None);
    a.assert(TYPE_FIXED, 0x31, false).unwrap();
    a.assert(TYPE_FIXED, 0x52, true).unwrap();
    assert!(a.any_pending());
    // IF clear: nothing maskable.
    assert_eq!(a.pending(false), None);
    assert_eq!(a.pending(true), Some(Pending::Fixed(0x52)));
    a.accept(Pending::Fixed(0x52));
    // 0x31 is in a lower class than the in-service 0x52.
    assert_eq!(a.pending(true), None);
    // IRR 0x31 (bit 17 of word 1), ISR 0x52 (bit 18 of word 2), TMR 0x52.
    assert_eq!(a.read(0x210), 1 << 17);
    assert_eq!(a.read(0x120), 1 << 18);
    assert_eq!(a.read(0x1a0), 1 << 18);
    assert_eq!(a.read(0xa0), 0x50);
    assert_eq!(
        a.write(0xb0, 0),
        Some(Eoi {
            vector: 0x52,
            level: true
        })
    );
    assert_eq!(a.read(0x1a0), 0);
    assert_eq!(a.pending(true), Some(Pending::Fixed(0x31)));
    a.accept(Pending::Fixed(0x31));
    assert_eq!(
        a.eoi(),
        Some(Eoi {
            vector: 0x31,
            level: false
        })
    );
    assert_eq!(a.eoi(), None);
    assert!(!a.any_pending());
}

#[test]
fn same_class_waits_for_eoi_and_tpr_masks() {
    let mut a = Lapic::new(0);
    a.assert(TYPE_LOWEST_PRIORITY, 0x40, false).unwrap();
    a.accept(a.pending(true).unwrap());
    a.assert(TYPE_FIXED, 0x4f, false).unwrap();
    assert_eq!(a.pending(true), None);
    a.eoi();
    assert_eq!(a.pending(true), Some(Pending::Fixed(0x4f)));
    a.write(0x80, 0x40);
    assert_eq!(a.read(0x80), 0x40);
    assert_eq!(a.pending(true), None);
    a.write(0x80, 0x30);
    assert_eq!(a.pending(true), Some(Pending::Fixed(0x4f)));
}

#[test]
fn nmi_and_extint() {
    let mut a = Lapic::new(0);
    a.assert(TYPE_EXTINT, 0x08, false).unwrap();
    a.assert(TYPE_FIXED, 0x90, false).unwrap();
    assert_eq!(a.pending(false), None);
    assert_eq!(a.pending(true), Some(Pending::ExtInt(0x08)));
    a.assert(TYPE_NMI, 0, false).unwrap();
    // NMI first, even with IF clear.
    assert_eq!(a.pending(false), Some(Pending::Nmi));
    assert_eq!(Pending::Nmi.vector(), 2);
    a.accept(Pending::Nmi);
    a.accept(Pending::ExtInt(0x08));
    // ExtINT does not go through the ISR.
    assert_eq!(a.read(0x100), 0);
    assert_eq!(a.pending(true), Some(Pending::Fixed(0x90)));
}

#[test]
fn refusals_and_identity() {
    let mut a = Lapic::new(5);
    assert_eq!(
        a.assert(TYPE_FIXED, 15, false),
        Err(AssertError::IllegalVector)
    );
    assert_eq!(a.assert(5, 0x30, false), Err(AssertError::UnsupportedType));
    assert!(!a.any_pending());
    assert_eq!(a.read(0x20), 5 << 24);
    assert_eq!(a.read(0x30), 0x0005_0014);
    assert_eq!(a.read(0xf0), 0xff);
    assert_eq!(a.write(0xf0, 0x1ff), None);
    assert_eq!(a.read(0xf0), 0x1ff);
    // Vector 255 is the top bit of the last register.
    a.assert(TYPE_FIXED, 255, false).unwrap();
    assert_eq!(a.read(0x270), 1 << 31);
    let before = a.clone();
    assert_eq!(a.write(0x20, 7), None);
    assert_eq!(a, before);
}

#[test]
fn save_and_restore_carry_irr_isr_tmr_svr() {
    let mut a = Lapic::new(0);
    a.assert(TYPE_FIXED, 0x52, true).unwrap();
    a.accept(Pending::Fixed(0x52));
    a.assert(TYPE_FIXED, 0x31, false).unwrap();
    let st = a.save();
    // 0x52: word 2 bit 18 (ISR, TMR); 0x31: word 1 bit 17 (IRR).
    assert_eq!(st.isr, [0, 0, 1 << 18, 0, 0, 0, 0, 0]);
    assert_eq!(st.tmr, [0, 0, 1 << 18, 0, 0, 0, 0, 0]);
    assert_eq!(st.irr, [0, 1 << 17, 0, 0, 0, 0, 0, 0]);
    assert_eq!(st.svr, 0xff);

    let mut b = Lapic::new(0);
    b.restore(&st);
    assert_eq!(b.save(), st);
    // The restored APIC behaves like the saved one: 0x31 waits for the EOI
    // of the in-service 0x52, which was level-triggered.
    assert_eq!(b.pending(true), None);
    assert_eq!(
        b.eoi(),
        Some(Eoi {
            vector: 0x52,
            level: true
        })
    );
    assert_eq!(b.pending(true), Some(Pending::Fixed(0x31)));

    // Restore is bit-exact (VP state round trips are byte-exact); request
    // bits of vectors 0..15 are kept but never delivered.
    let mut c = Lapic::new(0);
    let mut odd = SavedState::default();
    odd.irr = [0xffff, 0, 0, 0, 0, 0, 0, 0];
    odd.svr = 0xffff_ffff;
    c.restore(&odd);
    assert_eq!(c.save(), odd);
    assert!(c.any_pending());
    assert_eq!(c.pending(true), None);
}
