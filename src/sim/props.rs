// SPDX-License-Identifier: GPL-2.0

//! Partition properties of the simulated hypervisor.
//!
//! The root partition (`HV_PARTITION_ID_SELF`) reports a fixed, plausible
//! x86 host: an Intel processor with the common SSE/AVX-era features,
//! XSAVE with x87, SSE and AVX state (832-byte compacted area), 46-bit
//! physical addresses. A child partition reports the host's compatibility
//! properties minus what its creation disabled, and stores whatever else is
//! set (reading 0 until then).
//!
//! # Assignable synthetic processor features (a modelling choice)
//!
//! The simulated hypervisor is a Hyper-V recent enough to report
//! `HV_PARTITION_PROPERTY_ASSIGNABLE_SYNTHETIC_PROC_FEATURES` (0x90009): its
//! `VMM_CAPABILITIES` bank has `assignable_synthetic_proc_features` (bit 4),
//! and `GET_PARTITION_PROPERTY_EX` of 0x90009 on the root answers the banked
//! shape of `hv_partition_property_vmm_capabilities` (`bank_count` 1, three
//! reserved `u16`, bank 0 at byte 8). mshv-ioctls 0.7.0 (Cloud Hypervisor)
//! reads it unconditionally and 0.7.1 when that capability bit is set; on a
//! Hyper-V without it the read fails with `HV_STATUS_UNKNOWN_PROPERTY`, which
//! is what this simulator answered before Cloud Hypervisor ran on it.
//! Which bits a real root assigns is not knowable without one; the mask is
//! the features Linux 7.3's `hvhdk.h` names (not `reserved_z*`) minus those
//! documented as privileges or nested-only: hypervisor present, HV#1, the
//! MSR access bits 2-11, extended GVA ranges for flush (15), direct
//! synthetic timers (22), extended processor masks (24), TB flush hypercalls
//! (25), synthetic cluster IPI (26), notify long spin wait (27), query NUMA
//! distance (28), signal events (29), retarget device interrupt (30),
//! restore time (31). Not assignable: fast hypercall output (18) and start
//! virtual processor (20), which the TLFS lists as partition privileges, and
//! enlightened VMCS (32, nested). Setting `SYNTHETIC_PROC_FEATURES` with a
//! bit outside the mask fails with `HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE`
//! (the simulator's status for a value Hyper-V does not accept; never
//! kinder than a real root).

use crate::tlfs::{abi, CreatePartition, HvError, HvResult};

/// Properties a partition can store.
pub(crate) const PROP_SLOTS: usize = 32;

/// `HV_PARTITION_PROPERTY_PROCESSOR_VENDOR`.
pub(crate) const PROCESSOR_VENDOR: u32 = 0x0006_0000;
/// `HV_PARTITION_PROPERTY_PROCESSOR_CL_FLUSH_SIZE`.
pub(crate) const PROCESSOR_CL_FLUSH_SIZE: u32 = 0x0006_0003;
/// `HV_PARTITION_PROPERTY_COMPATIBILITY_VERSION`.
pub(crate) const COMPATIBILITY_VERSION: u32 = 0x0006_0005;
/// `HV_PARTITION_PROPERTY_PHYSICAL_ADDRESS_WIDTH`.
pub(crate) const PHYSICAL_ADDRESS_WIDTH: u32 = 0x0006_0006;
/// `HV_PARTITION_PROPERTY_PROCESSOR_FEATURES0`.
pub(crate) const PROCESSOR_FEATURES0: u32 = 0x0006_000a;
/// `HV_PARTITION_PROPERTY_PROCESSOR_FEATURES1`.
pub(crate) const PROCESSOR_FEATURES1: u32 = 0x0006_000b;

/// `HV_PROCESSOR_VENDOR_INTEL`.
const VENDOR_INTEL: u64 = 1;

/// Bits of `union hv_partition_processor_features` bank 0 the host has:
/// SSE3, LAHF/SAHF, SSSE3, SSE4.1, SSE4.2, POPCNT, CMPXCHG16B, LZCNT,
/// 1 GiB pages, AES, PCLMULQDQ, PCID, F16C, RDRAND, RD/WR FS/GS base, SMEP,
/// enhanced fast strings, BMI1, BMI2, MOVBE, RDSEED, ADX, SMAP, RDTSCP,
/// CLFLUSHOPT, CLWB, x87 pointers saved, INVPCID, IBRS, STIBP, IBPB,
/// unrestricted guest, MDD, fast short REP MOV (bit numbers as in
/// `hvhdk.h`).
const HOST_FEATURES0: u64 = bits(&[
    0, 1, 2, 3, 4, 7, 8, 10, 15, 16, 17, 18, 20, 21, 22, 23, 24, 25, 26, 29, 32, 33, 35, 38, 39,
    40, 42, 43, 44, 45, 46, 47, 48, 49,
]);
/// Bank 1: invariant TSC, TSC deadline timer, TSC_ADJUST.
const HOST_FEATURES1: u64 = bits(&[1, 17, 18]);
/// `union hv_partition_processor_xsave_features`: XSAVE, XSAVEOPT, AVX.
const HOST_XSAVE_FEATURES: u64 = 0x7;
/// XCR0 states: x87, SSE, AVX.
const HOST_XSAVE_STATES: u64 = 0x7;
/// Compacted XSAVE area for x87 + SSE + AVX: 512 + 64 + 256 bytes.
const HOST_MAX_XSAVE_DATA_SIZE: u64 = 832;
/// 2.4 GHz.
const HOST_CLOCK_FREQUENCY: u64 = 2_400_000_000;
/// Physical address bits (the SLAT covers 48).
const HOST_PHYSICAL_ADDRESS_WIDTH: u64 = 46;
/// CLFLUSH line size in 8-byte units (64 bytes).
const HOST_CL_FLUSH_SIZE: u64 = 8;

