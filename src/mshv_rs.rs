// SPDX-License-Identifier: GPL-2.0

//! `/dev/mshv` in Rust: the interface through which a VMM (Cloud Hypervisor,
//! through the `mshv-ioctls` crate) creates guest partitions, maps guest
//! memory and runs virtual processors on a Microsoft Hyper-V root partition.
//!
//! Layers, top to bottom (docs/design.md, "Layers", has the whole table):
//! - [`uapi`]: the ioctl ABI, byte-compatible with Linux 7.3's `mshv.h`;
//! - [`device`]: the misc device and its ioctls;
//! - [`mem`]: guest memory regions and their pure [`mem::geometry`];
//! - [`sys`]: safe wrappers over C APIs the kernel crate lacks.

use kernel::{
    prelude::*,
    str::CStr,
    sync::Arc, //
};
use shared::Shared;

mod debugfs;
mod device;
mod fd_entry;
mod gpap;
mod hv;
mod irq;
mod mem;
mod partition;
mod root_hvcall;
mod shared;
#[cfg(CONFIG_MSHV_RS_EMULATOR)]
mod sim;
mod stats;
mod sys;
mod tlfs;
mod uapi;
mod vp;
mod vp_state;

module! {
    type: MshvModule,
    name: "mshv_rs",
    authors: ["The mshv-rs developers"],
    description: "Microsoft Hyper-V root partition VMM interface /dev/mshv (Rust)",
    license: "GPL",
}

/// Which hypervisor the driver talks to, from the `backend=` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BackendKind {
    /// Real hypercalls on a Hyper-V root partition.
    HyperV,
    /// The simulated hypervisor inside this module.
    Sim,
}

fn backend_kind() -> Result<BackendKind> {
    // SAFETY: the C helper returns a pointer to a NUL-terminated static buffer
    // that module_param_string() keeps NUL-terminated; it is read-only (0444)
    // after load, so it cannot change while we read it.
    let param = unsafe { CStr::from_char_ptr(sys::ffi::mshv_rs_backend_param()) };
    match param.to_bytes() {
        b"sim" => {
            pr_info!("using the simulated hypervisor (backend=sim)\n");
            Ok(BackendKind::Sim)
        }
        b"hyperv" | b"auto" => {
            #[cfg(CONFIG_HYPERV)]
            if sys::hyperv::RealSeam::is_root() {
                return Ok(BackendKind::HyperV);
            }
            pr_err!("not running on a Hyper-V root partition; load with backend=sim to use the simulated hypervisor\n");
            Err(ENODEV)
        }
        _ => {
            pr_err!("unknown backend {:?} (auto, hyperv or sim)\n", param);
            Err(EINVAL)
        }
    }
}

/// The module: `/dev/mshv` and, behind it, the state every partition
/// shares ([`device::Registration`] says the order of load and unload).
#[pin_data]
pub(crate) struct MshvModule {
    #[pin]
    dev: device::Registration,
}

/// The state partitions share, and the debugfs view of it.
fn new_shared() -> Result<(Arc<Shared>, Arc<debugfs::Debugfs>)> {
    // Both drivers register the misc device "mshv"; a second registration
    // would fail in sysfs with a duplicate-name warning. Refuse up front.
    if sys::c_mshv_root_present() {
        pr_err!("the C driver mshv_root is loaded and owns /dev/mshv; unload it first (rmmod mshv_root)\n");
        return Err(EBUSY);
    }
    let (seam, simulator): (Arc<dyn tlfs::seam::Seam>, Option<debugfs::EmulatorSource>) =
        match backend_kind()? {
            #[cfg(CONFIG_MSHV_RS_EMULATOR)]
            BackendKind::Sim => {
                let name = sys::testdev::sim_scheduler_param();
                let Some(scheduler) = sim::sched::Scheduler::from_name(name.to_bytes()) else {
                    pr_err!("unknown sim_scheduler {:?} (root or core)\n", name);
                    return Err(EINVAL);
                };
                pr_info!("the emulator runs the {:?} scheduler\n", scheduler);
                let emu = sim::emu::Emulator::new(scheduler)?;
                let side_channels = emu.sim.clone();
                (emu, Some(side_channels))
            }
            #[cfg(not(CONFIG_MSHV_RS_EMULATOR))]
            BackendKind::Sim => {
                pr_err!("backend=sim: this build has no emulator (CONFIG_MSHV_RS_EMULATOR is not set)\n");
                return Err(ENODEV);
            }
            #[cfg(CONFIG_HYPERV)]
            BackendKind::HyperV => (Arc::new(sys::hyperv::RealSeam::new()?, GFP_KERNEL)?, None),
            #[cfg(not(CONFIG_HYPERV))]
            BackendKind::HyperV => return Err(ENODEV),
        };
    let id = seam.identity();
    if !id.root {
        pr_err!("not the Hyper-V root partition\n");
        return Err(ENODEV);
    }
    if id.kdump {
        pr_err!("refusing to load in a kdump kernel: the hypervisor state belongs to the crashed kernel\n");
        return Err(ENODEV);
    }
    pr_info!("hypervisor build {}\n", id.build);
    if !tlfs::seam::VALIDATED_BUILDS.contains(&id.build) {
        pr_warn!(
            "hypervisor build {} is outside the builds upstream validated ({}..={})\n",
            id.build,
            tlfs::seam::VALIDATED_BUILDS.start(),
            tlfs::seam::VALIDATED_BUILDS.end()
        );
    }
    let hyperv = hv::hyperv::HyperV::new(seam)?;
    pr_info!(
        "hypervisor runs the {}; VMM capabilities {:#x}\n",
        hv::hyperv::scheduler_name(hyperv.scheduler),
        hyperv.vmm_capabilities
    );
    let synic = hv::synic::start(hyperv.clone())?;
    let shared = Arc::new(Shared::new(synic, hyperv)?, GFP_KERNEL)?;
    let debugfs = Arc::pin_init(
        debugfs::Debugfs::new(simulator, shared.force_pinned.clone()),
        GFP_KERNEL,
    )?;
    Ok((shared, debugfs))
}

impl kernel::InPlaceModule for MshvModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            dev <- {
                let (shared, debugfs) = new_shared()?;
                device::Registration::new(shared, debugfs)
            },
        }? Error)
    }
}
