// SPDX-License-Identifier: GPL-2.0

//! CPUs as the hypervisor code sees them: CPU-hotplug states, preemption,
//! the current CPU, RCU grace periods, hypervisor pages mapped by pfn, and
//! the irq_work the emulator raises in place of the SynIC interrupt. The C
//! half is `src/sys/cpu.c`.

use super::ffi;
use kernel::{ffi::c_void, prelude::*, str::CStr};

/// A CPU-hotplug callback: runs on `cpu` itself; 0 or a negative errno.
pub(crate) type HotplugFn = extern "C" fn(cpu: u32) -> i32;

/// A registered dynamic CPU-hotplug state. `online` ran on every online CPU
/// when it was registered and runs on each CPU that comes up; dropping it
/// runs `offline` on every online CPU and removes the state.
///
/// # Invariants
///
/// `state` is a state `cpuhp_setup_state()` returned and not yet removed.
pub(crate) struct Hotplug {
    state: i32,
}

impl Hotplug {
    /// Registers the state `name`.
    pub(crate) fn new(name: &'static CStr, online: HotplugFn, offline: HotplugFn) -> Result<Self> {
        // SAFETY: `name` is a static NUL-terminated string; the callbacks are
        // `extern "C"` functions in module text, removed in `drop` before the
        // module can go away.
        let state = unsafe { ffi::mshv_rs_cpuhp_setup(name.as_char_ptr(), online, offline) };
        if state < 0 {
            return Err(Error::from_errno(state));
        }
        // INVARIANT: a registered state.
        Ok(Self { state })
    }
}

impl Drop for Hotplug {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the state is registered.
        unsafe { ffi::mshv_rs_cpuhp_remove(self.state) };
    }
}

/// Runs `f` with preemption disabled (it stays on the current CPU).
pub(crate) fn without_preemption<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: balanced by the enable below; `f` cannot leave the function
    // without it (the kernel does not unwind).
    unsafe { ffi::mshv_rs_preempt_disable() };
    let r = f();
    // SAFETY: pairs with the disable above.
    unsafe { ffi::mshv_rs_preempt_enable() };
    r
}

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
/// Preemption disabled, interrupts enabled, not in interrupt context: the
/// context `HVCALL_DISPATCH_VP` must be called from.
pub(crate) fn dispatch_context_ok() -> bool {
    // SAFETY: reads the current context.
    unsafe { ffi::mshv_rs_dispatch_context_ok() }
}

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
/// Whether the scheduler wants this CPU back.
pub(crate) fn need_resched() -> bool {
    // SAFETY: reads the current task's flags.
    unsafe { ffi::mshv_rs_need_resched() }
}

/// The current CPU (only stable while the caller cannot migrate).
pub(crate) fn current() -> u32 {
    // SAFETY: no arguments.
    unsafe { ffi::mshv_rs_smp_processor_id() }
}

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
/// Whether `cpu` is online.
pub(crate) fn online(cpu: u32) -> bool {
    // SAFETY: the helper bounds-checks `cpu`.
    unsafe { ffi::mshv_rs_cpu_online(cpu) }
}

/// The number of possible CPU ids.
pub(crate) fn nr_cpu_ids() -> u32 {
    kernel::cpu::nr_cpu_ids()
}

/// Waits for an RCU grace period: every hard-IRQ handler running now has
/// returned when this does.
pub(crate) fn synchronize_rcu() {
    // SAFETY: may sleep; callers are in process context.
    unsafe { ffi::mshv_rs_synchronize_rcu() }
}

/// A hypervisor page (SynIC message, event-flags or event-ring page) mapped
/// write-back by pfn; unmapped on drop.
///
/// # Invariants
///
/// `addr` is a live `memremap()` mapping of one 4 KiB page.
pub(crate) struct HvPageMap {
    addr: *mut u8,
}

// SAFETY: a mapping of memory the hypervisor and every CPU share; the
// accessors below are volatile and do not rely on the owning thread.
unsafe impl Send for HvPageMap {}
// SAFETY: as above.
unsafe impl Sync for HvPageMap {}

impl HvPageMap {
    /// Maps page `pfn`.
    pub(crate) fn new(pfn: u64) -> Result<Self> {
        // SAFETY: memremap() validates the range itself.
        let addr = unsafe { ffi::mshv_rs_memremap_pfn(pfn) }.cast::<u8>();
        if addr.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: a live mapping.
        Ok(Self { addr })
    }

    /// The mapping's address, for volatile access to the page by the
    /// hypervisor-defined layout.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.addr
    }

    /// The `index`th little-endian `u64` of the page, read once (the
    /// hypervisor writes it concurrently); 0 past the page.
    pub(crate) fn read_u64(&self, index: usize) -> u64 {
        if index >= 4096 / 8 {
            return 0;
        }
        // SAFETY: by the invariant `addr` maps 4 KiB; `index` is within it
        // and the page start is 8-aligned.
        let v = unsafe { core::ptr::read_volatile(self.addr.cast::<u64>().add(index)) };
        u64::from_le(v)
    }
}

