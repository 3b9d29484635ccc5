// SPDX-License-Identifier: GPL-2.0
//
// Assembles the demo guest (../examples/guest/demo32.S, GNU as syntax) into a
// flat binary linked at GPA 0x1000: OUT_DIR/demo32.bin. Needs binutils (as,
// ld, objcopy), like tests/vm/build.rs.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{tool}` ({e}): the demo guest needs binutils (as, ld, objcopy)")
    });
    if !out.status.success() {
        panic!(
            "`{tool} {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let src = manifest.join("../examples/guest/demo32.S");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", src.display());
    let p = |name: &str| out.join(name).to_str().unwrap().to_owned();
    run(
        "as",
        &[
            "--32",
            "--noexecstack",
            "-o",
            &p("demo32.o"),
            src.to_str().unwrap(),
        ],
    );
    run(
        "ld",
        &[
            "-m",
            "elf_i386",
            "-nostdlib",
            "--build-id=none",
            "-Ttext=0x1000",
            "-e",
            "_start",
            "-o",
            &p("demo32.elf"),
            &p("demo32.o"),
        ],
    );
    run(
        "objcopy",
        &[
            "-O",
            "binary",
            "-j",
            ".text",
            &p("demo32.elf"),
            &p("demo32.bin"),
        ],
    );
}
