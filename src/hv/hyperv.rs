// SPDX-License-Identifier: GPL-2.0

//! The real backend: hypercalls on an x86_64 Hyper-V root partition.
//!
//! Input encoding is pure (the `encode_*` functions, tested in KUnit because
//! nothing here can run without Azure hardware); `sys::hyperv` issues the
//! call with the per-CPU hypercall pages and interrupts off.
//!
//! Not implemented yet: running VPs. That needs the SynIC intercept-message
//! path (SINT0 ISR, `HVCALL_DISPATCH_VP` or the suspend-register dance);
//! `run_vp` returns `EOPNOTSUPP` until then, so on a real root this backend
//! can create partitions and map memory but not run guests. Doorbells
//! (ioeventfd) are not implemented either: they need `HVCALL_CREATE_PORT`,
//! `HVCALL_CONNECT_PORT` and the SINT5 event-ring handler that would call
//! [`Notify::doorbell`]; `connect_doorbell` fails with
//! `HV_STATUS_OPERATION_DENIED` (EACCES) until then, and `set_notify` only
//! records nothing.

use super::{
    abi, status, CreatePartition, Doorbell, HvError, HvResult, Hypervisor, Notify, RegValue,
    RepError, RepResult, RunExit, VirtualInterrupt, VpPage, VpStateData, HV_PAGE, VP_STATE_INLINE,
};
use crate::sys::ffi;
use kernel::{
    ffi::c_void,
    new_spinlock,
    prelude::*,
    sync::{Arc, SpinLock},
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
    fn u16(&mut self, v: u16) -> &mut Self {
        self.put(&v.to_le_bytes())
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.put(&[v])
    }
    /// Bytes written; `None` if they did not fit the page.
    fn done(&self) -> Option<usize> {
        (self.len <= self.buf.len()).then_some(self.len)
    }
}

/// `hv_input_create_partition` (56 bytes).
fn encode_create_partition(buf: &mut [u8], a: &CreatePartition) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.u64(a.flags)
        .u64(0) // proximity_domain_info: any node
        .u32(abi::HV_COMPATIBILITY_21_H2)
        .u32(0)
        .u64(a.disabled_features[0])
        .u64(a.disabled_features[1])
        .u64(a.disabled_xsave)
        .u64(0); // isolation properties: none
    e.done()
}

/// `hv_input_map_gpa_pages` plus its pfn list.
fn encode_map_gpa(buf: &mut [u8], pt: u64, gfn: u64, flags: u32, pfns: &[u64]) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.u64(pt).u64(gfn).u32(flags).u32(0);
    for &p in pfns {
        e.u64(p);
    }
    e.done()
}

/// `hv_input_unmap_gpa_pages`.
fn encode_unmap_gpa(buf: &mut [u8], pt: u64, gfn: u64, flags: u32) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.u64(pt).u64(gfn).u32(flags).u32(0);
    e.done()
}

/// `hv_deposit_memory` header plus pfns.
fn encode_deposit(buf: &mut [u8], pt: u64, pfns: &[u64]) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.u64(pt);
    for &p in pfns {
        e.u64(p);
    }
    e.done()
}

/// `hv_create_vp` (40 bytes).
fn encode_create_vp(buf: &mut [u8], pt: u64, vp: u32) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.u64(pt).u32(vp).put(&[0; 3]).u8(0).u64(0).u64(0).u64(0);
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
    e.u64(pt).u32(vp).u16(page as u16).u8(0).u8(0);
    if map {
        e.u64(0);
    }
    e.done()
}

/// `hv_input_assert_virtual_interrupt` (32 bytes): partition id, control
/// (`interrupt_type` in bits 0-31, `level_triggered` bit 32,
/// `logical_dest_mode` bit 33), destination, vector, target VTL 0.
fn encode_assert_interrupt(buf: &mut [u8], pt: u64, irq: &VirtualInterrupt) -> Option<usize> {
    let control =
        u64::from(irq.kind) | (u64::from(irq.level) << 32) | (u64::from(irq.logical) << 33);
    let mut e = Enc::new(buf);
    e.u64(pt)
        .u64(control)
        .u64(irq.dest)
        .u32(irq.vector)
        .u8(0)
        .u8(0)
        .u16(0);
    e.done()
}

