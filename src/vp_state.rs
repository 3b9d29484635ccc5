// SPDX-License-Identifier: GPL-2.0

//! `MSHV_GET_VP_STATE` / `MSHV_SET_VP_STATE`: a VP's LAPIC, XSAVE, SynIC
//! message and event flags pages and synthetic timers, moved by
//! `HVCALL_GET_VP_STATE` / `HVCALL_SET_VP_STATE`.
//!
//! Upstream 7.3's rules, kept exactly: `EINVAL` for an unknown type, a
//! non-zero `rsvd`, a zero or unaligned `buf_sz` or an unaligned `buf_ptr`;
//! the size the state needs is written back to `buf_sz` *before* it is
//! compared with the buffer (so a VMM learns it from the `EINVAL`); page
//! states go through the pinned user pages (all `buf_sz / 4096` of them,
//! at most 507), the timers through a 200-byte bounce buffer.

use crate::{
    hv::{
        abi, calls, Hypervisor, VpStateData, HV_GET_SET_VP_STATE_LAPIC_STATE,
        HV_GET_SET_VP_STATE_SIEF_PAGE, HV_GET_SET_VP_STATE_SIM_PAGE,
        HV_GET_SET_VP_STATE_SYNTHETIC_TIMERS, HV_GET_SET_VP_STATE_TYPE_PFN,
        HV_GET_SET_VP_STATE_XSAVE, HV_PAGE, VP_STATE_BATCH, VP_STATE_INLINE,
    },
    sys::mm::PinnedPages,
    uapi::{self, MshvGetSetVpState},
};
use kernel::{
    prelude::*,
    uaccess::{UserPtr, UserSlice},
};

/// XSAVE legacy states always requested (x87, SSE), as upstream.
const XSAVE_LEGACY: u64 = 0x3;

/// Offset of `buf_sz` in `struct mshv_get_set_vp_state`.
const BUF_SZ_OFFSET: usize = 4;

/// What a request moves, before the partition's XSAVE properties are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A fixed-size state: its hypervisor type and size.
    Fixed(u32, u32),
    /// XSAVE: size and states come from partition properties.
    Xsave,
}

/// Checks the argument (before any state is looked at) and classifies it.
pub(crate) fn validate(a: &MshvGetSetVpState) -> Result<Kind> {
    let page = HV_PAGE as u64;
    if a.type_ >= uapi::MSHV_VP_STATE_COUNT
        || a.rsvd.iter().any(|&b| b != 0)
        || a.buf_sz == 0
        || u64::from(a.buf_sz) % page != 0
        || a.buf_ptr % page != 0
    {
        return Err(EINVAL);
    }
    Ok(match a.type_ {
        uapi::MSHV_VP_STATE_LAPIC => Kind::Fixed(HV_GET_SET_VP_STATE_LAPIC_STATE, HV_PAGE as u32),
        uapi::MSHV_VP_STATE_XSAVE => Kind::Xsave,
        uapi::MSHV_VP_STATE_SIMP => Kind::Fixed(HV_GET_SET_VP_STATE_SIM_PAGE, HV_PAGE as u32),
        uapi::MSHV_VP_STATE_SIEFP => Kind::Fixed(HV_GET_SET_VP_STATE_SIEF_PAGE, HV_PAGE as u32),
        _ => Kind::Fixed(HV_GET_SET_VP_STATE_SYNTHETIC_TIMERS, VP_STATE_INLINE as u32),
    })
}

/// Pages a page-transferred state pins: the whole buffer, as upstream; at
/// most [`VP_STATE_BATCH`].
pub(crate) fn pages_to_pin(buf_sz: u32) -> Result<usize> {
    let pages = buf_sz as usize / HV_PAGE;
    if pages > VP_STATE_BATCH {
        return Err(EINVAL);
    }
    Ok(pages)
}

/// `HVCALL_GET_PARTITION_PROPERTY` of partition `pt`.
fn partition_property(hv: &dyn Hypervisor, pt: u64, code: u32) -> Result<u64> {
    let mut input = KBox::new([0u8; HV_PAGE], GFP_KERNEL)?;
    let mut output = KBox::new([0u8; HV_PAGE], GFP_KERNEL)?;
    input[..8].copy_from_slice(&pt.to_le_bytes());
    input[8..12].copy_from_slice(&code.to_le_bytes());
    let r = hv.passthrough(
        abi::HVCALL_GET_PARTITION_PROPERTY,
        0,
        0,
        &input,
        &mut output,
    );
    match abi::result_status(r) {
        0 => {
            let mut v = [0u8; 8];
            v.copy_from_slice(&output[..8]);
            Ok(u64::from_le_bytes(v))
        }
        s => Err(crate::hv::HvError(s).into()),
    }
}

