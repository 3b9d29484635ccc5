// SPDX-License-Identifier: GPL-2.0
/*
 * The VMM's address space (src/sys/mm.rs): mm references, VMA queries,
 * mmu_interval_notifier, HMM, MMIO pfns (follow_pfnmap), long-term pinning
 * and the page references and folio state of guest RAM. See mm.h for the
 * contract of each function. Everything here is glue: no policy, no state
 * of its own.
 */

#include <linux/hmm.h>
#include <linux/hugetlb.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "mm.h"

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

bool mshv_rs_mm_is_current(struct mm_struct *mm)
{
	return current->mm == mm;
}

bool mshv_rs_access_ok(unsigned long addr, unsigned long size)
{
	return access_ok((const void __user *)addr, size);
}

bool mshv_rs_range_mapped(unsigned long start, unsigned long len)
{
	struct mm_struct *mm = current->mm;
	unsigned long end = start + len, addr = start;
	struct vm_area_struct *vma;
	bool mapped = true;

	if (!mm || end < start)
		return false;
	if (mmap_read_lock_killable(mm))
		return false;
	/* Each VMA must start where the previous one ended (no hole). */
	while (addr < end) {
		vma = vma_lookup(mm, addr);
		if (!vma) {
			mapped = false;
			break;
		}
		addr = vma->vm_end;
	}
	mmap_read_unlock(mm);
	return mapped;
}

/* ---- mmu_interval_notifier --------------------------------------------- */

struct mshv_rs_mni {
	struct mmu_interval_notifier mni;
	mshv_rs_mni_invalidate_fn cb;
	void *owner;
};

static bool mshv_rs_mni_invalidate_cb(struct mmu_interval_notifier *mni,
				      const struct mmu_notifier_range *range,
				      unsigned long cur_seq)
{
	struct mshv_rs_mni *m = container_of(mni, struct mshv_rs_mni, mni);

	return m->cb(m->owner, m, range->start, range->end,
		     mmu_notifier_range_blockable(range), cur_seq);
}

static const struct mmu_interval_notifier_ops mshv_rs_mni_ops = {
	.invalidate = mshv_rs_mni_invalidate_cb,
};

/*
 * Each registered notifier holds a reference on this module: its ops and
 * callback are module text, called for as long as it is registered, so
 * the module must not go while one is (even one leaked on purpose).
 */
struct mshv_rs_mni *mshv_rs_mni_create(struct mm_struct *mm, unsigned long start,
				       unsigned long length,
				       mshv_rs_mni_invalidate_fn cb, void *owner)
{
	struct mshv_rs_mni *m;
	int ret;

	if (!try_module_get(THIS_MODULE))
		return ERR_PTR(-ENODEV);
	m = kzalloc(sizeof(*m), GFP_KERNEL_ACCOUNT);
	if (!m) {
		module_put(THIS_MODULE);
		return ERR_PTR(-ENOMEM);
	}
	m->cb = cb;
	m->owner = owner;
	ret = mmu_interval_notifier_insert(&m->mni, mm, start, length,
					   &mshv_rs_mni_ops);
	if (ret) {
		kfree(m);
		module_put(THIS_MODULE);
		return ERR_PTR(ret);
	}
	return m;
}

void mshv_rs_mni_destroy(struct mshv_rs_mni *m)
{
	mmu_interval_notifier_remove(&m->mni);
	kfree(m);
	/* Our caller runs on behalf of an fd, which holds the module too. */
	module_put(THIS_MODULE);
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
		      unsigned long npages, bool fault, bool write, u64 *out,
		      unsigned long *seq)
{
	/* hmm_pfns are unsigned long; on 64-bit they share the u64 array. */
	unsigned long *pfns = (unsigned long *)out;
	struct mm_struct *mm = m->mni.mm;
	struct hmm_range range = {
		.notifier = &m->mni,
		.start = start,
		.end = start + npages * PAGE_SIZE,
		.hmm_pfns = pfns,
		/*
		 * One request for the whole range: HMM write-faults from the
		 * first page that needs it to the end of its page table, so
		 * per-page write requests (pfn_flags_mask) would not stay on
		 * their pages. The caller faults the pages to write first, in
		 * ranges of their own. Without @fault, nothing is faulted in.
		 */
		.default_flags = !fault ? 0 :
			HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0),
	};
	unsigned long i;
	int ret;

	BUILD_BUG_ON(sizeof(unsigned long) != sizeof(u64));
	/* The VMM may be exiting: never fault on an mm without users. */
	if (!mmget_not_zero(mm))
		return -EFAULT;
	ret = hmm_range_fault_unlocked_timeout(&range,
			msecs_to_jiffies(MSHV_RS_HMM_TIMEOUT_MS));
	mmput(mm);
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

