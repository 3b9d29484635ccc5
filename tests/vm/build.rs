// SPDX-License-Identifier: GPL-2.0
//
// Assembles the guest programs of ../guest/*.S with mshv-guest-asm
// (../guest-asm: binutils as, ld, objcopy, nm) into flat binaries in OUT_DIR
// (the Cloud Hypervisor guests, ../guest/ch_*.S, into ELF64 images with a
// Xen PVH note, linked by ../guest/pvh.ld), and writes OUT_DIR/guest_syms.rs
// with one module per guest holding the addresses of its global symbols
// (the VMM checks intercept RIPs against them and emulates accesses by
// jumping over known instructions).

use std::env;
use std::fs;
use std::path::PathBuf;

use mshv_guest_asm::{assemble, Guest};

const GUESTS: &[Guest] = &[
    // Real mode, linked at offset 0 of the CS.base = 0xFFFF0000 segment.
    Guest::flat("hello16", 0).size(0x10000),
    // 32-bit flat protected mode, loaded at GPA 0x1000.
    Guest::flat("monitor32", 0x1000),
    // 32-bit flat protected mode with a GDT and an IDT, loaded at GPA 0x1000.
    Guest::flat("irq32", 0x1000),
    // Cloud Hypervisor guests: PVH entry in 32-bit flat protected mode at
    // 1 MiB (see ../guest/pvh.ld).
    Guest::pvh("ch_hello"),
    Guest::pvh("ch_memory"),
    Guest::pvh("ch_smp"),
    Guest::pvh("ch_reboot"),
    Guest::pvh("ch_rng"),
    Guest::pvh("ch_pause"),
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    let syms = assemble(&manifest.join("..").join("guest"), GUESTS);
    fs::write(out_dir.join("guest_syms.rs"), syms).unwrap();
}
