// SPDX-License-Identifier: GPL-2.0
//
// mshv-demo: a small VMM on /dev/mshv (mshv-ioctls 0.7.1). It runs a guest
// over guest RAM that Linux keeps free to move: by default the built-in demo
// guest (examples/guest/demo32.S), which writes and verifies a pattern over
// all of RAM while, with --churn, the VMM migrates, pages out and punches
// holes in that RAM. See `mshv-demo --help`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mshv_demo::layout::{hole_chunks, parse_size, slices};
use mshv_demo::vm::{self, Backing, GuestRam, Vm, MAX_VCPUS, PAGE};
use mshv_demo::{churn, run, stats, DEMO_GUEST};

const USAGE: &str = "\
usage: mshv-demo [options]
  --mem SIZE          guest RAM (K/M/G suffixes; default 1G; at most 3G)
  --backing KIND      anon | thp | memfd | hugetlbfs (default anon)
  --regions N         split RAM into N memory regions (default 1)
  --vcpus N           VPs; each walks its own slice of RAM (default 1)
  --guest FILE        run this flat 32-bit binary (loaded and entered at GPA
                      0x1000) instead of the built-in demo guest
  --pinned            make the RAM regions pinned (mshv_rs debugfs
                      force_pinned; no holes then: pinned pages stay mapped)
  --churn             while the guest runs: move_pages between NUMA nodes and
                      MADV_PAGEOUT, and at each of the guest's sync points
                      drop 1/--holes of its RAM (MADV_DONTNEED / punched hole)
  --holes N           with --churn: drop every Nth 2 MiB chunk (default 8)
  --passes N          write + verify passes of the demo guest (default 2)
  --dense SIZE        bytes at the start of each slice verified densely
                      (every dword; default 1M)
  --progress SIZE     a guest progress line every SIZE bytes (default 64M)
  --stats             print the driver's partition statistics at the end
  --no-punch          self-check of the guest's hole check: tell the guest
                      about holes but do not make them; the guest must FAIL
";

