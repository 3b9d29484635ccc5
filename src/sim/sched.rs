// SPDX-License-Identifier: GPL-2.0

//! The emulated hypervisor's two schedulers (docs/sim.md, "Schedulers").
//!
//! - **Root** (`sim_scheduler=root`, the default): a VP runs only inside
//!   `HVCALL_DISPATCH_VP`, on the calling CPU ([`super::vp::dispatch`]). A
//!   blocked VP that becomes runnable gets a scheduler signal on SINT0.
//! - **Core** (`sim_scheduler=core`): the hypervisor runs a VP on its own
//!   whenever both its suspend registers are clear. Here a [`Runner`], a work
//!   item on the unbound workqueue, runs it one time slice at a time with
//!   preemption disabled and queues itself again while the VP can run. An
//!   intercept writes the VP's intercept page, sets `INTERCEPT_SUSPEND` and
//!   posts `HVMSG_OPAQUE_INTERCEPT` (sender: the partition) on SINT0;
//!   `DISPATCH_VP` is refused (`ACCESS_DENIED`).
//!
//! Under the core scheduler, writing `EXPLICIT_SUSPEND = 1` returns only
//! when the VP is off its CPU: a slice in progress ends first (the writer
//! spins; a slice runs with preemption disabled, so it always ends). That
//! is what makes the driver's reading of `INTERCEPT_SUSPEND` right after it
//! final: 1 means an intercept was committed and its message is (or will
//! be) posted, 0 means none will come until the VP is resumed.
//!
//! Test knob (`sim/inject_hold_kick`): the next N opaque intercepts are held
//! back until the root writes `EXPLICIT_SUSPEND = 1` to their VP. That
//! forces the order in which a signal interrupts the driver's wait after
//! the intercept was committed but before its kick arrived: the driver must
//! then wait for the kick and return the message (upstream's "message in
//! flight").
//!
//! Test knob (`sim/inject_stale_signal`, root scheduler): the next N
//! dispatches that block are followed at once by a scheduler signal for
//! the VP, while its `ROOT_DISPATCH_THREAD_BLOCKED` is still set: a stale
//! kick. The root must keep waiting (it waits for a kick *and* the counter
//! clear, as upstream does); a `DISPATCH_VP` of a VP whose dispatch thread
//! is blocked is counted (`dispatches_while_blocked`).
//!
//! # Ownership of a VP
//!
//! `Vp::core_owned` says a runner exists for the VP (queued or running); at
//! most one does. A waker changes the VP's state under its lock and then
//! tries to take ownership (`xchg`, full ordering); a runner that stops
//! gives ownership up (`xchg`) and then checks the state again. With both
//! exchanges totally ordered on one variable, either the waker starts a
//! runner or the stopping runner sees the waker's change and goes on.

use super::{synic::EmuSynic, vp, vp::Vp, ChildPartition, PartState};
use crate::sys::cpu::{self, OwnedQueue};
use crate::tlfs::abi;
use kernel::{
    impl_has_work, new_spinlock, new_work,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full, Relaxed, Release},
        Arc, SpinLock,
    },
    workqueue::{Work, WorkItem},
};

/// Which scheduler the emulated hypervisor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheduler {
    /// VPs run inside `HVCALL_DISPATCH_VP`.
    Root,
    /// VPs run on the hypervisor's own threads.
    Core,
}

impl Scheduler {
    /// The model named by the `sim_scheduler=` parameter.
    pub(crate) fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"root" => Some(Self::Root),
            b"core" => Some(Self::Core),
            _ => None,
        }
    }

    /// What `HV_SYSTEM_PROPERTY_SCHEDULER_TYPE` answers.
    pub(crate) fn hv_type(self) -> u32 {
        match self {
            Self::Root => abi::HV_SCHEDULER_TYPE_ROOT,
            Self::Core => abi::HV_SCHEDULER_TYPE_CORE_SMT,
        }
    }
}

/// What every partition shares about scheduling.
#[pin_data]
pub(crate) struct Sched {
    /// The model.
    pub(crate) kind: Scheduler,
    /// The runners' workqueue (core scheduler), until the emulator goes
    /// away ([`Sched::stop`]). A leaf lock: enqueueing takes no other.
    #[pin]
    queue: SpinLock<Option<OwnedQueue>>,
    /// Runners that exist (queued or running).
    pub(crate) runners: Atomic<usize>,
    /// Test knob: how many of the next opaque intercepts are held until the
    /// root explicitly suspends their VP.
    hold_kicks: Atomic<u32>,
    /// Opaque intercepts posted (core scheduler).
    pub(crate) kicks: Atomic<u64>,
    /// Of them, held back by the knob first.
    pub(crate) held: Atomic<u64>,
    /// Scheduler signals sent for blocked VPs (root scheduler).
    pub(crate) signals: Atomic<u64>,
    /// `DISPATCH_SUSPEND = 1` writes (the root's teardown drain).
    pub(crate) dispatch_suspends: Atomic<u64>,
    /// Test knob: how many of the next blocking dispatches are followed by
    /// a stale signal (root scheduler; module documentation).
    stale_signals: Atomic<u32>,
    /// Stale signals sent.
    pub(crate) stale_sent: Atomic<u64>,
    /// `DISPATCH_VP` calls for a VP whose `ROOT_DISPATCH_THREAD_BLOCKED`
    /// was set (a root that did not wait for the counter to clear).
    pub(crate) dispatches_while_blocked: Atomic<u64>,
}

