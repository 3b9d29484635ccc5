// SPDX-License-Identifier: GPL-2.0
//
// Interrupts and eventfds, with mshv-ioctls 0.7.1 calls as Cloud Hypervisor
// makes them: MSHV_IRQFD, MSHV_IOEVENTFD, MSHV_SET_MSI_ROUTING, and
// HVCALL_ASSERT_VIRTUAL_INTERRUPT through `request_virtual_interrupt`.
// Raw ioctls only where the crate cannot express the bad argument.

use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use mshv_bindings::{
    hv_interrupt_type_HV_X64_INTERRUPT_TYPE_FIXED, hv_interrupt_type_HV_X64_INTERRUPT_TYPE_NMI,
    hv_register_name_HV_X64_REGISTER_RIP, mshv_user_ioeventfd, mshv_user_irq_entry,
    mshv_user_irq_table, mshv_user_irqfd,
};
use mshv_ioctls::{InterruptRequest, IoEventAddress, NoDatamatch, VcpuFd, VmFd};

use crate::uapi::*;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::guest;
use crate::util::*;
use crate::vmm::*;
use crate::{ensure, ensure_eq, fail};

/// `MSHV_IRQFD_BIT_*`, `MSHV_IOEVENTFD_BIT_*`.
const IOEVENTFD_DATAMATCH: u32 = 1 << 0;
const IOEVENTFD_PIO: u32 = 1 << 1;
const IOEVENTFD_DEASSIGN: u32 = 1 << 2;

/// The count an eventfd has collected since the last read (reading resets
/// it): 0 when it has none, `u64::MAX` when the read fails otherwise.
fn signals(e: &EventFd) -> u64 {
    match e.read() {
        Ok(n) => n,
        Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => 0,
        Err(_) => u64::MAX,
    }
}

fn eventfd() -> TResult<EventFd> {
    EventFd::new(EFD_NONBLOCK).map_err(|e| Failure::Fail(format!("eventfd: {e}")))
}

/// The errno of a crate call that must fail, or a failure if it succeeded.
fn expect_err<T>(r: Result<T, mshv_ioctls::MshvError>, want: i32, what: &str) -> TResult {
    match r {
        Ok(_) => fail!(
            "{what}\nexpected: failure {}\nactual:   success",
            errname(want)
        ),
        Err(e) => {
            ensure_eq!(errname(err_no(e)), errname(want), "{what}");
            Ok(())
        }
    }
}

fn expect_ok<T>(r: Result<T, mshv_ioctls::MshvError>, what: &str) -> TResult<T> {
    r.map_err(|e| Failure::Fail(format!("{what}: {}", show_err(e))))
}

/// An MSI entry for `gsi` to APIC id `apic` with `data`.
fn msi(gsi: u32, apic: u32, data: u32) -> mshv_user_irq_entry {
    mshv_user_irq_entry {
        gsi,
        address_lo: 0xfee0_0000 | (apic << 12),
        address_hi: 0,
        data,
    }
}

/// A `mshv_user_irq_table` with `entries` (and header fields `nr`, `rsvd`),
/// laid out as the flexible array the kernel reads.
struct IrqTable(Vec<u32>);

impl IrqTable {
    fn new(entries: &[mshv_user_irq_entry]) -> Self {
        Self::raw(entries.len() as u32, 0, entries)
    }

    fn raw(nr: u32, rsvd: u32, entries: &[mshv_user_irq_entry]) -> Self {
        let mut v = vec![nr, rsvd];
        for e in entries {
            v.extend_from_slice(&[e.gsi, e.address_lo, e.address_hi, e.data]);
        }
        IrqTable(v)
    }

    fn get(&self) -> &mshv_user_irq_table {
        // SAFETY: the buffer holds the 8-byte header and `nr` (or fewer, for
        // the oversize case the kernel rejects before reading) 16-byte
        // entries, 4-byte aligned like the struct.
        unsafe { &*(self.0.as_ptr() as *const mshv_user_irq_table) }
    }
}

fn set_routes(vm: &VmFd, entries: &[mshv_user_irq_entry]) -> TResult {
    expect_ok(
        vm.set_msi_routing(IrqTable::new(entries).get()),
        "MSHV_SET_MSI_ROUTING",
    )
}

/// An `EventFd` on a raw fd number the test does not own (for EBADF and
/// non-eventfd cases); it must be forgotten, not dropped.
fn borrowed_eventfd(fd: i32) -> std::mem::ManuallyDrop<EventFd> {
    // SAFETY: the EventFd is never dropped, so it never closes `fd`; the
    // crate only passes the number to the kernel.
    std::mem::ManuallyDrop::new(unsafe { EventFd::from_raw_fd(fd) })
}

fn raw_irqfd(vm: &VmFd, a: mshv_user_irqfd) -> IoctlResult {
    let mut a = a;
    // SAFETY: a valid mshv_user_irqfd.
    unsafe { ioctl_raw(vm.as_raw_fd(), mshv_ioctls::MSHV_IRQFD() as u64, &mut a) }
}

fn raw_ioeventfd(vm: &VmFd, a: mshv_user_ioeventfd) -> IoctlResult {
    let mut a = a;
    // SAFETY: a valid mshv_user_ioeventfd.
    unsafe { ioctl_raw(vm.as_raw_fd(), mshv_ioctls::MSHV_IOEVENTFD() as u64, &mut a) }
}

fn expect_raw(r: IoctlResult, want: i32, what: &str) -> TResult {
    ensure_eq!(show_ioctl(r), show_ioctl(Err(want)), "{what}");
    Ok(())
}

