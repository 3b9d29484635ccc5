// SPDX-License-Identifier: GPL-2.0

//! The Hyper-V backend: the driver's only implementation of [`Hypervisor`],
//! over the seam ([`crate::tlfs::seam`]). On a root partition the seam is
//! Hyper-V; with `backend=sim` it is the emulator. Either way these are the
//! bytes the hypervisor receives (docs/design.md, "The hypervisor boundary").
//!
//! - Inputs are encoded with the shared TLFS structs of [`abi`] (the
//!   `encode_*` functions, tested in KUnit against the emulator's decoder);
//! - the SynIC (per-CPU pages, the interrupt handler, the messages it
//!   dispatches) is in [`super::synic`];
//! - `MSHV_RUN_VP` under either scheduler family (`HVCALL_DISPATCH_VP`, or
//!   the suspend registers and opaque intercepts) is in [`super::run`];
//! - doorbells are Hyper-V ports: a port in the root (`HVCALL_CREATE_PORT`,
//!   SINT5, any VP) and a connection in the guest (`HVCALL_CONNECT_PORT`);
//!   the hypervisor reports a ring as the port id in the SINT5 event ring.
//!   Port ids are global in Hyper-V, so this backend allocates them;
//! - `SET_PARTITION_PROPERTY` may answer `CALL_PENDING`: the backend waits
//!   (killably) for the partition's `HVMSG_ASYNC_CALL_COMPLETION` and returns
//!   its status, one such call per partition at a time.

use super::{
    abi, calls, run::VpRun, status, CreatePartition, Doorbell, HvError, HvResult, Hypervisor,
    Notify, RegValue, RepError, RepResult, RunExit, VirtualInterrupt, VpPage, VpStateData, HV_PAGE,
    VP_STATE_INLINE,
};
use crate::sys::cpu::HvPageMap;
use crate::tlfs::seam::{Identity, Seam};
use kernel::{
    new_condvar, new_mutex, new_spinlock, new_spinlock_irq, new_work,
    prelude::*,
    rbtree::{RBTree, RBTreeNode},
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, ArcBorrow, CondVar, Mutex, SpinLock, SpinLockIrq,
    },
    transmute::AsBytes,
    types::ScopeGuard,
    workqueue::{self, impl_has_work, Work, WorkItem},
};

/// Little-endian writer into a hypercall input page.
struct Enc<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Enc<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        buf.fill(0);
        Self { buf, len: 0 }
    }
    fn put(&mut self, bytes: &[u8]) -> &mut Self {
        if let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.len += bytes.len();
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.put(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.put(&v.to_le_bytes())
    }
    fn val<T: AsBytes>(&mut self, v: &T) -> &mut Self {
        self.put(v.as_bytes())
    }
    /// Bytes written; `None` if they did not fit the page.
    fn done(&self) -> Option<usize> {
        (self.len <= self.buf.len()).then_some(self.len)
    }
}

/// `hv_input_create_partition` (56 bytes).
fn encode_create_partition(buf: &mut [u8], a: &CreatePartition) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.val(&abi::HvInputCreatePartition {
        flags: a.flags,
        compatibility_version: abi::HV_COMPATIBILITY_21_H2,
        disabled_processor_features: a.disabled_features,
        disabled_xsave: a.disabled_xsave,
        ..Default::default()
    });
    e.done()
}

/// `hv_input_map_gpa_pages` plus its pfn list.
fn encode_map_gpa(buf: &mut [u8], pt: u64, gfn: u64, flags: u32, pfns: &[u64]) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.val(&abi::HvInputMapGpaPages {
        target_partition_id: pt,
        target_gpa_base: gfn,
        map_flags: flags,
        padding: 0,
    });
    for &p in pfns {
        e.u64(p);
    }
    e.done()
}

/// `hv_input_unmap_gpa_pages`.
fn encode_unmap_gpa(buf: &mut [u8], pt: u64, gfn: u64, flags: u32) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.val(&abi::HvInputUnmapGpaPages {
        target_partition_id: pt,
        target_gpa_base: gfn,
        unmap_flags: flags,
        padding: 0,
    });
    e.done()
}

/// `hv_deposit_memory` header plus pfns.
fn encode_deposit(buf: &mut [u8], pt: u64, pfns: &[u64]) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.val(&abi::HvInputPartition { partition_id: pt });
    for &p in pfns {
        e.u64(p);
    }
    e.done()
}

/// `hv_create_vp` (40 bytes).
fn encode_create_vp(buf: &mut [u8], pt: u64, vp: u32) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.val(&abi::HvInputCreateVp {
        partition_id: pt,
        vp_index: vp,
        ..Default::default()
    });
    e.done()
}

/// `hv_input_map_vp_state_page` (24 bytes) / unmap (16 bytes).
fn encode_vp_state_page(
    buf: &mut [u8],
    pt: u64,
    vp: u32,
    page: VpPage,
    map: bool,
) -> Option<usize> {
    let mut e = Enc::new(buf);
    if map {
        e.val(&abi::HvInputMapVpStatePage {
            partition_id: pt,
            vp_index: vp,
            page_type: page as u16,
            ..Default::default()
        });
    } else {
        e.val(&abi::HvInputUnmapVpStatePage {
            partition_id: pt,
            vp_index: vp,
            page_type: page as u16,
            ..Default::default()
        });
    }
    e.done()
}

/// `hv_input_assert_virtual_interrupt` (32 bytes): partition id, control
/// (`interrupt_type` in bits 0-31, `level_triggered` bit 32,
/// `logical_dest_mode` bit 33), destination, vector, target VTL 0.
fn encode_assert_interrupt(buf: &mut [u8], pt: u64, irq: &VirtualInterrupt) -> Option<usize> {
    let mut control = u64::from(irq.kind);
    if irq.level {
        control |= abi::HV_INTERRUPT_CONTROL_LEVEL;
    }
    if irq.logical {
        control |= abi::HV_INTERRUPT_CONTROL_LOGICAL;
    }
    let mut e = Enc::new(buf);
    e.val(&abi::HvInputAssertVirtualInterrupt {
        partition_id: pt,
        control,
        dest_addr: irq.dest,
        vector: irq.vector,
        ..Default::default()
    });
    e.done()
}

/// The header of `hv_input_get_vp_registers` / `set_vp_registers`.
fn vp_regs_header(pt: u64, vp: u32) -> abi::HvInputVpRegistersHeader {
    abi::HvInputVpRegistersHeader {
        partition_id: pt,
        vp_index: vp,
        ..Default::default()
    }
}

/// `hv_input_get_vp_registers` plus names.
fn encode_get_regs(buf: &mut [u8], pt: u64, vp: u32, names: &[u32]) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.val(&vp_regs_header(pt, vp));
    for &n in names {
        e.u32(n);
    }
    e.done()
}

/// `hv_input_set_vp_registers` plus `hv_register_assoc`s.
fn encode_set_regs(buf: &mut [u8], pt: u64, vp: u32, regs: &[(u32, RegValue)]) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.val(&vp_regs_header(pt, vp));
    for &(name, value) in regs {
        e.val(&abi::HvRegisterAssoc {
            name,
            value,
            ..Default::default()
        });
    }
    e.done()
}

/// `hv_input_map_stats_page` / `hv_input_unmap_stats_page` of VP `vp`'s
/// stats `area`.
fn stats_input(pt: u64, vp: u32, area: u8) -> abi::HvInputStatsPage {
    abi::HvInputStatsPage {
        object_type: abi::HV_STATS_OBJECT_VP,
        padding: 0,
        identity: abi::HvStatsVpIdentity {
            partition_id: pt,
            vp_index: vp,
            stats_area_type: area,
            ..Default::default()
        },
    }
}

/// `hv_input_get_gpa_pages_access_state` (24 bytes).
fn encode_gpa_access_states(buf: &mut [u8], pt: u64, flags: u64, gfn: u64) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.val(&abi::HvInputGetGpaPagesAccessState {
        partition_id: pt,
        flags,
        hv_gpa_page_number: gfn,
    });
    e.done()
}

/// `hv_input_get_vp_state` / `hv_input_set_vp_state` (40 bytes) followed by
/// `pfns` and then `raw` state bytes padded to 8 (a call has one or the
/// other). Returns the input length and the variable-header size in qwords.
fn encode_vp_state(
    buf: &mut [u8],
    pt: u64,
    vp: u32,
    data: &VpStateData,
    pfns: &[u64],
    raw: &[u8],
) -> Option<(usize, u16)> {
    let mut e = Enc::new(buf);
    e.val(&abi::HvInputVpState {
        partition_id: pt,
        vp_index: vp,
        state_type: data.kind,
        xsave_flags: data.xsave_flags,
        xsave_states: data.xsave_states,
        ..Default::default()
    });
    for &p in pfns {
        e.u64(p);
    }
    e.put(raw);
    let pad = raw.len().next_multiple_of(8) - raw.len();
    e.put(&[0; 8][..pad]);
    let qwords = pfns.len() + raw.len().div_ceil(8);
    Some((e.done()?, u16::try_from(qwords).ok()?))
}

/// Scratch pages for encoding; see [`HyperV::scratch`].
struct Scratch {
    input: [u8; HV_PAGE],
    output: [u8; HV_PAGE],
}

// SAFETY: two byte arrays: all zeroes is a valid value.
unsafe impl Zeroable for Scratch {}

