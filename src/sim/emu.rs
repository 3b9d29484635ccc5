// SPDX-License-Identifier: GPL-2.0

//! The TLFS-level emulator: the seam's other side (`backend=sim`).
//!
//! It receives what Hyper-V would receive (a control word and the bytes of
//! an input page; a fast call's register; SynIC MSR accesses) and answers
//! as Hyper-V would (a result word, the bytes of an output page, messages in
//! the SynIC pages and an interrupt), by running the simulator core
//! ([`Sim`]): SLAT, deposit pool, VPs, the x86 interpreter, the LAPIC. The
//! driver above the seam is the same code that runs on a root partition.
//!
//! Decoding uses the shared structs of [`abi`], the ones the driver's
//! encoder fills. Strictness (docs/sim.md lists each choice):
//! - a control word with reserved bits set, the fast bit on a memory call,
//!   or a rep count on a simple call is `INVALID_HYPERCALL_INPUT`;
//! - map and unmap flag bits the headers do not define,
//! - reserved fields the driver must zero (padding, VTLs, creation flags,
//!   map-location-provided) are `INVALID_PARAMETER` when set;
//! - `HVCALL_DISPATCH_VP` from a context with preemption enabled or
//!   interrupts disabled is refused (`OPERATION_DENIED`, logged): Hyper-V
//!   would run the VP on a CPU the caller could leave, or with the caller's
//!   interrupts masked for a whole time slice;
//! - the scheduler is the `sim_scheduler=` parameter's ([`super::sched`]):
//!   `GET_SYSTEM_PROPERTY` answers `HV_SCHEDULER_TYPE_ROOT` or
//!   `HV_SCHEDULER_TYPE_CORE_SMT`, and `DISPATCH_VP` under the core
//!   scheduler is `ACCESS_DENIED`.
//!
//! Calls run with the emulator's page pair locked (a spinlock, like the
//! per-CPU hypercall pages with interrupts off); nothing in them sleeps.

use super::{
    inject::{self, CallFailure},
    Sim,
};
use crate::sys::cpu;
use crate::tlfs::{
    abi,
    seam::{Identity, Seam, SynicHandler},
    status, Doorbell, HvError, VpStateData, HV_PAGE, VP_STATE_INLINE,
};
use kernel::{
    new_spinlock,
    prelude::*,
    sync::{atomic::Relaxed, Arc, SpinLock},
};

/// The emulator's copy of the input and output pages.
#[repr(C, align(8))]
struct Pages {
    input: [u8; HV_PAGE],
    output: [u8; HV_PAGE],
}

// SAFETY: two byte arrays: all zeroes is a valid value.
unsafe impl Zeroable for Pages {}

/// A doorbell port the root created (`HVCALL_CREATE_PORT`).
#[derive(Clone, Copy)]
struct Port {
    id: u32,
    /// The partition that may connect to it.
    connection_pt: u64,
    /// Connected (`HVCALL_CONNECT_PORT`).
    connected: bool,
}

/// Most ports the emulator holds (Hyper-V limits them too).
const MAX_PORTS: usize = 65536;

/// The emulator.
#[pin_data(PinnedDrop)]
pub(crate) struct Emulator {
    /// The simulator core.
    pub(crate) sim: Arc<Sim>,
    #[pin]
    pages: SpinLock<KBox<Pages>>,
    /// Ports by id. A leaf spinlock.
    #[pin]
    ports: SpinLock<KVec<Port>>,
}

/// A hypercall's outcome: status and reps completed.
type Outcome = (u16, u16);

fn fail(st: u16) -> Outcome {
    (st, 0)
}

fn get<T: kernel::transmute::FromBytes>(b: &[u8], off: usize) -> Result<T, Outcome> {
    abi::read_at(b, off).ok_or(fail(status::INVALID_HYPERCALL_INPUT))
}

/// `len` u64s at byte `off` of a page (an 8-aligned [`Pages`] field).
fn u64s(b: &[u8], off: usize, len: usize) -> Result<&[u64], Outcome> {
    let bytes = b
        .get(off..off + len * 8)
        .ok_or(fail(status::INVALID_HYPERCALL_INPUT))?;
    if bytes.as_ptr().align_offset(8) != 0 {
        return Err(fail(status::INVALID_ALIGNMENT));
    }
    // SAFETY: `bytes` is `len * 8` initialised bytes, 8-aligned (checked),
    // borrowed for the result's lifetime; every bit pattern is a valid u64.
    Ok(unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<u64>(), len) })
}

