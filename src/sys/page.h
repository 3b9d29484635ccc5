/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/page.c, the C side of src/sys/page.rs: host pages by
 * pfn (allocation, copies, the direct map) and the current task's signals
 * and rescheduling.
 */
#ifndef MSHV_RS_SYS_PAGE_H
#define MSHV_RS_SYS_PAGE_H

#include <linux/types.h>

/* ---- current task -------------------------------------------------------- */

/* True if the current task has a fatal signal pending. */
bool mshv_rs_fatal_signal_pending(void);

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

/* ---- scheduling and the direct map ------------------------------------ */

void mshv_rs_cond_resched(void);
/* Direct-map address of a lowmem page (x86_64: every page). */
void *mshv_rs_pfn_to_virt(u64 pfn);

#endif /* MSHV_RS_SYS_PAGE_H */
