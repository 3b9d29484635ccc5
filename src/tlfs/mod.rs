// SPDX-License-Identifier: GPL-2.0

//! The Hyper-V ABI that both sides of the hypercall seam share: the driver's
//! Hyper-V backend (`hv`) encodes with these types and the emulator (`sim`)
//! decodes with them, so one definition pins each layout.
//!
//! - [`abi`]: hypercall codes, input and output structs, messages, registers;
//! - [`status`]: `HV_STATUS_*` and their errnos;
//! - [`seam`]: the narrow interface a hypervisor is to a root kernel
//!   (docs/design.md, "The hypervisor boundary").

pub(crate) mod abi;
pub(crate) mod seam;
pub(crate) mod status;

use kernel::prelude::*;

/// A non-success hypercall status (`HV_STATUS_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HvError(pub(crate) u16);

/// Result of a hypercall.
pub(crate) type HvResult<T = ()> = core::result::Result<T, HvError>;

/// Result of a rep hypercall: on failure, how many reps completed first.
pub(crate) type RepResult = core::result::Result<(), RepError>;

/// A rep hypercall that stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RepError {
    /// Reps that completed before the failure.
    pub(crate) done: usize,
    /// Why it stopped.
    pub(crate) error: HvError,
}

impl HvError {
    /// The hypervisor wants more deposited memory before it can go on.
    pub(crate) fn needs_memory(self) -> bool {
        status::needs_memory(self.0)
    }

    /// The errno userspace sees for this status.
    pub(crate) fn to_error(self) -> Error {
        Error::from_errno(status::to_errno(self.0))
    }
}

impl From<HvError> for Error {
    fn from(e: HvError) -> Error {
        e.to_error()
    }
}

/// A 128-bit Hyper-V register value.
pub(crate) type RegValue = [u64; 2];

/// Arguments of `HVCALL_CREATE_PARTITION` the driver derives from the ioctl.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CreatePartition {
    /// `HV_PARTITION_CREATION_FLAG_*`.
    pub(crate) flags: u64,
    /// Disabled processor feature banks.
    pub(crate) disabled_features: [u64; 2],
    /// Disabled XSAVE features.
    pub(crate) disabled_xsave: u64,
}

/// One kind of VP state page (`HV_VP_STATE_PAGE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VpPage {
    /// `struct hv_vp_register_page`.
    Registers = 0,
    /// The intercept message page (`struct hv_message` at offset 0).
    InterceptMessage = 1,
}

impl VpPage {
    /// The page of `HV_VP_STATE_PAGE_*` value `v` (the emulator decodes).
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn from_raw(v: u16) -> Option<Self> {
        match v {
            0 => Some(Self::Registers),
            1 => Some(Self::InterceptMessage),
            _ => None,
        }
    }
}

/// Arguments of `HVCALL_ASSERT_VIRTUAL_INTERRUPT`
/// (`hv_input_assert_virtual_interrupt` without the partition id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VirtualInterrupt {
    /// `HV_X64_INTERRUPT_TYPE_*` (fixed 0, lowest priority 1, NMI 4, ExtINT 7).
    pub(crate) kind: u32,
    /// The vector.
    pub(crate) vector: u32,
    /// The destination: an APIC id, or a logical destination with `logical`.
    pub(crate) dest: u64,
    /// Level-triggered (the guest's EOI is reported back).
    pub(crate) level: bool,
    /// `dest` is a logical destination.
    pub(crate) logical: bool,
}

/// A doorbell: a guest write that the hypervisor completes itself and
/// reports to the root as a notification on a port, instead of an intercept
/// (`HVCALL_CREATE_PORT` with `HV_PORT_TYPE_DOORBELL` and
/// `HVCALL_CONNECT_PORT` in upstream's ioeventfd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Doorbell {
    /// The guest physical address written.
    pub(crate) gpa: u64,
    /// The write size that triggers: 1, 2, 4 or 8; 0 for any.
    pub(crate) len: u32,
    /// The value that triggers (zero-extended little-endian); `None` for any.
    pub(crate) datamatch: Option<u64>,
}