/// MSHV_IRQFD assign and deassign, and upstream's errors.
pub fn irqfd_assign_errors() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let vm = &p.vm;
    let a = eventfd()?;
    let b = eventfd()?;
    // A GSI without a route yet is fine ("premature" irqfd).
    expect_ok(vm.register_irqfd(&a, 5), "register_irqfd gsi 5")?;
    expect_err(
        vm.register_irqfd(&a, 6),
        libc::EBUSY,
        "the same eventfd again (other GSI)",
    )?;
    expect_ok(vm.register_irqfd(&b, 5), "a second eventfd on gsi 5")?;
    // Deassign matches eventfd and GSI; nothing matching is not an error.
    expect_ok(vm.unregister_irqfd(&a, 6), "unregister a wrong GSI")?;
    expect_err(
        vm.register_irqfd(&a, 7),
        libc::EBUSY,
        "still registered after a non-matching deassign",
    )?;
    expect_ok(vm.unregister_irqfd(&a, 5), "unregister_irqfd")?;
    expect_ok(vm.register_irqfd(&a, 7), "re-register after deassign")?;
    // Signalling an irqfd whose GSI has no route injects nothing and fails
    // nothing.
    a.write(1)
        .map_err(|e| Failure::Fail(format!("eventfd write: {e}")))?;

    // Bad fds.
    let closed = borrowed_eventfd(999_999);
    expect_err(
        vm.register_irqfd(&closed, 1),
        libc::EBADF,
        "an fd that is not open",
    )?;
    let null = std::fs::File::open("/dev/null").map_err(|e| Failure::Fail(format!("{e}")))?;
    let not_eventfd = borrowed_eventfd(null.as_raw_fd());
    expect_err(
        vm.register_irqfd(&not_eventfd, 1),
        libc::EINVAL,
        "an fd that is not an eventfd",
    )?;
    expect_err(
        vm.unregister_irqfd(&closed, 1),
        libc::EBADF,
        "deassign with an fd that is not open",
    )?;
    expect_raw(
        raw_irqfd(
            vm,
            mshv_user_irqfd {
                fd: b.as_raw_fd(),
                gsi: 1,
                flags: 1 << 2,
                ..Default::default()
            },
        ),
        libc::EINVAL,
        "unknown irqfd flag bit 2",
    )?;

    // Resampling needs a level-triggered route.
    let c = eventfd()?;
    let rs = eventfd()?;
    expect_err(
        vm.register_irqfd_with_resample(&c, &rs, 9),
        libc::EINVAL,
        "resample on a GSI without a route",
    )?;
    set_routes(vm, &[msi(9, 0, 0x30), msi(10, 0, 0x8000 | 0x31)])?;
    expect_err(
        vm.register_irqfd_with_resample(&c, &rs, 9),
        libc::EINVAL,
        "resample on an edge-triggered route",
    )?;
    expect_err(
        vm.register_irqfd_with_resample(&c, &closed, 10),
        libc::EBADF,
        "resample with a resamplefd that is not open",
    )?;
    expect_ok(
        vm.register_irqfd_with_resample(&c, &rs, 10),
        "resample on a level-triggered route",
    )?;
    drop(p);
    Ok(())
}

/// MSHV_IOEVENTFD: the forms the crate sends (wildcard, 32- and 64-bit
/// datamatch), collisions, deassign, PIO and the raw-argument errors.
pub fn ioeventfd_forms_and_errors() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let vm = &p.vm;
    let a = eventfd()?;
    let b = eventfd()?;
    let base = 0xd000_0000u64;
    let at = IoEventAddress::Mmio(base);
    expect_ok(
        vm.register_ioevent(&a, &at, NoDatamatch),
        "wildcard ioeventfd",
    )?;
    expect_err(
        vm.register_ioevent(&b, &at, NoDatamatch),
        libc::EEXIST,
        "a second wildcard at the same address and length",
    )?;
    // Length 4 is another registration than length 0 at the same address.
    expect_ok(
        vm.register_ioevent(&b, &at, 7u32),
        "datamatch u32 at the same address",
    )?;
    expect_err(
        vm.register_ioevent(&a, &at, 7u32),
        libc::EEXIST,
        "the same address, length and value",
    )?;
    expect_ok(vm.register_ioevent(&a, &at, 8u32), "another value")?;
    expect_ok(vm.register_ioevent(&a, &at, 7u64), "length 8")?;
    // PIO: the crate refuses it itself; the kernel does too.
    expect_err(
        vm.register_ioevent(&a, &IoEventAddress::Pio(0x60), NoDatamatch),
        libc::EOPNOTSUPP,
        "PIO through the crate",
    )?;
    let raw = |flags: u32, addr: u64, len: u32, rsvd: u8| mshv_user_ioeventfd {
        datamatch: 0,
        addr,
        len,
        fd: a.as_raw_fd(),
        flags,
        rsvd: [rsvd, 0, 0, 0],
    };
    expect_raw(
        raw_ioeventfd(vm, raw(IOEVENTFD_PIO, 0x60, 1, 0)),
        libc::EOPNOTSUPP,
        "PIO ioeventfd",
    )?;
    expect_raw(
        raw_ioeventfd(vm, raw(1 << 3, base + 0x100, 4, 0)),
        libc::EINVAL,
        "unknown flag bit 3",
    )?;
    expect_raw(
        raw_ioeventfd(vm, raw(0, base + 0x100, 4, 1)),
        libc::EINVAL,
        "rsvd not zero",
    )?;
    expect_raw(
        raw_ioeventfd(vm, raw(0, base + 0x100, 3, 0)),
        libc::EINVAL,
        "length 3",
    )?;
    expect_raw(
        raw_ioeventfd(vm, raw(0, u64::MAX - 1, 4, 0)),
        libc::EINVAL,
        "a range that wraps",
    )?;
    let closed = borrowed_eventfd(999_999);
    expect_err(
        vm.register_ioevent(&closed, &IoEventAddress::Mmio(base + 0x200), NoDatamatch),
        libc::EBADF,
        "an fd that is not open",
    )?;
    // Deassign must repeat the registration: a datamatch one is not found
    // with NoDatamatch (the crate's unregister always sends NoDatamatch).
    expect_err(
        vm.unregister_ioevent(&b, &at, NoDatamatch),
        libc::ENOENT,
        "NoDatamatch deassign of b (registered only with a datamatch)",
    )?;
    expect_ok(
        vm.unregister_ioevent(&a, &at, NoDatamatch),
        "unregister_ioevent",
    )?;
    expect_err(
        vm.unregister_ioevent(&a, &at, NoDatamatch),
        libc::ENOENT,
        "unregister_ioevent twice",
    )?;
    let r = raw_ioeventfd(
        vm,
        mshv_user_ioeventfd {
            datamatch: 7,
            addr: base,
            len: 4,
            fd: b.as_raw_fd(),
            flags: IOEVENTFD_DATAMATCH | IOEVENTFD_DEASSIGN,
            rsvd: [0; 4],
        },
    );
    ensure_eq!(
        show_ioctl(r),
        show_ioctl(Ok(0)),
        "deassign of b repeating its datamatch registration (len 4, value 7)"
    );
    // After removal the slot is free again.
    expect_ok(
        vm.register_ioevent(&b, &at, NoDatamatch),
        "wildcard after the deassign",
    )?;
    Ok(())
}

