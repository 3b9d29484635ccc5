// SPDX-License-Identifier: GPL-2.0
//
// The VP loop: MSHV_RUN_VP until the guest halts, serving its port I/O. An
// I/O intercept is completed as every VMM does it: RIP += the instruction
// length (and, for an IN, the value merged into RAX).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use mshv_bindings::*;
use mshv_ioctls::VcpuFd;

use crate::vm::reg64;

/// COM1: the guest's characters go to stdout, one line at a time.
pub const PORT_SERIAL: u16 = 0x3f8;
/// COM1's line status register: "transmitter empty" for guests that poll it.
const PORT_SERIAL_LSR: u16 = 0x3fd;
const LSR_TX_EMPTY: u64 = 0x60;
/// demo32: end of a write phase (EAX = the pass); the VMM punches holes.
pub const PORT_SYNC: u16 = 0x510;
/// demo32: the result (0xFFFFFFFF = OK, else the failing GPA).
pub const PORT_RESULT: u16 = 0x511;
/// demo32: end of a verify phase (EAX = the pass); a timing mark.
pub const PORT_VERIFIED: u16 = 0x512;
pub const RESULT_OK: u32 = 0xffff_ffff;

const MSG_IO_PORT: u32 = hv_message_type_HVMSG_X64_IO_PORT_INTERCEPT;
const MSG_HALT: u32 = hv_message_type_HVMSG_X64_HALT;
const MSG_UNMAPPED_GPA: u32 = hv_message_type_HVMSG_UNMAPPED_GPA;
const MSG_GPA_INTERCEPT: u32 = hv_message_type_HVMSG_GPA_INTERCEPT;

/// What the VP threads share with the rest of the VMM.
pub struct Shared {
    /// Serial output: one partial line per VP, printed when complete.
    lines: Mutex<Vec<Vec<u8>>>,
    /// Every RUN_VP that returned a message.
    pub exits: AtomicU64,
    /// Port I/O intercepts.
    pub io_exits: AtomicU64,
}

impl Shared {
    pub fn new(vps: usize) -> Shared {
        Shared {
            lines: Mutex::new(vec![Vec::new(); vps]),
            exits: AtomicU64::new(0),
            io_exits: AtomicU64::new(0),
        }
    }

    fn serial(&self, vp: usize, byte: u8) {
        let mut lines = self.lines.lock().unwrap();
        let line = &mut lines[vp];
        if byte == b'\n' {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(b"guest: ");
            let _ = out.write_all(line);
            let _ = out.write_all(b"\n");
            let _ = out.flush();
            line.clear();
        } else if byte != b'\r' {
            line.push(byte);
        }
    }

    /// Prints what is left of unterminated lines.
    pub fn flush(&self) {
        let mut lines = self.lines.lock().unwrap();
        for line in lines.iter_mut().filter(|l| !l.is_empty()) {
            println!("guest: {}", String::from_utf8_lossy(line));
            line.clear();
        }
    }
}

/// How a VP's run ended.
pub struct VpEnd {
    /// What the guest wrote to PORT_RESULT, if it did.
    pub result: Option<u32>,
}

/// Runs VP `vp` until it halts. `sync(vp, port, value)` is called (on this
/// thread, with the VP stopped) when the guest writes PORT_SYNC (the end of
/// a write phase) or PORT_VERIFIED (the end of a verify phase).
pub fn run_vp(
    shared: &Shared,
    vp: usize,
    vcpu: &VcpuFd,
    sync: &dyn Fn(usize, u16, u32) -> Result<(), String>,
) -> Result<VpEnd, String> {
    let mut result = None;
    loop {
        let msg = match vcpu.run() {
            Ok(m) => m,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => return Err(format!("VP {vp}: MSHV_RUN_VP: {e}")),
        };
        shared.exits.fetch_add(1, Ordering::Relaxed);
        match msg.header.message_type {
            MSG_IO_PORT => {
                shared.io_exits.fetch_add(1, Ordering::Relaxed);
                let io = msg
                    .to_ioport_info()
                    .map_err(|e| format!("VP {vp}: I/O message: {e:?}"))?;
                let write = io.header.intercept_access_type == 1;
                let next = io.header.rip + io.header.instruction_length() as u64;
                let value = match (io.port_number, write) {
                    (PORT_SERIAL, true) => {
                        shared.serial(vp, io.rax as u8);
                        None
                    }
                    (PORT_SERIAL_LSR, false) => Some(LSR_TX_EMPTY),
                    (PORT_SYNC | PORT_VERIFIED, true) => {
                        sync(vp, io.port_number, io.rax as u32)?;
                        None
                    }
                    (PORT_RESULT, true) => {
                        result = Some(io.rax as u32);
                        None
                    }
                    // Nothing else is there: writes are dropped, reads
                    // see all ones (a floating bus).
                    (_, true) => None,
                    (_, false) => Some(u64::MAX),
                };
                let mut regs = vec![reg64(hv_register_name_HV_X64_REGISTER_RIP, next)];
                if let Some(v) = value {
                    // SAFETY: the bitfield view of the access info byte.
                    let size = unsafe { io.access_info.__bindgen_anon_1 }.access_size();
                    let mask = match size {
                        1 => 0xff,
                        2 => 0xffff,
                        _ => 0xffff_ffff,
                    };
                    let rax = (io.rax & !mask) | (v & mask);
                    regs.push(reg64(hv_register_name_HV_X64_REGISTER_RAX, rax));
                }
                vcpu.set_reg(&regs)
                    .map_err(|e| format!("VP {vp}: complete port I/O: {e}"))?;
            }
            MSG_HALT => return Ok(VpEnd { result }),
            MSG_UNMAPPED_GPA | MSG_GPA_INTERCEPT => {
                let m = msg
                    .to_memory_info()
                    .map_err(|e| format!("VP {vp}: memory message: {e:?}"))?;
                let (gpa, rip, ty) = (
                    m.guest_physical_address,
                    m.header.rip,
                    msg.header.message_type,
                );
                return Err(format!(
                    "VP {vp}: the guest accessed GPA {gpa:#x} at RIP {rip:#x}, which no region backs (message {ty:#x}); this VMM emulates no MMIO"
                ));
            }
            other => {
                let rip = regs_rip(vcpu).unwrap_or(0);
                return Err(format!(
                    "VP {vp}: unexpected message type {other:#x} (RIP {rip:#x})"
                ));
            }
        }
    }
}

fn regs_rip(vcpu: &VcpuFd) -> Option<u64> {
    let mut r = [reg64(hv_register_name_HV_X64_REGISTER_RIP, 0)];
    vcpu.get_reg(&mut r).ok()?;
    // SAFETY: RIP is returned as a plain 64-bit value.
    Some(unsafe { r[0].value.reg64 })
}
