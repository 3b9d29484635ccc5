// SPDX-License-Identifier: GPL-2.0

//! CPUID and MSR handling of the simulated hypervisor: the synthetic CPUID
//! table, the results a VMM registers over it
//! (`HVCALL_REGISTER_INTERCEPT_RESULT`), `HVCALL_GET_VP_CPUID_VALUES`, and
//! the intercepts a VMM installs (`HVCALL_INSTALL_INTERCEPT`).
//!
//! # CPUID
//!
//! The table ([`base_cpuid`]) describes an Intel processor whose feature
//! bits come from the partition's properties: `PROCESSOR_FEATURES0` (leaves
//! 1, 7 and 0x80000001), `PROCESSOR_XSAVE_FEATURES` and `XSAVE_STATES`
//! (XSAVE/AVX bits, leaf 0xd), `PHYSICAL_ADDRESS_WIDTH` (leaf 0x80000008),
//! plus the Hyper-V leaves. OSXSAVE follows the guest's CR4, leaf 0xd's
//! current size the VP's XFEM.
//!
//! A registered result replaces the bits of its masks (`(base & !mask) |
//! (value & mask)`); one registered for a specific subleaf wins over one for
//! all subleaves; without `always_override` it is not applied to a leaf the
//! table leaves all zero.
//!
//! A guest CPUID completes inside the hypervisor with those values, unless a
//! CPUID intercept is installed for its leaf (`HV_INTERCEPT_TYPE_X64_CPUID`
//! with that leaf as parameter, or `HV_INTERCEPT_TYPE_X64_GLOBAL_CPUID`):
//! then the VMM gets `HVMSG_X64_CPUID_INTERCEPT` with the values as the
//! default result.
//!
//! # MSRs
//!
//! An RDMSR/WRMSR goes to the VMM as `HVMSG_X64_MSR_INTERCEPT` when an
//! `HV_INTERCEPT_TYPE_X64_MSR_INDEX` intercept names its MSR (whatever the
//! hypervisor implements), or when the hypervisor does not implement the MSR
//! and an `HV_INTERCEPT_TYPE_X64_MSR` intercept covers the access. Otherwise
//! an implemented MSR completes inside, and an unimplemented one follows the
//! partition's `UNIMPLEMENTED_MSR_ACTION`: 1 reads zero and ignores writes;
//! 0 would raise #GP in the guest, which the interpreter cannot deliver, so
//! the sim reports the access to the VMM as an MSR intercept (approximation).

use super::{props, PartInner};
use crate::tlfs::{abi, CreatePartition, HvError, HvResult};
use kernel::prelude::*;

/// `HV_INTERCEPT_TYPE_X64_IO_PORT`.
const TYPE_IO_PORT: u32 = 0;
/// `HV_INTERCEPT_TYPE_X64_MSR`.
pub(crate) const TYPE_MSR: u32 = 1;
/// `HV_INTERCEPT_TYPE_X64_CPUID`.
pub(crate) const TYPE_CPUID: u32 = 2;
/// `HV_INTERCEPT_TYPE_EXCEPTION`.
const TYPE_EXCEPTION: u32 = 3;
/// `HV_INTERCEPT_TYPE_X64_GLOBAL_CPUID`.
pub(crate) const TYPE_GLOBAL_CPUID: u32 = 6;
/// `HV_INTERCEPT_TYPE_X64_MSR_INDEX`.
pub(crate) const TYPE_MSR_INDEX: u32 = 11;
/// `HV_INTERCEPT_ACCESS_MASK_READ`.
const ACCESS_READ: u32 = 1;
/// `HV_INTERCEPT_ACCESS_MASK_WRITE`.
const ACCESS_WRITE: u32 = 2;
/// `HV_INTERCEPT_ACCESS_MASK_EXECUTE`.
const ACCESS_EXECUTE: u32 = 4;
/// Intercepts one partition can hold.
const MAX_INTERCEPTS: usize = 64;
/// CPUID results one VP can hold.
pub(crate) const MAX_CPUID_RESULTS: usize = 256;

/// One installed intercept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Intercept {
    kind: u32,
    access: u32,
    param: u64,
}

/// The intercepts installed in a partition.
pub(crate) struct Installed {
    list: [Intercept; MAX_INTERCEPTS],
    len: usize,
}

