// SPDX-License-Identifier: GPL-2.0
//
// Several partitions used at once from one process (the client crate's own
// tests run in parallel threads), and a partition fd closed while one of its
// VPs is inside MSHV_RUN_VP.

use std::thread;
use std::time::Duration;

use crate::tests::exits::{arm_timer, install_sigalrm};
use crate::uapi::MEM_RWX;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure_eq, fail, note};

const THREADS: u32 = 4;
const DATA_GFN: u64 = 0x400;
const DATA_GPA: u32 = 0x40_0000;
const DATA_SIZE: usize = 256 * 1024;

/// One thread's partition: monitor32 writes a pattern with the thread's own
/// seed into its own movable region and reads it back; the VMM checks it.
fn one_partition(seed: u32) -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let data = Mmap::anon(DATA_SIZE)?;
    p.map(&data, 0, DATA_SIZE, DATA_GFN, MEM_RWX)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    m.pattern_write(DATA_GPA, dwords(DATA_SIZE), seed)?;
    m.expect_pattern(DATA_GPA, DATA_SIZE, seed, "the partition's own pattern")?;
    verify_pattern(
        &data,
        0,
        DATA_SIZE,
        DATA_GPA as u64,
        seed,
        "the VMM's view of its partition's pattern",
    )?;
    m.halt()
}

/// `THREADS` partitions created, run and torn down at the same time by
/// threads of one process: each sees exactly its own bytes, and afterwards
/// no partition, VP or region is left alive.
pub fn parallel_partitions() -> TResult {
    let live0 = live_objects()?;
    let results: Vec<TResult> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| s.spawn(move || one_partition(0x5eed_0000 + t)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Failure::Fail("the thread panicked".into())))
            })
            .collect()
    });
    for (t, r) in results.into_iter().enumerate() {
        match r {
            Ok(()) => {}
            Err(Failure::Fail(why)) => fail!("partition of thread {t}: {why}"),
            Err(Failure::Skip(why)) => fail!("partition of thread {t} could not run: {why}"),
        }
    }
    let l1 = live_objects()?;
    for k in ["partitions", "vps", "regions"] {
        ensure_eq!(
            l1[k],
            live0[k],
            "live {k} after every thread's partition is gone"
        );
    }
    Ok(())
}

/// A partition fd closed by another thread while the VP runs `jmp .` inside
/// MSHV_RUN_VP: the run goes on (the VP fd keeps the partition), a signal
/// still ends it with EINTR, the VP can run again, and once the VP fd and
/// the memory are gone nothing is left alive.
pub fn close_partition_while_vp_runs() -> TResult {
    let live0 = live_objects()?;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let code = load_monitor(&p)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    m.begin(CMD_SPIN, &[])?;
    install_sigalrm()?;

    let closer = thread::spawn(move || {
        // Close the partition fd while the main thread is (almost surely)
        // inside RUN_VP; the test does not depend on the exact moment.
        thread::sleep(Duration::from_millis(100));
        drop(p);
    });
    arm_timer(1000)?;
    let r = m.run_raw();
    arm_timer(0)?;
    if closer.join().is_err() {
        fail!("the thread closing the partition fd panicked");
    }
    match r {
        Err(e) => ensure_eq!(
            errname(e),
            errname(libc::EINTR),
            "RUN_VP errno after SIGALRM, with the partition fd closed meanwhile"
        ),
        Ok(exit) => fail!("RUN_VP on a spinning guest\nexpected: EINTR\nactual:   {exit}"),
    }
    // The partition lives on through the VP fd: the VP still runs.
    arm_timer(200)?;
    let r = m.run_raw();
    arm_timer(0)?;
    match r {
        Err(e) => ensure_eq!(
            errname(e),
            errname(libc::EINTR),
            "RUN_VP errno after the partition fd was closed"
        ),
        Ok(exit) => {
            fail!("RUN_VP after the partition fd was closed\nexpected: EINTR\nactual:   {exit}")
        }
    }
    note!("RUN_VP ran on after the partition fd was closed");
    drop(vcpu);
    drop(code);
    ensure_live_same(
        &live0,
        &["partitions", "vps", "regions"],
        "after the VP fd is closed too",
    )?;
    Ok(())
}
