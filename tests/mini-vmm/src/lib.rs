// SPDX-License-Identifier: GPL-2.0
//
// The mini-VMM that both userspace drivers of /dev/mshv use: the VM
// integration tests (tests/vm, mshv-vmtests) and the demo VMM (vmm/,
// mshv-demo and mshv-bench). It holds what the two do the same way, on
// mshv-ioctls 0.7.1 (the client crate Cloud Hypervisor uses):
//
// - `partition`: create and initialize a partition, map a user range as a
//   memory region, create a VP;
// - `regs`: VP register helpers and the switch to 32-bit flat protected
//   mode;
// - `exit`: decoding of the messages MSHV_RUN_VP returns, and the
//   completion of a port access;
// - `error`: the error of a failed call, and errno.
//
// What only one of them needs stays with it: the monitor32 protocol and the
// test harness in tests/vm, guest RAM backings, churn and the benchmarks in
// vmm/. The guest programs are assembled by tests/guest-asm (a build
// dependency without mshv-ioctls).

pub mod error;
pub mod exit;
pub mod partition;
pub mod regs;

pub use error::{errno, Error};