impl Installed {
    /// None installed.
    pub(crate) const fn new() -> Self {
        Self {
            list: [Intercept {
                kind: 0,
                access: 0,
                param: 0,
            }; MAX_INTERCEPTS],
            len: 0,
        }
    }

    /// `HVCALL_INSTALL_INTERCEPT`: installs (or, with an empty access mask,
    /// removes) the intercept of `kind` for `param`.
    pub(crate) fn install(&mut self, kind: u32, access: u32, param: u64) -> HvResult {
        let invalid = HvError::INVALID_PARAMETER;
        match kind {
            TYPE_IO_PORT | TYPE_MSR | TYPE_MSR_INDEX => {
                if access & !(ACCESS_READ | ACCESS_WRITE) != 0 {
                    return Err(invalid);
                }
            }
            TYPE_CPUID | TYPE_GLOBAL_CPUID | TYPE_EXCEPTION => {
                if access & !ACCESS_EXECUTE != 0 {
                    return Err(invalid);
                }
            }
            _ => return Err(invalid),
        }
        // The parameter identifies the intercept except for the global ones.
        let param = match kind {
            TYPE_MSR | TYPE_GLOBAL_CPUID => 0,
            TYPE_IO_PORT | TYPE_EXCEPTION => param & 0xffff,
            _ => param & 0xffff_ffff,
        };
        let len = self.len;
        let found = self
            .list
            .iter()
            .take(len)
            .position(|i| i.kind == kind && i.param == param);
        match (found, access) {
            (Some(at), 0) => {
                self.list.copy_within(at + 1..len, at);
                self.len -= 1;
            }
            (None, 0) => {}
            (Some(at), _) => {
                if let Some(i) = self.list.get_mut(at) {
                    i.access = access;
                }
            }
            (None, _) => {
                let slot = self
                    .list
                    .get_mut(len)
                    .ok_or(HvError::INSUFFICIENT_BUFFERS)?;
                *slot = Intercept {
                    kind,
                    access,
                    param,
                };
                self.len += 1;
            }
        }
        Ok(())
    }

    fn find(&self, kind: u32, param: u64) -> Option<&Intercept> {
        self.list
            .iter()
            .take(self.len)
            .find(|i| i.kind == kind && i.param == param)
    }

    /// Whether a guest CPUID of `leaf` goes to the VMM.
    pub(crate) fn cpuid(&self, leaf: u32) -> bool {
        self.find(TYPE_GLOBAL_CPUID, 0).is_some() || self.find(TYPE_CPUID, leaf.into()).is_some()
    }

    /// Whether an access to `msr` goes to the VMM (`implemented`: the
    /// hypervisor would complete it itself).
    pub(crate) fn msr(&self, msr: u32, write: bool, implemented: bool) -> bool {
        let bit = if write { ACCESS_WRITE } else { ACCESS_READ };
        let covers = |i: Option<&Intercept>| i.is_some_and(|i| i.access & bit != 0);
        covers(self.find(TYPE_MSR_INDEX, msr.into()))
            || (!implemented && covers(self.find(TYPE_MSR, 0)))
    }
}

/// A registered CPUID result (`hv_register_x64_cpuid_result_parameters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuidResult {
    /// Leaf (EAX).
    pub(crate) leaf: u32,
    /// Subleaf (ECX), used if `subleaf_specific`.
    pub(crate) subleaf: u32,
    /// Applies to `subleaf` only.
    pub(crate) subleaf_specific: bool,
    /// Applies even where the table gives all zeros.
    pub(crate) always_override: bool,
    /// EAX, EBX, ECX, EDX.
    pub(crate) value: [u32; 4],
    /// Which bits of each to replace.
    pub(crate) mask: [u32; 4],
}

/// The CPUID results registered for one VP.
pub(crate) struct CpuidResults {
    list: KVec<CpuidResult>,
}