/// MSHV_SET_MSI_ROUTING: replaced wholesale, bounded size, upstream's checks.
pub fn msi_routing_set_replace_oversize() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let vm = &p.vm;
    expect_ok(
        vm.set_msi_routing(&mshv_user_irq_table::default()),
        "empty table (as the crate's own test)",
    )?;
    set_routes(vm, &[msi(0, 0, 0x30), msi(4095, 0, 0x31), msi(7, 0, 0x32)])?;
    // The largest table: every GSI once.
    let all: Vec<_> = (0..4096).map(|g| msi(g, 0, 0x20 + (g & 0x7f))).collect();
    set_routes(vm, &all)?;
    let bad = |entries: &[mshv_user_irq_entry], what: &str| {
        expect_err(
            vm.set_msi_routing(IrqTable::new(entries).get()),
            libc::EINVAL,
            what,
        )
    };
    bad(&[msi(3, 0, 0x30), msi(3, 1, 0x31)], "a GSI twice")?;
    bad(&[msi(4096, 0, 0x30)], "GSI 4096")?;
    let mut hi = msi(1, 0, 0x30);
    hi.address_hi = 1;
    bad(&[hi], "address_hi not zero")?;
    expect_err(
        vm.set_msi_routing(IrqTable::raw(4097, 0, &[]).get()),
        libc::EINVAL,
        "nr 4097 (more than MSHV_MAX_GUEST_IRQS)",
    )?;
    expect_err(
        vm.set_msi_routing(IrqTable::raw(1, 1, &[msi(1, 0, 0x30)]).get()),
        libc::EINVAL,
        "rsvd not zero",
    )?;
    // That a failed set leaves the previous table is checked by
    // irqfd_wakes_halted_vp (the wake-up after a refused set takes the old
    // table's vector). An empty table clears it.
    expect_ok(
        vm.set_msi_routing(&mshv_user_irq_table::default()),
        "clear the table",
    )?;
    Ok(())
}

/// Sets up irq32 at GPA 0x1000 on VP 0 of `p`, with the stack at 0xF000.
pub(crate) fn load_irq32(p: &Partition) -> TResult<(Mmap, VcpuFd)> {
    let mut code = Mmap::anon(CODE_SIZE)?;
    let off = guest::irq32::LOAD as usize;
    code.bytes_mut(off, guest::IRQ32.len())
        .copy_from_slice(guest::IRQ32);
    p.map(&code, 0, CODE_SIZE, 0, MEM_RWX)?;
    let vcpu = p.vcpu(0)?;
    enter_protected_mode(&vcpu, guest::irq32::START, 0xf000)?;
    Ok((code, vcpu))
}

/// Runs until the guest's next OUT, completes it, returns (port, value).
fn next_out(vcpu: &VcpuFd, what: &str) -> TResult<(u16, u32)> {
    let exit =
        run(vcpu).map_err(|e| Failure::Fail(format!("{what}: MSHV_RUN_VP: {}", errname(e))))?;
    match exit {
        Exit::Io {
            port,
            write: true,
            rax,
            ..
        } => {
            complete_io(vcpu, &exit, None)?;
            Ok((port, rax as u32))
        }
        other => fail!("{what}: expected an OUT, got {other}"),
    }
}

pub(crate) fn expect_out(vcpu: &VcpuFd, port: u16, value: u32, what: &str) -> TResult {
    let got = next_out(vcpu, what)?;
    ensure_eq!(
        (Hex(got.0 as u64), Hex(got.1 as u64)),
        (Hex(port as u64), Hex(value as u64)),
        "{what}: (port, value) of the guest's OUT"
    );
    Ok(())
}

