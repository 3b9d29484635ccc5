// SPDX-License-Identifier: GPL-2.0

//! `MSHV_ROOT_HVCALL`: a raw hypercall from the VMM, checked against an
//! allow-list per fd type. Only hypercalls whose input starts with a u64
//! partition id are allowed; the driver overwrites it with the fd's own
//! partition, so a VMM can only reach its own partition.
//!
//! Hardening over upstream: input and output pages are zeroed (no stale
//! kernel bytes reach the hypervisor or userspace), `reps` must fit the
//! 12-bit rep count, and deposit-and-retry is bounded.

use crate::{
    hv::{abi, calls, status, Hypervisor, HV_PAGE},
    uapi::MshvRootHvcall,
};
use kernel::{
    prelude::*,
    uaccess::{UserPtr, UserSlice},
};

/// Which fd the call came through.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// `/dev/mshv`: the root partition itself (property queries only).
    SelfPartition,
    /// A partition fd.
    Partition(u64),
    /// A VP fd (no asynchronous calls).
    Vp(u64),
}

/// Codes allowed on partition and VP fds (upstream's list).
const CHILD_ALLOWED: [u16; 14] = [
    abi::HVCALL_GET_PARTITION_PROPERTY,
    abi::HVCALL_GET_PARTITION_PROPERTY_EX,
    abi::HVCALL_SET_PARTITION_PROPERTY,
    abi::HVCALL_INSTALL_INTERCEPT,
    abi::HVCALL_GET_VP_REGISTERS,
    abi::HVCALL_SET_VP_REGISTERS,
    abi::HVCALL_TRANSLATE_VIRTUAL_ADDRESS,
    abi::HVCALL_CLEAR_VIRTUAL_INTERRUPT,
    abi::HVCALL_REGISTER_INTERCEPT_RESULT,
    abi::HVCALL_ASSERT_VIRTUAL_INTERRUPT,
    abi::HVCALL_GET_GPA_PAGES_ACCESS_STATES,
    abi::HVCALL_SIGNAL_EVENT_DIRECT,
    abi::HVCALL_POST_MESSAGE_DIRECT,
    abi::HVCALL_GET_VP_CPUID_VALUES,
];

/// Codes allowed on `/dev/mshv`.
const SELF_ALLOWED: [u16; 2] = [
    abi::HVCALL_GET_PARTITION_PROPERTY,
    abi::HVCALL_GET_PARTITION_PROPERTY_EX,
];

/// Whether `code` may be issued through `target`.
pub(crate) fn allowed(target: Target, code: u16) -> bool {
    match target {
        Target::SelfPartition => SELF_ALLOWED.contains(&code),
        Target::Partition(_) => CHILD_ALLOWED.contains(&code),
        // Asynchronous calls complete through the partition; upstream
        // allows them on the partition fd only.
        Target::Vp(_) => {
            code != abi::HVCALL_SET_PARTITION_PROPERTY && CHILD_ALLOWED.contains(&code)
        }
    }
}

/// The rep count field is 12 bits wide.
const MAX_REPS: u16 = 0xfff;

/// Makes the guest page `gfn` accessible (for writing if `write`) if it is
/// in a movable region the driver can fault in; returns whether it did.
pub(crate) type Refault<'a> = &'a dyn Fn(u64, bool) -> Result<bool>;

/// `HV_TRANSLATE_GVA_GPA_NO_READ_ACCESS`.
const GVA_GPA_NO_READ_ACCESS: u32 = 5;
/// `HV_TRANSLATE_GVA_GPA_NO_WRITE_ACCESS`.
const GVA_GPA_NO_WRITE_ACCESS: u32 = 6;
/// Re-faults per `TRANSLATE_VIRTUAL_ADDRESS` (a 4-level walk touches at
/// most 4 page-table pages and the data page; an invalidation may race).
const MAX_TRANSLATE_REFAULTS: usize = 16;

/// The page a `TRANSLATE_VIRTUAL_ADDRESS` output (`{result_code u32,
/// cache_type u32, gpa_page u64}`) says was not accessible in the SLAT, and
/// whether the access was a write: the page (a page-table page of the walk,
/// or the final page) to fault in before asking again.
pub(crate) fn translate_refault_page(output: &[u8]) -> Option<(u64, bool)> {
    let code = u32::from_le_bytes(output.get(0..4)?.try_into().ok()?);
    let gfn = u64::from_le_bytes(output.get(8..16)?.try_into().ok()?);
    match code {
        GVA_GPA_NO_READ_ACCESS => Some((gfn, false)),
        GVA_GPA_NO_WRITE_ACCESS => Some((gfn, true)),
        _ => None,
    }
}

/// Handles `MSHV_ROOT_HVCALL` with its argument at `user`.
pub(crate) fn ioctl(hv: &dyn Hypervisor, target: Target, user: UserPtr) -> Result {
    ioctl_with(hv, target, user, None)
}

