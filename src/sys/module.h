/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/module.c: the module-level glue of the crate root
 * (src/mshv_rs.rs) and src/sys/mod.rs.
 */
#ifndef MSHV_RS_SYS_MODULE_H
#define MSHV_RS_SYS_MODULE_H

#include <linux/types.h>

/* ---- module parameter ------------------------------------------------------ */

/* The backend= module parameter as written by the user. */
const char *mshv_rs_backend_param(void);

/*
 * Whether the C driver mshv_root is present (loaded or built in): it then owns
 * the misc device "mshv". A module still loading or already unloading counts
 * as absent. Does not sleep (an RCU symbol lookup).
 */
bool mshv_rs_c_mshv_root_present(void);

#endif /* MSHV_RS_SYS_MODULE_H */
