/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers of mshv_rs: the few kernel APIs the Rust kernel crate of 7.3 has
 * no abstraction for (anon-inode fds with their own file_operations, VMA fault
 * handlers, mmu_interval_notifier, HMM, long-term pinning, pfn access) and the
 * inlines and macros bindgen cannot see. They take and return only integers
 * and opaque pointers, so the Rust side never depends on the layout of a
 * kernel struct. src/sys/ wraps each in a safe Rust type.
 */
#ifndef MSHV_RS_HELPERS_H
#define MSHV_RS_HELPERS_H

#include <linux/types.h>

struct mm_struct;
struct mshv_rs_mni;

/* ---- anon-inode fds ---------------------------------------------------- */

enum mshv_rs_fd_kind {
	MSHV_RS_FD_PARTITION = 0,
	MSHV_RS_FD_VP = 1,
};

/*
 * Installs a new O_RDWR|O_CLOEXEC anon-inode fd of @kind whose private data is
 * @priv. Returns the fd, or a negative errno (then @priv is still the
 * caller's). On success, @priv is handed back exactly once through the Rust
 * callback mshv_rs_fd_release().
 */
int mshv_rs_fd_install(int kind, void *priv);

/* Implemented in Rust (src/fd_entry.rs, beside the crate root). */
long mshv_rs_fd_ioctl(int kind, void *priv, unsigned int cmd, unsigned long arg);
void mshv_rs_fd_release(int kind, void *priv);
/* Returns the pfn to map at page offset @pgoff of a VP fd, or 0 for none. */
u64 mshv_rs_vp_mmap_pfn(void *priv, unsigned long pgoff);

/* ---- current task -------------------------------------------------------- */

/* current->mm with an mmgrab() reference, or NULL for a kernel thread. */
struct mm_struct *mshv_rs_current_mm_grab(void);
void mshv_rs_mmdrop(struct mm_struct *mm);
/* True if the current task has a fatal signal pending. */
bool mshv_rs_fatal_signal_pending(void);
/* Whether @mm is the current task's mm. */
bool mshv_rs_mm_is_current(struct mm_struct *mm);
/* access_ok() on the user range [@addr, @addr + @size). */
bool mshv_rs_access_ok(unsigned long addr, unsigned long size);
/*
 * Whether VMAs of the current mm cover [@start, @start + @len) without a
 * hole (false also if the range wraps, or on a fatal signal).
 */
bool mshv_rs_range_mapped(unsigned long start, unsigned long len);

/* ---- killable mutexes ----------------------------------------------------- */

enum mshv_rs_mutex_class {
	MSHV_RS_MUTEX_PARTITION = 0,
	MSHV_RS_MUTEX_VP = 1,
	MSHV_RS_MUTEX_CLASSES,
};

struct mutex;
/* A new (kmalloc'd, GFP_KERNEL_ACCOUNT) mutex of lockdep class @class, or NULL. */
struct mutex *mshv_rs_mutex_new(int class);
/* Destroys and frees a mutex from mshv_rs_mutex_new(); it must be unlocked. */
void mshv_rs_mutex_free(struct mutex *m);
/* mutex_lock_killable(): 0, or -EINTR on a fatal signal. */
int mshv_rs_mutex_lock_killable(struct mutex *m);
void mshv_rs_mutex_lock(struct mutex *m);
void mshv_rs_mutex_unlock(struct mutex *m);

/* ---- mmu_interval_notifier --------------------------------------------- */

/*
 * The invalidate callback of one notifier: @owner as given to
 * mshv_rs_mni_create(); the rest as mmu_interval_notifier_ops.invalidate
 * (@blockable from mmu_notifier_range_blockable()). Returns false only for
 * a non-blockable range it could not handle.
 */
typedef bool (*mshv_rs_mni_invalidate_fn)(void *owner, struct mshv_rs_mni *mni,
					  unsigned long start, unsigned long end,
					  bool blockable, unsigned long cur_seq);

/*
 * Registers an interval notifier over [@start, @start + @length) of @mm.
 * Invalidations call @cb(@owner, ...); both must stay valid until
 * mshv_rs_mni_destroy() returns. The notifier holds a reference on this
 * module while registered (its callbacks are module text); fails with
 * -ENODEV while the module is going away.
 */
