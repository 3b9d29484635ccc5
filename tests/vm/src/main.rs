// SPDX-License-Identifier: GPL-2.0
//
// mshv-vmtests: integration tests of /dev/mshv (mshv_rs), run inside the test
// VM as root with the module loaded (`insmod mshv_rs.ko backend=sim`).
//
//   mshv-vmtests [--list] [--scheduler root|core] [-v|--verbose] [FILTER...]
//
// Runs every test case whose name contains one of the FILTERs (all of them
// without a filter) and that applies to the emulator's scheduler model
// (tests::ROOT_SCHEDULER_ONLY and CORE_SCHEDULER_ONLY; the model is the
// loaded module's sim_scheduler=, or --scheduler, which --list needs to
// list one model's cases), one at a time, each in a forked child process with a
// time limit, and prints TAP version 13. A failed case is followed by `# `
// lines saying what was expected and what was seen; a case whose prerequisite
// is missing is `ok N - name # SKIP reason`. The last line is
// `# mshv-vmtests: N passed, M failed, K skipped`; the exit status is 1 if any
// case failed (or could not run at all), else 0.
//
// Environment: MSHV_FAULTS=1 marks each test case's process for failslab's
// task filter (/proc/self/make-it-fail) and accepts clean errnos (see
// scripts/check-faults); MSHV_STRESS_SECS=<n> is the length of scen_stress
// (default 60). MSHV_VMTESTS_TIMEOUT_SCALE=<float> multiplies every time limit
// (slow emulation); MSHV_VMTESTS_DEBUGFS=<dir> replaces the driver's debugfs
// directory /sys/kernel/debug/mshv_rs (debugfs mounted elsewhere). Without it
// the harness mounts debugfs on /sys/kernel/debug if needed.
//
// Guest programs: tests/guest/*.S, assembled by build.rs and embedded.

mod guest;
mod tests;
mod uapi;
mod util;
mod vmm;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use util::{errname, errno, Failure};

/// One test case.
pub struct TestCase {
    pub name: &'static str,
    pub func: fn() -> util::TResult,
    /// Time limit in seconds (before MSHV_VMTESTS_TIMEOUT_SCALE).
    pub timeout: u64,
}

enum Outcome {
    Pass,
    Fail(Vec<String>),
    Skip(String),
}

fn usage() -> ! {
    eprintln!("usage: mshv-vmtests [--list] [--scheduler root|core] [-v|--verbose] [FILTER...]");
    eprintln!("  runs the mshv_rs VM tests whose names contain a FILTER (all without one)");
    std::process::exit(2);
}

