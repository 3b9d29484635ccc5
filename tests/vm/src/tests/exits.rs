// SPDX-License-Identifier: GPL-2.0
//
// Running guests: port I/O and HLT from the reset vector, intercepts that
// reach the VMM (unmapped GPA, write to a read-only region, unsupported
// opcode) and RUN_VP interrupted by a signal.

use std::time::{Duration, Instant};

use mshv_bindings::hv_register_name_HV_X64_REGISTER_RIP;

use crate::guest;
use crate::uapi::*;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure, ensure_eq, fail, note};

/// The real-mode guest at the reset vector (region 0xFFFF0000..4 GiB) prints
/// "hello\n" on port 0x3F8, reads a byte from port 0xE0, echoes it plus one
/// on port 0xE1 and halts.
pub fn guest_io_and_halt() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let mut rom = Mmap::anon(0x10000)?;
    rom.bytes_mut(0, guest::HELLO16.len())
        .copy_from_slice(guest::HELLO16);
    p.map(&rom, 0, 0x10000, 0xffff0, MEM_RWX)?;
    let vcpu = p.vcpu(0)?;

    use guest::hello16::{HLT_INSN, START};
    // The listing the RIP checks below assume: the HLT follows 0x1b bytes
    // of code (hello16.S).
    ensure_eq!(Hex(HLT_INSN - START), Hex(0x1b), "hello16's layout");
    let mut out = Vec::new();
    let mut echo = None;
    let mut halted = None;
    for _ in 0..64 {
        let exit = run(&vcpu).map_err(|e| {
            Failure::Fail(format!(
                "MSHV_RUN_VP failed: {} (serial output so far {:?})",
                errname(e),
                String::from_utf8_lossy(&out)
            ))
        })?;
        match exit {
            Exit::Io {
                port: 0x3f8,
                write: true,
                size,
                rax,
                len,
                rip,
                ..
            } => {
                ensure_eq!(size, 1, "access size of OUT DX, AL ({exit})");
                ensure_eq!(len, 1, "instruction_length of OUT DX, AL ({exit})");
                // _start: MOV DX, imm16 (3 bytes), then MOV AL, imm8 (2) and
                // OUT DX, AL (1) per character.
                let want = START + 5 + 3 * out.len() as u64;
                ensure_eq!(
                    Hex(rip),
                    Hex(want),
                    "RIP of OUT #{} to port 0x3f8",
                    out.len()
                );
                out.push(rax as u8);
                complete_io(&vcpu, &exit, None)?;
            }
            Exit::Io {
                port: 0xe0,
                write: false,
                size,
                len,
                rip,
                ..
            } => {
                ensure_eq!(size, 1, "access size of IN AL, imm8 ({exit})");
                ensure_eq!(len, 2, "instruction_length of IN AL, imm8 ({exit})");
                ensure_eq!(Hex(rip), Hex(START + 0x15), "RIP of IN AL, 0xe0");
                complete_io(&vcpu, &exit, Some(0x5a))?;
            }
            Exit::Io {
                port: 0xe1,
                write: true,
                rax,
                len,
                rip,
                ..
            } => {
                ensure_eq!(len, 2, "instruction_length of OUT imm8, AL ({exit})");
                // IN (2 bytes), ADD AL, 1 (2 bytes), then this OUT.
                ensure_eq!(Hex(rip), Hex(START + 0x19), "RIP of OUT 0xe1, AL");
                echo = Some(rax as u8);
                complete_io(&vcpu, &exit, None)?;
            }
            Exit::Halt { rip } => {
                halted = Some(rip);
                break;
            }
            other => fail!(
                "unexpected exit {other} (serial output so far {:?})",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    ensure_eq!(
        String::from_utf8_lossy(&out),
        "hello\n",
        "bytes written to port 0x3f8"
    );
    ensure_eq!(
        echo.map(|b| Hex(b as u64)),
        Some(Hex(0x5b)),
        "byte echoed on port 0xe1 (the VMM returned 0x5a to IN 0xe0; the guest adds 1)"
    );
    let Some(rip) = halted else {
        fail!("the guest did not halt within 64 exits");
    };
    let h = guest::hello16::HLT_INSN;
    ensure!(
        rip == h || rip == h + 1,
        "HVMSG_X64_HALT rip\nexpected: {h:#x} (hlt_insn) or {:#x}\nactual:   {rip:#x}",
        h + 1
    );
    Ok(())
}

/// A region mapped without WRITABLE: guest reads see the VMM's bytes, a guest
/// write gives HVMSG_GPA_INTERCEPT (write access, faulting GPA) to the VMM and
/// changes nothing. Once with a read-write VMA, once with a read-only VMA;
/// then a region mapped WRITABLE over a read-only (`PROT_READ`) VMA, which
/// must behave the same: the guest may write only where the VMM may.
pub fn readonly_region() -> TResult {
    const RO_SIZE: usize = 64 * 1024;
    const GFN_RW_VMA: u64 = 0x200;
    const GFN_RO_VMA: u64 = 0x300;
    const GFN_W_OVER_RO: u64 = 0x400;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;

    let mut rw_vma = Mmap::anon(RO_SIZE)?;
    let mut ro_vma = Mmap::anon(RO_SIZE)?;
    let mut ro_vma_w = Mmap::anon(RO_SIZE)?;
    let seed = 0x7e57_0001;
    fill_pattern(&mut rw_vma, 0, RO_SIZE, GFN_RW_VMA * PAGE as u64, seed);
    fill_pattern(&mut ro_vma, 0, RO_SIZE, GFN_RO_VMA * PAGE as u64, seed);
    fill_pattern(&mut ro_vma_w, 0, RO_SIZE, GFN_W_OVER_RO * PAGE as u64, seed);
    ro_vma.mprotect(0, RO_SIZE, libc::PROT_READ)?;
    ro_vma_w.mprotect(0, RO_SIZE, libc::PROT_READ)?;
    p.map(&rw_vma, 0, RO_SIZE, GFN_RW_VMA, MEM_EXECUTABLE)?;
    p.map(&ro_vma, 0, RO_SIZE, GFN_RO_VMA, MEM_EXECUTABLE)?;
    p.map(&ro_vma_w, 0, RO_SIZE, GFN_W_OVER_RO, MEM_RWX)?;

    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    for (name, gfn, mem) in [
        ("read-write VMA", GFN_RW_VMA, &rw_vma),
        ("read-only VMA", GFN_RO_VMA, &ro_vma),
        ("WRITABLE over a read-only VMA", GFN_W_OVER_RO, &ro_vma_w),
    ] {
        let base = (gfn * PAGE as u64) as u32;
        m.expect_pattern(
            base,
            RO_SIZE,
            seed,
            &format!("read-only region ({name}), guest read"),
        )?;

        let off = 0x1230usize;
        let gpa = base + off as u32;
        m.begin(CMD_WRITE, &[gpa, 0xbad0_beef])?;
        let exit = m.run()?;
        expect_mem_exit(
            &exit,
            MemKind::Intercept,
            ACCESS_WRITE,
            gpa as u64,
            guest::monitor32::WRITE_INSN,
            &[0x89, 0x07],
            &format!("guest write to the read-only region ({name})"),
        )?;
        ensure_eq!(
            Hex(mem.read_u32(off) as u64),
            Hex(pattern_word(gpa as u64, seed) as u64),
            "the VMM's view of the dword the guest tried to write ({name})"
        );
        // Skip the write as a VMM would after deciding to drop it.
        m.jump(guest::monitor32::WRITE_END, None)?;
        let (_, r) = m.finish("WRITE after the skipped store")?;
        ensure_eq!(Hex(r as u64), Hex(0xbad0_beef), "WRITE result");
        m.expect_pattern(
            base,
            RO_SIZE,
            seed,
            &format!("read-only region ({name}) after the refused write"),
        )?;
    }

    // The VMM can still change a read-only region's bytes through a writable
    // VMA; the guest sees the change.
    let off = 0x2000usize;
    rw_vma.write_u32(off, 0x1234_5678);
    let got = m.read((GFN_RW_VMA * PAGE as u64) as u32 + off as u32)?;
    ensure_eq!(
        Hex(got as u64),
        Hex(0x1234_5678),
        "guest read of a dword the VMM changed in the read-only region"
    );
    p.note_stats("at the end");
    Ok(())
}

/// A region mapped without EXECUTABLE: the guest reads it, but an
/// instruction fetch there gives HVMSG_GPA_INTERCEPT with the execute
/// access type at that GPA (RIP there too) to the VMM, and nothing maps it
/// executable behind the VMM's back: the same fetch again gives the same
/// exit.
pub fn nonexec_region_fetch_intercept() -> TResult {
    const GFN: u64 = 0x500;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let data = Mmap::anon(64 * 1024)?;
    // HLT, NOPs: what the guest would run if the fetch were allowed.
    data.write_u32(0x100, 0x9090_90f4);
    p.map(&data, 0, 64 * 1024, GFN, MEM_WRITABLE)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    let gpa = GFN * PAGE as u64 + 0x100;
    ensure_eq!(
        Hex(m.read(gpa as u32)? as u64),
        Hex(0x9090_90f4),
        "guest read of the non-executable region"
    );
    for round in 1..=2 {
        m.jump(gpa, None)?;
        let exit = m.run()?;
        expect_mem_exit(
            &exit,
            MemKind::Intercept,
            ACCESS_EXECUTE,
            gpa,
            gpa,
            &[],
            &format!("instruction fetch from the non-executable region (round {round})"),
        )?;
    }
    Ok(())
}

/// An access to a GPA no region covers returns HVMSG_UNMAPPED_GPA with the
/// GPA, access type and RIP; the VMM emulates it (MMIO) and the guest goes on.
pub fn unmapped_gpa_exit() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let data = Mmap::anon(MIB)?;
    p.map(&data, 0, MIB, 0x100, MEM_RWX)?;
    data.write_u32(0x40, 0x600d_f00d);
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;

    let got = m.read(0x10_0040)?;
    ensure_eq!(
        Hex(got as u64),
        Hex(0x600d_f00d),
        "guest read inside the region"
    );

    // Reads: far away, right after the data region, right after the code region.
    for (gpa, value) in [
        (0x4000_0000u32, 0x1234_5678u32),
        (0x20_0000, 0x2222_2222),
        (0x1_0000, 0x3333_3333),
    ] {
        m.begin(CMD_READ, &[gpa])?;
        let exit = m.run()?;
        expect_mem_exit(
            &exit,
            MemKind::Unmapped,
            ACCESS_READ,
            gpa as u64,
            guest::monitor32::READ_INSN,
            &[0x8b, 0x06],
            &format!("guest read of unmapped GPA {gpa:#x}"),
        )?;
        // Emulate the load: EAX = value, RIP past the instruction.
        m.jump(guest::monitor32::READ_END, Some(value as u64))?;
        let (_, r) = m.finish("READ after the emulated load")?;
        ensure_eq!(
            Hex(r as u64),
            Hex(value as u64),
            "the value the VMM supplied for the unmapped read of {gpa:#x}"
        );
    }

    // A write.
    let gpa = 0x4000_1008u32;
    m.begin(CMD_WRITE, &[gpa, 0xcafe_babe])?;
    let exit = m.run()?;
    expect_mem_exit(
        &exit,
        MemKind::Unmapped,
        ACCESS_WRITE,
        gpa as u64,
        guest::monitor32::WRITE_INSN,
        &[0x89, 0x07],
        "guest write to an unmapped GPA",
    )?;
    m.jump(guest::monitor32::WRITE_END, None)?;
    let (_, r) = m.finish("WRITE after the emulated store")?;
    ensure_eq!(Hex(r as u64), Hex(0xcafe_babe), "WRITE result");

    let got = m.read(0x10_0040)?;
    ensure_eq!(
        Hex(got as u64),
        Hex(0x600d_f00d),
        "guest read inside the region afterwards"
    );
    Ok(())
}

/// UD2 in a guest without an IDT ends the run with
/// HVMSG_UNRECOVERABLE_EXCEPTION at the UD2. On Hyper-V the #UD is injected
/// and, monitor32 having no IDT, escalates to a triple fault, which is
/// reported so; the simulator does not model exception delivery and
/// reports the UD2 itself (an emulator limitation, same message and RIP).
pub fn unsupported_opcode_exit() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    let got = m.read(guest::monitor32::LOAD as u32)?;
    ensure_eq!(
        Hex(got as u64),
        Hex(u32::from_le_bytes(guest::MONITOR32[..4].try_into().unwrap()) as u64),
        "guest read of its own first code bytes"
    );
    m.begin(CMD_UD2, &[])?;
    let exit = m.run()?;
    match exit {
        Exit::Unrecoverable { rip } => {
            ensure_eq!(
                Hex(rip),
                Hex(guest::monitor32::UD2_INSN),
                "RIP of HVMSG_UNRECOVERABLE_EXCEPTION (ud2_insn)"
            );
            Ok(())
        }
        other => {
            fail!("guest executing UD2\nexpected: HVMSG_UNRECOVERABLE_EXCEPTION\nactual:   {other}")
        }
    }
}

