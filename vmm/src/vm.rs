// SPDX-License-Identifier: GPL-2.0
//
// The partition and its memory: guest RAM in one host mapping (anonymous,
// THP, memfd or hugetlbfs), split into N regions; a small code region with
// the guest image, per-VP parameter blocks and stacks; VP set-up (the
// partition calls and registers of the shared mini-VMM, tests/mini-vmm).

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use mshv_bindings::*;
use mshv_ioctls::{Mshv, VcpuFd, VmFd};
use mshv_mini_vmm::errno;
use mshv_mini_vmm::partition;
use mshv_mini_vmm::regs::{enter_protected_mode, reg64};

pub const PAGE: u64 = 4096;
pub const HUGE: u64 = 2 << 20;

/// Guest physical layout. The guest runs in 32-bit protected mode without
/// paging, so everything lies below 4 GiB.
pub const CODE_GPA: u64 = 0;
pub const CODE_SIZE: u64 = 64 << 10;
/// Where the guest image goes, and its entry point.
pub const IMAGE_GPA: u64 = 0x1000;
/// Room for the image: up to the first stack.
pub const IMAGE_MAX: usize = 0x7000;
/// VP i's parameter block (see examples/guest/demo32.S).
pub const PARAMS_GPA: u64 = 0x800;
pub const PARAMS_SIZE: u64 = 0x40;
/// VP i's stack: 1 KiB ending at STACKS_GPA + (i + 1) KiB.
pub const STACKS_GPA: u64 = 0x8000;
pub const MAX_VCPUS: usize = 32;
/// Guest RAM starts at 1 GiB (2 MiB aligned, away from the code region).
pub const RAM_GPA: u64 = 1 << 30;
/// The most RAM below 4 GiB.
pub const RAM_MAX: u64 = (4 << 30) - RAM_GPA;

/// What backs guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Private anonymous memory, THP disabled (4 KiB pages).
    Anon,
    /// Private anonymous memory, 2 MiB aligned, MADV_HUGEPAGE.
    Thp,
    /// A memfd (shmem), mapped shared; holes are punched with fallocate.
    Memfd,
    /// A hugetlbfs memfd (MFD_HUGETLB, 2 MiB pages), mapped shared.
    Hugetlbfs,
}

impl Backing {
    pub fn parse(s: &str) -> Option<Backing> {
        Some(match s {
            "anon" => Backing::Anon,
            "thp" => Backing::Thp,
            "memfd" => Backing::Memfd,
            "hugetlbfs" => Backing::Hugetlbfs,
            _ => return None,
        })
    }

    /// The granule regions and holes must respect.
    pub fn granule(self) -> u64 {
        match self {
            Backing::Hugetlbfs => HUGE,
            _ => PAGE,
        }
    }
}

impl fmt::Display for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backing::Anon => "anon",
            Backing::Thp => "thp",
            Backing::Memfd => "memfd",
            Backing::Hugetlbfs => "hugetlbfs",
        })
    }
}

