// SPDX-License-Identifier: GPL-2.0

//! `MSHV_GET_GPAP_ACCESS_BITMAP`: the accessed or dirty bits of a range of
//! guest pages as a bitmap, read with `HVCALL_GET_GPA_PAGES_ACCESS_STATES`
//! and optionally cleared or set afterwards.
//!
//! Differences from upstream 7.3 (same results for every input upstream
//! handles correctly):
//!
//! - `MSHV_GPAP_ACCESS_OP_NOOP` changes nothing (upstream passes the SET
//!   flags, so a "NOOP" read marks every page);
//! - `page_count` above `u32::MAX` fails with `E2BIG` (upstream truncates it
//!   to 32 bits silently), and a range whose end overflows with `EINVAL`;
//! - the kernel buffer is one page whatever the count (upstream allocates a
//!   byte per page): batches of [`BATCH`] pages are read and packed into the
//!   user bitmap one after the other. If the hypercall fails part-way, the
//!   bytes of the batches before it are already written;
//! - an `INSUFFICIENT_MEMORY` answer is handled by depositing and resuming;
//! - a fatal signal stops the walk between batches (`EINTR`).

use crate::{
    hv::{
        self, calls, Hypervisor, GPA_STATE_CLEAR_ACCESSED, GPA_STATE_CLEAR_DIRTY,
        GPA_STATE_SET_ACCESSED, GPA_STATE_SET_DIRTY,
    },
    sys,
    uapi::{self, MshvGpapAccessBitmap},
};
use kernel::{
    prelude::*,
    uaccess::{UserPtr, UserSlice},
};

/// Pages per hypercall: fits one output page, a multiple of 8 (whole bitmap
/// bytes) and of 512 (a 2 MiB-aligned range never splits a 2 MiB mapping
/// between two calls).
pub(crate) const BATCH: usize = (hv::GPA_ACCESS_STATES_BATCH / 512) * 512;
const _: () = assert!(BATCH == 3584 && BATCH % 8 == 0);

/// Pages deposited when the hypervisor needs memory (to split a 2 MiB
/// mapping whose bits are cleared in part).
const DEPOSIT_PAGES: usize = 16;

/// A validated request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// `hv_gpa_page_access_state_flags`.
    pub(crate) flags: u64,
    /// The state bit reported (`hv_gpa_page_access_state`).
    pub(crate) mask: u8,
    /// First gfn.
    pub(crate) base: u64,
    /// Pages.
    pub(crate) count: u64,
}

/// Checks the ioctl argument and derives the hypercall flags.
pub(crate) fn validate(a: &MshvGpapAccessBitmap) -> Result<Request> {
    if a.access_type >= uapi::MSHV_GPAP_ACCESS_TYPE_COUNT
        || a.access_op >= uapi::MSHV_GPAP_ACCESS_OP_COUNT
        || a.rsvd.iter().any(|&b| b != 0)
        || a.page_count == 0
        || a.bitmap_ptr == 0
    {
        return Err(EINVAL);
    }
    if a.page_count > u64::from(u32::MAX) {
        return Err(E2BIG);
    }
    if a.gpap_base.checked_add(a.page_count).is_none() {
        return Err(EINVAL);
    }
    let dirty = a.access_type == uapi::MSHV_GPAP_ACCESS_TYPE_DIRTY;
    let flags = match (dirty, a.access_op) {
        (_, uapi::MSHV_GPAP_ACCESS_OP_NOOP) => 0,
        // Not accessed implies not dirty.
        (false, uapi::MSHV_GPAP_ACCESS_OP_CLEAR) => {
            GPA_STATE_CLEAR_ACCESSED | GPA_STATE_CLEAR_DIRTY
        }
        (false, _) => GPA_STATE_SET_ACCESSED,
        (true, uapi::MSHV_GPAP_ACCESS_OP_CLEAR) => GPA_STATE_CLEAR_DIRTY,
        // Dirty implies accessed.
        (true, _) => GPA_STATE_SET_DIRTY | GPA_STATE_SET_ACCESSED,
    };
    Ok(Request {
        flags,
        mask: if dirty { 2 } else { 1 },
        base: a.gpap_base,
        count: a.page_count,
    })
}

/// Bytes of bitmap for `count` pages.
pub(crate) fn bitmap_bytes(count: u64) -> u64 {
    count.div_ceil(8)
}

/// Pages in the batch that starts after `done` of `count` pages.
pub(crate) fn batch_len(count: u64, done: u64) -> usize {
    count.saturating_sub(done).min(BATCH as u64) as usize
}

/// Packs `states` into `out`: bit `i` (LSB first) is whether `states[i]`
/// has a bit of `mask`. Bits past `states.len()` in the last byte are 0.
pub(crate) fn pack(states: &[u8], mask: u8, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = states
            .iter()
            .skip(i * 8)
            .take(8)
            .enumerate()
            .fold(0, |acc, (b, &s)| acc | (u8::from(s & mask != 0) << b));
    }
}

