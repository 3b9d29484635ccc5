// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C helpers, one `extern` block per C file of `src/sys`
//! (`X.c`, with its contract in `X.h` beside it, serves the Rust wrapper
//! `X.rs`). Only `sys` uses these; see the headers for each function's
//! contract.

use kernel::ffi::{c_int, c_long, c_uint, c_ulong, c_void};

/// `struct mshv_rs_hv_identity` (src/sys/hyperv.h).
#[repr(C)]
#[derive(Default)]
pub(crate) struct HvIdentity {
    pub(crate) partition_id: u64,
    pub(crate) root: bool,
    pub(crate) kdump: bool,
    pub(crate) vmbus: bool,
    pub(crate) build: u32,
    pub(crate) vector: u8,
    pub(crate) auto_eoi: bool,
}

/// Opaque `struct mm_struct`.
#[repr(C)]
pub(crate) struct MmStruct {
    _opaque: [u8; 0],
}

/// Opaque `struct mshv_rs_mni`.
#[repr(C)]
pub(crate) struct RawMni {
    _opaque: [u8; 0],
}

/// Opaque `struct mutex` (allocated by `mshv_rs_mutex_new`).
#[repr(C)]
pub(crate) struct RawMutex {
    _opaque: [u8; 0],
}

pub(crate) const MUTEX_PARTITION: c_int = 0;
pub(crate) const MUTEX_VP: c_int = 1;

/// Opaque `struct eventfd_ctx`.
#[repr(C)]
pub(crate) struct EventfdCtx {
    _opaque: [u8; 0],
}

/// Opaque `struct mshv_rs_irqfd`.
#[repr(C)]
pub(crate) struct RawIrqfd {
    _opaque: [u8; 0],
}

/// `mshv_rs_mni_invalidate_fn`: a notifier's invalidate callback.
pub(crate) type MniInvalidateFn = unsafe extern "C" fn(
    owner: *mut c_void,
    mni: *mut RawMni,
    start: c_ulong,
    end: c_ulong,
    blockable: bool,
    cur_seq: c_ulong,
) -> bool;

pub(crate) const FD_PARTITION: c_int = 0;
pub(crate) const FD_VP: c_int = 1;

pub(crate) const PFN_VALID: u64 = 1 << 63;
pub(crate) const PFN_WRITE: u64 = 1 << 62;
pub(crate) const PFN_ORDER_SHIFT: u32 = 56;
pub(crate) const PFN_ORDER_MASK: u64 = 0x1f;
pub(crate) const PFN_MASK: u64 = (1 << 52) - 1;

pub(crate) const BACKING_ANON_PRIVATE: c_int = 1;
pub(crate) const BACKING_HUGETLB: c_int = 2;

pub(crate) const VMA_RAM: c_int = 1;
pub(crate) const VMA_IO: c_int = 2;

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
pub(crate) const SIZEOF_TASK_STRUCT: c_int = 0;
#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
pub(crate) const OFFSETOF_TASK_MM: c_int = 1;
#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
pub(crate) const SIZEOF_FILE: c_int = 2;
#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
pub(crate) const SIZEOF_MM_STRUCT: c_int = 3;
#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
pub(crate) const SIZEOF_VM_AREA: c_int = 4;
#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
pub(crate) const SIZEOF_MISCDEVICE: c_int = 5;
#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
pub(crate) const SIZEOF_FOPS: c_int = 6;
#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
pub(crate) const OFFSETOF_TASK_PID: c_int = 7;

// src/sys/fd.c (fd.h)
extern "C" {
    pub(crate) fn mshv_rs_fd_install(kind: c_int, private: *mut c_void) -> c_int;
}