/// [`ioctl`], with `refault` for guest pages in movable memory:
/// `HVCALL_TRANSLATE_VIRTUAL_ADDRESS` that fails because a page of the walk
/// (a page-table page or the final page) is not accessible in the SLAT —
/// Linux took it back — faults that page in and asks again, instead of
/// failing as upstream 7.3 does.
pub(crate) fn ioctl_with(
    hv: &dyn Hypervisor,
    target: Target,
    user: UserPtr,
    refault: Option<Refault<'_>>,
) -> Result {
    let (mut reader, mut writer) =
        UserSlice::new(user, size_of::<MshvRootHvcall>()).reader_writer();
    let mut args: MshvRootHvcall = reader.read()?;
    let in_sz = args.in_sz as usize;
    let out_sz = args.out_sz as usize;
    if args.status != 0
        || args.in_ptr == 0
        || !(8..=HV_PAGE).contains(&in_sz)
        || args.rsvd.iter().any(|&b| b != 0)
        || args.reps > MAX_REPS
        || (args.out_ptr != 0 && (out_sz == 0 || out_sz > HV_PAGE))
        || !allowed(target, args.code)
    {
        return Err(EINVAL);
    }
    let pt = match target {
        Target::SelfPartition => abi::HV_PARTITION_ID_SELF,
        Target::Partition(id) | Target::Vp(id) => id,
    };
    let mut input = KBox::new([0u8; HV_PAGE], GFP_KERNEL)?;
    let mut output = KBox::new([0u8; HV_PAGE], GFP_KERNEL)?;
    UserSlice::new(UserPtr::from_addr(args.in_ptr as usize), in_sz)
        .reader()
        .read_slice(&mut input[..in_sz])?;
    input[..8].copy_from_slice(&pt.to_ne_bytes());

    let mut reps_done: u16 = 0;
    let mut result = Ok(());
    let mut st = status::SUCCESS;
    let mut refaults = 0;
    let mut round = 0;
    while round <= calls::MAX_DEPOSIT_ROUNDS {
        let raw = hv.passthrough(args.code, args.reps, reps_done, &input, &mut output);
        st = (raw & 0xffff) as u16;
        if args.reps > 0 {
            reps_done = ((raw >> 32) & 0xfff) as u16;
        }
        if st == status::SUCCESS {
            result = Ok(());
            if let (abi::HVCALL_TRANSLATE_VIRTUAL_ADDRESS, Some(refault)) = (args.code, refault) {
                if let Some((gfn, write)) = translate_refault_page(&output[..]) {
                    if refaults < MAX_TRANSLATE_REFAULTS && refault(gfn, write)? {
                        refaults += 1;
                        output.fill(0);
                        continue;
                    }
                }
            }
            break;
        }
        let this_round = round;
        round += 1;
        match status::deposit_pages(st) {
            Some(n) if this_round < calls::MAX_DEPOSIT_ROUNDS => {
                let into = match st {
                    status::INSUFFICIENT_ROOT_MEMORY
                    | status::INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY => abi::HV_PARTITION_ID_SELF,
                    _ => pt,
                };
                if let Err(e) = calls::deposit(hv, into, n) {
                    result = Err(e);
                    break;
                }
            }
            _ => {
                result = Err(Error::from_errno(status::to_errno(st)));
                break;
            }
        }
    }
    // Status and reps go back even on failure (the client crate reads them).
    args.status = st;
    args.reps = reps_done;
    writer.write(&args)?;
    result?;
    if args.out_ptr != 0 {
        UserSlice::new(UserPtr::from_addr(args.out_ptr as usize), out_sz)
            .writer()
            .write_slice(&output[..out_sz])?;
    }
    Ok(())
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_hvcall)]
mod tests {
    use super::*;

    fn output(code: u32, gfn: u64) -> [u8; 16] {
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&code.to_le_bytes());
        o[8..].copy_from_slice(&gfn.to_le_bytes());
        o
    }

    #[test]
    fn translate_refault_pages() {
        assert_eq!(
            translate_refault_page(&output(5, 0x102)),
            Some((0x102, false))
        );
        assert_eq!(
            translate_refault_page(&output(6, 0x401)),
            Some((0x401, true))
        );
        // Success, page not present, privilege, GPA unmapped: nothing to fault.
        for code in [0, 1, 2, 4, 7] {
            assert_eq!(translate_refault_page(&output(code, 0x102)), None);
        }
        assert_eq!(translate_refault_page(&[5, 0, 0]), None);
    }

    #[test]
    fn allow_lists() {
        assert!(allowed(
            Target::SelfPartition,
            abi::HVCALL_GET_PARTITION_PROPERTY
        ));
        assert!(!allowed(
            Target::SelfPartition,
            abi::HVCALL_TRANSLATE_VIRTUAL_ADDRESS
        ));
        assert!(allowed(
            Target::Vp(1),
            abi::HVCALL_TRANSLATE_VIRTUAL_ADDRESS
        ));
        assert!(!allowed(Target::Vp(1), abi::HVCALL_SET_PARTITION_PROPERTY));
        assert!(allowed(
            Target::Partition(1),
            abi::HVCALL_SET_PARTITION_PROPERTY
        ));
    }
}
