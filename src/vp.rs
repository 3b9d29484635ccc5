// SPDX-License-Identifier: GPL-2.0

//! A virtual processor: its fd, the RUN_VP loop and its shared pages.

use crate::{
    hv::{self, abi, calls, RunExit},
    mem::movable::{InterceptAccess, InterceptOutcome},
    partition::Partition,
    root_hvcall, stats,
    sys::{
        self,
        lock::{Class, KillableMutex},
        trace,
    },
    tlfs::HV_PAGE_SHIFT,
    uapi::{self, MshvRunVp},
};
use core::sync::atomic::Ordering;
use kernel::{
    prelude::*,
    sync::{Arc, ArcBorrow},
    uaccess::{UserPtr, UserSlice},
};

/// Offsets in an intercept message page (`struct hv_message`: a 16-byte
/// header, then the payload), for the memory intercepts the driver handles
/// (`HVMSG_GPA_INTERCEPT` and `HVMSG_UNMAPPED_GPA` share the payload
/// `hv_x64_memory_intercept_message`).
const MSG_TYPE: usize = 0;
const PAYLOAD: usize = 16;
/// `hv_x64_intercept_message_header.intercept_access_type`.
const ACCESS_TYPE: usize = PAYLOAD + 5;
/// `hv_x64_memory_intercept_message.guest_physical_address`.
const GPA: usize = PAYLOAD + 56;

/// A VP of a partition.
#[pin_data(PinnedDrop)]
pub(crate) struct Vp {
    partition: Arc<Partition>,
    index: u32,
    /// Register page and intercept message page, as the hypervisor mapped
    /// them; valid until the partition deletes the VP.
    regs_pfn: u64,
    msg_pfn: u64,
    /// Serializes RUN_VP (and other VP ioctls), like upstream's `vp_mutex`;
    /// taken killably, as upstream does: RUN_VP holds it while the guest
    /// runs or halts, for as long as the guest likes.
    run: KillableMutex<()>,
}

