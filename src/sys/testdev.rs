// SPDX-License-Identifier: GPL-2.0

//! The simulator's test-only `VM_PFNMAP` file, debugfs `mshv_rs/sim/pfnmap`
//! (`src/sys/testdev.c`): a mapping of module-owned pages whose `vm_pgoff`
//! is whatever offset the test passed to `mmap`, not their pfn.

use super::ffi;
use kernel::prelude::*;

/// The file and its pages; removed and freed on drop.
///
/// # Invariants
///
/// At most one exists at a time (the C side has one set of statics).
pub(crate) struct TestPfnmap(());

impl TestPfnmap {
    /// Creates `sim/pfnmap`; the `sim` directory must exist.
    ///
    /// # Safety
    ///
    /// No other [`TestPfnmap`] may exist.
    pub(crate) unsafe fn create() -> Result<Self> {
        // SAFETY: no arguments; by the caller's promise the C statics are free.
        let ret = unsafe { ffi::mshv_rs_test_pfnmap_create() };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(Self(()))
    }
}

impl Drop for TestPfnmap {
    fn drop(&mut self) {
        // SAFETY: created by `create`; a mapping of the pages would hold the
        // file and with it the module, so nothing maps them at unload.
        unsafe { ffi::mshv_rs_test_pfnmap_destroy() };
    }
}

/// The `sim_scheduler=` module parameter (`root` or `core`).
pub(crate) fn sim_scheduler_param() -> &'static CStr {
    // SAFETY: the C helper returns a NUL-terminated static buffer that
    // module_param_string() keeps NUL-terminated; it is read-only (0444), so
    // it never changes after load.
    unsafe { CStr::from_char_ptr(ffi::mshv_rs_sim_scheduler_param()) }
}
