/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/cpu.c, the C side of src/sys/cpu.rs: CPU hotplug,
 * preemption, RCU, remapping, the emulator's irq_work and workqueues.
 */
#ifndef MSHV_RS_SYS_CPU_H
#define MSHV_RS_SYS_CPU_H

#include <linux/types.h>

struct workqueue_struct;

/* ---- CPUs, preemption, RCU, remapping (src/sys/cpu.c) ------------------- */

/*
 * Registers @online and @offline as a dynamic CPU-hotplug state named @name;
 * @online runs now on every online CPU, on that CPU. Returns the state
 * (> 0) or a negative errno. mshv_rs_cpuhp_remove() runs @offline on every
 * online CPU and removes the state.
 */
int mshv_rs_cpuhp_setup(const char *name, int (*online)(unsigned int cpu),
			int (*offline)(unsigned int cpu));
void mshv_rs_cpuhp_remove(int state);
void mshv_rs_preempt_disable(void);
void mshv_rs_preempt_enable(void);
/* Preemption disabled and interrupts enabled: what DISPATCH_VP needs. */
bool mshv_rs_dispatch_context_ok(void);
bool mshv_rs_need_resched(void);
unsigned int mshv_rs_smp_processor_id(void);
bool mshv_rs_cpu_online(unsigned int cpu);
void mshv_rs_synchronize_rcu(void);
/* memremap() of one hypervisor page by pfn, write-back; NULL on failure. */
void *mshv_rs_memremap_pfn(u64 pfn);
void mshv_rs_memunmap(void *addr);

/*
 * The emulator's SynIC interrupt: mshv_rs_ipi_raise() queues an irq_work on
 * @cpu whose callback calls the handler set with mshv_rs_ipi_set_handler(),
 * in hard-IRQ context on @cpu. mshv_rs_ipi_sync() waits until no callback
 * runs any more (after the handler was set to NULL).
 */
int mshv_rs_ipi_init(void);
void mshv_rs_ipi_exit(void);
void mshv_rs_ipi_set_handler(void (*handler)(void));
void mshv_rs_ipi_raise(unsigned int cpu);
/*
 * Per-CPU deferred work (irq_work without IRQ_WORK_HARD_IRQ) running
 * @handler on the CPU that raised it; exit clears it and waits for running
 * callbacks.
 */
void mshv_rs_soft_init(void (*handler)(void));
void mshv_rs_soft_raise(void);
void mshv_rs_soft_exit(void);
/* flush_work(): waits until @work is idle. */
void mshv_rs_flush_work(void *work);
/* An unbound workqueue of the module's own; destroying it drains it. */
struct workqueue_struct *mshv_rs_wq_alloc(const char *name);
void mshv_rs_wq_destroy(struct workqueue_struct *wq);

#endif /* MSHV_RS_SYS_CPU_H */
