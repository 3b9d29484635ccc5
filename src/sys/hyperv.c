// SPDX-License-Identifier: GPL-2.0
/*
 * Hypercall glue for the real Hyper-V backend (src/hv/hyperv.rs). Built only
 * with CONFIG_HYPERV. The Rust side encodes the input; this copies it into
 * the per-CPU hypercall input page with interrupts off, issues the call and
 * copies the output back, the way every upstream wrapper does.
 */

#include <linux/irqflags.h>
#include <linux/string.h>
#include <asm/mshyperv.h>

#include "mshv_rs_helpers.h"

bool mshv_rs_hv_is_root(void)
{
	return hv_root_partition();
}

u64 mshv_rs_hv_hypercall(u64 control, const void *in, size_t in_len,
			 void *out, size_t out_len)
{
	unsigned long flags;
	void *input, *output;
	u64 status;

	if (in_len > HV_HYP_PAGE_SIZE || out_len > HV_HYP_PAGE_SIZE)
		return HV_STATUS_INVALID_PARAMETER;

	local_irq_save(flags);
	input = *this_cpu_ptr(hyperv_pcpu_input_arg);
	output = *this_cpu_ptr(hyperv_pcpu_output_arg);
	if (!input || (out_len && !output)) {
		local_irq_restore(flags);
		return U64_MAX;
	}
	memset(input, 0, HV_HYP_PAGE_SIZE);
	memcpy(input, in, in_len);
	status = hv_do_hypercall(control, input, out_len ? output : NULL);
	if (out_len)
		memcpy(out, output, out_len);
	local_irq_restore(flags);
	return status;
}