struct mshv_rs_mni *mshv_rs_mni_create(struct mm_struct *mm, unsigned long start,
				       unsigned long length,
				       mshv_rs_mni_invalidate_fn cb, void *owner,
				       int *err);
/* Unregisters (waiting for running invalidations), frees, drops the module. */
void mshv_rs_mni_destroy(struct mshv_rs_mni *mni);
unsigned long mshv_rs_mni_read_begin(struct mshv_rs_mni *mni);
bool mshv_rs_mni_read_retry(struct mshv_rs_mni *mni, unsigned long seq);
void mshv_rs_mni_set_seq(struct mshv_rs_mni *mni, unsigned long seq);

/* ---- HMM ----------------------------------------------------------------- */

/* Encoding of one entry of the array mshv_rs_hmm_fault() fills in. */
#define MSHV_RS_PFN_VALID	(1ULL << 63)
#define MSHV_RS_PFN_WRITE	(1ULL << 62)
#define MSHV_RS_PFN_ORDER_SHIFT	56
#define MSHV_RS_PFN_ORDER_MASK	0x1fULL
#define MSHV_RS_PFN_MASK	((1ULL << 52) - 1)

/*
 * Faults in @npages pages from @start of the notifier's mm (read, or write if
 * @write; with !@fault only looks at what is present) with
 * hmm_range_fault_unlocked_timeout() and fills @out with the encoding
 * above. *@seq receives the notifier sequence the result is valid for: check
 * it with mshv_rs_mni_read_retry() under the lock the invalidate callback
 * takes. @out must hold @npages u64s. Holds a user reference on the
 * mm (mmget_not_zero) while faulting: -EFAULT once the mm has no users.
 */
int mshv_rs_hmm_fault(struct mshv_rs_mni *mni, unsigned long start,
		      unsigned long npages, bool fault, bool write, u64 *out,
		      unsigned long *seq);
/* What backs a whole fault window (mshv_rs_hmm_snapshot()). */
#define MSHV_RS_BACKING_OTHER		0
#define MSHV_RS_BACKING_ANON_PRIVATE	1	/* one private writable anonymous VMA */
#define MSHV_RS_BACKING_HUGETLB		2	/* one hugetlb VMA */
/*
 * Which of @npages pages from @start are mapped now, without faulting:
 * @out[i] is MSHV_RS_PFN_VALID or 0. *@backing says what one VMA covering
 * the whole range is (MSHV_RS_BACKING_*), *@huge_pages the pages per huge
 * page of a hugetlb VMA (else 0). A snapshot, for the fault policy only.
 */
int mshv_rs_hmm_snapshot(struct mshv_rs_mni *mni, unsigned long start,
			 unsigned long npages, u64 *out, int *backing,
			 unsigned long *huge_pages);

/* ---- page references of kept regions --------------------------------- */

/*
 * get_page() on the page at @pfn, which a validated HMM snapshot says the
 * VMM maps (see helpers.c); false (no reference) for the zero page or a pfn
 * without struct page. mshv_rs_pfn_put() drops it.
 */
bool mshv_rs_pfn_get(u64 pfn);
void mshv_rs_pfn_put(u64 pfn);

/* ---- MMIO (VM_IO | VM_PFNMAP) ------------------------------------------ */

/*
 * 0 if one VM_IO or VM_PFNMAP, readable VMA of the current mm covers
 * [@start, @start + @npages pages), else -EINVAL.
 */
int mshv_rs_mmio_check(unsigned long start, unsigned long npages);
/*
 * Fills @out (@npages u64s, the encoding above, order 0) with the pfns the
 * notifier's mm maps at @start.. now, from the page tables
 * (follow_pfnmap_start(), faulting unpopulated pages in with
 * fixup_user_fault(), as KVM does), never from vm_pgoff. MSHV_RS_PFN_WRITE
 * only if @write and the VMM's mapping is writable. -EFAULT if the range
 * is no longer inside one such VMA or does not populate; -EINTR on a fatal
 * signal. Check the result against the notifier's sequence (read_begin
 * before this call, read_retry under the lock the callback takes).
 */
