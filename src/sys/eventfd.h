/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/eventfd.c, the C side of src/sys/eventfd.rs: eventfd
 * contexts and the irqfd-style waiter hooked on their wait queue.
 */
#ifndef MSHV_RS_SYS_EVENTFD_H
#define MSHV_RS_SYS_EVENTFD_H

#include <linux/types.h>

/* ---- eventfd ------------------------------------------------------------- */

struct eventfd_ctx;
struct mshv_rs_irqfd;

/*
 * eventfd_ctx_fdget(@fd): a counted reference to the eventfd context of fd
 * @fd, or ERR_PTR(-EBADF) (not an open fd) or ERR_PTR(-EINVAL) (not an
 * eventfd). Release with mshv_rs_eventfd_put().
 */
struct eventfd_ctx *mshv_rs_eventfd_get(int fd);
void mshv_rs_eventfd_put(struct eventfd_ctx *ctx);
/* eventfd_signal(): adds 1 to the counter and wakes waiters. Any context. */
void mshv_rs_eventfd_signal(struct eventfd_ctx *ctx);

/*
 * Hooks a waiter on the wait queue of @ctx, the eventfd context of fd @fd
 * (through vfs_poll; -EBADF if @fd no longer refers to @ctx), KVM/mshv irqfd
 * style. Every time the
 * eventfd is signalled, the wakeup callback (atomic context, wait-queue lock
 * held) consumes the counter and queues a work item on the system workqueue;
 * the work item calls @fire_fn(@owner) in
 * process context, once per batch of signals. If the eventfd is already
 * readable when the hook is installed, the work item is queued at once.
 * On EPOLLHUP (the eventfd file released) the wakeup unhooks from the wait
 * queue and queues a second work item that calls @hup_fn(@owner) once,
 * in process context; the callback may
 * destroy the hook (it is then not waited for).
 * Returns the hook, or ERR_PTR(-EBADF) or ERR_PTR(-ENOMEM). @ctx and @owner must stay
 * valid until mshv_rs_irqfd_destroy() returns.
 */
struct mshv_rs_irqfd *mshv_rs_irqfd_create(int fd, struct eventfd_ctx *ctx,
					   void *owner,
					   void (*fire_fn)(void *owner),
					   void (*hup_fn)(void *owner));
/*
 * Unhooks from the wait queue, waits for queued or running work items
 * (cancel_work_sync; not for the hup item when called from it) and frees.
 * After it returns neither callback is running or will be called for @w.
 * May sleep; the caller must not hold a lock that either callback takes.
 */
void mshv_rs_irqfd_destroy(struct mshv_rs_irqfd *w);

#endif /* MSHV_RS_SYS_EVENTFD_H */
