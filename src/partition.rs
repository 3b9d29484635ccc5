// SPDX-License-Identifier: GPL-2.0

//! A guest partition: its fd, VPs and memory regions.
//!
//! # Locking
//!
//! Locks are taken in this order:
//!
//! 1. `Partition::inner` — serializes the partition fd's ioctls that change
//!    state (initialize, create VP, set guest memory), like upstream's
//!    `pt_mutex`; taken killably (a region set-up can hold it for long).
//! 2. `Partition::regions` — the region set's locks (`mem::regions`); held
//!    only to look up, insert or remove, never across a fault or a hypercall
//!    batch. The RUN_VP fault path takes them alone (not `inner`).
//! 3. A movable region's state lock (`mem::movable`), also taken by the
//!    MMU-notifier invalidate callback.

use crate::{
    hv::{self, abi, calls, CreatePartition, Hypervisor, Notify},
    irq::IrqState,
    mem::{
        movable::{InterceptAccess, InterceptOutcome},
        region::Region,
        regions::RegionSet,
        RegionSpec, Stats,
    },
    sys::{
        self,
        lock::{Class, KillableMutex},
        mm::MmRef,
    },
    uapi::{self, MshvCreateVp, MshvUserMemRegion},
    vp::Vp,
};
use kernel::{
    prelude::*,
    sync::{Arc, SetOnce},
    types::ScopeGuard,
    uaccess::{UserPtr, UserSlice},
};

/// Pages deposited before `HVCALL_INITIALIZE_PARTITION` (upstream's
/// empirically determined `HV_INIT_PARTITION_DEPOSIT_PAGES`).
const INIT_DEPOSIT_PAGES: usize = 208;
/// Pages deposited before `HVCALL_CREATE_VP` (upstream: 90).
const CREATE_VP_DEPOSIT_PAGES: usize = 90;

/// State changed only by partition-fd ioctls.
struct Inner {
    initialized: bool,
    /// VP indexes created, one bit each.
    vps: [u64; (uapi::MSHV_MAX_VPS as usize) / 64],
}

/// A guest partition.
///
/// # Invariants
///
/// `id` names a partition that exists in the hypervisor until `drop`.
#[pin_data(PinnedDrop)]
pub(crate) struct Partition {
    pub(crate) shared: Arc<crate::shared::Shared>,
    pub(crate) hv: Arc<dyn Hypervisor>,
    pub(crate) id: u64,
    pub(crate) stats: Arc<Stats>,
    /// What the layers above attach to the partition's life (its debugfs
    /// files, see `device.rs`): opaque here, dropped with the partition.
    views: SetOnce<KBox<dyn Send + Sync>>,
    /// The creator's address space: partition and VP fd ioctls from any
    /// other mm fail with `EIO` (as KVM's `kvm->mm != current->mm`), so
    /// every region, fault and pin belongs to this one mm, which is alive
    /// (the caller uses it) whenever an ioctl runs.
    pub(crate) mm: MmRef,
    inner: KillableMutex<Inner>,
    /// The memory regions (shared with the debugfs mirror checker).
    pub(crate) regions: Arc<RegionSet>,
    /// MSI routing, irqfds and ioeventfds; also the hypervisor's
    /// notification receiver for this partition.
    irq: Arc<IrqState>,
}