/// Runs the VP, halted with interrupts enabled, while another thread calls
/// `signal` after a pause; RUN_VP must not return before `signal` was
/// called (ordering, not timing: the pause only makes a wrong early return
/// observable). Then the handler for `vector` must run (see irq32.S).
fn wake_with(
    vcpu: &VcpuFd,
    vector: u32,
    what: &str,
    signal: impl FnOnce() -> TResult + Send,
) -> TResult {
    let signalled = AtomicU32::new(0);
    let got = thread::scope(|s| {
        let h = s.spawn(|| {
            thread::sleep(Duration::from_millis(300));
            signalled.store(1, Ordering::SeqCst);
            signal()
        });
        let got = next_out(vcpu, what);
        let early = signalled.load(Ordering::SeqCst) == 0;
        let sent = h
            .join()
            .unwrap_or_else(|_| Err(Failure::Fail("signalling thread panicked".into())));
        sent?;
        let got = got?;
        ensure!(
            !early,
            "{what}: RUN_VP returned {got:x?} before the interrupt was raised: the halted VP did not wait"
        );
        Ok(got)
    })?;
    ensure_eq!(
        (Hex(got.0 as u64), Hex(got.1 as u64)),
        (Hex(0x24), Hex(vector as u64)),
        "{what}: the first thing after the wake-up is the handler of vector {vector:#x}"
    );
    expect_out(
        vcpu,
        0x25,
        1 << (vector - 64),
        &format!("{what}: ISR before EOI"),
    )?;
    expect_out(vcpu, 0x25, 0, &format!("{what}: ISR after EOI"))
}

/// The irq32 guest in `p`, an irqfd on GSI 5 routed to vector 0x40 (edge,
/// APIC 0), and the guest run until its tables are loaded: its code (keep it
/// mapped), VP 0 and the irqfd's eventfd.
fn irq32_with_irqfd(p: &Partition) -> TResult<(Mmap, VcpuFd, EventFd)> {
    let (code, vcpu) = load_irq32(p)?;
    set_routes(&p.vm, &[msi(5, 0, 0x40)])?;
    let efd = eventfd()?;
    expect_ok(p.vm.register_irqfd(&efd, 5), "register_irqfd gsi 5")?;
    expect_out(&vcpu, 0x22, 1, "tables loaded")?;
    Ok((code, vcpu, efd))
}

/// irqfd → MSI route → ASSERT_VIRTUAL_INTERRUPT → a halted VP wakes, takes
/// the interrupt through its IDT, EOIs (vector 0x40 through the xAPIC page,
/// 0x41 through the x2APIC EOI MSR) and resumes after its HLT. Then the
/// same after the routing table was replaced (another vector) and a
/// replacement was refused (the table stays), then through
/// `request_virtual_interrupt`, then an NMI with interrupts disabled.
pub fn irqfd_wakes_halted_vp() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let (_code, vcpu, efd) = irq32_with_irqfd(&p)?;
    let vm = &p.vm;
    let write = || {
        efd.write(1)
            .map_err(|e| Failure::Fail(format!("eventfd write: {e}")))
    };

    wake_with(&vcpu, 0x40, "irqfd, vector 0x40", write)?;
    expect_out(&vcpu, 0x22, 2, "back after the first HLT")?;

    // The table replaced: the same irqfd now raises vector 0x41. A set that
    // fails (GSI 5 twice, back to vector 0x40) must leave that table: the
    // wake-up below takes vector 0x41.
    set_routes(vm, &[msi(5, 0, 0x41)])?;
    expect_err(
        vm.set_msi_routing(IrqTable::new(&[msi(5, 0, 0x40), msi(5, 0, 0x40)]).get()),
        libc::EINVAL,
        "a routing table with GSI 5 twice",
    )?;
    wake_with(&vcpu, 0x41, "irqfd after the routes were replaced", write)?;
    expect_out(&vcpu, 0x22, 3, "back after the second HLT")?;

    // HVCALL_ASSERT_VIRTUAL_INTERRUPT as the crate sends it.
    wake_with(&vcpu, 0x40, "request_virtual_interrupt", || {
        let req = InterruptRequest {
            interrupt_type: hv_interrupt_type_HV_X64_INTERRUPT_TYPE_FIXED,
            apic_id: 0,
            vector: 0x40,
            level_triggered: false,
            logical_destination_mode: false,
            long_mode: false,
        };
        vm.request_virtual_interrupt(&req)
            .map_err(|e| Failure::Fail(format!("request_virtual_interrupt: {}", show_err(e))))
    })?;
    expect_out(&vcpu, 0x22, 4, "back after the third HLT")?;
    match run(&vcpu) {
        Ok(Exit::Halt { rip }) => {
            let h = guest::irq32::DONE_HLT;
            ensure!(
                rip == h || rip == h + 1,
                "HALT at done_hlt {h:#x} expected, got rip {rip:#x}"
            );
        }
        Ok(other) => fail!("cli; hlt: expected HVMSG_X64_HALT, got {other}"),
        Err(e) => fail!("cli; hlt: MSHV_RUN_VP: {}", errname(e)),
    }
    // An NMI (as Cloud Hypervisor sends one) is taken with IF clear: the
    // handler runs, IRETs to the JMP back to the HLT, which exits again.
    let nmi = InterruptRequest {
        interrupt_type: hv_interrupt_type_HV_X64_INTERRUPT_TYPE_NMI,
        apic_id: 0,
        vector: 0,
        level_triggered: false,
        logical_destination_mode: false,
        long_mode: false,
    };
    expect_ok(
        vm.request_virtual_interrupt(&nmi),
        "request_virtual_interrupt NMI",
    )?;
    expect_out(&vcpu, 0x26, 2, "NMI handler with IF clear")?;
    match run(&vcpu) {
        Ok(Exit::Halt { rip }) => {
            let h = guest::irq32::DONE_HLT;
            ensure!(
                rip == h || rip == h + 1,
                "HALT at done_hlt {h:#x} after the NMI expected, got rip {rip:#x}"
            );
        }
        Ok(other) => fail!("after the NMI: expected HVMSG_X64_HALT, got {other}"),
        Err(e) => fail!("after the NMI: MSHV_RUN_VP: {}", errname(e)),
    }
    Ok(())
}