fn main() {
    let mut list = false;
    let mut filters = Vec::new();
    let mut scheduler = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--list" => list = true,
            "--scheduler" => match args.next().as_deref() {
                Some(s @ ("root" | "core")) => scheduler = Some(s.to_string()),
                _ => usage(),
            },
            "-v" | "--verbose" => util::set_verbose(true),
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => {
                eprintln!("mshv-vmtests: unknown option {s}");
                usage();
            }
            _ => filters.push(a),
        }
    }
    if scheduler.is_none() && !list {
        scheduler = util::sim_scheduler();
    }
    let excluded: &[&str] = match scheduler.as_deref() {
        Some("root") => tests::CORE_SCHEDULER_ONLY,
        Some("core") => tests::ROOT_SCHEDULER_ONLY,
        _ => &[],
    };
    let selected: Vec<&TestCase> = tests::ALL
        .iter()
        .filter(|t| filters.is_empty() || filters.iter().any(|f| t.name.contains(f.as_str())))
        .filter(|t| !excluded.contains(&t.name))
        .collect();
    if list {
        for t in &selected {
            println!("{}", t.name);
        }
        return;
    }
    if selected.is_empty() {
        eprintln!("mshv-vmtests: no test matches {filters:?} (see --list)");
        std::process::exit(1);
    }
    let scale = match std::env::var("MSHV_VMTESTS_TIMEOUT_SCALE") {
        Ok(s) => match s.parse::<f64>() {
            Ok(v) if v > 0.0 => v,
            _ => {
                eprintln!("mshv-vmtests: bad MSHV_VMTESTS_TIMEOUT_SCALE {s:?}");
                std::process::exit(2);
            }
        },
        Err(_) => 1.0,
    };

    println!("TAP version 13");
    println!("1..{}", selected.len());
    if let Some(s) = &scheduler {
        // Not SKIPs: these cases assert the other model's protocol and are
        // not part of this model's run (tests/expected/vm-core.txt).
        println!("# emulator scheduler: {s}; not run under it: {excluded:?}");
    }
    if let Err(why) = preflight() {
        println!("Bail out! {why}");
        println!(
            "# mshv-vmtests: 0 passed, {} failed, 0 skipped",
            selected.len()
        );
        eprintln!("mshv-vmtests: {why}");
        std::process::exit(1);
    }

    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (i, t) in selected.iter().enumerate() {
        let n = i + 1;
        let limit = Duration::from_secs_f64(t.timeout as f64 * scale);
        let started = Instant::now();
        let (outcome, diags) = run_forked(t, limit);
        let secs = started.elapsed().as_secs_f64();
        // With -v the diagnostics were already streamed while the test ran.
        let diags = if util::verbose() { Vec::new() } else { diags };
        match outcome {
            Outcome::Pass => {
                passed += 1;
                println!("ok {n} - {}", t.name);
            }
            Outcome::Skip(why) => {
                skipped += 1;
                println!("ok {n} - {} # SKIP {why}", t.name);
                print_diags(&diags);
            }
            Outcome::Fail(lines) => {
                failed += 1;
                println!("not ok {n} - {}", t.name);
                print_diags(&diags);
                print_diags(&lines);
            }
        }
        println!("# {}: {secs:.1} s", t.name);
        let _ = std::io::stdout().flush();
    }
    println!("# mshv-vmtests: {passed} passed, {failed} failed, {skipped} skipped");
    std::process::exit(if failed > 0 { 1 } else { 0 });
}

fn print_diags(lines: &[String]) {
    for l in lines {
        println!("# {l}");
    }
}

/// What must hold before any test can run.
fn preflight() -> Result<(), String> {
    if !Path::new("/dev/mshv").exists() {
        return Err(
            "/dev/mshv does not exist: run inside the test VM with the driver loaded (insmod mshv_rs.ko backend=sim)"
                .into(),
        );
    }
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("must run as root (inside the test VM)".into());
    }
    match util::backend() {
        Ok(b) => println!("# mshv_rs backend: {b}"),
        Err(e) => return Err(format!("mshv_rs is not loaded as a module: {e}")),
    }
    if let Err(e) = util::ensure_debugfs() {
        // Only some tests need debugfs; they fail with this reason.
        println!("# note: {e}");
    }
    Ok(())
}

/// Runs `t` in a child process; returns its outcome and diagnostics.
fn run_forked(t: &TestCase, limit: Duration) -> (Outcome, Vec<String>) {
    let mut fds = [0i32; 2];
    // SAFETY: a two-element array for pipe2.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return (
            Outcome::Fail(vec![format!("pipe2: {}", errname(errno()))]),
            vec![],
        );
    }
    let (rd, wr) = (fds[0], fds[1]);
    let _ = std::io::stdout().flush();
    // SAFETY: the harness is single-threaded; the child only runs the test
    // case and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return (
            Outcome::Fail(vec![format!("fork: {}", errname(errno()))]),
            vec![],
        );
    }
    if pid == 0 {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(rd) };
        child(t, wr);
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(wr) };
    parent(t, pid, rd, limit)
}

