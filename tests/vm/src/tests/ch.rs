// SPDX-License-Identifier: GPL-2.0
//
// The real Cloud Hypervisor binary (mshv-only, built from the vendored
// tarballs by scripts/cloud-hypervisor) runs the guests of tests/guest/ch_*.S
// on /dev/mshv, with its default seccomp filter on (which allows exactly the
// ioctl numbers of mshv-ioctls 0.7: a check of the ABI in itself). Each case
// checks the exact serial output, the exit status, that RAM was movable
// (faulted in through GPA intercepts, never pinned) and that everything was
// released afterwards.
//
// MSHV_CH_BIN: the directory holding cloud-hypervisor and ch-remote
// (scripts/vm-test sets it after building them on the host).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::guest;
use crate::util::*;
use crate::{ensure, ensure_eq, fail, note};

/// The directory with the Cloud Hypervisor binaries.
fn ch_dir() -> TResult<PathBuf> {
    let Some(dir) = std::env::var_os("MSHV_CH_BIN") else {
        fail!(
            "MSHV_CH_BIN is not set: run through scripts/vm-test, which builds Cloud Hypervisor (scripts/cloud-hypervisor)"
        );
    };
    let dir = PathBuf::from(dir);
    ensure!(
        dir.join("cloud-hypervisor").is_file(),
        "{}/cloud-hypervisor missing (scripts/cloud-hypervisor builds it)",
        dir.display()
    );
    Ok(dir)
}

/// What one cloud-hypervisor run produced.
struct ChRun {
    /// Exit status (`None`: killed by a signal).
    status: Option<i32>,
    /// The signal that killed it, if any.
    signal: Option<i32>,
    /// Everything the guest wrote to the serial port (cloud-hypervisor's
    /// stdout with `--serial tty`).
    serial: String,
    /// cloud-hypervisor's log (stderr).
    log: String,
    /// From spawning cloud-hypervisor to the guest's first and last serial
    /// bytes.
    first_byte: Option<Duration>,
    last_byte: Option<Duration>,
    /// From spawning it to its exit.
    total: Duration,
    /// The most partitions, regions and pinned pages seen alive in
    /// live_objects while it ran.
    max_partitions: u64,
    max_regions: u64,
    max_pinned: u64,
    /// Pinned pages alive before it started (pins another test kept on
    /// purpose until the module is unloaded, such as a kept region's).
    pinned_before: u64,
    /// The last debugfs `stats` read of each partition (by id) while it ran.
    stats: BTreeMap<String, BTreeMapU64>,
}

fn live() -> BTreeMapU64 {
    read_kv(&live_objects_path()).unwrap_or_default()
}

type BTreeMapU64 = std::collections::BTreeMap<String, u64>;

/// `limit` times MSHV_VMTESTS_TIMEOUT_SCALE (the debug kernel is slower).
fn scaled(limit: Duration) -> Duration {
    let scale = std::env::var("MSHV_VMTESTS_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(1.0);
    limit.mul_f64(scale)
}

/// Something to do while cloud-hypervisor runs, once its serial output
/// contains `when`; `action` gets a reader of the serial output so far.
/// With `then_kill`, cloud-hypervisor is killed (SIGKILL) once `action`
/// succeeded.
struct Hook<'a> {
    when: &'a str,
    action: &'a dyn Fn(&dyn Fn() -> String) -> TResult,
    then_kill: bool,
}

/// Runs cloud-hypervisor with `guest` as its `--kernel` and `args`, for at
/// most `limit` (scaled; then kills it and fails).
fn run_ch(name: &str, image: &[u8], args: &[&str], limit: Duration) -> TResult<ChRun> {
    run_ch_with(name, Some(image), args, limit, None)
}