int mshv_rs_hmm_snapshot(struct mshv_rs_mni *m, unsigned long start,
			 unsigned long npages, u64 *out, int *backing,
			 unsigned long *huge_pages)
{
	unsigned long *pfns = (unsigned long *)out;
	struct mm_struct *mm = m->mni.mm;
	struct hmm_range range = {
		.notifier = &m->mni,
		.start = start,
		.end = start + npages * PAGE_SIZE,
		.hmm_pfns = pfns,
	};
	struct vm_area_struct *vma;
	unsigned long i;
	int ret;

	*backing = MSHV_RS_BACKING_OTHER;
	*huge_pages = 0;
	memset(pfns, 0, npages * sizeof(*pfns));
	if (!mmget_not_zero(mm))
		return -EFAULT;
	range.notifier_seq = mmu_interval_read_begin(&m->mni);
	ret = mmap_read_lock_killable(mm);
	if (ret)
		goto out_put;
	vma = vma_lookup(mm, start);
	if (vma && range.end <= vma->vm_end) {
#ifdef CONFIG_HUGETLB_PAGE
		if (is_vm_hugetlb_page(vma)) {
			*backing = MSHV_RS_BACKING_HUGETLB;
			*huge_pages = pages_per_huge_page(hstate_vma(vma));
		} else
#endif
		if (vma_is_anonymous(vma) &&
			   !(vma->vm_flags & VM_SHARED) &&
			   (vma->vm_flags & VM_WRITE)) {
			*backing = MSHV_RS_BACKING_ANON_PRIVATE;
		}
	}
	/* No REQ_FAULT: reports what is mapped, faults nothing. */
	ret = hmm_range_fault(&range);
	mmap_read_unlock(mm);
	if (ret)
		goto out_put;
	for (i = 0; i < npages; i++)
		out[i] = (pfns[i] & HMM_PFN_VALID) ? MSHV_RS_PFN_VALID : 0;
out_put:
	mmput(mm);
	return ret;
}

/* ---- page references of kept regions --------------------------------- */

/*
 * A reference on the page at @pfn, which the caller's validated HMM
 * snapshot says the VMM maps (the caller holds the lock its invalidate
 * callback takes, so the page cannot be freed meanwhile). False for a pfn
 * that needs none (the zero page, no struct page).
 */
bool mshv_rs_pfn_get(u64 pfn)
{
	if (!pfn_valid(pfn) || is_zero_pfn(pfn))
		return false;
	get_page(pfn_to_page(pfn));
	return true;
}

void mshv_rs_pfn_put(u64 pfn)
{
	put_page(pfn_to_page(pfn));
}

/* ---- MMIO (VM_IO | VM_PFNMAP) ------------------------------------------ */

/*
 * The VMA an MMIO region over [@start, @start + @len) may use: one VMA
 * covering it all, VM_IO or VM_PFNMAP, readable. NULL if there is none.
 */
static struct vm_area_struct *mshv_rs_mmio_vma(struct mm_struct *mm,
					       unsigned long start,
					       unsigned long len)
{
	struct vm_area_struct *vma = vma_lookup(mm, start);

	if (!vma || !(vma->vm_flags & (VM_IO | VM_PFNMAP)) ||
	    !(vma->vm_flags & VM_READ) || len > vma->vm_end - start)
		return NULL;
	return vma;
}

int mshv_rs_mmio_check(unsigned long start, unsigned long npages)
{
	struct mm_struct *mm = current->mm;
	int ret = 0;

	if (!mm || npages > (ULONG_MAX - start) >> PAGE_SHIFT)
		return -EINVAL;
	mmap_read_lock(mm);
	if (!mshv_rs_mmio_vma(mm, start, npages << PAGE_SHIFT))
		ret = -EINVAL;
	mmap_read_unlock(mm);
	return ret;
}