/// What the SynIC handler knows about one guest partition.
///
/// # Invariants
///
/// Registered in [`HyperV::guests`] from `create_partition` until
/// `delete_partition` succeeds (or the creation is undone).
#[pin_data]
pub(crate) struct Guest {
    /// The hypervisor's id.
    pub(crate) pt: u64,
    /// Where doorbells and EOIs go; set by the driver after creation.
    #[pin]
    notify: SpinLockIrq<Option<Arc<dyn Notify>>>,
    /// The run state of each VP, looked up by the handler to kick it.
    #[pin]
    pub(crate) vps: SpinLockIrq<RBTree<u32, Arc<VpRun>>>,
    /// One asynchronous call at a time (`SET_PARTITION_PROPERTY` may answer
    /// `CALL_PENDING`), as upstream's partition mutex makes it.
    #[pin]
    async_call: Mutex<()>,
    /// The status of the pending call's `HVMSG_ASYNC_CALL_COMPLETION`, set
    /// by the SynIC handler (IRQ-safe, a leaf).
    #[pin]
    async_done: SpinLockIrq<Option<u16>>,
    #[pin]
    async_wait: CondVar,
}

impl Guest {
    /// The VP's run state.
    pub(crate) fn vp(&self, vp: u32) -> Option<Arc<VpRun>> {
        self.vps.lock().get(&vp).cloned()
    }

    /// Every VP's index and run state.
    fn vp_list(&self) -> Result<KVec<(u32, Arc<VpRun>)>> {
        let vps = self.vps.lock();
        let mut out = KVec::new();
        for (&i, run) in vps.iter() {
            out.push((i, run.clone()), GFP_ATOMIC)?;
        }
        Ok(out)
    }

    /// The notification receiver.
    pub(crate) fn notify(&self) -> Option<Arc<dyn Notify>> {
        self.notify.lock().clone()
    }

    /// `HVMSG_ASYNC_CALL_COMPLETION` for this partition. Hard-IRQ safe.
    pub(crate) fn complete_async(&self, status: u16) {
        *self.async_done.lock() = Some(status);
        self.async_wait.notify_all();
    }

    /// Waits for the pending call's completion; `None` if a fatal signal
    /// came first (the late completion is discarded by the next call).
    fn wait_async(&self) -> Option<u16> {
        let mut done = self.async_done.lock();
        loop {
            if let Some(st) = done.take() {
                return Some(st);
            }
            if self.async_wait.wait_interruptible(&mut done)
                && crate::sys::page::fatal_signal_pending()
            {
                return None;
            }
        }
    }
}

/// A connected doorbell: the driver's port of the guest it rings for.
#[derive(Clone)]
pub(crate) struct PortEntry {
    /// The guest.
    pub(crate) guest: Arc<Guest>,
    /// The port number the driver chose (`connect_doorbell`).
    pub(crate) driver_port: u32,
}

/// Most EOIs waiting for process context; more are dropped and counted.
const EOI_QUEUE: usize = 1024;

/// The Hyper-V backend.
///
/// Locks (docs/design.md, "Lock order"): a `scratch` slot (spinlock) is a
/// leaf taken by every hypercall but `DISPATCH_VP` and the fast calls; `guests`, `ports` and `eois`
/// (IRQ-safe spinlocks, leaves) are read by the SynIC handler in hard-IRQ
/// context; a [`Guest`]'s `notify` and `vps` (IRQ-safe) are taken after
/// `guests` is released, never inside it.
#[pin_data]
pub(crate) struct HyperV {
    /// The hypervisor below: Hyper-V or the emulator.
    pub(crate) seam: Arc<dyn Seam>,
    /// What the seam said at load.
    pub(crate) identity: Identity,
    /// `HV_SCHEDULER_TYPE_*`.
    pub(crate) scheduler: u32,
    /// Bank 0 of the root's `VMM_CAPABILITIES` (0 if the hypervisor does
    /// not report them). Its bits matter only to an L1VH parent, which
    /// this driver does not support; read at load as upstream does.
    pub(crate) vmm_capabilities: u64,
    /// Input/output staging, one pair per possible CPU, each behind a
    /// spinlock (hypercalls run under region locks and in atomic context).
    /// A call takes its CPU's pair, so calls on different CPUs do not wait
    /// for each other; one that migrates after choosing still holds a lock
    /// (at worst it waits for that CPU's call). `DISPATCH_VP` uses the
    /// seam's own per-CPU pages.
    scratch: KVec<Pin<KBox<SpinLock<KBox<Scratch>>>>>,
    /// Partitions by id.
    #[pin]
    pub(crate) guests: SpinLockIrq<RBTree<u64, Arc<Guest>>>,
    /// Connected doorbells by Hyper-V port id (global).
    #[pin]
    pub(crate) ports: SpinLockIrq<RBTree<u32, PortEntry>>,
    /// The next port id to try.
    next_port: Atomic<u32>,
    /// EOIs the handler received, for [`HyperV::run`] (the work item) to
    /// hand to the partitions in process context: (partition, VP, vector).
    #[pin]
    eois: SpinLockIrq<KVec<(u64, u32, u32)>>,
    /// EOIs dropped because `eois` was full.
    pub(crate) eois_dropped: Atomic<u64>,
    /// Messages the handler acknowledged without a receiver.
    pub(crate) unhandled: Atomic<u64>,
    #[pin]
    eoi_work: Work<HyperV>,
}

impl_has_work! {
    impl HasWork<Self> for HyperV { self.eoi_work }
}

impl WorkItem for HyperV {
    type Pointer = Arc<HyperV>;

    fn run(this: Arc<HyperV>) {
        let pending = core::mem::take(&mut *this.eois.lock());
        for &(pt, vp, vector) in pending.iter() {
            if let Some(notify) = this.guest(pt).and_then(|g| g.notify()) {
                notify.eoi(vp, vector);
            }
        }
        // Give the buffer back for the next batch (no allocation in IRQ).
        let mut q = this.eois.lock();
        if q.is_empty() && q.capacity() < pending.capacity() {
            let mut pending = pending;
            pending.clear();
            *q = pending;
        }
    }
}

impl HyperV {
    /// The backend over `seam`: reads the hypervisor's identity, scheduler
    /// type and VMM capabilities. The SynIC is set up separately
    /// ([`super::synic`]).
    pub(crate) fn new(seam: Arc<dyn Seam>) -> Result<Arc<Self>> {
        let identity = seam.identity();
        // Zeroed in place: 8 KiB would not belong on the kernel stack.
        let cpus = crate::sys::cpu::nr_cpu_ids() as usize;
        let mut scratch = KVec::with_capacity(cpus, GFP_KERNEL)?;
        for _ in 0..cpus {
            let pair = KBox::<Scratch>::zeroed(GFP_KERNEL)?;
            scratch.push(
                KBox::pin_init(new_spinlock!(pair, "HyperV::scratch"), GFP_KERNEL)?,
                GFP_KERNEL,
            )?;
        }
        let eois = KVec::with_capacity(EOI_QUEUE, GFP_KERNEL)?;
        let scheduler = scheduler_type(&*seam)?;
        let vmm_capabilities = vmm_capabilities(&*seam).unwrap_or(0);
        Arc::pin_init(
            try_pin_init!(Self {
                seam,
                identity,
                scheduler,
                vmm_capabilities,
                scratch,
                guests <- new_spinlock_irq!(RBTree::new(), "HyperV::guests"),
                ports <- new_spinlock_irq!(RBTree::new(), "HyperV::ports"),
                next_port: Atomic::new(1),
                eois <- new_spinlock_irq!(eois, "HyperV::eois"),
                eois_dropped: Atomic::new(0),
                unhandled: Atomic::new(0),
                eoi_work <- new_work!("HyperV::eoi_work"),
            }? Error),
            GFP_KERNEL,
        )
    }

    /// The partition `pt`, if the driver created it.
    pub(crate) fn guest(&self, pt: u64) -> Option<Arc<Guest>> {
        self.guests.lock().get(&pt).cloned()
    }

    /// Queues an EOI for process context (called by the SynIC handler).
    pub(crate) fn queue_eoi(self: ArcBorrow<'_, Self>, pt: u64, vp: u32, vector: u32) {
        if self
            .eois
            .lock()
            .push_within_capacity((pt, vp, vector))
            .is_err()
        {
            self.eois_dropped.fetch_add(1, Relaxed);
            return;
        }
        let _ = workqueue::system().enqueue(Arc::from(self));
    }

    /// Waits until the EOI work is idle (module unload, after the SynIC
    /// handler is gone).
    pub(crate) fn flush_eois(&self) {
        // SAFETY: `eoi_work` is a field of a live, pinned `HyperV`.
        let work = unsafe { Work::raw_get(&self.eoi_work) };
        crate::sys::cpu::flush_work(work.cast());
    }

