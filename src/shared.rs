// SPDX-License-Identifier: GPL-2.0

//! The state every partition shares: the backend with the SynIC set up
//! under it, and the debugfs tree. Built once at load by the crate root,
//! which chooses the backend; handed to `/dev/mshv`'s opens by
//! [`crate::device::Registration`], and from them to each partition.

use crate::{debugfs, hv};
use kernel::{prelude::*, sync::Arc};

/// State every partition shares: the backend and the debugfs tree.
pub(crate) struct Shared {
    /// The SynIC of every CPU and its interrupt handler. Declared first so
    /// that it is dropped first: the handler is gone before anything it
    /// could reach.
    _synic: hv::synic::SynicGuard,
    /// The hypervisor, behind the Hyper-V backend (docs/design.md, "The
    /// hypervisor boundary").
    pub(crate) hv: Arc<dyn hv::Hypervisor>,
    /// `/sys/kernel/debug/mshv_rs`.
    pub(crate) debugfs: Pin<KBox<debugfs::Debugfs>>,
}

impl Shared {
    /// The shared state over `hv`, whose SynIC `synic` set up.
    pub(crate) fn new(
        synic: hv::synic::SynicGuard,
        hv: Arc<dyn hv::Hypervisor>,
        debugfs: Pin<KBox<debugfs::Debugfs>>,
    ) -> Self {
        Self {
            _synic: synic,
            hv,
            debugfs,
        }
    }
}
