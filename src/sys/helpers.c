// SPDX-License-Identifier: GPL-2.0
/*
 * C side of src/sys: see include/mshv_rs_helpers.h for the contract of each
 * function. Everything here is glue: no policy, no state of its own.
 */

#include <linux/anon_inodes.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/hmm.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "mshv_rs_helpers.h"

/* ---- anon-inode fds ---------------------------------------------------- */

static long mshv_rs_partition_ioctl(struct file *file, unsigned int cmd,
				    unsigned long arg)
{
	return mshv_rs_fd_ioctl(MSHV_RS_FD_PARTITION, file->private_data, cmd, arg);
}

static int mshv_rs_partition_release(struct inode *inode, struct file *file)
{
	mshv_rs_fd_release(MSHV_RS_FD_PARTITION, file->private_data);
	return 0;
}

static long mshv_rs_vp_ioctl(struct file *file, unsigned int cmd,
			     unsigned long arg)
{
	return mshv_rs_fd_ioctl(MSHV_RS_FD_VP, file->private_data, cmd, arg);
}

static int mshv_rs_vp_release(struct inode *inode, struct file *file)
{
	mshv_rs_fd_release(MSHV_RS_FD_VP, file->private_data);
	return 0;
}

/*
 * The VP pages (register page, intercept message page) belong to the VP,
 * which lives at least as long as the file the VMA holds a reference to.
 * Like upstream, the page is chosen by the VMA's offset (one page per VMA).
 */
static vm_fault_t mshv_rs_vp_fault(struct vm_fault *vmf)
{
	u64 pfn = mshv_rs_vp_mmap_pfn(vmf->vma->vm_file->private_data,
				      vmf->vma->vm_pgoff);
	struct page *page;

	if (!pfn)
		return VM_FAULT_SIGBUS;
	page = pfn_to_page(pfn);
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct mshv_rs_vp_vm_ops = {
	.fault = mshv_rs_vp_fault,
};

static int mshv_rs_vp_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (vma->vm_end - vma->vm_start != PAGE_SIZE)
		return -EINVAL;
	if (!mshv_rs_vp_mmap_pfn(file->private_data, vma->vm_pgoff))
		return vma->vm_pgoff <= 2 ? -ENODEV : -EINVAL;
	vm_flags_set(vma, VM_DONTCOPY | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &mshv_rs_vp_vm_ops;
	return 0;
}

static const struct file_operations mshv_rs_fops[] = {
	[MSHV_RS_FD_PARTITION] = {
		.owner = THIS_MODULE,
		.unlocked_ioctl = mshv_rs_partition_ioctl,
		.release = mshv_rs_partition_release,
		.llseek = noop_llseek,
	},
	[MSHV_RS_FD_VP] = {
		.owner = THIS_MODULE,
		.unlocked_ioctl = mshv_rs_vp_ioctl,
		.release = mshv_rs_vp_release,
		.mmap = mshv_rs_vp_mmap,
		.llseek = noop_llseek,
	},
};

static const char *const mshv_rs_fd_names[] = {
	[MSHV_RS_FD_PARTITION] = "mshv_partition",
	[MSHV_RS_FD_VP] = "mshv_vp",
};

int mshv_rs_fd_install(int kind, void *priv)
{
	struct file *file;
	int fd;

	if (kind < 0 || kind >= ARRAY_SIZE(mshv_rs_fops))
		return -EINVAL;
	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0)
		return fd;
	file = anon_inode_getfile(mshv_rs_fd_names[kind], &mshv_rs_fops[kind],
				  priv, O_RDWR);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		return PTR_ERR(file);
	}
	fd_install(fd, file);
	return fd;
}

/* ---- current task -------------------------------------------------------- */

struct mm_struct *mshv_rs_current_mm_grab(void)
{
	struct mm_struct *mm = current->mm;

	if (mm)
		mmgrab(mm);
	return mm;
}

void mshv_rs_mmdrop(struct mm_struct *mm)
{
	mmdrop(mm);
}

bool mshv_rs_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
}

/* ---- mmu_interval_notifier --------------------------------------------- */

struct mshv_rs_mni {
	struct mmu_interval_notifier mni;
	void *owner;
};