/// `hv_input_get_vp_registers` plus names.
fn encode_get_regs(buf: &mut [u8], pt: u64, vp: u32, names: &[u32]) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.u64(pt).u32(vp).u8(0).u8(0).u16(0);
    for &n in names {
        e.u32(n);
    }
    e.done()
}

/// `hv_input_set_vp_registers` plus `hv_register_assoc`s.
fn encode_set_regs(buf: &mut [u8], pt: u64, vp: u32, regs: &[(u32, RegValue)]) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.u64(pt).u32(vp).u8(0).u8(0).u16(0);
    for (n, v) in regs {
        e.u32(*n).u32(0).u64(0).u64(v[0]).u64(v[1]);
    }
    e.done()
}

/// `hv_input_get_gpa_pages_access_state` (24 bytes).
fn encode_gpa_access_states(buf: &mut [u8], pt: u64, flags: u64, gfn: u64) -> Option<usize> {
    let mut e = Enc::new(buf);
    e.u64(pt).u64(flags).u64(gfn);
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
    e.u64(pt)
        .u32(vp)
        .u8(0) // input_vtl: current
        .put(&[0; 3])
        .u32(data.kind)
        .u32(0)
        .u64(data.xsave_flags)
        .u64(data.xsave_states);
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

/// The Hyper-V backend.
#[pin_data]
pub(crate) struct HyperV {
    /// Input/output staging. A spinlock: hypercalls run under region locks
    /// and in atomic context. It serializes this backend's hypercalls across
    /// CPUs (the per-CPU pages are filled from it), which is acceptable until
    /// the encoders write the per-CPU page directly.
    #[pin]
    scratch: SpinLock<KBox<Scratch>>,
}

impl HyperV {
    /// The backend if Linux runs as a Hyper-V root partition.
    pub(crate) fn new() -> Result<Arc<Self>> {
        // SAFETY: reads a boot-time flag.
        if !unsafe { ffi::mshv_rs_hv_is_root() } {
            return Err(ENODEV);
        }
        let scratch = KBox::new(
            Scratch {
                input: [0; HV_PAGE],
                output: [0; HV_PAGE],
            },
            GFP_KERNEL,
        )?;
        Arc::pin_init(
            pin_init!(Self { scratch <- new_spinlock!(scratch) }),
            GFP_KERNEL,
        )
    }

    /// Whether this kernel runs as a Hyper-V root partition.
    pub(crate) fn is_root() -> bool {
        // SAFETY: reads a boot-time flag.
        unsafe { ffi::mshv_rs_hv_is_root() }
    }

    /// One call: encode with `enc`, issue `control`, read `out_len` bytes.
    fn call(
        &self,
        control: u64,
        out_len: usize,
        enc: impl FnOnce(&mut [u8]) -> Option<usize>,
        out: impl FnOnce(&[u8]),
    ) -> u64 {
        let mut s = self.scratch.lock();
        let s = &mut **s;
        let Some(len) = enc(&mut s.input) else {
            return abi::result(crate::hv::status::INVALID_PARAMETER, 0);
        };
        // SAFETY: `input` holds `len <= 4096` bytes and `output` 4096 bytes,
        // both valid for the call.
        let r = unsafe {
            ffi::mshv_rs_hv_hypercall(
                control,
                s.input.as_ptr().cast::<c_void>(),
                len,
                s.output.as_mut_ptr().cast::<c_void>(),
                out_len,
            )
        };
        out(&s.output[..out_len.min(HV_PAGE)]);
        r
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
                    error: HvError(crate::hv::status::OPERATION_FAILED),
                });
            }
            done = completed;
        }
        Ok(())
    }
}