/// As [`u64s`], writable.
fn u64s_mut(b: &mut [u8], off: usize, len: usize) -> Result<&mut [u64], Outcome> {
    let bytes = b
        .get_mut(off..off + len * 8)
        .ok_or(fail(status::INVALID_HYPERCALL_INPUT))?;
    if bytes.as_ptr().align_offset(8) != 0 {
        return Err(fail(status::INVALID_ALIGNMENT));
    }
    // SAFETY: as in `u64s`, and the borrow is exclusive.
    Ok(unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<u64>(), len) })
}

/// A simple call's status.
fn simple(r: core::result::Result<(), HvError>) -> Outcome {
    match r {
        Ok(()) => (status::SUCCESS, 0),
        Err(e) => fail(e.0),
    }
}

/// `HV_DOORBELL_FLAG_*` to a doorbell's trigger size in bytes (0 any).
fn trigger_len(flags: u64) -> Option<u32> {
    if flags & !(abi::HV_DOORBELL_FLAG_TRIGGER_SIZE_MASK | abi::HV_DOORBELL_FLAG_TRIGGER_ANY_VALUE)
        != 0
    {
        return None;
    }
    match flags & abi::HV_DOORBELL_FLAG_TRIGGER_SIZE_MASK {
        0 => Some(0),
        1 => Some(1),
        2 => Some(2),
        3 => Some(4),
        4 => Some(8),
        _ => None,
    }
}

impl Emulator {
    /// The emulator over a fresh simulator core.
    pub(crate) fn new(scheduler: super::sched::Scheduler) -> Result<Arc<Self>> {
        let sim = Sim::new(scheduler)?;
        // Zeroed in place: 8 KiB would not belong on the kernel stack.
        let pages = KBox::<Pages>::zeroed(GFP_KERNEL)?;
        Arc::pin_init(
            try_pin_init!(Self {
                sim,
                pages <- new_spinlock!(pages, "Emulator::pages"),
                ports <- new_spinlock!(KVec::new(), "Emulator::ports"),
            }? Error),
            GFP_KERNEL,
        )
    }

    /// Runs fast call `code` with its one input register.
    fn fast_call(&self, code: u16, input: u64) -> u64 {
        match code {
            abi::HVCALL_NOTIFY_PORT_RING_EMPTY if input >> 32 == 0 => {
                abi::result(self.sim.synic.ring_empty(input), 0)
            }
            abi::HVCALL_NOTIFY_PORT_RING_EMPTY => abi::result(status::INVALID_PARAMETER, 0),
            abi::HVCALL_CLEAR_VIRTUAL_INTERRUPT => match self.sim.clear_virtual_interrupt(input) {
                Ok(()) => abi::result(status::SUCCESS, 0),
                Err(e) => abi::result(e.0, 0),
            },
            _ => abi::result(status::INVALID_HYPERCALL_CODE, 0),
        }
    }