int mshv_rs_mmio_pfns(struct mshv_rs_mni *mni, unsigned long start,
		      unsigned long npages, bool write, u64 *out);

/* ---- pinned pages ------------------------------------------------------- */

/* pin_user_pages_fast(FOLL_LONGTERM [| FOLL_WRITE]); pfns into @pfns. */
long mshv_rs_pin_user_pfns(unsigned long start, unsigned long npages,
			   bool write, u64 *pfns);
void mshv_rs_unpin_pfns(const u64 *pfns, unsigned long npages, bool dirty);
/* Marks the folio of a page being mapped writable for the guest dirty (see helpers.c). */
void mshv_rs_mark_pfn_dirty(u64 pfn);
/* Whether the folio of a page is dirty: a snapshot, for the mirror checker. */
bool mshv_rs_pfn_dirty(u64 pfn);
/* Order of the folio holding @pfn (0 for a small page). */
unsigned int mshv_rs_pfn_folio_order(u64 pfn);

/* ---- non-faulting lookups (mirror checker) ------------------------------- */

/* mmget_not_zero + mmap_read_lock; false if the address space is gone. */
bool mshv_rs_mm_read_lock(struct mm_struct *mm);
/* mmap_read_unlock + mmput. */
void mshv_rs_mm_read_unlock(struct mm_struct *mm);
/*
 * With @mm read-locked: the pfn mapped at @addr now, without faulting (a
 * VM_IO/VM_PFNMAP VMA through follow_pfnmap_start()); 0 if none.
 */
u64 mshv_rs_user_pfn_locked(struct mm_struct *mm, unsigned long addr);

/* ---- VMA queries ---------------------------------------------------------- */

#define MSHV_RS_VMA_NONE	0	/* no VMA covers the address */
#define MSHV_RS_VMA_RAM		1
#define MSHV_RS_VMA_IO		2	/* VM_IO | VM_PFNMAP */
/* Classifies the VMA at @addr of the current mm. */
int mshv_rs_vma_kind(unsigned long addr);
/*
 * 0 if VMAs of the current mm, none VM_IO or VM_PFNMAP, cover
 * [@start, @start + @npages pages) without a hole, else -EFAULT
 * (-EINVAL if the range wraps).
 */
int mshv_rs_ram_check(unsigned long start, unsigned long npages);

/* ---- host pages ------------------------------------------------------------ */

/* Copy to/from a host page by pfn (kmap_local_pfn); off + len <= PAGE_SIZE. */
void mshv_rs_pfn_read(u64 pfn, unsigned int off, void *buf, unsigned int len);
void mshv_rs_pfn_write(u64 pfn, unsigned int off, const void *buf, unsigned int len);
/* A zeroed page; its pfn, or 0 on failure. Free with mshv_rs_free_pfn(). */
u64 mshv_rs_alloc_pfn(gfp_t gfp);
/*
 * 2^@order zeroed, physically contiguous pages, split so that each is freed
 * with mshv_rs_free_pfn(); the first pfn, or 0. Orders above 0 neither
 * retry hard nor warn.
 */
u64 mshv_rs_alloc_pfns(gfp_t gfp, unsigned int order);
void mshv_rs_free_pfn(u64 pfn);

/* ---- eventfd ------------------------------------------------------------- */

struct eventfd_ctx;
struct mshv_rs_irqfd;

/*
 * eventfd_ctx_fdget(@fd): a counted reference to the eventfd context of fd
 * @fd, or NULL with *@err = -EBADF (not an open fd) or -EINVAL (not an
 * eventfd). Release with mshv_rs_eventfd_put().
 */
struct eventfd_ctx *mshv_rs_eventfd_get(int fd, int *err);
void mshv_rs_eventfd_put(struct eventfd_ctx *ctx);
/* eventfd_signal(): adds 1 to the counter and wakes waiters. Any context. */
void mshv_rs_eventfd_signal(struct eventfd_ctx *ctx);

