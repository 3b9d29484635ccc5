// SPDX-License-Identifier: GPL-2.0
//
// The driver's trace events (tracefs system `mshv_rs`): the five events
// exist, and one run of a guest through a fault, an injected map failure, its
// retry and an invalidation leaves exactly the records those steps imply,
// with the fields the driver's own counters agree with.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use mshv_bindings::*;

use crate::uapi::*;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure, ensure_eq, fail, note, skip};

use super::sim::{inject, setup, Setup, DATA_GFN, DATA_GPA, DATA_SIZE};

const EVENTS: [&str; 5] = [
    "mshv_handle_gpa_intercept",
    "mshv_map_user_memory",
    "mshv_rs_hvcall_failure",
    "mshv_rs_invalidate",
    "mshv_rs_map_gpa",
];

/// tracefs, mounted if it is not yet; skips if the kernel has no tracing.
fn tracefs() -> TResult<PathBuf> {
    let dir = PathBuf::from("/sys/kernel/tracing");
    if !dir.join("trace").exists() {
        let r = std::process::Command::new("mount")
            .args(["-t", "tracefs", "nodev"])
            .arg(&dir)
            .status();
        if !dir.join("trace").exists() {
            skip!(
                "no tracefs at {} (mount: {r:?}): kernel without tracing",
                dir.display()
            );
        }
    }
    Ok(dir)
}

fn write(path: &Path, value: &str) -> TResult {
    fs::write(path, value)
        .map_err(|e| Failure::Fail(format!("write {value:?} to {}: {e}", path.display())))
}

/// One trace record: the event's name and its `key=value` fields.
pub(super) struct Record {
    event: String,
    fields: BTreeMap<String, String>,
}

impl Record {
    pub(super) fn get(&self, key: &str) -> &str {
        self.fields.get(key).map_or("<missing>", |v| v.as_str())
    }

    /// The values of `keys`, in that order.
    pub(super) fn values(&self, keys: &[&str]) -> Vec<&str> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    fn show(&self) -> String {
        let f: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}: {}", self.event, f.join(" "))
    }
}

/// The `mshv_rs` records in the text of tracefs `trace`.
fn parse(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for ev in EVENTS {
            let tag = format!(" {ev}: ");
            if let Some(pos) = line.find(&tag) {
                let fields = line[pos + tag.len()..]
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                out.push(Record {
                    event: ev.to_string(),
                    fields,
                });
            }
        }
    }
    out
}

/// Enables the `mshv_rs` events on an empty buffer; disables them on drop.
pub(super) struct Tracing {
    dir: PathBuf,
}

impl Tracing {
    pub(super) fn on() -> TResult<Tracing> {
        let dir = tracefs()?;
        let events = dir.join("events/mshv_rs");
        if !events.exists() {
            fail!(
                "{} missing: the module was built without its trace events",
                events.display()
            );
        }
        let mut names: Vec<String> = fs::read_dir(&events)
            .ctx("read the mshv_rs events directory")?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        ensure_eq!(names, EVENTS.to_vec(), "events under events/mshv_rs");
        write(&dir.join("trace"), "")?;
        write(&dir.join("tracing_on"), "1")?;
        write(&events.join("enable"), "1")?;
        Ok(Tracing { dir })
    }

    /// Disables the events and returns the records in the buffer.
    fn take(self) -> TResult<Vec<Record>> {
        write(&self.dir.join("events/mshv_rs/enable"), "0")?;
        self.records()
    }

    /// The records in the buffer so far (tracing goes on).
    pub(super) fn records(&self) -> TResult<Vec<Record>> {
        let text = fs::read_to_string(self.dir.join("trace")).ctx("read tracefs trace")?;
        Ok(parse(&text))
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("events/mshv_rs/enable"), "0");
    }
}

pub(super) fn of<'a>(records: &'a [Record], event: &str) -> Vec<&'a Record> {
    records.iter().filter(|r| r.event == event).collect()
}

fn show_all(records: &[&Record]) -> String {
    records
        .iter()
        .map(|r| r.show())
        .collect::<Vec<_>>()
        .join("\n          ")
}

/// The records of `event`, which must number exactly `n`.
fn exactly<'a>(records: &'a [Record], event: &str, n: usize) -> TResult<Vec<&'a Record>> {
    let found = of(records, event);
    let shown = show_all(&found);
    ensure_eq!(found.len(), n, "{event} records:\n          {shown}");
    Ok(found)
}

/// The values of `keys` in each record of `event` at `gfn`, in order.
fn at_gfn<'a>(records: &'a [Record], event: &str, gfn: &str, keys: &[&str]) -> Vec<Vec<&'a str>> {
    of(records, event)
        .into_iter()
        .filter(|r| r.get("gfn") == gfn)
        .map(|r| r.values(keys))
        .collect()
}

