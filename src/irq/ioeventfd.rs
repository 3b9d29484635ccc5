// SPDX-License-Identifier: GPL-2.0

//! `MSHV_IOEVENTFD`: eventfds signalled by guest MMIO writes, through
//! hypervisor doorbells as upstream does (`HVCALL_CREATE_PORT` +
//! `HVCALL_CONNECT_PORT`; see [`crate::hv::Doorbell`]): a matching write is
//! completed by the hypervisor and never reaches the VMM.
//!
//! Validation and errors are upstream's: unknown flags or non-zero `rsvd`
//! EINVAL, PIO EOPNOTSUPP, a length other than 0/1/2/4/8 or a range that
//! wraps EINVAL, an address/length already registered with an overlapping
//! value set EEXIST, a deassign that matches nothing ENOENT (it must repeat
//! the address, length and datamatch form of the assign). One more than
//! [`MAX_IOEVENTFDS`] is ENOSPC (upstream has no limit).

use crate::{hv::Doorbell, sys::eventfd::EventFd, uapi::MshvUserIoeventfd};
use kernel::prelude::*;

/// At most this many ioeventfds per partition (KVM's `NR_IOBUS_DEVS`;
/// upstream mshv has no limit). An ioeventfd, unlike an irqfd, does not
/// hook its eventfd's wait queue and so outlives the eventfd's last fd,
/// after which it can no longer be deassigned (that needs the fd): without
/// a limit `eventfd(); MSHV_IOEVENTFD; close()` grows the list, and the
/// O(n) collision check and doorbell lookup, without bound.
pub(crate) const MAX_IOEVENTFDS: usize = 1000;

/// A registered ioeventfd (counted in `live_objects` as `ioeventfds`).
pub(crate) struct Entry {
    /// The doorbell port it is connected as.
    pub(crate) port: u32,
    /// Address, length and value.
    pub(crate) doorbell: Doorbell,
    /// What a ring signals.
    pub(crate) eventfd: EventFd,
}

impl Entry {
    /// An entry for `eventfd` connected as `port`.
    pub(crate) fn new(port: u32, doorbell: Doorbell, eventfd: EventFd) -> Self {
        crate::stats::live_add(crate::stats::Live::Ioeventfds, 1);
        Self {
            port,
            doorbell,
            eventfd,
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        crate::stats::live_add(crate::stats::Live::Ioeventfds, -1);
    }
}

/// Checks the length and range of `args` (flags were checked by the caller).
pub(crate) fn check_range(args: &MshvUserIoeventfd) -> Result {
    if !matches!(args.len, 0 | 1 | 2 | 4 | 8) {
        return Err(EINVAL);
    }
    if args.addr.checked_add(u64::from(args.len)).is_none() {
        return Err(EINVAL);
    }
    Ok(())
}

/// Whether two registrations collide: same address and length, and either
/// is a wildcard or their values are equal.
pub(crate) fn collides(a: &Doorbell, b: &Doorbell) -> bool {
    a.gpa == b.gpa
        && a.len == b.len
        && match (a.datamatch, b.datamatch) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_ioeventfd)]
mod tests {
    use super::*;

    fn db(gpa: u64, len: u32, datamatch: Option<u64>) -> Doorbell {
        Doorbell {
            gpa,
            len,
            datamatch,
        }
    }

    fn args(addr: u64, len: u32) -> MshvUserIoeventfd {
        MshvUserIoeventfd {
            addr,
            len,
            ..Default::default()
        }
    }

    #[test]
    fn ranges() {
        for len in [0, 1, 2, 4, 8] {
            assert_eq!(check_range(&args(0x1000, len)), Ok(()));
        }
        for len in [3, 5, 16] {
            assert_eq!(check_range(&args(0x1000, len)), Err(EINVAL));
        }
        // Upstream: `addr + len < addr` (wrapping) is refused; ending at
        // u64::MAX is fine.
        assert_eq!(check_range(&args(u64::MAX - 4, 4)), Ok(()));
        assert_eq!(check_range(&args(u64::MAX - 3, 4)), Err(EINVAL));
        assert_eq!(check_range(&args(u64::MAX, 0)), Ok(()));
    }

    #[test]
    fn collisions() {
        assert!(collides(&db(0x10, 4, None), &db(0x10, 4, Some(1))));
        assert!(collides(&db(0x10, 4, Some(1)), &db(0x10, 4, Some(1))));
        assert!(!collides(&db(0x10, 4, Some(1)), &db(0x10, 4, Some(2))));
        assert!(!collides(&db(0x10, 4, None), &db(0x10, 2, None)));
        assert!(!collides(&db(0x10, 0, None), &db(0x18, 0, None)));
    }
}
