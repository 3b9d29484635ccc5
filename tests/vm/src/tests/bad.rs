// SPDX-License-Identifier: GPL-2.0
//
// Bad input to the raw ioctls must give the errnos of upstream 7.3
// (drivers/hv/mshv_root_main.c), plus EINVAL for GPA ranges that wrap.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};

use mshv_bindings::{
    hv_input_get_partition_property, hv_output_get_partition_property,
    hv_partition_property_code_HV_PARTITION_PROPERTY_PROCESSOR_FEATURES0,
};

use crate::fail;
use crate::uapi::*;
use crate::util::*;
use crate::vmm::*;

fn open_dev() -> TResult<File> {
    // SAFETY: constant path.
    let fd = unsafe { libc::open(c"/dev/mshv".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        fail!("open /dev/mshv: {}", errname(errno()));
    }
    // SAFETY: a descriptor we just opened and own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn check_numbers() -> TResult {
    if let Err(e) = crate_numbers_match() {
        fail!("ioctl numbers disagree with mshv-ioctls: {e}");
    }
    Ok(())
}

fn create_partition<T>(dev: &File, arg: &mut T) -> IoctlResult {
    // SAFETY: `arg` is a CreatePartition(V2) the kernel copies 16/64 bytes of.
    unsafe { ioctl_raw(dev.as_raw_fd(), MSHV_CREATE_PARTITION, arg) }
}

/// CREATE_PARTITION: unknown pt_flags bit, pt_isolation 1, bad v2 fields,
/// NULL argument → EINVAL/EFAULT; plain v1 and v2 arguments work.
pub fn bad_create_partition() -> TResult {
    check_numbers()?;
    let dev = open_dev()?;
    let mut c = Checks::new();

    let mut ok = CreatePartition::default();
    if let Some(fd) = c.success("v1, pt_flags 0", create_partition(&dev, &mut ok)) {
        // SAFETY: the new partition fd.
        unsafe { libc::close(fd) };
    }
    let mut ok = CreatePartition {
        pt_flags: 1 << MSHV_PT_BIT_LAPIC,
        pt_isolation: 0,
    };
    if let Some(fd) = c.success("v1, pt_flags LAPIC", create_partition(&dev, &mut ok)) {
        // SAFETY: the new partition fd.
        unsafe { libc::close(fd) };
    }

    for bit in [MSHV_PT_BIT_COUNT, 7, 63] {
        let mut a = CreatePartition {
            pt_flags: 1 << bit,
            pt_isolation: 0,
        };
        c.errno(
            &format!("unknown pt_flags bit {bit}"),
            create_partition(&dev, &mut a),
            libc::EINVAL,
            true,
        );
    }
    for iso in [1u64, 2, u64::MAX] {
        let mut a = CreatePartition {
            pt_flags: 0,
            pt_isolation: iso,
        };
        c.errno(
            &format!("pt_isolation {iso:#x}"),
            create_partition(&dev, &mut a),
            libc::EINVAL,
            true,
        );
    }

    let v2 = CreatePartitionV2 {
        pt_flags: 1 << MSHV_PT_BIT_CPU_AND_XSAVE_FEATURES,
        pt_num_cpu_fbanks: MSHV_NUM_CPU_FEATURES_BANKS,
        ..Default::default()
    };
    let mut a = v2;
    if let Some(fd) = c.success("v2, nothing disabled", create_partition(&dev, &mut a)) {
        // SAFETY: the new partition fd.
        unsafe { libc::close(fd) };
    }
    let mut a = v2;
    a.pt_num_cpu_fbanks = 1;
    c.errno(
        "v2 with pt_num_cpu_fbanks 1",
        create_partition(&dev, &mut a),
        libc::EINVAL,
        true,
    );
    let mut a = v2;
    a.pt_rsvd[5] = 1;
    c.errno(
        "v2 with pt_rsvd[5] != 0",
        create_partition(&dev, &mut a),
        libc::EINVAL,
        true,
    );
    let mut a = v2;
    a.pt_rsvd1[1] = 1;
    c.errno(
        "v2 with pt_rsvd1[1] != 0",
        create_partition(&dev, &mut a),
        libc::EINVAL,
        true,
    );
    let mut a = v2;
    a.pt_isolation = 1;
    c.errno(
        "v2 with pt_isolation 1",
        create_partition(&dev, &mut a),
        libc::EINVAL,
        true,
    );

    c.errno(
        "NULL argument",
        // SAFETY: a NULL argument the kernel must refuse to copy from.
        unsafe {
            ioctl_raw::<CreatePartition>(
                dev.as_raw_fd(),
                MSHV_CREATE_PARTITION,
                std::ptr::null_mut(),
            )
        },
        libc::EFAULT,
        true,
    );
    c.finish()
}

fn create_vp(vm: &impl AsRawFd, index: u32) -> IoctlResult {
    let mut a = CreateVp { vp_index: index };
    // SAFETY: a CreateVp argument.
    unsafe { ioctl_raw(vm.as_raw_fd(), MSHV_CREATE_VP, &mut a) }
}

/// CREATE_VP: index 256 and above → EINVAL, an index in use → EEXIST.
pub fn bad_create_vp() -> TResult {
    check_numbers()?;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let mut c = Checks::new();
    let mut fds = Vec::new();

    c.errno("vp_index 256", create_vp(&p.vm, 256), libc::EINVAL, true);
    c.errno(
        "vp_index 0x10000",
        create_vp(&p.vm, 0x10000),
        libc::EINVAL,
        true,
    );
    c.errno(
        "vp_index u32::MAX",
        create_vp(&p.vm, u32::MAX),
        libc::EINVAL,
        true,
    );
    if let Some(fd) = c.success("vp_index 0", create_vp(&p.vm, 0)) {
        // SAFETY: the new VP fd, closed on drop.
        fds.push(unsafe { File::from_raw_fd(fd) });
    }
    c.errno("vp_index 0 again", create_vp(&p.vm, 0), libc::EEXIST, true);
    if let Some(fd) = c.success("vp_index 255", create_vp(&p.vm, 255)) {
        // SAFETY: the new VP fd, closed on drop.
        fds.push(unsafe { File::from_raw_fd(fd) });
    }
    c.errno(
        "vp_index 255 again",
        create_vp(&p.vm, 255),
        libc::EEXIST,
        true,
    );
    // The mshv-ioctls path reports the same errno.
    match p.vm.create_vcpu(0) {
        Ok(_) => c.failed("create_vcpu(0) a second time: expected EEXIST, actual success".into()),
        Err(e) if e.errno() == libc::EEXIST => {}
        Err(e) => c.failed(format!(
            "create_vcpu(0) a second time: expected EEXIST, actual {}",
            show_err(e)
        )),
    }
    // Closing a VP fd does not free its index (the VP lives as long as the
    // partition): upstream keeps pt_vp_array[] until destroy_partition.
    drop(fds);
    c.errno(
        "vp_index 0 after its fd was closed",
        create_vp(&p.vm, 0),
        libc::EEXIST,
        true,
    );
    c.finish()
}

fn set_memory(vm: &impl AsRawFd, r: UserMemRegion) -> IoctlResult {
    let mut a = r;
    // SAFETY: a UserMemRegion argument.
    unsafe { ioctl_raw(vm.as_raw_fd(), MSHV_SET_GUEST_MEMORY, &mut a) }
}

/// SET_GUEST_MEMORY: the validation of map and unmap.
pub fn bad_set_guest_memory() -> TResult {
    check_numbers()?;
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let mem = Mmap::anon(4 * MIB)?;
    let holes = Mmap::anon(3 * PAGE)?;
    holes.punch_hole(PAGE, PAGE)?;
    let hole_addr = holes.addr() + PAGE as u64;
    let mut c = Checks::new();

    let good = UserMemRegion {
        size: MIB as u64,
        guest_pfn: 0x100,
        userspace_addr: mem.addr(),
        flags: MEM_RWX,
        rsvd: [0; 7],
    };
    let vm = &p.vm;

    // Malformed maps.
    let mut r = good;
    r.size = 0;
    c.errno("map with size 0", set_memory(vm, r), libc::EINVAL, false);
    let mut r = good;
    r.size = MIB as u64 + 0x800;
    c.errno(
        "map with unaligned size",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );
    let mut r = good;
    r.userspace_addr += 0x800;
    c.errno(
        "map with unaligned userspace_addr",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );
    for f in [1u8 << 3, 1 << 7] {
        let mut r = good;
        r.flags |= f;
        c.errno(
            &format!("map with unknown flag {f:#x}"),
            set_memory(vm, r),
            libc::EINVAL,
            false,
        );
    }
    for i in [0usize, 6] {
        let mut r = good;
        r.rsvd[i] = 1;
        c.errno(
            &format!("map with rsvd[{i}] != 0"),
            set_memory(vm, r),
            libc::EINVAL,
            false,
        );
    }
    let mut r = good;
    r.guest_pfn = u64::MAX - 0x10;
    c.errno(
        "map with guest_pfn + pages overflowing u64",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );
    let mut r = good;
    r.guest_pfn = u64::MAX;
    r.size = PAGE as u64 * 2;
    c.errno(
        "map of 2 pages at guest_pfn u64::MAX",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );
    let mut r = good;
    r.guest_pfn = (1u64 << 52) - 1;
    r.size = PAGE as u64 * 2;
    c.errno(
        "map whose GPA range wraps past 2^64 (guest_pfn 2^52-1, 2 pages)",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );
    let mut r = good;
    r.userspace_addr = hole_addr;
    r.size = PAGE as u64;
    c.errno(
        "map of a userspace_addr with no VMA",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );
    let mut r = good;
    r.userspace_addr = 0xffff_8880_0000_0000;
    c.errno(
        "map of a kernel userspace_addr",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );

    // A good map, then overlaps with it.
    c.success("map 1 MiB at gfn 0x100", set_memory(vm, good));
    let other = mem.addr() + 2 * MIB as u64;
    for (what, gfn, size) in [
        ("the same range", 0x100u64, MIB),
        ("its last page", 0x1ff, 2 * PAGE),
        ("its first page", 0xff, 2 * PAGE),
        ("a page inside", 0x180, PAGE),
        ("a superset", 0x80, 2 * MIB),
    ] {
        let r = UserMemRegion {
            size: size as u64,
            guest_pfn: gfn,
            userspace_addr: other,
            flags: MEM_RWX,
            rsvd: [0; 7],
        };
        c.errno(
            &format!("map overlapping {what} (gfn {gfn:#x}, {size:#x} bytes)"),
            set_memory(vm, r),
            libc::EEXIST,
            false,
        );
    }
    // Adjacent regions do not overlap.
    let adjacent = UserMemRegion {
        size: PAGE as u64,
        guest_pfn: 0x200,
        userspace_addr: mem.addr() + MIB as u64,
        flags: MEM_RWX,
        rsvd: [0; 7],
    };
    c.success(
        "map the page right after it (gfn 0x200)",
        set_memory(vm, adjacent),
    );
    let below = UserMemRegion {
        guest_pfn: 0xff,
        userspace_addr: other,
        ..adjacent
    };
    c.success(
        "map the page right before it (gfn 0xff)",
        set_memory(vm, below),
    );

    // Unmaps.
    let unmap = |r: UserMemRegion| UserMemRegion {
        flags: MEM_UNMAP,
        ..r
    };
    let mut r = unmap(good);
    r.size = MIB as u64 / 2;
    c.errno(
        "unmap with a different size",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );
    let mut r = unmap(good);
    r.guest_pfn = 0x180;
    c.errno(
        "unmap starting inside the region",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );
    let mut r = unmap(good);
    r.userspace_addr = other;
    c.errno(
        "unmap with a different userspace_addr",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );
    let mut r = unmap(good);
    r.rsvd[3] = 1;
    c.errno(
        "unmap with rsvd[3] != 0",
        set_memory(vm, r),
        libc::EINVAL,
        false,
    );
    let mut r = unmap(good);
    r.guest_pfn = 0x10000;
    c.errno(
        "unmap where no region is",
        set_memory(vm, r),
        libc::ENOENT,
        false,
    );
    c.success("unmap the region exactly", set_memory(vm, unmap(good)));
    c.errno(
        "unmap it a second time",
        set_memory(vm, unmap(good)),
        libc::ENOENT,
        false,
    );
    c.success("map it again", set_memory(vm, good));
    c.success("unmap it again", set_memory(vm, unmap(good)));
    c.success("unmap the adjacent page", set_memory(vm, unmap(adjacent)));
    c.success("unmap the page before", set_memory(vm, unmap(below)));
    c.finish()
}

fn hvcall(fd: i32, a: &mut RootHvcall) -> IoctlResult {
    // SAFETY: a RootHvcall whose buffers outlive the call.
    unsafe { ioctl_raw(fd, MSHV_ROOT_HVCALL, a) }
}

/// ROOT_HVCALL: the /dev/mshv allow-list (GET_PARTITION_PROPERTY(_EX) only),
/// the partition and VP allow-lists, and the argument validation.
pub fn bad_root_hvcall() -> TResult {
    check_numbers()?;
    let dev = open_dev()?;
    let fd = dev.as_raw_fd();
    let mut c = Checks::new();

    // Buffers larger than any size we pass, so a driver that copies before
    // validating does not fault.
    let mut input = vec![0u8; 2 * PAGE];
    let mut output = vec![0u8; 2 * PAGE];
    let prop = hv_input_get_partition_property {
        property_code: hv_partition_property_code_HV_PARTITION_PROPERTY_PROCESSOR_FEATURES0,
        ..Default::default()
    };
    let in_len = std::mem::size_of_val(&prop);
    // SAFETY: copying a plain struct's bytes into a larger buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(
            std::ptr::addr_of!(prop).cast::<u8>(),
            input.as_mut_ptr(),
            in_len,
        )
    };
    let good = RootHvcall {
        code: HVCALL_GET_PARTITION_PROPERTY,
        reps: 0,
        in_sz: in_len as u16,
        out_sz: std::mem::size_of::<hv_output_get_partition_property>() as u16,
        status: 0,
        rsvd: [0; 6],
        in_ptr: input.as_mut_ptr() as u64,
        out_ptr: output.as_mut_ptr() as u64,
    };

    let mut a = good;
    if c.success(
        "GET_PARTITION_PROPERTY(PROCESSOR_FEATURES0) on /dev/mshv",
        hvcall(fd, &mut a),
    )
    .is_some()
        && a.status != 0
    {
        c.failed(format!(
            "GET_PARTITION_PROPERTY succeeded but wrote back status {:#x}",
            a.status
        ));
    }

    // From here on, a refused call must not write the output buffer, and
    // no call may write the input buffer or past out_sz.
    const FILL: u8 = 0x5a;
    let input_before = input.clone();
    // SAFETY: `output` is live; `good.out_ptr` points into it, and no call
    // is in flight.
    unsafe { std::ptr::write_bytes(good.out_ptr as *mut u8, FILL, 2 * PAGE) };
    let out_bytes = |from: usize| -> Vec<u8> {
        // SAFETY: reading the live `output` buffer between calls.
        unsafe {
            std::slice::from_raw_parts((good.out_ptr as *const u8).add(from), 2 * PAGE - from)
        }
        .to_vec()
    };
    for (code, name) in [
        (HVCALL_SET_VP_REGISTERS, "HVCALL_SET_VP_REGISTERS"),
        (
            HVCALL_SET_PARTITION_PROPERTY,
            "HVCALL_SET_PARTITION_PROPERTY",
        ),
        (HVCALL_CREATE_PARTITION, "HVCALL_CREATE_PARTITION"),
        (0xffff, "code 0xffff"),
    ] {
        let mut a = good;
        a.code = code;
        c.errno(
            &format!("{name} ({code:#x}) on /dev/mshv (not allowed)"),
            hvcall(fd, &mut a),
            libc::EINVAL,
            false,
        );
    }
    let mut a = good;
    a.status = 1;
    c.errno(
        "status != 0 on input",
        hvcall(fd, &mut a),
        libc::EINVAL,
        false,
    );
    for i in [0usize, 5] {
        let mut a = good;
        a.rsvd[i] = 1;
        c.errno(
            &format!("rsvd[{i}] != 0"),
            hvcall(fd, &mut a),
            libc::EINVAL,
            false,
        );
    }
    for sz in [0u16, 7] {
        let mut a = good;
        a.in_sz = sz;
        c.errno(
            &format!("in_sz {sz} (< 8)"),
            hvcall(fd, &mut a),
            libc::EINVAL,
            false,
        );
    }
    let mut a = good;
    a.in_sz = 4097;
    c.errno(
        "in_sz 4097 (> 4096)",
        hvcall(fd, &mut a),
        libc::EINVAL,
        false,
    );
    let mut a = good;
    a.in_ptr = 0;
    c.errno("in_ptr NULL", hvcall(fd, &mut a), libc::EINVAL, false);
    let mut a = good;
    a.out_sz = 0;
    c.errno(
        "out_ptr set with out_sz 0",
        hvcall(fd, &mut a),
        libc::EINVAL,
        false,
    );
    let mut a = good;
    a.out_sz = 4097;
    c.errno(
        "out_sz 4097 (> 4096)",
        hvcall(fd, &mut a),
        libc::EINVAL,
        false,
    );

    let touched = out_bytes(0).iter().filter(|&&b| b != FILL).count();
    if touched != 0 {
        c.failed(format!(
            "refused ROOT_HVCALLs wrote {touched} bytes of the output buffer"
        ));
    }

    // The partition fd's allow-list has no partition-management calls, and
    // the VP fd cannot issue the asynchronous SET_PARTITION_PROPERTY.
    let mshv = open_mshv()?;
    let p = Partition::new(&mshv)?;
    let vp = p.vcpu(0)?;
    let mut a = good;
    c.success(
        "GET_PARTITION_PROPERTY on the partition fd",
        hvcall(p.vm.as_raw_fd(), &mut a),
    );
    let mut a = good;
    a.code = HVCALL_CREATE_PARTITION;
    c.errno(
        "HVCALL_CREATE_PARTITION on the partition fd",
        hvcall(p.vm.as_raw_fd(), &mut a),
        libc::EINVAL,
        false,
    );
    let mut a = good;
    a.code = HVCALL_SET_PARTITION_PROPERTY;
    a.out_ptr = 0;
    a.out_sz = 0;
    a.in_sz = 24;
    c.errno(
        "HVCALL_SET_PARTITION_PROPERTY on the VP fd",
        hvcall(vp.as_raw_fd(), &mut a),
        libc::EINVAL,
        false,
    );
    let out_sz = good.out_sz as usize;
    let past = out_bytes(out_sz).iter().filter(|&&b| b != FILL).count();
    if past != 0 {
        c.failed(format!(
            "ROOT_HVCALL wrote {past} bytes past out_sz ({out_sz}) of the output buffer"
        ));
    }
    if input != input_before {
        c.failed("ROOT_HVCALL wrote into the input buffer".into());
    }
    drop(output);
    c.finish()
}

