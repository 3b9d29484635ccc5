// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the kernel APIs that the 7.3 kernel crate has no
//! abstraction for.
//!
//! The C half is `src/sys/helpers.c` (contract in `include/mshv_rs_helpers.h`):
//! it owns every access to the fields of kernel structs, so Rust never depends
//! on a bindgen layout. This module is the only place that declares or calls
//! those C functions; the rest of the driver uses the types below.

pub(crate) mod cpu;
pub(crate) mod eventfd;
pub(crate) mod fd;
pub(crate) mod ffi;
#[cfg(CONFIG_HYPERV)]
pub(crate) mod hyperv;
pub(crate) mod layout;
pub(crate) mod lock;
pub(crate) mod mm;
pub(crate) mod page;
#[cfg(CONFIG_MSHV_RS_EMULATOR)]
pub(crate) mod testdev;
pub(crate) mod trace;

/// Whether the C driver `mshv_root` is loaded (or built in), in which case it
/// owns the misc device `mshv`.
pub(crate) fn c_mshv_root_present() -> bool {
    // SAFETY: no arguments; the helper only looks a symbol up and drops the
    // module reference it took.
    unsafe { ffi::mshv_rs_c_mshv_root_present() }
}
