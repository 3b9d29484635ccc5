/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/trace.c, the C side of src/sys/trace.rs: one plain
 * function per trace event of include/mshv_rs_trace.h.
 */
#ifndef MSHV_RS_SYS_TRACE_H
#define MSHV_RS_SYS_TRACE_H

#include <linux/types.h>

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

#endif /* MSHV_RS_SYS_TRACE_H */
