// SPDX-License-Identifier: GPL-2.0
/*
 * The real side of the hypercall seam (src/tlfs/seam.rs, src/sys/hyperv.rs):
 * hypercalls through the per-CPU hypercall pages, the synthetic MSRs, the
 * SynIC interrupt hook and what the driver reads about the hypervisor. Built
 * only with CONFIG_HYPERV.
 */

#include <linux/crash_dump.h>
#include <linux/hyperv.h>
#include <linux/irqflags.h>
#include <linux/percpu.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <asm/mshyperv.h>

#include "hyperv.h"

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

/*
 * HVCALL_DISPATCH_VP runs guest code for a time slice: interrupts must stay
 * enabled, so it has per-CPU pages of its own (upstream's
 * root_scheduler_input/output), used with preemption disabled.
 */
static void * __percpu *mshv_rs_dispatch_pages;

int mshv_rs_hv_dispatch_init(void)
{
	int cpu;

	mshv_rs_dispatch_pages = alloc_percpu(void *);
	if (!mshv_rs_dispatch_pages)
		return -ENOMEM;
	for_each_possible_cpu(cpu) {
		void *p = (void *)__get_free_pages(GFP_KERNEL | __GFP_ZERO, 1);

		if (!p) {
			mshv_rs_hv_dispatch_exit();
			return -ENOMEM;
		}
		*per_cpu_ptr(mshv_rs_dispatch_pages, cpu) = p;
	}
	return 0;
}

void mshv_rs_hv_dispatch_exit(void)
{
	int cpu;

	if (!mshv_rs_dispatch_pages)
		return;
	for_each_possible_cpu(cpu)
		free_pages((unsigned long)*per_cpu_ptr(mshv_rs_dispatch_pages, cpu), 1);
	free_percpu(mshv_rs_dispatch_pages);
	mshv_rs_dispatch_pages = NULL;
}

u64 mshv_rs_hv_dispatch(u64 control, const void *in, size_t in_len,
			void *out, size_t out_len)
{
	void *input, *output;
	u64 status;

	if (in_len > HV_HYP_PAGE_SIZE || out_len > HV_HYP_PAGE_SIZE ||
	    !mshv_rs_dispatch_pages)
		return HV_STATUS_INVALID_PARAMETER;
	if (WARN_ON_ONCE(preemptible() || irqs_disabled()))
		return HV_STATUS_INVALID_PARAMETER;
	input = *this_cpu_ptr(mshv_rs_dispatch_pages);
	output = input + HV_HYP_PAGE_SIZE;
	memset(input, 0, HV_HYP_PAGE_SIZE);
	memcpy(input, in, in_len);
	status = hv_do_hypercall(control, input, output);
	memcpy(out, output, out_len);
	return status;
}

u64 mshv_rs_hv_fast8(u16 code, u64 input)
{
	return hv_do_fast_hypercall8(code, input);
}

u64 mshv_rs_hv_read_msr(u32 msr)
{
	return hv_get_non_nested_msr(msr);
}

void mshv_rs_hv_write_msr(u32 msr, u64 value)
{
	hv_set_non_nested_msr(msr, value);
}

void mshv_rs_hv_set_handler(void (*handler)(void))
{
	hv_setup_mshv_handler(handler);
}

void mshv_rs_hv_identity(struct mshv_rs_hv_identity *id)
{
	union hv_hypervisor_version_info info = {};

	id->partition_id = hv_current_partition_id;
	id->root = hv_root_partition();
	id->kdump = is_kdump_kernel();
#if IS_ENABLED(CONFIG_HYPERV_VMBUS)
	id->vmbus = hv_vmbus_exists();
#else
	id->vmbus = false;
#endif
	id->build = hv_get_hypervisor_version(&info) ? 0 : info.build_number;
	id->vector = HYPERVISOR_CALLBACK_VECTOR;
	id->auto_eoi = hv_recommend_using_aeoi();
}
