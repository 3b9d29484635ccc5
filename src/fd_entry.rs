// SPDX-License-Identifier: GPL-2.0

//! The C entry points of partition and VP fds (called by `src/sys/fd.c`'s
//! `file_operations`): beside the crate root, the only place that turns an
//! fd's private data back into the object it owns. `sys::fd` installs the
//! fds and names no driver type; [`FdKind`] says which `Arc` the pointer is.

use crate::{partition::Partition, sys::fd::FdKind, vp::Vp};
use kernel::{
    ffi::{c_int, c_long, c_uint, c_ulong, c_void},
    prelude::*,
    sync::Arc,
    types::ForeignOwnable,
};

/// # Safety
///
/// Called by `src/sys/fd.c` with the private data of a live fd of `kind`,
/// installed by `sys::fd::install` with the `Arc` that kind names.
#[no_mangle]
unsafe extern "C" fn mshv_rs_fd_ioctl(
    kind: c_int,
    private: *mut c_void,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    let res = match FdKind::from_raw(kind) {
        Some(FdKind::Partition) => {
            // SAFETY: the fd owns an `Arc<Partition>` for as long as it is open.
            let p = unsafe { Arc::<Partition>::borrow(private.cast()) };
            p.ioctl(cmd, arg)
        }
        Some(FdKind::Vp) => {
            // SAFETY: the fd owns an `Arc<Vp>` for as long as it is open.
            let vp = unsafe { Arc::<Vp>::borrow(private.cast()) };
            vp.ioctl(cmd, arg)
        }
        None => Err(EINVAL),
    };
    match res {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// # Safety
///
/// Called by `src/sys/fd.c` once, when the last reference to the file goes.
#[no_mangle]
unsafe extern "C" fn mshv_rs_fd_release(kind: c_int, private: *mut c_void) {
    match FdKind::from_raw(kind) {
        // SAFETY: the file owned this `Arc` and gives it back exactly once.
        Some(FdKind::Partition) => drop(unsafe { Arc::<Partition>::from_foreign(private.cast()) }),
        // SAFETY: as above.
        Some(FdKind::Vp) => drop(unsafe { Arc::<Vp>::from_foreign(private.cast()) }),
        None => {}
    }
}

/// # Safety
///
/// Called by `src/sys/fd.c` with the private data of a live VP fd.
#[no_mangle]
unsafe extern "C" fn mshv_rs_vp_mmap_pfn(private: *mut c_void, pgoff: c_ulong) -> u64 {
    // SAFETY: the VP fd owns an `Arc<Vp>` while the file (and any VMA) lives.
    let vp = unsafe { Arc::<Vp>::borrow(private.cast()) };
    vp.mmap_pfn(pgoff as u64).unwrap_or(0)
}
