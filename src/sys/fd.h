/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/fd.c, the C side of src/sys/fd.rs: anon-inode fds
 * for partitions and VPs, and the Rust entry points their file_operations
 * call back into.
 */
#ifndef MSHV_RS_SYS_FD_H
#define MSHV_RS_SYS_FD_H

#include <linux/types.h>

/* ---- anon-inode fds ---------------------------------------------------- */

enum mshv_rs_fd_kind {
	MSHV_RS_FD_PARTITION = 0,
	MSHV_RS_FD_VP = 1,
};

/*
 * Installs a new O_RDWR|O_CLOEXEC anon-inode fd of @kind whose private data is
 * @priv. Returns the fd, or a negative errno (then @priv is still the
 * caller's). On success, @priv is handed back exactly once through the Rust
 * callback mshv_rs_fd_release().
 */
int mshv_rs_fd_install(int kind, void *priv);

/* Implemented in Rust (src/fd_entry.rs, beside the crate root). */
long mshv_rs_fd_ioctl(int kind, void *priv, unsigned int cmd, unsigned long arg);
void mshv_rs_fd_release(int kind, void *priv);
/* Returns the pfn to map at page offset @pgoff of a VP fd, or 0 for none. */
u64 mshv_rs_vp_mmap_pfn(void *priv, unsigned long pgoff);

#endif /* MSHV_RS_SYS_FD_H */
