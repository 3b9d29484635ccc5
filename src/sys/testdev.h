/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Contract of src/sys/testdev.c, the C side of src/sys/testdev.rs: the
 * test-only side channel of backend=sim.
 */
#ifndef MSHV_RS_SYS_TESTDEV_H
#define MSHV_RS_SYS_TESTDEV_H

#include <linux/types.h>

/* ---- test-only side channel (src/sys/testdev.c; backend=sim) ---------- */

/* Pages behind debugfs mshv_rs/sim/pfnmap (see testdev.c). */
#define MSHV_RS_PFNMAP_PAGES	16
/* Allocates the pages and creates mshv_rs/sim/pfnmap (the directory must exist). */
int mshv_rs_test_pfnmap_create(void);
/* Removes the file and frees the pages; only at module unload. */
void mshv_rs_test_pfnmap_destroy(void);
/* The sim_scheduler= parameter (emulator builds; testdev.c). */
const char *mshv_rs_sim_scheduler_param(void);

#endif /* MSHV_RS_SYS_TESTDEV_H */
