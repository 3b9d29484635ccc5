// SPDX-License-Identifier: GPL-2.0

//! A mutex that a fatal signal can interrupt (`mutex_lock_killable`), which
//! the 7.3 kernel crate's `Mutex` does not offer: for locks held across
//! long operations (a VP's RUN_VP, a partition's region set-up), so that a
//! second caller waiting for one can still be killed, as upstream's
//! `vp_mutex` and `pt_mutex`.

use super::ffi;
use core::{
    cell::UnsafeCell,
    marker::PhantomData,
    ops::{Deref, DerefMut},
    ptr::NonNull,
};
use kernel::prelude::*;

/// The lockdep class of a [`KillableMutex`] (one per user).
#[derive(Clone, Copy)]
pub(crate) enum Class {
    /// `Partition::inner`.
    Partition,
    /// `Vp::run`.
    Vp,
}

/// A sleeping lock over a `T`, taken with [`KillableMutex::lock_killable`].
///
/// # Invariants
///
/// `raw` is a mutex from `mshv_rs_mutex_new`, initialized, owned by this
/// object and freed (unlocked) on drop; `data` is only accessed through a
/// [`KillableGuard`], which exists only while `raw` is held.
pub(crate) struct KillableMutex<T> {
    raw: NonNull<ffi::RawMutex>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex may be used and freed from any thread; `T: Send` is
// what moving the data between threads through the lock needs.
unsafe impl<T: Send> Send for KillableMutex<T> {}
// SAFETY: the lock serializes every access to `data`.
unsafe impl<T: Send> Sync for KillableMutex<T> {}

impl<T> KillableMutex<T> {
    /// A new, unlocked mutex of lockdep class `class` around `data`.
    pub(crate) fn new(class: Class, data: T) -> Result<Self> {
        let c = match class {
            Class::Partition => ffi::MUTEX_PARTITION,
            Class::Vp => ffi::MUTEX_VP,
        };
        // SAFETY: allocates and initializes a mutex; no preconditions.
        let raw = NonNull::new(unsafe { ffi::mshv_rs_mutex_new(c) }).ok_or(ENOMEM)?;
        // INVARIANT: `raw` was just created and is owned here.
        Ok(Self {
            raw,
            data: UnsafeCell::new(data),
        })
    }

    /// Takes the lock, sleeping until it is free or a fatal signal arrives
    /// (`EINTR`; the caller's process is then dying).
    pub(crate) fn lock_killable(&self) -> Result<KillableGuard<'_, T>> {
        // SAFETY: `raw` is a live, initialized mutex (type invariant).
        if unsafe { ffi::mshv_rs_mutex_lock_killable(self.raw.as_ptr()) } != 0 {
            return Err(EINTR);
        }
        Ok(KillableGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    /// Takes the lock uninterruptibly, for teardown paths that must finish.
    pub(crate) fn lock(&self) -> KillableGuard<'_, T> {
        // SAFETY: `raw` is a live, initialized mutex (type invariant).
        unsafe { ffi::mshv_rs_mutex_lock(self.raw.as_ptr()) };
        KillableGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }
}

impl<T> Drop for KillableMutex<T> {
    fn drop(&mut self) {
        // SAFETY: owned and unlocked (no guard can outlive `&self`).
        unsafe { ffi::mshv_rs_mutex_free(self.raw.as_ptr()) };
    }
}

/// The lock of a [`KillableMutex`], held; unlocked on drop.
/// Not `Send`: a mutex is unlocked by the task that locked it.
pub(crate) struct KillableGuard<'a, T> {
    lock: &'a KillableMutex<T>,
    _not_send: PhantomData<*mut ()>,
}

impl<T> Deref for KillableGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held while the guard lives.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for KillableGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the lock is held while the guard lives, and `&mut self`
        // makes this the only reference through it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for KillableGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock, taken by the same task.
        unsafe { ffi::mshv_rs_mutex_unlock(self.lock.raw.as_ptr()) };
    }
}
