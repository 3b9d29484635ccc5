// SPDX-License-Identifier: GPL-2.0

//! The MSI routing table of `MSHV_SET_MSI_ROUTING`: GSI → MSI address/data,
//! decoded into the arguments of `HVCALL_ASSERT_VIRTUAL_INTERRUPT`.
//!
//! Validation is upstream's (`mshv_update_routing_table`): every GSI below
//! [`MSHV_MAX_GUEST_IRQS`], `address_hi` zero, no GSI twice; the table has
//! `max(gsi) + 1` slots. Decoding is upstream's x86 `mshv_copy_girq_info`:
//! no extended destination id, no x2APIC `address_hi`.

use crate::{
    hv::VirtualInterrupt,
    uapi::{MshvUserIrqEntry, MSHV_MAX_GUEST_IRQS},
};
use kernel::prelude::*;

/// One valid route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The MSI address (low 32 bits).
    pub(crate) address_lo: u32,
    /// The MSI data.
    pub(crate) data: u32,
}

impl Route {
    /// The interrupt this MSI raises: vector = data[7:0], type =
    /// data[10:8], level = data[15], APIC id = address[19:12], logical
    /// destination = address[2].
    pub(crate) fn interrupt(&self) -> VirtualInterrupt {
        VirtualInterrupt {
            kind: (self.data >> 8) & 0x7,
            vector: self.data & 0xff,
            dest: u64::from((self.address_lo >> 12) & 0xff),
            level: self.data & (1 << 15) != 0,
            logical: self.address_lo & (1 << 2) != 0,
        }
    }
}

/// Checks `entries` and returns the number of table slots they need
/// (`max(gsi) + 1`, 0 for no entries). Duplicates are found by [`build`].
pub(crate) fn table_len(entries: &[MshvUserIrqEntry]) -> Result<usize> {
    let mut len = 0;
    for e in entries {
        if e.gsi >= MSHV_MAX_GUEST_IRQS || e.address_hi != 0 {
            return Err(EINVAL);
        }
        len = len.max(e.gsi as usize + 1);
    }
    Ok(len)
}

/// Builds the table for `entries`: slot `gsi` holds its route.
pub(crate) fn build(entries: &[MshvUserIrqEntry]) -> Result<KVec<Option<Route>>> {
    let len = table_len(entries)?;
    let mut table = KVec::with_capacity(len, GFP_KERNEL_ACCOUNT)?;
    table.resize(len, None, GFP_KERNEL_ACCOUNT)?;
    for e in entries {
        let slot = table.get_mut(e.gsi as usize).ok_or(EINVAL)?;
        if slot.is_some() {
            // One route per GSI.
            return Err(EINVAL);
        }
        *slot = Some(Route {
            address_lo: e.address_lo,
            data: e.data,
        });
    }
    Ok(table)
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_irq_routing)]
mod tests {
    use super::*;

    fn e(gsi: u32, address_lo: u32, address_hi: u32, data: u32) -> MshvUserIrqEntry {
        MshvUserIrqEntry {
            gsi,
            address_lo,
            address_hi,
            data,
        }
    }

    #[test]
    fn decode_msi() {
        // APIC id 3, fixed, edge, vector 0x31.
        let r = Route {
            address_lo: 0xfee0_3000,
            data: 0x31,
        };
        assert_eq!(
            r.interrupt(),
            VirtualInterrupt {
                kind: 0,
                vector: 0x31,
                dest: 3,
                level: false,
                logical: false
            }
        );
        // APIC id 0xff, logical, NMI (4), level.
        let r = Route {
            address_lo: 0xfeef_f004,
            data: 0x8000 | (4 << 8) | 0x02,
        };
        assert_eq!(
            r.interrupt(),
            VirtualInterrupt {
                kind: 4,
                vector: 2,
                dest: 0xff,
                level: true,
                logical: true
            }
        );
    }

    #[test]
    fn validation() -> Result {
        assert_eq!(table_len(&[]), Ok(0));
        assert_eq!(table_len(&[e(5, 0, 0, 0), e(2, 0, 0, 0)]), Ok(6));
        assert_eq!(table_len(&[e(4095, 0, 0, 0)]), Ok(4096));
        assert_eq!(table_len(&[e(4096, 0, 0, 0)]), Err(EINVAL));
        assert_eq!(table_len(&[e(1, 0, 1, 0)]), Err(EINVAL));
        assert!(build(&[e(1, 0, 0, 0), e(1, 0, 0, 1)]).is_err());
        let t = build(&[e(3, 0xfee0_1000, 0, 0x40), e(0, 0xfee0_0000, 0, 0x30)])?;
        assert_eq!(t.len(), 4);
        assert_eq!(
            t.get(3).copied().flatten(),
            Some(Route {
                address_lo: 0xfee0_1000,
                data: 0x40
            })
        );
        assert_eq!(t.get(1).copied().flatten(), None);
        assert_eq!(t.get(0).copied().flatten().map(|r| r.data), Some(0x30));
        Ok(())
    }
}