/*
 * Hooks a waiter on the wait queue of @ctx, the eventfd context of fd @fd
 * (through vfs_poll; -EBADF if @fd no longer refers to @ctx), KVM/mshv irqfd
 * style. Every time the
 * eventfd is signalled, the wakeup callback (atomic context, wait-queue lock
 * held) consumes the counter and queues a work item on the system workqueue;
 * the work item calls @fire_fn(@owner) in
 * process context, once per batch of signals. If the eventfd is already
 * readable when the hook is installed, the work item is queued at once.
 * On EPOLLHUP (the eventfd file released) the wakeup unhooks from the wait
 * queue and queues a second work item that calls @hup_fn(@owner) once,
 * in process context; the callback may
 * destroy the hook (it is then not waited for).
 * Returns NULL with *@err = -ENOMEM on failure. @ctx and @owner must stay
 * valid until mshv_rs_irqfd_destroy() returns.
 */
struct mshv_rs_irqfd *mshv_rs_irqfd_create(int fd, struct eventfd_ctx *ctx,
					   void *owner,
					   void (*fire_fn)(void *owner),
					   void (*hup_fn)(void *owner), int *err);
/*
 * Unhooks from the wait queue, waits for queued or running work items
 * (cancel_work_sync; not for the hup item when called from it) and frees.
 * After it returns neither callback is running or will be called for @w.
 * May sleep; the caller must not hold a lock that either callback takes.
 */
void mshv_rs_irqfd_destroy(struct mshv_rs_irqfd *w);


/* ---- layout canaries ------------------------------------------------------- */

/* sizeof / offsetof as C sees them, for the KUnit canaries. */
size_t mshv_rs_c_sizeof(int which);

#define MSHV_RS_SIZEOF_TASK_STRUCT	0
#define MSHV_RS_OFFSETOF_TASK_MM	1
#define MSHV_RS_SIZEOF_FILE		2
#define MSHV_RS_SIZEOF_MM_STRUCT	3
#define MSHV_RS_SIZEOF_VM_AREA		4
#define MSHV_RS_SIZEOF_MISCDEVICE	5
#define MSHV_RS_SIZEOF_FOPS		6
#define MSHV_RS_OFFSETOF_TASK_PID	7

/* ---- scheduling and the direct map ------------------------------------ */

bool mshv_rs_signal_pending(void);
void mshv_rs_cond_resched(void);
/* Direct-map address of a lowmem page (x86_64: every page). */
void *mshv_rs_pfn_to_virt(u64 pfn);

/* ---- module parameter ------------------------------------------------------ */

/* The backend= module parameter as written by the user. */
const char *mshv_rs_backend_param(void);

/*
 * Whether the C driver mshv_root is present (loaded or built in): it then owns
 * the misc device "mshv". A module still loading or already unloading counts
 * as absent. Does not sleep (an RCU symbol lookup).
 */
bool mshv_rs_c_mshv_root_present(void);

/* ---- test-only side channel (src/sys/testdev.c; backend=sim) ---------- */

/* Pages behind debugfs mshv_rs/sim/pfnmap (see testdev.c). */
#define MSHV_RS_PFNMAP_PAGES	16
/* Allocates the pages and creates mshv_rs/sim/pfnmap (the directory must exist). */
int mshv_rs_test_pfnmap_create(void);
/* Removes the file and frees the pages; only at module unload. */
void mshv_rs_test_pfnmap_destroy(void);
/* The sim_scheduler= parameter (emulator builds; testdev.c). */
const char *mshv_rs_sim_scheduler_param(void);

/* ---- trace events (src/sys/trace.c, include/mshv_rs_trace.h) ----------- */

/* Each fires the event of the same name; see mshv_rs_trace.h for fields. */
void mshv_rs_trace_gpa_intercept(u64 partition_id, u32 vp_index, u64 gfn,
				 u8 access_type, bool handled);
void mshv_rs_trace_map_user_memory(u64 partition_id, u64 start_uaddr, u64 start_gfn,
				   u64 nr_pages, u32 map_flags, long ret);
void mshv_rs_trace_map_gpa(u64 partition_id, u64 gfn, u32 reps, bool large,
			   bool writable, int ret);
void mshv_rs_trace_invalidate(u64 partition_id, u64 gfn, u64 pages, bool blockable);
void mshv_rs_trace_hvcall_failure(u16 code, u64 partition_id, u64 gfn, u16 status);

/* ---- Hyper-V (src/sys/hyperv.c, CONFIG_HYPERV only) -------------------- */

