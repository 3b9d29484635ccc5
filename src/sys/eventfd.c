// SPDX-License-Identifier: GPL-2.0
/*
 * Eventfd contexts and irqfd-style waiters (src/sys/eventfd.rs). See
 * eventfd.h for the contract of each function. Everything here is glue:
 * no policy, no state of its own.
 */

#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "eventfd.h"

/* ---- eventfd ------------------------------------------------------------- */

struct eventfd_ctx *mshv_rs_eventfd_get(int fd)
{
	return eventfd_ctx_fdget(fd);
}

void mshv_rs_eventfd_put(struct eventfd_ctx *ctx)
{
	eventfd_ctx_put(ctx);
}

void mshv_rs_eventfd_signal(struct eventfd_ctx *ctx)
{
	eventfd_signal(ctx);
}

struct mshv_rs_irqfd {
	struct eventfd_ctx *ctx;
	void *owner;
	void (*fire_fn)(void *owner);
	void (*hup_fn)(void *owner);
	wait_queue_entry_t wait;
	poll_table pt;
	wait_queue_head_t *wqh;
	/* Calls @fire_fn after signals. */
	struct work_struct fire;
	/* Calls @hup_fn once the eventfd file is released. */
	struct work_struct hup;
};

static void mshv_rs_irqfd_work(struct work_struct *work)
{
	struct mshv_rs_irqfd *w = container_of(work, struct mshv_rs_irqfd, fire);

	w->fire_fn(w->owner);
}

static void mshv_rs_irqfd_hup_work(struct work_struct *work)
{
	struct mshv_rs_irqfd *w = container_of(work, struct mshv_rs_irqfd, hup);
	void (*hup_fn)(void *owner) = w->hup_fn;

	/* May free @w (mshv_rs_irqfd_destroy() from this work item): not used after. */
	hup_fn(w->owner);
}

static int mshv_rs_irqfd_wakeup(wait_queue_entry_t *wait, unsigned int mode,
				int sync, void *key)
{
	struct mshv_rs_irqfd *w = container_of(wait, struct mshv_rs_irqfd, wait);
	__poll_t flags = key_to_poll(key);
	u64 cnt;

	if (flags & EPOLLIN) {
		/* Called with the wait-queue lock held, as the helper wants. */
		eventfd_ctx_do_read(w->ctx, &cnt);
		queue_work(system_wq, &w->fire);
	}
	if (flags & EPOLLHUP) {
		/*
		 * The eventfd file is being released (KVM's irqfd_wakeup):
		 * unhook now, under the wait-queue lock (__wake_up_common
		 * allows the current entry to remove itself), so a signal
		 * through a context reference someone else still holds no
		 * longer fires, and let process context drop the irqfd.
		 */
		list_del_init(&w->wait.entry);
		queue_work(system_wq, &w->hup);
	}
	return 0;
}

static void mshv_rs_irqfd_queue(struct file *file, wait_queue_head_t *wqh,
				poll_table *pt)
{
	struct mshv_rs_irqfd *w = container_of(pt, struct mshv_rs_irqfd, pt);

	w->wqh = wqh;
	add_wait_queue(wqh, &w->wait);
}

struct mshv_rs_irqfd *mshv_rs_irqfd_create(int fd, struct eventfd_ctx *ctx,
					   void *owner,
					   void (*fire_fn)(void *owner),
					   void (*hup_fn)(void *owner))
{
	struct mshv_rs_irqfd *w;
	struct eventfd_ctx *again;
	__poll_t events;

	CLASS(fd, f)(fd);
	if (fd_empty(f))
		return ERR_PTR(-EBADF);
	/* The fd may have been closed and reused since @ctx was looked up. */
	again = eventfd_ctx_fileget(fd_file(f));
	if (IS_ERR(again))
		return ERR_CAST(again);
	eventfd_ctx_put(again);
	if (again != ctx)
		return ERR_PTR(-EBADF);
	w = kzalloc(sizeof(*w), GFP_KERNEL_ACCOUNT);
	if (!w)
		return ERR_PTR(-ENOMEM);
	w->ctx = ctx;
	w->owner = owner;
	w->fire_fn = fire_fn;
	w->hup_fn = hup_fn;
	INIT_WORK(&w->fire, mshv_rs_irqfd_work);
	INIT_WORK(&w->hup, mshv_rs_irqfd_hup_work);
	init_waitqueue_func_entry(&w->wait, mshv_rs_irqfd_wakeup);
	init_poll_funcptr(&w->pt, mshv_rs_irqfd_queue);
	/* Hooks the wait queue through eventfd's poll; fires a signal that came first. */
	events = vfs_poll(fd_file(f), &w->pt);
	if (events & EPOLLIN)
		queue_work(system_wq, &w->fire);
	return w;
}

void mshv_rs_irqfd_destroy(struct mshv_rs_irqfd *w)
{
	u64 cnt;

	/* A no-op removal if EPOLLHUP already unhooked it (list_del_init). */
	eventfd_ctx_remove_wait_queue(w->ctx, &w->wait, &cnt);
	cancel_work_sync(&w->fire);
	/*
	 * Called from the hup work item itself, that item is running, not
	 * pending, and may free its own work_struct (the workqueue allows
	 * it); called from anywhere else, wait for it: it uses the owner.
	 */
	if (current_work() != &w->hup)
		cancel_work_sync(&w->hup);
	kfree(w);
}
