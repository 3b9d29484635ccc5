// SPDX-License-Identifier: GPL-2.0

//! The driver's trace events (`include/mshv_rs_trace.h`, tracefs system
//! `mshv_rs`). Each function fires the event of the same name; when the event
//! is off it costs a call and a static-key test.

use super::ffi;
use kernel::error::Error;

/// `mshv_handle_gpa_intercept` (upstream's name and format): a GPA intercept
/// at `gfn` with Hyper-V access type `access_type`, and whether the driver
/// resolved it without the VMM.
pub(crate) fn gpa_intercept(
    partition_id: u64,
    vp_index: u32,
    gfn: u64,
    access_type: u8,
    handled: bool,
) {
    // SAFETY: the wrapper takes integers only and may be called in any context.
    unsafe { ffi::mshv_rs_trace_gpa_intercept(partition_id, vp_index, gfn, access_type, handled) }
}

/// `mshv_map_user_memory` (upstream's name and format): SET_GUEST_MEMORY
/// creating a region, with its result (0 or a negative errno).
pub(crate) fn map_user_memory(
    partition_id: u64,
    start_uaddr: u64,
    start_gfn: u64,
    nr_pages: u64,
    map_flags: u32,
    ret: Result<(), Error>,
) {
    let ret = ret.err().map_or(0, |e| e.to_errno());
    // SAFETY: as in `gpa_intercept`.
    unsafe {
        ffi::mshv_rs_trace_map_user_memory(
            partition_id,
            start_uaddr,
            start_gfn,
            nr_pages,
            map_flags,
            ret as kernel::ffi::c_long,
        )
    }
}

/// `mshv_rs_map_gpa`: `reps` SLAT entries of a movable region mapped from
/// `gfn` (2 MiB each if `large`), `ret` 0 or the negative errno.
pub(crate) fn map_gpa(
    partition_id: u64,
    gfn: u64,
    reps: u32,
    large: bool,
    writable: bool,
    ret: i32,
) {
    // SAFETY: as in `gpa_intercept`.
    unsafe { ffi::mshv_rs_trace_map_gpa(partition_id, gfn, reps, large, writable, ret) }
}

/// `mshv_rs_invalidate`: an mmu notifier invalidation remapping `pages` guest
/// pages from `gfn` NO_ACCESS.
pub(crate) fn invalidate(partition_id: u64, gfn: u64, pages: u64, blockable: bool) {
    // SAFETY: as in `gpa_intercept`.
    unsafe { ffi::mshv_rs_trace_invalidate(partition_id, gfn, pages, blockable) }
}

/// `mshv_rs_hvcall_failure`: hypercall `code` for partition `partition_id`
/// at `gfn` failed with Hyper-V status `status`.
pub(crate) fn hvcall_failure(code: u16, partition_id: u64, gfn: u64, status: u16) {
    // SAFETY: as in `gpa_intercept`.
    unsafe { ffi::mshv_rs_trace_hvcall_failure(code, partition_id, gfn, status) }
}
