// SPDX-License-Identifier: GPL-2.0
//
// What MSHV_RUN_VP returns, decoded: port and memory intercepts, halts and
// unrecoverable exceptions; and how a VMM completes a port access (RIP +=
// the instruction length and, for an IN, the value merged into RAX).

use std::fmt;

use mshv_bindings::*;

use crate::regs::reg64;

/// `intercept_access_type` of memory and port intercepts.
pub const ACCESS_READ: u8 = 0;
pub const ACCESS_WRITE: u8 = 1;
pub const ACCESS_EXECUTE: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// HVMSG_UNMAPPED_GPA
    Unmapped,
    /// HVMSG_GPA_INTERCEPT
    Intercept,
}

/// A decoded `hv_message` from MSHV_RUN_VP.
#[derive(Clone, Debug)]
pub enum Exit {
    /// HVMSG_X64_IO_PORT_INTERCEPT
    Io {
        vp: u32,
        port: u16,
        write: bool,
        size: u8,
        rax: u64,
        rip: u64,
        len: u8,
    },
    /// HVMSG_X64_HALT
    Halt { rip: u64 },
    /// HVMSG_UNMAPPED_GPA / HVMSG_GPA_INTERCEPT
    Mem {
        kind: MemKind,
        vp: u32,
        access: u8,
        gpa: u64,
        rip: u64,
        insn: Vec<u8>,
    },
    /// HVMSG_UNRECOVERABLE_EXCEPTION
    Unrecoverable { rip: u64 },
    /// Anything else.
    Other { msg_type: u32 },
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Io {
                vp,
                port,
                write,
                size,
                rax,
                rip,
                len,
            } => write!(
                f,
                "HVMSG_X64_IO_PORT_INTERCEPT {} port {port:#x} size {size} rax {rax:#x} rip {rip:#x} len {len} vp {vp}",
                if *write { "OUT" } else { "IN" }
            ),
            Exit::Halt { rip } => write!(f, "HVMSG_X64_HALT rip {rip:#x}"),
            Exit::Mem {
                kind,
                vp,
                access,
                gpa,
                rip,
                insn,
            } => write!(
                f,
                "{} access {access} gpa {gpa:#x} rip {rip:#x} vp {vp} insn {insn:02x?}",
                match kind {
                    MemKind::Unmapped => "HVMSG_UNMAPPED_GPA",
                    MemKind::Intercept => "HVMSG_GPA_INTERCEPT",
                }
            ),
            Exit::Unrecoverable { rip } => {
                write!(f, "HVMSG_UNRECOVERABLE_EXCEPTION rip {rip:#x}")
            }
            Exit::Other { msg_type } => write!(f, "message type {msg_type:#x}"),
        }
    }
}

fn intercept_header(msg: &hv_message) -> hv_x64_intercept_message_header {
    // SAFETY: every x64 intercept payload starts with this header; the
    // payload is unaligned, so read it unaligned.
    unsafe { std::ptr::read_unaligned(std::ptr::addr_of!(msg.u.payload).cast()) }
}

const MSG_IO_PORT: u32 = hv_message_type_HVMSG_X64_IO_PORT_INTERCEPT;
const MSG_HALT: u32 = hv_message_type_HVMSG_X64_HALT;
const MSG_UNMAPPED_GPA: u32 = hv_message_type_HVMSG_UNMAPPED_GPA;
const MSG_GPA_INTERCEPT: u32 = hv_message_type_HVMSG_GPA_INTERCEPT;
const MSG_UNRECOVERABLE: u32 = hv_message_type_HVMSG_UNRECOVERABLE_EXCEPTION;

pub fn decode(msg: &hv_message) -> Exit {
    let msg_type = msg.header.message_type;
    match msg_type {
        MSG_IO_PORT => {
            let info = msg.to_ioport_info().unwrap();
            let hdr = info.header;
            let access = info.access_info;
            // SAFETY: the bitfield view of the access info byte.
            let size = unsafe { access.__bindgen_anon_1 }.access_size();
            Exit::Io {
                vp: hdr.vp_index,
                port: info.port_number,
                write: hdr.intercept_access_type == ACCESS_WRITE,
                size,
                rax: info.rax,
                rip: hdr.rip,
                len: hdr.instruction_length(),
            }
        }
        MSG_HALT => Exit::Halt {
            rip: intercept_header(msg).rip,
        },
        MSG_UNMAPPED_GPA | MSG_GPA_INTERCEPT => {
            let info = msg.to_memory_info().unwrap();
            let hdr = info.header;
            let count = (info.instruction_byte_count as usize).min(16);
            let bytes = info.instruction_bytes;
            Exit::Mem {
                kind: if msg_type == MSG_UNMAPPED_GPA {
                    MemKind::Unmapped
                } else {
                    MemKind::Intercept
                },
                vp: hdr.vp_index,
                access: hdr.intercept_access_type,
                gpa: info.guest_physical_address,
                rip: hdr.rip,
                insn: bytes[..count].to_vec(),
            }
        }
        MSG_UNRECOVERABLE => Exit::Unrecoverable {
            rip: intercept_header(msg).rip,
        },
        other => Exit::Other { msg_type: other },
    }
}

