// SPDX-License-Identifier: GPL-2.0

//! Anon-inode fds for partitions and VPs. The `file_operations` live in C
//! (`helpers.c`); they call back here with the private data pointer, which is
//! an `Arc<Partition>` or `Arc<Vp>` turned into a foreign pointer.

use super::ffi;
use crate::{partition::Partition, vp::Vp};
use kernel::{
    ffi::{c_int, c_long, c_uint, c_ulong, c_void},
    prelude::*,
    sync::Arc,
    types::ForeignOwnable,
};

/// Installs a new `O_RDWR | O_CLOEXEC` partition fd owning `p`.
pub(crate) fn install_partition(p: Arc<Partition>) -> Result<i32> {
    install(ffi::FD_PARTITION, p)
}

/// Installs a new `O_RDWR | O_CLOEXEC` VP fd owning `vp`.
pub(crate) fn install_vp(vp: Arc<Vp>) -> Result<i32> {
    install(ffi::FD_VP, vp)
}

fn install<T: Send + Sync + 'static>(kind: c_int, obj: Arc<T>) -> Result<i32> {
    let ptr = obj.into_foreign();
    // SAFETY: on success the file owns `ptr` and gives it back exactly once
    // through `mshv_rs_fd_release`; on failure it is still ours.
    let fd = unsafe { ffi::mshv_rs_fd_install(kind, ptr.cast::<c_void>()) };
    if fd < 0 {
        // SAFETY: `ptr` came from `into_foreign` above and was not consumed.
        drop(unsafe { Arc::<T>::from_foreign(ptr) });
        return Err(Error::from_errno(fd));
    }
    Ok(fd)
}

/// # Safety
///
/// Called by `helpers.c` with the private data of a live fd of `kind`.
#[no_mangle]
unsafe extern "C" fn mshv_rs_fd_ioctl(
    kind: c_int,
    private: *mut c_void,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    let res = match kind {
        ffi::FD_PARTITION => {
            // SAFETY: the fd owns an `Arc<Partition>` for as long as it is open.
            let p = unsafe { Arc::<Partition>::borrow(private.cast()) };
            p.ioctl(cmd, arg)
        }
        ffi::FD_VP => {
            // SAFETY: the fd owns an `Arc<Vp>` for as long as it is open.
            let vp = unsafe { Arc::<Vp>::borrow(private.cast()) };
            vp.ioctl(cmd, arg)
        }
        _ => Err(EINVAL),
    };
    match res {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// # Safety
///
/// Called by `helpers.c` once, when the last reference to the file goes.
#[no_mangle]
unsafe extern "C" fn mshv_rs_fd_release(kind: c_int, private: *mut c_void) {
    match kind {
        // SAFETY: the file owned this `Arc` and gives it back exactly once.
        ffi::FD_PARTITION => drop(unsafe { Arc::<Partition>::from_foreign(private.cast()) }),
        // SAFETY: as above.
        ffi::FD_VP => drop(unsafe { Arc::<Vp>::from_foreign(private.cast()) }),
        _ => {}
    }
}

/// # Safety
///
/// Called by `helpers.c` with the private data of a live VP fd.
#[no_mangle]
unsafe extern "C" fn mshv_rs_vp_mmap_pfn(private: *mut c_void, pgoff: c_ulong) -> u64 {
    // SAFETY: the VP fd owns an `Arc<Vp>` while the file (and any VMA) lives.
    let vp = unsafe { Arc::<Vp>::borrow(private.cast()) };
    vp.mmap_pfn(pgoff as u64).unwrap_or(0)
}
