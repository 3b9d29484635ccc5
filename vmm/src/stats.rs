// SPDX-License-Identifier: GPL-2.0
//
// The driver's per-partition statistics (mshv_rs debugfs:
// partitions/<id>/stats, one `name value` line per counter). Optional: the
// C driver and a machine without debugfs have none, and the VMM says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DEBUGFS: &str = "/sys/kernel/debug/mshv_rs";

/// `name value` lines.
pub fn read_kv(path: &Path) -> Result<BTreeMap<String, u64>, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut map = BTreeMap::new();
    for line in s.lines() {
        let mut it = line.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let Ok(v) = v.parse() {
                map.insert(k.to_owned(), v);
            }
        }
    }
    Ok(map)
}

/// The debugfs directory of the newest partition (call right after creating
/// one; the demo is the only VMM on the machine).
pub fn newest_partition_dir() -> Result<PathBuf, String> {
    let dir = Path::new(DEBUGFS).join("partitions");
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    rd.flatten()
        .filter_map(|e| {
            let id: u64 = e.file_name().to_str()?.parse().ok()?;
            Some((id, e.path()))
        })
        .max_by_key(|(id, _)| *id)
        .map(|(_, p)| p)
        .ok_or_else(|| format!("no partition under {}", dir.display()))
}

/// Sets debugfs force_pinned (new RAM regions are pinned while it is 1).
pub fn force_pinned(on: bool) -> Result<(), String> {
    let p = Path::new(DEBUGFS).join("force_pinned");
    std::fs::write(&p, if on { "1" } else { "0" }).map_err(|e| format!("{}: {e}", p.display()))
}

/// The counters of the summary table, in order, with their labels.
const ROWS: &[(&str, &str)] = &[
    ("gpa_intercepts", "GPA intercepts handled in the kernel"),
    ("mapped_4k", "pages mapped as 4 KiB entries"),
    ("mapped_2m", "pages mapped as 2 MiB entries"),
    ("invalidations", "invalidations (MMU notifier)"),
    ("invalidations_busy", "invalidations refused (lock busy)"),
    ("remapped_4k", "4 KiB pages remapped NO_ACCESS"),
    ("hypercalls", "map/unmap hypercalls"),
    ("deposit_retries", "deposit retries in the fault path"),
    ("fault_retries", "fault retries (raced an invalidation)"),
    ("invalidate_failures", "invalidation remaps that failed"),
    ("fault_ns", "time in the fault path"),
];

fn show(key: &str, v: u64) -> String {
    if key == "fault_ns" {
        format!("{}.{:03} ms", v / 1_000_000, v / 1_000 % 1_000)
    } else {
        v.to_string()
    }
}

/// Prints the statistics as a table; counters this VMM does not know are
/// listed after the known ones.
pub fn print_table(stats: &BTreeMap<String, u64>) {
    println!("| driver statistic (partitions/<id>/stats) | value |");
    println!("|---|---:|");
    for (k, label) in ROWS {
        if let Some(v) = stats.get(*k) {
            println!("| {label} (`{k}`) | {} |", show(k, *v));
        }
    }
    for (k, v) in stats {
        if !ROWS.iter().any(|(r, _)| r == k) {
            println!("| `{k}` | {v} |");
        }
    }
}