/// ROOT_HVCALL on a partition fd acts on that partition whatever id the
/// input names (the driver overwrites the id: the isolation guarantee), and
/// reps above 0xfff (the hypercall's 12-bit rep count) are refused.
pub fn root_hvcall_isolation() -> TResult {
    const UNIMPLEMENTED_MSR_ACTION: u32 = 0x0005_0017;
    let mshv = open_mshv()?;
    let a = Partition::new(&mshv)?;
    let b = Partition::new(&mshv)?;
    let (ida, idb) = (a.id()?, b.id()?);
    if ida == idb {
        fail!("two partitions with the same id {ida}");
    }
    b.vm.set_partition_property(UNIMPLEMENTED_MSR_ACTION, 1)
        .map_err(|e| errno_failure("set UNIMPLEMENTED_MSR_ACTION of B", e.errno()))?;
    let get = |p: &Partition| {
        p.vm.get_partition_property(UNIMPLEMENTED_MSR_ACTION)
            .map_err(|e| errno_failure("get UNIMPLEMENTED_MSR_ACTION", e.errno()))
    };
    let (va, vb) = (get(&a)?, get(&b)?);
    if va == vb {
        fail!(
            "A and B have the same UNIMPLEMENTED_MSR_ACTION {va}: the test cannot tell them apart"
        );
    }

    let mut c = Checks::new();
    let prop = hv_input_get_partition_property {
        partition_id: idb,
        property_code: UNIMPLEMENTED_MSR_ACTION,
        ..Default::default()
    };
    let mut out = [0u64; 2];
    let call = RootHvcall {
        code: HVCALL_GET_PARTITION_PROPERTY,
        reps: 0,
        in_sz: std::mem::size_of_val(&prop) as u16,
        out_sz: 8,
        status: 0,
        rsvd: [0; 6],
        in_ptr: std::ptr::addr_of!(prop) as u64,
        out_ptr: out.as_mut_ptr() as u64,
    };
    let mut first = call;
    if c.success(
        "GET_PARTITION_PROPERTY naming partition B, on A's fd",
        hvcall(a.vm.as_raw_fd(), &mut first),
    )
    .is_some()
        && out[0] != va
    {
        c.failed(format!(
            "GET_PARTITION_PROPERTY naming B ({idb}) on A's ({ida}) fd returned {:#x}; A's value is {va:#x}, B's {vb:#x}",
            out[0]
        ));
    }
    for reps in [0x1000u16, 0xffff] {
        let mut r = call;
        r.reps = reps;
        c.errno(
            &format!("reps {reps:#x} (> 0xfff)"),
            hvcall(a.vm.as_raw_fd(), &mut r),
            libc::EINVAL,
            false,
        );
    }
    c.finish()
}