// src/sys/mm.c (mm.h)
extern "C" {
    pub(crate) fn mshv_rs_current_mm_grab() -> *mut MmStruct;
    pub(crate) fn mshv_rs_mmdrop(mm: *mut MmStruct);
    pub(crate) fn mshv_rs_mm_is_current(mm: *mut MmStruct) -> bool;
    pub(crate) fn mshv_rs_access_ok(addr: c_ulong, size: c_ulong) -> bool;
    pub(crate) fn mshv_rs_range_mapped(start: c_ulong, len: c_ulong) -> bool;
    pub(crate) fn mshv_rs_mni_create(
        mm: *mut MmStruct,
        start: c_ulong,
        length: c_ulong,
        cb: MniInvalidateFn,
        owner: *mut c_void,
    ) -> *mut RawMni;
    pub(crate) fn mshv_rs_mni_destroy(mni: *mut RawMni);
    pub(crate) fn mshv_rs_mni_read_begin(mni: *mut RawMni) -> c_ulong;
    pub(crate) fn mshv_rs_mni_read_retry(mni: *mut RawMni, seq: c_ulong) -> bool;
    pub(crate) fn mshv_rs_mni_set_seq(mni: *mut RawMni, seq: c_ulong);
    pub(crate) fn mshv_rs_hmm_fault(
        mni: *mut RawMni,
        start: c_ulong,
        npages: c_ulong,
        fault: bool,
        write: bool,
        out: *mut u64,
        seq: *mut c_ulong,
    ) -> c_int;
    pub(crate) fn mshv_rs_hmm_snapshot(
        mni: *mut RawMni,
        start: c_ulong,
        npages: c_ulong,
        out: *mut u64,
        backing: *mut c_int,
        huge_pages: *mut c_ulong,
    ) -> c_int;
    pub(crate) fn mshv_rs_pfn_get(pfn: u64) -> bool;
    pub(crate) fn mshv_rs_pfn_put(pfn: u64);
    pub(crate) fn mshv_rs_mmio_check(start: c_ulong, npages: c_ulong) -> c_int;
    pub(crate) fn mshv_rs_mmio_pfns(
        mni: *mut RawMni,
        start: c_ulong,
        npages: c_ulong,
        write: bool,
        out: *mut u64,
    ) -> c_int;
    pub(crate) fn mshv_rs_ram_check(start: c_ulong, npages: c_ulong) -> c_int;
    pub(crate) fn mshv_rs_pin_user_pfns(
        start: c_ulong,
        npages: c_ulong,
        write: bool,
        pfns: *mut u64,
    ) -> i64;
    pub(crate) fn mshv_rs_unpin_pfns(pfns: *const u64, npages: c_ulong, dirty: bool);
    pub(crate) fn mshv_rs_mark_pfn_dirty(pfn: u64);
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_pfn_dirty(pfn: u64) -> bool;
    pub(crate) fn mshv_rs_pfn_folio_order(pfn: u64) -> c_uint;
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_mm_read_lock(mm: *mut MmStruct) -> bool;
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_mm_read_unlock(mm: *mut MmStruct);
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_user_pfn_locked(mm: *mut MmStruct, addr: c_ulong) -> u64;
    pub(crate) fn mshv_rs_vma_kind(addr: c_ulong) -> c_int;
}

// src/sys/page.c (page.h)
extern "C" {
    pub(crate) fn mshv_rs_fatal_signal_pending() -> bool;
    pub(crate) fn mshv_rs_pfn_read(pfn: u64, off: c_uint, buf: *mut c_void, len: c_uint);
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_pfn_write(pfn: u64, off: c_uint, buf: *const c_void, len: c_uint);
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_alloc_pfn(gfp: c_uint) -> u64;
    pub(crate) fn mshv_rs_alloc_pfns(gfp: c_uint, order: c_uint) -> u64;
    pub(crate) fn mshv_rs_free_pfn(pfn: u64);
    pub(crate) fn mshv_rs_cond_resched();
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_pfn_to_virt(pfn: u64) -> *mut c_void;
}

// src/sys/lock.c (lock.h)
extern "C" {
    pub(crate) fn mshv_rs_mutex_new(class: c_int) -> *mut RawMutex;
    pub(crate) fn mshv_rs_mutex_free(m: *mut RawMutex);
    pub(crate) fn mshv_rs_mutex_lock_killable(m: *mut RawMutex) -> c_int;
    pub(crate) fn mshv_rs_mutex_lock(m: *mut RawMutex);
    pub(crate) fn mshv_rs_mutex_unlock(m: *mut RawMutex);
}

// src/sys/eventfd.c (eventfd.h)
extern "C" {
    pub(crate) fn mshv_rs_eventfd_get(fd: c_int) -> *mut EventfdCtx;
    pub(crate) fn mshv_rs_eventfd_put(ctx: *mut EventfdCtx);
    pub(crate) fn mshv_rs_eventfd_signal(ctx: *mut EventfdCtx);
    pub(crate) fn mshv_rs_irqfd_create(
        fd: c_int,
        ctx: *mut EventfdCtx,
        owner: *mut c_void,
        fire_fn: unsafe extern "C" fn(owner: *mut c_void),
        hup_fn: unsafe extern "C" fn(owner: *mut c_void),
    ) -> *mut RawIrqfd;
    pub(crate) fn mshv_rs_irqfd_destroy(w: *mut RawIrqfd);
}

