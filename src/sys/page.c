// SPDX-License-Identifier: GPL-2.0
/*
 * Host pages by pfn and the current task's signals and rescheduling
 * (src/sys/page.rs). See page.h for the contract of each function.
 * Everything here is glue: no policy, no state of its own.
 */

#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>

#include "page.h"

/* ---- current task -------------------------------------------------------- */

bool mshv_rs_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
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

u64 mshv_rs_alloc_pfns(gfp_t gfp, unsigned int order)
{
	struct page *page;

	/* A higher order is an attempt: the caller falls back to a lower one. */
	if (order)
		gfp |= __GFP_NORETRY | __GFP_NOWARN;
	page = alloc_pages(gfp | __GFP_ZERO, order);
	if (!page)
		return 0;
	/* Each page is freed on its own (mshv_rs_free_pfn). */
	split_page(page, order);
	return page_to_pfn(page);
}

void mshv_rs_free_pfn(u64 pfn)
{
	__free_page(pfn_to_page(pfn));
}

/* ---- scheduling --------------------------------------------------------- */

void mshv_rs_cond_resched(void)
{
	cond_resched();
}

void *mshv_rs_pfn_to_virt(u64 pfn)
{
	return page_address(pfn_to_page(pfn));
}