static bool mshv_rs_mni_invalidate_cb(struct mmu_interval_notifier *mni,
				      const struct mmu_notifier_range *range,
				      unsigned long cur_seq)
{
	struct mshv_rs_mni *m = container_of(mni, struct mshv_rs_mni, mni);

	return mshv_rs_mni_invalidate(m->owner, m, range->start, range->end,
				      mmu_notifier_range_blockable(range),
				      cur_seq);
}

static const struct mmu_interval_notifier_ops mshv_rs_mni_ops = {
	.invalidate = mshv_rs_mni_invalidate_cb,
};

struct mshv_rs_mni *mshv_rs_mni_create(struct mm_struct *mm, unsigned long start,
				       unsigned long length, void *owner, int *err)
{
	struct mshv_rs_mni *m = kzalloc(sizeof(*m), GFP_KERNEL_ACCOUNT);
	int ret;

	if (!m) {
		*err = -ENOMEM;
		return NULL;
	}
	m->owner = owner;
	ret = mmu_interval_notifier_insert(&m->mni, mm, start, length,
					   &mshv_rs_mni_ops);
	if (ret) {
		kfree(m);
		*err = ret;
		return NULL;
	}
	*err = 0;
	return m;
}

void mshv_rs_mni_destroy(struct mshv_rs_mni *m)
{
	mmu_interval_notifier_remove(&m->mni);
	kfree(m);
}

unsigned long mshv_rs_mni_read_begin(struct mshv_rs_mni *m)
{
	return mmu_interval_read_begin(&m->mni);
}

bool mshv_rs_mni_read_retry(struct mshv_rs_mni *m, unsigned long seq)
{
	return mmu_interval_read_retry(&m->mni, seq);
}

void mshv_rs_mni_set_seq(struct mshv_rs_mni *m, unsigned long seq)
{
	mmu_interval_set_seq(&m->mni, seq);
}

/* ---- HMM ----------------------------------------------------------------- */

/* Bound on HMM's internal -EBUSY retries per call; the caller retries too. */
#define MSHV_RS_HMM_TIMEOUT_MS 1000

int mshv_rs_hmm_fault(struct mshv_rs_mni *m, unsigned long start,
		      unsigned long npages, bool write, u64 *out,
		      unsigned long *seq)
{
	/* hmm_pfns are unsigned long; on 64-bit they share the u64 array. */
	unsigned long *pfns = (unsigned long *)out;
	struct hmm_range range = {
		.notifier = &m->mni,
		.start = start,
		.end = start + npages * PAGE_SIZE,
		.hmm_pfns = pfns,
		.default_flags = HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0),
	};
	unsigned long i;
	int ret;

	BUILD_BUG_ON(sizeof(unsigned long) != sizeof(u64));
	ret = hmm_range_fault_unlocked_timeout(&range,
			msecs_to_jiffies(MSHV_RS_HMM_TIMEOUT_MS));
	if (ret)
		return ret;
	*seq = range.notifier_seq;
	for (i = 0; i < npages; i++) {
		unsigned long h = pfns[i];
		u64 e = 0;

		if (h & HMM_PFN_VALID) {
			e = MSHV_RS_PFN_VALID | ((h & ~HMM_PFN_FLAGS) & MSHV_RS_PFN_MASK);
			if (h & HMM_PFN_WRITE)
				e |= MSHV_RS_PFN_WRITE;
			e |= (u64)hmm_pfn_to_map_order(h) << MSHV_RS_PFN_ORDER_SHIFT;
		}
		out[i] = e;
	}
	return 0;
}

/* ---- pinned pages ------------------------------------------------------- */

/* Pin in batches of 256 MiB (upstream's MSHV_PIN_PAGES_BATCH_SIZE). */
#define MSHV_RS_PIN_BATCH_PAGES (SZ_256M / PAGE_SIZE)

