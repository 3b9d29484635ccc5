/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/mm.c, the C side of src/sys/mm.rs: the VMM's address
 * space (mm references, VMA queries), mmu_interval_notifier, HMM, MMIO
 * pfns through follow_pfnmap, long-term pinning and the page references
 * and folio state of guest RAM.
 */
#ifndef MSHV_RS_SYS_MM_H
#define MSHV_RS_SYS_MM_H

#include <linux/types.h>

struct mm_struct;
struct mshv_rs_mni;

/* ---- current task -------------------------------------------------------- */

/* current->mm with an mmgrab() reference, or NULL for a kernel thread. */
struct mm_struct *mshv_rs_current_mm_grab(void);
void mshv_rs_mmdrop(struct mm_struct *mm);
/* Whether @mm is the current task's mm. */
bool mshv_rs_mm_is_current(struct mm_struct *mm);
/* access_ok() on the user range [@addr, @addr + @size). */
bool mshv_rs_access_ok(unsigned long addr, unsigned long size);
/*
 * Whether VMAs of the current mm cover [@start, @start + @len) without a
 * hole (false also if the range wraps, or on a fatal signal).
 */
bool mshv_rs_range_mapped(unsigned long start, unsigned long len);

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
 * module while registered (its callbacks are module text). Returns the
 * notifier, or ERR_PTR(-ENODEV) while the module is going away, -ENOMEM, or
 * mmu_interval_notifier_insert()'s error.
 */
struct mshv_rs_mni *mshv_rs_mni_create(struct mm_struct *mm, unsigned long start,
				       unsigned long length,
				       mshv_rs_mni_invalidate_fn cb, void *owner);
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
 * VMM maps (see mm.c); false (no reference) for the zero page or a pfn
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
/* Marks the folio of a page being mapped writable for the guest dirty (see mm.c). */
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

#endif /* MSHV_RS_SYS_MM_H */