    /// One call: encode with `enc`, issue `control`, read `out_len` bytes.
    fn call(
        &self,
        control: u64,
        out_len: usize,
        enc: impl FnOnce(&mut [u8]) -> Option<usize>,
        out: impl FnOnce(&[u8]),
    ) -> u64 {
        let cpu = crate::sys::cpu::current() as usize;
        let Some(slot) = self.scratch.get(cpu).or_else(|| self.scratch.first()) else {
            return abi::result(status::INSUFFICIENT_MEMORY, 0);
        };
        let mut s = slot.lock();
        let s = &mut **s;
        let Some(len) = enc(&mut s.input) else {
            return abi::result(status::INVALID_PARAMETER, 0);
        };
        let out_len = out_len.min(HV_PAGE);
        let (Some(input), Some(output)) = (s.input.get(..len), s.output.get_mut(..out_len)) else {
            return abi::result(status::INVALID_PARAMETER, 0);
        };
        let r = self.seam.hypercall(control, input, output);
        out(output);
        r
    }

    /// A simple call whose input is `input` alone and which has no output.
    fn send<T: AsBytes>(&self, code: u16, input: &T) -> HvResult {
        self.simple(code, 0, |b| Enc::new(b).val(input).done(), |_| {})
    }

    fn simple(
        &self,
        code: u16,
        out_len: usize,
        enc: impl FnOnce(&mut [u8]) -> Option<usize>,
        out: impl FnOnce(&[u8]),
    ) -> HvResult {
        status_of(self.call(abi::control(code, 0, 0, 0, false), out_len, enc, out))
    }