/// A mask with the given bits set.
const fn bits(list: &[u32]) -> u64 {
    let mut v = 0;
    let mut i = 0;
    while i < list.len() {
        v |= 1 << list[i];
        i += 1;
    }
    v
}

/// `HV_PARTITION_PROPERTY_ASSIGNABLE_SYNTHETIC_PROC_FEATURES` (an extended
/// property: `GET_PARTITION_PROPERTY_EX` only).
pub(crate) const ASSIGNABLE_SYNTHETIC_PROC_FEATURES: u32 = 0x0009_0009;

/// `VMM_CAPABILITIES` bank 0: `assignable_synthetic_proc_features` (bit 4).
pub(crate) const HOST_VMM_CAPABILITIES: u64 = 1 << 4;

/// Bank 0 of `ASSIGNABLE_SYNTHETIC_PROC_FEATURES` (see the module
/// documentation for the choice).
pub(crate) const HOST_ASSIGNABLE_SYNTHETIC: u64 = bits(&[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 22, 24, 25, 26, 27, 28, 29, 30, 31,
]);

/// The root partition's (host's) value of property `code`, or `None` if the
/// simulator does not know the property for the root.
pub(crate) fn host(code: u32) -> Option<u64> {
    Some(match code {
        PROCESSOR_VENDOR => VENDOR_INTEL,
        PROCESSOR_FEATURES0 => HOST_FEATURES0,
        PROCESSOR_FEATURES1 => HOST_FEATURES1,
        abi::HV_PARTITION_PROPERTY_PROCESSOR_XSAVE_FEATURES => HOST_XSAVE_FEATURES,
        abi::HV_PARTITION_PROPERTY_XSAVE_STATES => HOST_XSAVE_STATES,
        abi::HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE => HOST_MAX_XSAVE_DATA_SIZE,
        abi::HV_PARTITION_PROPERTY_PROCESSOR_CLOCK_FREQUENCY => HOST_CLOCK_FREQUENCY,
        PHYSICAL_ADDRESS_WIDTH => HOST_PHYSICAL_ADDRESS_WIDTH,
        PROCESSOR_CL_FLUSH_SIZE => HOST_CL_FLUSH_SIZE,
        COMPATIBILITY_VERSION => u64::from(abi::HV_COMPATIBILITY_21_H2),
        // Deprecated feature bank, enlightenment modifications, guest OS id,
        // nested virtualization features: none.
        0x0006_0001 | 0x0006_0004 | 0x0007_0000 | 0x0008_0000 => 0,
        _ => return None,
    })
}

/// A child partition's value of a compatibility property it did not set:
/// the host's, minus the features its creation disabled.
fn child_default(code: u32, create: &CreatePartition) -> u64 {
    let host = host(code).unwrap_or(0);
    match code {
        PROCESSOR_FEATURES0 => host & !create.disabled_features[0],
        PROCESSOR_FEATURES1 => host & !create.disabled_features[1],
        abi::HV_PARTITION_PROPERTY_PROCESSOR_XSAVE_FEATURES => host & !create.disabled_xsave,
        _ => host,
    }
}

/// How a child partition's property may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// Never: derived from the host and the creation arguments.
    ReadOnly,
    /// Only before `INITIALIZE_PARTITION` (after it:
    /// `HV_STATUS_INVALID_PARTITION_STATE`).
    Early,
    /// At any time.
    Any,
}

/// `HV_PARTITION_PROPERTY_SUSPEND`.
pub(crate) const SUSPEND: u32 = 0x0002_0000;
/// `HV_PARTITION_PROPERTY_CPU_GROUP_ID`.
const CPU_GROUP_ID: u32 = 0x0002_0004;
/// `HV_PARTITION_PROPERTY_TIME_FREEZE`.
pub(crate) const TIME_FREEZE: u32 = 0x0003_0003;
/// `HV_PARTITION_PROPERTY_REFERENCE_TIME`.
pub(crate) const REFERENCE_TIME: u32 = 0x0003_0005;
/// `HV_PARTITION_PROPERTY_PROCESSORS_PER_SOCKET`.
pub(crate) const PROCESSORS_PER_SOCKET: u32 = 0x0005_0003;
/// `HV_PARTITION_PROPERTY_PROCESSOR_VIRTUALIZATION_FEATURES`.
const PROCESSOR_VIRTUALIZATION_FEATURES: u32 = 0x0008_0000;
/// `HV_PARTITION_PROPERTY_GUEST_OS_ID`.
const GUEST_OS_ID: u32 = 0x0007_0000;
/// `HV_PARTITION_PROPERTY_ISOLATION_POLICY`.
const ISOLATION_POLICY: u32 = 0x0005_0014;

