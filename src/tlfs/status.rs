// SPDX-License-Identifier: GPL-2.0

//! Hypercall status codes and their errnos: one table, shared by both
//! backends and by `MSHV_ROOT_HVCALL`.

// A table of the hypervisor's codes: not every one has a use in the driver.
#![allow(dead_code)]

use kernel::error::code::*;

/// `HV_STATUS_SUCCESS`.
pub(crate) const SUCCESS: u16 = 0x0;
/// `HV_STATUS_INVALID_HYPERCALL_CODE`.
pub(crate) const INVALID_HYPERCALL_CODE: u16 = 0x2;
/// `HV_STATUS_INVALID_HYPERCALL_INPUT`.
pub(crate) const INVALID_HYPERCALL_INPUT: u16 = 0x3;
/// `HV_STATUS_INVALID_ALIGNMENT`.
pub(crate) const INVALID_ALIGNMENT: u16 = 0x4;
/// `HV_STATUS_INVALID_PARAMETER`.
pub(crate) const INVALID_PARAMETER: u16 = 0x5;
/// `HV_STATUS_ACCESS_DENIED`.
pub(crate) const ACCESS_DENIED: u16 = 0x6;
/// `HV_STATUS_INVALID_PARTITION_STATE`.
pub(crate) const INVALID_PARTITION_STATE: u16 = 0x7;
/// `HV_STATUS_OPERATION_DENIED`.
pub(crate) const OPERATION_DENIED: u16 = 0x8;
/// `HV_STATUS_UNKNOWN_PROPERTY`.
pub(crate) const UNKNOWN_PROPERTY: u16 = 0x9;
/// `HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE`.
pub(crate) const PROPERTY_VALUE_OUT_OF_RANGE: u16 = 0xa;
/// `HV_STATUS_INSUFFICIENT_MEMORY`.
pub(crate) const INSUFFICIENT_MEMORY: u16 = 0xb;
/// `HV_STATUS_INVALID_PARTITION_ID`.
pub(crate) const INVALID_PARTITION_ID: u16 = 0xd;
/// `HV_STATUS_INVALID_VP_INDEX`.
pub(crate) const INVALID_VP_INDEX: u16 = 0xe;
/// `HV_STATUS_NOT_FOUND`.
pub(crate) const NOT_FOUND: u16 = 0x10;
/// `HV_STATUS_INVALID_PORT_ID`.
pub(crate) const INVALID_PORT_ID: u16 = 0x11;
/// `HV_STATUS_INVALID_CONNECTION_ID`.
pub(crate) const INVALID_CONNECTION_ID: u16 = 0x12;
/// `HV_STATUS_INSUFFICIENT_BUFFERS`.
pub(crate) const INSUFFICIENT_BUFFERS: u16 = 0x13;
/// `HV_STATUS_NOT_ACKNOWLEDGED`.
pub(crate) const NOT_ACKNOWLEDGED: u16 = 0x14;
/// `HV_STATUS_INVALID_VP_STATE`.
pub(crate) const INVALID_VP_STATE: u16 = 0x15;
/// `HV_STATUS_NO_RESOURCES`.
pub(crate) const NO_RESOURCES: u16 = 0x1d;
/// `HV_STATUS_PROCESSOR_FEATURE_NOT_SUPPORTED`.
pub(crate) const PROCESSOR_FEATURE_NOT_SUPPORTED: u16 = 0x20;
/// `HV_STATUS_INVALID_LP_INDEX`.
pub(crate) const INVALID_LP_INDEX: u16 = 0x41;
/// `HV_STATUS_INVALID_REGISTER_VALUE`.
pub(crate) const INVALID_REGISTER_VALUE: u16 = 0x50;
/// `HV_STATUS_OPERATION_FAILED`.
pub(crate) const OPERATION_FAILED: u16 = 0x71;
/// `HV_STATUS_INSUFFICIENT_ROOT_MEMORY`.
pub(crate) const INSUFFICIENT_ROOT_MEMORY: u16 = 0x73;
/// `HV_STATUS_INSUFFICIENT_CONTIGUOUS_MEMORY`.
pub(crate) const INSUFFICIENT_CONTIGUOUS_MEMORY: u16 = 0x75;
/// `HV_STATUS_TIME_OUT`.
pub(crate) const TIME_OUT: u16 = 0x78;
/// `HV_STATUS_CALL_PENDING`.
pub(crate) const CALL_PENDING: u16 = 0x79;
/// `HV_STATUS_INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY`.
pub(crate) const INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY: u16 = 0x83;
/// `HV_STATUS_VTL_ALREADY_ENABLED`.
pub(crate) const VTL_ALREADY_ENABLED: u16 = 0x86;