    /// Decodes and runs one memory hypercall on the page pair.
    fn call(&self, code: u16, reps: u16, start: u16, varhead: u16, p: &mut Pages) -> Outcome {
        let (input, output) = (&p.input[..], &mut p.output[..]);
        let rep_call = matches!(
            code,
            abi::HVCALL_DEPOSIT_MEMORY
                | abi::HVCALL_WITHDRAW_MEMORY
                | abi::HVCALL_MAP_GPA_PAGES
                | abi::HVCALL_UNMAP_GPA_PAGES
        );
        if rep_call && start > reps {
            return fail(status::INVALID_HYPERCALL_INPUT);
        }
        let r = match code {
            abi::HVCALL_CREATE_PARTITION => self.create_partition(input, output),
            abi::HVCALL_INITIALIZE_PARTITION
            | abi::HVCALL_FINALIZE_PARTITION
            | abi::HVCALL_DELETE_PARTITION => get::<abi::HvInputPartition>(input, 0).map(|i| {
                let pt = i.partition_id;
                simple(match code {
                    abi::HVCALL_INITIALIZE_PARTITION => self.sim.initialize_partition(pt),
                    abi::HVCALL_FINALIZE_PARTITION => self.sim.finalize_partition(pt),
                    _ => self.sim.delete_partition(pt),
                })
            }),
            abi::HVCALL_DEPOSIT_MEMORY => self.deposit(reps, start, input),
            abi::HVCALL_WITHDRAW_MEMORY => self.withdraw(reps, start, input, output),
            abi::HVCALL_CREATE_VP => get::<abi::HvInputCreateVp>(input, 0).map(|i| {
                if i.padding != [0; 3] || i.flags != 0 {
                    return fail(status::INVALID_PARAMETER);
                }
                simple(self.sim.create_vp(i.partition_id, i.vp_index))
            }),
            abi::HVCALL_DELETE_VP => get::<abi::HvInputVp>(input, 0)
                .map(|i| simple(self.sim.delete_vp(i.partition_id, i.vp_index))),
            abi::HVCALL_MAP_VP_STATE_PAGE => self.map_vp_state_page(input, output),
            abi::HVCALL_MAP_STATS_PAGE | abi::HVCALL_UNMAP_STATS_PAGE => {
                self.stats_page(code, input, output)
            }
            abi::HVCALL_UNMAP_VP_STATE_PAGE => {
                get::<abi::HvInputUnmapVpStatePage>(input, 0).map(|i| {
                    match crate::tlfs::VpPage::from_raw(i.page_type) {
                        Some(page) if i.input_vtl == 0 => simple(self.sim.unmap_vp_state_page(
                            i.partition_id,
                            i.vp_index,
                            page,
                        )),
                        _ => fail(status::INVALID_PARAMETER),
                    }
                })
            }
            abi::HVCALL_MAP_GPA_PAGES => self.map_gpa(reps, start, input),
            abi::HVCALL_UNMAP_GPA_PAGES => get::<abi::HvInputUnmapGpaPages>(input, 0).map(|i| {
                if i.unmap_flags & !abi::HV_UNMAP_GPA_LARGE_PAGE != 0 {
                    return fail(status::INVALID_PARAMETER);
                }
                let step = if i.unmap_flags & abi::HV_UNMAP_GPA_LARGE_PAGE != 0 {
                    512
                } else {
                    1
                };
                let base = i.target_gpa_base + u64::from(start) * step;
                let count = usize::from(reps - start);
                match self
                    .sim
                    .unmap_gpa_pages(i.target_partition_id, base, count, i.unmap_flags)
                {
                    Ok(()) => (status::SUCCESS, reps),
                    Err(e) => (e.error.0, start + e.done as u16),
                }
            }),
            abi::HVCALL_GET_VP_STATE | abi::HVCALL_SET_VP_STATE => {
                self.vp_state(code, varhead, input, output)
            }
            abi::HVCALL_GET_SYSTEM_PROPERTY => {
                get::<abi::HvInputGetSystemProperty>(input, 0).map(|i| {
                    if i.property_id != abi::HV_SYSTEM_PROPERTY_SCHEDULER_TYPE {
                        return fail(status::INVALID_PARAMETER);
                    }
                    match abi::write_at(output, 0, &self.sim.sched.kind.hv_type()) {
                        Some(()) => (status::SUCCESS, 0),
                        None => fail(status::INVALID_PARAMETER),
                    }
                })
            }
            abi::HVCALL_CREATE_PORT => self.create_port(input),
            abi::HVCALL_CONNECT_PORT => self.connect_port(input),
            abi::HVCALL_DISCONNECT_PORT => self.disconnect_port(input),
            abi::HVCALL_DELETE_PORT => self.delete_port(input),
            _ => {
                // Registers, properties, interrupts, intercepts, access
                // states, translation: the core's binary decoder.
                let raw = self
                    .sim
                    .raw_call(code, reps, start, &p.input, &mut p.output);
                let out = (abi::result_status(raw), abi::result_reps(raw));
                if code == abi::HVCALL_SET_VP_REGISTERS && out.0 == status::SUCCESS {
                    // Suspend registers take effect now (the scheduler).
                    if let Ok(h) = get::<abi::HvInputVpRegistersHeader>(&p.input, 0) {
                        self.sim.registers_written(h.partition_id, h.vp_index);
                    }
                    let hdr = core::mem::size_of::<abi::HvInputVpRegistersHeader>();
                    let each = core::mem::size_of::<abi::HvRegisterAssoc>();
                    for i in 0..usize::from(reps) {
                        if let Ok(a) = get::<abi::HvRegisterAssoc>(&p.input, hdr + i * each) {
                            if a.name == abi::HV_REGISTER_DISPATCH_SUSPEND && a.value[0] & 1 != 0 {
                                self.sim.sched.dispatch_suspends.fetch_add(1, Relaxed);
                            }
                        }
                    }
                }
                Ok(out)
            }
        };
        r.unwrap_or_else(|o| o)
    }

