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
use mshv_mini_vmm::exit::{decode, Exit};
use mshv_mini_vmm::regs::get_reg64;

/// COM1: the guest's characters go to stdout, one line at a time.
pub const PORT_SERIAL: u16 = 0x3f8;
/// COM1's line status register: "transmitter empty" for guests that poll it.
const PORT_SERIAL_LSR: u16 = 0x3fd;
const LSR_TX_EMPTY: u32 = 0x60;
/// demo32: end of a write phase (EAX = the pass); the VMM punches holes.
pub const PORT_SYNC: u16 = 0x510;
/// demo32: the result (0xFFFFFFFF = OK, else the failing GPA).
pub const PORT_RESULT: u16 = 0x511;
/// demo32: end of a verify phase (EAX = the pass); a timing mark.
pub const PORT_VERIFIED: u16 = 0x512;
pub const RESULT_OK: u32 = 0xffff_ffff;

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
        let exit = decode(&msg);
        match exit {
            Exit::Io {
                port, write, rax, ..
            } => {
                shared.io_exits.fetch_add(1, Ordering::Relaxed);
                let value = match (port, write) {
                    (PORT_SERIAL, true) => {
                        shared.serial(vp, rax as u8);
                        None
                    }
                    (PORT_SERIAL_LSR, false) => Some(LSR_TX_EMPTY),
                    (PORT_SYNC | PORT_VERIFIED, true) => {
                        sync(vp, port, rax as u32)?;
                        None
                    }
                    (PORT_RESULT, true) => {
                        result = Some(rax as u32);
                        None
                    }
                    // Nothing else is there: writes are dropped, reads
                    // see all ones (a floating bus).
                    (_, true) => None,
                    (_, false) => Some(u32::MAX),
                };
                let regs = exit.io_completion(value).expect("an I/O exit");
                vcpu.set_reg(&regs)
                    .map_err(|e| format!("VP {vp}: complete port I/O: {e}"))?;
            }
            Exit::Halt { .. } => return Ok(VpEnd { result }),
            Exit::Mem { gpa, rip, .. } => {
                let ty = exit.message_type();
                return Err(format!(
                    "VP {vp}: the guest accessed GPA {gpa:#x} at RIP {rip:#x}, which no region backs (message {ty:#x}); this VMM emulates no MMIO"
                ));
            }
            _ => {
                let other = exit.message_type();
                let rip = get_reg64(vcpu, hv_register_name_HV_X64_REGISTER_RIP).unwrap_or(0);
                return Err(format!(
                    "VP {vp}: unexpected message type {other:#x} (RIP {rip:#x})"
                ));
            }
        }
    }
}