impl Sched {
    /// A scheduler of `kind` with no runner. May sleep.
    pub(crate) fn new(kind: Scheduler) -> Result<Arc<Self>> {
        let queue = match kind {
            Scheduler::Core => Some(OwnedQueue::new(c"mshv_rs_sim_vps")?),
            Scheduler::Root => None,
        };
        Arc::pin_init(
            pin_init!(Self {
                kind,
                queue <- new_spinlock!(queue, "Sched::queue"),
                runners: Atomic::new(0),
                hold_kicks: Atomic::new(0),
                kicks: Atomic::new(0),
                held: Atomic::new(0),
                signals: Atomic::new(0),
                dispatch_suspends: Atomic::new(0),
                stale_signals: Atomic::new(0),
                stale_sent: Atomic::new(0),
                dispatches_while_blocked: Atomic::new(0),
            }),
            GFP_KERNEL,
        )
    }

    /// Queues `r`; gives it back when the emulator is going away.
    fn enqueue(&self, r: Pin<KBox<Runner>>) -> core::result::Result<(), Pin<KBox<Runner>>> {
        match &*self.queue.lock() {
            Some(q) => {
                q.queue().enqueue(r);
                Ok(())
            }
            None => Err(r),
        }
    }

    /// The emulator is going away: no runner starts or continues any more,
    /// and this returns when the last one has finished. May sleep.
    pub(crate) fn stop(&self) {
        let queue = self.queue.lock().take();
        // Destroying the workqueue drains it; a runner that tries to queue
        // itself again finds no queue and ends.
        drop(queue);
    }

    /// Holds the next `count` opaque intercepts (see the module
    /// documentation).
    pub(crate) fn hold_kicks(&self, count: u32) {
        self.hold_kicks.store(count, Relaxed);
    }

    /// Takes one held-kick request, if any.
    fn take_hold(&self) -> bool {
        super::inject::take_one(&self.hold_kicks)
    }

    /// Follows the next `count` blocking dispatches with a stale signal
    /// (see the module documentation).
    pub(crate) fn stale_signals(&self, count: u32) {
        self.stale_signals.store(count, Relaxed);
    }
}

/// A dispatch of `vp` of `part` (root scheduler) ended with the VP
/// blocked: if the knob asks for it, the root gets a stale signal now,
/// with the VP's dispatch thread still marked blocked. Called with no
/// emulator lock held.
pub(crate) fn dispatch_blocked(part: &ChildPartition, vp: &Vp) {
    if part.sched.kind == Scheduler::Root && super::inject::take_one(&part.sched.stale_signals) {
        part.sched.stale_sent.fetch_add(1, Relaxed);
        part.synic.signal(part.id, vp.index);
    }
}

/// Whether `vp` would run now under the core scheduler: not suspended
/// either way, and not halted with nothing to deliver.
fn can_run(vp: &Vp) -> bool {
    vp::runnable(vp) && !vp.regs.lock().intercept_suspend
}

/// `vp` of `part` may have become runnable (an interrupt, or a register
/// write that cleared a suspension): under the root scheduler a blocked VP
/// gets a signal; under the core scheduler a runner starts if none exists.
pub(crate) fn wake(part: &Arc<ChildPartition>, vp: &Arc<Vp>) {
    match part.sched.kind {
        Scheduler::Root => {
            if !vp::runnable(vp) || !vp.blocked.xchg(false, Full) {
                return;
            }
            {
                // The dispatch thread may go on: cleared before the signal
                // (the root waits for both).
                let inner = part.inner.lock();
                if inner.vp_message_page(vp).is_some() {
                    vp::set_dispatch_thread_blocked(vp, false);
                }
            }
            {
                // Counted under the lock `DISPATCH_SUSPEND` is written
                // under: once the root has set it, the count is final.
                let mut rf = vp.regs.lock();
                if rf.dispatch_suspend {
                    return;
                }
                rf.root_signals += 1;
            }
            part.sched.signals.fetch_add(1, Relaxed);
            part.synic.signal(part.id, vp.index);
        }
        Scheduler::Core => {
            if can_run(vp) && !vp.core_owned.xchg(true, Full) {
                Runner::start(part.clone(), vp.clone());
            }
        }
    }
}

/// The root wrote `EXPLICIT_SUSPEND = 1` to `vp` (core scheduler): waits
/// until a slice in progress has ended, then posts an opaque intercept the
/// knob held back. Called with no emulator lock held except the page pair.
pub(crate) fn suspended(part: &ChildPartition, vp: &Vp) {
    if part.sched.kind != Scheduler::Core {
        return;
    }
    // The slice runs with preemption disabled on another CPU (this one
    // is in a hypercall), so it ends.
    // Acquire: pairs with the slice's release, so what the slice wrote
    // (the suspend registers, the intercept page) is seen after the loop.
    while vp.running.load(Acquire) {
        core::hint::spin_loop();
    }
    if vp.held_kick.xchg(false, Full) {
        post_opaque(&part.synic, part.id, vp.index);
    }
}

