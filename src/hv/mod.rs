// SPDX-License-Identifier: GPL-2.0

//! The hypervisor boundary: one trait at the hypercall line.
//!
//! Everything above it (validation, fds, regions, HMM, the RUN_VP loop) is
//! shared by both backends, so tests on the simulator exercise the code that
//! runs on Hyper-V. Methods mirror hypercalls one to one; batching to one
//! 4 KiB input page and deposit-and-retry are the *caller's* job where the
//! real hypervisor makes them the caller's job, so the sim must answer the
//! same way (partial reps, INSUFFICIENT_MEMORY) and the retry code is shared.

pub(crate) mod abi;
pub(crate) mod calls;
#[cfg(CONFIG_HYPERV)]
pub(crate) mod hyperv;
pub(crate) mod status;

use kernel::{prelude::*, sync::Arc};

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

/// Why `run_vp` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunExit {
    /// A message is in the VP's intercept message page.
    Message,
    /// A signal is pending: return to userspace with EINTR.
    Signal,
}

/// One kind of VP state page (`HV_VP_STATE_PAGE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VpPage {
    /// `struct hv_vp_register_page`.
    Registers = 0,
    /// The intercept message page (`struct hv_message` at offset 0).
    InterceptMessage = 1,
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

/// Notifications the hypervisor sends the root about one partition (on
/// Hyper-V: SynIC messages and events the root's ISR receives).
pub(crate) trait Notify: Send + Sync {
    /// The doorbell connected as `port` was rung (Hyper-V: the port id in the
    /// SINT5 event ring). May be called from atomic context.
    fn doorbell(&self, port: u32);
    /// The guest ended a level-triggered interrupt with `vector`
    /// (`HVMSG_X64_APIC_EOI`). May be called from atomic context.
    fn eoi(&self, vp: u32, vector: u32);
}

/// Size of a hypercall input or output page.
pub(crate) const HV_PAGE: usize = 4096;

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

/// The hypercall interface both backends implement. Partition ids are the
/// hypervisor's; `vp` is the VP index.
///
/// Contract shared by both backends:
/// - `map_gpa_pages`, `unmap_gpa_pages`, `get/set_vp_registers` and
///   `withdraw` never sleep or allocate: they run under the region locks that
///   MMU-notifier invalidations take. Memory the hypervisor needs for them
///   comes from [`Hypervisor::deposit`], and its absence is reported as
///   `HV_STATUS_INSUFFICIENT_MEMORY`;
/// - `deposit` may allocate with `GFP_KERNEL`; the partition and VP
///   lifecycle calls, `map/unmap_vp_state_page`, `run_vp` and `passthrough`
///   may sleep and allocate: never call them under such a lock;
/// - `deposit` takes pages given up with `OwnedPage::into_pfn` (only
///   `hv::calls::deposit` calls it), and `withdraw` hands such pages back;
/// - rep calls take at most one input page of reps and report partial
///   progress in [`RepError`].
pub(crate) trait Hypervisor: Send + Sync {
    /// `HVCALL_CREATE_PARTITION`: returns the new partition id.
    fn create_partition(&self, args: &CreatePartition) -> HvResult<u64>;
    /// `HVCALL_INITIALIZE_PARTITION`.
    fn initialize_partition(&self, pt: u64) -> HvResult;
    /// `HVCALL_FINALIZE_PARTITION`: drops every VP and every GPA mapping.
    fn finalize_partition(&self, pt: u64) -> HvResult;
    /// `HVCALL_DELETE_PARTITION`.
    fn delete_partition(&self, pt: u64) -> HvResult;

    /// `HVCALL_DEPOSIT_MEMORY`: gives the zeroed host pages `pfns` (at most
    /// 511) to the partition's pool. On success the hypervisor owns them.
    fn deposit(&self, pt: u64, pfns: &[u64]) -> HvResult;
    /// `HVCALL_WITHDRAW_MEMORY`: takes back up to `out.len()` (at most 512)
    /// free pool pages into `out`; returns how many. 0 when the pool is empty.
    fn withdraw(&self, pt: u64, out: &mut [u64]) -> HvResult<usize>;

    /// `HVCALL_CREATE_VP`.
    fn create_vp(&self, pt: u64, vp: u32) -> HvResult;
    /// `HVCALL_DELETE_VP`.
    fn delete_vp(&self, pt: u64, vp: u32) -> HvResult;
    /// `HVCALL_MAP_VP_STATE_PAGE`: the pfn of the page the root can map.
    fn map_vp_state_page(&self, pt: u64, vp: u32, page: VpPage) -> HvResult<u64>;
    /// `HVCALL_UNMAP_VP_STATE_PAGE`.
    fn unmap_vp_state_page(&self, pt: u64, vp: u32, page: VpPage) -> HvResult;