struct Opts {
    mem: u64,
    backing: Backing,
    regions: usize,
    vcpus: usize,
    guest: Option<String>,
    pinned: bool,
    churn: bool,
    holes: u32,
    passes: u32,
    dense: u64,
    progress: u64,
    stats: bool,
    no_punch: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        mem: 1 << 30,
        backing: Backing::Anon,
        regions: 1,
        vcpus: 1,
        guest: None,
        pinned: false,
        churn: false,
        holes: 8,
        passes: 2,
        dense: 1 << 20,
        progress: 64 << 20,
        stats: false,
        no_punch: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |what: &str| args.next().ok_or(format!("{a} needs {what}"));
        let bad = |v: &str| format!("{a} {v}: invalid value\n{USAGE}");
        match a.as_str() {
            "--mem" => {
                let v = val("a size")?;
                o.mem = parse_size(&v).ok_or_else(|| bad(&v))?;
            }
            "--backing" => {
                let v = val("a kind")?;
                o.backing = Backing::parse(&v).ok_or_else(|| bad(&v))?;
            }
            "--regions" => {
                let v = val("a count")?;
                o.regions = v.parse().map_err(|_| bad(&v))?;
            }
            "--vcpus" => {
                let v = val("a count")?;
                o.vcpus = v.parse().map_err(|_| bad(&v))?;
                if o.vcpus == 0 || o.vcpus > MAX_VCPUS {
                    return Err(format!("--vcpus: 1 to {MAX_VCPUS}"));
                }
            }
            "--guest" => o.guest = Some(val("a file")?),
            "--pinned" => o.pinned = true,
            "--churn" => o.churn = true,
            "--holes" => {
                let v = val("a stride")?;
                o.holes = v.parse().map_err(|_| bad(&v))?;
            }
            "--passes" => {
                let v = val("a count")?;
                o.passes = v.parse().map_err(|_| bad(&v))?;
            }
            "--dense" => {
                let v = val("a size")?;
                o.dense = parse_size(&v).ok_or_else(|| bad(&v))?;
            }
            "--progress" => {
                let v = val("a size")?;
                o.progress = parse_size(&v).ok_or_else(|| bad(&v))?;
            }
            "--stats" => o.stats = true,
            "--no-punch" => o.no_punch = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn mib(b: u64) -> String {
    if b.is_multiple_of(1 << 20) {
        format!("{} MiB", b >> 20)
    } else {
        format!("{} KiB", b >> 10)
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mshv-demo: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<bool, String> {
    let o = parse_args()?;
    let builtin = o.guest.is_none();
    let image = match &o.guest {
        Some(f) => std::fs::read(f).map_err(|e| format!("{f}: {e}"))?,
        None => DEMO_GUEST.to_vec(),
    };
    let mshv = mshv_ioctls::Mshv::new().map_err(|e| format!("open /dev/mshv: {e}"))?;
    let ram = GuestRam::new(o.backing, o.mem, o.regions)?;
    if o.pinned {
        stats::force_pinned(true).map_err(|e| format!("--pinned needs mshv_rs's debugfs: {e}"))?;
    }
    let vm = Vm::new(&mshv, &image, ram);
    if o.pinned {
        stats::force_pinned(false)?;
    }
    let vm = vm?;
    let stats_dir = stats::newest_partition_dir();
    let holes = if o.churn && !o.pinned { o.holes } else { 0 };
    let slices = slices(vm.ram.size(), o.vcpus)?;
    for (i, &(gpa, size)) in slices.iter().enumerate() {
        let dense = o.dense.min(size) & !3;
        let step = o.progress.clamp(PAGE, size.max(PAGE)) / PAGE * PAGE;
        vm.set_params(
            i,
            &[
                gpa as u32,
                size as u32,
                o.passes,
                holes,
                dense as u32,
                step as u32,
                i as u32,
            ],
        );
    }
    let nodes = churn::memory_nodes();
    println!(
        "mshv-demo: {} of {} guest RAM at GPA {:#x} in {} {} region(s), {} VP(s), guest: {}",
        mib(o.mem),
        o.backing,
        vm::RAM_GPA,
        o.regions,
        if o.pinned { "pinned" } else { "movable" },
        o.vcpus,
        o.guest.as_deref().unwrap_or("built-in demo32"),
    );
    if builtin {
        println!(
            "mshv-demo: the guest writes one qword per 4 KiB page and verifies it, {} pass(es), plus every dword of the first {} of each slice",
            o.passes,
            mib(o.dense.min(slices[0].1))
        );
    }
    if o.churn {
        println!(
            "mshv-demo: churn: {}MADV_PAGEOUT of random 2 MiB chunks{}",
            if nodes.len() >= 2 {
                format!("move_pages between NUMA nodes {nodes:?} and ")
            } else {
                "(one NUMA node: no migration) ".into()
            },
            if holes > 0 {
                format!("; every {holes}th 2 MiB chunk dropped at each sync point (the guest expects zeros there)")
            } else {
                "; no holes (pinned)".into()
            }
        );
    }

    let shared = run::Shared::new(o.vcpus);
    let counters = churn::Counters::default();
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let sync = |vp: usize, port: u16, pass: u32| -> Result<(), String> {
        if holes == 0 || port != run::PORT_SYNC {
            return Ok(());
        }
        let (base, size) = slices[vp];
        for (off, len) in hole_chunks(size, holes, pass) {
            if !o.no_punch {
                vm.ram.punch(base + off, len)?;
            }
            counters.holes.fetch_add(1, Ordering::Relaxed);
            counters.hole_bytes.fetch_add(len, Ordering::Relaxed);
        }
        Ok(())
    };
    let vcpus = (0..o.vcpus)
        .map(|i| vm.create_vp(i))
        .collect::<Result<Vec<_>, _>>()?;
    let ends: Mutex<Vec<Option<Result<run::VpEnd, String>>>> =
        Mutex::new((0..o.vcpus).map(|_| None).collect());
    let running = std::sync::atomic::AtomicUsize::new(o.vcpus);
    std::thread::scope(|s| {
        for (i, vcpu) in vcpus.iter().enumerate() {
            let (shared, sync, ends, running, stop) = (&shared, &sync, &ends, &running, &stop);
            s.spawn(move || {
                let r = run::run_vp(shared, i, vcpu, sync);
                ends.lock().unwrap()[i] = Some(r);
                if running.fetch_sub(1, Ordering::SeqCst) == 1 {
                    stop.store(true, Ordering::SeqCst);
                }
            });
        }
        if o.churn {
            let (ram, stop, counters) = (&vm.ram, &stop, &counters);
            s.spawn(move || churn::churn(ram, stop, counters, Duration::from_millis(10)));
        }
        // The host's progress line, every 5 s.
        let mut next = Duration::from_secs(5);
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            if t0.elapsed() >= next {
                next += Duration::from_secs(5);
                println!("{}", progress_line(&t0, &shared, &counters, &stats_dir));
            }
        }
    });
    shared.flush();
    let elapsed = t0.elapsed();
    println!("{}", progress_line(&t0, &shared, &counters, &stats_dir));

    let mut ok = true;
    for (i, end) in ends.into_inner().unwrap().into_iter().enumerate() {
        match end {
            Some(Ok(run::VpEnd {
                result: Some(run::RESULT_OK),
            })) => println!("mshv-demo: VP {i}: the guest verified its memory: OK"),
            Some(Ok(run::VpEnd { result: Some(gpa) })) if builtin => {
                ok = false;
                println!("mshv-demo: VP {i}: the guest found wrong memory at GPA {gpa:#x}: FAIL");
            }
            Some(Ok(run::VpEnd { result })) if builtin => {
                ok = false;
                println!("mshv-demo: VP {i}: halted without a result ({result:?}): FAIL");
            }
            Some(Ok(_)) => println!("mshv-demo: VP {i}: halted"),
            Some(Err(e)) => {
                ok = false;
                println!("mshv-demo: {e}");
            }
            None => {
                ok = false;
                println!("mshv-demo: VP {i}: thread ended without a result");
            }
        }
    }
    println!(
        "mshv-demo: {:.1} s; {} exits ({} port I/O); churn: {} move_pages calls ({} pages moved), {} MADV_PAGEOUT calls, {} holes ({})",
        elapsed.as_secs_f64(),
        shared.exits.load(Ordering::Relaxed),
        shared.io_exits.load(Ordering::Relaxed),
        counters.move_calls.load(Ordering::Relaxed),
        counters.pages_moved.load(Ordering::Relaxed),
        counters.pageouts.load(Ordering::Relaxed),
        counters.holes.load(Ordering::Relaxed),
        mib(counters.hole_bytes.load(Ordering::Relaxed)),
    );
    if o.stats {
        match stats_dir
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|d| stats::read_kv(&d.join("stats")))
        {
            Ok(s) => stats::print_table(&s),
            Err(e) => println!("mshv-demo: no driver statistics ({e}); the C driver has none"),
        }
    }
    Ok(ok)
}

fn progress_line(
    t0: &Instant,
    shared: &run::Shared,
    c: &churn::Counters,
    stats_dir: &Result<std::path::PathBuf, String>,
) -> String {
    let mut line = format!(
        "vmm: {:5.1} s  exits {}  moved {} pages  pageouts {}  holes {}",
        t0.elapsed().as_secs_f64(),
        shared.exits.load(Ordering::Relaxed),
        c.pages_moved.load(Ordering::Relaxed),
        c.pageouts.load(Ordering::Relaxed),
        c.holes.load(Ordering::Relaxed),
    );
    if let Ok(s) = stats_dir
        .as_ref()
        .map_err(|_| ())
        .and_then(|d| stats::read_kv(&d.join("stats")).map_err(|_| ()))
    {
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        line += &format!(
            "  | driver: intercepts {}  mapped 4k {} 2m {}  invalidations {}",
            g("gpa_intercepts"),
            g("mapped_4k"),
            g("mapped_2m"),
            g("invalidations")
        );
    }
    line
}
