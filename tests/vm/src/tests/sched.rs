// SPDX-License-Identifier: GPL-2.0
//
// RUN_VP under the emulator's two scheduler models (sim_scheduler=root or
// core; docs/design.md, "Running a VP"). The cases here assert one model's
// protocol each; tests::ROOT_SCHEDULER_ONLY and CORE_SCHEDULER_ONLY keep
// them out of the other model's run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mshv_bindings::*;

use super::exits::{arm_timer, install_sigalrm};
use super::sim::{inject, setup, synic_counters, Setup, DATA_GPA};
use crate::guest;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure, ensure_eq, fail, note};

/// The emulator's scheduler counters (`sim/sched`).
pub(super) fn sched_counters() -> TResult<BTreeMap<String, u64>> {
    sim_kv("sched")
}

/// Core scheduler: every exit is one `HVMSG_OPAQUE_INTERCEPT` on SINT0 and
/// one kick. Over a guest workload, the opaque intercepts the emulator
/// posted are exactly the exits RUN_VP returned plus the GPA intercepts the
/// driver resolved in the kernel: none lost (RUN_VP would hang or return an
/// older message), none taken twice (a stale kick would make RUN_VP return
/// before the guest's next exit, and the monitor protocol would go out of
/// step). The SynIC lost nothing and queued what a busy slot held.
pub fn core_every_exit_is_one_opaque_intercept() -> TResult {
    let Setup {
        p,
        code: _code,
        data: _data,
        vcpu,
    } = setup()?;
    let s0 = sched_counters()?;
    let y0 = synic_counters()?;
    ensure_eq!(
        s0["scheduler_type"],
        3,
        "sim/sched scheduler_type (HV_SCHEDULER_TYPE_CORE_SMT)"
    );
    let g0 = p.stats()?["gpa_intercepts"];
    let mut m = Monitor::start(&vcpu)?;
    for i in 0..8u32 {
        let gpa = DATA_GPA + i * 0x1000;
        m.write(gpa, 0xc0de_0000 + i)?;
        ensure_eq!(m.read(gpa)?, 0xc0de_0000 + i, "guest read back at {gpa:#x}");
    }
    m.halt()?;
    let s1 = sched_counters()?;
    let y1 = synic_counters()?;
    let gpa = p.stats()?["gpa_intercepts"] - g0;
    let opaque = s1["opaque_intercepts"] - s0["opaque_intercepts"];
    note!(
        "{} exits to the VMM, {gpa} GPA intercepts resolved in the kernel, {opaque} opaque intercepts; sim/synic: {}",
        m.exits,
        show_kv(&y1)
    );
    ensure!(
        gpa > 0,
        "the movable data region was faulted in by the driver (gpa_intercepts grew)"
    );
    ensure_eq!(
        opaque,
        m.exits + gpa,
        "opaque intercepts = exits returned + GPA intercepts resolved"
    );
    ensure_eq!(
        y1["delivered"] - y0["delivered"],
        opaque,
        "SynIC messages delivered (one per opaque intercept)"
    );
    ensure_eq!(y1["lost"], y0["lost"], "SynIC messages lost");
    ensure_eq!(s1["held"], s0["held"], "kicks held without the knob");
    Ok(())
}

