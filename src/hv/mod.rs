// SPDX-License-Identifier: GPL-2.0

//! The driver's hypervisor interface ([`Hypervisor`]) and its one
//! implementation, the Hyper-V backend ([`hyperv`]), which talks to the
//! hypervisor through the binary seam (`tlfs::seam`): Hyper-V itself on a
//! root partition, the TLFS-level emulator with `backend=sim`
//! (docs/design.md, "The hypervisor boundary").
//!
//! Methods mirror hypercalls one to one; batching to one 4 KiB input page
//! and deposit-and-retry are the caller's job ([`calls`]), as Hyper-V makes
//! them. The SynIC and its interrupt handler are in [`synic`], the
//! `MSHV_RUN_VP` loop in [`run`].

pub(crate) mod calls;
pub(crate) mod hyperv;
pub(crate) mod run;
pub(crate) mod synic;

use kernel::{prelude::*, sync::Arc};

// The shared ABI, under the names the driver has always used.
pub(crate) use crate::tlfs::{
    abi, status, CreatePartition, Doorbell, HvError, HvResult, RegValue, RepError, RepResult,
    VirtualInterrupt, VpPage, VpStateData, GPA_ACCESS_STATES_BATCH, GPA_STATE_CLEAR_ACCESSED,
    GPA_STATE_CLEAR_DIRTY, GPA_STATE_SET_ACCESSED, GPA_STATE_SET_DIRTY,
    HV_GET_SET_VP_STATE_LAPIC_STATE, HV_GET_SET_VP_STATE_SIEF_PAGE, HV_GET_SET_VP_STATE_SIM_PAGE,
    HV_GET_SET_VP_STATE_SYNTHETIC_TIMERS, HV_GET_SET_VP_STATE_TYPE_PFN, HV_GET_SET_VP_STATE_XSAVE,
    HV_PAGE, VP_STATE_BATCH, VP_STATE_HEADER, VP_STATE_INLINE,
};

/// Why `run_vp` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunExit {
    /// A message is in the VP's intercept message page.
    Message,
    /// A signal is pending: return to userspace with EINTR.
    Signal,
}

/// Notifications the hypervisor sends the root about one partition: SynIC
/// messages and events the root's interrupt handler receives.
pub(crate) trait Notify: Send + Sync {
    /// The doorbell connected as `port` was rung (the port id came through
    /// the SINT5 event ring). Called from the SynIC interrupt handler, in
    /// hard-IRQ context: it may take only IRQ-safe spinlocks.
    fn doorbell(&self, port: u32);
    /// The guest ended a level-triggered interrupt with `vector`
    /// (`HVMSG_X64_APIC_EOI`). Called in process context (the handler
    /// defers it to a work item), so it may take mutexes.
    fn eoi(&self, vp: u32, vector: u32);
}

/// The hypercall interface the driver uses. Partition ids are the
/// hypervisor's; `vp` is the VP index.
///
/// Contract (it is Hyper-V's; the emulator holds the driver to it):
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
    /// 511) to the partition's pool. On success the hypervisor owns them;
    /// on failure it owns the first [`RepError`]`::done` of them (Hyper-V
    /// deposits in order and stops at the first page it refuses) and the
    /// rest are still the caller's.
    fn deposit(&self, pt: u64, pfns: &[u64]) -> RepResult;
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

    /// `HVCALL_GET_VP_REGISTERS` (at most 256 names). The VMM reaches
    /// registers through `MSHV_ROOT_HVCALL`; the run loop reads
    /// `INTERCEPT_SUSPEND` with it.
    fn get_vp_registers(&self, pt: u64, vp: u32, names: &[u32], out: &mut [RegValue]) -> RepResult;
    /// `HVCALL_SET_VP_REGISTERS` (at most 127 registers): the run loop
    /// writes the suspend registers with it.
    fn set_vp_registers(&self, pt: u64, vp: u32, regs: &[(u32, RegValue)]) -> RepResult;

    /// `HVCALL_ASSERT_VIRTUAL_INTERRUPT`. Never sleeps: it may be called
    /// from a work item with other work pending, and is atomic-safe.
    fn assert_virtual_interrupt(&self, pt: u64, irq: &VirtualInterrupt) -> HvResult;

    /// `HVCALL_CLEAR_VIRTUAL_INTERRUPT` (fast): clears the partition's
    /// pending ExtINT, before the resampler of an ExtINT irqfd is signalled
    /// (upstream's `mshv_irqfd_resampler_ack`). May be called in process
    /// context only.
    fn clear_virtual_interrupt(&self, pt: u64) -> HvResult;

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