long mshv_rs_pin_user_pfns(unsigned long start, unsigned long npages,
			   bool write, u64 *pfns)
{
	/* Pin into the tail of the same array, then widen in place. */
	struct page **pages = (struct page **)pfns;
	unsigned int flags = FOLL_LONGTERM | (write ? FOLL_WRITE : 0);
	long done = 0, ret, i;

	BUILD_BUG_ON(sizeof(struct page *) != sizeof(u64));
	while (done < npages) {
		int chunk = min_t(unsigned long, npages - done,
				  MSHV_RS_PIN_BATCH_PAGES);

		ret = pin_user_pages_fast(start + done * PAGE_SIZE, chunk, flags,
					  pages + done);
		if (ret > 0 && fatal_signal_pending(current)) {
			done += ret;
			ret = -EINTR;
		}
		if (ret <= 0) {
			if (done)
				unpin_user_pages(pages, done);
			return ret ? ret : -EFAULT;
		}
		done += ret;
		cond_resched();
	}
	for (i = 0; i < npages; i++)
		pfns[i] = page_to_pfn(pages[i]);
	return done;
}

void mshv_rs_unpin_pfns(const u64 *pfns, unsigned long npages, bool dirty)
{
	unsigned long i;

	for (i = 0; i < npages; i++) {
		struct page *page = pfn_to_page(pfns[i]);

		if (dirty)
			unpin_user_pages_dirty_lock(&page, 1, true);
		else
			unpin_user_page(page);
	}
}

/*
 * Guest writes through a writable second-level entry bypass the VMM's page
 * table, so the PTE's dirty bit never records them: mark the folio dirty
 * when the entry is made writable, or reclaim may drop a clean folio (a
 * shared shmem page read-faulted writable but clean) with the guest's data.
 * The caller validated the HMM sequence of @pfn under the region's lock and
 * still holds it: the page is mapped by the VMM and cannot be truncated or
 * freed before the invalidation that waits for that lock (the same
 * guarantee zap_pte_range() relies on).
 */
void mshv_rs_mark_pfn_dirty(u64 pfn)
{
	struct folio *folio;

	if (!pfn_valid(pfn) || is_zero_pfn(pfn))
		return;
	folio = page_folio(pfn_to_page(pfn));
	if (!folio_test_dirty(folio))
		folio_mark_dirty(folio);
}

/* Whether the folio of @pfn is dirty (a snapshot; false for no online page). */
bool mshv_rs_pfn_dirty(u64 pfn)
{
	struct page *page = pfn_to_online_page(pfn);

	return page && folio_test_dirty(page_folio(page));
}

unsigned int mshv_rs_pfn_folio_order(u64 pfn)
{
	return folio_order(page_folio(pfn_to_page(pfn)));
}

/* ---- non-faulting lookups (mirror checker) ------------------------------- */

bool mshv_rs_mm_read_lock(struct mm_struct *mm)
{
	if (!mmget_not_zero(mm))
		return false;
	mmap_read_lock(mm);
	return true;
}

void mshv_rs_mm_read_unlock(struct mm_struct *mm)
{
	mmap_read_unlock(mm);
	mmput(mm);
}

u64 mshv_rs_user_pfn_locked(struct mm_struct *mm, unsigned long addr)
{
	struct page *page;
	u64 pfn;

	mmap_assert_locked(mm);
	if (get_user_pages_remote(mm, addr, 1, FOLL_NOFAULT, &page, NULL) != 1)
		return 0;
	pfn = page_to_pfn(page);
	put_page(page);
	return pfn;
}

/* ---- VMA queries ---------------------------------------------------------- */

int mshv_rs_vma_kind(unsigned long addr, u64 *pfn)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	int kind = MSHV_RS_VMA_NONE;

	if (!mm)
		return MSHV_RS_VMA_NONE;
	mmap_read_lock(mm);
	vma = vma_lookup(mm, addr);
	if (vma) {
		kind = MSHV_RS_VMA_RAM;
		if (vma->vm_flags & (VM_IO | VM_PFNMAP)) {
			kind = MSHV_RS_VMA_IO;
			/* As upstream: VFIO maps BARs with vm_pgoff = first pfn. */
			*pfn = vma->vm_pgoff + ((addr - vma->vm_start) >> PAGE_SHIFT);
		}
	}
	mmap_read_unlock(mm);
	return kind;
}

/* ---- host pages ------------------------------------------------------------ */

