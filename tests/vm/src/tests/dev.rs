// SPDX-License-Identifier: GPL-2.0
//
// The device node, and creating a partition and VPs the normal way.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use mshv_bindings::{
    hv_register_name_HV_X64_REGISTER_CR0, hv_register_name_HV_X64_REGISTER_CS,
    hv_register_name_HV_X64_REGISTER_RFLAGS, hv_register_name_HV_X64_REGISTER_RIP,
};

use crate::util::*;
use crate::vmm::*;
use crate::{ensure, ensure_eq, fail, note};

/// /dev/mshv is a character device, mode 0600, owned by root; open and
/// close work.
pub fn dev_node_mode() -> TResult {
    let md = fs::metadata("/dev/mshv").ctx("stat /dev/mshv")?;
    ensure!(
        md.file_type().is_char_device(),
        "/dev/mshv is not a character device ({:?})",
        md.file_type()
    );
    ensure_eq!(
        format!("{:o}", md.mode() & 0o7777),
        "600",
        "permission bits of /dev/mshv"
    );
    ensure_eq!(md.uid(), 0, "owner uid of /dev/mshv");
    let rdev = md.rdev();
    note!(
        "/dev/mshv: char {}:{}",
        libc::major(rdev),
        libc::minor(rdev)
    );

    // open + close, twice, with the flags mshv-ioctls uses and plain O_RDWR.
    for flags in [
        libc::O_RDWR | libc::O_CLOEXEC,
        libc::O_RDWR | libc::O_NONBLOCK,
    ] {
        // SAFETY: constant path.
        let fd = unsafe { libc::open(c"/dev/mshv".as_ptr(), flags) };
        ensure!(
            fd >= 0,
            "open(/dev/mshv, {flags:#x})\nexpected: a descriptor\nactual:   {}",
            errname(errno())
        );
        // SAFETY: our descriptor.
        let r = unsafe { libc::close(fd) };
        ensure_eq!(r, 0, "close of /dev/mshv");
    }
    let mshv = open_mshv()?;
    drop(mshv);
    Ok(())
}

/// A process without root (uid/gid 65534, no capabilities) cannot open
/// /dev/mshv: EACCES.
pub fn dev_nonroot_refused() -> TResult {
    // SAFETY: the child only makes async-signal-safe calls and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail!("fork: {}", errname(errno()));
    }
    if pid == 0 {
        // Exit codes: errno of open, 200 = open succeeded, 201..203 = the
        // identity change failed.
        // SAFETY: plain syscalls in the child.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 {
                libc::_exit(201);
            }
            if libc::setgid(65534) != 0 {
                libc::_exit(202);
            }
            if libc::setuid(65534) != 0 || libc::geteuid() != 65534 {
                libc::_exit(203);
            }
            let fd = libc::open(c"/dev/mshv".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::_exit(200);
            }
            let e = *libc::__errno_location();
            libc::_exit(if (1..200).contains(&e) { e } else { 199 });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure_eq!(r, pid, "waitpid");
    ensure!(
        libc::WIFEXITED(status),
        "the unprivileged child died abnormally (status {status:#x})"
    );
    let code = libc::WEXITSTATUS(status);
    match code {
        200 => fail!(
            "open(/dev/mshv) as uid 65534\nexpected: failure {}\nactual:   success",
            errname(libc::EACCES)
        ),
        201..=203 => fail!("the child could not drop root (step {})", code - 200),
        e => ensure_eq!(
            errname(e),
            errname(libc::EACCES),
            "errno of open(/dev/mshv) as uid 65534"
        ),
    }
    Ok(())
}

fn cloexec(fd: i32) -> bool {
    // SAFETY: F_GETFD on a descriptor we hold.
    let f = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    f >= 0 && f & libc::FD_CLOEXEC != 0
}

