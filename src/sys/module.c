// SPDX-License-Identifier: GPL-2.0
/*
 * Module-level glue: the backend= module parameter (read by the crate
 * root, src/mshv_rs.rs) and whether the C driver mshv_root is present
 * (src/sys/mod.rs). See module.h. No policy, no state beyond the
 * parameter.
 */

#include <linux/module.h>
#include <linux/moduleparam.h>

#include "module.h"

/* ---- module parameter ------------------------------------------------------ */

/* Rust module parameters are integers only; the backend is named. */
static char mshv_rs_backend[16] = "auto";
module_param_string(backend, mshv_rs_backend, sizeof(mshv_rs_backend), 0444);
MODULE_PARM_DESC(backend,
	"Hypervisor backend: auto (hyperv on a Hyper-V root, else refuse to load), hyperv, or sim");

const char *mshv_rs_backend_param(void)
{
	return mshv_rs_backend;
}

/* ---- the C driver --------------------------------------------------------- */

bool mshv_rs_c_mshv_root_present(void)
{
#ifdef CONFIG_MODULES
	/*
	 * mshv_root exports hv_call_delete_vp (GPL); finding it means the module
	 * is loaded (or built in). __symbol_get takes a module reference, which
	 * is dropped at once: only presence matters.
	 */
	void *sym = __symbol_get("hv_call_delete_vp");

	if (!sym)
		return false;
	symbol_put_addr(sym);
	return true;
#else
	/* No modules (e.g. the KUnit kernel): only a built-in mshv_root. */
	return IS_BUILTIN(CONFIG_MSHV_ROOT);
#endif
}