/// Posts `HVMSG_OPAQUE_INTERCEPT` for VP `vp` of `pt`.
fn post_opaque(synic: &EmuSynic, pt: u64, vp: u32) {
    let o = abi::HvOpaqueInterceptMessage { vp_index: vp };
    let m = EmuSynic::message(
        abi::HVMSG_OPAQUE_INTERCEPT,
        pt,
        kernel::transmute::AsBytes::as_bytes(&o),
    );
    synic.post(&m);
}

/// What a slice leaves the runner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    /// The VP can go on: queue the runner again (it yields the CPU between
    /// slices).
    Continue,
    /// The VP stopped (intercept, halt, suspension): a wake-up starts it
    /// again.
    Stop,
    /// Its partition is no longer initialized, or the VP was deleted.
    Gone,
}

/// The runner of one VP under the core scheduler.
///
/// # Invariants
///
/// While it exists, `vp.core_owned` is set and it is counted in
/// `part.sched.runners`.
#[pin_data]
struct Runner {
    part: Arc<ChildPartition>,
    vp: Arc<Vp>,
    #[pin]
    work: Work<Runner>,
}

impl_has_work! {
    impl HasWork<Self> for Runner { self.work }
}

impl Runner {
    /// Starts a runner for `vp`, whose ownership the caller just took.
    fn start(part: Arc<ChildPartition>, vp: Arc<Vp>) {
        part.sched.runners.fetch_add(1, Relaxed);
        let sched_part = part.clone();
        let owned = vp.clone();
        match KBox::pin_init(
            pin_init!(Runner {
                part,
                vp,
                work <- new_work!("sim::Runner::work"),
            }),
            GFP_ATOMIC,
        ) {
            // INVARIANT: the caller set `core_owned`; counted above.
            Ok(r) => {
                if let Err(r) = sched_part.sched.enqueue(r) {
                    r.vp.core_owned.xchg(false, Full);
                    Runner::end(r);
                }
            }
            Err(_) => {
                // Hyper-V does not fail to schedule a VP; the emulator's
                // bookkeeping could. Say so; the VP stays stopped until the
                // next wake-up.
                pr_warn!("emulator: lost: no memory for a VP runner\n");
                owned.core_owned.xchg(false, Full);
                sched_part.sched.runners.fetch_sub(1, Relaxed);
            }
        }
    }

    /// Runs one time slice of the VP, with preemption disabled.
    fn slice(&self) -> After {
        let (part, vp) = (&*self.part, &*self.vp);
        let msg_pfn = {
            let inner = part.inner.lock();
            if inner.state != PartState::Initialized {
                return After::Gone;
            }
            let Some(pfn) = inner.vp_message_page(vp) else {
                return After::Gone;
            };
            // Under `inner`: delete and finalize leave the VP's pages
            // alone while it runs.
            vp.running.store(true, Relaxed);
            pfn
        };
        let leave = vp::slice(part, vp, msg_pfn);
        {
            let _inner = part.inner.lock();
            vp.running.store(false, Release);
        }
        match leave {
            Some(vp::Leave::Ready) => After::Continue,
            Some(vp::Leave::Intercept) => {
                part.sched.kicks.fetch_add(1, Relaxed);
                if part.sched.take_hold() {
                    part.sched.held.fetch_add(1, Relaxed);
                    vp.held_kick.xchg(true, Full);
                } else {
                    post_opaque(&part.synic, part.id, vp.index);
                }
                After::Stop
            }
            Some(vp::Leave::Blocked) | None => After::Stop,
        }
    }
}

impl Runner {
    /// Ends runner `r`, whose ownership of the VP was given up.
    fn end(r: Pin<KBox<Runner>>) {
        let sched = r.part.sched.clone();
        drop(r);
        sched.runners.fetch_sub(1, Relaxed);
    }
}

impl WorkItem for Runner {
    type Pointer = Pin<KBox<Runner>>;

    fn run(this: Pin<KBox<Runner>>) {
        let mut after = cpu::without_preemption(|| this.slice());
        if after == After::Stop {
            // Give ownership up, then look again: a wake-up that saw the
            // VP owned relies on this check (module documentation).
            this.vp.core_owned.xchg(false, Full);
            if can_run(&this.vp) && !this.vp.core_owned.xchg(true, Full) {
                after = After::Continue;
            }
        }
        match after {
            After::Continue => {
                let sched = this.part.sched.clone();
                if let Err(this) = sched.enqueue(this) {
                    this.vp.core_owned.xchg(false, Full);
                    Runner::end(this);
                }
            }
            After::Stop => Runner::end(this),
            After::Gone => {
                this.vp.core_owned.xchg(false, Full);
                Runner::end(this);
            }
        }
    }
}
