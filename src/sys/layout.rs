// SPDX-License-Identifier: GPL-2.0

//! Layout canaries: the kernel crate reads some kernel structs through
//! bindgen output, and the kernel runs bindgen with `--no-layout-tests`. With
//! bindgen 0.73.2 and `CONFIG_SCHEDSTATS=n`, Rust's `task_struct` is 64 bytes
//! short of C's and `current!().mm()` reads the wrong field (docs/design.md,
//! "Facts this design rests on").
//! These tests compare Rust's view with C's `sizeof`/`offsetof`, so a kernel
//! configuration that breaks the bindings fails `make kunit` loudly.

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_layout)]
mod tests {
    use super::super::ffi;
    use core::mem::{offset_of, size_of};
    use kernel::bindings;

    fn c(which: kernel::ffi::c_int) -> usize {
        // SAFETY: `mshv_rs_c_sizeof` only returns a constant for `which`.
        unsafe { ffi::mshv_rs_c_sizeof(which) }
    }

    #[test]
    fn task_struct_matches_c() {
        assert_eq!(
            size_of::<bindings::task_struct>(),
            c(ffi::SIZEOF_TASK_STRUCT)
        );
        assert_eq!(
            offset_of!(bindings::task_struct, mm),
            c(ffi::OFFSETOF_TASK_MM)
        );
        assert_eq!(
            offset_of!(bindings::task_struct, pid),
            c(ffi::OFFSETOF_TASK_PID)
        );
    }

    #[test]
    fn fs_and_mm_structs_match_c() {
        assert_eq!(size_of::<bindings::file>(), c(ffi::SIZEOF_FILE));
        assert_eq!(size_of::<bindings::mm_struct>(), c(ffi::SIZEOF_MM_STRUCT));
        assert_eq!(
            size_of::<bindings::vm_area_struct>(),
            c(ffi::SIZEOF_VM_AREA)
        );
        assert_eq!(size_of::<bindings::miscdevice>(), c(ffi::SIZEOF_MISCDEVICE));
        assert_eq!(size_of::<bindings::file_operations>(), c(ffi::SIZEOF_FOPS));
    }
}
