// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the kernel APIs that the 7.3 kernel crate has no
//! abstraction for.
//!
//! The C half is one C file per wrapper, its contract in a header beside it
//! (`fd.c`/`fd.h` for `fd.rs`, likewise `mm`, `page`, `lock`, `eventfd`,
//! `layout`, `trace`, `cpu`, `hyperv`, `testdev`; `module.c` holds the
//! `backend=` parameter and this module's [`c_mshv_root_present`]). They
//! cover the few kernel APIs the Rust kernel crate of 7.3 has no abstraction
//! for (anon-inode fds with their own file_operations, VMA fault handlers,
//! mmu_interval_notifier, HMM, long-term pinning, pfn access) and the inlines
//! and macros bindgen cannot see. They take and return only integers and
//! opaque pointers: C owns every access to the fields of kernel structs, so
//! Rust never depends on a bindgen layout. This module is the only place
//! that declares ([`ffi`]) or calls those C functions; the rest of the driver
//! uses the types below.

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
