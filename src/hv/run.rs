// SPDX-License-Identifier: GPL-2.0

//! `MSHV_RUN_VP` under the root (integrated) scheduler: the VP runs only
//! inside `HVCALL_DISPATCH_VP` on the calling CPU (docs/design.md, "Running
//! a VP").
//!
//! One round: handle the thread's work (a pending signal ends the run with
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
use crate::{sys::cpu, sys::page};
use kernel::{
    new_condvar, new_spinlock_irq,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, CondVar, SpinLockIrq,
    },
    transmute::AsBytes,
};

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
}

impl VpRun {
    /// A VP that has never run.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                state <- new_spinlock_irq!(RunState::default(), "VpRun::state"),
                wake <- new_condvar!("VpRun::wake"),
                signaled: Atomic::new(0),
            }),
            GFP_KERNEL,
        )
    }

    /// The hypervisor signalled the VP runnable. Hard-IRQ safe.
    pub(crate) fn kick(&self) {
        self.signaled.fetch_add(1, Relaxed);
        self.state.lock().kicked = true;
        self.wake.notify_all();
    }

    /// Sleeps while the VP is blocked and not kicked. `false` if a signal
    /// interrupted the sleep (the VP stays blocked).
    fn wait_runnable(&self) -> bool {
        let mut st = self.state.lock();
        while st.blocked && !st.kicked {
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
    if hv.scheduler != abi::HV_SCHEDULER_TYPE_ROOT {
        kernel::pr_warn_once!(
            "RUN_VP: hypervisor scheduler type {} is not supported yet (root scheduler only)\n",
            hv.scheduler
        );
        return Err(EOPNOTSUPP);
    }
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