    /// `HVCALL_MAP_STATS_PAGE` of VP `vp`'s stats `area`: the pfn of the
    /// page the hypervisor provides; `None` for a PARENT area the
    /// hypervisor does not have (`INVALID_PARAMETER`, as upstream reads
    /// it). A shortage deposits into the root (the page is the
    /// hypervisor's, charged to the caller).
    fn map_stats_page(&self, pt: u64, vp: u32, area: u8) -> HvResult<Option<u64>> {
        let input = stats_input(pt, vp, area);
        let r = self.with_deposit(abi::HV_PARTITION_ID_SELF, || {
            let mut pfn = 0;
            self.simple(
                abi::HVCALL_MAP_STATS_PAGE,
                8,
                |b| Enc::new(b).val(&input).done(),
                |o| pfn = u64_at(o, 0),
            )
            .map(|()| pfn)
        });
        match r {
            Ok(pfn) => Ok(Some(pfn)),
            Err(HvError::INVALID_PARAMETER) if area == abi::HV_STATS_AREA_PARENT => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `op` and, while the hypervisor asks for memory, deposits into
    /// `target` (into the root for the `*_ROOT_MEMORY` statuses) what it
    /// asks for (one page, or 8 contiguous ones) and retries, as upstream's
    /// calls that may need memory do; at most [`calls::MAX_DEPOSIT_ROUNDS`]
    /// rounds. Sleeps.
    fn with_deposit<T>(&self, target: u64, mut op: impl FnMut() -> HvResult<T>) -> HvResult<T> {
        for _ in 0..calls::MAX_DEPOSIT_ROUNDS {
            match op() {
                Err(e) if e.needs_memory() => {
                    let into = match e.0 {
                        status::INSUFFICIENT_ROOT_MEMORY
                        | status::INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY => abi::HV_PARTITION_ID_SELF,
                        _ => target,
                    };
                    let pages = status::deposit_pages(e.0).unwrap_or(1);
                    calls::deposit(self, into, pages).map_err(|_| HvError::INSUFFICIENT_MEMORY)?;
                }
                r => return r,
            }
        }
        Err(HvError::INSUFFICIENT_MEMORY)
    }

    /// Maps VP `vp`'s SELF and PARENT stats pages into the kernel.
    fn map_vp_stats(&self, pt: u64, vp: u32) -> HvResult<super::run::VpStats> {
        let own_pfn = self
            .map_stats_page(pt, vp, abi::HV_STATS_AREA_SELF)?
            .ok_or(HvError::INVALID_PARAMETER)?;
        let parent_pfn = match self.map_stats_page(pt, vp, abi::HV_STATS_AREA_PARENT) {
            Ok(p) => p,
            Err(e) => {
                self.unmap_vp_stats(pt, vp, false);
                return Err(e);
            }
        };
        let own = HvPageMap::new(own_pfn);
        let parent = parent_pfn.map(HvPageMap::new).transpose();
        match (own, parent) {
            (Ok(own), Ok(parent)) => Ok(super::run::VpStats { own, parent }),
            _ => {
                self.unmap_vp_stats(pt, vp, parent_pfn.is_some());
                Err(HvError::INSUFFICIENT_MEMORY)
            }
        }
    }

    /// `HVCALL_UNMAP_STATS_PAGE` of VP `vp`'s SELF area (and PARENT if
    /// `parent`). Failures are logged: the pages are the hypervisor's.
    fn unmap_vp_stats(&self, pt: u64, vp: u32, parent: bool) {
        let areas: &[u8] = if parent {
            &[abi::HV_STATS_AREA_SELF, abi::HV_STATS_AREA_PARENT]
        } else {
            &[abi::HV_STATS_AREA_SELF]
        };
        for &area in areas {
            let input = stats_input(pt, vp, area);
            if let Err(e) = self.send(abi::HVCALL_UNMAP_STATS_PAGE, &input) {
                pr_warn!(
                    "partition {} VP {}: unmap of stats area {} failed ({:?})\n",
                    pt,
                    vp,
                    area,
                    e
                );
            }
        }
    }

    /// A rep call, resumed while the hypervisor returns early with success.
    fn rep(
        &self,
        code: u16,
        reps: usize,
        out_len: usize,
        enc: impl Fn(&mut [u8]) -> Option<usize>,
        mut out: impl FnMut(&[u8]),
    ) -> RepResult {
        let mut done: u16 = 0;
        let reps = reps as u16;
        while done < reps {
            let r = self.call(
                abi::control(code, reps, done, 0, false),
                out_len,
                &enc,
                &mut out,
            );
            let st = abi::result_status(r);
            let completed = abi::result_reps(r);
            if st != 0 {
                return Err(RepError {
                    done: completed as usize,
                    error: HvError(st),
                });
            }
            if completed <= done {
                return Err(RepError {
                    done: done as usize,
                    error: HvError::OPERATION_FAILED,
                });
            }
            done = completed;
        }
        Ok(())
    }

    /// `HVCALL_GET_VP_STATE` (with `out`) or `HVCALL_SET_VP_STATE`.
    #[expect(clippy::too_many_arguments)]
    fn vp_state(
        &self,
        code: u16,
        pt: u64,
        vp: u32,
        data: &VpStateData,
        pfns: &[u64],
        raw: &[u8],
        out: Option<&mut [u8; VP_STATE_INLINE]>,
    ) -> HvResult {
        let invalid = HvError::INVALID_PARAMETER;
        if pfns.len() > super::VP_STATE_BATCH || raw.len() > HV_PAGE - super::VP_STATE_HEADER {
            return Err(invalid);
        }
        let qwords = (pfns.len() + raw.len().div_ceil(8)) as u16;
        let out_len = if out.is_some() { VP_STATE_INLINE } else { 0 };
        status_of(self.call(
            abi::control(code, 0, 0, qwords, false),
            out_len,
            |b| encode_vp_state(b, pt, vp, data, pfns, raw).map(|(n, _)| n),
            |o| {
                if let (Some(dst), Some(src)) = (out, o.get(..VP_STATE_INLINE)) {
                    dst.copy_from_slice(src);
                }
            },
        ))
    }

    /// A call that may answer `CALL_PENDING` (upstream's
    /// `mshv_hvcall_is_async`): wait for the partition's
    /// `HVMSG_ASYNC_CALL_COMPLETION` and return the status it carries.
    fn async_passthrough(
        &self,
        guest: &Guest,
        code: u16,
        input: &[u8; HV_PAGE],
        output: &mut [u8; HV_PAGE],
    ) -> u64 {
        let _one = guest.async_call.lock();
        // A completion left over from a call a fatal signal abandoned.
        *guest.async_done.lock() = None;
        let r = self
            .seam
            .hypercall(abi::control(code, 0, 0, 0, false), input, output);
        if abi::result_status(r) != status::CALL_PENDING {
            return r;
        }
        match guest.wait_async() {
            Some(st) => abi::result(st, 0),
            None => r,
        }
    }

    /// A free Hyper-V port id, reserved in `ports` for `entry`.
    fn alloc_port(&self, entry: PortEntry) -> Result<u32> {
        for _ in 0..16 {
            let id = self.next_port.fetch_add(1, Relaxed) & abi::HV_PORT_ID_MASK;
            if id == 0 {
                continue;
            }
            let node = RBTreeNode::new(id, entry.clone(), GFP_KERNEL)?;
            let mut ports = self.ports.lock();
            if ports.get(&id).is_none() {
                ports.insert(node);
                return Ok(id);
            }
        }
        Err(ENOSPC)
    }

    /// The Hyper-V port of the guest's doorbell `driver_port`.
    fn port_of(&self, pt: u64, driver_port: u32) -> Option<u32> {
        self.ports
            .lock()
            .iter()
            .find(|(_, e)| e.guest.pt == pt && e.driver_port == driver_port)
            .map(|(&id, _)| id)
    }

    /// `HVCALL_DISCONNECT_PORT` then `HVCALL_DELETE_PORT`.
    fn remove_port(&self, pt: u64, id: u32) -> HvResult {
        let disconnect = self.send(
            abi::HVCALL_DISCONNECT_PORT,
            &abi::HvInputDisconnectPort {
                connection_partition_id: pt,
                connection_id: id,
                flags: 1, // is_doorbell
            },
        );
        disconnect.and(self.delete_port(id))
    }

    /// `HVCALL_DELETE_PORT` of the root's port `id`.
    fn delete_port(&self, id: u32) -> HvResult {
        self.send(
            abi::HVCALL_DELETE_PORT,
            &abi::HvInputDeletePort {
                port_partition_id: self.identity.partition_id,
                port_id: id,
                reserved: 0,
            },
        )
    }
}

/// `HVCALL_GET_SYSTEM_PROPERTY(SCHEDULER_TYPE)`: `HV_SCHEDULER_TYPE_*`.
fn scheduler_type(seam: &dyn Seam) -> Result<u32> {
    let input = abi::HvInputGetSystemProperty {
        property_id: abi::HV_SYSTEM_PROPERTY_SCHEDULER_TYPE,
        ..Default::default()
    };
    let mut out = [0u8; 8];
    let r = seam.hypercall(
        abi::control(abi::HVCALL_GET_SYSTEM_PROPERTY, 0, 0, 0, false),
        input.as_bytes(),
        &mut out,
    );
    status_of(r)?;
    abi::read_at::<u32>(&out, 0).ok_or(EIO)
}

/// `HV_SCHEDULER_TYPE_*` as upstream names it in the kernel log.
pub(crate) fn scheduler_name(scheduler: u32) -> &'static str {
    match scheduler {
        abi::HV_SCHEDULER_TYPE_LP => "classic scheduler without SMT",
        abi::HV_SCHEDULER_TYPE_LP_SMT => "classic scheduler with SMT",
        abi::HV_SCHEDULER_TYPE_CORE_SMT => "core scheduler",
        abi::HV_SCHEDULER_TYPE_ROOT => "root scheduler",
        _ => "unknown scheduler",
    }
}

/// `HVCALL_GET_PARTITION_PROPERTY_EX(SELF, VMM_CAPABILITIES)`: bank 0 of
/// `struct hv_partition_property_vmm_capabilities` (`bank_count` u16, three
/// reserved u16, then the banks).
fn vmm_capabilities(seam: &dyn Seam) -> HvResult<u64> {
    let input = abi::HvInputGetPartitionProperty {
        partition_id: abi::HV_PARTITION_ID_SELF,
        property_code: abi::HV_PARTITION_PROPERTY_VMM_CAPABILITIES,
        ..Default::default()
    };
    let mut out = [0u8; 16];
    let r = seam.hypercall(
        abi::control(abi::HVCALL_GET_PARTITION_PROPERTY_EX, 0, 0, 0, false),
        input.as_bytes(),
        &mut out,
    );
    status_of(r)?;
    let banks = abi::read_at::<u16>(&out, 0).unwrap_or(0);
    Ok(if banks == 0 { 0 } else { u64_at(&out, 8) })
}

fn status_of(r: u64) -> HvResult {
    match abi::result_status(r) {
        0 => Ok(()),
        s => Err(HvError(s)),
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    abi::read_at::<u64>(b, off).unwrap_or(0)
}

/// `HV_DOORBELL_FLAG_*` for `db`: the trigger size and whether any value
/// triggers.
pub(crate) fn doorbell_flags(db: &Doorbell) -> u64 {
    let size = match db.len {
        1 => 1,
        2 => 2,
        4 => 3,
        8 => 4,
        _ => 0,
    };
    if db.datamatch.is_some() {
        size
    } else {
        size | abi::HV_DOORBELL_FLAG_TRIGGER_ANY_VALUE
    }
}

impl Hypervisor for HyperV {
    fn create_partition(&self, args: &CreatePartition) -> HvResult<u64> {
        let mut id = 0;
        self.simple(
            abi::HVCALL_CREATE_PARTITION,
            8,
            |b| encode_create_partition(b, args),
            |o| id = u64_at(o, 0),
        )?;
        let guest = Arc::pin_init(
            pin_init!(Guest {
                pt: id,
                notify <- new_spinlock_irq!(None, "Guest::notify"),
                vps <- new_spinlock_irq!(RBTree::new(), "Guest::vps"),
                async_call <- new_mutex!((), "Guest::async_call"),
                async_done <- new_spinlock_irq!(None, "Guest::async_done"),
                async_wait <- new_condvar!("Guest::async_wait"),
            }),
            GFP_KERNEL,
        )
        .and_then(|g| RBTreeNode::new(id, g, GFP_KERNEL));
        match guest {
            Ok(node) => {
                self.guests.lock().insert(node);
                Ok(id)
            }
            Err(_) => {
                let _ = self.delete_partition(id);
                Err(HvError::INSUFFICIENT_MEMORY)
            }
        }
    }
    fn initialize_partition(&self, pt: u64) -> HvResult {
        self.send(
            abi::HVCALL_INITIALIZE_PARTITION,
            &abi::HvInputPartition { partition_id: pt },
        )
    }
    fn finalize_partition(&self, pt: u64) -> HvResult {
        if let Some(g) = self.guest(pt) {
            // Root scheduler: no signal may arrive for a VP once it is gone
            // (VPs not deleted one by one before).
            if let Ok(vps) = g.vp_list() {
                super::run::drain_vps(self, pt, &vps);
                for (vp, run) in vps.iter() {
                    if let Some(stats) = run.take_stats() {
                        self.unmap_vp_stats(pt, *vp, stats.parent.is_some());
                    }
                }
            }
        }
        self.send(
            abi::HVCALL_FINALIZE_PARTITION,
            &abi::HvInputPartition { partition_id: pt },
        )
    }
    fn delete_partition(&self, pt: u64) -> HvResult {
        self.send(
            abi::HVCALL_DELETE_PARTITION,
            &abi::HvInputPartition { partition_id: pt },
        )?;
        let removed = self.guests.lock().remove_node(&pt);
        drop(removed);
        Ok(())
    }
    fn deposit(&self, pt: u64, pfns: &[u64]) -> RepResult {
        self.rep(
            abi::HVCALL_DEPOSIT_MEMORY,
            pfns.len(),
            0,
            |b| encode_deposit(b, pt, pfns),
            |_| {},
        )
    }
    fn withdraw(&self, pt: u64, out: &mut [u64]) -> HvResult<usize> {
        let n = out.len().min(512);
        let r = self.call(
            abi::control(abi::HVCALL_WITHDRAW_MEMORY, n as u16, 0, 0, false),
            n * 8,
            |b| {
                Enc::new(b)
                    .val(&abi::HvInputWithdrawMemory {
                        partition_id: pt,
                        proximity_domain_info: 0,
                    })
                    .done()
            },
            |o| {
                for (i, v) in out.iter_mut().take(n).enumerate() {
                    *v = u64_at(o, i * 8);
                }
            },
        );
        // Only the reps the hypervisor reports complete are ours again.
        let done = (abi::result_reps(r) as usize).min(n);
        match abi::result_status(r) {
            0 => Ok(n),
            status::NO_RESOURCES => Ok(done),
            s => {
                if done > 0 {
                    // The pages of the completed reps left the pool: keep
                    // them (the caller frees `done` entries) and report it.
                    return Ok(done);
                }
                Err(HvError(s))
            }
        }
    }
    fn create_vp(&self, pt: u64, vp: u32) -> HvResult {
        let guest = self.guest(pt).ok_or(HvError::INVALID_PARTITION_ID)?;
        self.simple(
            abi::HVCALL_CREATE_VP,
            0,
            |b| encode_create_vp(b, pt, vp),
            |_| {},
        )?;
        // Until the VP is in `guest.vps`, a failure deletes it again.
        let undo = ScopeGuard::new(|| {
            let _ = self.delete_vp(pt, vp);
        });
        // Its stats pages, as upstream maps them with the VP (the root
        // scheduler's run loop reads them).
        let stats = self.map_vp_stats(pt, vp)?;
        let has_parent = stats.parent.is_some();
        let node = VpRun::new(Some(stats))
            .and_then(|r| RBTreeNode::new(vp, r, GFP_KERNEL))
            .map_err(|_| {
                // The stats mappings went with the failed allocation.
                self.unmap_vp_stats(pt, vp, has_parent);
                HvError::INSUFFICIENT_MEMORY
            })?;
        guest.vps.lock().insert(node);
        undo.dismiss();
        Ok(())
    }
    fn delete_vp(&self, pt: u64, vp: u32) -> HvResult {
        if let Some(run) = self.guest(pt).and_then(|g| g.vp(vp)) {
            // Root scheduler: no signal may arrive once the VP is gone.
            super::run::drain_vps(self, pt, &[(vp, run.clone())]);
            if let Some(stats) = run.take_stats() {
                self.unmap_vp_stats(pt, vp, stats.parent.is_some());
            }
        }
        self.send(
            abi::HVCALL_DELETE_VP,
            &abi::HvInputVp {
                partition_id: pt,
                vp_index: vp,
                reserved: 0,
            },
        )?;
        if let Some(g) = self.guest(pt) {
            let removed = g.vps.lock().remove_node(&vp);
            drop(removed);
        }
        Ok(())
    }
    fn map_vp_state_page(&self, pt: u64, vp: u32, page: VpPage) -> HvResult<u64> {
        let mut pfn = 0;
        self.simple(
            abi::HVCALL_MAP_VP_STATE_PAGE,
            8,
            |b| encode_vp_state_page(b, pt, vp, page, true),
            |o| pfn = u64_at(o, 0),
        )?;
        Ok(pfn)
    }
    fn unmap_vp_state_page(&self, pt: u64, vp: u32, page: VpPage) -> HvResult {
        self.simple(
            abi::HVCALL_UNMAP_VP_STATE_PAGE,
            0,
            |b| encode_vp_state_page(b, pt, vp, page, false),
            |_| {},
        )
    }
    fn map_gpa_pages(&self, pt: u64, gfn: u64, flags: u32, pfns: &[u64]) -> RepResult {
        self.rep(
            abi::HVCALL_MAP_GPA_PAGES,
            pfns.len(),
            0,
            |b| encode_map_gpa(b, pt, gfn, flags, pfns),
            |_| {},
        )
    }
    fn unmap_gpa_pages(&self, pt: u64, gfn: u64, count: usize, flags: u32) -> RepResult {
        self.rep(
            abi::HVCALL_UNMAP_GPA_PAGES,
            count,
            0,
            |b| encode_unmap_gpa(b, pt, gfn, flags),
            |_| {},
        )
    }
    fn get_vp_registers(&self, pt: u64, vp: u32, names: &[u32], out: &mut [RegValue]) -> RepResult {
        self.rep(
            abi::HVCALL_GET_VP_REGISTERS,
            names.len(),
            names.len() * 16,
            |b| encode_get_regs(b, pt, vp, names),
            |o| {
                for (i, v) in out.iter_mut().enumerate() {
                    *v = [u64_at(o, i * 16), u64_at(o, i * 16 + 8)];
                }
            },
        )
    }
    fn set_vp_registers(&self, pt: u64, vp: u32, regs: &[(u32, RegValue)]) -> RepResult {
        self.rep(
            abi::HVCALL_SET_VP_REGISTERS,
            regs.len(),
            0,
            |b| encode_set_regs(b, pt, vp, regs),
            |_| {},
        )
    }
    fn assert_virtual_interrupt(&self, pt: u64, irq: &VirtualInterrupt) -> HvResult {
        self.simple(
            abi::HVCALL_ASSERT_VIRTUAL_INTERRUPT,
            0,
            |b| encode_assert_interrupt(b, pt, irq),
            |_| {},
        )
    }
    fn clear_virtual_interrupt(&self, pt: u64) -> HvResult {
        status_of(
            self.seam
                .fast_hypercall8(abi::HVCALL_CLEAR_VIRTUAL_INTERRUPT, pt),
        )
    }
    fn set_notify(&self, pt: u64, notify: Option<Arc<dyn Notify>>) -> HvResult {
        let guest = self.guest(pt).ok_or(HvError::INVALID_PARTITION_ID)?;
        let old = core::mem::replace(&mut *guest.notify.lock(), notify);
        drop(old);
        Ok(())
    }
    fn connect_doorbell(&self, pt: u64, port: u32, db: &Doorbell) -> HvResult {
        let guest = self.guest(pt).ok_or(HvError::INVALID_PARTITION_ID)?;
        let id = self
            .alloc_port(PortEntry {
                guest,
                driver_port: port,
            })
            .map_err(|_| HvError::INSUFFICIENT_MEMORY)?;
        let root = self.identity.partition_id;
        // Either call may ask for memory: the port's in the root, the
        // connection's in the guest (upstream deposits the same way).
        let create = abi::HvInputCreatePort {
            port_partition_id: root,
            port_id: id,
            connection_partition_id: pt,
            port_type: abi::HV_PORT_TYPE_DOORBELL,
            target_sint: abi::HV_SYNIC_DOORBELL_SINT_INDEX as u32,
            target_vp: abi::HV_ANY_VP,
            ..Default::default()
        };
        let created = self.with_deposit(abi::HV_PARTITION_ID_SELF, || {
            self.send(abi::HVCALL_CREATE_PORT, &create)
        });
        let connect = abi::HvInputConnectPort {
            connection_partition_id: pt,
            connection_id: id,
            port_partition_id: root,
            port_id: id,
            port_type: abi::HV_PORT_TYPE_DOORBELL,
            gpa: db.gpa,
            trigger_value: db.datamatch.unwrap_or(0),
            doorbell_flags: doorbell_flags(db),
            ..Default::default()
        };
        let connected = created
            .and_then(|()| self.with_deposit(pt, || self.send(abi::HVCALL_CONNECT_PORT, &connect)));
        if let Err(e) = connected {
            if created.is_ok() {
                let _ = self.delete_port(id);
            }
            let removed = self.ports.lock().remove_node(&id);
            drop(removed);
            return Err(e);
        }
        Ok(())
    }
    fn disconnect_doorbell(&self, pt: u64, port: u32) -> HvResult {
        let id = self.port_of(pt, port).ok_or(HvError::INVALID_PORT_ID)?;
        let res = self.remove_port(pt, id);
        // Forget the port whatever the hypervisor said: a ring that still
        // arrives finds no entry and is dropped.
        let removed = self.ports.lock().remove_node(&id);
        drop(removed);
        res
    }
    fn get_gpa_access_states(&self, pt: u64, gfn: u64, flags: u64, out: &mut [u8]) -> RepResult {
        if out.len() > super::GPA_ACCESS_STATES_BATCH {
            return Err(RepError {
                done: 0,
                error: HvError::INVALID_PARAMETER,
            });
        }
        let n = out.len();
        self.rep(
            abi::HVCALL_GET_GPA_PAGES_ACCESS_STATES,
            n,
            n,
            |b| encode_gpa_access_states(b, pt, flags, gfn),
            |o| {
                if let Some(src) = o.get(..n) {
                    out.copy_from_slice(src);
                }
            },
        )
    }
    fn get_vp_state(
        &self,
        pt: u64,
        vp: u32,
        data: &VpStateData,
        pfns: &[u64],
        inline: &mut [u8; VP_STATE_INLINE],
    ) -> HvResult {
        self.vp_state(
            abi::HVCALL_GET_VP_STATE,
            pt,
            vp,
            data,
            pfns,
            &[],
            Some(inline),
        )
    }
    fn set_vp_state(
        &self,
        pt: u64,
        vp: u32,
        data: &VpStateData,
        pfns: &[u64],
        inline: &[u8],
    ) -> HvResult {
        let raw = if pfns.is_empty() { inline } else { &[] };
        self.vp_state(abi::HVCALL_SET_VP_STATE, pt, vp, data, pfns, raw, None)
    }
    fn run_vp(&self, pt: u64, vp: u32) -> Result<RunExit> {
        let run = self
            .guest(pt)
            .and_then(|g| g.vp(vp))
            .ok_or(HvError::INVALID_VP_INDEX)?;
        super::run::run_vp(self, &run, pt, vp)
    }
    fn passthrough(
        &self,
        code: u16,
        reps: u16,
        rep_start: u16,
        input: &[u8; HV_PAGE],
        output: &mut [u8; HV_PAGE],
    ) -> u64 {
        if code == abi::HVCALL_SET_PARTITION_PROPERTY {
            let pt = abi::read_at::<u64>(input, 0).unwrap_or(0);
            if let Some(guest) = self.guest(pt) {
                return self.async_passthrough(&guest, code, input, output);
            }
        }
        // The caller's pages are whole hypercall pages: they go to the seam
        // as they are, not through `scratch`.
        self.seam
            .hypercall(abi::control(code, reps, rep_start, 0, false), input, output)
    }
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_hyperv_encoding)]
mod tests {
    use super::*;

