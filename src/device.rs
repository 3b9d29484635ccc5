// SPDX-License-Identifier: GPL-2.0

//! The `/dev/mshv` misc device (mode 0600: devtmpfs's default for misc
//! devices, as upstream's explicit 0600).

use crate::{
    debugfs::Debugfs,
    hv::CreatePartition,
    partition::Partition,
    root_hvcall,
    shared::Shared,
    sys, uapi,
    uapi::{MshvCreatePartition, MshvCreatePartitionV2},
};
use kernel::{
    fs::File,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*,
    sync::Arc,
    uaccess::{UserPtr, UserSlice},
};

/// Hyper-V partition creation flags the driver always sets.
const HV_PARTITION_CREATION_FLAG_EXO_PARTITION: u64 = 1 << 8;
const HV_PARTITION_CREATION_FLAG_INTERCEPT_MESSAGE_PAGE_ENABLED: u64 = 1 << 19;
/// `MSHV_PT_BIT_*` → `HV_PARTITION_CREATION_FLAG_*`.
const PT_FLAG_MAP: [(u32, u64); 5] = [
    (uapi::MSHV_PT_BIT_LAPIC, 1 << 13),
    (uapi::MSHV_PT_BIT_X2APIC, 1 << 22),
    (uapi::MSHV_PT_BIT_GPA_SUPER_PAGES, 1 << 4),
    (uapi::MSHV_PT_BIT_NESTED_VIRTUALIZATION, 1 << 1),
    (uapi::MSHV_PT_BIT_SMT_ENABLED_GUEST, 1 << 0),
];

/// `/dev/mshv` registered, with the state its opens hand out.
#[pin_data]
pub(crate) struct Registration {
    /// Registered after `shared` exists (an open may come the moment it
    /// is; upstream registered first and could race its own init) and,
    /// declared first, deregistered first on unload, before the SynIC and
    /// the backend in `shared` go.
    #[pin]
    misc: MiscDeviceRegistration<MshvDev>,
    shared: Arc<Shared>,
    /// `/sys/kernel/debug/mshv_rs`, where each new partition's files go.
    debugfs: Arc<Debugfs>,
}

impl Registration {
    /// Registers `/dev/mshv`, whose opens get `shared` and `debugfs`.
    pub(crate) fn new(shared: Arc<Shared>, debugfs: Arc<Debugfs>) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            shared,
            debugfs,
            misc <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"mshv" }),
        }? Error)
    }
}

/// Per-open state of `/dev/mshv`.
pub(crate) struct MshvDev {
    shared: Arc<Shared>,
    debugfs: Arc<Debugfs>,
}

#[vtable]
impl MiscDevice for MshvDev {
    type Ptr = KBox<Self>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        let misc: *const MiscDeviceRegistration<Self> = misc;
        // SAFETY: the only registration of `MshvDev` is the `misc` field of a
        // pinned `Registration` (the module's, which lives until module
        // exit); an open can only happen while it is registered, so the
        // container is live.
        let reg = unsafe { &*kernel::container_of!(misc, Registration, misc) };
        Ok(KBox::new(
            MshvDev {
                shared: reg.shared.clone(),
                debugfs: reg.debugfs.clone(),
            },
            GFP_KERNEL_ACCOUNT,
        )?)
    }

    fn ioctl(me: &MshvDev, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let user = UserPtr::from_addr(arg);
        match cmd {
            uapi::dev::CREATE_PARTITION => me.create_partition(user).map(|fd| fd as isize),
            uapi::dev::ROOT_HVCALL => {
                root_hvcall::ioctl(&*me.shared.hv, root_hvcall::Target::SelfPartition, user)
                    .map(|()| 0)
            }
            _ => Err(ENOTTY),
        }
    }
}

impl MshvDev {
    /// `MSHV_CREATE_PARTITION`, v1 (16 bytes) or, when the flags ask for CPU
    /// and XSAVE features, v2 (64 bytes) argument forms.
    fn create_partition(&self, user: UserPtr) -> Result<i32> {
        let v1: MshvCreatePartition = UserSlice::new(user, size_of::<MshvCreatePartition>())
            .reader()
            .read()?;
        if v1.pt_flags & !uapi::MSHV_PT_FLAGS_MASK != 0
            || v1.pt_isolation >= uapi::MSHV_PT_ISOLATION_COUNT
        {
            return Err(EINVAL);
        }
        let mut args = CreatePartition {
            flags: HV_PARTITION_CREATION_FLAG_EXO_PARTITION
                | HV_PARTITION_CREATION_FLAG_INTERCEPT_MESSAGE_PAGE_ENABLED,
            ..Default::default()
        };
        for (bit, hv) in PT_FLAG_MAP {
            if v1.pt_flags & (1 << bit) != 0 {
                args.flags |= hv;
            }
        }
        if v1.pt_flags & (1 << uapi::MSHV_PT_BIT_CPU_AND_XSAVE_FEATURES) != 0 {
            let v2: MshvCreatePartitionV2 =
                UserSlice::new(user, size_of::<MshvCreatePartitionV2>())
                    .reader()
                    .read()?;
            // Re-validate: the first 16 bytes are read again.
            let (flags, iso, banks) = (v2.pt_flags, v2.pt_isolation, v2.pt_num_cpu_fbanks);
            let (rsvd, rsvd1) = (v2.pt_rsvd, v2.pt_rsvd1);
            if flags != v1.pt_flags
                || iso != v1.pt_isolation
                || banks as usize != uapi::MSHV_NUM_CPU_FEATURES_BANKS
                || rsvd.iter().any(|&b| b != 0)
                || rsvd1.iter().any(|&b| b != 0)
            {
                return Err(EINVAL);
            }
            args.disabled_features = v2.pt_cpu_fbanks;
            args.disabled_xsave = v2.pt_disabled_xsave;
        }
        let p = Partition::create(self.shared.clone(), &args)?;
        // Its debugfs files are best effort: a partition works without.
        if let Ok(files) = self
            .debugfs
            .partition(p.id, p.stats.clone(), p.regions.clone())
        {
            if let Ok(files) = KBox::new(files, GFP_KERNEL_ACCOUNT) {
                let _ = p.attach_view(files);
            }
        }
        // SAFETY: a partition fd owns an `Arc<Partition>`, which `p` is.
        unsafe { sys::fd::install(sys::fd::FdKind::Partition, p) }
    }
}
