// SPDX-License-Identifier: GPL-2.0

//! Little-endian fields in byte buffers (hypercall input and output pages,
//! register-page images, state blobs). Bounds are checked: an access that
//! does not fit is `None` or `false`, never a panic.

/// The `u32` at `off`, if it fits.
pub(super) fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    let b: [u8; 4] = buf.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// The `u64` at `off`, if it fits.
pub(super) fn u64_at(buf: &[u8], off: usize) -> Option<u64> {
    let b: [u8; 8] = buf.get(off..off.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// Writes `v` at `off`; false if it does not fit.
pub(super) fn set_u32(buf: &mut [u8], off: usize, v: u32) -> bool {
    set(buf, off, &v.to_le_bytes())
}

/// Writes `v` at `off`; false if it does not fit.
pub(super) fn set_u64(buf: &mut [u8], off: usize, v: u64) -> bool {
    set(buf, off, &v.to_le_bytes())
}

fn set(buf: &mut [u8], off: usize, bytes: &[u8]) -> bool {
    match off
        .checked_add(bytes.len())
        .and_then(|end| buf.get_mut(off..end))
    {
        Some(d) => {
            d.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_sim_le)]
mod tests {
    use super::*;

    #[test]
    fn le_fields_and_bounds() {
        let mut b = [0u8; 12];
        assert!(set_u64(&mut b, 4, 0x0102_0304_0506_0708));
        assert_eq!(b, [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(u64_at(&b, 4), Some(0x0102_0304_0506_0708));
        assert_eq!(u32_at(&b, 8), Some(0x0102_0304));
        assert!(set_u32(&mut b, 0, 0xa1b2_c3d4));
        assert_eq!(u32_at(&b, 0), Some(0xa1b2_c3d4));
        // The last byte just fits; one further does not, and nothing is written.
        assert_eq!(u32_at(&b, 8), Some(0x0102_0304));
        assert_eq!(u32_at(&b, 9), None);
        assert_eq!(u64_at(&b, 5), None);
        assert!(!set_u32(&mut b, 9, 0xffff_ffff));
        assert!(!set_u64(&mut b, 5, u64::MAX));
        assert_eq!(b, [0xd4, 0xc3, 0xb2, 0xa1, 8, 7, 6, 5, 4, 3, 2, 1]);
        // Offsets whose end overflows usize.
        assert_eq!(u32_at(&b, usize::MAX - 2), None);
        assert_eq!(u64_at(&b, usize::MAX), None);
        assert!(!set_u64(&mut b, usize::MAX - 7, 0));
    }
}
