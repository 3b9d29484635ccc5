/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/layout.c, the C side of src/sys/layout.rs: the
 * layout canaries.
 */
#ifndef MSHV_RS_SYS_LAYOUT_H
#define MSHV_RS_SYS_LAYOUT_H

#include <linux/types.h>

/* ---- layout canaries ------------------------------------------------------- */

/* sizeof / offsetof as C sees them, for the KUnit canaries. */
size_t mshv_rs_c_sizeof(int which);

#define MSHV_RS_SIZEOF_TASK_STRUCT	0
#define MSHV_RS_OFFSETOF_TASK_MM	1
#define MSHV_RS_SIZEOF_FILE		2
#define MSHV_RS_SIZEOF_MM_STRUCT	3
#define MSHV_RS_SIZEOF_VM_AREA		4
#define MSHV_RS_SIZEOF_MISCDEVICE	5
#define MSHV_RS_SIZEOF_FOPS		6
#define MSHV_RS_OFFSETOF_TASK_PID	7

#endif /* MSHV_RS_SYS_LAYOUT_H */
