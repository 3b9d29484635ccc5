// SPDX-License-Identifier: GPL-2.0
//
// The guest programs of tests/guest/, assembled by build.rs, and the
// addresses of their global symbols (`guest::monitor32::READ_INSN`, ...).

include!(concat!(env!("OUT_DIR"), "/guest_syms.rs"));

/// hello16.S: the 64 KiB real-mode image for GPA 0xFFFF0000.
pub static HELLO16: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hello16.bin"));

/// monitor32.S: the 32-bit monitor, loaded at `monitor32::LOAD` (0x1000).
pub static MONITOR32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/monitor32.bin"));

/// irq32.S: interrupt delivery through an IDT, loaded at `irq32::LOAD` (0x1000).
pub static IRQ32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/irq32.bin"));

/// ch_hello.S: the minimal Cloud Hypervisor guest (a PVH ELF64).
pub static CH_HELLO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ch_hello.elf"));

/// ch_memory.S: long mode, a pattern over all RAM above 2 MiB (a PVH ELF64).
pub static CH_MEMORY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ch_memory.elf"));

/// ch_smp.S: two vCPUs report in turn (a PVH ELF64).
pub static CH_SMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ch_smp.elf"));

/// ch_reboot.S: an i8042 reset, then a shutdown on the second boot (a PVH ELF64).
pub static CH_REBOOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ch_reboot.elf"));

/// ch_rng.S: virtio-rng over PCI, an ioeventfd doorbell and an MSI-X
/// interrupt (a PVH ELF64).
pub static CH_RNG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ch_rng.elf"));

/// ch_pause.S: ticks on the serial port, for ch-remote pause/resume (a PVH ELF64).
pub static CH_PAUSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ch_pause.elf"));