/* Faults per page before giving up on a mapping that will not populate. */
#define MSHV_RS_MMIO_FAULT_TRIES 3

/*
 * Looks the pfns up as KVM's hva_to_pfn_remapped() does: from the page
 * tables with follow_pfnmap_start(), faulting the mapping in with
 * fixup_user_fault() where it is not populated yet (vfio-pci maps BARs
 * on first touch). Never from vm_pgoff.
 */
int mshv_rs_mmio_pfns(struct mshv_rs_mni *m, unsigned long start,
		      unsigned long npages, bool write, u64 *out)
{
	struct mm_struct *mm = m->mni.mm;
	struct vm_area_struct *vma;
	unsigned long i = 0;
	int ret = 0, tries = 0;

	if (!mmget_not_zero(mm))
		return -EFAULT;
	mmap_read_lock(mm);
	while (i < npages) {
		unsigned long addr = start + i * PAGE_SIZE;
		struct follow_pfnmap_args args = { .address = addr };
		bool want_write, unlocked = false;

		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		vma = mshv_rs_mmio_vma(mm, addr, (npages - i) << PAGE_SHIFT);
		if (!vma) {
			ret = -EFAULT;
			break;
		}
		/* Writable only where the VMM's own mapping may be written. */
		want_write = write && (vma->vm_flags & VM_WRITE);
		args.vma = vma;
		if (!follow_pfnmap_start(&args)) {
			if (!want_write || args.writable || tries) {
				out[i] = MSHV_RS_PFN_VALID |
					 (args.pfn & MSHV_RS_PFN_MASK) |
					 (want_write && args.writable ?
					  MSHV_RS_PFN_WRITE : 0);
				follow_pfnmap_end(&args);
				i++;
				tries = 0;
				continue;
			}
			follow_pfnmap_end(&args);
		}
		/* Not populated (or read-only where we want write): fault it in. */
		if (++tries > MSHV_RS_MMIO_FAULT_TRIES) {
			ret = -EFAULT;
			break;
		}
		ret = fixup_user_fault(mm, addr, want_write ? FAULT_FLAG_WRITE : 0,
				       &unlocked);
		if (ret)
			break;
		/* Look the VMA up again: the lock may have been dropped. */
	}
	mmap_read_unlock(mm);
	mmput(mm);
	return ret;
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
	struct vm_area_struct *vma;
	struct page *page;
	u64 pfn;

	mmap_assert_locked(mm);
	vma = vma_lookup(mm, addr);
	if (vma && (vma->vm_flags & (VM_IO | VM_PFNMAP))) {
		struct follow_pfnmap_args args = { .vma = vma, .address = addr };

		if (follow_pfnmap_start(&args))
			return 0;
		pfn = args.pfn;
		follow_pfnmap_end(&args);
		return pfn;
	}
	if (get_user_pages_remote(mm, addr, 1, FOLL_NOFAULT, &page, NULL) != 1)
		return 0;
	pfn = page_to_pfn(page);
	put_page(page);
	return pfn;
}

/* ---- VMA queries ---------------------------------------------------------- */

int mshv_rs_vma_kind(unsigned long addr)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	int kind = MSHV_RS_VMA_NONE;

	if (!mm)
		return MSHV_RS_VMA_NONE;
	mmap_read_lock(mm);
	vma = vma_lookup(mm, addr);
	if (vma)
		kind = vma->vm_flags & (VM_IO | VM_PFNMAP) ?
			MSHV_RS_VMA_IO : MSHV_RS_VMA_RAM;
	mmap_read_unlock(mm);
	return kind;
}

int mshv_rs_ram_check(unsigned long start, unsigned long npages)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	unsigned long addr = start, end;
	int ret = 0;

	if (!mm || npages > (ULONG_MAX - start) >> PAGE_SHIFT)
		return -EINVAL;
	end = start + (npages << PAGE_SHIFT);
	mmap_read_lock(mm);
	while (addr < end) {
		vma = vma_lookup(mm, addr);
		if (!vma || (vma->vm_flags & (VM_IO | VM_PFNMAP))) {
			ret = -EFAULT;
			break;
		}
		addr = vma->vm_end;
	}
	mmap_read_unlock(mm);
	return ret;
}