/// The mshv-ioctls path a VMM takes (create_vm → v2 CREATE_PARTITION, early
/// property, INITIALIZE twice, CREATE_VP 0 and 1), the fds are O_CLOEXEC, a new
/// VP is in the x86 reset state, the partition has its debugfs stats.
pub fn create_partition_and_vp() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    ensure!(
        cloexec(p.vm.as_raw_fd()),
        "the partition fd does not have FD_CLOEXEC"
    );
    p.vm.initialize().map_err(|e| {
        Failure::Fail(format!(
            "a second MSHV_INITIALIZE_PARTITION must succeed (idempotent), got {}",
            show_err(e)
        ))
    })?;

    let vp0 = p.vcpu(0)?;
    ensure!(
        cloexec(vp0.as_raw_fd()),
        "the VP fd does not have FD_CLOEXEC"
    );
    let vp1 = p.vcpu(1)?;

    for (i, vp) in [(0, &vp0), (1, &vp1)] {
        let rip = get_reg64(vp, hv_register_name_HV_X64_REGISTER_RIP)?;
        ensure_eq!(Hex(rip), Hex(0xfff0), "RIP of new VP {i} (reset state)");
        let cs = get_seg(vp, hv_register_name_HV_X64_REGISTER_CS)?;
        let (sel, base) = (cs.selector, cs.base);
        ensure_eq!(Hex(sel as u64), Hex(0xf000), "CS selector of new VP {i}");
        ensure_eq!(Hex(base), Hex(0xffff_0000), "CS base of new VP {i}");
        let rflags = get_reg64(vp, hv_register_name_HV_X64_REGISTER_RFLAGS)?;
        ensure_eq!(Hex(rflags), Hex(0x2), "RFLAGS of new VP {i}");
        let cr0 = get_reg64(vp, hv_register_name_HV_X64_REGISTER_CR0)?;
        ensure_eq!(cr0 & 1, 0, "CR0.PE of new VP {i} (real mode), CR0 {cr0:#x}");
    }

    // The register page mshv-ioctls maps (the crate tolerates ENODEV, so a
    // driver that refused the mmap would go unnoticed by a VMM): the driver
    // offers it on every VP.
    ensure!(
        vp0.get_vp_reg_page().is_some() && vp1.get_vp_reg_page().is_some(),
        "VP register pages mapped: VP 0 {}, VP 1 {}",
        vp0.get_vp_reg_page().is_some(),
        vp1.get_vp_reg_page().is_some()
    );

    // A partition with no memory and no VP run has counted nothing.
    let dir = p.debugfs_dir()?;
    let stats = p.stats()?;
    note!("{}: {}", dir.display(), show_kv(&stats));
    for name in ["gpa_intercepts", "mapped_4k", "mapped_2m", "invalidations"] {
        ensure_eq!(stats[name], 0, "{name} of a partition that never ran");
    }

    let live = live_objects()?;
    note!("live_objects: {}", show_kv(&live));
    ensure!(
        live["partitions"] >= 1 && live["vps"] >= 2,
        "live_objects while 1 partition with 2 VPs exists: {}",
        show_kv(&live)
    );
    Ok(())
}

/// `delete_module("mshv_rs", O_NONBLOCK)`: 0 or the errno.
fn try_unload() -> i32 {
    let name = c"mshv_rs";
    // SAFETY: a NUL-terminated name and a flag word; the kernel copies them.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    if r == 0 {
        0
    } else {
        errno()
    }
}

/// Unloading the module while a partition lives is refused (EWOULDBLOCK:
/// the module's reference count is not zero), with
/// /dev/mshv open, with only the partition fd left, and with only a VP fd
/// left (a VP fd holds its partition): every fd holds the module. The
/// module stays loaded and usable.
pub fn unload_refused_while_partition_lives() -> TResult {
    let mshv = open_mshv()?;
    let (p, code, vcpu) = monitor_partition()?;
    let expect_busy = |when: &str| -> TResult {
        match try_unload() {
            0 => fail!("delete_module succeeded {when}: the module is gone under live fds"),
            // A module whose reference count is not zero: EWOULDBLOCK
            // with O_NONBLOCK (kernel/module/main.c, try_stop_module).
            e => ensure_eq!(
                errname(e),
                errname(libc::EWOULDBLOCK),
                "delete_module {when}"
            ),
        }
        Ok(())
    };
    expect_busy("with /dev/mshv, a partition and a VP open")?;
    drop(mshv);
    expect_busy("with the partition and VP fds open")?;
    drop(p);
    expect_busy("with only the VP fd open")?;
    // The VP still runs: its partition lives through it.
    let mut m = Monitor::start(&vcpu)?;
    m.write(0x8000, 0x10ad)?;
    ensure_eq!(
        m.read(0x8000)?,
        0x10ad,
        "guest read back after the refused unloads"
    );
    drop(vcpu);
    drop(code);
    ensure!(
        std::path::Path::new("/sys/module/mshv_rs").exists(),
        "the module is still loaded"
    );
    Ok(())
}