impl Drop for HvPageMap {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `addr` is a live mapping.
        unsafe { ffi::mshv_rs_memunmap(self.addr.cast::<c_void>()) }
    }
}

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
/// The emulator's stand-in for the SynIC interrupt: an irq_work per CPU
/// whose callback calls one handler in hard-IRQ context. Dropping it removes
/// the handler and waits until no callback runs.
pub(crate) struct Ipi(());

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
impl Ipi {
    /// Sets the per-CPU works up, with no handler.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: initialises static per-CPU works; called once per load.
        let r = unsafe { ffi::mshv_rs_ipi_init() };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        Ok(Self(()))
    }

    /// Installs `handler` (or with `None` removes it).
    pub(crate) fn set_handler(&self, handler: Option<extern "C" fn()>) {
        // SAFETY: a function in module text; `drop` clears it and waits for
        // running callbacks before the module can go away.
        unsafe { ffi::mshv_rs_ipi_set_handler(handler) }
    }

    /// Interrupts `cpu`: the handler runs there soon, in hard-IRQ context.
    /// Raising a CPU whose work is already pending does nothing more.
    pub(crate) fn raise(&self, cpu: u32) {
        // SAFETY: the helper checks `cpu`; the works are initialised.
        unsafe { ffi::mshv_rs_ipi_raise(cpu) }
    }
}

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
impl Drop for Ipi {
    fn drop(&mut self) {
        // SAFETY: clears the handler and waits for every queued work.
        unsafe { ffi::mshv_rs_ipi_exit() }
    }
}

/// Waits until the work item at `work` (a `struct work_struct` inside a live
/// object) is neither queued nor running.
pub(crate) fn flush_work(work: *mut c_void) {
    // SAFETY: the caller passes a `work_struct` of an object it keeps alive
    // across the call.
    unsafe { ffi::mshv_rs_flush_work(work) }
}

/// Per-CPU deferred work for a hard-IRQ handler: [`Deferred::raise`] (from
/// the handler) makes `handler` run soon on the same CPU, in a context where
/// `spinlock_t` locks (and so the kernel crate's `SpinLock`, `CondVar`
/// wake-ups and eventfd signals) are allowed, which hard-IRQ context (a
/// system vector, a hard irq_work) does not allow under
/// `PROVE_RAW_LOCK_NESTING` and on PREEMPT_RT. One per module; dropping it
/// waits for callbacks that are running.
pub(crate) struct Deferred(());

impl Deferred {
    /// Sets up the per-CPU works to call `handler`.
    pub(crate) fn new(handler: extern "C" fn()) -> Self {
        // SAFETY: `handler` is module text; `drop` clears it and waits for
        // running callbacks before the module can go away.
        unsafe { ffi::mshv_rs_soft_init(handler) };
        Self(())
    }

    /// Queues the calling CPU's work. Callable from hard-IRQ context.
    pub(crate) fn raise() {
        // SAFETY: the works are initialised while a `Deferred` lives; the
        // only caller is the handler installed by its owner.
        unsafe { ffi::mshv_rs_soft_raise() }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        // SAFETY: clears the handler and waits for queued works.
        unsafe { ffi::mshv_rs_soft_exit() }
    }
}

/// An unbound workqueue of the module's own. Dropping it drains it (work
/// that queues itself again from its own callback included) and frees it, so
/// no callback of this module runs after the drop.
///
/// # Invariants
///
/// `0` is a live workqueue from `alloc_workqueue`, destroyed only by `drop`.
#[cfg(CONFIG_MSHV_RS_EMULATOR)]
pub(crate) struct OwnedQueue(core::ptr::NonNull<kernel::bindings::workqueue_struct>);

// SAFETY: a workqueue may be used and destroyed from any thread.
#[cfg(CONFIG_MSHV_RS_EMULATOR)]
unsafe impl Send for OwnedQueue {}
// SAFETY: queueing is thread-safe.
#[cfg(CONFIG_MSHV_RS_EMULATOR)]
unsafe impl Sync for OwnedQueue {}

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
impl OwnedQueue {
    /// Allocates a workqueue called `name`. May sleep.
    pub(crate) fn new(name: &'static CStr) -> Result<Self> {
        // SAFETY: `name` is NUL-terminated; the format is "%s".
        let wq = unsafe { ffi::mshv_rs_wq_alloc(name.as_char_ptr()) };
        // INVARIANT: a non-NULL result is a live workqueue.
        core::ptr::NonNull::new(wq).map(Self).ok_or(ENOMEM)
    }

    /// The queue, to enqueue work items on.
    pub(crate) fn queue(&self) -> &kernel::workqueue::Queue {
        // SAFETY: by the type invariant the workqueue lives as long as `self`.
        unsafe { kernel::workqueue::Queue::from_raw(self.0.as_ptr()) }
    }
}

#[cfg(CONFIG_MSHV_RS_EMULATOR)]
impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: by the type invariant it is live and destroyed only here.
        unsafe { ffi::mshv_rs_wq_destroy(self.0.as_ptr()) }
    }
}