/// Whether `status` asks the root to deposit memory and retry.
pub(crate) fn needs_memory(status: u16) -> bool {
    matches!(
        status,
        INSUFFICIENT_MEMORY
            | INSUFFICIENT_ROOT_MEMORY
            | INSUFFICIENT_CONTIGUOUS_MEMORY
            | INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY
    )
}

/// Pages to deposit for a needs-memory `status` (upstream's choice: one page,
/// or eight for the contiguous variants), or `None` for any other status.
pub(crate) fn deposit_pages(status: u16) -> Option<usize> {
    match status {
        INSUFFICIENT_MEMORY | INSUFFICIENT_ROOT_MEMORY => Some(1),
        INSUFFICIENT_CONTIGUOUS_MEMORY | INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY => Some(8),
        _ => None,
    }
}

/// The (negative) errno for a hypercall status, as upstream's
/// `hv_result_to_errno` maps it. `SUCCESS` maps to 0.
pub(crate) fn to_errno(status: u16) -> i32 {
    let e = match status {
        SUCCESS => return 0,
        INVALID_HYPERCALL_CODE | INVALID_HYPERCALL_INPUT | INVALID_PARAMETER => EINVAL,
        UNKNOWN_PROPERTY | PROPERTY_VALUE_OUT_OF_RANGE => EINVAL,
        INVALID_PARTITION_ID | INVALID_VP_INDEX | INVALID_PORT_ID | INVALID_CONNECTION_ID => EINVAL,
        INVALID_LP_INDEX | INVALID_REGISTER_VALUE => EINVAL,
        ACCESS_DENIED | OPERATION_DENIED => EACCES,
        INSUFFICIENT_MEMORY
        | INSUFFICIENT_ROOT_MEMORY
        | INSUFFICIENT_CONTIGUOUS_MEMORY
        | INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY => ENOMEM,
        PROCESSOR_FEATURE_NOT_SUPPORTED => EOPNOTSUPP,
        _ => EIO,
    };
    e.to_errno()
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_hv_status)]
mod tests {
    use super::*;

    #[test]
    fn errno_table() {
        assert_eq!(to_errno(SUCCESS), 0);
        assert_eq!(to_errno(INVALID_HYPERCALL_CODE), -22);
        assert_eq!(to_errno(INVALID_PARAMETER), -22);
        assert_eq!(to_errno(INVALID_ALIGNMENT), -5);
        assert_eq!(to_errno(ACCESS_DENIED), -13);
        assert_eq!(to_errno(OPERATION_DENIED), -13);
        assert_eq!(to_errno(INVALID_PARTITION_STATE), -5);
        assert_eq!(to_errno(UNKNOWN_PROPERTY), -22);
        assert_eq!(to_errno(INSUFFICIENT_MEMORY), -12);
        assert_eq!(to_errno(INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY), -12);
        assert_eq!(to_errno(NOT_FOUND), -5);
        assert_eq!(to_errno(NO_RESOURCES), -5);
        assert_eq!(to_errno(PROCESSOR_FEATURE_NOT_SUPPORTED), -95);
        assert_eq!(to_errno(INVALID_REGISTER_VALUE), -22);
        assert_eq!(to_errno(CALL_PENDING), -5);
        assert_eq!(to_errno(0xffff), -5);
    }

    #[test]
    fn memory_statuses() {
        assert!(needs_memory(INSUFFICIENT_MEMORY));
        assert!(needs_memory(INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY));
        assert!(!needs_memory(INVALID_PARAMETER));
        assert_eq!(deposit_pages(INSUFFICIENT_MEMORY), Some(1));
        assert_eq!(deposit_pages(INSUFFICIENT_CONTIGUOUS_MEMORY), Some(8));
        assert_eq!(deposit_pages(SUCCESS), None);
    }
}