    fn create_partition(&self, input: &[u8], output: &mut [u8]) -> Result<Outcome, Outcome> {
        let i: abi::HvInputCreatePartition = get(input, 0)?;
        if i.padding != 0 || i.isolation_properties != 0 {
            return Err(fail(status::INVALID_PARAMETER));
        }
        let args = crate::tlfs::CreatePartition {
            flags: i.flags,
            disabled_features: i.disabled_processor_features,
            disabled_xsave: i.disabled_xsave,
        };
        let id = self.sim.create_partition(&args).map_err(|e| fail(e.0))?;
        abi::write_at(output, 0, &id).ok_or(fail(status::INVALID_PARAMETER))?;
        Ok((status::SUCCESS, 0))
    }

    fn deposit(&self, reps: u16, start: u16, input: &[u8]) -> Result<Outcome, Outcome> {
        let pt = get::<abi::HvInputPartition>(input, 0)?.partition_id;
        let pfns = u64s(input, 8 + usize::from(start) * 8, usize::from(reps - start))?;
        // In order: the core takes the pages before the first it refuses.
        match self.sim.deposit(pt, pfns) {
            Ok(()) => Ok((status::SUCCESS, reps)),
            Err(e) => Ok((e.error.0, start + e.done as u16)),
        }
    }

