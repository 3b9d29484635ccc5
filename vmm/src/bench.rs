// SPDX-License-Identifier: GPL-2.0
//
// mshv-bench: the measurements of `make bench` (issue 6), each taken side by
// side with its baseline in the same boot, repeated, medians reported:
//   1. guest first touch of RAM (4 KiB-backed, THP-backed) vs
//      MADV_POPULATE_WRITE of the same amount;
//   2. GPA intercepts and map hypercalls per GiB touched; share of 2 MiB
//      entries for THP-backed RAM whose region starts at an unaligned gfn;
//   3. munmap of mapped movable RAM vs plain munmap;
//   4. driver memory per GiB of movable RAM (slab + deposited pages);
//   5. gfn -> region lookup cost with 10, 1000 and 10000 regions;
//   6. pinned region setup time and hypercalls per GiB (vs movable set-up).
// Prints a Markdown report and an SVG plot between BEGIN/END lines
// (scripts/bench writes them to results/; the VM sees the repository
// read-only).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mshv_bindings::mshv_user_mem_region;
use mshv_demo::run::{self, PORT_SYNC, PORT_VERIFIED};
use mshv_demo::stats;
use mshv_demo::vm::{Backing, GuestRam, Vm, HUGE, PAGE, RAM_GPA};
use mshv_demo::DEMO_GUEST;
use mshv_ioctls::Mshv;

const MADV_POPULATE_WRITE: i32 = 23;
const GIB: f64 = (1u64 << 30) as f64;

struct Opts {
    size: u64,
    reps: usize,
    lookups: Vec<usize>,
    smoke: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        size: 1 << 30,
        reps: 5,
        lookups: vec![10, 1000, 10000],
        smoke: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => {
                o.smoke = true;
                o.size = 16 << 20;
                o.reps = 1;
                o.lookups = vec![10, 100];
            }
            "--size" => {
                let v = args.next().ok_or("--size needs a value (MiB)")?;
                o.size = v.parse::<u64>().map_err(|_| format!("--size {v}"))? << 20;
            }
            "--reps" => {
                let v = args.next().ok_or("--reps needs a count")?;
                o.reps = v.parse().map_err(|_| format!("--reps {v}"))?;
            }
            _ => {
                return Err(format!(
                    "unknown argument {a}\nusage: mshv-bench [--smoke] [--size MiB] [--reps N]"
                ))
            }
        }
    }
    if o.size < HUGE * 2 || !o.size.is_multiple_of(HUGE) || o.reps == 0 {
        return Err("--size: a multiple of 2 MiB, at least 4 MiB; --reps >= 1".into());
    }
    Ok(o)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `Slab` from /proc/meminfo, in KiB.
fn slab_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn deposited_pages() -> u64 {
    stats::read_kv(std::path::Path::new(
        "/sys/kernel/debug/mshv_rs/live_objects",
    ))
    .ok()
    .and_then(|m| m.get("deposited_pages").copied())
    .unwrap_or(0)
}

/// Statistics, slab KiB growth and deposited pages growth after first touch.
type AtTouch = (BTreeMap<String, u64>, i64, i64);

/// One run of the demo guest over fresh RAM: two write passes (the first
/// faults every page in, the second runs over mapped memory), no verify.
struct GuestRun {
    /// The first write pass (first touch) and the second (all mapped).
    first: Duration,
    retouch: Duration,
    /// Driver statistics right after the first touch.
    stats: BTreeMap<String, u64>,
    /// Driver memory growth at that point: slab KiB, deposited pages.
    slab_kib: i64,
    deposited: i64,
    /// munmap of the (mapped) guest RAM with the partition alive.
    munmap: Duration,
}