impl HyperV {
    /// `HVCALL_GET_VP_STATE` (with `out`) or `HVCALL_SET_VP_STATE`.
    #[allow(clippy::too_many_arguments)]
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
        let invalid = HvError(crate::hv::status::INVALID_PARAMETER);
        if pfns.len() > crate::hv::VP_STATE_BATCH
            || raw.len() > HV_PAGE - crate::hv::VP_STATE_HEADER
        {
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
}

fn status_of(r: u64) -> HvResult {
    match abi::result_status(r) {
        0 => Ok(()),
        s => Err(HvError(s)),
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
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
        Ok(id)
    }
    fn initialize_partition(&self, pt: u64) -> HvResult {
        self.simple(
            abi::HVCALL_INITIALIZE_PARTITION,
            0,
            |b| Enc::new(b).u64(pt).done(),
            |_| {},
        )
    }
    fn finalize_partition(&self, pt: u64) -> HvResult {
        self.simple(
            abi::HVCALL_FINALIZE_PARTITION,
            0,
            |b| Enc::new(b).u64(pt).done(),
            |_| {},
        )
    }
    fn delete_partition(&self, pt: u64) -> HvResult {
        self.simple(
            abi::HVCALL_DELETE_PARTITION,
            0,
            |b| Enc::new(b).u64(pt).done(),
            |_| {},
        )
    }
    fn deposit(&self, pt: u64, pfns: &[u64]) -> HvResult {
        self.rep(
            abi::HVCALL_DEPOSIT_MEMORY,
            pfns.len(),
            0,
            |b| encode_deposit(b, pt, pfns),
            |_| {},
        )
        .map_err(|e| e.error)
    }
    fn withdraw(&self, pt: u64, out: &mut [u64]) -> HvResult<usize> {
        let n = out.len().min(512);
        let r = self.call(
            abi::control(abi::HVCALL_WITHDRAW_MEMORY, n as u16, 0, 0, false),
            n * 8,
            |b| Enc::new(b).u64(pt).u64(0).done(),
            |o| {
                for (i, v) in out.iter_mut().take(n).enumerate() {
                    *v = u64_at(o, i * 8);
                }
            },
        );
        match abi::result_status(r) {
            0 => Ok(n),
            crate::hv::status::NO_RESOURCES => Ok(abi::result_reps(r) as usize),
            s => Err(HvError(s)),
        }
    }
    fn create_vp(&self, pt: u64, vp: u32) -> HvResult {
        self.simple(
            abi::HVCALL_CREATE_VP,
            0,
            |b| encode_create_vp(b, pt, vp),
            |_| {},
        )
    }
    fn delete_vp(&self, pt: u64, vp: u32) -> HvResult {
        self.simple(
            abi::HVCALL_DELETE_VP,
            0,
            |b| Enc::new(b).u64(pt).u32(vp).u32(0).done(),
            |_| {},
        )
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
    fn set_notify(&self, _pt: u64, _notify: Option<Arc<dyn Notify>>) -> HvResult {
        // Nothing delivers notifications yet (no SynIC handler).
        Ok(())
    }
    fn connect_doorbell(&self, _pt: u64, _port: u32, _db: &Doorbell) -> HvResult {
        kernel::pr_warn_once!("ioeventfd on Hyper-V is not implemented yet (doorbell ports)\n");
        Err(HvError(status::OPERATION_DENIED))
    }
    fn disconnect_doorbell(&self, _pt: u64, _port: u32) -> HvResult {
        Err(HvError(status::OPERATION_DENIED))
    }
    fn get_gpa_access_states(&self, pt: u64, gfn: u64, flags: u64, out: &mut [u8]) -> RepResult {
        if out.len() > crate::hv::GPA_ACCESS_STATES_BATCH {
            return Err(RepError {
                done: 0,
                error: HvError(crate::hv::status::INVALID_PARAMETER),
            });
        }
        let n = out.len();
        self.rep(
            abi::HVCALL_GET_GPA_PAGES_ACCESS_STATES,
            n,
            n,
            |b| encode_gpa_access_states(b, pt, flags, gfn),
            |o| out.copy_from_slice(&o[..n]),
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
    fn run_vp(&self, _pt: u64, _vp: u32) -> Result<RunExit> {
        kernel::pr_warn_once!("RUN_VP on Hyper-V is not implemented yet (SynIC intercept path)\n");
        Err(EOPNOTSUPP)
    }
    fn passthrough(
        &self,
        code: u16,
        reps: u16,
        rep_start: u16,
        input: &[u8; HV_PAGE],
        output: &mut [u8; HV_PAGE],
    ) -> u64 {
        self.call(
            abi::control(code, reps, rep_start, 0, false),
            HV_PAGE,
            |b| {
                b.copy_from_slice(input);
                Some(HV_PAGE)
            },
            |o| output.copy_from_slice(o),
        )
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
}