    fn withdraw(
        &self,
        reps: u16,
        start: u16,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Outcome, Outcome> {
        let i: abi::HvInputWithdrawMemory = get(input, 0)?;
        if start != 0 {
            return Err(fail(status::INVALID_HYPERCALL_INPUT));
        }
        let out = u64s_mut(output, 0, usize::from(reps))?;
        let n = self
            .sim
            .withdraw(i.partition_id, out)
            .map_err(|e| fail(e.0))?;
        if n < usize::from(reps) {
            // The pool ran out: the reps done are the pages handed back.
            return Ok((status::NO_RESOURCES, n as u16));
        }
        Ok((status::SUCCESS, reps))
    }

    fn map_vp_state_page(&self, input: &[u8], output: &mut [u8]) -> Result<Outcome, Outcome> {
        let i: abi::HvInputMapVpStatePage = get(input, 0)?;
        let page = crate::tlfs::VpPage::from_raw(i.page_type);
        let (Some(page), 0, 0) = (page, i.input_vtl, i.flags) else {
            return Err(fail(status::INVALID_PARAMETER));
        };
        let pfn = self
            .sim
            .map_vp_state_page(i.partition_id, i.vp_index, page)
            .map_err(|e| fail(e.0))?;
        abi::write_at(output, 0, &pfn).ok_or(fail(status::INVALID_PARAMETER))?;
        Ok((status::SUCCESS, 0))
    }

    /// `HVCALL_MAP_STATS_PAGE` / `HVCALL_UNMAP_STATS_PAGE` of a VP's SELF
    /// or PARENT area (other stats objects are not modelled:
    /// `INVALID_PARAMETER`).
    fn stats_page(&self, code: u16, input: &[u8], output: &mut [u8]) -> Result<Outcome, Outcome> {
        let i: abi::HvInputStatsPage = get(input, 0)?;
        let id = i.identity;
        if i.object_type != abi::HV_STATS_OBJECT_VP
            || i.padding != 0
            || id.flags != 0
            || id.reserved != 0
        {
            return Err(fail(status::INVALID_PARAMETER));
        }
        let pfn = self
            .sim
            .stats_page(id.partition_id, id.vp_index, id.stats_area_type)
            .map_err(|e| fail(e.0))?;
        if code == abi::HVCALL_MAP_STATS_PAGE {
            abi::write_at(output, 0, &pfn).ok_or(fail(status::INVALID_PARAMETER))?;
        }
        Ok((status::SUCCESS, 0))
    }

    fn map_gpa(&self, reps: u16, start: u16, input: &[u8]) -> Result<Outcome, Outcome> {
        let i: abi::HvInputMapGpaPages = get(input, 0)?;
        if i.padding != 0 || i.map_flags & !abi::HV_MAP_GPA_DEFINED != 0 {
            return Err(fail(status::INVALID_PARAMETER));
        }
        let step = if i.map_flags & abi::HV_MAP_GPA_LARGE_PAGE != 0 {
            512
        } else {
            1
        };
        let pfns = u64s(
            input,
            24 + usize::from(start) * 8,
            usize::from(reps - start),
        )?;
        let base = i.target_gpa_base + u64::from(start) * step;
        match self
            .sim
            .map_gpa_pages(i.target_partition_id, base, i.map_flags, pfns)
        {
            Ok(()) => Ok((status::SUCCESS, reps)),
            Err(e) => Ok((e.error.0, start + e.done as u16)),
        }
    }

    fn vp_state(
        &self,
        code: u16,
        varhead: u16,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Outcome, Outcome> {
        let i: abi::HvInputVpState = get(input, 0)?;
        if i.input_vtl != 0 || i.rsvd != [0; 3] || i.state_rsvd != 0 {
            return Err(fail(status::INVALID_PARAMETER));
        }
        let data = VpStateData {
            kind: i.state_type,
            xsave_flags: i.xsave_flags,
            xsave_states: i.xsave_states,
        };
        let header = crate::tlfs::VP_STATE_HEADER;
        let qwords = usize::from(varhead);
        let by_pfn = data.kind & crate::tlfs::HV_GET_SET_VP_STATE_TYPE_PFN != 0;
        let pfns = if by_pfn {
            u64s(input, header, qwords)?
        } else {
            &[]
        };
        let r = if code == abi::HVCALL_GET_VP_STATE {
            let mut inline = [0u8; VP_STATE_INLINE];
            let r = self
                .sim
                .get_vp_state(i.partition_id, i.vp_index, &data, pfns, &mut inline);
            if r.is_ok() {
                output
                    .get_mut(..VP_STATE_INLINE)
                    .ok_or(fail(status::INVALID_PARAMETER))?
                    .copy_from_slice(&inline);
            }
            r
        } else {
            let raw: &[u8] = if by_pfn {
                &[]
            } else {
                input
                    .get(header..header + qwords * 8)
                    .ok_or(fail(status::INVALID_HYPERCALL_INPUT))?
            };
            let raw = raw.get(..raw.len().min(VP_STATE_INLINE)).unwrap_or(&[]);
            self.sim
                .set_vp_state(i.partition_id, i.vp_index, &data, pfns, raw)
        };
        Ok(simple(r))
    }

    fn create_port(&self, input: &[u8]) -> Result<Outcome, Outcome> {
        let i: abi::HvInputCreatePort = get(input, 0)?;
        let id = i.port_id;
        if i.port_partition_id != abi::HV_PARTITION_ID_SELF
            || i.port_type != abi::HV_PORT_TYPE_DOORBELL
            || i.target_sint as usize >= abi::HV_SYNIC_SINT_COUNT
            || i.target_vp != abi::HV_ANY_VP
            || id == 0
            || id & !abi::HV_PORT_ID_MASK != 0
            || i.port_vtl != 0
            || i.min_connection_vtl != 0
            || i.padding != 0
            || i.port_info_padding != 0
            || i.port_info_rsvd != 0
        {
            return Err(fail(status::INVALID_PARAMETER));
        }
        // The connecting partition must exist.
        self.sim
            .partition_stats(i.connection_partition_id)
            .map_err(|e| fail(e.0))?;
        let mut ports = self.ports.lock();
        if ports.iter().any(|p| p.id == id) {
            return Err(fail(status::INVALID_PORT_ID));
        }
        if ports.len() >= MAX_PORTS {
            return Err(fail(status::INSUFFICIENT_MEMORY));
        }
        ports
            .push(
                Port {
                    id,
                    connection_pt: i.connection_partition_id,
                    connected: false,
                },
                GFP_ATOMIC,
            )
            .map_err(|_| fail(status::INSUFFICIENT_MEMORY))?;
        Ok((status::SUCCESS, 0))
    }

    fn connect_port(&self, input: &[u8]) -> Result<Outcome, Outcome> {
        let i: abi::HvInputConnectPort = get(input, 0)?;
        let len = trigger_len(i.doorbell_flags).ok_or(fail(status::INVALID_PARAMETER))?;
        if i.port_type != abi::HV_PORT_TYPE_DOORBELL
            || i.port_partition_id != abi::HV_PARTITION_ID_SELF
            || i.connection_id != i.port_id
            || i.connection_vtl != 0
            || i.rsvdz0 != 0
            || i.rsvdz1 != 0
            || i.reserved2 != 0
        {
            return Err(fail(status::INVALID_PARAMETER));
        }
        let pt = i.connection_partition_id;
        {
            let ports = self.ports.lock();
            let ok = ports
                .iter()
                .any(|p| p.id == i.port_id && p.connection_pt == pt && !p.connected);
            if !ok {
                return Err(fail(status::INVALID_PORT_ID));
            }
        }
        let any_value = i.doorbell_flags & abi::HV_DOORBELL_FLAG_TRIGGER_ANY_VALUE != 0;
        let db = Doorbell {
            gpa: i.gpa,
            len,
            datamatch: (!any_value).then_some(i.trigger_value),
        };
        self.sim
            .connect(pt, i.port_id, &db)
            .map_err(|e| fail(e.0))?;
        if let Some(p) = self.ports.lock().iter_mut().find(|p| p.id == i.port_id) {
            p.connected = true;
        }
        Ok((status::SUCCESS, 0))
    }

    fn disconnect_port(&self, input: &[u8]) -> Result<Outcome, Outcome> {
        let i: abi::HvInputDisconnectPort = get(input, 0)?;
        if i.flags & !1 != 0 {
            return Err(fail(status::INVALID_PARAMETER));
        }
        self.sim
            .disconnect(i.connection_partition_id, i.connection_id)
            .map_err(|e| fail(e.0))?;
        if let Some(p) = self
            .ports
            .lock()
            .iter_mut()
            .find(|p| p.id == i.connection_id)
        {
            p.connected = false;
        }
        Ok((status::SUCCESS, 0))
    }

    fn delete_port(&self, input: &[u8]) -> Result<Outcome, Outcome> {
        let i: abi::HvInputDeletePort = get(input, 0)?;
        if i.port_partition_id != abi::HV_PARTITION_ID_SELF || i.reserved != 0 {
            return Err(fail(status::INVALID_PARAMETER));
        }
        let mut ports = self.ports.lock();
        let idx = ports
            .iter()
            .position(|p| p.id == i.port_id)
            .ok_or(fail(status::INVALID_PORT_ID))?;
        if ports.get(idx).is_some_and(|p| p.connected) {
            // Hyper-V refuses to delete a port that still has a connection.
            return Err(fail(status::INVALID_PORT_ID));
        }
        let _ = ports.remove(idx);
        Ok((status::SUCCESS, 0))
    }
}

/// Fields of a control word.
struct Control {
    code: u16,
    fast: bool,
    varhead: u16,
    reps: u16,
    start: u16,
}

/// Splits a control word; `None` if a reserved bit is set.
fn control(c: u64) -> Option<Control> {
    const RESERVED: u64 = (0x1f << 27) | (0xf << 44) | (0xf << 60);
    if c & RESERVED != 0 {
        return None;
    }
    Some(Control {
        code: (c & 0xffff) as u16,
        fast: c & abi::HV_HYPERCALL_FAST_BIT != 0,
        varhead: ((c >> abi::HV_HYPERCALL_VARHEAD_OFFSET) & 0x3ff) as u16,
        reps: ((c >> abi::HV_HYPERCALL_REP_COMP_OFFSET) & 0xfff) as u16,
        start: ((c >> abi::HV_HYPERCALL_REP_START_OFFSET) & 0xfff) as u16,
    })
}

#[pinned_drop]
impl PinnedDrop for Emulator {
    fn drop(self: Pin<&mut Self>) {
        // No VP runner may outlive the emulator (or the module).
        self.sim.sched.stop();
    }
}

impl Seam for Emulator {
    fn hypercall(&self, control_word: u64, input: &[u8], output: &mut [u8]) -> u64 {
        let Some(c) = control(control_word) else {
            return abi::result(status::INVALID_HYPERCALL_INPUT, 0);
        };
        if c.fast || input.len() > HV_PAGE || output.len() > HV_PAGE {
            return abi::result(status::INVALID_HYPERCALL_INPUT, 0);
        }
        let mut guard = self.pages.lock();
        let p = &mut **guard;
        p.input.fill(0);
        p.output.fill(0);
        p.input[..input.len()].copy_from_slice(input);
        // An injected memory shortage lasts until the root deposits.
        if let Some(st) = self.sim.owed(c.code) {
            return abi::result(st, c.start);
        }
        let (st, done) = match self.sim.take_call_failure(c.code) {
            None => self.call(c.code, c.reps, c.start, c.varhead, p),
            Some((status, rep)) => {
                let r = match inject::call_failure_at(c.reps, c.start, rep) {
                    CallFailure::Now => (status, c.start),
                    CallFailure::NotHere => self.call(c.code, c.reps, c.start, c.varhead, p),
                    CallFailure::After(n) => match self.call(c.code, n, c.start, c.varhead, p) {
                        (status::SUCCESS, done) if done == n => (status, n),
                        other => other,
                    },
                };
                if r.0 == status {
                    self.sim.owe(c.code, status);
                }
                r
            }
        };
        let n = output.len();
        output.copy_from_slice(&p.output[..n]);
        if st == status::SUCCESS {
            self.sim.calls.add(c.code);
        }
        abi::result(st, done)
    }

    fn dispatch(&self, control_word: u64, input: &[u8], output: &mut [u8]) -> u64 {
        let bad = abi::result(status::INVALID_HYPERCALL_INPUT, 0);
        let Some(c) = control(control_word) else {
            return bad;
        };
        if c.code != abi::HVCALL_DISPATCH_VP || c.fast || c.reps != 0 || c.varhead != 0 {
            return bad;
        }
        if !cpu::dispatch_context_ok() {
            pr_err!("emulator: DISPATCH_VP needs preemption disabled and interrupts enabled\n");
            return abi::result(status::OPERATION_DENIED, 0);
        }
        if let Some((status, _)) = self.sim.take_call_failure(c.code) {
            return abi::result(status, 0);
        }
        let Some(i) = abi::read_at::<abi::HvInputDispatchVp>(input, 0) else {
            return bad;
        };
        if i.time_slice != 0 || i.spec_ctrl != 0 {
            return abi::result(status::INVALID_PARAMETER, 0);
        }
        match self.sim.dispatch_vp(i.partition_id, i.vp_index, i.flags) {
            Ok((state, event)) => {
                let o = abi::HvOutputDispatchVp {
                    dispatch_state: state,
                    dispatch_event: event,
                };
                if abi::write_at(output, 0, &o).is_none() {
                    return bad;
                }
                self.sim.calls.add(c.code);
                abi::result(status::SUCCESS, 0)
            }
            Err(e) => abi::result(e.0, 0),
        }
    }

    fn fast_hypercall8(&self, code: u16, input: u64) -> u64 {
        if let Some((status, _)) = self.sim.take_call_failure(code) {
            return abi::result(status, 0);
        }
        let r = self.fast_call(code, input);
        if abi::result_status(r) == status::SUCCESS {
            self.sim.calls.add(code);
        }
        r
    }

    fn read_msr(&self, msr: u32) -> u64 {
        self.sim.synic.read_msr(msr)
    }

    fn write_msr(&self, msr: u32, value: u64) {
        self.sim.synic.write_msr(msr, value)
    }

    fn set_handler(&self, handler: Option<SynicHandler>) {
        self.sim.synic.set_handler(handler)
    }

    fn identity(&self) -> Identity {
        Identity {
            root: true,
            partition_id: abi::HV_PARTITION_ID_SELF,
            kdump: false,
            vmbus: false,
            // The newest build upstream 7.3 validated: the emulator models
            // what that driver expects, not one measured Hyper-V release.
            build: *crate::tlfs::seam::VALIDATED_BUILDS.end(),
            // HYPERVISOR_CALLBACK_VECTOR on x86.
            vector: 0xf3,
            auto_eoi: false,
        }
    }
}
