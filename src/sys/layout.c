// SPDX-License-Identifier: GPL-2.0
/*
 * Layout canaries (src/sys/layout.rs): the sizes and offsets of the kernel
 * structs the kernel crate reads, as C sees them. See layout.h.
 */

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm_types.h>
#include <linux/sched.h>

#include "layout.h"

/* ---- layout canaries ------------------------------------------------------- */

size_t mshv_rs_c_sizeof(int which)
{
	switch (which) {
	case MSHV_RS_SIZEOF_TASK_STRUCT:
		return sizeof(struct task_struct);
	case MSHV_RS_OFFSETOF_TASK_MM:
		return offsetof(struct task_struct, mm);
	case MSHV_RS_SIZEOF_FILE:
		return sizeof(struct file);
	case MSHV_RS_SIZEOF_MM_STRUCT:
		return sizeof(struct mm_struct);
	case MSHV_RS_SIZEOF_VM_AREA:
		return sizeof(struct vm_area_struct);
	case MSHV_RS_SIZEOF_MISCDEVICE:
		return sizeof(struct miscdevice);
	case MSHV_RS_SIZEOF_FOPS:
		return sizeof(struct file_operations);
	case MSHV_RS_OFFSETOF_TASK_PID:
		return offsetof(struct task_struct, pid);
	default:
		return 0;
	}
}
