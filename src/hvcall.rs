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

/// Handles `MSHV_ROOT_HVCALL` with its argument at `user`.
pub(crate) fn ioctl(hv: &dyn Hypervisor, target: Target, user: UserPtr) -> Result {
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
    for round in 0..=calls::MAX_DEPOSIT_ROUNDS {
        let raw = hv.passthrough(args.code, args.reps, reps_done, &input, &mut output);
        st = (raw & 0xffff) as u16;
        if args.reps > 0 {
            reps_done = ((raw >> 32) & 0xfff) as u16;
        }
        if st == status::SUCCESS {
            result = Ok(());
            break;
        }
        match status::deposit_pages(st) {
            Some(n) if round < calls::MAX_DEPOSIT_ROUNDS => {
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