/// Root scheduler: a scheduler signal that arrives while the VP's
/// `ROOT_DISPATCH_THREAD_BLOCKED` is still set (a stale kick, forced with
/// `sim/inject_stale_signal` right after the dispatch that blocked on the
/// guest's `sti; hlt`) must not make the root dispatch: it waits for a kick
/// *and* the counter clear, as upstream does. The real wake-up (an irqfd)
/// then works as usual: nothing lost, exactly one stale signal sent, and no
/// `DISPATCH_VP` found the VP's dispatch thread blocked.
pub fn root_stale_signal_keeps_vp_waiting() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let (_code, vcpu, efd) = irq32_with_irqfd(&p)?;
    let before = super::sched::sched_counters()?;
    super::sim::inject("inject_stale_signal", "1")?;
    let woke = wake_with(&vcpu, 0x40, "irqfd after a stale signal", || {
        efd.write(1)
            .map_err(|e| Failure::Fail(format!("eventfd write: {e}")))
    });
    super::sim::inject("inject_stale_signal", "0")?;
    woke?;
    expect_out(&vcpu, 0x22, 2, "back after the HLT")?;
    let after = super::sched::sched_counters()?;
    let grew = |k: &str| after[k] - before[k];
    ensure_eq!(grew("stale_signals"), 1, "stale signals the emulator sent");
    ensure_eq!(
        grew("dispatches_while_blocked"),
        0,
        "DISPATCH_VP calls while the VP's ROOT_DISPATCH_THREAD_BLOCKED was set"
    );
    Ok(())
}

/// A level-triggered route with a resamplefd: the guest's EOI of the
/// irqfd's vector signals the resamplefd (upstream: HVMSG_X64_APIC_EOI).
/// An ExtINT route of the same vector is resampled too, and, as upstream
/// does for ExtINT, its line is first cleared in the hypervisor with
/// exactly one `HVCALL_CLEAR_VIRTUAL_INTERRUPT`.
pub fn irqfd_resample_on_eoi() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let (_code, vcpu) = load_irq32(&p)?;
    let vm = &p.vm;
    // Level-triggered (data bit 15), vector 0x41; an edge route for 0x40;
    // a level ExtINT route (delivery mode 7, data bits 10:8) of 0x41.
    set_routes(
        vm,
        &[
            msi(3, 0, 0x8000 | 0x41),
            msi(4, 0, 0x40),
            msi(5, 0, 0x8000 | 0x700 | 0x41),
        ],
    )?;
    let efd = eventfd()?;
    let rs = eventfd()?;
    let edge = eventfd()?;
    let edge_rs_unused = eventfd()?;
    let ext = eventfd()?;
    let ext_rs = eventfd()?;
    expect_ok(
        vm.register_irqfd_with_resample(&efd, &rs, 3),
        "register_irqfd_with_resample gsi 3",
    )?;
    expect_ok(
        vm.register_irqfd_with_resample(&ext, &ext_rs, 5),
        "register_irqfd_with_resample gsi 5 (ExtINT)",
    )?;
    let cleared = sim_calls(0x0056)?;
    expect_ok(vm.register_irqfd(&edge, 4), "register_irqfd gsi 4")?;
    expect_out(&vcpu, 0x22, 1, "tables loaded")?;
    wake_with(&vcpu, 0x41, "level-triggered irqfd", || {
        efd.write(1)
            .map_err(|e| Failure::Fail(format!("eventfd write: {e}")))
    })?;
    // The EOI reaches the root as a SynIC message (HVMSG_X64_APIC_EOI),
    // asynchronously to the VP's next exit, on Hyper-V as in the emulator;
    // the driver hands it to the resampler from a work item. Wait for it.
    ensure!(
        readable_within(&rs, Duration::from_secs(10)),
        "resamplefd not signalled within 10 s of the guest's EOI of vector 0x41"
    );
    ensure_eq!(
        signals(&rs),
        1,
        "resamplefd after the guest's EOI of vector 0x41"
    );
    ensure!(
        readable_within(&ext_rs, Duration::from_secs(10)),
        "ExtINT route's resamplefd not signalled within 10 s of the EOI of vector 0x41"
    );
    ensure_eq!(
        signals(&ext_rs),
        1,
        "ExtINT route's resamplefd after the guest's EOI of vector 0x41"
    );
    ensure_eq!(
        sim_calls(0x0056)? - cleared,
        1,
        "HVCALL_CLEAR_VIRTUAL_INTERRUPT calls for the ExtINT resample"
    );
    expect_out(&vcpu, 0x22, 2, "back after the first HLT")?;
    wake_with(&vcpu, 0x40, "edge-triggered irqfd", || {
        edge.write(1)
            .map_err(|e| Failure::Fail(format!("eventfd write: {e}")))
    })?;
    ensure_eq!(signals(&rs), 0, "no resample for an edge-triggered EOI");
    ensure_eq!(
        signals(&ext_rs),
        0,
        "no ExtINT resample for an edge EOI of 0x40"
    );
    ensure_eq!(
        sim_calls(0x0056)? - cleared,
        1,
        "HVCALL_CLEAR_VIRTUAL_INTERRUPT calls after the edge EOI"
    );
    ensure_eq!(signals(&edge_rs_unused), 0, "unrelated eventfd");
    Ok(())
}

/// Whether `e` becomes readable within `limit`.
fn readable_within(e: &EventFd, limit: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: e.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as i32) };
    r == 1 && pfd.revents & libc::POLLIN != 0
}