impl CpuidResults {
    /// None registered; reserves room for [`MAX_CPUID_RESULTS`]. May sleep.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            list: KVec::with_capacity(MAX_CPUID_RESULTS, GFP_ATOMIC)?,
        })
    }

    /// Registers `r`, replacing one for the same leaf and subleaf scope.
    /// Never allocates: `INSUFFICIENT_BUFFERS` when full.
    pub(crate) fn register(&mut self, r: CpuidResult) -> HvResult {
        let same = |o: &CpuidResult| {
            o.leaf == r.leaf
                && o.subleaf_specific == r.subleaf_specific
                && (!r.subleaf_specific || o.subleaf == r.subleaf)
        };
        if let Some(o) = self.list.iter_mut().find(|o| same(o)) {
            *o = r;
            return Ok(());
        }
        self.list
            .push_within_capacity(r)
            .map_err(|_| HvError::INSUFFICIENT_BUFFERS)
    }

    /// `base` (the table's values for `leaf`/`subleaf`) with the registered
    /// result applied.
    pub(crate) fn apply(&self, leaf: u32, subleaf: u32, base: [u32; 4]) -> [u32; 4] {
        let specific = self
            .list
            .iter()
            .find(|o| o.leaf == leaf && o.subleaf_specific && o.subleaf == subleaf);
        let any = || {
            self.list
                .iter()
                .find(|o| o.leaf == leaf && !o.subleaf_specific)
        };
        let Some(r) = specific.or_else(any) else {
            return base;
        };
        if !r.always_override && base == [0; 4] {
            return base;
        }
        let mut out = base;
        for i in 0..4 {
            out[i] = (base[i] & !r.mask[i]) | (r.value[i] & r.mask[i]);
        }
        out
    }
}

/// What the CPUID table depends on, read from a partition's properties.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuidEnv {
    /// `PROCESSOR_FEATURES0`.
    pub(crate) features: u64,
    /// `PROCESSOR_XSAVE_FEATURES` (bit 0 XSAVE, 1 XSAVEOPT, 2 AVX).
    pub(crate) xsave_features: u64,
    /// `XSAVE_STATES` (XCR0 bits).
    pub(crate) xsave_states: u64,
    /// `PHYSICAL_ADDRESS_WIDTH`.
    pub(crate) pa_width: u64,
}

impl CpuidEnv {
    /// The environment of a partition (call under its lock).
    pub(crate) fn of(inner: &PartInner, create: &CreatePartition) -> Self {
        let p = |code| inner.props.get(code, create);
        Self {
            features: p(props::PROCESSOR_FEATURES0),
            xsave_features: p(abi::HV_PARTITION_PROPERTY_PROCESSOR_XSAVE_FEATURES),
            xsave_states: p(abi::HV_PARTITION_PROPERTY_XSAVE_STATES),
            pa_width: p(props::PHYSICAL_ADDRESS_WIDTH),
        }
    }
}

/// Bytes of the XSAVE area (standard format) for the states in `xcr0`:
/// legacy area and header, plus 256 for AVX.
fn xsave_size(xcr0: u64) -> u32 {
    512 + 64 + if xcr0 & 0x4 != 0 { 256 } else { 0 }
}