    fn q(b: &[u8], i: usize) -> u64 {
        u64_at(b, i * 8)
    }

    #[test]
    fn control_words() {
        // MAP_GPA_PAGES, 509 reps from rep 0.
        assert_eq!(abi::control(0x4b, 509, 0, 0, false), 0x4b | (509u64 << 32));
        // Resuming at rep 100.
        assert_eq!(
            abi::control(0x4b, 509, 100, 0, false),
            0x4b | (509u64 << 32) | (100u64 << 48)
        );
        // Fast bit and variable header.
        assert_eq!(
            abi::control(0x41, 0, 0, 2, true),
            0x41 | (1 << 16) | (2 << 17)
        );
        // Fields are masked to their widths.
        assert_eq!(abi::control(0x4b, 0x1fff, 0, 0, false) >> 32, 0xfff);
        let r = abi::result(0xb, 37);
        assert_eq!(abi::result_status(r), 0xb);
        assert_eq!(abi::result_reps(r), 37);
    }

    #[test]
    fn map_and_unmap_encoding() {
        let mut page = [0xffu8; HV_PAGE];
        let pfns = [0x1000, 0x1001, 0x1200];
        let len = encode_map_gpa(
            &mut page,
            7,
            0x400,
            abi::HV_MAP_GPA_READABLE | abi::HV_MAP_GPA_LARGE_PAGE,
            &pfns,
        );
        assert_eq!(len, Some(24 + 3 * 8));
        assert_eq!(q(&page, 0), 7);
        assert_eq!(q(&page, 1), 0x400);
        assert_eq!(q(&page, 2), 0x8000_0001);
        assert_eq!(
            (q(&page, 3), q(&page, 4), q(&page, 5)),
            (0x1000, 0x1001, 0x1200)
        );
        // The rest of the page is zeroed, not stale.
        assert!(page[48..].iter().all(|&b| b == 0));
        // A full batch fits exactly; one more does not.
        let many = [0u64; 509];
        assert_eq!(encode_map_gpa(&mut page, 1, 0, 0, &many), Some(4096));
        let too_many = [0u64; 510];
        assert_eq!(encode_map_gpa(&mut page, 1, 0, 0, &too_many), None);
        assert_eq!(
            encode_unmap_gpa(&mut page, 9, 0x200, abi::HV_UNMAP_GPA_LARGE_PAGE),
            Some(24)
        );
        assert_eq!((q(&page, 0), q(&page, 1), q(&page, 2)), (9, 0x200, 2));
    }

