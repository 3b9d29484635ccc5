// SPDX-License-Identifier: GPL-2.0

//! Fault injection for the simulated hypervisor.
//!
//! Plain atomics, set from the driver's debugfs and consumed by the next
//! hypercalls that can fail that way, so tests can drive the driver's
//! deposit-and-retry and partial-rep paths deterministically.

use kernel::sync::atomic::{Atomic, Relaxed};

/// Armed bit of the packed fail-at-rep request.
const ARMED: u64 = 1 << 63;

/// Pending injected failures.
pub(crate) struct Inject {
    /// How many of the next map/create calls fail with INSUFFICIENT_MEMORY.
    no_memory: Atomic<u32>,
    /// The next map or unmap call fails after some reps: `ARMED | status <<
    /// 32 | reps`, or 0 when disarmed.
    fail_at_rep: Atomic<u64>,
}

impl Inject {
    /// Nothing injected.
    pub(crate) const fn new() -> Self {
        Self {
            no_memory: Atomic::new(0),
            fail_at_rep: Atomic::new(0),
        }
    }

    /// Makes the next `count` map/create calls fail with
    /// `HV_STATUS_INSUFFICIENT_MEMORY` (replacing any pending count).
    pub(crate) fn set_no_memory(&self, count: u32) {
        self.no_memory.store(count, Relaxed);
    }

    /// Makes the next map or unmap call fail with `status` after `reps` reps
    /// (a call with at most `reps` reps succeeds and disarms it). Status 0
    /// disarms.
    pub(crate) fn set_fail_at_rep(&self, reps: u32, status: u16) {
        let v = if status == 0 {
            0
        } else {
            ARMED | (u64::from(status) << 32) | u64::from(reps)
        };
        self.fail_at_rep.store(v, Relaxed);
    }

    /// Consumes one injected INSUFFICIENT_MEMORY, if any is pending.
    pub(crate) fn take_no_memory(&self) -> bool {
        let mut cur = self.no_memory.load(Relaxed);
        while cur > 0 {
            match self.no_memory.cmpxchg(cur, cur - 1, Relaxed) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    /// Consumes the pending fail-at-rep request: `(reps, status)`.
    pub(crate) fn take_fail_at_rep(&self) -> Option<(usize, u16)> {
        let v = self.fail_at_rep.xchg(0, Relaxed);
        if v & ARMED == 0 {
            return None;
        }
        Some(((v & 0xffff_ffff) as usize, (v >> 32) as u16))
    }
}