/// Handles the ioctl for partition `pt` with its argument at `user`.
pub(crate) fn ioctl(hv: &dyn Hypervisor, pt: u64, user: UserPtr) -> Result {
    let args: MshvGpapAccessBitmap = UserSlice::new(user, size_of::<MshvGpapAccessBitmap>())
        .reader()
        .read()?;
    let req = validate(&args)?;
    let len = usize::try_from(bitmap_bytes(req.count)).map_err(|_| E2BIG)?;
    let mut writer = UserSlice::new(UserPtr::from_addr(args.bitmap_ptr as usize), len).writer();
    let mut states = KBox::new([0u8; BATCH], GFP_KERNEL)?;
    let mut bits = [0u8; BATCH / 8];
    let mut done = 0u64;
    while done < req.count {
        let n = batch_len(req.count, done);
        let mut got = 0;
        let mut rounds = 0;
        while got < n {
            let gfn = req.base + done + got as u64;
            let Some(out) = states.get_mut(got..n) else {
                return Err(EINVAL);
            };
            match hv.get_gpa_access_states(pt, gfn, req.flags, out) {
                Ok(()) => got = n,
                Err(e) => {
                    got += e.done;
                    if !e.error.needs_memory() || rounds >= calls::MAX_DEPOSIT_ROUNDS {
                        return Err(e.error.into());
                    }
                    rounds += 1;
                    calls::deposit(hv, pt, DEPOSIT_PAGES)?;
                }
            }
        }
        let nbytes = n.div_ceil(8);
        let (Some(s), Some(b)) = (states.get(..n), bits.get_mut(..nbytes)) else {
            return Err(EINVAL);
        };
        pack(s, req.mask, b);
        writer.write_slice(b)?;
        done += n as u64;
        // Only a fatal signal stops the walk (up to 2^32 pages): stopping
        // half-way through a CLEAR loses the bits of the pages already
        // cleared, which matters to nobody once the caller's process (the
        // only one whose mm may use the partition) is dying.
        sys::page::cond_resched();
        if done < req.count && sys::page::fatal_signal_pending() {
            return Err(EINTR);
        }
    }
    Ok(())
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_gpap)]
mod tests {
    use super::*;

    fn args(access_type: u8, access_op: u8, count: u64) -> MshvGpapAccessBitmap {
        MshvGpapAccessBitmap {
            access_type,
            access_op,
            rsvd: [0; 6],
            page_count: count,
            gpap_base: 0x100,
            bitmap_ptr: 0x1000,
        }
    }

    #[test]
    fn validation_and_flags() {
        use uapi::*;
        let f = |t, o| validate(&args(t, o, 8)).map(|r| (r.flags, r.mask));
        let (a, d) = (MSHV_GPAP_ACCESS_TYPE_ACCESSED, MSHV_GPAP_ACCESS_TYPE_DIRTY);
        // NOOP really is no operation (upstream would pass SET flags).
        assert_eq!(f(a, MSHV_GPAP_ACCESS_OP_NOOP), Ok((0, 1)));
        assert_eq!(f(d, MSHV_GPAP_ACCESS_OP_NOOP), Ok((0, 2)));
        assert_eq!(f(a, MSHV_GPAP_ACCESS_OP_CLEAR), Ok((0b0101, 1)));
        assert_eq!(f(a, MSHV_GPAP_ACCESS_OP_SET), Ok((0b0010, 1)));
        assert_eq!(f(d, MSHV_GPAP_ACCESS_OP_CLEAR), Ok((0b0100, 2)));
        assert_eq!(f(d, MSHV_GPAP_ACCESS_OP_SET), Ok((0b1010, 2)));
        assert_eq!(f(2, 0), Err(EINVAL));
        assert_eq!(f(0, 3), Err(EINVAL));
        let mut x = args(0, 0, 8);
        x.rsvd[5] = 1;
        assert_eq!(validate(&x), Err(EINVAL));
        assert_eq!(validate(&args(0, 0, 0)), Err(EINVAL));
        let mut x = args(0, 0, 8);
        x.bitmap_ptr = 0;
        assert_eq!(validate(&x), Err(EINVAL));
        assert_eq!(validate(&args(0, 0, 1 << 32)), Err(E2BIG));
        assert!(validate(&args(0, 0, u64::from(u32::MAX))).is_ok());
        let mut x = args(0, 0, 2);
        x.gpap_base = u64::MAX;
        assert_eq!(validate(&x), Err(EINVAL));
    }

    #[test]
    fn batching() {
        assert_eq!(BATCH, 3584);
        assert_eq!(bitmap_bytes(1), 1);
        assert_eq!(bitmap_bytes(8), 1);
        assert_eq!(bitmap_bytes(9), 2);
        // 8 GiB of guest memory: 2 Mi pages, 256 KiB of bitmap, 586 calls.
        let pages = 8u64 << 18;
        assert_eq!(bitmap_bytes(pages), 256 << 10);
        let (mut done, mut calls, mut bytes) = (0u64, 0, 0u64);
        while done < pages {
            let n = batch_len(pages, done);
            assert!(n > 0 && n <= hv::GPA_ACCESS_STATES_BATCH);
            // Every batch but the last fills whole bytes.
            assert!(n % 8 == 0 || done + n as u64 == pages);
            bytes += n.div_ceil(8) as u64;
            done += n as u64;
            calls += 1;
        }
        assert_eq!((done, calls, bytes), (pages, 586, 256 << 10));
        assert_eq!(batch_len(10, 3), 7);
        assert_eq!(batch_len(10, 10), 0);
        assert_eq!(batch_len(10, 11), 0);
    }

    #[test]
    fn packing() {
        let states = [1u8, 2, 3, 0, 0, 0, 0, 2, 3, 1];
        let mut out = [0xffu8; 2];
        pack(&states, 2, &mut out);
        assert_eq!(out, [0b1000_0110, 0b01]);
        pack(&states, 1, &mut out);
        assert_eq!(out, [0b0000_0101, 0b11]);
        let mut one = [0xffu8; 1];
        pack(&[0, 0, 3], 1, &mut one);
        assert_eq!(one, [0b100]);
    }
}