    #[test]
    fn assert_interrupt_encoding() {
        let mut page = [0xffu8; HV_PAGE];
        let irq = VirtualInterrupt {
            kind: 4,
            vector: 0x31,
            dest: 3,
            level: true,
            logical: false,
        };
        assert_eq!(encode_assert_interrupt(&mut page, 9, &irq), Some(32));
        assert_eq!(q(&page, 0), 9);
        assert_eq!(q(&page, 1), 4 | (1 << 32));
        assert_eq!(q(&page, 2), 3);
        // Vector, then target VTL and reserved bytes, all zero.
        assert_eq!(q(&page, 3), 0x31);
        let logical = VirtualInterrupt {
            kind: 0,
            vector: 0xec,
            dest: 0x80,
            level: false,
            logical: true,
        };
        assert_eq!(encode_assert_interrupt(&mut page, 9, &logical), Some(32));
        assert_eq!(
            (q(&page, 1), q(&page, 2), q(&page, 3)),
            (1 << 33, 0x80, 0xec)
        );
    }

    #[test]
    fn partition_and_vp_encoding() {
        let mut page = [0u8; HV_PAGE];
        let a = CreatePartition {
            flags: 0x8_2100,
            disabled_features: [1, 2],
            disabled_xsave: 3,
        };
        assert_eq!(encode_create_partition(&mut page, &a), Some(56));
        assert_eq!(q(&page, 0), 0x8_2100);
        assert_eq!(
            u32::from_le_bytes([page[16], page[17], page[18], page[19]]),
            0x0609
        );
        assert_eq!(
            (q(&page, 3), q(&page, 4), q(&page, 5), q(&page, 6)),
            (1, 2, 3, 0)
        );
        assert_eq!(encode_create_vp(&mut page, 5, 3), Some(40));
        assert_eq!((q(&page, 0), page[8]), (5, 3));
        assert_eq!(
            encode_vp_state_page(&mut page, 5, 2, VpPage::InterceptMessage, true),
            Some(24)
        );
        assert_eq!((page[8], page[12]), (2, 1));
        assert_eq!(
            encode_vp_state_page(&mut page, 5, 2, VpPage::Registers, false),
            Some(16)
        );
        assert_eq!(encode_deposit(&mut page, 5, &[0u64; 511]), Some(4096));
    }

    #[test]
    fn gpa_access_states_encoding() {
        let mut page = [0xffu8; HV_PAGE];
        let flags = crate::hv::GPA_STATE_CLEAR_DIRTY | crate::hv::GPA_STATE_CLEAR_ACCESSED;
        assert_eq!(
            encode_gpa_access_states(&mut page, 3, flags, 0x12_3456),
            Some(24)
        );
        assert_eq!(
            (q(&page, 0), q(&page, 1), q(&page, 2)),
            (3, 0b101, 0x12_3456)
        );
        assert!(page[24..].iter().all(|&b| b == 0));
        assert_eq!(
            crate::hv::GPA_STATE_SET_ACCESSED | crate::hv::GPA_STATE_SET_DIRTY,
            0b1010
        );
        // One byte of output per rep: a batch fills the output page but one byte.
        assert_eq!(crate::hv::GPA_ACCESS_STATES_BATCH, 4095);
    }

    #[test]
    fn vp_state_encoding() {
        let mut page = [0xffu8; HV_PAGE];
        let data = VpStateData {
            kind: crate::hv::HV_GET_SET_VP_STATE_XSAVE,
            xsave_flags: 0,
            xsave_states: 7,
        };
        assert_eq!(
            encode_vp_state(&mut page, 9, 2, &data, &[0x1234, 0x5678], &[]),
            Some((40 + 16, 2))
        );
        assert_eq!((q(&page, 0), page[8], page[12]), (9, 2, 0));
        assert_eq!(q(&page, 2) & 0xffff_ffff, 0x8000_0001);
        assert_eq!((q(&page, 3), q(&page, 4)), (0, 7));
        assert_eq!((q(&page, 5), q(&page, 6)), (0x1234, 0x5678));
        assert!(page[56..].iter().all(|&b| b == 0));
        // Raw bytes are padded to whole qwords; an empty list has no varhead.
        assert_eq!(
            encode_vp_state(&mut page, 9, 2, &data, &[], &[1, 2, 3]),
            Some((48, 1))
        );
        assert_eq!(q(&page, 5), 0x03_0201);
        assert_eq!(
            encode_vp_state(&mut page, 9, 2, &data, &[], &[]),
            Some((40, 0))
        );
        // The batch of pfns fills the page exactly; one more does not fit.
        assert_eq!(crate::hv::VP_STATE_BATCH, 507);
        let full = [0u64; 508];
        assert_eq!(
            encode_vp_state(&mut page, 9, 2, &data, &full[..507], &[]),
            Some((4096, 507))
        );
        assert_eq!(encode_vp_state(&mut page, 9, 2, &data, &full, &[]), None);
    }

    #[test]
    fn register_encoding() {
        let mut page = [0u8; HV_PAGE];
        assert_eq!(
            encode_get_regs(
                &mut page,
                4,
                1,
                &[abi::HV_X64_REGISTER_RIP, abi::HV_X64_REGISTER_RAX]
            ),
            Some(24)
        );
        assert_eq!(
            u32::from_le_bytes([page[16], page[17], page[18], page[19]]),
            0x20010
        );
        let regs = [(abi::HV_X64_REGISTER_RIP, [0xfff0, 0])];
        assert_eq!(encode_set_regs(&mut page, 4, 1, &regs), Some(16 + 32));
        assert_eq!(q(&page, 2) & 0xffff_ffff, 0x20010);
        assert_eq!((q(&page, 4), q(&page, 5)), (0xfff0, 0));
        // 127 assocs fit after the header; 128 do not.
        let regs = [(0u32, [0u64; 2]); 128];
        assert_eq!(
            encode_set_regs(&mut page, 4, 1, &regs[..127]),
            Some(16 + 127 * 32)
        );
        assert_eq!(encode_set_regs(&mut page, 4, 1, &regs), None);
    }

    /// A backend over a fresh emulator, and the emulator's core.
    fn over_emulator() -> Result<(Arc<HyperV>, Arc<crate::sim::Sim>)> {
        let emu = crate::sim::emu::Emulator::new(crate::sim::sched::Scheduler::Root)?;
        let sim = emu.sim.clone();
        Ok((HyperV::new(emu)?, sim))
    }

    /// Deposits `n` fresh pages through the backend (the emulator decodes
    /// the pfn list the encoder wrote).
    fn deposit_pages(hv: &HyperV, pt: u64, n: usize) -> Result {
        for _ in 0..n {
            let pfn = crate::sys::page::OwnedPage::new()?.into_pfn();
            if let Err(e) = hv.deposit(pt, &[pfn]) {
                // SAFETY: its one rep failed, so the page is still ours.
                drop(unsafe { crate::sys::page::OwnedPage::from_pfn(pfn) });
                return Err(e.error.into());
            }
        }
        Ok(())
    }

    /// A new partition, made as the driver makes it: while the root's pool
    /// is short, a page is deposited into the root and the call retried.
    fn new_partition(hv: &HyperV) -> Result<u64> {
        crate::hv::calls::retry_with_deposit(hv, abi::HV_PARTITION_ID_SELF, || {
            hv.create_partition(&CreatePartition::default())
        })
    }

    /// A new partition with its initialize pages and `extra` more
    /// deposited, initialized.
    fn initialized_with(hv: &HyperV, extra: usize) -> Result<u64> {
        let pt = new_partition(hv)?;
        deposit_pages(hv, pt, crate::sim::INIT_PAGES + extra)?;
        hv.initialize_partition(pt)?;
        Ok(pt)
    }

    /// An initialized partition with 4 spare pages: ready for map calls.
    fn initialized_partition(hv: &HyperV) -> Result<u64> {
        initialized_with(hv, 4)
    }

    /// An initialized partition with VP `vp` (and pages for its stats
    /// pages and a few more).
    fn partition_with_vp(hv: &HyperV, vp: u32) -> Result<u64> {
        let pt = initialized_with(hv, crate::sim::VP_PAGES + 12)?;
        hv.create_vp(pt, vp)?;
        Ok(pt)
    }

    /// Finalizes, withdraws everything and deletes `pt`.
    fn destroy(hv: &HyperV, pt: u64) -> Result {
        hv.finalize_partition(pt)?;
        let mut out = [0u64; 64];
        loop {
            let n = hv.withdraw(pt, &mut out)?;
            for &pfn in out.iter().take(n) {
                // SAFETY: withdrawn pages are ours again.
                drop(unsafe { crate::sys::page::OwnedPage::from_pfn(pfn) });
            }
            if n < out.len() {
                break;
            }
        }
        hv.delete_partition(pt)?;
        Ok(())
    }