/// `request_virtual_interrupt` arguments the sim's LAPIC refuses.
pub fn assert_interrupt_errors() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _vcpu = p.vcpu(0)?;
    let req = |apic_id: u64, vector: u32, kind: u32, logical: bool| InterruptRequest {
        interrupt_type: kind,
        apic_id,
        vector,
        level_triggered: false,
        logical_destination_mode: logical,
        long_mode: false,
    };
    let fixed = hv_interrupt_type_HV_X64_INTERRUPT_TYPE_FIXED;
    expect_ok(
        p.vm.request_virtual_interrupt(&req(0, 0x30, fixed, false)),
        "fixed 0x30 to VP 0",
    )?;
    // The hypercall's status (the crate reports a failed ROOT_HVCALL as
    // MshvError::Hypercall with the raw status): HV_STATUS_INVALID_VP_INDEX
    // (0xe) for a VP that does not exist, HV_STATUS_INVALID_PARAMETER (0x5)
    // for a reserved vector. The last two are limitations of the
    // simulator's LAPIC (Hyper-V delivers INIT and logical destinations);
    // there they must fail cleanly, with INVALID_PARAMETER.
    for (r, want, what) in [
        (req(1, 0x30, fixed, false), 0xe, "APIC id 1 (no such VP)"),
        (req(0, 0x0f, fixed, false), 0x5, "fixed vector 15"),
        (
            req(0, 0x30, 5, false),
            0x5,
            "INIT (not modelled by the simulator)",
        ),
        (
            req(0, 0x30, fixed, true),
            0x5,
            "logical destination (not modelled by the simulator)",
        ),
    ] {
        match p.vm.request_virtual_interrupt(&r) {
            Err(mshv_ioctls::MshvError::Hypercall { status_raw, .. }) => ensure_eq!(
                Hex(status_raw as u64),
                Hex(want),
                "hypercall status of request_virtual_interrupt with {what}"
            ),
            Err(e) => fail!(
                "request_virtual_interrupt with {what}\nexpected: hypercall status {want:#x}\nactual:   {}",
                show_err(e)
            ),
            Ok(()) => fail!(
                "request_virtual_interrupt with {what}\nexpected: hypercall status {want:#x}\nactual:   success"
            ),
        }
    }
    Ok(())
}

/// A guest MMIO write that matches an ioeventfd signals it without an exit
/// to the VMM; a write that matches none is an unmapped-GPA exit.
pub fn ioeventfd_fires_on_guest_write() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let vcpu = p.vcpu(0)?;
    let vm = &p.vm;
    let any = eventfd()?;
    let seven = eventfd()?;
    let base = 0xd000_0000u64;
    expect_ok(
        vm.register_ioevent(&any, &IoEventAddress::Mmio(base), NoDatamatch),
        "wildcard ioeventfd",
    )?;
    expect_ok(
        vm.register_ioevent(&seven, &IoEventAddress::Mmio(base + 0x40), 7u32),
        "datamatch ioeventfd",
    )?;
    let mut m = Monitor::start(&vcpu)?;
    ensure_eq!(signals(&any), 0, "counter before any write");
    // The monitor's WRITE completes with its result and no exit between.
    m.write(base as u32, 0x1234)?;
    ensure_eq!(signals(&any), 1, "wildcard eventfd after one guest write");
    m.write(base as u32, 0x5678)?;
    m.write(base as u32, 0)?;
    ensure_eq!(
        signals(&any),
        2,
        "after two more writes (read resets the counter)"
    );
    m.write((base + 0x40) as u32, 7)?;
    ensure_eq!(signals(&seven), 1, "datamatch eventfd after a write of 7");
    ensure_eq!(signals(&any), 0, "the wildcard one at another address");
    // A value that does not match is an ordinary MMIO exit.
    m.begin(CMD_WRITE, &[(base + 0x40) as u32, 8])?;
    let exit = m.run()?;
    expect_mem_exit(
        &exit,
        MemKind::Unmapped,
        ACCESS_WRITE,
        base + 0x40,
        guest::monitor32::WRITE_INSN,
        &[0x89, 0x07],
        "write of 8 to the datamatch-7 address",
    )?;
    ensure_eq!(
        signals(&seven),
        0,
        "no signal for a value that does not match"
    );
    // Emulate the write as a VMM would and go on; after deassign the
    // wildcard address exits too.
    m.jump(guest::monitor32::WRITE_END, None)?;
    m.finish("WRITE after emulation")?;
    expect_ok(
        vm.unregister_ioevent(&any, &IoEventAddress::Mmio(base), NoDatamatch),
        "unregister_ioevent",
    )?;
    m.begin(CMD_WRITE, &[base as u32, 1])?;
    let exit = m.run()?;
    expect_mem_exit(
        &exit,
        MemKind::Unmapped,
        ACCESS_WRITE,
        base,
        guest::monitor32::WRITE_INSN,
        &[0x89, 0x07],
        "write after the ioeventfd was removed",
    )?;
    ensure_eq!(signals(&any), 0, "no signal after deassign");
    // debugfs counts the writes completed as doorbells: three to the
    // wildcard address and one of 7, not the two that exited.
    match &p.debugfs {
        Ok(dir) => ensure_eq!(
            partition_stats(dir)?.get("doorbells").copied(),
            Some(4),
            "debugfs doorbells after four doorbell writes and two exits"
        ),
        Err(why) => fail!("partition debugfs directory: {why}"),
    }
    Ok(())
}

