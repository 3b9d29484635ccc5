// SPDX-License-Identifier: GPL-2.0
/*
 * CPU-level helpers (src/sys/cpu.rs): CPU-hotplug states, preemption,
 * RCU, memremap of hypervisor pages, and the irq_work that stands in for
 * the SynIC interrupt under the emulator. Nothing here names a driver type.
 */

#include <linux/cpuhotplug.h>
#include <linux/hardirq.h>
#include <linux/io.h>
#include <linux/irq_work.h>
#include <linux/percpu.h>
#include <linux/preempt.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <linux/workqueue.h>

#include "cpu.h"

int mshv_rs_cpuhp_setup(const char *name, int (*online)(unsigned int cpu),
			int (*offline)(unsigned int cpu))
{
	return cpuhp_setup_state(CPUHP_AP_ONLINE_DYN, name, online, offline);
}

void mshv_rs_cpuhp_remove(int state)
{
	cpuhp_remove_state(state);
}

void mshv_rs_preempt_disable(void)
{
	preempt_disable();
}

void mshv_rs_preempt_enable(void)
{
	preempt_enable();
}

bool mshv_rs_dispatch_context_ok(void)
{
	return !preemptible() && !irqs_disabled() && !in_interrupt();
}

bool mshv_rs_need_resched(void)
{
	return need_resched();
}

unsigned int mshv_rs_smp_processor_id(void)
{
	return raw_smp_processor_id();
}

bool mshv_rs_cpu_online(unsigned int cpu)
{
	return cpu < nr_cpu_ids && cpu_online(cpu);
}

void mshv_rs_synchronize_rcu(void)
{
	synchronize_rcu();
}

void *mshv_rs_memremap_pfn(u64 pfn)
{
	return memremap(pfn << PAGE_SHIFT, PAGE_SIZE, MEMREMAP_WB);
}

void mshv_rs_memunmap(void *addr)
{
	memunmap(addr);
}

/*
 * The emulator's SynIC interrupt. irq_work_queue_on() is not exported, so a
 * remote CPU gets an IPI (smp_call_function_single_async) whose callback
 * queues that CPU's irq_work; the local CPU queues its own. Either way the
 * handler runs from the irq_work interrupt, in hard-IRQ context, on the
 * target CPU. A raise while one is in flight is coalesced: the handler
 * takes one message per interrupt and EOM raises again for the next.
 */
static void (*mshv_rs_ipi_handler)(void);
static DEFINE_PER_CPU(struct irq_work, mshv_rs_ipi_work);
static DEFINE_PER_CPU(call_single_data_t, mshv_rs_ipi_csd);

static void mshv_rs_ipi_fn(struct irq_work *work)
{
	void (*handler)(void) = READ_ONCE(mshv_rs_ipi_handler);

	if (handler)
		handler();
}

static void mshv_rs_ipi_remote(void *info)
{
	irq_work_queue(this_cpu_ptr(&mshv_rs_ipi_work));
}

static void mshv_rs_ipi_noop(void *info)
{
}

int mshv_rs_ipi_init(void)
{
	int cpu;

	/* IRQ_WORK_HARD_IRQ: the callback runs in hard-IRQ context on RT too. */
	for_each_possible_cpu(cpu) {
		per_cpu(mshv_rs_ipi_work, cpu) =
			IRQ_WORK_INIT_HARD(mshv_rs_ipi_fn);
		INIT_CSD(per_cpu_ptr(&mshv_rs_ipi_csd, cpu),
			 mshv_rs_ipi_remote, NULL);
	}
	return 0;
}

void mshv_rs_ipi_exit(void)
{
	int cpu;

	WRITE_ONCE(mshv_rs_ipi_handler, NULL);
	/*
	 * A synchronous call queued behind an asynchronous one on the same CPU
	 * completes after it: once these return, no csd of ours is queued.
	 */
	for_each_online_cpu(cpu)
		smp_call_function_single(cpu, mshv_rs_ipi_noop, NULL, 1);
	for_each_possible_cpu(cpu)
		irq_work_sync(&per_cpu(mshv_rs_ipi_work, cpu));
}

void mshv_rs_ipi_set_handler(void (*handler)(void))
{
	WRITE_ONCE(mshv_rs_ipi_handler, handler);
}

void mshv_rs_ipi_raise(unsigned int cpu)
{
	int me;

	if (cpu >= nr_cpu_ids || !cpu_online(cpu))
		return;
	me = get_cpu();
	if (cpu == me)
		irq_work_queue(this_cpu_ptr(&mshv_rs_ipi_work));
	else
		/* -EBUSY: a raise is already in flight to that CPU. */
		smp_call_function_single_async(cpu,
					       per_cpu_ptr(&mshv_rs_ipi_csd, cpu));
	put_cpu();
}

/*
 * Deferred per-CPU work for an interrupt handler that must not take
 * spinlock_t in hard-IRQ context: mshv_rs_soft_raise() queues this CPU's
 * irq_work without IRQ_WORK_HARD_IRQ, whose callback runs the handler set
 * by mshv_rs_soft_init() on the same CPU, in a context where spinlock_t is
 * allowed (hard IRQ marked as such on !RT, the irq_work thread on RT).
 */
static void (*mshv_rs_soft_handler)(void);
static DEFINE_PER_CPU(struct irq_work, mshv_rs_soft_work);

static void mshv_rs_soft_fn(struct irq_work *work)
{
	void (*handler)(void) = READ_ONCE(mshv_rs_soft_handler);

	if (handler)
		handler();
}

void mshv_rs_soft_init(void (*handler)(void))
{
	int cpu;

	for_each_possible_cpu(cpu)
		per_cpu(mshv_rs_soft_work, cpu) = IRQ_WORK_INIT(mshv_rs_soft_fn);
	WRITE_ONCE(mshv_rs_soft_handler, handler);
}

void mshv_rs_soft_raise(void)
{
	irq_work_queue(this_cpu_ptr(&mshv_rs_soft_work));
}

void mshv_rs_soft_exit(void)
{
	int cpu;

	WRITE_ONCE(mshv_rs_soft_handler, NULL);
	for_each_possible_cpu(cpu)
		irq_work_sync(&per_cpu(mshv_rs_soft_work, cpu));
}

void mshv_rs_flush_work(void *work)
{
	flush_work(work);
}

struct workqueue_struct *mshv_rs_wq_alloc(const char *name)
{
	return alloc_workqueue("%s", WQ_UNBOUND, 0, name);
}

void mshv_rs_wq_destroy(struct workqueue_struct *wq)
{
	destroy_workqueue(wq);
}