impl Doorbell {
    /// Whether a guest write of `data` at `gpa` rings this doorbell.
    #[cfg(CONFIG_MSHV_RS_EMULATOR)]
    pub(crate) fn matches(&self, gpa: u64, data: &[u8]) -> bool {
        if gpa != self.gpa || data.is_empty() || data.len() > 8 {
            return false;
        }
        if self.len != 0 && data.len() != self.len as usize {
            return false;
        }
        let mut v = [0u8; 8];
        if let Some(dst) = v.get_mut(..data.len()) {
            dst.copy_from_slice(data);
        }
        self.datamatch
            .is_none_or(|want| want == u64::from_le_bytes(v))
    }
}

/// log2 of the page size of the hypervisor's interface (`HV_HYP_PAGE_SHIFT`):
/// gfns, pfns, SLAT entries and hypercall input and output pages are in these
/// units. It is the project's one page-size constant; the driver also
/// requires Linux pages of the same size (asserted below), so a gfn range and
/// the user range behind it have the same number of pages.
pub(crate) const HV_PAGE_SHIFT: u32 = 12;
/// [`HV_PAGE_SHIFT`] in bytes: the length of a hypercall page buffer.
pub(crate) const HV_PAGE: usize = 1 << HV_PAGE_SHIFT;
const _: () = assert!(kernel::page::PAGE_SIZE == HV_PAGE);

/// Pages (4 KiB units) covered by `reps` completed reps of a map or unmap call
/// with large (2 MiB, 512 pages) or small entries. Upstream's rollback mixed
/// the units.
pub(crate) const fn pages_of_reps(reps: u64, large: bool) -> u64 {
    if large {
        reps.saturating_mul(512)
    } else {
        reps
    }
}

/// How many repetitions of `rep_size` bytes fit in one hypercall input page
/// after a `header` of fixed fields.
pub(crate) const fn reps_per_page(header: usize, rep_size: usize) -> usize {
    if rep_size == 0 || header >= HV_PAGE {
        return 0;
    }
    (HV_PAGE - header) / rep_size
}

/// Most reps of one `HVCALL_GET_GPA_PAGES_ACCESS_STATES`: one byte of output
/// each, in one output page (upstream subtracts one state, as here).
pub(crate) const GPA_ACCESS_STATES_BATCH: usize = HV_PAGE - 1;

/// `hv_vp_state_data`: which VP state `HVCALL_GET/SET_VP_STATE` move.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VpStateData {
    /// `HV_GET_SET_VP_STATE_*`.
    pub(crate) kind: u32,
    /// `xsave.flags`.
    pub(crate) xsave_flags: u64,
    /// `xsave.states` (XCR0-style mask).
    pub(crate) xsave_states: u64,
}

/// `HV_GET_SET_VP_STATE_TYPE_PFN`: the state moves through page frames.
pub(crate) const HV_GET_SET_VP_STATE_TYPE_PFN: u32 = 1 << 31;
/// `HV_GET_SET_VP_STATE_LAPIC_STATE`.
pub(crate) const HV_GET_SET_VP_STATE_LAPIC_STATE: u32 = HV_GET_SET_VP_STATE_TYPE_PFN;
/// `HV_GET_SET_VP_STATE_XSAVE`.
pub(crate) const HV_GET_SET_VP_STATE_XSAVE: u32 = HV_GET_SET_VP_STATE_TYPE_PFN | 1;
/// `HV_GET_SET_VP_STATE_SIM_PAGE`.
pub(crate) const HV_GET_SET_VP_STATE_SIM_PAGE: u32 = HV_GET_SET_VP_STATE_TYPE_PFN | 2;
/// `HV_GET_SET_VP_STATE_SIEF_PAGE`.
pub(crate) const HV_GET_SET_VP_STATE_SIEF_PAGE: u32 = HV_GET_SET_VP_STATE_TYPE_PFN | 3;
/// `HV_GET_SET_VP_STATE_SYNTHETIC_TIMERS` (inline).
pub(crate) const HV_GET_SET_VP_STATE_SYNTHETIC_TIMERS: u32 = 4;
/// Bytes of `union hv_output_get_vp_state` (`hv_synthetic_timers_state`).
pub(crate) const VP_STATE_INLINE: usize = 200;
/// Bytes of `hv_input_get_vp_state` / `hv_input_set_vp_state` before the list.
pub(crate) const VP_STATE_HEADER: usize = 40;
/// Most pfns of one `HVCALL_GET/SET_VP_STATE` (upstream's batch size).
pub(crate) const VP_STATE_BATCH: usize = (HV_PAGE - VP_STATE_HEADER) / 8;

