// SPDX-License-Identifier: GPL-2.0

//! Fault injection for the simulated hypervisor.
//!
//! Plain atomics, set from the driver's debugfs and consumed by the next
//! hypercalls that can fail that way, so tests can drive the driver's
//! deposit-and-retry and partial-rep paths deterministically; and a
//! probabilistic mode (a small deterministic PRNG, [`Prng`]) for fault runs
//! (`make check-faults`).

use crate::tlfs::status;
use kernel::sync::atomic::{Atomic, Relaxed};

/// Armed bit of the packed fail-at-rep request.
const ARMED: u64 = 1 << 63;

/// xorshift64* (Marsaglia; Vigna's multiplier): a small, deterministic
/// pseudo-random sequence. Pure arithmetic; the state is never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Prng(u64);

impl Prng {
    /// The generator seeded with `seed` (0 is replaced: it is a fixed point).
    pub(crate) const fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next state and its output.
    pub(crate) const fn next(self) -> (Self, u64) {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        (Self(x), x.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }
}

/// Whether output `r` of the generator selects a failure at `per_mille`
/// (0..=1000) chances in a thousand.
pub(crate) const fn selects(r: u64, per_mille: u32) -> bool {
    // The top bits are the best ones of xorshift64*.
    (r >> 32) % 1000 < per_mille as u64
}

/// The rep at which a selected failure of a call with `reps` reps (> 0)
/// happens: `0..reps`, from the low bits of the same output.
pub(crate) const fn failing_rep(r: u64, reps: usize) -> usize {
    if reps == 0 {
        0
    } else {
        ((r & 0xffff_ffff) % reps as u64) as usize
    }
}

/// Whether `pfns` (in deposit order) hold `n` consecutive entries that are
/// `n` physically consecutive pages starting at a multiple of `n`: one
/// naturally aligned block, as a contiguous allocation of that size gives.
pub(crate) fn has_aligned_run(pfns: &[u64], n: usize) -> bool {
    if n == 0 {
        return true;
    }
    pfns.windows(n)
        .any(|w| w[0] % n as u64 == 0 && w.iter().enumerate().all(|(k, &p)| p == w[0] + k as u64))
}

/// States of the contiguous-memory injection ([`Inject::set_contiguous`]).
const CONTIG_OFF: u32 = 0;
/// The next `CREATE_VP` is refused.
const CONTIG_ARMED: u32 = 1;
/// `CREATE_VP` is refused until a deposit brings a contiguous block.
const CONTIG_WAITING: u32 = 2;
/// A block came: the next `CREATE_VP` goes through.
const CONTIG_MET: u32 = 3;

/// Pages of the block `INSUFFICIENT_CONTIGUOUS_MEMORY` asks for (upstream's
/// `HV_MAX_CONTIGUOUS_ALLOCATION_PAGES`).
pub(crate) const CONTIGUOUS_PAGES: usize = 8;

/// Takes one from a count of pending injections; `false` if none is left.
pub(crate) fn take_one(counter: &Atomic<u32>) -> bool {
    let mut cur = counter.load(Relaxed);
    while cur > 0 {
        match counter.cmpxchg(cur, cur - 1, Relaxed) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
    false
}

/// Pending injected failures.
pub(crate) struct Inject {
    /// How many of the next map/create calls fail with INSUFFICIENT_MEMORY.
    no_memory: Atomic<u32>,
    /// The next map or unmap call fails after some reps: `ARMED | status <<
    /// 32 | reps`, or 0 when disarmed.
    fail_at_rep: Atomic<u64>,
    /// Random failures of map and unmap calls: `per_mille << 16 | status`, 0 = off.
    random: Atomic<u64>,
    /// The PRNG state of the random failures.
    rng: Atomic<u64>,
    /// How many of the next `finalize_partition` calls fail.
    finalize: Atomic<u32>,
    /// How many of the next `SET_PARTITION_PROPERTY` calls complete
    /// asynchronously (`CALL_PENDING`, then `HVMSG_ASYNC_CALL_COMPLETION`).
    call_pending: Atomic<u32>,
    /// Free root-pool pages `CREATE_PARTITION` needs and takes (0: none),
    /// answering `INSUFFICIENT_ROOT_MEMORY` while they are missing.
    root_pages: Atomic<u32>,
    /// `CONTIG_*`: `CREATE_VP` answers `INSUFFICIENT_CONTIGUOUS_MEMORY`
    /// until a deposit brings an aligned block of [`CONTIGUOUS_PAGES`].
    contiguous: Atomic<u32>,
    /// `CREATE_VP` calls refused that way.
    pub(crate) contiguous_refused: Atomic<u64>,
    /// Any call code: `code << 48 | status << 32 | rep << 16 | count`, 0
    /// when disarmed ([`Inject::set_call_failure`]).
    call_failure: Atomic<u64>,
    /// Calls failed that way.
    pub(crate) call_failures: Atomic<u64>,
    /// An injected memory shortage that no deposit has met yet: `code << 16
    /// | status` of the call it refused, 0 when none ([`Inject::owe`]).
    short: Atomic<u32>,
}

/// What [`Inject::take_call_failure`] makes of a call with `reps` reps,
/// resumed at `start`, when the injected failure is at rep `rep`. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallFailure {
    /// Fail now with no (further) rep done: a simple call, or the failing
    /// rep is where the call resumes (or before it).
    Now,
    /// Run the first `reps` reps (the call's reps up to the failing one),
    /// then fail there if they all succeeded.
    After(u16),
    /// The failing rep is past this call's reps: it runs normally.
    NotHere,
}

/// See [`CallFailure`].
pub(crate) const fn call_failure_at(reps: u16, start: u16, rep: u16) -> CallFailure {
    if reps == 0 || rep <= start {
        CallFailure::Now
    } else if rep < reps {
        CallFailure::After(rep)
    } else {
        CallFailure::NotHere
    }
}

impl Inject {
    /// Nothing injected.
    pub(crate) const fn new() -> Self {
        Self {
            no_memory: Atomic::new(0),
            fail_at_rep: Atomic::new(0),
            random: Atomic::new(0),
            rng: Atomic::new(Prng::new(0).0),
            finalize: Atomic::new(0),
            call_pending: Atomic::new(0),
            root_pages: Atomic::new(0),
            contiguous: Atomic::new(CONTIG_OFF),
            contiguous_refused: Atomic::new(0),
            call_failure: Atomic::new(0),
            call_failures: Atomic::new(0),
            short: Atomic::new(0),
        }
    }