/// Handles the ioctl for VP `vp` of partition `pt`, argument at address `arg`.
pub(crate) fn ioctl(hv: &dyn Hypervisor, pt: u64, vp: u32, arg: usize, set: bool) -> Result {
    let user = UserPtr::from_addr(arg);
    let args: MshvGetSetVpState = UserSlice::new(user, size_of::<MshvGetSetVpState>())
        .reader()
        .read()?;
    let kind = validate(&args)?;
    let (data, size) = match kind {
        Kind::Fixed(kind, size) => (
            VpStateData {
                kind,
                ..Default::default()
            },
            size,
        ),
        Kind::Xsave => {
            let states = partition_property(hv, pt, abi::HV_PARTITION_PROPERTY_XSAVE_STATES)?;
            let size = partition_property(hv, pt, abi::HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE)?;
            (
                VpStateData {
                    kind: HV_GET_SET_VP_STATE_XSAVE,
                    xsave_flags: 0,
                    xsave_states: states | XSAVE_LEGACY,
                },
                u32::try_from(size).map_err(|_| EINVAL)?,
            )
        }
    };
    UserSlice::new(UserPtr::from_addr(arg.wrapping_add(BUF_SZ_OFFSET)), 4)
        .writer()
        .write(&size)?;
    if size > args.buf_sz {
        return Err(EINVAL);
    }
    let buf = UserPtr::from_addr(args.buf_ptr as usize);
    if data.kind & HV_GET_SET_VP_STATE_TYPE_PFN != 0 {
        // Upstream pins with FOLL_WRITE for both directions.
        let pinned = PinnedPages::pin(args.buf_ptr, pages_to_pin(args.buf_sz)?, true)?;
        let mut none = [0u8; VP_STATE_INLINE];
        return calls::retry_with_deposit(hv, pt, || {
            if set {
                hv.set_vp_state(pt, vp, &data, pinned.pfns(), &[])
            } else {
                hv.get_vp_state(pt, vp, &data, pinned.pfns(), &mut none)
            }
        });
    }
    let mut bounce = [0u8; VP_STATE_INLINE];
    let len = (size as usize).min(VP_STATE_INLINE);
    if set {
        UserSlice::new(buf, len)
            .reader()
            .read_slice(&mut bounce[..len])?;
        calls::retry_with_deposit(hv, pt, || {
            hv.set_vp_state(pt, vp, &data, &[], &bounce[..len])
        })
    } else {
        calls::retry_with_deposit(hv, pt, || hv.get_vp_state(pt, vp, &data, &[], &mut bounce))?;
        UserSlice::new(buf, len)
            .writer()
            .write_slice(&bounce[..len])
    }
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_vp_state)]
mod tests {
    use super::*;

    fn args(type_: u8, buf_sz: u32, buf_ptr: u64) -> MshvGetSetVpState {
        MshvGetSetVpState {
            type_,
            rsvd: [0; 3],
            buf_sz,
            buf_ptr,
        }
    }

    #[test]
    fn validation() {
        let ok = |t| validate(&args(t, 4096, 0x10000));
        assert_eq!(
            ok(uapi::MSHV_VP_STATE_LAPIC),
            Ok(Kind::Fixed(0x8000_0000, 4096))
        );
        assert_eq!(ok(uapi::MSHV_VP_STATE_XSAVE), Ok(Kind::Xsave));
        assert_eq!(
            ok(uapi::MSHV_VP_STATE_SIMP),
            Ok(Kind::Fixed(0x8000_0002, 4096))
        );
        assert_eq!(
            ok(uapi::MSHV_VP_STATE_SIEFP),
            Ok(Kind::Fixed(0x8000_0003, 4096))
        );
        assert_eq!(
            ok(uapi::MSHV_VP_STATE_SYNTHETIC_TIMERS),
            Ok(Kind::Fixed(4, 200))
        );
        assert_eq!(ok(5), Err(EINVAL));
        let mut a = args(0, 4096, 0x10000);
        a.rsvd[1] = 1;
        assert_eq!(validate(&a), Err(EINVAL));
        assert_eq!(validate(&args(0, 0, 0x10000)), Err(EINVAL));
        assert_eq!(validate(&args(0, 100, 0x10000)), Err(EINVAL));
        assert_eq!(validate(&args(0, 4096, 0x10008)), Err(EINVAL));
        assert_eq!(pages_to_pin(4096), Ok(1));
        assert_eq!(pages_to_pin(507 * 4096), Ok(507));
        assert_eq!(pages_to_pin(508 * 4096), Err(EINVAL));
    }
}