void mshv_rs_pfn_read(u64 pfn, unsigned int off, void *buf, unsigned int len)
{
	void *va = kmap_local_pfn(pfn);

	memcpy(buf, va + off, len);
	kunmap_local(va);
}

void mshv_rs_pfn_write(u64 pfn, unsigned int off, const void *buf, unsigned int len)
{
	void *va = kmap_local_pfn(pfn);

	memcpy(va + off, buf, len);
	kunmap_local(va);
}

u64 mshv_rs_alloc_pfn(gfp_t gfp)
{
	struct page *page = alloc_page(gfp | __GFP_ZERO);

	return page ? page_to_pfn(page) : 0;
}

void mshv_rs_free_pfn(u64 pfn)
{
	__free_page(pfn_to_page(pfn));
}

/* ---- layout canaries ------------------------------------------------------- */

size_t mshv_rs_c_sizeof(int which)
{
	switch (which) {
	case MSHV_RS_SIZEOF_TASK_STRUCT:
		return sizeof(struct task_struct);
	case MSHV_RS_OFFSETOF_TASK_MM:
		return offsetof(struct task_struct, mm);
	case MSHV_RS_SIZEOF_FILE:
		return sizeof(struct file);
	case MSHV_RS_SIZEOF_MM_STRUCT:
		return sizeof(struct mm_struct);
	case MSHV_RS_SIZEOF_VM_AREA:
		return sizeof(struct vm_area_struct);
	case MSHV_RS_SIZEOF_MISCDEVICE:
		return sizeof(struct miscdevice);
	case MSHV_RS_SIZEOF_FOPS:
		return sizeof(struct file_operations);
	case MSHV_RS_OFFSETOF_TASK_PID:
		return offsetof(struct task_struct, pid);
	default:
		return 0;
	}
}

/* ---- module parameter ------------------------------------------------------ */

/* Rust module parameters are integers only; the backend is named. */
static char mshv_rs_backend[16] = "auto";
module_param_string(backend, mshv_rs_backend, sizeof(mshv_rs_backend), 0444);
MODULE_PARM_DESC(backend,
	"Hypervisor backend: auto (hyperv on a Hyper-V root, else refuse to load), hyperv, or sim");

const char *mshv_rs_backend_param(void)
{
	return mshv_rs_backend;
}

/* ---- the C driver --------------------------------------------------------- */

bool mshv_rs_c_mshv_root_present(void)
{
#ifdef CONFIG_MODULES
	/*
	 * mshv_root exports hv_call_delete_vp (GPL); finding it means the module
	 * is loaded (or built in). __symbol_get takes a module reference, which
	 * is dropped at once: only presence matters.
	 */
	void *sym = __symbol_get("hv_call_delete_vp");

	if (!sym)
		return false;
	symbol_put_addr(sym);
	return true;
#else
	/* No modules (e.g. the KUnit kernel): only a built-in mshv_root. */
	return IS_BUILTIN(CONFIG_MSHV_ROOT);
#endif
}

/* ---- scheduling --------------------------------------------------------- */

bool mshv_rs_signal_pending(void)
{
	return signal_pending(current);
}

void mshv_rs_cond_resched(void)
{
	cond_resched();
}

void *mshv_rs_pfn_to_virt(u64 pfn)
{
	return page_address(pfn_to_page(pfn));
}

/* ---- eventfd ------------------------------------------------------------- */

struct eventfd_ctx *mshv_rs_eventfd_get(int fd, int *err)
{
	struct eventfd_ctx *ctx = eventfd_ctx_fdget(fd);

	if (IS_ERR(ctx)) {
		*err = PTR_ERR(ctx);
		return NULL;
	}
	return ctx;
}

void mshv_rs_eventfd_put(struct eventfd_ctx *ctx)
{
	eventfd_ctx_put(ctx);
}

void mshv_rs_eventfd_signal(struct eventfd_ctx *ctx)
{
	eventfd_signal(ctx);
}

struct mshv_rs_irqfd {
	struct eventfd_ctx *ctx;
	void *owner;
	wait_queue_entry_t wait;
	poll_table pt;
	wait_queue_head_t *wqh;
	/* Calls mshv_rs_irqfd_fire() after signals. */
	struct work_struct fire;
	/* Calls mshv_rs_irqfd_hup() once the eventfd file is released. */
	struct work_struct hup;
};

