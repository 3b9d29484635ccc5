// SPDX-License-Identifier: GPL-2.0
//
// The parts of mshv-demo that mshv-bench shares: the partition and its
// memory, the VP loop, churn, and the driver's statistics.

pub mod churn;
pub mod layout;
pub mod run;
pub mod stats;
pub mod vm;

/// examples/guest/demo32.S, assembled by build.rs (linked at GPA 0x1000).
pub static DEMO_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo32.bin"));