extern "C" fn on_sigalrm(_: libc::c_int) {}

/// Installs a no-op SIGALRM handler without SA_RESTART.
pub(crate) fn install_sigalrm() -> TResult {
    // SAFETY: a zeroed sigaction with a valid handler.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigalrm as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()) != 0 {
            fail!("sigaction(SIGALRM): {}", errname(errno()));
        }
    }
    Ok(())
}

/// One-shot ITIMER_REAL in `ms` milliseconds.
pub(crate) fn arm_timer(ms: u64) -> TResult {
    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
        },
    };
    // SAFETY: a valid itimerval.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) } != 0 {
        fail!("setitimer: {}", errname(errno()));
    }
    Ok(())
}

/// RUN_VP on a guest that loops forever returns EINTR when a signal arrives
/// (SIGALRM after 200 ms, handler without SA_RESTART), again on a second run,
/// and the VP is then still at the loop.
pub fn run_vp_eintr() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let vcpu = p.vcpu(0)?;
    let mut m = Monitor::start(&vcpu)?;
    m.begin(CMD_SPIN, &[])?;
    install_sigalrm()?;

    for round in 1..=2 {
        note!("run {round}: MSHV_RUN_VP on `jmp .` with SIGALRM due in 200 ms");
        arm_timer(200)?;
        let t0 = Instant::now();
        let r = m.run_raw();
        let dt = t0.elapsed();
        arm_timer(0)?;
        match r {
            Err(e) => ensure_eq!(
                errname(e),
                errname(libc::EINTR),
                "MSHV_RUN_VP errno after SIGALRM (run {round})"
            ),
            Ok(exit) => fail!(
                "MSHV_RUN_VP on a spinning guest (run {round})\nexpected: failure EINTR after SIGALRM\nactual:   {exit}"
            ),
        }
        note!("run {round}: EINTR after {:.0} ms", dt.as_secs_f64() * 1e3);
        ensure!(
            dt >= Duration::from_millis(150),
            "MSHV_RUN_VP returned EINTR after only {dt:?}, before the 200 ms timer fired"
        );
        ensure!(
            dt < Duration::from_secs(10),
            "MSHV_RUN_VP took {dt:?} to return after the 200 ms timer fired"
        );
    }
    let rip = get_reg64(&vcpu, hv_register_name_HV_X64_REGISTER_RIP)?;
    ensure_eq!(
        Hex(rip),
        Hex(guest::monitor32::SPIN_INSN),
        "RIP after the interrupted runs (the `jmp .` at spin_insn)"
    );
    Ok(())
}