/// The table's CPUID values `[eax, ebx, ecx, edx]` for `leaf`/`subleaf` on
/// VP `vp` whose CR4 is `cr4` and XFEM (XCR0) `xcr0`.
pub(crate) fn base_cpuid(
    env: &CpuidEnv,
    leaf: u32,
    subleaf: u32,
    vp: u32,
    cr4: u64,
    xcr0: u64,
) -> [u32; 4] {
    let f = |bit: u32| env.features & (1 << bit) != 0;
    let pick = |pairs: &[(u32, bool)]| {
        pairs
            .iter()
            .fold(0u32, |acc, &(b, on)| if on { acc | (1 << b) } else { acc })
    };
    let xsave = env.xsave_features & 1 != 0;
    let avx = env.xsave_features & 4 != 0 && env.xsave_states & 4 != 0;
    let states = (env.xsave_states | 0x3) & 0x7;
    match leaf {
        // "GenuineIntel", leaves up to 0xd.
        0 => [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
        1 => {
            let ecx = pick(&[
                (0, f(0)),   // SSE3
                (1, f(17)),  // PCLMULQDQ
                (9, f(2)),   // SSSE3
                (13, f(8)),  // CMPXCHG16B
                (17, f(18)), // PCID
                (19, f(3)),  // SSE4.1
                (20, f(4)),  // SSE4.2
                (22, f(29)), // MOVBE
                (23, f(7)),  // POPCNT
                (25, f(16)), // AES
                (26, xsave),
                (27, xsave && cr4 & (1 << 18) != 0), // OSXSAVE
                (28, avx),
                (29, f(20)), // F16C
                (30, f(21)), // RDRAND
                (31, true),  // hypervisor present
            ]);
            // FPU, TSC, MSR, PAE, CX8, APIC, SEP, MTRR, PGE, CMOV, PAT,
            // CLFLUSH, MMX, FXSR, SSE, SSE2.
            let edx = [0, 4, 5, 6, 8, 9, 11, 12, 13, 15, 16, 19, 23, 24, 25, 26]
                .iter()
                .fold(0u32, |acc, bit| acc | (1 << bit));
            // Family 6 model 0x3a; APIC id; CLFLUSH line 8 qwords.
            [0x0003_06a9, ((vp & 0xff) << 24) | (8 << 8), ecx, edx]
        }
        7 if subleaf == 0 => {
            let ebx = pick(&[
                (0, f(22)),  // FSGSBASE
                (3, f(25)),  // BMI1
                (4, f(36)),  // HLE
                (7, f(23)),  // SMEP
                (8, f(26)),  // BMI2
                (9, f(24)),  // ERMS
                (10, f(43)), // INVPCID
                (11, f(37)), // RTM
                (18, f(32)), // RDSEED
                (19, f(33)), // ADX
                (20, f(35)), // SMAP
                (23, f(39)), // CLFLUSHOPT
                (24, f(40)), // CLWB
                (29, f(41)), // SHA
            ]);
            let edx = pick(&[(4, f(49)), (26, f(44) || f(46)), (27, f(45))]);
            [0, ebx, 0, edx]
        }
        0xd if xsave => match subleaf {
            0 => [
                states as u32,
                xsave_size(xcr0),
                xsave_size(u64::from(states as u32)),
                0,
            ],
            1 => [
                u32::from(env.xsave_features & 2 != 0), // XSAVEOPT
                0,
                0,
                0,
            ],
            2 if avx => [256, 576, 0, 0],
            _ => [0; 4],
        },
        // Hyper-V: "Microsoft Hv", interface "Hv#1".
        0x4000_0000 => [0x4000_0006, 0x7263_694d, 0x666f_736f, 0x7648_2074],
        0x4000_0001 => [0x3123_7648, 0, 0, 0],
        // Extended leaves up to 0x80000008.
        0x8000_0000 => [0x8000_0008, 0, 0, 0],
        0x8000_0001 => {
            let ecx = pick(&[(0, f(1)), (5, f(10)), (8, f(34))]);
            // SYSCALL, NX, 1 GiB pages, RDTSCP, long mode.
            let edx = pick(&[(11, true), (20, true), (26, f(15)), (27, f(38)), (29, true)]);
            [0, 0, ecx, edx]
        }
        // Linear 48 bits; physical from the property.
        0x8000_0008 => [0x3000 | (env.pa_width as u32 & 0xff), 0, 0, 0],
        _ => [0; 4],
    }
}

/// `HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION` value: reads return
/// zero, writes are dropped.
pub(crate) const MSR_ACTION_IGNORE_WRITE_READ_ZERO: u64 = 1;

/// The CPUID values VP `vp` of `part` sees for `leaf`/`subleaf` (its CR4 and
/// XCR0 given), with registered results applied, and whether an installed
/// intercept sends the instruction to the VMM. Takes the partition's lock,
/// then the VP's state lock, one after the other.
pub(crate) fn evaluate_cpuid(
    part: &super::ChildPartition,
    vp: &super::vp::Vp,
    leaf: u32,
    subleaf: u32,
    cr4: u64,
    xcr0: u64,
) -> ([u32; 4], bool) {
    let (env, intercepted) = {
        let inner = part.inner.lock();
        (
            CpuidEnv::of(&inner, &part.create),
            inner.intercepts.cpuid(leaf),
        )
    };
    let base = base_cpuid(&env, leaf, subleaf, vp.index, cr4, xcr0);
    (
        vp.state.lock().cpuid.apply(leaf, subleaf, base),
        intercepted,
    )
}

/// How the hypervisor handles an RDMSR (`write == false`) or WRMSR of `msr`
/// on `part`: whether it goes to the VMM, and otherwise whether an
/// unimplemented MSR reads zero / ignores the write.
pub(crate) fn msr_policy(
    part: &super::ChildPartition,
    msr: u32,
    write: bool,
    implemented: bool,
) -> (bool, bool) {
    let inner = part.inner.lock();
    let action = inner.props.get(
        abi::HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION,
        &part.create,
    );
    (
        inner.intercepts.msr(msr, write, implemented),
        action == MSR_ACTION_IGNORE_WRITE_READ_ZERO,
    )
}

#[cfg(CONFIG_MSHV_RS_KUNIT_TEST)]
#[kernel::prelude::kunit_tests(mshv_rs_sim_intercept)]
mod tests {
    use super::*;

    #[test]
    fn installed_intercepts() {
        let mut i = Installed::new();
        assert!(!i.cpuid(1));
        assert_eq!(i.install(TYPE_CPUID, ACCESS_EXECUTE, 1), Ok(()));
        assert!(i.cpuid(1) && !i.cpuid(2));
        assert_eq!(i.install(TYPE_GLOBAL_CPUID, ACCESS_EXECUTE, 7), Ok(()));
        assert!(i.cpuid(2));
        // An empty access mask removes.
        assert_eq!(i.install(TYPE_GLOBAL_CPUID, 0, 0), Ok(()));
        assert!(!i.cpuid(2) && i.cpuid(1));
        assert_eq!(i.install(TYPE_MSR_INDEX, ACCESS_READ, 0x174), Ok(()));
        assert!(i.msr(0x174, false, true) && !i.msr(0x174, true, true));
        assert!(!i.msr(0x1234, false, false));
        assert_eq!(i.install(TYPE_MSR, ACCESS_READ | ACCESS_WRITE, 0), Ok(()));
        assert!(i.msr(0x1234, true, false) && !i.msr(0x175, true, true));
        let invalid = Err(HvError::INVALID_PARAMETER);
        assert_eq!(i.install(99, ACCESS_READ, 0), invalid);
        assert_eq!(i.install(TYPE_CPUID, ACCESS_READ, 1), invalid);
        assert_eq!(i.install(TYPE_MSR, ACCESS_EXECUTE, 0), invalid);
    }

    #[test]
    fn cpuid_table_and_results() -> Result {
        let env = CpuidEnv {
            features: (1 << 4) | (1 << 22),
            xsave_features: 0x7,
            xsave_states: 0x7,
            pa_width: 39,
        };
        let l1 = base_cpuid(&env, 1, 0, 3, 0, 1);
        assert_eq!(l1[1] >> 24, 3);
        assert_eq!(l1[2], (1 << 20) | (1 << 26) | (1 << 28) | (1 << 31));
        // OSXSAVE follows CR4.
        assert_eq!(
            base_cpuid(&env, 1, 0, 3, 1 << 18, 1)[2] & (1 << 27),
            1 << 27
        );
        assert_eq!(base_cpuid(&env, 7, 0, 0, 0, 1)[1], 1);
        assert_eq!(base_cpuid(&env, 0x8000_0008, 0, 0, 0, 1)[0], 0x3027);
        assert_eq!(base_cpuid(&env, 0xd, 0, 0, 0, 1), [7, 576, 832, 0]);
        assert_eq!(base_cpuid(&env, 0xd, 0, 0, 0, 7)[1], 832);
        let mut r = CpuidResults::new()?;
        let any = CpuidResult {
            leaf: 4,
            always_override: false,
            value: [0xf0, 0, 0, 0],
            mask: [0xff, 0, 0, 0],
            ..Default::default()
        };
        assert_eq!(r.register(any), Ok(()));
        assert_eq!(r.apply(4, 9, [0x0f0f, 1, 2, 3]), [0x0ff0, 1, 2, 3]);
        // Not applied to an all-zero leaf without always_override.
        assert_eq!(r.apply(4, 9, [0; 4]), [0; 4]);
        let specific = CpuidResult {
            subleaf: 2,
            subleaf_specific: true,
            always_override: true,
            value: [0x11, 0, 0, 0],
            ..any
        };
        assert_eq!(r.register(specific), Ok(()));
        assert_eq!(r.apply(4, 2, [0; 4]), [0x11, 0, 0, 0]);
        assert_eq!(r.apply(4, 3, [0x0f0f, 0, 0, 0]), [0x0ff0, 0, 0, 0]);
        // Re-registering replaces.
        assert_eq!(
            r.register(CpuidResult {
                value: [0x22, 0, 0, 0],
                ..specific
            }),
            Ok(())
        );
        assert_eq!(r.apply(4, 2, [0; 4]), [0x22, 0, 0, 0]);
        Ok(())
    }
}
