// SPDX-License-Identifier: GPL-2.0

//! Eventfds: counted references to an eventfd context, and the wait-queue
//! hook an irqfd uses to learn that its eventfd was signalled.

use super::ffi;
use core::ptr::NonNull;
use kernel::{
    error::from_err_ptr,
    ffi::c_void,
    prelude::*,
    sync::{Arc, ArcBorrow},
};

/// A counted reference to an eventfd context (`struct eventfd_ctx`).
///
/// # Invariants
///
/// `ctx` holds one reference taken by `eventfd_ctx_fdget`, dropped on drop.
pub(crate) struct EventFd {
    ctx: NonNull<ffi::EventfdCtx>,
}

// SAFETY: an eventfd context is reference counted and its operations
// (signal, put) may be used from any thread.
unsafe impl Send for EventFd {}
// SAFETY: `signal` is safe to call concurrently (eventfd locks internally).
unsafe impl Sync for EventFd {}

impl EventFd {
    /// The eventfd behind fd `fd` of the current task: `EBADF` if `fd` is
    /// not open, `EINVAL` if it is not an eventfd.
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        // SAFETY: plain call; any `fd` is accepted.
        let ctx = from_err_ptr(unsafe { ffi::mshv_rs_eventfd_get(fd) })?;
        let ctx = NonNull::new(ctx).ok_or(EINVAL)?;
        // INVARIANT: the helper returned a counted reference.
        Ok(Self { ctx })
    }

    /// Adds one to the counter and wakes its waiters. Any context.
    pub(crate) fn signal(&self) {
        // SAFETY: `ctx` is a live reference by the type invariant.
        unsafe { ffi::mshv_rs_eventfd_signal(self.ctx.as_ptr()) }
    }

    /// Whether `self` and `other` are the same eventfd.
    pub(crate) fn same(&self, other: &EventFd) -> bool {
        self.ctx == other.ctx
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own one reference.
        unsafe { ffi::mshv_rs_eventfd_put(self.ctx.as_ptr()) }
    }
}

/// What an [`EventHook`] calls, from work items of the system workqueue
/// (process context, no lock of the hook's held).
pub(crate) trait EventHookOwner: Send + Sync + 'static {
    /// The eventfd was signalled (once per batch of signals).
    fn fire(&self);
    /// The eventfd file was released; called once, after which the hook
    /// fires no more. May drop the hook (its destruction then does not wait
    /// for this call).
    fn hup(self: Arc<Self>);
}

/// A hook on an eventfd's wait queue that calls [`EventHookOwner::fire`]
/// after signals and [`EventHookOwner::hup`] once the eventfd file is
/// released (the hook is unhooked from the wait queue then, so it fires no
/// more). Counted in `live_objects` as `irqfds`. One pair of C callbacks
/// per `T` ([`fire_trampoline`], [`hup_trampoline`]) is handed to C, as
/// `IntervalNotifier<T>` does.
///
/// # Invariants
///
/// `raw` came from `mshv_rs_irqfd_create` with `owner` as its owner,
/// `eventfd`'s context and `T`'s trampolines, and is destroyed exactly once,
/// in `Drop::drop`, which runs before `owner` and `eventfd` are released.
pub(crate) struct EventHook<T: EventHookOwner> {
    raw: NonNull<ffi::RawIrqfd>,
    owner: Arc<T>,
    eventfd: EventFd,
}

// SAFETY: the C hook is only destroyed through `&mut self`; the owner and the
// eventfd are `Send + Sync`.
unsafe impl<T: EventHookOwner> Send for EventHook<T> {}
// SAFETY: `&EventHook` gives access only to `eventfd` and `owner`, both `Sync`.
unsafe impl<T: EventHookOwner> Sync for EventHook<T> {}

impl<T: EventHookOwner> EventHook<T> {
    /// Hooks `eventfd` (which fd `fd` must still name, else `EBADF`) so that
    /// signals call `owner.fire()`. A signal that came before the hook
    /// fires right away. May sleep.
    pub(crate) fn new(fd: i32, eventfd: EventFd, owner: Arc<T>) -> Result<Self> {
        let owner_ptr = Arc::as_ptr(&owner).cast::<c_void>().cast_mut();
        // SAFETY: `eventfd` and `owner` are kept alive by the returned value
        // until the hook is destroyed in `drop`; the trampolines are `T`'s,
        // matching `owner_ptr`.
        let raw = from_err_ptr(unsafe {
            ffi::mshv_rs_irqfd_create(
                fd,
                eventfd.ctx.as_ptr(),
                owner_ptr,
                fire_trampoline::<T>,
                hup_trampoline::<T>,
            )
        })?;
        let raw = NonNull::new(raw).ok_or(ENOMEM)?;
        crate::stats::live_add(crate::stats::Live::Irqfds, 1);
        // INVARIANT: created above with `owner`, `eventfd` and `T`'s
        // trampolines.
        Ok(Self {
            raw,
            owner,
            eventfd,
        })
    }

    /// The hooked eventfd.
    pub(crate) fn eventfd(&self) -> &EventFd {
        &self.eventfd
    }

    /// The object the hook fires.
    pub(crate) fn owner(&self) -> &Arc<T> {
        &self.owner
    }
}

impl<T: EventHookOwner> Drop for EventHook<T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `raw` is live and destroyed only here;
        // after this returns the C side no longer uses `owner` or the context.
        unsafe { ffi::mshv_rs_irqfd_destroy(self.raw.as_ptr()) };
        crate::stats::live_add(crate::stats::Live::Irqfds, -1);
    }
}

/// Called by the hook's work item with the owner pointer given at creation.
///
/// # Safety
///
/// `owner` is the `Arc::as_ptr` of an `Arc<T>` that its `EventHook<T>`
/// keeps alive until the hook is destroyed, which waits for this call.
unsafe extern "C" fn fire_trampoline<T: EventHookOwner>(owner: *mut c_void) {
    // SAFETY: by the function's safety contract.
    let owner = unsafe { &*owner.cast::<T>() };
    owner.fire();
}

/// Called by the hook's hup work item, once, after the eventfd file was
/// released, with the owner pointer given at creation.
///
/// # Safety
///
/// As for [`fire_trampoline`]: `owner` is kept alive by its `EventHook<T>`
/// until the hook is destroyed, and destroying it from anywhere but this
/// call waits for this call to return.
unsafe extern "C" fn hup_trampoline<T: EventHookOwner>(owner: *mut c_void) {
    // SAFETY: by the function's safety contract `owner` came from
    // `Arc::as_ptr` of an `Arc<T>` that is alive for the whole call. Our
    // own reference keeps it alive after `hup` drops the hook (and with it
    // the hook's reference).
    let owner: Arc<T> = unsafe { ArcBorrow::from_raw(owner.cast::<T>()) }.into();
    owner.hup();
}