pub fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// An mmap'ed range, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: `Mapping` owns a range of the process's address space, not Rust
// objects: it hands out no references into it. Threads use it only through
// kernel calls on the range (madvise, move_pages, fallocate) and `write`,
// which the VMM calls before any VP or churn thread exists.
unsafe impl Send for Mapping {}
// SAFETY: as above; no method gives shared access to the memory's contents.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, RW, flags, fd, 0)`.
    fn new(len: usize, flags: i32, fd: i32) -> Result<Mapping, String> {
        // SAFETY: a fresh mapping chosen by the kernel; no existing memory
        // is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err(&format!("mmap of {len:#x} bytes")));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    /// Anonymous memory whose start is `align`-aligned (the excess unmapped).
    fn anon_aligned(len: usize, align: usize) -> Result<Mapping, String> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let big = Mapping::new(len + align, flags, -1)?;
        let start = (big.ptr as usize).next_multiple_of(align);
        let head = start - big.ptr as usize;
        let tail = big.len - head - len;
        let (ptr, total) = (big.ptr, big.len);
        std::mem::forget(big);
        // SAFETY: unmapping the unaligned head and tail of our own mapping.
        unsafe {
            if head > 0 {
                libc::munmap(ptr.cast(), head);
            }
            if tail > 0 {
                libc::munmap(ptr.add(head + len).cast(), tail);
            }
        }
        debug_assert_eq!(head + len + tail, total);
        Ok(Mapping {
            ptr: start as *mut u8,
            len,
        })
    }

    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `data` to offset `off`.
    pub fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len);
        // SAFETY: in bounds of our mapping; the guest is not running yet.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len()) }
    }

    pub fn madvise(&self, off: u64, len: u64, advice: i32) -> Result<(), i32> {
        assert!(off + len <= self.len as u64);
        // SAFETY: a range of our own mapping; the advice values used here
        // never make Rust-visible memory invalid (nothing borrows it).
        let r = unsafe { libc::madvise(self.ptr.add(off as usize).cast(), len as usize, advice) };
        if r != 0 {
            return Err(errno());
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Guest RAM: one host mapping at `RAM_GPA`, split into regions.
pub struct GuestRam {
    pub map: Mapping,
    /// The memfd for memfd/hugetlbfs backing.
    pub fd: Option<OwnedFd>,
    /// (gpa, size) of each region.
    pub regions: Vec<(u64, u64)>,
}

impl GuestRam {
    pub fn new(backing: Backing, size: u64, regions: usize) -> Result<GuestRam, String> {
        let g = backing.granule();
        if size == 0 || size > RAM_MAX || !size.is_multiple_of(g) {
            return Err(format!(
                "--mem {size:#x}: must be a multiple of {g:#x} bytes (the {backing} granule), at most {RAM_MAX:#x}"
            ));
        }
        if regions == 0 || (size / g) < regions as u64 {
            return Err(format!(
                "--regions {regions}: between 1 and {} for {size:#x} bytes",
                size / g
            ));
        }
        let len = size as usize;
        let (map, fd) = match backing {
            Backing::Anon | Backing::Thp => {
                let m = Mapping::anon_aligned(len, HUGE as usize)?;
                let advice = if backing == Backing::Thp {
                    libc::MADV_HUGEPAGE
                } else {
                    libc::MADV_NOHUGEPAGE
                };
                m.madvise(0, size, advice)
                    .map_err(|e| format!("madvise({advice}) of guest RAM: errno {e}"))?;
                (m, None)
            }
            Backing::Memfd | Backing::Hugetlbfs => {
                let flags = if backing == Backing::Hugetlbfs {
                    libc::MFD_CLOEXEC | libc::MFD_HUGETLB | libc::MFD_HUGE_2MB
                } else {
                    libc::MFD_CLOEXEC
                };
                // SAFETY: a NUL-terminated name; returns a new fd or -1.
                let raw = unsafe { libc::memfd_create(c"mshv-demo-ram".as_ptr(), flags) };
                if raw < 0 {
                    return Err(os_err("memfd_create"));
                }
                // SAFETY: a fresh fd that nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                // SAFETY: plain syscall on our fd.
                if unsafe { libc::ftruncate(fd.as_raw_fd(), size as i64) } != 0 {
                    return Err(os_err("ftruncate of the memfd"));
                }
                let m = Mapping::new(len, libc::MAP_SHARED, fd.as_raw_fd()).map_err(|e| {
                    if backing == Backing::Hugetlbfs {
                        format!("{e} (hugetlbfs needs {} free 2 MiB pages: echo N > /proc/sys/vm/nr_hugepages)", size / HUGE)
                    } else {
                        e
                    }
                })?;
                (m, Some(fd))
            }
        };
        // Region sizes: equal multiples of the granule, the last one takes
        // the rest.
        let per = (size / g / regions as u64) * g;
        let mut list = Vec::with_capacity(regions);
        for i in 0..regions as u64 {
            let off = i * per;
            let len = if i + 1 == regions as u64 {
                size - off
            } else {
                per
            };
            list.push((RAM_GPA + off, len));
        }
        Ok(GuestRam {
            map,
            fd,
            regions: list,
        })
    }

    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    /// Drops the content of `[gpa, gpa + len)` (it reads back as zeros):
    /// MADV_DONTNEED on private memory, a punched hole in a memfd.
    pub fn punch(&self, gpa: u64, len: u64) -> Result<(), String> {
        let off = gpa - RAM_GPA;
        match &self.fd {
            None => self
                .map
                .madvise(off, len, libc::MADV_DONTNEED)
                .map_err(|e| format!("MADV_DONTNEED at GPA {gpa:#x}: errno {e}")),
            Some(fd) => {
                // SAFETY: plain syscall on our fd.
                let r = unsafe {
                    libc::fallocate(
                        fd.as_raw_fd(),
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        off as i64,
                        len as i64,
                    )
                };
                if r != 0 {
                    return Err(os_err(&format!("fallocate(PUNCH_HOLE) at GPA {gpa:#x}")));
                }
                Ok(())
            }
        }
    }
}

/// The partition with its memory mapped.
pub struct Vm {
    pub vm: VmFd,
    pub code: Mapping,
    pub ram: GuestRam,
}

/// Maps `size` bytes at `uaddr` at `gpa`, writable and, with `exec`,
/// executable.
fn map(vm: &VmFd, gpa: u64, size: u64, uaddr: u64, exec: bool) -> Result<(), mshv_mini_vmm::Error> {
    let mut flags = 1u8 << MSHV_SET_MEM_BIT_WRITABLE;
    if exec {
        flags |= 1 << MSHV_SET_MEM_BIT_EXECUTABLE;
    }
    partition::map_user(vm, uaddr, size, gpa / PAGE, flags)
}

impl Vm {
    /// Creates and initializes a partition, maps the code region (with
    /// `image` at IMAGE_GPA) and guest RAM.
    pub fn new(mshv: &Mshv, image: &[u8], ram: GuestRam) -> Result<Vm, String> {
        if image.len() > IMAGE_MAX {
            return Err(format!(
                "guest image of {} bytes: at most {IMAGE_MAX:#x}",
                image.len()
            ));
        }
        let vm = partition::create(mshv).map_err(|e| format!("create partition: {e}"))?;
        let code = Mapping::anon_aligned(CODE_SIZE as usize, PAGE as usize)?;
        code.write((IMAGE_GPA - CODE_GPA) as usize, image);
        map(&vm, CODE_GPA, CODE_SIZE, code.addr(), true)
            .map_err(|e| format!("map the code region: {}", e.err))?;
        for &(gpa, size) in &ram.regions {
            let uaddr = ram.map.addr() + (gpa - RAM_GPA);
            map(&vm, gpa, size, uaddr, false)
                .map_err(|e| format!("map RAM region at GPA {gpa:#x} size {size:#x}: {}", e.err))?;
        }
        Ok(Vm { vm, code, ram })
    }

    /// Writes VP `vp`'s parameter block (dwords).
    pub fn set_params(&self, vp: usize, words: &[u32]) {
        assert!(words.len() * 4 <= PARAMS_SIZE as usize && vp < MAX_VCPUS);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.code
            .write((PARAMS_GPA + vp as u64 * PARAMS_SIZE) as usize, &bytes);
    }

    /// Creates VP `vp` in 32-bit flat protected mode at IMAGE_GPA, with its
    /// stack and EBP = its parameter block.
    pub fn create_vp(&self, vp: usize) -> Result<VcpuFd, String> {
        let vcpu = partition::create_vp(&self.vm, vp as u8)
            .map_err(|e| format!("create VP {vp}: {}", e.err))?;
        let stack = STACKS_GPA + (vp as u64 + 1) * 0x400;
        let params = PARAMS_GPA + vp as u64 * PARAMS_SIZE;
        enter_protected_mode(
            &vcpu,
            IMAGE_GPA,
            stack,
            &[reg64(hv_register_name_HV_X64_REGISTER_RBP, params)],
        )
        .map_err(|e| format!("VP {vp}: {e}"))?;
        Ok(vcpu)
    }
}