impl Vp {
    /// Maps the VP's shared pages and wraps it in an object.
    pub(crate) fn new(partition: Arc<Partition>, index: u32) -> Result<Arc<Self>> {
        let hv = partition.hv.clone();
        let pt = partition.id;
        // Either map may ask for memory (upstream deposits and retries).
        let msg_pfn = calls::retry_with_deposit(&*hv, pt, || {
            hv.map_vp_state_page(pt, index, hv::VpPage::InterceptMessage)
        })?;
        let regs_pfn = calls::retry_with_deposit(&*hv, pt, || {
            hv.map_vp_state_page(pt, index, hv::VpPage::Registers)
        })?;
        let run = KillableMutex::new(Class::Vp, ())?;
        let vp = Arc::pin_init(
            pin_init!(Self {
                partition,
                index,
                regs_pfn,
                msg_pfn,
                run,
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        stats::live_add(stats::Live::Vps, 1);
        Ok(vp)
    }

    /// Dispatches a VP-fd ioctl.
    pub(crate) fn ioctl(self: ArcBorrow<'_, Self>, cmd: u32, arg: usize) -> Result<isize> {
        // Only the partition creator's mm (see `Partition::mm`).
        self.partition.check_mm()?;
        let user = UserPtr::from_addr(arg);
        match cmd {
            uapi::vp::RUN_VP => self.run_vp(user).map(|()| 0),
            uapi::vp::GET_VP_STATE | uapi::vp::SET_VP_STATE => {
                let _guard = self.run.lock_killable()?;
                let set = cmd == uapi::vp::SET_VP_STATE;
                crate::vp_state::ioctl(&*self.partition.hv, self.partition.id, self.index, arg, set)
                    .map(|()| 0)
            }
            uapi::vp::ROOT_HVCALL => root_hvcall::ioctl_with(
                &*self.partition.hv,
                root_hvcall::Target::Vp(self.partition.id),
                user,
                Some(&|gfn, write| self.partition.refault(gfn, write)),
            )
            .map(|()| 0),
            _ => Err(ENOTTY),
        }
    }

    fn read_msg(&self, off: usize, buf: &mut [u8]) {
        // SAFETY: the message page stays mapped while the VP exists, and
        // `off + buf.len()` is within the 256-byte message.
        unsafe { sys::page::read(self.msg_pfn, off, buf) }
    }

    fn msg_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        self.read_msg(off, &mut b);
        u32::from_ne_bytes(b)
    }

    fn msg_u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read_msg(off, &mut b);
        u64::from_ne_bytes(b)
    }

    /// `MSHV_RUN_VP`: runs until an exit the VMM must see. GPA intercepts on
    /// movable memory are resolved here without returning to userspace.
    ///
    /// So is `HVMSG_UNMAPPED_GPA` inside a movable region. A movable region
    /// is never left unmapped by design (NO_ACCESS, not unmapped, is how an
    /// invalidation takes pages away), but when an invalidation's NO_ACCESS
    /// remap fails it unmaps instead (see `MovableSlat::invalidate`): the next
    /// guest access there is then an ordinary fault, not an MMIO exit for a
    /// VMM that has no device at that address. Outside movable regions
    /// `handle_gpa_intercept` forwards, as upstream does.
    fn run_vp(&self, user: UserPtr) -> Result {
        let _guard = self.run.lock_killable()?;
        let p = &self.partition;
        // The same intercept right after it was resolved means the mapping
        // does not satisfy the access (an invalidation storm, or a hypervisor
        // that wants more than the driver maps): after this many rounds the
        // VMM gets the message instead of the kernel spinning.
        const SAME_INTERCEPT_LIMIT: u32 = 16;
        let mut last = (u64::MAX, 0u8);
        let mut same = 0;
        loop {
            match p.hv.run_vp(p.id, self.index)? {
                RunExit::Signal => return Err(EINTR),
                RunExit::Message => {}
            }
            let unmapped = match self.msg_u32(MSG_TYPE) {
                abi::HVMSG_GPA_INTERCEPT => false,
                abi::HVMSG_UNMAPPED_GPA => true,
                _ => break,
            };
            let gpa = self.msg_u64(GPA);
            let mut access = [0u8; 1];
            self.read_msg(ACCESS_TYPE, &mut access);
            if last == (gpa >> HV_PAGE_SHIFT, access[0]) {
                same += 1;
                if same >= SAME_INTERCEPT_LIMIT {
                    break;
                }
            } else {
                (last, same) = ((gpa >> HV_PAGE_SHIFT, access[0]), 0);
            }
            let r =
                p.handle_gpa_intercept(gpa >> HV_PAGE_SHIFT, InterceptAccess::from_hv(access[0]));
            // An MMIO exit (unmapped, not in a movable region) is not a fault.
            if !unmapped || !matches!(r, Ok(InterceptOutcome::Forward)) {
                trace::gpa_intercept(
                    p.id,
                    self.index,
                    gpa >> HV_PAGE_SHIFT,
                    access[0],
                    matches!(r, Ok(InterceptOutcome::Mapped)),
                );
            }
            match r? {
                InterceptOutcome::Mapped => {
                    if unmapped {
                        p.stats.unmapped_refaults.fetch_add(1, Ordering::Relaxed);
                    }
                }
                InterceptOutcome::Forward => break,
            }
        }
        let mut msg = MshvRunVp {
            msg_buf: [0; uapi::MSHV_RUN_VP_BUF_SZ],
        };
        self.read_msg(0, &mut msg.msg_buf);
        UserSlice::new(user, size_of::<MshvRunVp>())
            .writer()
            .write(&msg)
    }

    /// The pfn to map at VP-fd mmap page offset `pgoff`.
    pub(crate) fn mmap_pfn(&self, pgoff: u64) -> Option<u64> {
        match pgoff as usize {
            uapi::MSHV_VP_MMAP_OFFSET_REGISTERS => Some(self.regs_pfn),
            uapi::MSHV_VP_MMAP_OFFSET_INTERCEPT_MESSAGE => Some(self.msg_pfn),
            _ => None,
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Vp {
    fn drop(self: Pin<&mut Self>) {
        // The hypervisor VP lives until the partition is torn down, like
        // upstream (a VP index cannot be reused).
        stats::live_add(stats::Live::Vps, -1);
    }
}