/// How property `code` of a child partition may be written; `None` for a
/// property the simulator does not know (`HV_STATUS_UNKNOWN_PROPERTY`).
pub(crate) fn write_rule(code: u32) -> Option<Write> {
    Some(match code {
        abi::HV_PARTITION_PROPERTY_PRIVILEGE_FLAGS
        | abi::HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES
        | ISOLATION_POLICY => Write::Early,
        // Suspend, CPU reserve/cap/weight/group, time freeze, reference
        // time, processors per socket, access tracking, unimplemented-MSR
        // action.
        SUSPEND..=CPU_GROUP_ID
        | TIME_FREEZE
        | REFERENCE_TIME
        | PROCESSORS_PER_SOCKET
        | abi::HV_PARTITION_PROPERTY_GPA_PAGE_ACCESS_TRACKING
        | abi::HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION => Write::Any,
        PROCESSOR_VENDOR..=PROCESSOR_FEATURES1
        | GUEST_OS_ID
        | PROCESSOR_VIRTUALIZATION_FEATURES => Write::ReadOnly,
        _ => return None,
    })
}

/// Checks `value` for settable property `code`:
/// `HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE` for a value Hyper-V documents
/// as invalid.
pub(crate) fn check_value(code: u32, value: u64) -> HvResult {
    let ok = match code {
        // Booleans.
        SUSPEND | TIME_FREEZE => value <= 1,
        // HV_UNIMPLEMENTED_MSR_ACTION_FAULT (0) or _IGNORE_WRITE_READ_ZERO (1).
        abi::HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION => value <= 1,
        PROCESSORS_PER_SOCKET => (1..=u64::from(super::MAX_VPS)).contains(&value),
        abi::HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES => {
            value & !HOST_ASSIGNABLE_SYNTHETIC == 0
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(HvError::PROPERTY_VALUE_OUT_OF_RANGE)
    }
}

/// The properties a child partition stores.
pub(crate) struct Props {
    /// `(code, value)` pairs; the first `len` are in use.
    slots: [(u32, u64); PROP_SLOTS],
    /// Used slots.
    len: usize,
}

impl Props {
    /// No property set.
    pub(crate) const fn new() -> Self {
        Self {
            slots: [(0, 0); PROP_SLOTS],
            len: 0,
        }
    }

    /// Property `code` of a partition created with `create`.
    pub(crate) fn get(&self, code: u32, create: &CreatePartition) -> u64 {
        self.slots
            .iter()
            .take(self.len)
            .find(|(c, _)| *c == code)
            .map_or_else(|| child_default(code, create), |&(_, v)| v)
    }

    /// `HVCALL_GET_PARTITION_PROPERTY` of a child: `UNKNOWN_PROPERTY` for a
    /// code the simulator does not know.
    pub(crate) fn lookup(&self, code: u32, create: &CreatePartition) -> HvResult<u64> {
        if write_rule(code).is_none() {
            return Err(HvError::UNKNOWN_PROPERTY);
        }
        Ok(self.get(code, create))
    }

    /// `HVCALL_SET_PARTITION_PROPERTY` of a child (`early`: not initialized
    /// yet): the rule and value checks, then [`Props::set`].
    pub(crate) fn store(&mut self, code: u32, value: u64, early: bool) -> HvResult {
        match write_rule(code) {
            None => return Err(HvError::UNKNOWN_PROPERTY),
            Some(Write::ReadOnly) => return Err(HvError::ACCESS_DENIED),
            Some(Write::Early) if !early => return Err(HvError::INVALID_PARTITION_STATE),
            _ => {}
        }
        check_value(code, value)?;
        self.set(code, value)
    }

    /// Stores property `code`. Fails with `HV_STATUS_INSUFFICIENT_BUFFERS`
    /// when [`PROP_SLOTS`] distinct properties are already stored.
    pub(crate) fn set(&mut self, code: u32, value: u64) -> HvResult {
        let len = self.len;
        if let Some(slot) = self.slots.iter_mut().take(len).find(|(c, _)| *c == code) {
            slot.1 = value;
            return Ok(());
        }
        match self.slots.get_mut(len) {
            Some(slot) => {
                *slot = (code, value);
                self.len += 1;
                Ok(())
            }
            None => Err(HvError::INSUFFICIENT_BUFFERS),
        }
    }
}