// src/sys/trace.c (trace.h)
extern "C" {
    pub(crate) fn mshv_rs_trace_gpa_intercept(
        partition_id: u64,
        vp_index: u32,
        gfn: u64,
        access_type: u8,
        handled: bool,
    );
    pub(crate) fn mshv_rs_trace_map_user_memory(
        partition_id: u64,
        start_uaddr: u64,
        start_gfn: u64,
        nr_pages: u64,
        map_flags: u32,
        ret: c_long,
    );
    pub(crate) fn mshv_rs_trace_map_gpa(
        partition_id: u64,
        gfn: u64,
        reps: u32,
        large: bool,
        writable: bool,
        ret: c_int,
    );
    pub(crate) fn mshv_rs_trace_invalidate(
        partition_id: u64,
        gfn: u64,
        pages: u64,
        blockable: bool,
    );
    pub(crate) fn mshv_rs_trace_hvcall_failure(code: u16, partition_id: u64, gfn: u64, status: u16);
}

// src/sys/hyperv.c (hyperv.h)
extern "C" {
    #[cfg(CONFIG_HYPERV)]
    pub(crate) fn mshv_rs_hv_is_root() -> bool;
    #[cfg(CONFIG_HYPERV)]
    pub(crate) fn mshv_rs_hv_hypercall(
        control: u64,
        input: *const c_void,
        in_len: usize,
        output: *mut c_void,
        out_len: usize,
    ) -> u64;
    #[cfg(CONFIG_HYPERV)]
    pub(crate) fn mshv_rs_hv_dispatch_init() -> c_int;
    #[cfg(CONFIG_HYPERV)]
    pub(crate) fn mshv_rs_hv_dispatch_exit();
    #[cfg(CONFIG_HYPERV)]
    pub(crate) fn mshv_rs_hv_dispatch(
        control: u64,
        input: *const c_void,
        in_len: usize,
        output: *mut c_void,
        out_len: usize,
    ) -> u64;
    #[cfg(CONFIG_HYPERV)]
    pub(crate) fn mshv_rs_hv_fast8(code: u16, input: u64) -> u64;
    #[cfg(CONFIG_HYPERV)]
    pub(crate) fn mshv_rs_hv_read_msr(msr: u32) -> u64;
    #[cfg(CONFIG_HYPERV)]
    pub(crate) fn mshv_rs_hv_write_msr(msr: u32, value: u64);
    #[cfg(CONFIG_HYPERV)]
    pub(crate) fn mshv_rs_hv_set_handler(handler: Option<extern "C" fn()>);
    #[cfg(CONFIG_HYPERV)]
    pub(crate) fn mshv_rs_hv_identity(id: *mut HvIdentity);
}

// src/sys/cpu.c (cpu.h)
extern "C" {
    pub(crate) fn mshv_rs_cpuhp_setup(
        name: *const kernel::ffi::c_char,
        online: extern "C" fn(cpu: c_uint) -> c_int,
        offline: extern "C" fn(cpu: c_uint) -> c_int,
    ) -> c_int;
    pub(crate) fn mshv_rs_cpuhp_remove(state: c_int);
    pub(crate) fn mshv_rs_preempt_disable();
    pub(crate) fn mshv_rs_preempt_enable();
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_dispatch_context_ok() -> bool;
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_need_resched() -> bool;
    pub(crate) fn mshv_rs_smp_processor_id() -> c_uint;
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_cpu_online(cpu: c_uint) -> bool;
    pub(crate) fn mshv_rs_synchronize_rcu();
    pub(crate) fn mshv_rs_memremap_pfn(pfn: u64) -> *mut c_void;
    pub(crate) fn mshv_rs_memunmap(addr: *mut c_void);
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_ipi_init() -> c_int;
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_ipi_exit();
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_ipi_set_handler(handler: Option<extern "C" fn()>);
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_ipi_raise(cpu: c_uint);
    pub(crate) fn mshv_rs_flush_work(work: *mut c_void);
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_wq_alloc(
        name: *const kernel::ffi::c_char,
    ) -> *mut kernel::bindings::workqueue_struct;
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_wq_destroy(wq: *mut kernel::bindings::workqueue_struct);
    pub(crate) fn mshv_rs_soft_init(handler: extern "C" fn());
    pub(crate) fn mshv_rs_soft_raise();
    pub(crate) fn mshv_rs_soft_exit();
}

// src/sys/layout.c (layout.h)
extern "C" {
    #[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
    pub(crate) fn mshv_rs_c_sizeof(which: c_int) -> usize;
}

// src/sys/testdev.c (testdev.h)
extern "C" {
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_test_pfnmap_create() -> c_int;
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_test_pfnmap_destroy();
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn mshv_rs_sim_scheduler_param() -> *const kernel::ffi::c_char;
}

// src/sys/module.c (module.h)
extern "C" {
    pub(crate) fn mshv_rs_backend_param() -> *const kernel::ffi::c_char;
    pub(crate) fn mshv_rs_c_mshv_root_present() -> bool;
}