impl Partition {
    /// `MSHV_CREATE_PARTITION`: creates the partition in the hypervisor.
    pub(crate) fn create(
        shared: Arc<crate::shared::Shared>,
        args: &CreatePartition,
    ) -> Result<Arc<Self>> {
        let hv = shared.hv.clone();
        let id = calls::retry_with_deposit(&*hv, abi::HV_PARTITION_ID_SELF, || {
            hv.create_partition(args)
        })?;
        // Until the partition object owns `id`, a failure deletes it again.
        let undo = {
            let hv = hv.clone();
            ScopeGuard::new(move || {
                let _ = Self::destroy_in_hv(&*hv, id, false);
            })
        };
        let stats = Arc::new(Stats::default(), GFP_KERNEL_ACCOUNT)?;
        let mm = MmRef::current()?;
        let inner = KillableMutex::new(
            Class::Partition,
            Inner {
                initialized: false,
                vps: [0; 4],
            },
        )?;
        let regions = Arc::pin_init(RegionSet::new(), GFP_KERNEL_ACCOUNT)?;
        let irq = IrqState::new(hv.clone(), id, stats.clone())?;
        let notify: Arc<dyn Notify> = irq.clone();
        hv.set_notify(id, Some(notify))?;
        let p = Arc::pin_init(
            try_pin_init!(Self {
                shared,
                hv,
                id,
                stats,
                views: SetOnce::new(),
                mm,
                inner,
                regions,
                irq,
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        // INVARIANT: from here the partition's drop deletes `id`.
        undo.dismiss();
        crate::stats::live_add(crate::stats::Live::Partitions, 1);
        Ok(p)
    }

    /// Attaches `view` (a layer above's per-partition state, e.g. debugfs
    /// files) for the partition's life; a second one is refused (`EBUSY`).
    pub(crate) fn attach_view(&self, view: KBox<dyn Send + Sync>) -> Result {
        if self.views.populate(view) {
            Ok(())
        } else {
            Err(EBUSY)
        }
    }

    /// Finalizes and deletes partition `id`. Returns whether the hypervisor
    /// can no longer map anything for it: the delete succeeded, and so did
    /// the finalize of an `initialized` partition (which unmaps its GPA
    /// mappings).
    fn destroy_in_hv(hv: &dyn Hypervisor, id: u64, initialized: bool) -> bool {
        // The receiver references the partition's IrqState: drop it first.
        let _ = hv.set_notify(id, None);
        let finalized = hv.finalize_partition(id).is_ok();
        calls::withdraw_all(hv, id);
        let deleted = hv.delete_partition(id).is_ok();
        if !deleted {
            pr_warn!("pt {}: delete failed\n", id);
        }
        deleted && (finalized || !initialized)
    }

    /// `EIO` unless the caller's mm is the partition creator's.
    pub(crate) fn check_mm(&self) -> Result {
        if self.mm.is_current() {
            Ok(())
        } else {
            Err(EIO)
        }
    }

    /// Dispatches a partition-fd ioctl.
    pub(crate) fn ioctl(self: ArcBorrow<'_, Self>, cmd: u32, arg: usize) -> Result<isize> {
        self.check_mm()?;
        let user = UserPtr::from_addr(arg);
        match cmd {
            uapi::partition::INITIALIZE_PARTITION => self.initialize().map(|()| 0),
            uapi::partition::CREATE_VP => {
                let args: MshvCreateVp = UserSlice::new(user, size_of::<MshvCreateVp>())
                    .reader()
                    .read()?;
                self.create_vp(args.vp_index).map(|fd| fd as isize)
            }
            uapi::partition::SET_GUEST_MEMORY => {
                let args: MshvUserMemRegion = UserSlice::new(user, size_of::<MshvUserMemRegion>())
                    .reader()
                    .read()?;
                self.set_guest_memory(&args).map(|()| 0)
            }
            uapi::partition::IRQFD => self.irq.irqfd_ioctl(user).map(|()| 0),
            uapi::partition::IOEVENTFD => self.irq.ioeventfd_ioctl(user).map(|()| 0),
            uapi::partition::SET_MSI_ROUTING => self.irq.set_msi_routing(user).map(|()| 0),
            uapi::partition::GET_GPAP_ACCESS_BITMAP => {
                crate::gpap::ioctl(&*self.hv, self.id, user).map(|()| 0)
            }
            uapi::partition::ROOT_HVCALL => crate::root_hvcall::ioctl_with(
                &*self.hv,
                crate::root_hvcall::Target::Partition(self.id),
                user,
                Some(&|gfn, write| self.refault(gfn, write)),
            )
            .map(|()| 0),
            _ => Err(ENOTTY),
        }
    }

    fn initialize(&self) -> Result {
        let mut inner = self.inner.lock_killable()?;
        if inner.initialized {
            return Ok(());
        }
        let res = calls::deposit(&*self.hv, self.id, INIT_DEPOSIT_PAGES).and_then(|()| {
            calls::retry_with_deposit(&*self.hv, self.id, || self.hv.initialize_partition(self.id))
        });
        if res.is_err() {
            calls::withdraw_all(&*self.hv, self.id);
            return res;
        }
        inner.initialized = true;
        Ok(())
    }

    fn create_vp(self: ArcBorrow<'_, Self>, index: u32) -> Result<i32> {
        if index >= uapi::MSHV_MAX_VPS {
            return Err(EINVAL);
        }
        let mut inner = self.inner.lock_killable()?;
        let (w, b) = ((index / 64) as usize, 1u64 << (index % 64));
        if inner.vps.get(w).is_some_and(|v| v & b != 0) {
            return Err(EEXIST);
        }
        // Upstream deposits 90 pages whatever the partition's state and
        // keeps them when the hypercall fails: a loop of failing CREATE_VPs
        // grew the pool without bound. No deposit before initialization
        // (the hypercall can only fail then), and on any failure the free
        // pages go back (the hypervisor asks again when it needs memory).
        if inner.initialized {
            calls::deposit(&*self.hv, self.id, CREATE_VP_DEPOSIT_PAGES).inspect_err(|_| {
                calls::withdraw_all(&*self.hv, self.id);
            })?;
        }
        let vp =
            calls::retry_with_deposit(&*self.hv, self.id, || self.hv.create_vp(self.id, index))
                .and_then(|()| {
                    Vp::new(self.into(), index).inspect_err(|_| {
                        let _ = self.hv.delete_vp(self.id, index);
                    })
                })
                .inspect_err(|_| {
                    calls::withdraw_all(&*self.hv, self.id);
                })?;
        if let Some(v) = inner.vps.get_mut(w) {
            *v |= b;
        }
        // The VP object exists now; from here on partition teardown deletes
        // it in the hypervisor even if the fd cannot be installed.
        // SAFETY: a VP fd owns an `Arc<Vp>`, which `vp` is.
        unsafe { sys::fd::install(sys::fd::FdKind::Vp, vp) }
    }

    /// `MSHV_SET_GUEST_MEMORY`: validates everything before changing anything.
    fn set_guest_memory(&self, m: &MshvUserMemRegion) -> Result {
        if m.flags & !uapi::MSHV_SET_MEM_FLAGS_MASK != 0 || m.rsvd.iter().any(|&b| b != 0) {
            return Err(EINVAL);
        }
        let page = uapi::MSHV_HV_PAGE_SIZE;
        if m.size == 0 || m.size % page != 0 || m.userspace_addr % page != 0 {
            return Err(EINVAL);
        }
        let pages = m.size / page;
        // The region's GPAs must fit in 64 bits (gfn < 2^52) and its user
        // range must not wrap.
        const GFN_LIMIT: u64 = 1 << (64 - 12);
        if m.guest_pfn
            .checked_add(pages)
            .is_none_or(|end| end > GFN_LIMIT)
            || m.userspace_addr.checked_add(m.size).is_none()
        {
            return Err(EINVAL);
        }
        if m.flags & (1 << uapi::MSHV_SET_MEM_BIT_UNMAP) != 0 {
            return self.unmap_region(m.guest_pfn, pages, m.userspace_addr);
        }
        // As upstream, the user range must be in user space (`access_ok`);
        // and, unlike upstream, mapped, without a hole, when the region is
        // created. Both bound the region's size by what the VMM really has
        // mapped (a 2^44-byte region over a 4 KiB mapping is refused at
        // once instead of setting up 2^32 pages of NO_ACCESS entries).
        if !sys::mm::access_ok(m.userspace_addr, m.size)
            || !sys::mm::range_mapped(m.userspace_addr, m.size)
        {
            return Err(EINVAL);
        }
        let r = self.map_user_memory(m, pages);
        sys::trace::map_user_memory(
            self.id,
            m.userspace_addr,
            m.guest_pfn,
            pages,
            m.flags.into(),
            r,
        );
        r
    }

    /// The map half of `MSHV_SET_GUEST_MEMORY`, on a validated `m` of
    /// `pages` pages: creates and inserts the region.
    fn map_user_memory(&self, m: &MshvUserMemRegion, pages: u64) -> Result {
        let _inner = self.inner.lock_killable()?;
        // Check overlap first (and again at insert: the fault path never
        // inserts, and `inner` serializes inserters).
        if self.regions.overlaps(m.guest_pfn, pages) {
            return Err(EEXIST);
        }
        self.regions.reserve()?;
        let policy = self.shared.ram_policy();
        let writable = m.flags & (1 << uapi::MSHV_SET_MEM_BIT_WRITABLE) != 0;
        let exec = m.flags & (1 << uapi::MSHV_SET_MEM_BIT_EXECUTABLE) != 0;
        let spec = RegionSpec {
            hv: self.hv.clone(),
            pt: self.id,
            start_gfn: m.guest_pfn,
            pages,
            uaddr: m.userspace_addr,
            writable,
            exec,
            stats: self.stats.clone(),
        };
        let region = Region::new(spec, policy)?;
        // On failure the region is dropped, which removes it.
        self.regions.insert(Arc::new(region, GFP_KERNEL_ACCOUNT)?)
    }

    /// `SET_GUEST_MEMORY` with `UNMAP`: the region must match exactly.
    fn unmap_region(&self, gfn: u64, pages: u64, uaddr: u64) -> Result {
        let _inner = self.inner.lock_killable()?;
        self.regions.remove_exact(gfn, pages, uaddr)
    }

    /// Resolves a GPA intercept for `gfn` inside RUN_VP.
    ///
    /// A gfn outside every region is not an error: the VMM may have unmapped
    /// the region while this VP was running (the lookup races with
    /// `SET_GUEST_MEMORY`, which holds no VP lock), or the guest touched a
    /// hole. Either way the message goes to the VMM, which owns the guest
    /// physical address space (docs/review-answers.md, point g).
    pub(crate) fn handle_gpa_intercept(
        &self,
        gfn: u64,
        access: InterceptAccess,
    ) -> Result<InterceptOutcome> {
        match self.regions.lookup(gfn) {
            Some(r) => r.fault(gfn, access),
            None => Ok(InterceptOutcome::Forward),
        }
    }

    /// Faults `gfn` in for a hypercall that found it inaccessible
    /// (`TRANSLATE_VIRTUAL_ADDRESS`); whether it is mapped now.
    pub(crate) fn refault(&self, gfn: u64, write: bool) -> Result<bool> {
        let access = if write {
            InterceptAccess::Write
        } else {
            InterceptAccess::Read
        };
        Ok(self.handle_gpa_intercept(gfn, access)? == InterceptOutcome::Mapped)
    }
}

#[pinned_drop]
impl PinnedDrop for Partition {
    fn drop(self: Pin<&mut Self>) {
        // Last fd closed: no ioctl, RUN_VP or fault can run any more.
        self.irq.release();
        self.regions.remove_all();
        let vps = self.inner.lock().vps;
        for (w, bits) in vps.iter().enumerate() {
            for b in 0..64u32 {
                if bits & (1 << b) != 0 {
                    let index = w as u32 * 64 + b;
                    let _ = self
                        .hv
                        .unmap_vp_state_page(self.id, index, hv::VpPage::Registers);
                    let _ =
                        self.hv
                            .unmap_vp_state_page(self.id, index, hv::VpPage::InterceptMessage);
                    let _ = self.hv.delete_vp(self.id, index);
                }
            }
        }
        let initialized = self.inner.lock().initialized;
        let gone = Self::destroy_in_hv(&*self.hv, self.id, initialized);
        self.regions.release_held(gone);
        crate::stats::live_add(crate::stats::Live::Partitions, -1);
    }
}

use kernel::sync::ArcBorrow;