    #[test]
    fn vp_stats_pages_round_trip() -> Result {
        // MAP_STATS_PAGE encoded here, decoded by the emulator: SELF and
        // PARENT are the VP's two stats pages there, mapped here; the
        // counter the emulator writes is what the run loop reads.
        let (hv, sim) = over_emulator()?;
        let pt = partition_with_vp(&hv, 3)?;
        let own = hv.map_stats_page(pt, 3, abi::HV_STATS_AREA_SELF)?;
        let parent = hv.map_stats_page(pt, 3, abi::HV_STATS_AREA_PARENT)?;
        let (want_own, want_parent) = sim.vp_stats_pfns(pt, 3)?;
        assert_eq!(own, Some(want_own));
        assert_eq!(parent, Some(want_parent));
        // An area the hypervisor lacks, a VP that does not exist.
        assert_eq!(hv.map_stats_page(pt, 3, 7), Err(HvError::INVALID_PARAMETER));
        assert_eq!(
            hv.map_stats_page(pt, 4, abi::HV_STATS_AREA_SELF),
            Err(HvError::INVALID_VP_INDEX)
        );
        let run = hv.guest(pt).and_then(|g| g.vp(3)).ok_or(EINVAL)?;
        assert!(!run.dispatch_thread_blocked());
        sim.set_vp_dispatch_thread_blocked(pt, 3, true)?;
        assert!(run.dispatch_thread_blocked());
        sim.set_vp_dispatch_thread_blocked(pt, 3, false)?;
        assert!(!run.dispatch_thread_blocked());
        hv.delete_vp(pt, 3)?;
        assert!(run.take_stats().is_none());
        destroy(&hv, pt)?;
        Ok(())
    }

    #[test]
    fn a_vp_state_page_is_unmapped_once() -> Result {
        // UNMAP_VP_STATE_PAGE undoes a MAP_VP_STATE_PAGE of the same page:
        // a page never mapped, or already unmapped, is INVALID_PARAMETER.
        let (hv, _sim) = over_emulator()?;
        let pt = partition_with_vp(&hv, 0)?;
        let invalid = Err(HvError::INVALID_PARAMETER);
        assert_eq!(hv.unmap_vp_state_page(pt, 0, VpPage::Registers), invalid);
        hv.map_vp_state_page(pt, 0, VpPage::Registers)?;
        assert_eq!(
            hv.unmap_vp_state_page(pt, 0, VpPage::InterceptMessage),
            invalid
        );
        assert_eq!(hv.unmap_vp_state_page(pt, 0, VpPage::Registers), Ok(()));
        assert_eq!(hv.unmap_vp_state_page(pt, 0, VpPage::Registers), invalid);
        // Mapped again after the unmap, the page can be unmapped again.
        hv.map_vp_state_page(pt, 0, VpPage::InterceptMessage)?;
        hv.map_vp_state_page(pt, 0, VpPage::Registers)?;
        assert_eq!(hv.unmap_vp_state_page(pt, 0, VpPage::Registers), Ok(()));
        assert_eq!(
            hv.unmap_vp_state_page(pt, 0, VpPage::InterceptMessage),
            Ok(())
        );
        assert_eq!(
            hv.unmap_vp_state_page(pt, 1, VpPage::Registers),
            Err(HvError::INVALID_VP_INDEX)
        );
        hv.delete_vp(pt, 0)?;
        destroy(&hv, pt)?;
        Ok(())
    }

    #[test]
    fn round_trip_through_the_emulator() -> Result {
        // Each call is encoded here and decoded by the emulator; the
        // emulator's state shows what it understood.
        let (hv, sim) = over_emulator()?;
        assert_eq!(hv.scheduler, abi::HV_SCHEDULER_TYPE_ROOT);
        // VMM_CAPABILITIES through GET_PARTITION_PROPERTY_EX: the emulator's
        // bank 0 (assignable_synthetic_proc_features, bit 4).
        assert_eq!(hv.vmm_capabilities, 1 << 4);
        let pt = new_partition(&hv)?;
        assert!(hv.guest(pt).is_some());
        deposit_pages(&hv, pt, crate::sim::INIT_PAGES + crate::sim::VP_PAGES + 12)?;
        assert_eq!(
            sim.partition_stats(pt)?.pool_pages,
            crate::sim::INIT_PAGES + crate::sim::VP_PAGES + 12
        );
        hv.initialize_partition(pt)?;
        hv.create_vp(pt, 0)?;
        assert_eq!(sim.partition_stats(pt)?.vps, 1);
        assert!(hv.guest(pt).and_then(|g| g.vp(0)).is_some());
        let page = crate::sys::page::OwnedPage::new()?;
        let rw = abi::HV_MAP_GPA_READABLE | abi::HV_MAP_GPA_WRITABLE;
        hv.map_gpa_pages(pt, 0x10, rw, &[page.pfn(); 3])
            .map_err(|e| Error::from(e.error))?;
        let st = sim.partition_stats(pt)?;
        assert_eq!((st.small_entries, st.accessible_entries), (3, 3));
        let mut seen = KVec::new();
        sim.for_each_gpa_entry(pt, 0, 0x100, |gfn, pfn, _, _, _| {
            let _ = seen.push((gfn, pfn), GFP_ATOMIC);
        })?;
        assert_eq!(
            &seen[..],
            &[(0x10, page.pfn()), (0x11, page.pfn()), (0x12, page.pfn())]
        );
        hv.unmap_gpa_pages(pt, 0x10, 3, 0)
            .map_err(|e| Error::from(e.error))?;
        assert_eq!(sim.partition_stats(pt)?.small_entries, 0);
        // A register written and read back.
        hv.set_vp_registers(pt, 0, &[(abi::HV_X64_REGISTER_RIP, [0x1234, 0])])
            .map_err(|e| Error::from(e.error))?;
        let mut out = [[0u64; 2]; 1];
        hv.get_vp_registers(pt, 0, &[abi::HV_X64_REGISTER_RIP], &mut out)
            .map_err(|e| Error::from(e.error))?;
        assert_eq!(out[0], [0x1234, 0]);
        // A doorbell port: created in the root, connected in the guest.
        let db = Doorbell {
            gpa: 0x1000,
            len: 4,
            datamatch: Some(7),
        };
        hv.connect_doorbell(pt, 1, &db)?;
        assert_eq!(hv.ports.lock().iter().count(), 1);
        assert_eq!(
            hv.connect_doorbell(pt + 1000, 1, &db),
            Err(HvError::INVALID_PARTITION_ID)
        );
        hv.disconnect_doorbell(pt, 1)?;
        assert_eq!(hv.ports.lock().iter().count(), 0);
        assert_eq!(hv.disconnect_doorbell(pt, 1), Err(HvError::INVALID_PORT_ID));
        // CLEAR_VIRTUAL_INTERRUPT is a fast call: the partition id is the
        // register.
        hv.clear_virtual_interrupt(pt)?;
        assert_eq!(
            hv.clear_virtual_interrupt(pt + 1000),
            Err(HvError::INVALID_PARTITION_ID)
        );
        hv.delete_vp(pt, 0)?;
        assert!(hv.guest(pt).and_then(|g| g.vp(0)).is_none());
        destroy(&hv, pt)?;
        assert!(hv.guest(pt).is_none());
        drop(page);
        Ok(())
    }

    #[test]
    fn root_shortage_deposits_a_page_at_a_time() -> Result {
        // Creating a partition while the root's pool is short: upstream
        // deposits one page into the root per INSUFFICIENT_ROOT_MEMORY, not a
        // map batch of 256.
        // A fresh emulator's root pool is empty: the partition's own
        // PART_ROOT_PAGES, plus 3 more asked for by the injection.
        let (hv, sim) = over_emulator()?;
        sim.inject_root_pages(3);
        assert_eq!(sim.root_pool_pages(), 0);
        let pt = new_partition(&hv)?;
        assert_eq!(sim.root_pool_pages(), crate::sim::PART_ROOT_PAGES + 3);
        assert_eq!(sim.root_pool_free(), 0);
        sim.inject_root_pages(0);
        hv.delete_partition(pt)?;
        // Deleting gives the pages back to the root's pool: the next
        // partition needs no deposit.
        assert_eq!(sim.root_pool_free(), crate::sim::PART_ROOT_PAGES + 3);
        let pt = hv.create_partition(&CreatePartition::default())?;
        assert_eq!(sim.root_pool_pages(), crate::sim::PART_ROOT_PAGES + 3);
        hv.delete_partition(pt)?;
        Ok(())
    }