/// Core scheduler, the race upstream describes: the intercept is committed
/// (the VP is intercept-suspended, its message written) but its kick has
/// not arrived when a signal interrupts RUN_VP's wait. The emulator's knob
/// (`sim/inject_hold_kick`) holds the kick until the driver explicitly
/// suspends the VP, which it does on the signal. The driver must then see
/// `INTERCEPT_SUSPEND = 1`, wait for the kick and return the message, not
/// EINTR (which would lose it). The guest then goes on in step.
pub fn core_kick_in_flight_survives_signal() -> TResult {
    let (p, _code, vcpu) = monitor_partition()?;
    let mut m = Monitor::start(&vcpu)?;
    // One command first, so that the monitor's code and the probe word are
    // mapped: the next exit is then the IN of the next command, with no GPA
    // intercept (resolved inside the driver) before it to take the held
    // kick.
    m.write(DATA_PROBE, 1)?;
    let s0 = sched_counters()?;
    inject("inject_hold_kick", "1")?;
    install_sigalrm()?;
    arm_timer(200)?;
    let t0 = Instant::now();
    let r = m.run_raw();
    let dt = t0.elapsed();
    arm_timer(0)?;
    inject("inject_hold_kick", "0")?;
    let exit = match r {
        Ok(exit) => exit,
        Err(e) if e == libc::EINTR => fail!(
            "RUN_VP with its intercept committed and the kick held until the signal\nexpected: the intercept (IN from port {PORT_CMD:#x})\nactual:   EINTR (the intercept in flight was dropped)"
        ),
        Err(e) => fail!("RUN_VP with a kick in flight: {}", errname(e)),
    };
    note!(
        "RUN_VP returned after {:.0} ms: {exit}",
        dt.as_secs_f64() * 1e3
    );
    match exit {
        Exit::Io {
            port: PORT_CMD,
            write: false,
            ..
        } => {}
        other => {
            fail!("the message in flight\nexpected: IN from port {PORT_CMD:#x}\nactual:   {other}")
        }
    }
    ensure!(
        dt >= Duration::from_millis(150),
        "RUN_VP returned after {dt:?}, before the 200 ms signal released the held kick"
    );
    let s1 = sched_counters()?;
    ensure_eq!(s1["held"] - s0["held"], 1, "kicks held by the knob");
    ensure_eq!(
        s1["opaque_intercepts"] - s0["opaque_intercepts"],
        1,
        "opaque intercepts for the one exit"
    );
    // Not completed: the guest executes the IN again, and the protocol goes
    // on in step (a stale kick would return the old message first).
    let g1 = p.stats()?["gpa_intercepts"];
    let exits_at_race = m.exits;
    m.write(DATA_PROBE, 0x5eed_1234)?;
    ensure_eq!(
        m.read(DATA_PROBE)?,
        0x5eed_1234,
        "guest read back after the raced exit"
    );
    m.halt()?;
    let s2 = sched_counters()?;
    let gpa = p.stats()?["gpa_intercepts"] - g1;
    ensure_eq!(
        s2["opaque_intercepts"] - s1["opaque_intercepts"],
        m.exits - exits_at_race + gpa,
        "opaque intercepts after the race = exits returned after it + GPA intercepts resolved"
    );
    Ok(())
}

/// Guest-physical scratch word in the monitor's code region (mapped RWX by
/// `load_monitor`): past the code, below the (unused) stack.
const DATA_PROBE: u32 = 0x8000;

/// Core scheduler: a signal with no intercept in flight ends RUN_VP with
/// EINTR and leaves the VP explicitly suspended (upstream's protocol), with
/// no intercept pending; its registers can then be written, and the next
/// RUN_VP resumes it.
pub fn core_eintr_leaves_vp_explicitly_suspended() -> TResult {
    let (_p, _code, vcpu) = monitor_partition()?;
    let mut m = Monitor::start(&vcpu)?;
    m.begin(CMD_SPIN, &[])?;
    install_sigalrm()?;
    arm_timer(200)?;
    let r = m.run_raw();
    arm_timer(0)?;
    match r {
        Err(e) => ensure_eq!(
            errname(e),
            errname(libc::EINTR),
            "RUN_VP errno after SIGALRM"
        ),
        Ok(exit) => fail!("RUN_VP on a spinning guest\nexpected: EINTR\nactual:   {exit}"),
    }
    let explicit = get_reg64(&vcpu, hv_register_name_HV_REGISTER_EXPLICIT_SUSPEND)?;
    let intercept = get_reg64(&vcpu, hv_register_name_HV_REGISTER_INTERCEPT_SUSPEND)?;
    ensure_eq!(explicit, 1, "EXPLICIT_SUSPEND after EINTR");
    ensure_eq!(intercept, 0, "INTERCEPT_SUSPEND after EINTR");
    let rip = get_reg64(&vcpu, hv_register_name_HV_X64_REGISTER_RIP)?;
    ensure_eq!(
        Hex(rip),
        Hex(guest::monitor32::SPIN_INSN),
        "RIP of the suspended VP (the `jmp .`)"
    );
    // Suspended, so writable: set RAX and read it back.
    set_regs(
        &vcpu,
        &[reg64(hv_register_name_HV_X64_REGISTER_RAX, 0xfeed)],
    )?;
    ensure_eq!(
        get_reg64(&vcpu, hv_register_name_HV_X64_REGISTER_RAX)?,
        0xfeed,
        "RAX written while explicitly suspended"
    );
    // Resumed: it spins again until the next signal.
    arm_timer(100)?;
    let r = m.run_raw();
    arm_timer(0)?;
    match r {
        Err(e) => ensure_eq!(errname(e), errname(libc::EINTR), "second RUN_VP errno"),
        Ok(exit) => fail!("second RUN_VP on a spinning guest\nexpected: EINTR\nactual:   {exit}"),
    }
    Ok(())
}

