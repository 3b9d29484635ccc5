// SPDX-License-Identifier: GPL-2.0
//
// Assembles the demo guest (../examples/guest/demo32.S, GNU as syntax) with
// mshv-guest-asm (../tests/guest-asm: binutils as, ld, objcopy, nm), like
// tests/vm/build.rs, into a flat binary linked at GPA 0x1000:
// OUT_DIR/demo32.bin. The VMM needs none of its symbols.

use std::env;
use std::path::PathBuf;

use mshv_guest_asm::{assemble, Guest};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    assemble(
        &manifest.join("../examples/guest"),
        &[Guest::flat("demo32", 0x1000)],
    );
}
