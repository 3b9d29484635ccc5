/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/hyperv.c, the C side of src/sys/hyperv.rs: the real
 * side of the hypercall seam.
 */
#ifndef MSHV_RS_SYS_HYPERV_H
#define MSHV_RS_SYS_HYPERV_H

#include <linux/types.h>

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

#endif /* MSHV_RS_SYS_HYPERV_H */
