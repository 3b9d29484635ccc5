// SPDX-License-Identifier: GPL-2.0
/*
 * Test-only side channel of the simulator: debugfs mshv_rs/sim/pfnmap,
 * created only with backend=sim (src/debugfs.rs).
 *
 * Its mmap (MAP_SHARED only) maps the first pages of MSHV_RS_PFNMAP_PAGES
 * module-owned pages with remap_pfn_range(), one page at a time, whatever
 * the mmap offset: the VMA is VM_IO | VM_PFNMAP and its vm_pgoff is the
 * offset the test chose, not a pfn. That is the shape of vfio-pci's BAR
 * mappings in 7.3 (vm_pgoff = index << 28 | offset), which is what the
 * driver must not read pfns from. A mapping of more pages is refused.
 * Reading the file gives the pages' pfns (pagemap shows none for a
 * VM_PFNMAP mapping), so tests can check the SLAT maps exactly those.
 *
 * The pages are freed when the file is removed, which happens only at
 * module unload; a mapping holds the file, and the file the module.
 */

#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/uaccess.h>

#include "testdev.h"

static struct page *mshv_rs_pfnmap_pages[MSHV_RS_PFNMAP_PAGES];
static struct dentry *mshv_rs_pfnmap_file;

static int mshv_rs_pfnmap_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long i, n = vma_pages(vma);
	int ret;

	if (!(vma->vm_flags & VM_SHARED) || n > MSHV_RS_PFNMAP_PAGES)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		ret = remap_pfn_range(vma, vma->vm_start + i * PAGE_SIZE,
				      page_to_pfn(mshv_rs_pfnmap_pages[i]),
				      PAGE_SIZE, vma->vm_page_prot);
		if (ret)
			return ret;
	}
	return 0;
}

/* Reading gives the pages' pfns, one hex number a line, in mapping order. */
static ssize_t mshv_rs_pfnmap_read(struct file *file, char __user *ubuf,
				   size_t count, loff_t *ppos)
{
	char buf[MSHV_RS_PFNMAP_PAGES * 20];
	int i, len = 0;

	for (i = 0; i < MSHV_RS_PFNMAP_PAGES; i++)
		len += scnprintf(buf + len, sizeof(buf) - len, "%#lx\n",
				 page_to_pfn(mshv_rs_pfnmap_pages[i]));
	return simple_read_from_buffer(ubuf, count, ppos, buf, len);
}

static const struct file_operations mshv_rs_pfnmap_fops = {
	.owner = THIS_MODULE,
	.read = mshv_rs_pfnmap_read,
	.mmap = mshv_rs_pfnmap_mmap,
	.llseek = noop_llseek,
};

static void mshv_rs_pfnmap_free_pages(void)
{
	int i;

	for (i = 0; i < MSHV_RS_PFNMAP_PAGES; i++) {
		if (mshv_rs_pfnmap_pages[i])
			__free_page(mshv_rs_pfnmap_pages[i]);
		mshv_rs_pfnmap_pages[i] = NULL;
	}
}

int mshv_rs_test_pfnmap_create(void)
{
	struct dentry *root, *sim;
	int i, ret = 0;

	for (i = 0; i < MSHV_RS_PFNMAP_PAGES; i++) {
		mshv_rs_pfnmap_pages[i] = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!mshv_rs_pfnmap_pages[i]) {
			mshv_rs_pfnmap_free_pages();
			return -ENOMEM;
		}
	}
	root = debugfs_lookup("mshv_rs", NULL);
	sim = root ? debugfs_lookup("sim", root) : NULL;
	if (!sim) {
		ret = -ENOENT;
	} else {
		mshv_rs_pfnmap_file = debugfs_create_file_unsafe("pfnmap", 0600,
					sim, NULL, &mshv_rs_pfnmap_fops);
		if (IS_ERR(mshv_rs_pfnmap_file)) {
			ret = PTR_ERR(mshv_rs_pfnmap_file);
			mshv_rs_pfnmap_file = NULL;
		}
	}
	dput(sim);
	dput(root);
	if (ret)
		mshv_rs_pfnmap_free_pages();
	return ret;
}

void mshv_rs_test_pfnmap_destroy(void)
{
	/* Nothing maps the pages: a mapping would hold the module. */
	debugfs_remove(mshv_rs_pfnmap_file);
	mshv_rs_pfnmap_file = NULL;
	mshv_rs_pfnmap_free_pages();
}

/*
 * The emulator's scheduler model (backend=sim; src/sim/sched.rs). Rust
 * module parameters are integers only; the model is named.
 */
static char mshv_rs_sim_scheduler[8] = "root";
module_param_string(sim_scheduler, mshv_rs_sim_scheduler, sizeof(mshv_rs_sim_scheduler), 0444);
MODULE_PARM_DESC(sim_scheduler,
	"backend=sim: the emulated hypervisor's scheduler: root (a VP runs inside DISPATCH_VP on the caller's CPU) or core (a VP runs on a thread of its own; RUN_VP waits for an opaque intercept)");

const char *mshv_rs_sim_scheduler_param(void)
{
	return mshv_rs_sim_scheduler;
}
