// SPDX-License-Identifier: GPL-2.0

//! Hypercall status codes and their errnos: one table, shared by both
//! backends and by `MSHV_ROOT_HVCALL`.

// A table of the hypervisor's codes: not every one has a use in the driver.
#![allow(dead_code)]

use kernel::error::code::*;

/// `HV_STATUS_SUCCESS`.
pub(crate) const SUCCESS: u16 = 0x0;

/// Declares each non-success status twice: as its code (`status::X`, for
/// tables and the raw `MSHV_ROOT_HVCALL` path) and as a typed error value
/// (`HvError::X`), as `kernel::error::code` does with `declare_err!`.
macro_rules! hv_statuses {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        $($(#[$doc])* pub(crate) const $name: u16 = $value;)*

        impl super::HvError {
            $($(#[$doc])* pub(crate) const $name: super::HvError = super::HvError($value);)*
        }
    };
}

hv_statuses! {
    /// `HV_STATUS_INVALID_HYPERCALL_CODE`.
    INVALID_HYPERCALL_CODE = 0x2;
    /// `HV_STATUS_INVALID_HYPERCALL_INPUT`.
    INVALID_HYPERCALL_INPUT = 0x3;
    /// `HV_STATUS_INVALID_ALIGNMENT`.
    INVALID_ALIGNMENT = 0x4;
    /// `HV_STATUS_INVALID_PARAMETER`.
    INVALID_PARAMETER = 0x5;
    /// `HV_STATUS_ACCESS_DENIED`.
    ACCESS_DENIED = 0x6;
    /// `HV_STATUS_INVALID_PARTITION_STATE`.
    INVALID_PARTITION_STATE = 0x7;
    /// `HV_STATUS_OPERATION_DENIED`.
    OPERATION_DENIED = 0x8;
    /// `HV_STATUS_UNKNOWN_PROPERTY`.
    UNKNOWN_PROPERTY = 0x9;
    /// `HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE`.
    PROPERTY_VALUE_OUT_OF_RANGE = 0xa;
    /// `HV_STATUS_INSUFFICIENT_MEMORY`.
    INSUFFICIENT_MEMORY = 0xb;
    /// `HV_STATUS_INVALID_PARTITION_ID`.
    INVALID_PARTITION_ID = 0xd;
    /// `HV_STATUS_INVALID_VP_INDEX`.
    INVALID_VP_INDEX = 0xe;
    /// `HV_STATUS_NOT_FOUND`.
    NOT_FOUND = 0x10;
    /// `HV_STATUS_INVALID_PORT_ID`.
    INVALID_PORT_ID = 0x11;
    /// `HV_STATUS_INVALID_CONNECTION_ID`.
    INVALID_CONNECTION_ID = 0x12;
    /// `HV_STATUS_INSUFFICIENT_BUFFERS`.
    INSUFFICIENT_BUFFERS = 0x13;
    /// `HV_STATUS_NOT_ACKNOWLEDGED`.
    NOT_ACKNOWLEDGED = 0x14;
    /// `HV_STATUS_INVALID_VP_STATE`.
    INVALID_VP_STATE = 0x15;
    /// `HV_STATUS_NO_RESOURCES`.
    NO_RESOURCES = 0x1d;
    /// `HV_STATUS_PROCESSOR_FEATURE_NOT_SUPPORTED`.
    PROCESSOR_FEATURE_NOT_SUPPORTED = 0x20;
    /// `HV_STATUS_INVALID_LP_INDEX`.
    INVALID_LP_INDEX = 0x41;
    /// `HV_STATUS_INVALID_REGISTER_VALUE`.
    INVALID_REGISTER_VALUE = 0x50;
    /// `HV_STATUS_OPERATION_FAILED`.
    OPERATION_FAILED = 0x71;
    /// `HV_STATUS_INSUFFICIENT_ROOT_MEMORY`.
    INSUFFICIENT_ROOT_MEMORY = 0x73;
    /// `HV_STATUS_INSUFFICIENT_CONTIGUOUS_MEMORY`.
    INSUFFICIENT_CONTIGUOUS_MEMORY = 0x75;
    /// `HV_STATUS_TIME_OUT`.
    TIME_OUT = 0x78;
    /// `HV_STATUS_CALL_PENDING`.
    CALL_PENDING = 0x79;
    /// `HV_STATUS_INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY`.
    INSUFFICIENT_CONTIGUOUS_ROOT_MEMORY = 0x83;
    /// `HV_STATUS_VTL_ALREADY_ENABLED`.
    VTL_ALREADY_ENABLED = 0x86;
}

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
