/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/lock.c, the C side of src/sys/lock.rs: killable
 * mutexes with one lockdep class per user.
 */
#ifndef MSHV_RS_SYS_LOCK_H
#define MSHV_RS_SYS_LOCK_H

#include <linux/types.h>

/* ---- killable mutexes ----------------------------------------------------- */

enum mshv_rs_mutex_class {
	MSHV_RS_MUTEX_PARTITION = 0,
	MSHV_RS_MUTEX_VP = 1,
	MSHV_RS_MUTEX_CLASSES,
};

struct mutex;
/* A new (kmalloc'd, GFP_KERNEL_ACCOUNT) mutex of lockdep class @class, or NULL. */
struct mutex *mshv_rs_mutex_new(int class);
/* Destroys and frees a mutex from mshv_rs_mutex_new(); it must be unlocked. */
void mshv_rs_mutex_free(struct mutex *m);
/* mutex_lock_killable(): 0, or -EINTR on a fatal signal. */
int mshv_rs_mutex_lock_killable(struct mutex *m);
void mshv_rs_mutex_lock(struct mutex *m);
void mshv_rs_mutex_unlock(struct mutex *m);

#endif /* MSHV_RS_SYS_LOCK_H */