fn child(t: &TestCase, wr: i32) -> ! {
    util::set_report_fd(wr);
    // MSHV_FAULTS=1 (scripts/check-faults): only the test case's process
    // (and its children) is subject to failslab's task filter, not the
    // runner.
    if util::faults_mode() {
        if let Err(e) = std::fs::write("/proc/self/make-it-fail", "1") {
            util::note(&format!("warning: /proc/self/make-it-fail: {e}"));
        }
    }
    std::panic::set_hook(Box::new(|info| {
        if util::CRATE_PANIC_EXPECTED.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let msg = util::panic_message(info.payload());
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        util::report('F', &format!("panicked at {loc}: {msg}"));
    }));
    let r = std::panic::catch_unwind(t.func);
    match r {
        Ok(Ok(())) => util::report('P', ""),
        Ok(Err(Failure::Skip(why))) => util::report('S', &why),
        Ok(Err(Failure::Fail(text))) => util::report('F', &text),
        Err(_) => util::report('F', "the test case panicked"),
    }
    // SAFETY: leave without running the parent's atexit handlers or
    // flushing its (empty) stdio buffers a second time.
    unsafe { libc::_exit(0) }
}

fn parent(t: &TestCase, pid: i32, rd: i32, limit: Duration) -> (Outcome, Vec<String>) {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut timed_out = false;
    let mut streamed = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        let mut pfd = libc::pollfd {
            fd: rd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(1000) as i32;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            break;
        }
        if r == 0 {
            continue;
        }
        let mut chunk = [0u8; 4096];
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(rd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n as usize]);
        if util::verbose() {
            // Stream the diagnostics of long tests as they come, whole lines.
            if let Some(end) = buf.iter().rposition(|&b| b == b'\n') {
                if end >= streamed {
                    let text = String::from_utf8_lossy(&buf[streamed..end]);
                    for l in text.lines() {
                        if let Some(d) = l.strip_prefix("D ") {
                            println!("#   {}: {d}", t.name);
                        }
                    }
                    streamed = end + 1;
                    let _ = std::io::stdout().flush();
                }
            }
        }
    }
    // SAFETY: our read end.
    unsafe { libc::close(rd) };

    let mut extra = Vec::new();
    if timed_out {
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        extra.push(format!(
            "timed out after {:.0} s (set MSHV_VMTESTS_TIMEOUT_SCALE for slow machines); killed the child",
            limit.as_secs_f64()
        ));
    }
    let status = reap(pid, if timed_out { 10 } else { 30 });

    let text = String::from_utf8_lossy(&buf);
    let mut diags = Vec::new();
    let mut fail_lines = Vec::new();
    let mut outcome = None;
    for l in text.lines() {
        let mut chars = l.chars();
        let tag = chars.next();
        let rest = chars.as_str();
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match tag {
            Some('D') => diags.push(rest.to_string()),
            Some('F') => fail_lines.push(rest.to_string()),
            Some('S') => outcome = Some(Outcome::Skip(rest.to_string())),
            Some('P') => outcome = Some(Outcome::Pass),
            _ => diags.push(l.to_string()),
        }
    }
    if !fail_lines.is_empty() {
        outcome = Some(Outcome::Fail(fail_lines));
    }
    let outcome = match (outcome, timed_out) {
        (_, true) => Outcome::Fail(extra),
        (Some(o), false) => {
            if let Some(s) = status.filter(|s| *s != 0) {
                diags.push(format!("(the child's wait status was {s:#x})"));
            }
            o
        }
        (None, false) => Outcome::Fail(vec![match status {
            Some(s) if libc::WIFSIGNALED(s) => format!(
                "the test process was killed by signal {} before reporting a result",
                libc::WTERMSIG(s)
            ),
            Some(s) => format!(
                "the test process exited with status {} before reporting a result",
                libc::WEXITSTATUS(s)
            ),
            None => "the test process did not report a result and could not be reaped".into(),
        }]),
    };
    (outcome, diags)
}

/// Waits up to `secs` for the child; `None` if it is stuck (e.g. in the
/// kernel, unkillable).
fn reap(pid: i32, secs: u64) -> Option<i32> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && errno() != libc::EINTR {
            return None;
        }
        if Instant::now() >= until {
            println!("# warning: child {pid} did not exit; it may be stuck in the kernel");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
