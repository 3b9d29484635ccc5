// SPDX-License-Identifier: GPL-2.0
//
// Pure arithmetic of the demo: sizes on the command line, the VPs' slices of
// guest RAM, and which 2 MiB chunks a pass drops (the guest computes the same
// rule, see examples/guest/demo32.S). Tested with `cargo test` (make
// host-test).

use crate::vm::{HUGE, PAGE, RAM_GPA};

/// "16M", "1G", "4096", "512K" -> bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// VP i's slice of `ram_size` bytes of RAM at RAM_GPA: (gpa, size). Slices
/// are whole 2 MiB chunks when RAM allows (so that holes, counted in 2 MiB
/// chunks from each slice's start, stay aligned), whole pages otherwise; the
/// last VP takes the rest. Every slice has at least one page.
pub fn slices(ram_size: u64, vcpus: usize) -> Result<Vec<(u64, u64)>, String> {
    let n = vcpus as u64;
    if n == 0 || ram_size < n * PAGE {
        return Err(format!(
            "{ram_size:#x} bytes of RAM cannot give {vcpus} VP(s) a page each"
        ));
    }
    let g = if ram_size >= n * HUGE { HUGE } else { PAGE };
    let per = ram_size / n / g * g;
    Ok((0..n)
        .map(|i| {
            let size = if i + 1 == n { ram_size - i * per } else { per };
            (RAM_GPA + i * per, size)
        })
        .collect())
}

/// The chunks (offset from the slice start, length) that the VMM drops after
/// the write phase of `pass` in a slice of `size` bytes: every 2 MiB chunk C
/// (the last one possibly short) with C mod `holes` = `pass` mod `holes`.
/// None when `holes` is 0.
pub fn hole_chunks(size: u64, holes: u32, pass: u32) -> Vec<(u64, u64)> {
    if holes == 0 {
        return Vec::new();
    }
    let chunks = size.div_ceil(HUGE);
    (0..chunks)
        .filter(|c| c % holes as u64 == (pass % holes) as u64)
        .map(|c| (c * HUGE, HUGE.min(size - c * HUGE)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("16m"), Some(16 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("1T"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("99999999999G"), None);
    }

    #[test]
    fn slices_cover_ram_exactly() {
        for (size, vcpus) in [(16 << 20, 1), (16 << 20, 3), (1 << 30, 7), (64 << 10, 2)] {
            let s = slices(size, vcpus).unwrap();
            assert_eq!(s.len(), vcpus);
            assert_eq!(s[0].0, RAM_GPA);
            for w in s.windows(2) {
                assert_eq!(w[0].0 + w[0].1, w[1].0, "contiguous");
            }
            let total: u64 = s.iter().map(|x| x.1).sum();
            assert_eq!(total, size);
            assert!(s.iter().all(|x| x.1 >= PAGE && x.0 % PAGE == 0));
        }
        // 16 MiB over 3 VPs: 2 MiB granules (4 + 4 + 8 MiB).
        assert_eq!(
            slices(16 << 20, 3).unwrap(),
            vec![
                (RAM_GPA, 4 << 20),
                (RAM_GPA + (4 << 20), 4 << 20),
                (RAM_GPA + (8 << 20), 8 << 20)
            ]
        );
        assert!(slices(PAGE, 2).is_err());
        assert!(slices(1 << 20, 0).is_err());
    }

    #[test]
    fn holes() {
        assert!(hole_chunks(16 << 20, 0, 0).is_empty());
        // 16 MiB = chunks 0..8; stride 8: pass 0 -> chunk 0, pass 9 -> chunk 1.
        assert_eq!(hole_chunks(16 << 20, 8, 0), vec![(0, HUGE)]);
        assert_eq!(hole_chunks(16 << 20, 8, 9), vec![(HUGE, HUGE)]);
        // A short last chunk: 5 MiB, stride 2, pass 0 -> chunks 0 and 2 (1 MiB).
        assert_eq!(
            hole_chunks(5 << 20, 2, 0),
            vec![(0, HUGE), (2 * HUGE, 1 << 20)]
        );
        // Stride 1 drops everything.
        let all: u64 = hole_chunks(5 << 20, 1, 3).iter().map(|c| c.1).sum();
        assert_eq!(all, 5 << 20);
    }
}