/// A 64-bit datamatch ioeventfd (`len` 8, as Cloud Hypervisor registers
/// for 8-byte virtio notifications) fired by a long-mode guest: an 8-byte
/// write of the value signals it with no exit; a 4-byte write of its low
/// half and an 8-byte write differing only in bit 63 are ordinary MMIO
/// exits that signal nothing.
pub fn ioeventfd_datamatch_64bit() -> TResult {
    const MEM_GPA: u64 = 0x10_0000;
    const CODE: u64 = MEM_GPA + 0x2000;
    const BASE: u64 = 0xd000_0000;
    const VALUE: u64 = 0x1122_3344_5566_7788;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let vm = &p.vm;
    // PML4 at MEM_GPA, a PDPT of four identity 1 GiB pages after it.
    let mut mem = Mmap::anon(0x10000)?;
    mem.bytes_mut(0, 8)
        .copy_from_slice(&((MEM_GPA + 0x1000) | 0x7).to_le_bytes());
    for i in 0..4 {
        mem.bytes_mut(0x1000 + 8 * i, 8)
            .copy_from_slice(&((i as u64) << 30 | 0x87).to_le_bytes());
    }
    let mut code = Vec::new();
    code.extend_from_slice(&[0x48, 0xbb]); // mov rbx, BASE
    code.extend_from_slice(&BASE.to_le_bytes());
    code.extend_from_slice(&[0x48, 0xb8]); // mov rax, VALUE
    code.extend_from_slice(&VALUE.to_le_bytes());
    code.extend_from_slice(&[0x48, 0x89, 0x03]); // mov [rbx], rax: rings
    code.extend_from_slice(&[0xe7, 0x40]); // out 0x40, eax
    let half = CODE + code.len() as u64;
    code.extend_from_slice(&[0x89, 0x03]); // mov [rbx], eax: 4 bytes
    code.extend_from_slice(&[0x48, 0xb9]); // mov rcx, VALUE ^ bit 63
    code.extend_from_slice(&(VALUE ^ 1 << 63).to_le_bytes());
    let other = CODE + code.len() as u64;
    code.extend_from_slice(&[0x48, 0x89, 0x0b]); // mov [rbx], rcx
    code.extend_from_slice(&[0x48, 0x89, 0x03, 0xf4]); // mov [rbx], rax: rings; hlt
    mem.bytes_mut(0x2000, code.len()).copy_from_slice(&code);
    p.map(&mem, 0, mem.len(), MEM_GPA >> 12, MEM_RWX)?;
    let efd = eventfd()?;
    expect_ok(
        vm.register_ioevent(&efd, &IoEventAddress::Mmio(BASE), VALUE),
        "ioeventfd with a 64-bit datamatch",
    )?;
    let vcpu = p.vcpu(0)?;
    enter_long_mode(&vcpu, MEM_GPA, CODE)?;
    let run_vp = |what: &str| {
        run(&vcpu).map_err(|e| Failure::Fail(format!("RUN_VP {what}: {}", errname(e))))
    };
    let skip = |rip: u64, len: u64| {
        set_regs(
            &vcpu,
            &[reg64(hv_register_name_HV_X64_REGISTER_RIP, rip + len)],
        )
    };

    let exit = run_vp("to the first OUT")?;
    let Exit::Io { port: 0x40, .. } = exit else {
        fail!("expected: the OUT to port 0x40 after the 8-byte write\nactual:   {exit}");
    };
    ensure_eq!(
        signals(&efd),
        1,
        "eventfd after an 8-byte write of the value"
    );
    complete_io(&vcpu, &exit, None)?;
    let exit = run_vp("to the 4-byte write")?;
    expect_mem_exit(
        &exit,
        MemKind::Unmapped,
        ACCESS_WRITE,
        BASE,
        half,
        &[0x89, 0x03],
        "4-byte write of the value's low half",
    )?;
    ensure_eq!(signals(&efd), 0, "eventfd after a 4-byte write");
    skip(half, 2)?;
    let exit = run_vp("to the write of another value")?;
    expect_mem_exit(
        &exit,
        MemKind::Unmapped,
        ACCESS_WRITE,
        BASE,
        other,
        &[0x48, 0x89, 0x0b],
        "8-byte write differing in bit 63",
    )?;
    ensure_eq!(signals(&efd), 0, "eventfd after a write of another value");
    skip(other, 3)?;
    let exit = run_vp("to HLT")?;
    let Exit::Halt { .. } = exit else {
        fail!("expected: HLT after the last 8-byte write\nactual:   {exit}");
    };
    ensure_eq!(
        signals(&efd),
        1,
        "eventfd after the second 8-byte write of the value"
    );
    ensure_eq!(
        p.stats()?["doorbells"],
        2,
        "debugfs doorbells after two matching writes and two exits"
    );
    Ok(())
}

/// An irqfd registered for a GSI that has no route yet (Cloud Hypervisor
/// registers irqfds and sets the routing table in either order): once the
/// route exists, a signal raises its vector in the halted VP.
pub fn irqfd_before_route() -> TResult {
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let (_code, vcpu) = load_irq32(&p)?;
    let vm = &p.vm;
    let efd = eventfd()?;
    expect_ok(
        vm.register_irqfd(&efd, 6),
        "register_irqfd gsi 6 with no routing table",
    )?;
    set_routes(vm, &[msi(6, 0, 0x40)])?;
    expect_out(&vcpu, 0x22, 1, "tables loaded")?;
    wake_with(&vcpu, 0x40, "irqfd registered before its route", || {
        efd.write(1)
            .map_err(|e| Failure::Fail(format!("eventfd write: {e}")))
    })?;
    expect_out(&vcpu, 0x22, 2, "back after the first HLT")
}

/// The `irqfds` / `ioeventfds` lines of `live_objects` (all partitions).
fn live(name: &str) -> TResult<u64> {
    match live_objects()?.get(name) {
        Some(&n) => Ok(n),
        None => fail!("live_objects has no {name} line"),
    }
}