/* Whether Linux runs as a Hyper-V root partition. */
bool mshv_rs_hv_is_root(void);
/*
 * Issues one hypercall with @in_len bytes of input copied to the per-CPU
 * input page and @out_len bytes of output copied back; returns the raw
 * result word (U64_MAX if there is no hypercall page).
 */
u64 mshv_rs_hv_hypercall(u64 control, const void *in, size_t in_len,
			 void *out, size_t out_len);

/* Per-CPU dispatch pages for HVCALL_DISPATCH_VP (init/exit at load/unload). */
int mshv_rs_hv_dispatch_init(void);
void mshv_rs_hv_dispatch_exit(void);
/*
 * HVCALL_DISPATCH_VP from this CPU's dispatch pages. The caller has
 * preemption disabled and interrupts enabled.
 */
u64 mshv_rs_hv_dispatch(u64 control, const void *in, size_t in_len,
			void *out, size_t out_len);
/* A fast hypercall with one 8-byte input register. */
u64 mshv_rs_hv_fast8(u16 code, u64 input);
/* Synthetic MSRs of this CPU (hv_get/set_non_nested_msr). */
u64 mshv_rs_hv_read_msr(u32 msr);
void mshv_rs_hv_write_msr(u32 msr, u64 value);
/* hv_setup_mshv_handler(): NULL removes the handler. */
void mshv_rs_hv_set_handler(void (*handler)(void));

/* What the driver reads about the hypervisor at load. */
struct mshv_rs_hv_identity {
	u64 partition_id;
	bool root;
	bool kdump;
	bool vmbus;
	u32 build;
	u8 vector;
	bool auto_eoi;
};
void mshv_rs_hv_identity(struct mshv_rs_hv_identity *id);

/* ---- CPUs, preemption, RCU, remapping (src/sys/cpu.c) ------------------- */

/*
 * Registers @online and @offline as a dynamic CPU-hotplug state named @name;
 * @online runs now on every online CPU, on that CPU. Returns the state
 * (> 0) or a negative errno. mshv_rs_cpuhp_remove() runs @offline on every
 * online CPU and removes the state.
 */
int mshv_rs_cpuhp_setup(const char *name, int (*online)(unsigned int cpu),
			int (*offline)(unsigned int cpu));
void mshv_rs_cpuhp_remove(int state);
void mshv_rs_preempt_disable(void);
void mshv_rs_preempt_enable(void);
/* Preemption disabled and interrupts enabled: what DISPATCH_VP needs. */
bool mshv_rs_dispatch_context_ok(void);
bool mshv_rs_need_resched(void);
unsigned int mshv_rs_smp_processor_id(void);
bool mshv_rs_cpu_online(unsigned int cpu);
void mshv_rs_synchronize_rcu(void);
/* memremap() of one hypervisor page by pfn, write-back; NULL on failure. */
void *mshv_rs_memremap_pfn(u64 pfn);
void mshv_rs_memunmap(void *addr);

/*
 * The emulator's SynIC interrupt: mshv_rs_ipi_raise() queues an irq_work on
 * @cpu whose callback calls the handler set with mshv_rs_ipi_set_handler(),
 * in hard-IRQ context on @cpu. mshv_rs_ipi_sync() waits until no callback
 * runs any more (after the handler was set to NULL).
 */
int mshv_rs_ipi_init(void);
void mshv_rs_ipi_exit(void);
void mshv_rs_ipi_set_handler(void (*handler)(void));
void mshv_rs_ipi_raise(unsigned int cpu);
/*
 * Per-CPU deferred work (irq_work without IRQ_WORK_HARD_IRQ) running
 * @handler on the CPU that raised it; exit clears it and waits for running
 * callbacks.
 */
void mshv_rs_soft_init(void (*handler)(void));
void mshv_rs_soft_raise(void);
void mshv_rs_soft_exit(void);
/* flush_work(): waits until @work is idle. */
void mshv_rs_flush_work(void *work);
/* An unbound workqueue of the module's own; destroying it drains it. */
struct workqueue_struct *mshv_rs_wq_alloc(const char *name);
void mshv_rs_wq_destroy(struct workqueue_struct *wq);

#endif /* MSHV_RS_HELPERS_H */