/// `hv_gpa_page_access_state_flags.clear_accessed`.
pub(crate) const GPA_STATE_CLEAR_ACCESSED: u64 = 1 << 0;
/// `hv_gpa_page_access_state_flags.set_accessed`.
pub(crate) const GPA_STATE_SET_ACCESSED: u64 = 1 << 1;
/// `hv_gpa_page_access_state_flags.clear_dirty`.
pub(crate) const GPA_STATE_CLEAR_DIRTY: u64 = 1 << 2;
/// `hv_gpa_page_access_state_flags.set_dirty`.
pub(crate) const GPA_STATE_SET_DIRTY: u64 = 1 << 3;

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_hv_doorbell)]
mod tests {
    use super::Doorbell;

    #[test]
    fn batching() {
        use super::reps_per_page;
        // MAP_GPA_PAGES: 24-byte header, 8-byte pfns.
        assert_eq!(reps_per_page(24, 8), 509);
        // UNMAP has no list; GET_VP_REGISTERS output 16-byte values.
        assert_eq!(reps_per_page(0, 16), 256);
        // SET_VP_REGISTERS: 16-byte header, 32-byte assocs.
        assert_eq!(reps_per_page(16, 32), 127);
        // DEPOSIT: 8-byte header.
        assert_eq!(reps_per_page(8, 8), 511);
        assert_eq!(reps_per_page(4096, 8), 0);
        assert_eq!(reps_per_page(8, 0), 0);
    }

    #[test]
    fn doorbell_matching() {
        let any = Doorbell {
            gpa: 0x1000,
            len: 0,
            datamatch: None,
        };
        assert!(any.matches(0x1000, &[1]));
        assert!(any.matches(0x1000, &[1, 2, 3, 4, 5, 6, 7, 8]));
        assert!(!any.matches(0x1001, &[1]));
        assert!(!any.matches(0xfff, &[1, 2]));
        assert!(!any.matches(0x1000, &[]));
        let word = Doorbell {
            gpa: 0x1000,
            len: 2,
            datamatch: Some(0xbeef),
        };
        assert!(word.matches(0x1000, &[0xef, 0xbe]));
        assert!(!word.matches(0x1000, &[0xef, 0xbf]));
        assert!(!word.matches(0x1000, &[0xef, 0xbe, 0, 0]));
        assert!(!word.matches(0x1000, &[0xef]));
        let any_size_value = Doorbell {
            gpa: 0x2000,
            len: 0,
            datamatch: Some(7),
        };
        assert!(any_size_value.matches(0x2000, &[7]));
        assert!(any_size_value.matches(0x2000, &[7, 0, 0, 0]));
        assert!(!any_size_value.matches(0x2000, &[7, 1]));
        let qword = Doorbell {
            gpa: 0x3000,
            len: 8,
            datamatch: Some(u64::MAX),
        };
        assert!(qword.matches(0x3000, &[0xff; 8]));
        assert!(!qword.matches(0x3000, &[0xff; 4]));
    }
}