/// Waits up to 5 s for `live(name)` to become `want` (an irqfd whose
/// eventfd was closed is dropped by a work item); its last value.
fn live_settles(name: &str, want: u64) -> TResult<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = live(name)?;
        if n == want || std::time::Instant::now() > deadline {
            return Ok(n);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Issue 14, defect 5: an irqfd does not outlive its eventfd. Closing the
/// eventfd's last fd drops the irqfd (EPOLLHUP, as upstream and KVM), so
/// `eventfd(); MSHV_IRQFD; close()` in a loop leaves nothing behind, and a
/// closed eventfd that something else in the kernel still signals (here an
/// ioeventfd on the same eventfd, rung by the guest) injects nothing.
pub fn irqfd_gone_with_its_eventfd() -> TResult {
    const ROUNDS: u32 = 2000;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let _code = load_monitor(&p)?;
    let vcpu = p.vcpu(0)?;
    let vm = &p.vm;
    let base = live("irqfds")?;

    // Vector 0x40 from an irqfd whose eventfd stays open, 0x41 from one
    // whose eventfd is closed; each eventfd is also an ioeventfd, so a guest
    // write signals it whether or not userspace still has an fd.
    set_routes(vm, &[msi(5, 0, 0x40), msi(6, 0, 0x41)])?;
    let kept = eventfd()?;
    let closed = eventfd()?;
    let mmio = 0xd000_0000u64;
    expect_ok(vm.register_irqfd(&kept, 5), "register_irqfd gsi 5")?;
    expect_ok(vm.register_irqfd(&closed, 6), "register_irqfd gsi 6")?;
    expect_ok(
        vm.register_ioevent(&kept, &IoEventAddress::Mmio(mmio), NoDatamatch),
        "ioeventfd on the kept eventfd",
    )?;
    expect_ok(
        vm.register_ioevent(&closed, &IoEventAddress::Mmio(mmio + 0x40), NoDatamatch),
        "ioeventfd on the eventfd to close",
    )?;
    ensure_eq!(live("irqfds")?, base + 2, "live irqfds with two registered");
    // The close unhooks the irqfd at once (in the EPOLLHUP wakeup); only
    // freeing it waits for a work item.
    drop(closed);
    let irr2 = || -> TResult<u32> {
        let l = vcpu
            .get_lapic()
            .map_err(|e| Failure::Fail(format!("get_lapic: {}", show_err(e))))?;
        // IRR bits 64..95 (vectors 0x40..0x5f) at offset 0x220.
        Ok(u32::from_le_bytes([
            l.regs[0x220] as u8,
            l.regs[0x221] as u8,
            l.regs[0x222] as u8,
            l.regs[0x223] as u8,
        ]))
    };
    ensure_eq!(Hex(irr2()? as u64), Hex(0), "IRR before the guest writes");
    // The monitor runs with IF clear: an injected vector stays in IRR.
    let mut m = Monitor::start(&vcpu)?;
    m.write((mmio + 0x40) as u32, 1)?;
    m.write(mmio as u32, 1)?;
    // Injection runs from a work item: wait for the kept one's vector.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut irr = irr2()?;
    while irr & 1 == 0 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        irr = irr2()?;
    }
    // Both writes were done before the kept one's injection was seen; the
    // closed one's would have been queued first.
    thread::sleep(Duration::from_millis(100));
    ensure_eq!(
        Hex(irr2()? as u64),
        Hex(1),
        "IRR 0x40..0x5f after guest writes signalled both eventfds (0x40: open eventfd's irqfd; 0x41 would be the closed one's)"
    );
    ensure_eq!(
        live_settles("irqfds", base + 1)?,
        base + 1,
        "live irqfds after closing one of the two eventfds"
    );
    drop(kept);
    ensure_eq!(
        live_settles("irqfds", base)?,
        base,
        "live irqfds after the last eventfd is closed"
    );
    for i in 0..ROUNDS {
        let e = eventfd()?;
        expect_ok(
            vm.register_irqfd(&e, i % 64),
            &format!("register_irqfd round {i}"),
        )?;
        drop(e);
    }
    let after = live_settles("irqfds", base)?;
    ensure_eq!(
        after,
        base,
        "live irqfds after {ROUNDS} rounds of eventfd + MSHV_IRQFD + close"
    );
    Ok(())
}

/// ioeventfds hold their eventfd until deassigned (which needs an fd for
/// it): `eventfd(); MSHV_IOEVENTFD; close()` is bounded by a per-partition
/// limit of 1000 (KVM's NR_IOBUS_DEVS), ENOSPC beyond it; deassigning one
/// makes room, and releasing the partition drops them all.
pub fn ioeventfd_limit() -> TResult {
    const LIMIT: u64 = 1000;
    let mshv = open_mshv()?;
    let base = live("ioeventfds")?;
    {
        let p = Partition::new(&mshv)?;
        let vm = &p.vm;
        let keep = eventfd()?;
        expect_ok(
            vm.register_ioevent(&keep, &IoEventAddress::Mmio(0xc000_0000), NoDatamatch),
            "ioeventfd 0",
        )?;
        for i in 1..LIMIT {
            let e = eventfd()?;
            expect_ok(
                vm.register_ioevent(&e, &IoEventAddress::Mmio(0xc000_0000 + 8 * i), NoDatamatch),
                &format!("ioeventfd {i}"),
            )?;
        }
        ensure_eq!(
            live("ioeventfds")?,
            base + LIMIT,
            "live ioeventfds at the limit"
        );
        let e = eventfd()?;
        let addr = IoEventAddress::Mmio(0xc000_0000 + 8 * LIMIT);
        expect_err(
            vm.register_ioevent(&e, &addr, NoDatamatch),
            libc::ENOSPC,
            "ioeventfd beyond the limit",
        )?;
        expect_ok(
            vm.unregister_ioevent(&keep, &IoEventAddress::Mmio(0xc000_0000), NoDatamatch),
            "unregister one",
        )?;
        expect_ok(
            vm.register_ioevent(&e, &addr, NoDatamatch),
            "ioeventfd after a deassign made room",
        )?;
        ensure_eq!(live("ioeventfds")?, base + LIMIT, "live ioeventfds");
    }
    ensure_eq!(
        live("ioeventfds")?,
        base,
        "live ioeventfds after the partition is released"
    );
    Ok(())
}
