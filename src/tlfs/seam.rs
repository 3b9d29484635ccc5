// SPDX-License-Identifier: GPL-2.0

//! The seam: everything a hypervisor is to a root partition's kernel, and
//! nothing more (docs/design.md, "The hypervisor boundary").
//!
//! Above the seam runs the driver's Hyper-V code, the same bytes on a real
//! root and on the emulator. Below it sits either Hyper-V itself
//! (`sys::hyperv`: `hv_do_hypercall`, the synthetic MSRs,
//! `hv_setup_mshv_handler`) or the TLFS-level emulator (`sim::emu`), which
//! decodes the same input pages, writes the same SynIC pages and raises the
//! same interrupt. A driver that works over one works over the other only if
//! the emulator refuses what Hyper-V refuses; the emulator's documentation
//! lists its choices where the TLFS leaves a behaviour open.
//!
//! The seam has five parts:
//! - memory-based hypercalls: a control word (code, rep count, rep start,
//!   variable header size), an input page and an output page, and a result
//!   word (status, reps completed); [`Seam::hypercall`];
//! - `HVCALL_DISPATCH_VP`, the one call that runs guest code on the calling
//!   CPU (root scheduler): the caller has preemption disabled and interrupts
//!   enabled; [`Seam::dispatch`];
//! - fast calls with one register of input; [`Seam::fast_hypercall8`];
//! - the synthetic MSRs of the calling CPU's SynIC (SIMP, SIEFP, SIRBP,
//!   SINTx, SCONTROL, EOM) and the pages they point at; the pages are
//!   reached with `sys::hyperv::HvPageMap`, by pfn, on both sides;
//! - the SynIC interrupt: the handler the callback vector calls, in hard-IRQ
//!   context on the CPU whose message page has a message
//!   ([`Seam::set_handler`]);
//! - what the driver reads about the hypervisor at load ([`Identity`]).

/// The hypervisor builds upstream 7.3 validated the root driver against
/// (`MSHV_HV_MIN_VERSION`..=`MSHV_HV_MAX_VERSION` in `mshv_root.h`); on
/// another build the driver loads and warns, as upstream does.
pub(crate) const VALIDATED_BUILDS: core::ops::RangeInclusive<u32> = 27744..=27751;

/// The handler the SynIC interrupt calls (`hv_setup_mshv_handler`). Runs in
/// hard-IRQ context on the interrupted CPU.
pub(crate) type SynicHandler = extern "C" fn();

/// What the driver learns about the hypervisor before it registers
/// `/dev/mshv`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Linux runs as the root partition (`hv_root_partition()`).
    pub(crate) root: bool,
    /// The root's own partition id (`hv_current_partition_id`), the owner
    /// of the doorbell ports the driver creates.
    pub(crate) partition_id: u64,
    /// A kdump kernel: the hypervisor state belongs to the crashed kernel.
    pub(crate) kdump: bool,
    /// VMBus owns SIMP, SIEFP and SCONTROL (`hv_vmbus_exists()`).
    pub(crate) vmbus: bool,
    /// The hypervisor's build number (`HvRegisterVpIndex`-era version
    /// register, as `hv_get_hypervisor_version` reads it).
    pub(crate) build: u32,
    /// The SynIC interrupt vector (`HYPERVISOR_CALLBACK_VECTOR` on x86).
    pub(crate) vector: u8,
    /// Hyper-V recommends auto-EOI for SINTs (`hv_recommend_using_aeoi`).
    pub(crate) auto_eoi: bool,
}

/// The hypervisor below the driver. See the module documentation.
///
/// Every method may be called in atomic context; none sleeps. MSR accesses
/// act on the calling CPU, so callers pin themselves to it (a CPU-hotplug
/// callback, or with preemption disabled).
pub(crate) trait Seam: Send + Sync {
    /// A memory-based hypercall: `input` is copied to the start of a zeroed
    /// input page, and `output.len()` bytes of the output page are copied
    /// back. Both are at most 4096 bytes. Returns the result word.
    fn hypercall(&self, control: u64, input: &[u8], output: &mut [u8]) -> u64;

    /// `HVCALL_DISPATCH_VP`, from per-CPU pages of its own, with preemption
    /// disabled and interrupts enabled by the caller. Returns the result word.
    fn dispatch(&self, control: u64, input: &[u8], output: &mut [u8]) -> u64;

    /// A fast hypercall with one 8-byte input register.
    fn fast_hypercall8(&self, code: u16, input: u64) -> u64;

    /// Reads a synthetic MSR of the calling CPU.
    fn read_msr(&self, msr: u32) -> u64;

    /// Writes a synthetic MSR of the calling CPU.
    fn write_msr(&self, msr: u32, value: u64);

    /// Installs the SynIC interrupt handler, or with `None` removes it. After
    /// removal returns, a handler already running on another CPU may still
    /// be finishing: wait for an RCU grace period before freeing what it
    /// reads.
    fn set_handler(&self, handler: Option<SynicHandler>);

    /// What the driver reads at load.
    fn identity(&self) -> Identity;
}