    /// Makes the next `count` calls of `code` (memory, fast or dispatch)
    /// fail with `status` at rep `rep` (reps before it take effect; a
    /// simple call fails with no side effect). Status or count 0 disarms.
    pub(crate) fn set_call_failure(&self, code: u16, status: u16, rep: u16, count: u16) {
        let v = if status == 0 || count == 0 {
            0
        } else {
            u64::from(code) << 48
                | u64::from(status) << 32
                | u64::from(rep) << 16
                | u64::from(count)
        };
        self.call_failure.store(v, Relaxed);
    }

    /// Consumes one injected failure of a call of `code`: `(status, rep)`.
    pub(crate) fn take_call_failure(&self, code: u16) -> Option<(u16, u16)> {
        let mut cur = self.call_failure.load(Relaxed);
        loop {
            if cur == 0 || (cur >> 48) as u16 != code {
                return None;
            }
            let count = cur & 0xffff;
            let next = if count <= 1 { 0 } else { cur - 1 };
            match self.call_failure.cmpxchg(cur, next, Relaxed) {
                Ok(_) => {
                    self.call_failures.fetch_add(1, Relaxed);
                    return Some(((cur >> 32) as u16, (cur >> 16) as u16));
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Makes the next `CREATE_VP` answer `INSUFFICIENT_CONTIGUOUS_MEMORY`,
    /// and every later one too until a deposit (into any partition) brings
    /// a naturally aligned block of [`CONTIGUOUS_PAGES`] pages.
    pub(crate) fn set_contiguous(&self) {
        self.contiguous.store(CONTIG_ARMED, Relaxed);
    }

    /// Whether this `CREATE_VP` is refused for want of contiguous memory.
    pub(crate) fn contiguous_refuses(&self) -> bool {
        let refuse = match self.contiguous.load(Relaxed) {
            CONTIG_ARMED => {
                self.contiguous.store(CONTIG_WAITING, Relaxed);
                true
            }
            CONTIG_WAITING => true,
            CONTIG_MET => {
                self.contiguous.store(CONTIG_OFF, Relaxed);
                false
            }
            _ => false,
        };
        if refuse {
            self.contiguous_refused.fetch_add(1, Relaxed);
        }
        refuse
    }

    /// Records that an injected `status` refused a call of `code`. If it is
    /// a memory status (one the root answers with a deposit), every later
    /// call of `code` gets the same answer until a deposit arrives
    /// ([`Inject::deposited`]), as Hyper-V's calls do while its pool stays
    /// short: a driver that retries without depositing gets nowhere. The
    /// emulator owes map, initialize, create-VP and `sim/inject_call`
    /// shortages, not the random ones of unmap calls: the driver unmaps
    /// whole entries, which needs no memory, and takes such a failure as a
    /// transient one (`calls::unmap_batched`).
    pub(crate) fn owe(&self, code: u16, status: u16) {
        if status::deposit_pages(status).is_some() {
            self.short
                .store((u32::from(code) << 16) | u32::from(status), Relaxed);
        }
    }

    /// The status an unmet injected shortage gives a call of `code`, if any.
    pub(crate) fn owed(&self, code: u16) -> Option<u16> {
        let v = self.short.load(Relaxed);
        (v != 0 && (v >> 16) as u16 == code).then_some(v as u16)
    }

    /// A deposit of `pfns` arrived: it meets an injected shortage (into any
    /// partition; the emulator does not check that it was the right one).
    pub(crate) fn deposited(&self, pfns: &[u64]) {
        self.short.store(0, Relaxed);
        if self.contiguous.load(Relaxed) == CONTIG_WAITING
            && has_aligned_run(pfns, CONTIGUOUS_PAGES)
        {
            self.contiguous.store(CONTIG_MET, Relaxed);
        }
    }

    /// Makes each later `CREATE_PARTITION` need `pages` free root pages.
    pub(crate) fn set_root_pages(&self, pages: u32) {
        self.root_pages.store(pages, Relaxed);
    }

    /// Free root pages a `CREATE_PARTITION` needs now.
    pub(crate) fn root_pages(&self) -> usize {
        self.root_pages.load(Relaxed) as usize
    }

    /// Makes the next `count` `SET_PARTITION_PROPERTY` calls asynchronous.
    pub(crate) fn set_call_pending(&self, count: u32) {
        self.call_pending.store(count, Relaxed);
    }

    /// Whether this `SET_PARTITION_PROPERTY` completes asynchronously.
    pub(crate) fn take_call_pending(&self) -> bool {
        take_one(&self.call_pending)
    }

    /// Makes each later map or unmap call fail with `status` at a random rep
    /// with a probability of `per_mille`/1000 (clamped to 1000); 0 turns it off.
    pub(crate) fn set_random(&self, per_mille: u32, status: u16) {
        let v = if per_mille == 0 || status == 0 {
            0
        } else {
            (u64::from(per_mille.min(1000)) << 16) | u64::from(status)
        };
        self.random.store(v, Relaxed);
    }

    /// Draws whether this call of `reps` reps fails: `(rep, status)`.
    pub(crate) fn take_random(&self, reps: usize) -> Option<(usize, u16)> {
        let v = self.random.load(Relaxed);
        if v == 0 {
            return None;
        }
        let (per_mille, status) = ((v >> 16) as u32, (v & 0xffff) as u16);
        let mut cur = self.rng.load(Relaxed);
        loop {
            let (next, r) = Prng(cur).next();
            match self.rng.cmpxchg(cur, next.0, Relaxed) {
                Ok(_) => {
                    return selects(r, per_mille).then(|| (failing_rep(r, reps), status));
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Draws the failure of a map or unmap call of `reps` reps: the pending
    /// fail-at-rep request, else a random one. `(rep, status)`.
    pub(crate) fn take_rep_failure(&self, reps: usize) -> Option<(usize, u16)> {
        self.take_fail_at_rep().or_else(|| self.take_random(reps))
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
        take_one(&self.no_memory)
    }

    /// Makes the next `count` `finalize_partition` calls fail.
    pub(crate) fn set_finalize(&self, count: u32) {
        self.finalize.store(count, Relaxed);
    }

    /// Consumes one pending finalize failure, if any.
    pub(crate) fn take_finalize(&self) -> bool {
        take_one(&self.finalize)
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

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_sim_inject)]
mod tests {
    use super::*;

    #[test]
    fn memory_shortage_lasts_until_a_deposit() {
        let i = Inject::new();
        assert_eq!(i.owed(0x4b), None);
        // Other statuses are not owed.
        i.owe(0x4b, status::INVALID_PARAMETER);
        assert_eq!(i.owed(0x4b), None);
        i.owe(0x4b, status::INSUFFICIENT_MEMORY);
        assert_eq!(i.owed(0x4b), Some(status::INSUFFICIENT_MEMORY));
        assert_eq!(i.owed(0x4b), Some(status::INSUFFICIENT_MEMORY));
        assert_eq!(i.owed(0x4e), None);
        i.deposited(&[7]);
        assert_eq!(i.owed(0x4b), None);
        i.owe(0x4e, status::INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY);
        assert_eq!(
            i.owed(0x4e),
            Some(status::INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY)
        );
        i.deposited(&[]);
        assert_eq!(i.owed(0x4e), None);
    }

    #[test]
    fn call_failure_placement() {
        use CallFailure::*;
        // Simple calls fail at once.
        assert_eq!(call_failure_at(0, 0, 0), Now);
        assert_eq!(call_failure_at(0, 0, 5), Now);
        // A rep call: reps before the failing one run, the rest do not.
        assert_eq!(call_failure_at(10, 0, 0), Now);
        assert_eq!(call_failure_at(10, 0, 1), After(1));
        assert_eq!(call_failure_at(10, 0, 9), After(9));
        assert_eq!(call_failure_at(10, 0, 10), NotHere);
        assert_eq!(call_failure_at(10, 0, u16::MAX), NotHere);
        // Resumed past or at the failing rep: fails with nothing more done.
        assert_eq!(call_failure_at(10, 4, 4), Now);
        assert_eq!(call_failure_at(10, 4, 2), Now);
        assert_eq!(call_failure_at(10, 4, 5), After(5));
    }

    #[test]
    fn call_failure_counts() {
        let i = Inject::new();
        i.set_call_failure(0x49, 0x71, 3, 2);
        assert_eq!(i.take_call_failure(0x48), None);
        assert_eq!(i.take_call_failure(0x49), Some((0x71, 3)));
        assert_eq!(i.take_call_failure(0x49), Some((0x71, 3)));
        assert_eq!(i.take_call_failure(0x49), None);
        assert_eq!(i.call_failures.load(Relaxed), 2);
        i.set_call_failure(0x49, 0, 3, 2);
        assert_eq!(i.take_call_failure(0x49), None);
    }

    #[test]
    fn aligned_runs() {
        assert!(has_aligned_run(&[8, 9, 10, 11, 12, 13, 14, 15], 8));
        assert!(has_aligned_run(&[3, 16, 17, 18, 19, 20, 21, 22, 23, 5], 8));
        // Consecutive but not aligned, aligned but with a gap, too short,
        // out of order.
        assert!(!has_aligned_run(&[9, 10, 11, 12, 13, 14, 15, 16], 8));
        assert!(!has_aligned_run(&[8, 9, 10, 11, 12, 13, 14, 16], 8));
        assert!(!has_aligned_run(&[8, 9, 10, 11, 12, 13, 14], 8));
        assert!(!has_aligned_run(&[15, 14, 13, 12, 11, 10, 9, 8], 8));
        assert!(has_aligned_run(&[], 0));
        assert!(has_aligned_run(&[7], 1));
    }

    #[test]
    fn contiguous_state_machine() {
        let i = Inject::new();
        assert!(!i.contiguous_refuses());
        i.set_contiguous();
        assert!(i.contiguous_refuses());
        assert!(i.contiguous_refuses());
        i.deposited(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(i.contiguous_refuses());
        i.deposited(&[64, 65, 66, 67, 68, 69, 70, 71]);
        assert!(!i.contiguous_refuses());
        assert!(!i.contiguous_refuses());
        assert_eq!(i.contiguous_refused.load(Relaxed), 3);
    }

    #[test]
    fn prng_sequence() {
        // Deterministic, never stuck at 0, and 0 is not a seed.
        let (a, ra) = Prng::new(1).next();
        let (b, rb) = Prng::new(1).next();
        assert_eq!((a, ra), (b, rb));
        assert_eq!(Prng::new(0), Prng::new(0x9e37_79b9_7f4a_7c15));
        // xorshift64* from state 1: x = 1 ^ (1 << 25) ^ ((1 ^ 1 << 25) >> 27).
        assert_eq!(a, Prng((1u64 | 1 << 25) ^ ((1u64 | 1 << 25) >> 27)));
        assert_eq!(ra, a.0.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut p = Prng::new(42);
        for _ in 0..1000 {
            p = p.next().0;
            assert_ne!(p.0, 0);
        }
    }

    #[test]
    fn selection_rates() {
        assert!(!selects(u64::MAX, 0));
        assert!(selects(u64::MAX, 1000));
        // (r >> 32) % 1000 == 5: selected from 6 per mille up.
        let r = 5u64 << 32;
        assert!(!selects(r, 5));
        assert!(selects(r, 6));
        // Over 10000 draws, 10 per mille selects 100 +- 40.
        let mut p = Prng::new(7);
        let mut hits = 0;
        for _ in 0..10000 {
            let (n, r) = p.next();
            p = n;
            if selects(r, 10) {
                hits += 1;
            }
        }
        assert!((60..=140).contains(&hits));
    }

    #[test]
    fn failing_rep_in_range() {
        assert_eq!(failing_rep(12345, 0), 0);
        assert_eq!(failing_rep(12345, 1), 0);
        assert_eq!(failing_rep(0xdead_0000_0007, 5), 2);
        let mut p = Prng::new(3);
        for _ in 0..1000 {
            let (n, r) = p.next();
            p = n;
            assert!(failing_rep(r, 512) < 512);
        }
    }

    #[test]
    fn random_injection() {
        let inj = Inject::new();
        assert_eq!(inj.take_random(4), None);
        inj.set_random(1000, 11);
        for reps in 1..20 {
            let r = inj.take_random(reps);
            assert!(matches!(r, Some((rep, 11)) if rep < reps));
        }
        inj.set_random(0, 11);
        assert_eq!(inj.take_random(4), None);
    }
}