fn guest_run(mshv: &Mshv, backing: Backing, size: u64, offset: u64) -> Result<GuestRun, String> {
    let slab0 = slab_kib() as i64;
    let dep0 = deposited_pages() as i64;
    let mut ram = GuestRam::new(backing, size + if offset > 0 { HUGE } else { 0 }, 1)?;
    ram.regions = vec![(RAM_GPA + offset, size)];
    let vm = Vm::new(mshv, DEMO_GUEST, ram)?;
    let dir = stats::newest_partition_dir()?;
    vm.set_params(
        0,
        &[
            (RAM_GPA + offset) as u32,
            size as u32,
            2,
            0,
            0,
            size as u32,
            0,
            0,
            1,
        ],
    );
    let vcpu = vm.create_vp(0)?;
    let shared = run::Shared::new(1);
    let marks: Mutex<Vec<(u16, u32, Instant)>> = Mutex::new(Vec::new());
    let at_touch: Mutex<Option<AtTouch>> = Mutex::new(None);
    let sync = |_vp: usize, port: u16, pass: u32| -> Result<(), String> {
        let now = Instant::now();
        if port == PORT_SYNC && pass == 0 {
            let s = stats::read_kv(&dir.join("stats"))?;
            *at_touch.lock().unwrap() = Some((
                s,
                slab_kib() as i64 - slab0,
                deposited_pages() as i64 - dep0,
            ));
        }
        marks.lock().unwrap().push((port, pass, now));
        Ok(())
    };
    let t0 = Instant::now();
    let end = run::run_vp(&shared, 0, &vcpu, &sync)?;
    shared.flush();
    if end.result != Some(run::RESULT_OK) {
        return Err(format!("the guest did not finish: {:?}", end.result));
    }
    let marks = marks.into_inner().unwrap();
    let at = |port: u16, pass: u32| {
        marks
            .iter()
            .find(|m| m.0 == port && m.1 == pass)
            .map(|m| m.2)
            .ok_or(format!("no mark {port:#x}/{pass}"))
    };
    let first = at(PORT_SYNC, 0)? - t0;
    let retouch = at(PORT_SYNC, 1)? - at(PORT_VERIFIED, 0)?;
    let (stats, slab_kib, deposited) = at_touch.into_inner().unwrap().ok_or("no stats")?;
    drop(vcpu);
    let Vm { vm, code, ram } = vm;
    let t = Instant::now();
    drop(ram);
    let munmap = t.elapsed();
    drop(code);
    drop(vm);
    Ok(GuestRun {
        first,
        retouch,
        stats,
        slab_kib,
        deposited,
        munmap,
    })
}

/// MADV_POPULATE_WRITE of fresh RAM, then its plain munmap.
fn populate(backing: Backing, size: u64) -> Result<(Duration, Duration), String> {
    let ram = GuestRam::new(backing, size, 1)?;
    let t = Instant::now();
    ram.map
        .madvise(0, size, MADV_POPULATE_WRITE)
        .map_err(|e| format!("MADV_POPULATE_WRITE: errno {e}"))?;
    let pop = t.elapsed();
    let t = Instant::now();
    drop(ram);
    Ok((pop, t.elapsed()))
}

/// Region set-up: the time of the RAM region's MSHV_SET_GUEST_MEMORY (the
/// code region is 64 KiB and mapped first), and the map hypercalls.
fn setup(mshv: &Mshv, size: u64, pinned: bool) -> Result<(Duration, u64), String> {
    let ram = GuestRam::new(Backing::Anon, size, 1)?;
    let vm = mshv.create_vm().map_err(|e| format!("create_vm: {e}"))?;
    vm.initialize().map_err(|e| format!("initialize: {e}"))?;
    let dir = stats::newest_partition_dir()?;
    let h0 = stats::read_kv(&dir.join("stats"))?["hypercalls"];
    let region = mshv_user_mem_region {
        size,
        guest_pfn: RAM_GPA / PAGE,
        userspace_addr: ram.map.addr(),
        flags: 1,
        ..Default::default()
    };
    if pinned {
        stats::force_pinned(true)?;
    }
    let t = Instant::now();
    let r = vm.map_user_memory(region);
    let took = t.elapsed();
    if pinned {
        stats::force_pinned(false)?;
    }
    r.map_err(|e| format!("map {size:#x} bytes (pinned {pinned}): {e}"))?;
    let h = stats::read_kv(&dir.join("stats"))?["hypercalls"] - h0;
    drop(vm);
    Ok((took, h))
}

