// SPDX-License-Identifier: GPL-2.0

//! `MSHV_RUN_VP` under either of Hyper-V's scheduler families
//! (docs/design.md, "Running a VP").
//!
//! # The hypervisor's own scheduler (LP, LP_SMT, core)
//!
//! The hypervisor runs the VP whenever its two suspend registers are clear.
//! RUN_VP clears `INTERCEPT_SUSPEND`, then `EXPLICIT_SUSPEND` (one call; the
//! hypervisor applies them in order), and sleeps until the SynIC handler's
//! kick for `HVMSG_OPAQUE_INTERCEPT`: the intercept's message is then in
//! the VP's intercept page and the VP is intercept-suspended.
//!
//! A signal ends the sleep early. The VP is then suspended explicitly, and
//! `INTERCEPT_SUSPEND` read back says whether an intercept got in first: 0,
//! none will come and RUN_VP returns `EINTR` (the VP stays explicitly
//! suspended until the next RUN_VP); 1, its message is in flight and the
//! runner waits for the kick, uninterruptibly, and returns the message.
//! Returning `EINTR` there would lose the intercept (the next RUN_VP clears
//! the suspension and the guest goes on past it) and leave a stale kick
//! that a later run would take for its own. The hypervisor makes the read
//! final: the suspension takes effect before the register write returns.
//!
//! # The root (integrated) scheduler
//!
//! The VP runs only inside `HVCALL_DISPATCH_VP` on the calling CPU. One
//! round: handle the thread's work (a pending signal ends the run with
//! `EINTR`, `need_resched` yields), then dispatch with preemption disabled
//! and interrupts enabled, from the seam's per-CPU dispatch pages (never
//! under a lock of this backend). The hypervisor answers with a state and an
//! event:
//!
//! | state, event | meaning | what the loop does |
//! |---|---|---|
//! | READY, INTERCEPT | a message is in the VP's intercept page; the VP is intercept-suspended | return it; the next dispatch clears the suspension |
//! | READY, other | the time slice ended, or the root has work | dispatch again |
//! | BLOCKED, any | the VP halted (or is explicitly suspended) | sleep until the hypervisor signals the VP runnable |
//!
//! The wake-up is a scheduler signal message (`HVMSG_SCHEDULER_VP_SIGNAL_*`)
//! on SINT0 that the SynIC handler turns into [`VpRun::kick`]. `kicked` is
//! cleared before each dispatch and set only by a kick, so a signal that
//! arrives between the BLOCKED answer and the sleep is not lost, and one
//! left over from an earlier block costs one extra dispatch at most.

use super::{abi, hyperv::HyperV, status, HvError, Hypervisor, RunExit};
use crate::{
    sys::cpu::{self, HvPageMap},
    sys::page,
};
use kernel::{
    new_condvar, new_spinlock_irq,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, CondVar, SpinLockIrq,
    },
    time::{delay::fsleep, Delta},
    transmute::AsBytes,
};

/// A VP's stats pages (`HVCALL_MAP_STATS_PAGE`, VP SELF and PARENT areas),
/// mapped into the kernel. The root scheduler's run loop reads
/// `ROOT_DISPATCH_THREAD_BLOCKED` from them.
pub(crate) struct VpStats {
    /// The SELF area.
    pub(crate) own: HvPageMap,
    /// The PARENT area; `None` on a hypervisor without one (SELF then has
    /// every counter).
    pub(crate) parent: Option<HvPageMap>,
}

impl VpStats {
    /// Whether the hypervisor says the VP's dispatch thread must stay
    /// blocked (upstream reads PARENT and SELF).
    fn dispatch_thread_blocked(&self) -> bool {
        let i = abi::HV_VP_COUNTER_ROOT_DISPATCH_THREAD_BLOCKED;
        self.parent.as_ref().is_some_and(|p| p.read_u64(i) != 0) || self.own.read_u64(i) != 0
    }
}

/// What one VP's runner and the SynIC handler share.
#[derive(Default)]
struct RunState {
    /// The hypervisor signalled the VP runnable since the last dispatch.
    kicked: bool,
    /// The last dispatch answered BLOCKED: wait for a kick before the next.
    blocked: bool,
    /// The last dispatch left the VP intercept-suspended.
    intercept_suspended: bool,
}

/// The run state of one VP.
#[pin_data]
pub(crate) struct VpRun {
    /// IRQ-safe: the SynIC handler kicks from hard-IRQ context. A leaf.
    #[pin]
    state: SpinLockIrq<RunState>,
    /// The runner sleeps here while the VP is blocked.
    #[pin]
    wake: CondVar,
    /// Kicks received (upstream's `vp_signaled_count`).
    pub(crate) signaled: Atomic<u64>,
    /// The stats pages until the VP is torn down. A leaf lock, taken under
    /// `state` by the run loop's wait; IRQ-safe like `state`, which the
    /// SynIC handler's deferred part takes in interrupt context (lockdep:
    /// an IRQ-unsafe lock must not nest inside an IRQ-safe one).
    #[pin]
    stats: SpinLockIrq<Option<VpStats>>,
}