/// [`run_ch`], running `hook` once on the way (a failed hook kills it).
/// Without `image`, there is no `--kernel` and no `--serial`/`--console`
/// (Cloud Hypervisor accepts those only with a payload): `args` says what
/// to run (`--restore`), and the serial and console settings come with it.
fn run_ch_with(
    name: &str,
    image: Option<&[u8]>,
    args: &[&str],
    limit: Duration,
    hook: Option<Hook<'_>>,
) -> TResult<ChRun> {
    let limit = scaled(limit);
    let dir = ch_dir()?;
    ensure_debugfs().map_err(Failure::Fail)?;
    let pinned = std::fs::read_to_string(force_pinned_path()).ctx("read force_pinned")?;
    ensure_eq!(pinned.trim(), "0", "force_pinned before the run");
    let before = live();
    for k in ["partitions", "vps", "regions"] {
        ensure_eq!(
            before.get(k).copied(),
            Some(0),
            "live_objects {k} before cloud-hypervisor runs"
        );
    }

    let kernel = std::env::temp_dir().join(format!("mshv-{name}-{}.elf", std::process::id()));
    let mut cmd = Command::new(dir.join("cloud-hypervisor"));
    if let Some(image) = image {
        std::fs::write(&kernel, image).ctx("write the guest image")?;
        cmd.arg("--kernel").arg(&kernel);
    }
    cmd.args(args);
    if image.is_some() {
        cmd.args(["--serial", "tty", "--console", "off"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    note!("{cmd:?}");
    let started = Instant::now();
    let mut child = cmd.spawn().ctx("spawn cloud-hypervisor")?;

    let mut out = child.stdout.take().unwrap();
    let first = Arc::new(Mutex::new((None, None)));
    let first_w = first.clone();
    let so_far = Arc::new(Mutex::new(Vec::new()));
    let so_far_w = so_far.clone();
    let out_thread = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut f = first_w.lock().unwrap();
                    let now = Some(started.elapsed());
                    if f.0.is_none() {
                        f.0 = now;
                    }
                    f.1 = now;
                    all.extend_from_slice(&buf[..n]);
                    so_far_w.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }
        }
        all
    });
    let mut err = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = err.read_to_end(&mut all);
        all
    });
    // Samples live_objects while it runs.
    let done = Arc::new(AtomicBool::new(false));
    let done_r = done.clone();
    let sampler = std::thread::spawn(move || {
        let (mut p, mut r, mut pin) = (0, 0, 0);
        let mut stats = BTreeMap::new();
        while !done_r.load(Ordering::SeqCst) {
            let l = live();
            let get = |k: &str| l.get(k).copied().unwrap_or(0);
            p = p.max(get("partitions"));
            r = r.max(get("regions"));
            pin = pin.max(get("pinned_pages"));
            if let Ok(dir) = std::fs::read_dir(partitions_dir()) {
                for ent in dir.flatten() {
                    if let Ok(kv) = read_kv(&ent.path().join("stats")) {
                        stats.insert(ent.file_name().to_string_lossy().into_owned(), kv);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (p, r, pin, stats)
    });

    let read_serial = || String::from_utf8_lossy(&so_far.lock().unwrap()).into_owned();
    let mut hook = hook;
    let status = loop {
        if let Some(h) = hook.as_ref() {
            if read_serial().contains(h.when) {
                let res = (h.action)(&read_serial);
                if res.is_ok() && h.then_kill {
                    note!("killing cloud-hypervisor (SIGKILL)");
                    let _ = child.kill();
                }
                hook = None;
                if let Err(e) = res {
                    let _ = child.kill();
                    let _ = child.wait();
                    done.store(true, Ordering::SeqCst);
                    let _ = std::fs::remove_file(&kernel);
                    let log = String::from_utf8_lossy(&err_thread.join().unwrap()).into_owned();
                    note!("cloud-hypervisor log:\n{log}");
                    return Err(e);
                }
            }
        }
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                done.store(true, Ordering::SeqCst);
                let serial = String::from_utf8_lossy(&out_thread.join().unwrap()).into_owned();
                let log = String::from_utf8_lossy(&err_thread.join().unwrap()).into_owned();
                let _ = std::fs::remove_file(&kernel);
                fail!(
                    "cloud-hypervisor still running after {limit:?}; killed\nserial: {serial:?}\nlog:\n{log}"
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => fail!("wait for cloud-hypervisor: {e}"),
        }
    };
    let total = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let serial = String::from_utf8_lossy(&out_thread.join().unwrap()).into_owned();
    let log = String::from_utf8_lossy(&err_thread.join().unwrap()).into_owned();
    let (max_partitions, max_regions, max_pinned, stats) = sampler.join().unwrap();
    let _ = std::fs::remove_file(&kernel);
    use std::os::unix::process::ExitStatusExt;
    let (first_byte, last_byte) = *first.lock().unwrap();
    let run = ChRun {
        status: status.code(),
        signal: status.signal(),
        serial,
        log,
        first_byte,
        last_byte,
        total,
        max_partitions,
        max_regions,
        max_pinned,
        pinned_before: before.get("pinned_pages").copied().unwrap_or(0),
        stats,
    };
    note!(
        "cloud-hypervisor exited {:?} (signal {:?}) after {:.3} s; first serial byte after {}",
        run.status,
        run.signal,
        run.total.as_secs_f64(),
        run.first_byte
            .map_or("never".into(), |d| format!("{:.3} s", d.as_secs_f64()))
    );
    note!("serial output: {:?}", run.serial);
    if let (Some(a), Some(b)) = (run.first_byte, run.last_byte) {
        let n = run.serial.len().max(2) - 1;
        note!(
            "serial bytes after the first: {n} in {:.3} ms ({:.1} us each, one OUT exit per byte)",
            (b - a).as_secs_f64() * 1e3,
            (b - a).as_secs_f64() * 1e6 / n as f64
        );
    }
    note!(
        "while it ran: partitions {} regions {} pinned_pages {} (most seen)",
        run.max_partitions,
        run.max_regions,
        run.max_pinned
    );
    for (id, kv) in &run.stats {
        note!("partition {id}, last stats read: {}", show_kv(kv));
    }
    if !run.log.is_empty() {
        note!("cloud-hypervisor log:\n{}", run.log);
    }
    Ok(run)
}

/// Most pages MSHV_GET/SET_VP_STATE pins for one call (a 4 KiB LAPIC state
/// buffer per vCPU, two vCPUs at once at most here).
const MAX_TRANSIENT_PINS: u64 = 2;

/// The checks every run must pass: exit status 0 (not a signal: a seccomp
/// violation is SIGSYS), the exact serial output, a partition that existed
/// with movable RAM, and nothing left behind.
fn expect(run: &ChRun, serial: &str) -> TResult {
    ensure_eq!(
        (run.status, run.signal),
        (Some(0), None),
        "cloud-hypervisor's exit status (and signal); its serial output and log are above"
    );
    ensure_eq!(run.serial.as_str(), serial, "the guest's serial output");
    ensure!(
        run.max_partitions >= 1 && run.max_regions >= 1,
        "live_objects never showed cloud-hypervisor's partition and RAM region (partitions {}, regions {})",
        run.max_partitions,
        run.max_regions
    );
    // Movable RAM: nothing pins it (the only pins are MSHV_GET/SET_VP_STATE's
    // buffer, a page or two for the moment of the call; a pinned 64 MiB
    // region would hold 16384), and the guest's first touches of it were
    // GPA intercepts the driver resolved (a pinned region is mapped whole
    // when it is created and never intercepts).
    let pinned_during = run.max_pinned.saturating_sub(run.pinned_before);
    ensure!(
        pinned_during <= MAX_TRANSIENT_PINS,
        "pinned pages while cloud-hypervisor ran: {pinned_during} more than the {} before (at most {MAX_TRANSIENT_PINS}: its RAM must be movable)",
        run.pinned_before
    );
    ensure!(
        !run.stats.is_empty(),
        "no partition stats read while it ran"
    );
    // Sampled every 10 ms: a partition that lives only a few tens of
    // milliseconds (the last boot of ch_reboot, whose serial output above
    // proves it ran) can end between two samples, so the faults are
    // required of at least one partition, not of each.
    let faulted = run
        .stats
        .values()
        .filter(|kv| kv.get("gpa_intercepts").copied().unwrap_or(0) >= 1)
        .count();
    ensure!(
        faulted >= 1,
        "no partition showed a resolved GPA intercept (movable RAM faults in): {}",
        run.stats
            .iter()
            .map(|(id, kv)| format!("partition {id}: {}", show_kv(kv)))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let after = live();
    for k in ["partitions", "vps", "regions"] {
        ensure_eq!(
            after.get(k).copied(),
            Some(0),
            "live_objects {k} after cloud-hypervisor exited"
        );
    }
    ensure_eq!(
        after.get("pinned_pages").copied(),
        Some(run.pinned_before),
        "live_objects pinned_pages after cloud-hypervisor exited (as before it started)"
    );
    Ok(())
}

/// ch_hello.S: serial output, then ACPI shutdown; cloud-hypervisor exits 0.
pub fn ch_hello() -> TResult {
    let run = run_ch(
        "ch_hello",
        guest::CH_HELLO,
        &["--cpus", "boot=1", "--memory", "size=64M"],
        Duration::from_secs(120),
    )?;
    expect(&run, "hello\n")
}

/// ch_memory.S: long mode on its own page tables, a pattern written and
/// verified over all 256 MiB of RAM above 2 MiB (one qword per 4 KiB page).
pub fn ch_memory() -> TResult {
    let run = run_ch(
        "ch_memory",
        guest::CH_MEMORY,
        &["--cpus", "boot=1", "--memory", "size=256M"],
        Duration::from_secs(600),
    )?;
    expect(&run, CH_MEMORY_SERIAL)
}

/// The E820 map Cloud Hypervisor gives a 256 MiB guest has RAM at
/// [0, 0xa0000) (640 KiB) and [1 MiB, 256 MiB) (255 MiB): 261760 KiB; the
/// pages from 2 MiB to 256 MiB are 65024.
const CH_MEMORY_SERIAL: &str =
    "ch_memory: long mode, RAM 261760 KiB, 65024 pages written and verified\n";

/// ch_smp.S: `--cpus boot=2`, each vCPU reports (vCPU 1, then vCPU 0).
pub fn ch_smp() -> TResult {
    let run = run_ch(
        "ch_smp",
        guest::CH_SMP,
        &["--cpus", "boot=2", "--memory", "size=64M"],
        Duration::from_secs(180),
    )?;
    expect(&run, "ch_smp: vcpu 1 up\nch_smp: vcpu 0 up, saw vcpu 1\n")
}

/// ch_reboot.S: an i8042 reset makes Cloud Hypervisor tear the partition
/// down and build a new one in the same process; the guest's RAM is a
/// shared file (on tmpfs), so the second boot sees the first one's marker
/// and shuts down.
pub fn ch_reboot() -> TResult {
    let file = std::env::temp_dir().join(format!("mshv-ch_reboot-ram-{}", std::process::id()));
    let f = std::fs::File::create(&file).ctx("create the RAM file")?;
    f.set_len(64 << 20).ctx("size the RAM file")?;
    drop(f);
    let zone = format!("id=mem0,size=64M,file={},shared=on", file.display());
    let run = run_ch(
        "ch_reboot",
        guest::CH_REBOOT,
        &[
            "--cpus",
            "boot=1",
            "--memory",
            "size=0",
            "--memory-zone",
            &zone,
        ],
        Duration::from_secs(180),
    );
    let _ = std::fs::remove_file(&file);
    let run = run?;
    expect(
        &run,
        "ch_reboot: boot 1, resetting\nch_reboot: boot 2, shutting down\n",
    )?;
    ensure!(
        run.log.is_empty() || !run.log.contains("Error"),
        "cloud-hypervisor logged an error:\n{}",
        run.log
    );
    Ok(())
}

/// ch_rng.S: Cloud Hypervisor's virtio-rng through PCI config space, its
/// queue notified through an ioeventfd doorbell (Cloud Hypervisor ignores
/// notify writes that reach it as exits, so the device runs only if the
/// doorbell works), its MSI-X interrupt taken in `sti; hlt` inside
/// MSHV_RUN_VP. The 16 bytes are random: the line is checked up to them,
/// then for 32 hex digits that are not all zero.
pub fn ch_rng() -> TResult {
    let run = run_ch(
        "ch_rng",
        guest::CH_RNG,
        &["--cpus", "boot=1", "--memory", "size=64M"],
        Duration::from_secs(300),
    )?;
    let prefix = "ch_rng: virtio-rng 00:01.0, msi-x vector 0x40 taken, 16 bytes: ";
    let hex = run
        .serial
        .strip_prefix(prefix)
        .and_then(|r| r.strip_suffix('\n'));
    let well_formed = hex.is_some_and(|h| {
        h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()) && h != "0".repeat(32)
    });
    let shown = if well_formed {
        run.serial.clone()
    } else {
        format!("{prefix}<32 hex digits, not all zero>\n")
    };
    expect(&run, &shown)?;
    // The one queue notification was a doorbell (an ioeventfd signalled by
    // the hypervisor), not an MMIO exit that Cloud Hypervisor forwarded.
    ensure_eq!(run.stats.len(), 1, "partitions seen in debugfs");
    let doorbells = run
        .stats
        .values()
        .next()
        .and_then(|kv| kv.get("doorbells").copied());
    ensure_eq!(
        doorbells,
        Some(1),
        "debugfs doorbells of the partition (last read before it went)"
    );
    Ok(())
}

/// Runs `ch-remote --api-socket <sock> <args>`; fails unless it exits 0.
/// Returns its standard output.
fn ch_remote(dir: &Path, sock: &Path, args: &[&str]) -> TResult<String> {
    let out = Command::new(dir.join("ch-remote"))
        .arg("--api-socket")
        .arg(sock)
        .args(args)
        .output()
        .ctx("run ch-remote")?;
    ensure!(
        out.status.success(),
        "ch-remote {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// ch_pause.S under `ch-remote pause` / `resume` (through `--api-socket`):
/// Cloud Hypervisor freezes the partition's time (TIME_FREEZE) and stops
/// its vCPU; while paused the guest prints nothing; resumed, it goes on to
/// its last tick and shuts down with every tick in order.
pub fn ch_pause_resume() -> TResult {
    let dir = ch_dir()?;
    let sock = std::env::temp_dir().join(format!("mshv-ch-api-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let api = format!("path={}", sock.display());
    let remote = |what: &str| -> TResult { ch_remote(&dir, &sock, &[what]).map(drop) };
    let action = |serial: &dyn Fn() -> String| -> TResult {
        remote("pause")?;
        // Output already on its way may still arrive; then nothing.
        std::thread::sleep(Duration::from_millis(300));
        let paused = serial();
        std::thread::sleep(Duration::from_millis(1500));
        ensure_eq!(serial(), paused.clone(), "serial output while paused");
        ensure!(
            !paused.contains("ch_pause: done"),
            "the guest finished before the pause took effect: {paused:?}"
        );
        note!("paused after {:?}", paused.lines().last());
        remote("resume")
    };
    let run = run_ch_with(
        "ch_pause",
        Some(guest::CH_PAUSE),
        &[
            "--cpus",
            "boot=1",
            "--memory",
            "size=64M",
            "--api-socket",
            &api,
        ],
        Duration::from_secs(300),
        Some(Hook {
            when: "ch_pause: tick 1\n",
            action: &action,
            then_kill: false,
        }),
    );
    let _ = std::fs::remove_file(&sock);
    let run = run?;
    expect(&run, &ch_pause_serial())
}

/// The ticks ch_pause.S prints (TICKS there).
const CH_PAUSE_TICKS: u32 = 8;

/// Everything ch_pause.S prints: each tick in order, then "done".
fn ch_pause_serial() -> String {
    let mut want = String::new();
    for i in 0..CH_PAUSE_TICKS {
        want.push_str(&format!("ch_pause: tick {i}\n"));
    }
    want.push_str("ch_pause: done\n");
    want
}

/// ch_pause.S paused after tick 1 (`ch-remote pause`), snapshotted
/// (`ch-remote snapshot file://<dir>`: the vCPU state through
/// MSHV_GET_VP_STATE and the partition's registers, RAM and devices into
/// config.json, state.json and memory-ranges), then cloud-hypervisor is
/// killed. A new cloud-hypervisor `--restore source_url=file://<dir>`
/// builds a new partition from the snapshot (MSHV_SET_VP_STATE for LAPIC,
/// XSAVE, SIMP, SIEFP and synthetic timers), paused; `ch-remote resume`
/// makes the guest go on where it stopped: the second run prints exactly
/// the rest of the first one's output, then shuts down (exit 0).
pub fn ch_snapshot_restore() -> TResult {
    let dir = ch_dir()?;
    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    let sock = tmp.join(format!("mshv-ch-snap-{pid}.sock"));
    let snap = tmp.join(format!("mshv-ch-snap-{pid}"));
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_dir_all(&snap);
    std::fs::create_dir(&snap).ctx("create the snapshot directory")?;
    let res = snapshot_restore(&dir, &sock, &snap);
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_dir_all(&snap);
    res
}

fn snapshot_restore(dir: &Path, sock: &Path, snap: &Path) -> TResult {
    let api = format!("path={}", sock.display());
    let url = format!("file://{}", snap.display());
    let at_snapshot = Mutex::new(None);
    let take = |serial: &dyn Fn() -> String| -> TResult {
        ch_remote(dir, sock, &["pause"])?;
        // Output already on its way may still arrive; then nothing.
        std::thread::sleep(Duration::from_millis(300));
        let paused = serial();
        ensure!(
            !paused.contains("ch_pause: done"),
            "the guest finished before the pause took effect: {paused:?}"
        );
        ch_remote(dir, sock, &["snapshot", &url])?;
        ensure_eq!(serial(), paused.clone(), "serial output while paused");
        note!("snapshotted after {:?}", paused.lines().last());
        *at_snapshot.lock().unwrap() = Some(paused);
        Ok(())
    };
    let first = run_ch_with(
        "ch_snapshot",
        Some(guest::CH_PAUSE),
        &[
            "--cpus",
            "boot=1",
            "--memory",
            "size=64M",
            "--api-socket",
            &api,
        ],
        Duration::from_secs(300),
        Some(Hook {
            when: "ch_pause: tick 1\n",
            action: &take,
            then_kill: true,
        }),
    )?;
    let Some(before) = at_snapshot.lock().unwrap().take() else {
        fail!(
            "cloud-hypervisor exited before the snapshot: {:?} (signal {:?}), serial {:?}",
            first.status,
            first.signal,
            first.serial
        );
    };
    ensure_eq!(
        (first.status, first.signal),
        (None, Some(9)),
        "the snapshotted cloud-hypervisor's exit status (and signal): killed"
    );
    ensure_eq!(
        first.serial,
        before.clone(),
        "its serial output: up to the snapshot"
    );
    let mut files: Vec<String> = std::fs::read_dir(snap)
        .ctx("read the snapshot directory")?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .ctx("read the snapshot directory")?;
    files.sort();
    ensure_eq!(
        files,
        ["config.json", "memory-ranges", "state.json"],
        "the snapshot's files"
    );
    let ram = std::fs::metadata(snap.join("memory-ranges"))
        .ctx("stat memory-ranges")?
        .len();
    note!("snapshot: memory-ranges {ram} bytes");

    // The killed process left its socket behind.
    let _ = std::fs::remove_file(sock);
    let restore = format!("source_url={url}");
    let resume = |_: &dyn Fn() -> String| -> TResult {
        // `ch-remote info` fails until the socket is up and the restore
        // has created the VM; then it must report the VM paused.
        let limit = scaled(Duration::from_secs(120));
        let started = Instant::now();
        let info = loop {
            if let Ok(info) = ch_remote(dir, sock, &["info"]) {
                break info;
            }
            ensure!(
                started.elapsed() < limit,
                "ch-remote info did not answer within {limit:?} of the restore"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let state: String = info.split_whitespace().collect();
        ensure!(
            state.contains("\"state\":\"Paused\""),
            "the restored VM is not paused: {info}"
        );
        ch_remote(dir, sock, &["resume"]).map(drop)
    };
    let second = run_ch_with(
        "ch_restore",
        None,
        &["--api-socket", &api, "--restore", &restore],
        Duration::from_secs(300),
        Some(Hook {
            when: "",
            action: &resume,
            then_kill: false,
        }),
    )?;
    let want = ch_pause_serial();
    let Some(rest) = want.strip_prefix(before.as_str()) else {
        fail!("the output before the snapshot is not a prefix of {want:?}: {before:?}");
    };
    expect(&second, rest)
}
