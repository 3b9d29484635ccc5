// SPDX-License-Identifier: GPL-2.0
/*
 * Defines the trace events of include/mshv_rs_trace.h and gives Rust one
 * plain function per event. Each wrapper costs a call and the tracepoint's
 * static-key test when the event is off; every call site is on a path that
 * already makes a hypercall or walks page tables.
 */
#define CREATE_TRACE_POINTS
#include "mshv_rs_trace.h"
#include "trace.h"

void mshv_rs_trace_gpa_intercept(u64 partition_id, u32 vp_index, u64 gfn,
				 u8 access_type, bool handled)
{
	trace_mshv_handle_gpa_intercept(partition_id, vp_index, gfn, access_type, handled);
}

void mshv_rs_trace_map_user_memory(u64 partition_id, u64 start_uaddr, u64 start_gfn,
				   u64 nr_pages, u32 map_flags, long ret)
{
	trace_mshv_map_user_memory(partition_id, start_uaddr, start_gfn, nr_pages,
				   map_flags, ret);
}

void mshv_rs_trace_map_gpa(u64 partition_id, u64 gfn, u32 reps, bool large,
			   bool writable, int ret)
{
	trace_mshv_rs_map_gpa(partition_id, gfn, reps, large, writable, ret);
}

void mshv_rs_trace_invalidate(u64 partition_id, u64 gfn, u64 pages, bool blockable)
{
	trace_mshv_rs_invalidate(partition_id, gfn, pages, blockable);
}

void mshv_rs_trace_hvcall_failure(u16 code, u64 partition_id, u64 gfn, u16 status)
{
	trace_mshv_rs_hvcall_failure(code, partition_id, gfn, status);
}