impl VpRun {
    /// A VP that has never run, with its stats pages.
    pub(crate) fn new(stats: Option<VpStats>) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                state <- new_spinlock_irq!(RunState::default(), "VpRun::state"),
                wake <- new_condvar!("VpRun::wake"),
                signaled: Atomic::new(0),
                stats <- new_spinlock_irq!(stats, "VpRun::stats"),
            }),
            GFP_KERNEL,
        )
    }

    /// Takes the stats pages away (teardown), for the caller to unmap (the
    /// mappings go when the caller drops them, outside the lock).
    pub(crate) fn take_stats(&self) -> Option<VpStats> {
        self.stats.lock().take()
    }

    /// `ROOT_DISPATCH_THREAD_BLOCKED` of the VP (false without stats).
    pub(super) fn dispatch_thread_blocked(&self) -> bool {
        self.stats
            .lock()
            .as_ref()
            .is_some_and(VpStats::dispatch_thread_blocked)
    }

    /// The hypervisor signalled the VP runnable. Hard-IRQ safe.
    pub(crate) fn kick(&self) {
        self.signaled.fetch_add(1, Relaxed);
        self.state.lock().kicked = true;
        self.wake.notify_all();
    }

    /// Sleeps until the hypervisor's kick and takes it; `false` if a signal
    /// came first.
    fn wait_kick_interruptible(&self) -> bool {
        let mut st = self.state.lock();
        while !st.kicked {
            if self.wake.wait_interruptible(&mut st) {
                return false;
            }
        }
        st.kicked = false;
        true
    }

    /// Sleeps until the hypervisor's kick and takes it, whatever signals
    /// come: for a message already in flight.
    fn wait_kick(&self) {
        let mut st = self.state.lock();
        while !st.kicked {
            self.wake.wait(&mut st);
        }
        st.kicked = false;
    }

    /// Teardown under the root scheduler: waits (up to a second) until
    /// the kicks received reach `sent`, the hypervisor's count of signals
    /// for the VP. `false` if they did not.
    fn drain(&self, sent: u64) -> bool {
        for _ in 0..1000 {
            if self.signaled.load(Relaxed) >= sent {
                return true;
            }
            fsleep(Delta::from_millis(1));
        }
        false
    }

    /// Sleeps while the VP is blocked and not kicked, or kicked while the
    /// hypervisor still says its dispatch thread is blocked (a signal left
    /// over from an earlier wake-up; the next one follows the counter's
    /// clearing). `false` if a signal interrupted the sleep (the VP stays
    /// blocked).
    fn wait_runnable(&self) -> bool {
        let mut st = self.state.lock();
        while st.blocked && (!st.kicked || self.dispatch_thread_blocked()) {
            if self.wake.wait_interruptible(&mut st) {
                return false;
            }
        }
        st.blocked = false;
        st.kicked = false;
        true
    }
}

/// Runs VP `vp` of partition `pt` until it exits with a message or a signal
/// is pending. Called with the VP's run mutex held (one runner per VP).
pub(crate) fn run_vp(hv: &HyperV, run: &VpRun, pt: u64, vp: u32) -> Result<RunExit> {
    match hv.scheduler {
        abi::HV_SCHEDULER_TYPE_ROOT => run_dispatched(hv, run, pt, vp),
        abi::HV_SCHEDULER_TYPE_LP
        | abi::HV_SCHEDULER_TYPE_LP_SMT
        | abi::HV_SCHEDULER_TYPE_CORE_SMT => run_scheduled(hv, run, pt, vp),
        other => {
            kernel::pr_warn_once!("RUN_VP: unknown hypervisor scheduler type {}\n", other);
            Err(EOPNOTSUPP)
        }
    }
}

/// Teardown of VPs of partition `pt` under the root scheduler, before
/// `DELETE_VP` or `FINALIZE_PARTITION` (upstream's `drain_all_vps`): each is
/// dispatch-suspended, after which the hypervisor sends it no more
/// signals, and then the signals it did send (`VP_ROOT_SIGNAL_COUNT`) are
/// waited for, so none arrives after the VP's state is gone. No RUN_VP is
/// in flight (the partition's fds are closed). May sleep.
pub(crate) fn drain_vps(hv: &HyperV, pt: u64, vps: &[(u32, Arc<VpRun>)]) {
    if hv.scheduler != abi::HV_SCHEDULER_TYPE_ROOT {
        return;
    }
    for (index, run) in vps {
        let stop = [suspend(abi::HV_REGISTER_DISPATCH_SUSPEND, true)];
        if let Err(e) = hv.set_vp_registers(pt, *index, &stop) {
            kernel::pr_warn!(
                "partition {} VP {}: DISPATCH_SUSPEND failed ({:?})\n",
                pt,
                index,
                e.error
            );
            continue;
        }
        let mut sent = [[0u64; 2]];
        let names = [abi::HV_REGISTER_VP_ROOT_SIGNAL_COUNT];
        if let Err(e) = hv.get_vp_registers(pt, *index, &names, &mut sent) {
            kernel::pr_warn!(
                "partition {} VP {}: VP_ROOT_SIGNAL_COUNT unreadable ({:?})\n",
                pt,
                index,
                e.error
            );
            continue;
        }
        if !run.drain(sent[0][0]) {
            kernel::pr_warn!(
                "partition {} VP {}: {} scheduler signals sent, {} received after 1 s\n",
                pt,
                index,
                sent[0][0],
                run.signaled.load(Relaxed)
            );
        }
    }
}

