// SPDX-License-Identifier: GPL-2.0

//! Host-side tests for the `core`-only parts of the module.
//!
//! The kernel crate's files are included by path, so they are compiled exactly as the module
//! sees them, but with the host's test harness around them.

#![deny(missing_docs)]

#[path = "../../../src/sim/cpu/mod.rs"]
pub mod cpu;

#[path = "../../../src/sim/lapic.rs"]
pub mod lapic;

pub mod testmem;