    /// `HVCALL_MAP_GPA_PAGES`: maps `pfns.len()` reps from gfn `base_gfn`
    /// with `flags` (`HV_MAP_GPA_*`). With `HV_MAP_GPA_LARGE_PAGE` each rep is
    /// a 2 MiB entry (gfn and pfn 512-aligned). With `HV_MAP_GPA_NO_ACCESS`
    /// the pfns are ignored. At most 509 reps.
    fn map_gpa_pages(&self, pt: u64, base_gfn: u64, flags: u32, pfns: &[u64]) -> RepResult;
    /// `HVCALL_UNMAP_GPA_PAGES`: removes `count` reps of entries from
    /// `base_gfn` (2 MiB reps with `HV_UNMAP_GPA_LARGE_PAGE`). At most 512.
    fn unmap_gpa_pages(&self, pt: u64, base_gfn: u64, count: usize, flags: u32) -> RepResult;

    /// `HVCALL_GET_VP_REGISTERS` (at most 256 names).
    ///
    /// The driver reaches registers through `MSHV_ROOT_HVCALL` today; these
    /// two are for the Hyper-V run loop (suspend registers), not written yet.
    #[allow(dead_code)]
    fn get_vp_registers(&self, pt: u64, vp: u32, names: &[u32], out: &mut [RegValue]) -> RepResult;
    /// `HVCALL_SET_VP_REGISTERS` (at most 127 registers).
    #[allow(dead_code)]
    fn set_vp_registers(&self, pt: u64, vp: u32, regs: &[(u32, RegValue)]) -> RepResult;

    /// `HVCALL_ASSERT_VIRTUAL_INTERRUPT`. Never sleeps: it may be called
    /// from a work item with other work pending, and is atomic-safe on both
    /// backends (the sim takes only spinlocks).
    fn assert_virtual_interrupt(&self, pt: u64, irq: &VirtualInterrupt) -> HvResult;

    /// Installs (or with `None` removes) the receiver of partition `pt`'s
    /// notifications. The driver removes it before deleting the partition.
    fn set_notify(&self, pt: u64, notify: Option<Arc<dyn Notify>>) -> HvResult;
    /// Connects doorbell `port` (driver-chosen, non-zero, unique within `pt`)
    /// for `db`. May sleep.
    fn connect_doorbell(&self, pt: u64, port: u32, db: &Doorbell) -> HvResult;
    /// Disconnects and deletes doorbell `port`. When it returns, the doorbell
    /// no longer rings. May sleep.
    fn disconnect_doorbell(&self, pt: u64, port: u32) -> HvResult;

    /// `HVCALL_GET_GPA_PAGES_ACCESS_STATES`: writes the access state of the
    /// `out.len()` (at most [`GPA_ACCESS_STATES_BATCH`]) pages from
    /// `base_gfn` into `out` (`hv_gpa_page_access_state`: accessed bit 0,
    /// dirty bit 1), then clears or sets bits as `flags`
    /// (`hv_gpa_page_access_state_flags`) say. May stop early with
    /// INSUFFICIENT_MEMORY (deposit and resume at `done`). Never sleeps.
    fn get_gpa_access_states(
        &self,
        pt: u64,
        base_gfn: u64,
        flags: u64,
        out: &mut [u8],
    ) -> RepResult;

    /// `HVCALL_GET_VP_STATE`: with `pfns` (a `data.kind` with
    /// [`HV_GET_SET_VP_STATE_TYPE_PFN`]) the hypervisor writes the state into
    /// those pages (at most [`VP_STATE_BATCH`]); otherwise into `inline`
    /// (`hv_output_get_vp_state`).
    fn get_vp_state(
        &self,
        pt: u64,
        vp: u32,
        data: &VpStateData,
        pfns: &[u64],
        inline: &mut [u8; VP_STATE_INLINE],
    ) -> HvResult;
    /// `HVCALL_SET_VP_STATE`: the state comes from `pfns`, or from `inline`
    /// (at most [`VP_STATE_INLINE`] bytes) when `pfns` is empty.
    fn set_vp_state(
        &self,
        pt: u64,
        vp: u32,
        data: &VpStateData,
        pfns: &[u64],
        inline: &[u8],
    ) -> HvResult;

    /// Runs the VP until it leaves with a message in its intercept message
    /// page, or a signal is pending. May sleep (it is never called under a
    /// region lock).
    fn run_vp(&self, pt: u64, vp: u32) -> Result<RunExit>;

    /// A raw hypercall for `MSHV_ROOT_HVCALL`, already checked against the
    /// allow-list: `input`/`output` are zero-filled 4 KiB pages, the first u64
    /// of `input` is the target partition id. Returns the raw result word
    /// (status in bits 0-15, reps completed in bits 32-43).
    fn passthrough(
        &self,
        code: u16,
        reps: u16,
        rep_start: u16,
        input: &[u8; HV_PAGE],
        output: &mut [u8; HV_PAGE],
    ) -> u64;
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_hv_doorbell)]
mod tests {
    use super::Doorbell;

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