/// One suspend register, as a set-registers entry.
fn suspend(name: u32, on: bool) -> (u32, [u64; 2]) {
    (name, [u64::from(on), 0])
}

/// RUN_VP under the hypervisor's own scheduler (module documentation).
fn run_scheduled(hv: &HyperV, run: &VpRun, pt: u64, vp: u32) -> Result<RunExit> {
    let resume = [
        suspend(abi::HV_REGISTER_INTERCEPT_SUSPEND, false),
        suspend(abi::HV_REGISTER_EXPLICIT_SUSPEND, false),
    ];
    hv.set_vp_registers(pt, vp, &resume)
        .map_err(|e| Error::from(e.error))?;
    if run.wait_kick_interruptible() {
        return Ok(RunExit::Message);
    }
    let stop = [suspend(abi::HV_REGISTER_EXPLICIT_SUSPEND, true)];
    hv.set_vp_registers(pt, vp, &stop)
        .map_err(|e| Error::from(e.error))?;
    let mut value = [[0u64; 2]];
    hv.get_vp_registers(pt, vp, &[abi::HV_REGISTER_INTERCEPT_SUSPEND], &mut value)
        .map_err(|e| Error::from(e.error))?;
    if value[0][0] & 1 == 0 {
        return Ok(RunExit::Signal);
    }
    run.wait_kick();
    Ok(RunExit::Message)
}

/// RUN_VP under the root scheduler (module documentation).
fn run_dispatched(hv: &HyperV, run: &VpRun, pt: u64, vp: u32) -> Result<RunExit> {
    loop {
        if !run.wait_runnable() {
            return Ok(RunExit::Signal);
        }
        if page::signal_pending() {
            return Ok(RunExit::Signal);
        }
        page::cond_resched();
        let mut flags = 0;
        if run.state.lock().intercept_suspended {
            flags |= abi::HV_DISPATCH_VP_FLAG_CLEAR_INTERCEPT_SUSPEND;
        }
        let input = abi::HvInputDispatchVp {
            partition_id: pt,
            vp_index: vp,
            flags,
            ..Default::default()
        };
        let mut out = [0u8; 8];
        let r = cpu::without_preemption(|| {
            hv.seam.dispatch(
                abi::control(abi::HVCALL_DISPATCH_VP, 0, 0, 0, false),
                input.as_bytes(),
                &mut out,
            )
        });
        let st = abi::result_status(r);
        if st != status::SUCCESS {
            return Err(HvError(st).into());
        }
        let o: abi::HvOutputDispatchVp = abi::read_at(&out, 0).ok_or(EIO)?;
        let (state, event) = (o.dispatch_state, o.dispatch_event);
        let mut rs = run.state.lock();
        rs.intercept_suspended = false;
        match (state, event) {
            (abi::HV_VP_DISPATCH_STATE_READY, abi::HV_VP_DISPATCH_EVENT_INTERCEPT) => {
                rs.intercept_suspended = true;
                return Ok(RunExit::Message);
            }
            (abi::HV_VP_DISPATCH_STATE_READY, _) => {}
            (abi::HV_VP_DISPATCH_STATE_BLOCKED, abi::HV_VP_DISPATCH_EVENT_SUSPEND) => {
                // Explicitly suspended (by the VMM through a register
                // write): resume it, as upstream does, then wait for the
                // hypervisor's signal that it is runnable.
                rs.blocked = true;
                drop(rs);
                let clear = [(abi::HV_REGISTER_EXPLICIT_SUSPEND, [0u64; 2])];
                hv.set_vp_registers(pt, vp, &clear)
                    .map_err(|e| Error::from(e.error))?;
            }
            (abi::HV_VP_DISPATCH_STATE_BLOCKED, _) => rs.blocked = true,
            _ => {
                drop(rs);
                kernel::pr_warn!(
                    "DISPATCH_VP of partition {} VP {}: unknown state {} event {}\n",
                    pt,
                    vp,
                    state,
                    event
                );
                return Err(EIO);
            }
        }
    }
}
