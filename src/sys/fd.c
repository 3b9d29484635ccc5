// SPDX-License-Identifier: GPL-2.0
/*
 * Anon-inode fds of partitions and VPs (src/sys/fd.rs): the
 * file_operations trampolines into the Rust entry points (src/fd_entry.rs)
 * and the VP pages' fault handler. See fd.h for the contract of each
 * function. Everything here is glue: no policy, no state of its own.
 */

#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/module.h>

#include "fd.h"

/* ---- anon-inode fds ---------------------------------------------------- */

static long mshv_rs_partition_ioctl(struct file *file, unsigned int cmd,
				    unsigned long arg)
{
	return mshv_rs_fd_ioctl(MSHV_RS_FD_PARTITION, file->private_data, cmd, arg);
}

static int mshv_rs_partition_release(struct inode *inode, struct file *file)
{
	mshv_rs_fd_release(MSHV_RS_FD_PARTITION, file->private_data);
	return 0;
}

static long mshv_rs_vp_ioctl(struct file *file, unsigned int cmd,
			     unsigned long arg)
{
	return mshv_rs_fd_ioctl(MSHV_RS_FD_VP, file->private_data, cmd, arg);
}

static int mshv_rs_vp_release(struct inode *inode, struct file *file)
{
	mshv_rs_fd_release(MSHV_RS_FD_VP, file->private_data);
	return 0;
}

/*
 * The VP pages (register page, intercept message page) belong to the VP,
 * which lives at least as long as the file the VMA holds a reference to.
 * Like upstream, the page is chosen by the VMA's offset (one page per VMA).
 */
static vm_fault_t mshv_rs_vp_fault(struct vm_fault *vmf)
{
	u64 pfn = mshv_rs_vp_mmap_pfn(vmf->vma->vm_file->private_data,
				      vmf->vma->vm_pgoff);
	struct page *page;

	if (!pfn)
		return VM_FAULT_SIGBUS;
	page = pfn_to_page(pfn);
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct mshv_rs_vp_vm_ops = {
	.fault = mshv_rs_vp_fault,
};

static int mshv_rs_vp_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (vma->vm_end - vma->vm_start != PAGE_SIZE)
		return -EINVAL;
	if (!mshv_rs_vp_mmap_pfn(file->private_data, vma->vm_pgoff))
		return vma->vm_pgoff <= 2 ? -ENODEV : -EINVAL;
	vm_flags_set(vma, VM_DONTCOPY | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &mshv_rs_vp_vm_ops;
	return 0;
}

static const struct file_operations mshv_rs_fops[] = {
	[MSHV_RS_FD_PARTITION] = {
		.owner = THIS_MODULE,
		.unlocked_ioctl = mshv_rs_partition_ioctl,
		.release = mshv_rs_partition_release,
		.llseek = noop_llseek,
	},
	[MSHV_RS_FD_VP] = {
		.owner = THIS_MODULE,
		.unlocked_ioctl = mshv_rs_vp_ioctl,
		.release = mshv_rs_vp_release,
		.mmap = mshv_rs_vp_mmap,
		.llseek = noop_llseek,
	},
};

static const char *const mshv_rs_fd_names[] = {
	[MSHV_RS_FD_PARTITION] = "mshv_partition",
	[MSHV_RS_FD_VP] = "mshv_vp",
};

int mshv_rs_fd_install(int kind, void *priv)
{
	struct file *file;
	int fd;

	if (kind < 0 || kind >= ARRAY_SIZE(mshv_rs_fops))
		return -EINVAL;
	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0)
		return fd;
	file = anon_inode_getfile(mshv_rs_fd_names[kind], &mshv_rs_fops[kind],
				  priv, O_RDWR);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		return PTR_ERR(file);
	}
	fd_install(fd, file);
	return fd;
}