impl Exit {
    /// The `hv_message_type` it was decoded from.
    pub fn message_type(&self) -> u32 {
        match self {
            Exit::Io { .. } => MSG_IO_PORT,
            Exit::Halt { .. } => MSG_HALT,
            Exit::Mem {
                kind: MemKind::Unmapped,
                ..
            } => MSG_UNMAPPED_GPA,
            Exit::Mem {
                kind: MemKind::Intercept,
                ..
            } => MSG_GPA_INTERCEPT,
            Exit::Unrecoverable { .. } => MSG_UNRECOVERABLE,
            Exit::Other { msg_type } => *msg_type,
        }
    }

    /// The registers that complete a port access as a VMM does: RIP +=
    /// instruction length and, for an IN answered with `in_value`, RAX =
    /// the value merged into the low `size` bytes (all of EAX, zero
    /// extended, for a 4-byte access). None for any other exit.
    pub fn io_completion(&self, in_value: Option<u32>) -> Option<Vec<hv_register_assoc>> {
        let Exit::Io {
            rip,
            len,
            rax,
            size,
            write,
            ..
        } = *self
        else {
            return None;
        };
        let next = rip + len as u64;
        let v = match in_value {
            Some(v) if !write => v as u64,
            _ => return Some(vec![reg64(hv_register_name_HV_X64_REGISTER_RIP, next)]),
        };
        let rax = match size {
            1 => (rax & !0xff) | (v & 0xff),
            2 => (rax & !0xffff) | (v & 0xffff),
            _ => v,
        };
        Some(vec![
            reg64(hv_register_name_HV_X64_REGISTER_RAX, rax),
            reg64(hv_register_name_HV_X64_REGISTER_RIP, next),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(write: bool, size: u8, rax: u64) -> Exit {
        Exit::Io {
            vp: 0,
            port: 0x3f8,
            write,
            size,
            rax,
            rip: 0x1000,
            len: 2,
        }
    }

    /// (name, value) of each register the completion sets.
    fn values(regs: &[hv_register_assoc]) -> Vec<(u32, u64)> {
        // SAFETY: every register here was built by `reg64`.
        regs.iter()
            .map(|r| (r.name, unsafe { r.value.reg64 }))
            .collect()
    }

    const RIP: u32 = hv_register_name_HV_X64_REGISTER_RIP;
    const RAX: u32 = hv_register_name_HV_X64_REGISTER_RAX;

    #[test]
    fn io_completion_merges_in_values() {
        let rax = 0x1122_3344_5566_7788;
        let c = |size| {
            values(
                &io(false, size, rax)
                    .io_completion(Some(0xaabb_ccdd))
                    .unwrap(),
            )
        };
        assert_eq!(c(1), [(RAX, 0x1122_3344_5566_77dd), (RIP, 0x1002)]);
        assert_eq!(c(2), [(RAX, 0x1122_3344_5566_ccdd), (RIP, 0x1002)]);
        assert_eq!(c(4), [(RAX, 0xaabb_ccdd), (RIP, 0x1002)]);
    }

    #[test]
    fn io_completion_of_out_and_unanswered_in_moves_rip_only() {
        let out = io(true, 1, 0x41).io_completion(Some(7)).unwrap();
        assert_eq!(values(&out), [(RIP, 0x1002)]);
        let unanswered = io(false, 4, 0).io_completion(None).unwrap();
        assert_eq!(values(&unanswered), [(RIP, 0x1002)]);
        assert!(Exit::Halt { rip: 0 }.io_completion(Some(1)).is_none());
    }

    #[test]
    fn decode_halt_and_other_messages() {
        let mut msg = hv_message::default();
        msg.header.message_type = MSG_HALT;
        let hdr = hv_x64_intercept_message_header {
            rip: 0x1234,
            ..Default::default()
        };
        // SAFETY: the header fits in the payload; written unaligned as
        // `intercept_header` reads it.
        unsafe {
            std::ptr::write_unaligned(std::ptr::addr_of_mut!(msg.u.payload).cast(), hdr);
        }
        let exit = decode(&msg);
        assert!(matches!(exit, Exit::Halt { rip: 0x1234 }), "{exit}");
        assert_eq!(exit.message_type(), MSG_HALT);
        msg.header.message_type = hv_message_type_HVMSG_TIMER_EXPIRED;
        let exit = decode(&msg);
        assert!(matches!(exit, Exit::Other { .. }), "{exit}");
        assert_eq!(exit.message_type(), hv_message_type_HVMSG_TIMER_EXPIRED);
    }
}