/// ns per failing SET_GUEST_MEMORY(UNMAP) that has to find its region among
/// `n` one-page regions (the size does not match, so after the lookup the
/// driver returns EINVAL without changing anything).
fn lookup(mshv: &Mshv, n: usize, calls: usize) -> Result<f64, String> {
    let ram = GuestRam::new(Backing::Anon, n as u64 * PAGE, 1)?;
    let vm = mshv.create_vm().map_err(|e| format!("create_vm: {e}"))?;
    vm.initialize().map_err(|e| format!("initialize: {e}"))?;
    let region = |i: u64, pages: u64| mshv_user_mem_region {
        size: pages * PAGE,
        // A gap page between regions.
        guest_pfn: RAM_GPA / PAGE + 2 * i,
        userspace_addr: ram.map.addr() + i * PAGE,
        flags: 1,
        ..Default::default()
    };
    for i in 0..n as u64 {
        vm.map_user_memory(region(i, 1))
            .map_err(|e| format!("map region {i} of {n}: {e}"))?;
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut t = Instant::now();
    // The first tenth warms caches up and is not counted.
    for i in 0..calls + calls / 10 {
        if i == calls / 10 {
            t = Instant::now();
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match vm.unmap_user_memory(region(x % n as u64, 2)) {
            Err(e) if e.errno() == libc::EINVAL => {}
            other => return Err(format!("lookup probe: expected EINVAL, got {other:?}")),
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / calls as f64;
    drop(vm);
    Ok(ns)
}

struct Row {
    item: String,
    what: String,
    value: String,
    baseline: String,
    ratio: Option<f64>,
    target: String,
}

fn main() {
    match real_main() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("mshv-bench: error: {e}");
            std::process::exit(1);
        }
    }
}

fn real_main() -> Result<(), String> {
    let o = parse_args()?;
    let mshv = Mshv::new().map_err(|e| format!("open /dev/mshv: {e}"))?;
    let gib = o.size as f64 / GIB;
    let mib = o.size >> 20;
    let t_all = Instant::now();
    eprintln!(
        "mshv-bench: {mib} MiB, {} repetition(s), lookups with {:?} regions",
        o.reps, o.lookups
    );
    let mut rows = Vec::new();

    // 1-4: guest runs with their baselines, interleaved per repetition.
    for backing in [Backing::Anon, Backing::Thp] {
        let (mut first, mut retouch, mut pop, mut mun, mut plain, mut fault) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut last = None;
        for rep in 0..o.reps {
            let g = guest_run(&mshv, backing, o.size, 0)?;
            let (p, m) = populate(backing, o.size)?;
            eprintln!(
                "mshv-bench: {backing} rep {rep}: first touch {:.0} ms, re-touch {:.0} ms, populate {:.0} ms, munmap {:.1} / {:.1} ms",
                ms(g.first),
                ms(g.retouch),
                ms(p),
                ms(g.munmap),
                ms(m)
            );
            fault.push(g.stats.get("fault_ns").copied().unwrap_or(0) as f64 / 1e6);
            first.push(ms(g.first));
            retouch.push(ms(g.retouch));
            pop.push(ms(p));
            mun.push(ms(g.munmap));
            plain.push(ms(m));
            last = Some(g);
        }
        let g = last.unwrap();
        let (f, r, p) = (median(first), median(retouch), median(pop));
        let name = if backing == Backing::Anon {
            "4 KiB"
        } else {
            "THP"
        };
        rows.push(Row {
            item: "1".into(),
            what: format!("guest first touch of {mib} MiB ({name}), one write per page"),
            value: format!("{f:.0} ms"),
            baseline: format!("MADV_POPULATE_WRITE {p:.0} ms"),
            ratio: Some(f / p),
            target: "≤ 1.15 (on hardware)".into(),
        });
        let fl = median(fault);
        rows.push(Row {
            item: "1".into(),
            what: format!(
                "of which in the driver's fault path ({name}; `fault_ns`: HMM fault + map hypercalls)"
            ),
            value: format!("{fl:.0} ms"),
            baseline: format!("MADV_POPULATE_WRITE {p:.0} ms"),
            ratio: Some(fl / p),
            target: "≤ 1.15".into(),
        });
        rows.push(Row {
            item: "1".into(),
            what: format!("same guest loop over mapped memory ({name}): interpreter cost"),
            value: format!("{r:.0} ms"),
            baseline: format!("first touch {f:.0} ms"),
            ratio: Some(r / f),
            target: "—".into(),
        });
        let s = |k: &str| g.stats.get(k).copied().unwrap_or(0) as f64;
        rows.push(Row {
            item: "2".into(),
            what: format!("GPA intercepts / map hypercalls per GiB touched ({name})"),
            value: format!(
                "{:.0} / {:.0}",
                s("gpa_intercepts") / gib,
                s("hypercalls") / gib
            ),
            baseline: format!("{:.0} pages per GiB", GIB / PAGE as f64),
            ratio: None,
            target: "—".into(),
        });
        let (mm, pm) = (median(mun), median(plain));
        rows.push(Row {
            item: "3".into(),
            what: format!("munmap of {mib} MiB mapped movable RAM ({name})"),
            value: format!("{mm:.1} ms"),
            baseline: format!("plain munmap {pm:.1} ms"),
            ratio: Some(mm / pm),
            target: "≤ 1.3".into(),
        });
        if backing == Backing::Anon {
            rows.push(Row {
                item: "4".into(),
                what: "driver memory per GiB of movable RAM (slab growth + deposited pages)".into(),
                value: format!(
                    "{:.0} KiB slab + {:.0} KiB deposited",
                    g.slab_kib as f64 / gib,
                    g.deposited as f64 * 4.0 / gib
                ),
                baseline: "one run".into(),
                ratio: None,
                target: "—".into(),
            });
        }
    }

    // 2: THP with an unaligned start gfn (GPA = 1 GiB + 1 MiB, host address
    // congruent modulo 2 MiB): the interior frames can be 2 MiB entries.
    let g = guest_run(&mshv, Backing::Thp, o.size, 1 << 20)?;
    let m2 = g.stats.get("mapped_2m").copied().unwrap_or(0) as f64 * 512.0;
    let m4 = g.stats.get("mapped_4k").copied().unwrap_or(0) as f64;
    rows.push(Row {
        item: "2".into(),
        what: format!("share of RAM mapped as 2 MiB entries, THP, start gfn 1 MiB past a 2 MiB boundary ({mib} MiB)"),
        value: format!("{:.1} %", 100.0 * m2 / (m2 + m4).max(1.0)),
        baseline: format!("ideal {:.1} %", 100.0 * (o.size - HUGE) as f64 / o.size as f64),
        ratio: None,
        target: "all whole frames".into(),
    });

    // 5: region lookup.
    let calls = if o.smoke { 2000 } else { 20000 };
    // Repetitions outside, region counts inside: load on the machine then
    // hits every count alike.
    let counts: Vec<usize> = std::iter::once(1)
        .chain(o.lookups.iter().copied())
        .collect();
    let mut samples = vec![Vec::new(); counts.len()];
    for _ in 0..o.reps {
        for (i, &n) in counts.iter().enumerate() {
            samples[i].push(lookup(&mshv, n, calls)?);
        }
    }
    let lookup_ns: Vec<(usize, f64)> = counts
        .iter()
        .zip(samples)
        .map(|(&n, v)| (n, median(v)))
        .collect();
    let base = lookup_ns[0].1;
    for &(n, ns) in &lookup_ns[1..] {
        rows.push(Row {
            item: "5".into(),
            what: format!("gfn → region lookup, {n} regions (failing UNMAP ioctl)"),
            value: format!("{ns:.0} ns"),
            baseline: format!("1 region {base:.0} ns"),
            ratio: Some(ns / base),
            target: "grows as log n".into(),
        });
    }

    // 6: pinned set-up vs movable set-up.
    let (mut pt, mut mt, mut pop, mut ph, mut mh) = (vec![], vec![], vec![], 0, 0);
    for _ in 0..o.reps {
        let (t, h) = setup(&mshv, o.size, true)?;
        pt.push(ms(t));
        ph = h;
        let (t, h) = setup(&mshv, o.size, false)?;
        mt.push(ms(t));
        mh = h;
        pop.push(ms(populate(Backing::Anon, o.size)?.0));
    }
    let (p, m, b) = (median(pt), median(mt), median(pop));
    rows.push(Row {
        item: "6".into(),
        what: format!("pinned region set-up, {mib} MiB (pin + map); hypercalls per GiB"),
        value: format!("{p:.0} ms; {:.0}", ph as f64 / gib),
        baseline: format!("MADV_POPULATE_WRITE {b:.0} ms"),
        ratio: Some(p / b),
        target: "—".into(),
    });
    rows.push(Row {
        item: "6".into(),
        what: format!("movable region set-up, {mib} MiB (NO_ACCESS map); hypercalls per GiB"),
        value: format!("{m:.1} ms; {:.0}", mh as f64 / gib),
        baseline: format!("pinned {p:.0} ms"),
        ratio: None,
        target: "—".into(),
    });

    let took = t_all.elapsed().as_secs_f64();
    let md = report(&o, &rows, took);
    println!("-----BEGIN bench.md-----");
    print!("{md}");
    println!("-----END bench.md-----");
    println!("-----BEGIN bench.svg-----");
    print!("{}", svg(&rows, &lookup_ns, mib));
    println!("-----END bench.svg-----");
    Ok(())
}

fn report(o: &Opts, rows: &[Row], took: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Sizes: {} MiB of guest RAM; {} repetition(s), medians; region lookups: {:?} regions. \
         Inside the test VM (QEMU TCG), mshv_rs backend=sim: the guest runs in the module's x86 \
         interpreter (~1 M instructions/s), so guest-side times are dominated by interpretation \
         (see the re-touch rows); host-side times (populate, munmap, ioctls) are TCG speed. \
         Total {took:.0} s.\n",
        o.size >> 20,
        o.reps,
        o.lookups
    );
    let _ = writeln!(
        s,
        "| # | measurement | value | baseline (same boot) | ratio | target |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---|");
    for r in rows {
        let ratio = r.ratio.map_or("—".into(), |x| format!("{x:.2}"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.item, r.what, r.value, r.baseline, ratio, r.target
        );
    }
    s
}

/// Two panels: the ratios (log scale, with 1.0 marked) and lookup cost vs
/// the number of regions (log x).
fn svg(rows: &[Row], lookup: &[(usize, f64)], mib: u64) -> String {
    let mut s = String::new();
    let (w, h) = (900.0, 360.0);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="14">mshv-bench ({mib} MiB): ratios to same-boot baselines (left), region lookup (right)</text>"#
    );
    // Left: horizontal bars, log2 scale from 1/4 to 64.
    let ratios: Vec<(&Row, f64)> = rows
        .iter()
        .filter_map(|r| r.ratio.map(|x| (r, x)))
        .collect();
    let (x0, x1, y0) = (250.0, 560.0, 40.0);
    let (lo, hi) = (-2.0f64, 6.0f64);
    let xpos = |v: f64| x0 + (v.max(1e-9).log2().clamp(lo, hi) - lo) / (hi - lo) * (x1 - x0);
    let bar_h = 260.0 / ratios.len().max(1) as f64;
    for (i, (r, v)) in ratios.iter().enumerate() {
        let y = y0 + i as f64 * bar_h;
        let label: String = format!("{}: {}", r.item, r.what).chars().take(42).collect();
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"#,
            x0 - 5.0,
            y + bar_h * 0.6,
            esc(&label)
        );
        let (a, b) = (xpos(1.0).min(xpos(*v)), xpos(1.0).max(xpos(*v)));
        let _ = writeln!(
            s,
            r##"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4a7bd0"/><text x="{:.1}" y="{:.1}">{v:.2}</text>"##,
            y + 2.0,
            (b - a).max(1.0),
            bar_h - 4.0,
            b + 3.0,
            y + bar_h * 0.6
        );
    }
    for t in [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0] {
        let x = xpos(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="305" stroke="{}" stroke-width="{}"/><text x="{x:.1}" y="318" text-anchor="middle">{t}</text>"##,
            if t == 1.0 { "#000" } else { "#ccc" },
            if t == 1.0 { 1.5 } else { 0.5 }
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.0}" y="334" text-anchor="middle">ratio (log scale)</text>"#,
        (x0 + x1) / 2.0
    );
    // Right: lookup ns vs log10(regions).
    let (px0, px1, py0, py1) = (620.0, 880.0, 50.0, 300.0);
    let maxn = lookup.iter().map(|l| l.0).max().unwrap_or(10).max(10) as f64;
    let maxns = lookup.iter().map(|l| l.1).fold(1.0, f64::max) * 1.1;
    let lx = |n: usize| px0 + (n as f64).log10() / maxn.log10() * (px1 - px0);
    let ly = |ns: f64| py1 - ns / maxns * (py1 - py0);
    let _ = writeln!(
        s,
        r#"<line x1="{px0}" y1="{py1}" x2="{px1}" y2="{py1}" stroke="black"/><line x1="{px0}" y1="{py0}" x2="{px0}" y2="{py1}" stroke="black"/>"#
    );
    let pts: Vec<String> = lookup
        .iter()
        .map(|&(n, ns)| format!("{:.1},{:.1}", lx(n), ly(ns)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#d0504a" stroke-width="2"/>"##,
        pts.join(" ")
    );
    for &(n, ns) in lookup {
        let _ = writeln!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#d0504a"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{ns:.0} ns</text><text x="{:.1}" y="318" text-anchor="middle">{n}</text>"##,
            lx(n),
            ly(ns),
            lx(n),
            ly(ns) - 6.0,
            lx(n)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.0}" y="334" text-anchor="middle">regions (log scale): ns per lookup ioctl</text>"#,
        (px0 + px1) / 2.0
    );
    s.push_str("</svg>\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