/// Teardown with a scheduler signal in flight. VP 0 halts with interrupts
/// enabled, RUN_VP ends with EINTR (under the root scheduler the VP stays
/// blocked in the hypervisor), an interrupt makes it runnable, and the
/// partition is torn down at once. Root scheduler: the hypervisor sends one
/// scheduler signal nobody waits for, and the driver dispatch-suspends the
/// VP before deleting it and waits until the signals it received match
/// `VP_ROOT_SIGNAL_COUNT` (a mismatch after a second is a kernel-log line
/// the harness fails on). Core scheduler: the VP is explicitly suspended
/// after EINTR, so no runner starts, nothing is signalled and nothing is
/// drained. Either way nothing is left alive.
pub fn teardown_with_signal_in_flight() -> TResult {
    let live0 = live_objects()?;
    let s0 = sched_counters()?;
    let core = s0["scheduler_type"] != 4;
    {
        let mshv = open_mshv()?;
        let p = Partition::new(&mshv)?;
        let (_code, vcpu) = super::irq::load_irq32(&p)?;
        super::irq::expect_out(&vcpu, 0x22, 1, "tables loaded")?;
        install_sigalrm()?;
        arm_timer(200)?;
        let r = run(&vcpu);
        arm_timer(0)?;
        match r {
            Err(e) => ensure_eq!(
                errname(e),
                errname(libc::EINTR),
                "RUN_VP of the halted VP after SIGALRM"
            ),
            Ok(exit) => fail!(
                "RUN_VP of a VP halted with interrupts enabled\nexpected: EINTR\nactual:   {exit}"
            ),
        }
        let req = mshv_ioctls::InterruptRequest {
            interrupt_type: hv_interrupt_type_HV_X64_INTERRUPT_TYPE_FIXED,
            apic_id: 0,
            vector: 0x40,
            level_triggered: false,
            logical_destination_mode: false,
            long_mode: false,
        };
        p.vm.request_virtual_interrupt(&req)
            .map_err(|e| Failure::Fail(format!("request_virtual_interrupt: {}", show_err(e))))?;
        // Dropped here: the VP fd, the partition fd, the memory.
    }
    let s1 = sched_counters()?;
    let (signals, drained) = (
        s1["signals"] - s0["signals"],
        s1["dispatch_suspends"] - s0["dispatch_suspends"],
    );
    note!("scheduler signals sent {signals}, VPs dispatch-suspended {drained}");
    // Root: one signal when the first RUN_VP resumed the new (explicitly
    // suspended) VP, one for the interrupt; one VP drained.
    let (want_signals, want_drained) = if core { (0, 0) } else { (2, 1) };
    ensure_eq!(
        signals,
        want_signals,
        "scheduler signals (the VP's start, then the interrupt)"
    );
    ensure_eq!(
        drained,
        want_drained,
        "VPs dispatch-suspended by the teardown drain"
    );
    ensure_live_same(
        &live0,
        &["partitions", "vps", "regions"],
        "after the teardown",
    )?;
    Ok(())
}
