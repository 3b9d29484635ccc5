// SPDX-License-Identifier: GPL-2.0
//
// Teardown releases everything: the driver's own object counters
// (/sys/kernel/debug/mshv_rs/live_objects) return to where they started.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::uapi::*;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure, fail, note};

const ROUNDS: usize = 50;
const REGION: usize = 4 * MIB;
const REGION_GFN: u64 = 0x100;
const REGION_GPA: u32 = 0x10_0000;

fn diff(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> Vec<String> {
    LIVE_NAMES
        .iter()
        .filter(|n| a[**n] != b[**n])
        .map(|n| format!("{n}: {} -> {}", a[*n], b[*n]))
        .collect()
}

/// One partition with a VP and a 4 MiB region the guest touches page by page
/// (every fifth one mapped with force_pinned=1), then dropped. Checks on the
/// first round that the counters see it.
fn one_round(mshv: &mshv_ioctls::Mshv, round: usize, start: &BTreeMap<String, u64>) -> TResult {
    let pinned = round % 5 == 4;
    let p = Partition::new(mshv)?;
    let data = Mmap::anon(REGION)?;
    let pin = if pinned {
        Some(ForcePinned::on()?)
    } else {
        None
    };
    let code = load_monitor(&p)?;
    p.map(&data, 0, REGION, REGION_GFN, MEM_RWX)?;
    drop(pin);
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    m.touch(REGION_GPA, (REGION / PAGE) as u32)?;
    ensure!(
        data.read_u32(REGION - PAGE) == REGION_GPA + (REGION - PAGE) as u32,
        "round {round}: the VMM does not see the guest's write to the last page"
    );

    if round == 0 || round == 4 {
        let now = live_objects()?;
        note!("round {round} (pinned {pinned}) live: {}", show_kv(&now));
        // deposited_pages must move too: a partition with a VP holds
        // deposits (a counter that never moves would hide a leak).
        ensure!(
            now["deposited_pages"] > start["deposited_pages"],
            "deposited_pages while a partition with 1 VP exists\nexpected: > {}\nactual:   {}",
            start["deposited_pages"],
            now["deposited_pages"]
        );
        for (name, more) in [("partitions", 1), ("vps", 1), ("regions", 2)] {
            ensure!(
                now[name] >= start[name] + more,
                "live_objects while a partition with 1 VP and 2 regions exists\nexpected: {name} >= {}\nactual:   {name} {}",
                start[name] + more,
                now[name]
            );
        }
        if pinned {
            let pages = ((REGION + code.len()) / PAGE) as u64;
            ensure!(
                now["pinned_pages"] >= start["pinned_pages"] + pages,
                "live_objects with {pages} pages mapped with force_pinned=1\nexpected: pinned_pages >= {}\nactual:   pinned_pages {}",
                start["pinned_pages"] + pages,
                now["pinned_pages"]
            );
        }
    }
    drop(vcpu);
    drop(p);
    drop(code);
    drop(data);
    Ok(())
}

/// 50 partitions, each with a VP and a mapped, guest-touched 4 MiB region
/// (every fifth pinned), created and dropped: partitions, vps, regions,
/// pinned_pages and deposited_pages all return to their starting values.
pub fn no_leaks() -> TResult {
    let mut start = live_objects()?;
    // The previous test's teardown may still be finishing: start from
    // counters that hold still for 300 ms (5 s at most).
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(300));
        let again = live_objects()?;
        if diff(&start, &again).is_empty() {
            break;
        }
        start = again;
    }
    note!("live_objects at the start: {}", show_kv(&start));
    let mshv = open_mshv()?;
    for round in 0..ROUNDS {
        if round % 10 == 0 {
            note!("round {round}");
        }
        one_round(&mshv, round, &start).map_err(|f| match f {
            Failure::Fail(s) => Failure::Fail(format!("round {round}: {s}")),
            other => other,
        })?;
    }
    drop(mshv);

    // Teardown may finish asynchronously (work queues, RCU): wait a little.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = live_objects()?;
        let d = diff(&start, &now);
        if d.is_empty() {
            note!("live_objects at the end: {}", show_kv(&now));
            return Ok(());
        }
        if Instant::now() >= until {
            fail!(
                "after {ROUNDS} partitions were created and dropped, live_objects did not return to the starting values (waited 10 s):\n{}\nstart: {}\nend:   {}",
                d.join("\n"),
                show_kv(&start),
                show_kv(&now)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