static void mshv_rs_irqfd_work(struct work_struct *work)
{
	struct mshv_rs_irqfd *w = container_of(work, struct mshv_rs_irqfd, fire);

	mshv_rs_irqfd_fire(w->owner);
}

static void mshv_rs_irqfd_hup_work(struct work_struct *work)
{
	struct mshv_rs_irqfd *w = container_of(work, struct mshv_rs_irqfd, hup);

	/* May free @w (mshv_rs_irqfd_destroy() from this work item): not used after. */
	mshv_rs_irqfd_hup(w->owner);
}

static int mshv_rs_irqfd_wakeup(wait_queue_entry_t *wait, unsigned int mode,
				int sync, void *key)
{
	struct mshv_rs_irqfd *w = container_of(wait, struct mshv_rs_irqfd, wait);
	__poll_t flags = key_to_poll(key);
	u64 cnt;

	if (flags & EPOLLIN) {
		/* Called with the wait-queue lock held, as the helper wants. */
		eventfd_ctx_do_read(w->ctx, &cnt);
		queue_work(system_wq, &w->fire);
	}
	if (flags & EPOLLHUP) {
		/*
		 * The eventfd file is being released (KVM's irqfd_wakeup):
		 * unhook now, under the wait-queue lock (__wake_up_common
		 * allows the current entry to remove itself), so a signal
		 * through a context reference someone else still holds no
		 * longer fires, and let process context drop the irqfd.
		 */
		list_del_init(&w->wait.entry);
		queue_work(system_wq, &w->hup);
	}
	return 0;
}

static void mshv_rs_irqfd_queue(struct file *file, wait_queue_head_t *wqh,
				poll_table *pt)
{
	struct mshv_rs_irqfd *w = container_of(pt, struct mshv_rs_irqfd, pt);

	w->wqh = wqh;
	add_wait_queue(wqh, &w->wait);
}

struct mshv_rs_irqfd *mshv_rs_irqfd_create(int fd, struct eventfd_ctx *ctx,
					   void *owner, int *err)
{
	struct mshv_rs_irqfd *w;
	struct eventfd_ctx *again;
	__poll_t events;

	CLASS(fd, f)(fd);
	if (fd_empty(f)) {
		*err = -EBADF;
		return NULL;
	}
	/* The fd may have been closed and reused since @ctx was looked up. */
	again = eventfd_ctx_fileget(fd_file(f));
	if (IS_ERR(again)) {
		*err = PTR_ERR(again);
		return NULL;
	}
	eventfd_ctx_put(again);
	if (again != ctx) {
		*err = -EBADF;
		return NULL;
	}
	w = kzalloc(sizeof(*w), GFP_KERNEL_ACCOUNT);
	if (!w) {
		*err = -ENOMEM;
		return NULL;
	}
	w->ctx = ctx;
	w->owner = owner;
	INIT_WORK(&w->fire, mshv_rs_irqfd_work);
	INIT_WORK(&w->hup, mshv_rs_irqfd_hup_work);
	init_waitqueue_func_entry(&w->wait, mshv_rs_irqfd_wakeup);
	init_poll_funcptr(&w->pt, mshv_rs_irqfd_queue);
	/* Hooks the wait queue through eventfd's poll; fires a signal that came first. */
	events = vfs_poll(fd_file(f), &w->pt);
	if (events & EPOLLIN)
		queue_work(system_wq, &w->fire);
	return w;
}

void mshv_rs_irqfd_destroy(struct mshv_rs_irqfd *w)
{
	u64 cnt;

	/* A no-op removal if EPOLLHUP already unhooked it (list_del_init). */
	eventfd_ctx_remove_wait_queue(w->ctx, &w->wait, &cnt);
	cancel_work_sync(&w->fire);
	/*
	 * Called from the hup work item itself, that item is running, not
	 * pending, and may free its own work_struct (the workqueue allows
	 * it); called from anywhere else, wait for it: it uses the owner.
	 */
	if (current_work() != &w->hup)
		cancel_work_sync(&w->hup);
	kfree(w);
}