    #[test]
    fn emulator_refuses_what_hyperv_refuses() -> Result {
        let (hv, _sim) = over_emulator()?;
        let seam = &*hv.seam;
        let mut out = [0u8; 8];
        // Reserved control-word bits.
        let bad = abi::control(abi::HVCALL_INITIALIZE_PARTITION, 0, 0, 0, false) | (1 << 27);
        let r = seam.hypercall(bad, &[0u8; 8], &mut out);
        assert_eq!(abi::result_status(r), status::INVALID_HYPERCALL_INPUT);
        // A rep count on a simple call.
        let r = seam.hypercall(
            abi::control(abi::HVCALL_GET_PARTITION_PROPERTY, 1, 0, 0, false),
            &[0u8; 24],
            &mut out,
        );
        assert_eq!(abi::result_status(r), status::INVALID_HYPERCALL_INPUT);
        // DISPATCH_VP with preemption enabled (a KUnit thread).
        let input = abi::HvInputDispatchVp::default();
        let r = seam.dispatch(
            abi::control(abi::HVCALL_DISPATCH_VP, 0, 0, 0, false),
            input.as_bytes(),
            &mut out,
        );
        assert_eq!(abi::result_status(r), status::OPERATION_DENIED);
        // A SINT value with reserved bits is ignored.
        crate::sys::cpu::without_preemption(|| {
            let before = seam.read_msr(abi::HV_MSR_SINT0);
            seam.write_msr(abi::HV_MSR_SINT0, 1 << 40);
            assert_eq!(seam.read_msr(abi::HV_MSR_SINT0), before);
        });
        // A port for a partition that does not exist.
        let create = abi::HvInputCreatePort {
            port_partition_id: abi::HV_PARTITION_ID_SELF,
            port_id: 5,
            connection_partition_id: 12345,
            port_type: abi::HV_PORT_TYPE_DOORBELL,
            target_sint: 5,
            target_vp: abi::HV_ANY_VP,
            ..Default::default()
        };
        let r = seam.hypercall(
            abi::control(abi::HVCALL_CREATE_PORT, 0, 0, 0, false),
            create.as_bytes(),
            &mut [],
        );
        assert_eq!(abi::result_status(r), status::INVALID_PARTITION_ID);
        Ok(())
    }

    #[test]
    fn reserved_map_flags_are_refused() -> Result {
        let (hv, sim) = over_emulator()?;
        let pt = initialized_partition(&hv)?;
        let g = crate::sys::page::OwnedPage::new()?;
        let rw = abi::HV_MAP_GPA_READABLE | abi::HV_MAP_GPA_WRITABLE;
        // The lowest and highest undefined map bits, then a defined set.
        for bad in [1u32 << 4, 1 << 30] {
            assert_eq!(
                hv.map_gpa_pages(pt, 0, rw | bad, &[g.pfn()])
                    .map_err(|e| (e.error, e.done)),
                Err((HvError::INVALID_PARAMETER, 0))
            );
        }
        assert_eq!(sim.partition_stats(pt)?.small_entries, 0);
        let flags = rw | abi::HV_MAP_GPA_EXECUTABLE | abi::HV_MAP_GPA_ADJUSTABLE;
        assert_eq!(
            hv.map_gpa_pages(pt, 0, flags, &[g.pfn()])
                .map_err(|e| e.error),
            Ok(())
        );
        // Unmap: only LARGE_PAGE is defined.
        for bad in [1u32, 1 << 2, 1 << 31] {
            assert_eq!(
                hv.unmap_gpa_pages(pt, 0, 1, bad)
                    .map_err(|e| (e.error, e.done)),
                Err((HvError::INVALID_PARAMETER, 0))
            );
        }
        assert_eq!(sim.partition_stats(pt)?.small_entries, 1);
        assert_eq!(hv.unmap_gpa_pages(pt, 0, 1, 0).map_err(|e| e.error), Ok(()));
        destroy(&hv, pt)?;
        Ok(())
    }

    #[test]
    fn pool_pages_are_the_hypervisors() -> Result {
        // TLFS, HvDepositMemory: a deposited page is the hypervisor's until
        // it is withdrawn. Depositing it again, or mapping it into a guest,
        // is OPERATION_DENIED at its rep; the reps before it take effect.
        use crate::sys::page::OwnedPage;
        let (hv, sim) = over_emulator()?;
        let pt = initialized_partition(&hv)?;
        let pool = sim.partition_stats(pt)?.pool_pages;
        let all = sim.deposited_pages();
        let (a, b) = (OwnedPage::new()?.into_pfn(), OwnedPage::new()?.into_pfn());
        let err = |e: RepError| (e.error, e.done);
        assert_eq!(
            hv.deposit(pt, &[a, b, b]).map_err(err),
            Err((HvError::OPERATION_DENIED, 2))
        );
        assert_eq!(sim.partition_stats(pt)?.pool_pages, pool + 2);
        assert_eq!(sim.deposited_pages(), all + 2);
        // Into another pool (the root's) neither.
        let root = sim.root_pool_pages();
        assert_eq!(
            hv.deposit(abi::HV_PARTITION_ID_SELF, &[a]).map_err(err),
            Err((HvError::OPERATION_DENIED, 0))
        );
        assert_eq!(sim.root_pool_pages(), root);

        let g = OwnedPage::new()?;
        let rw = abi::HV_MAP_GPA_READABLE | abi::HV_MAP_GPA_WRITABLE;
        assert_eq!(
            hv.map_gpa_pages(pt, 0x10, rw, &[g.pfn(), b]).map_err(err),
            Err((HvError::OPERATION_DENIED, 1))
        );
        assert_eq!(sim.partition_stats(pt)?.small_entries, 1);
        // A 2 MiB rep over the frame that holds `a`.
        let large = rw | abi::HV_MAP_GPA_LARGE_PAGE;
        assert_eq!(
            hv.map_gpa_pages(pt, 0x200, large, &[a & !511]).map_err(err),
            Err((HvError::OPERATION_DENIED, 0))
        );
        assert_eq!(sim.partition_stats(pt)?.large_entries, 0);
        // NO_ACCESS maps ignore their pfns.
        let no_access = abi::HV_MAP_GPA_NO_ACCESS;
        assert_eq!(
            hv.map_gpa_pages(pt, 0x11, no_access, &[a]).map_err(err),
            Ok(())
        );
        assert_eq!(hv.unmap_gpa_pages(pt, 0x10, 2, 0).map_err(err), Ok(()));
        destroy(&hv, pt)?;
        // Withdrawn pages are the root's again; only the root's pool is left.
        assert_eq!(sim.deposited_pages(), sim.root_pool_pages());
        Ok(())
    }

    #[test]
    fn a_partial_deposit_leaves_the_taken_pages_deposited() -> Result {
        // A deposit that fails at rep 3 of 8: the hypervisor owns the first
        // three pages, the driver frees the other five and counts three.
        use crate::hv::calls;
        use crate::stats::{live, Live};
        let (hv, sim) = over_emulator()?;
        let live0 = live(Live::DepositedPages);
        let pt = new_partition(&hv)?;
        calls::deposit(&*hv, pt, crate::sim::INIT_PAGES)?;
        hv.initialize_partition(pt)?;
        let pool = sim.partition_stats(pt)?.pool_pages;
        sim.inject_call_failure(abi::HVCALL_DEPOSIT_MEMORY, status::OPERATION_DENIED, 3, 1);
        assert_eq!(calls::deposit(&*hv, pt, 8), Err(EACCES));
        assert_eq!(sim.partition_stats(pt)?.pool_pages, pool + 3);
        assert_eq!(live(Live::DepositedPages), live0 + pool as i64 + 3);
        hv.finalize_partition(pt)?;
        assert_eq!(calls::withdraw_all(&*hv, pt), pool + 3);
        assert_eq!(live(Live::DepositedPages), live0);
        hv.delete_partition(pt)?;
        Ok(())
    }

    #[test]
    fn unmap_batched_resumes_after_a_failure() -> Result {
        use crate::hv::calls;
        use core::sync::atomic::{AtomicU64, Ordering};
        let (hv, sim) = over_emulator()?;
        let pt = initialized_partition(&hv)?;
        let g = crate::sys::page::OwnedPage::new()?;
        let rw = abi::HV_MAP_GPA_READABLE | abi::HV_MAP_GPA_WRITABLE;
        let pfns = [g.pfn(); 8];
        let calls = AtomicU64::new(0);

        // One failure at rep 3: the call is resumed at rep 3 and completes.
        sim.map_gpa_pages(pt, 0, rw, &pfns)
            .map_err(|e| Error::from(e.error))?;
        sim.inject_fail_at_rep(3, status::OPERATION_FAILED);
        assert_eq!(calls::unmap_batched(&*hv, pt, 0, 8, false, &calls), Ok(()));
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(sim.partition_stats(pt)?.small_entries, 0);

        // Every call fails: UNMAP_TRIES attempts, then the error, with the
        // completed reps of all attempts.
        sim.map_gpa_pages(pt, 0, rw, &pfns)
            .map_err(|e| Error::from(e.error))?;
        calls.store(0, Ordering::Relaxed);
        sim.inject_random(1000, status::INVALID_PARAMETER);
        let r = calls::unmap_batched(&*hv, pt, 0, 8, false, &calls);
        sim.inject_random(0, 0);
        let left = sim.partition_stats(pt)?.small_entries;
        assert_eq!(
            r.map_err(|e| (e.error, e.done + left)),
            Err((HvError::INVALID_PARAMETER, 8))
        );
        assert!(left > 0);
        assert_eq!(calls.load(Ordering::Relaxed), calls::UNMAP_TRIES as u64);
        assert_eq!(sim.unmap_gpa_pages(pt, 0, 8, 0), Ok(()));
        destroy(&hv, pt)?;
        Ok(())
    }
}