/// `mmap` of a VP fd at `pgoff` (in pages), `pages` long: the mapping or
/// the errno.
fn vp_mmap(fd: i32, pgoff: i64, pages: usize) -> Result<*mut u8, i32> {
    // SAFETY: a fresh shared mapping of the VP fd at an address the kernel
    // picks; the caller unmaps it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            pages * PAGE,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            pgoff * PAGE as i64,
        )
    };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p.cast())
    }
}

/// The VP fd's mmap offsets (upstream's MSHV_VP_MMAP_OFFSET_*): the
/// intercept-message page (offset 1) holds the message MSHV_RUN_VP just
/// returned; the GHCB page (offset 2) is ENODEV outside SEV-SNP; any other
/// offset, or more than one page, is EINVAL.
pub fn vp_mmap_offsets() -> TResult {
    use std::os::fd::AsRawFd;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let mut rom = Mmap::anon(0x10000)?;
    rom.bytes_mut(0, guest::HELLO16.len())
        .copy_from_slice(guest::HELLO16);
    p.map(&rom, 0, 0x10000, 0xffff0, MEM_RWX)?;
    let vcpu = p.vcpu(0)?;
    let fd = vcpu.as_raw_fd();

    let mut c = Checks::new();
    for (pgoff, pages, want, what) in [
        (2i64, 1usize, libc::ENODEV, "GHCB page (offset 2)"),
        (3, 1, libc::EINVAL, "offset 3"),
        (0x100, 1, libc::EINVAL, "offset 0x100"),
        (1, 2, libc::EINVAL, "two pages at offset 1"),
        (0, 2, libc::EINVAL, "two pages at offset 0"),
    ] {
        let r = vp_mmap(fd, pgoff, pages);
        if let Ok(ptr) = r {
            // SAFETY: the mapping just made.
            unsafe { libc::munmap(ptr.cast(), pages * PAGE) };
        }
        c.errno(
            &format!("mmap of the VP fd: {what}"),
            r.map(|_| 0),
            want,
            false,
        );
    }

    let page = match vp_mmap(fd, 1, 1) {
        Ok(ptr) => ptr,
        Err(e) => {
            c.failed(format!(
                "mmap of the intercept-message page (offset 1): {}",
                errname(e)
            ));
            return c.finish();
        }
    };
    /// Unmaps the message page however the test ends.
    struct Unmap(*mut u8);
    impl Drop for Unmap {
        fn drop(&mut self) {
            // SAFETY: our own one-page mapping.
            unsafe { libc::munmap(self.0.cast(), PAGE) };
        }
    }
    let _unmap = Unmap(page);
    let msg = vcpu
        .run()
        .map_err(|e| errno_failure("MSHV_RUN_VP", e.errno()))?;
    let exit = decode(&msg);
    // SAFETY: `hv_message` is plain data of 256 bytes.
    let returned = unsafe {
        std::slice::from_raw_parts(
            std::ptr::addr_of!(msg).cast::<u8>(),
            std::mem::size_of_val(&msg),
        )
    };
    // SAFETY: the mapped page is readable and PAGE bytes long.
    let mapped = unsafe { std::slice::from_raw_parts(page, returned.len()) };
    if mapped != returned {
        c.failed(format!(
            "the intercept-message page after RUN_VP returned {exit}\nexpected: the returned message {:02x?}\nactual:   {:02x?}",
            &returned[..32],
            &mapped[..32]
        ));
    }
    match exit {
        Exit::Io {
            port: 0x3f8,
            write: true,
            ..
        } => {}
        other => c.failed(format!(
            "the first exit of hello16\nexpected: OUT to port 0x3f8\nactual:   {other}"
        )),
    }
    c.finish()
}