/// A fault, an injected map failure and its retry, and an invalidation,
/// each leave the records they imply, with exact fields.
pub fn trace_events() -> TResult {
    let tracing = Tracing::on()?;
    let Setup {
        p,
        code: _code,
        data,
        vcpu,
    } = setup()?;
    let pt = p
        .debugfs_dir()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A second region over the data region's GFNs: refused, and traced so.
    let overlap = mshv_user_mem_region {
        size: PAGE as u64,
        guest_pfn: DATA_GFN,
        userspace_addr: data.addr(),
        flags: MEM_RWX,
        ..Default::default()
    };
    match p.vm.map_user_memory(overlap) {
        Err(e) => ensure_eq!(
            errname(e.errno()),
            errname(libc::EEXIST),
            "an overlapping SET_GUEST_MEMORY"
        ),
        Ok(()) => fail!("an overlapping SET_GUEST_MEMORY succeeded"),
    }

    let mut m = Monitor::start(&vcpu)?;
    m.write(DATA_GPA, 1)?;
    // HV_STATUS_INVALID_PARAMETER (5) on the first rep of the next map, hit
    // by a write into the region's second 2 MiB window.
    inject("inject_fail_at_rep", "0 5")?;
    let off = 0x20_1000usize;
    let gfn = DATA_GFN + (off / PAGE) as u64;
    let window = DATA_GFN + 0x200;
    let (gfn_s, window_s) = (format!("{gfn:#x}"), format!("{window:#x}"));
    m.begin(CMD_WRITE, &[DATA_GPA + off as u32, 0xfeed])?;
    ensure!(
        m.run_raw().is_err(),
        "RUN_VP after an injected map failure must fail"
    );
    m.finish("guest write after the injected failure")?;
    data.madvise(off, PAGE, libc::MADV_DONTNEED)
        .map_err(|e| Failure::Fail(format!("madvise(MADV_DONTNEED): {}", errname(e))))?;
    m.halt()?;
    let stats = p.stats()?;
    let records = tracing.take()?;
    note!("{} mshv_rs trace records", records.len());

    // SET_GUEST_MEMORY: the code region, the data region, the refused overlap.
    let maps = exactly(&records, "mshv_map_user_memory", 3)?;
    let (uaddr, gfn0) = (format!("{:#x}", data.addr()), format!("{DATA_GFN:#x}"));
    let data_pages = (DATA_SIZE / PAGE).to_string();
    let want = [
        [pt.as_str(), &uaddr, &gfn0, &data_pages, "0"],
        [pt.as_str(), &uaddr, &gfn0, "1", "-17"],
    ];
    for (r, want) in maps[1..].iter().zip(want) {
        ensure_eq!(
            r.values(&[
                "partition_id",
                "start_uaddr",
                "start_gfn",
                "nr_pages",
                "ret"
            ]),
            want.to_vec(),
            "mshv_map_user_memory record {}",
            r.show()
        );
    }

    // Every GPA intercept is traced once; the injected one as not handled.
    ensure_eq!(
        of(&records, "mshv_handle_gpa_intercept").len() as u64,
        stats.get("gpa_intercepts").copied().unwrap_or(u64::MAX),
        "mshv_handle_gpa_intercept records vs the gpa_intercepts counter"
    );
    ensure_eq!(
        at_gfn(
            &records,
            "mshv_handle_gpa_intercept",
            &gfn_s,
            &["access_type", "handled"]
        ),
        vec![vec!["W", "0"], vec!["W", "1"]],
        "intercepts at gfn {gfn:#x} (access_type, handled)"
    );

    // The failed hypercall, and the map runs at the window: failed, then done.
    let fails = exactly(&records, "mshv_rs_hvcall_failure", 1)?;
    ensure_eq!(
        fails[0].values(&["code", "partition_id", "gfn", "status"]),
        vec!["0x4b", pt.as_str(), window_s.as_str(), "0x5"],
        "mshv_rs_hvcall_failure fields"
    );
    ensure_eq!(
        at_gfn(&records, "mshv_rs_map_gpa", &window_s, &["writable", "ret"]),
        vec![vec!["1", "-22"], vec!["1", "0"]],
        "mshv_rs_map_gpa at gfn {window:#x} (writable, ret)"
    );

    // MADV_DONTNEED of one page: one invalidation of exactly that page.
    let invs = exactly(&records, "mshv_rs_invalidate", 1)?;
    ensure_eq!(
        invs[0].values(&["partition_id", "gfn", "pages", "blockable"]),
        vec![pt.as_str(), gfn_s.as_str(), "1", "1"],
        "mshv_rs_invalidate fields"
    );
    ensure_eq!(
        invs.len() as u64,
        stats.get("invalidations").copied().unwrap_or(u64::MAX),
        "mshv_rs_invalidate records vs the invalidations counter"
    );
    Ok(())
}
