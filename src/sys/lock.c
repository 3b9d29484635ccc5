// SPDX-License-Identifier: GPL-2.0
/*
 * Killable mutexes (src/sys/lock.rs), one lockdep class per user. See
 * lock.h for the contract of each function. Everything here is glue: no
 * policy, no state of its own.
 */

#include <linux/lockdep.h>
#include <linux/mutex.h>
#include <linux/slab.h>

#include "lock.h"

/* ---- killable mutexes ----------------------------------------------------- */

struct mutex *mshv_rs_mutex_new(int class)
{
	/* One lockdep class per user (see enum mshv_rs_mutex_class). */
	static struct lock_class_key keys[MSHV_RS_MUTEX_CLASSES];
	static const char *const names[MSHV_RS_MUTEX_CLASSES] = {
		[MSHV_RS_MUTEX_PARTITION] = "mshv_rs_partition",
		[MSHV_RS_MUTEX_VP] = "mshv_rs_vp",
	};
	struct mutex *m;

	if (class < 0 || class >= MSHV_RS_MUTEX_CLASSES)
		return NULL;
	m = kmalloc(sizeof(*m), GFP_KERNEL_ACCOUNT);
	if (m)
		__mutex_init(m, names[class], &keys[class]);
	return m;
}

void mshv_rs_mutex_free(struct mutex *m)
{
	mutex_destroy(m);
	kfree(m);
}

int mshv_rs_mutex_lock_killable(struct mutex *m)
{
	return mutex_lock_killable(m);
}

void mshv_rs_mutex_lock(struct mutex *m)
{
	mutex_lock(m);
}

void mshv_rs_mutex_unlock(struct mutex *m)
{
	mutex_unlock(m);
}
