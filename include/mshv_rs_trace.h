/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Trace events of mshv_rs, in the tracefs system "mshv_rs". Where upstream's
 * mshv_root has an event for the same thing (drivers/hv/mshv_trace.h), the
 * event has its name, arguments and output format, so a script written for
 * one reads the other after changing the system name. The others are this
 * driver's own: the map and invalidate sides of movable memory, and failed
 * map/unmap hypercalls.
 *
 * Rust calls these through the mshv_rs_trace_* wrappers in src/sys/trace.c
 * (the kernel crate's declare_trace! only reaches tracepoints that are in the
 * kernel's own bindings).
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM mshv_rs

#if !defined(MSHV_RS_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define MSHV_RS_TRACE_H

#include <linux/tracepoint.h>

/* As upstream: a GPA intercept and whether the driver resolved it itself. */
TRACE_EVENT(mshv_handle_gpa_intercept,
	TP_PROTO(u64 partition_id, u32 vp_index, u64 gfn, u8 access_type, bool handled),
	TP_ARGS(partition_id, vp_index, gfn, access_type, handled),
	TP_STRUCT__entry(
		__field(u64, partition_id)
		__field(u32, vp_index)
		__field(u64, gfn)
		__field(u8, access_type)
		__field(bool, handled)
	),
	TP_fast_assign(
		__entry->partition_id = partition_id;
		__entry->vp_index = vp_index;
		__entry->gfn = gfn;
		/* Hyper-V's intercept access types: 0 read, 1 write, 2 execute. */
		__entry->access_type = access_type == 0 ? 'R' :
				       access_type == 1 ? 'W' :
				       access_type == 2 ? 'X' : '?';
		__entry->handled = handled;
	),
	TP_printk("partition_id=%llu vp_index=%u gfn=0x%llx access_type=%c handled=%d",
		  __entry->partition_id, __entry->vp_index, __entry->gfn,
		  __entry->access_type, __entry->handled)
);

/* As upstream: MSHV_SET_GUEST_MEMORY creating a region. */
TRACE_EVENT(mshv_map_user_memory,
	TP_PROTO(u64 partition_id, u64 start_uaddr, u64 start_gfn, u64 nr_pages,
		 u32 map_flags, long ret),
	TP_ARGS(partition_id, start_uaddr, start_gfn, nr_pages, map_flags, ret),
	TP_STRUCT__entry(
		__field(u64, partition_id)
		__field(u64, start_uaddr)
		__field(u64, start_gfn)
		__field(u64, nr_pages)
		__field(u32, map_flags)
		__field(long, ret)
	),
	TP_fast_assign(
		__entry->partition_id = partition_id;
		__entry->start_uaddr = start_uaddr;
		__entry->start_gfn = start_gfn;
		__entry->nr_pages = nr_pages;
		__entry->map_flags = map_flags;
		__entry->ret = ret;
	),
	TP_printk("partition_id=%llu start_uaddr=%#llx start_gfn=%#llx nr_pages=%llu map_flags=%#x ret=%ld",
		  __entry->partition_id, __entry->start_uaddr, __entry->start_gfn,
		  __entry->nr_pages, __entry->map_flags, __entry->ret)
);

/*
 * One run of a movable region's fault window mapped (or not) into the SLAT:
 * @reps entries from @gfn, 2 MiB each if @large.
 */
TRACE_EVENT(mshv_rs_map_gpa,
	TP_PROTO(u64 partition_id, u64 gfn, u32 reps, bool large, bool writable, int ret),
	TP_ARGS(partition_id, gfn, reps, large, writable, ret),
	TP_STRUCT__entry(
		__field(u64, partition_id)
		__field(u64, gfn)
		__field(u32, reps)
		__field(bool, large)
		__field(bool, writable)
		__field(int, ret)
	),
	TP_fast_assign(
		__entry->partition_id = partition_id;
		__entry->gfn = gfn;
		__entry->reps = reps;
		__entry->large = large;
		__entry->writable = writable;
		__entry->ret = ret;
	),
	TP_printk("partition_id=%llu gfn=0x%llx reps=%u large=%d writable=%d ret=%d",
		  __entry->partition_id, __entry->gfn, __entry->reps,
		  __entry->large, __entry->writable, __entry->ret)
);

/*
 * An mmu notifier invalidation that hit a movable region: @pages guest pages
 * from @gfn are remapped NO_ACCESS.
 */
TRACE_EVENT(mshv_rs_invalidate,
	TP_PROTO(u64 partition_id, u64 gfn, u64 pages, bool blockable),
	TP_ARGS(partition_id, gfn, pages, blockable),
	TP_STRUCT__entry(
		__field(u64, partition_id)
		__field(u64, gfn)
		__field(u64, pages)
		__field(bool, blockable)
	),
	TP_fast_assign(
		__entry->partition_id = partition_id;
		__entry->gfn = gfn;
		__entry->pages = pages;
		__entry->blockable = blockable;
	),
	TP_printk("partition_id=%llu gfn=0x%llx pages=%llu blockable=%d",
		  __entry->partition_id, __entry->gfn, __entry->pages,
		  __entry->blockable)
);

/* A map or unmap hypercall that failed with Hyper-V status @status. */
TRACE_EVENT(mshv_rs_hvcall_failure,
	TP_PROTO(u16 code, u64 partition_id, u64 gfn, u16 status),
	TP_ARGS(code, partition_id, gfn, status),
	TP_STRUCT__entry(
		__field(u16, code)
		__field(u64, partition_id)
		__field(u64, gfn)
		__field(u16, status)
	),
	TP_fast_assign(
		__entry->code = code;
		__entry->partition_id = partition_id;
		__entry->gfn = gfn;
		__entry->status = status;
	),
	TP_printk("code=%#x partition_id=%llu gfn=0x%llx status=%#x",
		  __entry->code, __entry->partition_id, __entry->gfn,
		  __entry->status)
);

#endif /* MSHV_RS_TRACE_H */

/* Outside the guard: define_trace.h reads this header again. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE mshv_rs_trace
#include <trace/define_trace.h>
