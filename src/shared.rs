// SPDX-License-Identifier: GPL-2.0

//! The state every partition shares: the backend with the SynIC set up
//! under it, and the RAM policy for new regions. Built once at load by the
//! crate root, which chooses the backend; handed to `/dev/mshv`'s opens by
//! [`crate::device::Registration`], and from them to each partition. The
//! debugfs tree is not here: it is a view of these objects, above them
//! (docs/design.md, "Layers").

use crate::{hv, mem::region::RamPolicy};
use kernel::{
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc,
    },
};

/// State every partition shares: the backend and the RAM policy.
pub(crate) struct Shared {
    /// The SynIC of every CPU and its interrupt handler. Declared first so
    /// that it is dropped first: the handler is gone before anything it
    /// could reach.
    _synic: hv::synic::SynicGuard,
    /// The hypervisor, behind the Hyper-V backend (docs/design.md, "The
    /// hypervisor boundary").
    pub(crate) hv: Arc<dyn hv::Hypervisor>,
    /// Non-zero: new RAM regions are pinned instead of movable. A test
    /// knob, written through debugfs (`force_pinned`); 0 from load.
    pub(crate) force_pinned: Arc<Atomic<u32>>,
}

impl Shared {
    /// The shared state over `hv`, whose SynIC `synic` set up.
    pub(crate) fn new(synic: hv::synic::SynicGuard, hv: Arc<dyn hv::Hypervisor>) -> Result<Self> {
        Ok(Self {
            _synic: synic,
            hv,
            force_pinned: Arc::new(Atomic::new(0), GFP_KERNEL)?,
        })
    }

    /// What a new RAM region is: movable unless a test asked for pinned.
    pub(crate) fn ram_policy(&self) -> RamPolicy {
        if self.force_pinned.load(Relaxed) != 0 {
            RamPolicy::Pinned
        } else {
            RamPolicy::Movable
        }
    }
}
