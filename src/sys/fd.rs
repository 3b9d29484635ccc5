// SPDX-License-Identifier: GPL-2.0

//! Anon-inode fds for partitions and VPs. The `file_operations` live in C
//! (`fd.c`); they call back into the crate root's entry points
//! (`src/fd_entry.rs`) with the fd's kind and its private data pointer, an
//! `Arc` turned into a foreign pointer here. This file names no driver
//! type: the kind says which `Arc` the pointer is.

use super::ffi;
use kernel::{
    ffi::{c_int, c_void},
    prelude::*,
    sync::Arc,
    types::ForeignOwnable,
};

/// What an fd of ours is, as `fd.c` and the entry points know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// A partition fd (`mshv_partition`): its private data is an
    /// `Arc<Partition>`.
    Partition,
    /// A VP fd (`mshv_vp`): its private data is an `Arc<Vp>`.
    Vp,
}

impl FdKind {
    fn raw(self) -> c_int {
        match self {
            Self::Partition => ffi::FD_PARTITION,
            Self::Vp => ffi::FD_VP,
        }
    }

    /// The kind `fd.c` passed to an entry point, if it is one.
    pub(crate) fn from_raw(kind: c_int) -> Option<Self> {
        match kind {
            ffi::FD_PARTITION => Some(Self::Partition),
            ffi::FD_VP => Some(Self::Vp),
            _ => None,
        }
    }
}

/// Installs a new `O_RDWR | O_CLOEXEC` fd of `kind` owning `obj`.
///
/// # Safety
///
/// `T` must be the type `kind` names ([`FdKind`]): the fd's entry points
/// turn the private data back into an `Arc` of that type.
pub(crate) unsafe fn install<T: Send + Sync + 'static>(kind: FdKind, obj: Arc<T>) -> Result<i32> {
    let ptr = obj.into_foreign();
    // SAFETY: on success the file owns `ptr` and gives it back exactly once
    // through `mshv_rs_fd_release`; on failure it is still ours.
    let fd = unsafe { ffi::mshv_rs_fd_install(kind.raw(), ptr.cast::<c_void>()) };
    if fd < 0 {
        // SAFETY: `ptr` came from `into_foreign` above and was not consumed.
        drop(unsafe { Arc::<T>::from_foreign(ptr) });
        return Err(Error::from_errno(fd));
    }
    Ok(fd)
}
