// SPDX-License-Identifier: GPL-2.0
//
// Test plumbing: outcomes and assertion macros, diagnostics, errno helpers,
// anonymous memory mappings, and the driver's debugfs files.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

/// Why a test case did not pass.
#[derive(Debug)]
pub enum Failure {
    /// An assertion failed; the text says what was expected and what was seen.
    Fail(String),
    /// A prerequisite outside the driver is missing (reported `# SKIP`).
    Skip(String),
}

pub type TResult<T = ()> = Result<T, Failure>;

/// A failed call of the mini-VMM is [`errno_failure`] of the call.
impl From<mshv_mini_vmm::Error> for Failure {
    fn from(e: mshv_mini_vmm::Error) -> Failure {
        errno_failure(&e.what, e.errno())
    }
}

/// Fails the current test case with a formatted message.
#[macro_export]
macro_rules! fail {
    ($($t:tt)*) => {
        return Err($crate::util::Failure::Fail(format!($($t)*)))
    };
}

/// Skips the current test case with a formatted reason.
#[macro_export]
macro_rules! skip {
    ($($t:tt)*) => {
        return Err($crate::util::Failure::Skip(format!($($t)*)))
    };
}

/// `ensure!(cond, "what ...")`: fails with the message when `cond` is false.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            $crate::fail!($($t)*);
        }
    };
}

/// `ensure_eq!(actual, expected, "what ...")`: fails with
/// "what\nexpected: ..\nactual:   .." when they differ.
#[macro_export]
macro_rules! ensure_eq {
    ($actual:expr, $expected:expr, $($t:tt)*) => {{
        let actual = $actual;
        let expected = $expected;
        if actual != expected {
            $crate::fail!(
                "{}\nexpected: {:?}\nactual:   {:?}",
                format!($($t)*),
                expected,
                actual
            );
        }
    }};
}

/// Attaches context to any displayable error: `x.ctx("mmap")?`. An error
/// that carries an errno (std's I/O errors end in "(os error N)", also
/// inside the text of `read_kv`'s errors) goes through [`errno_failure`]:
/// under MSHV_FAULTS it is an accepted clean error.
pub trait Ctx<T> {
    fn ctx(self, what: &str) -> TResult<T>;
}

impl<T, E: fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> TResult<T> {
        self.map_err(|e| {
            let text = e.to_string();
            match os_errno(&text) {
                Some(n) => errno_failure(&format!("{what}: {text}"), n),
                None => Failure::Fail(format!("{what}: {text}")),
            }
        })
    }
}

/// The N of a trailing "(os error N)" in `text`.
fn os_errno(text: &str) -> Option<i32> {
    let (_, rest) = text.rsplit_once("(os error ")?;
    rest.strip_suffix(')')?.parse().ok()
}

/// Hex formatting in assertion messages: `Hex(x)` prints `0x...`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex(pub u64);

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

// ---------------------------------------------------------------------------
// Diagnostics: a test case runs in a forked child that reports through a pipe.

static REPORT_FD: AtomicI32 = AtomicI32::new(-1);
static VERBOSE: AtomicBool = AtomicBool::new(false);

pub fn set_report_fd(fd: i32) {
    REPORT_FD.store(fd, Ordering::SeqCst);
}

pub fn set_verbose(v: bool) {
    VERBOSE.store(v, Ordering::SeqCst);
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::SeqCst)
}

/// Sends one protocol line per line of `text`, each prefixed with `tag`.
pub fn report(tag: char, text: &str) {
    let fd = REPORT_FD.load(Ordering::SeqCst);
    let mut buf = String::new();
    for line in text.lines() {
        buf.push(tag);
        buf.push(' ');
        buf.push_str(line);
        buf.push('\n');
    }
    if text.is_empty() {
        buf.push(tag);
        buf.push('\n');
    }
    if fd < 0 {
        eprint!("{buf}");
        return;
    }
    let mut rest = buf.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writing an initialised buffer to a file descriptor we own.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return;
        }
        rest = &rest[n as usize..];
    }
}

/// A diagnostic line: shown for failed and skipped tests, and always with -v.
pub fn note(text: &str) {
    report('D', text);
}

#[macro_export]
macro_rules! note {
    ($($t:tt)*) => {
        $crate::util::note(&format!($($t)*))
    };
}

// ---------------------------------------------------------------------------
// errno

pub use mshv_mini_vmm::errno;

/// "EINVAL (22)" for the errnos the tests talk about, else "errno N".
pub fn errname(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::E2BIG => "E2BIG",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EBADFD => "EBADFD",
        _ => return format!("errno {e}"),
    };
    format!("{name} ({e})")
}

/// MSHV_FAULTS=1: the run injects failures (failslab, the sim's hypercall
/// injection), so a clean errno from the kernel is an accepted outcome.
pub fn faults_mode() -> bool {
    std::env::var("MSHV_FAULTS").is_ok_and(|v| v == "1")
}

/// The hypervisor status scripts/check-faults injects in the current pass
/// (`MSHV_FAULTS_STATUS`, the status written to `sim/inject_probability`),
/// if it says.
pub fn faults_status() -> Option<u16> {
    std::env::var("MSHV_FAULTS_STATUS")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Errnos Linux itself returns when failslab fails a slab allocation under
/// a system call: ENOMEM, EFAULT from a page fault that could not allocate
/// (`hmm_range_fault`, `get_user_pages` turn VM_FAULT_OOM into EFAULT), and
/// EAGAIN from `fork` and `MADV_COLLAPSE`.
pub const FAILSLAB_ERRNOS: [i32; 3] = [libc::ENOMEM, libc::EFAULT, libc::EAGAIN];

/// The errno a correct driver returns for an injected hypervisor status it
/// cannot absorb (the driver's status table, src/hv/status.rs), or `None`
/// for INSUFFICIENT_MEMORY (11), which the driver must absorb by depositing
/// and retrying (running out of deposit rounds is ENOMEM, already allowed
/// by failslab's list).
pub fn status_errno(status: u16) -> Option<i32> {
    match status {
        11 => None,
        2 | 3 | 5 => Some(libc::EINVAL),
        6 | 8 => Some(libc::EACCES),
        _ => Some(libc::EIO),
    }
}

/// Whether `e` is an outcome a correct driver (and Linux under failslab)
/// may produce in the current MSHV_FAULTS pass: one of [`FAILSLAB_ERRNOS`],
/// or the errno of the injected status ([`status_errno`]).
pub fn faults_allow(e: i32) -> bool {
    allowed_under(faults_status(), e)
}

/// Under MSHV_FAULTS, appends a partition's `stats` lines to the file
/// `MSHV_FAULTS_LOG` names (scripts/check-faults sums `deposit_retries`
/// over a pass to see that injected INSUFFICIENT_MEMORY was absorbed).
pub fn faults_record(stats: &BTreeMap<String, u64>) {
    let Some(path) = std::env::var_os("MSHV_FAULTS_LOG") else {
        return;
    };
    let text: String = stats.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    let r = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut f| io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = r {
        note(&format!(
            "warning: MSHV_FAULTS_LOG {}: {e}",
            path.to_string_lossy()
        ));
    }
}

/// [`faults_allow`] for an injected `status`.
fn allowed_under(status: Option<u16>, e: i32) -> bool {
    FAILSLAB_ERRNOS.contains(&e) || status.and_then(status_errno) == Some(e)
}

/// The failure for a system call that failed with `e`: a test failure, or
/// with MSHV_FAULTS=1 and an errno [`faults_allow`] accepts, an accepted
/// outcome (reported as a SKIP whose reason starts with "MSHV_FAULTS", which
/// scripts/check-faults counts). Any other errno fails under MSHV_FAULTS too.
pub fn errno_failure(what: &str, e: i32) -> Failure {
    if faults_mode() && faults_allow(e) {
        Failure::Skip(format!(
            "MSHV_FAULTS: clean error accepted: {what}: {}",
            errname(e)
        ))
    } else if faults_mode() {
        let mut allowed: Vec<String> = FAILSLAB_ERRNOS.iter().map(|&e| errname(e)).collect();
        if let Some(x) = faults_status().and_then(status_errno) {
            allowed.push(errname(x));
        }
        Failure::Fail(format!(
            "{what}: {} (not an outcome of the injected failures: with status {} injected a correct driver returns only {})",
            errname(e),
            faults_status().map_or("(none)".to_string(), |s| s.to_string()),
            allowed.join(", ")
        ))
    } else {
        Failure::Fail(format!("{what}: {}", errname(e)))
    }
}

/// The failure for an I/O error: [`errno_failure`] when it carries an
/// errno, a test failure otherwise.
pub fn io_failure(what: &str, e: std::io::Error) -> Failure {
    match e.raw_os_error() {
        Some(n) => errno_failure(what, n),
        None => Failure::Fail(format!("{what}: {e}")),
    }
}

/// Whether `path` exists. Unlike `Path::exists`, an error other than
/// "not found" (failslab under MSHV_FAULTS makes lookups fail with ENOMEM)
/// is not taken for absence: it is [`errno_failure`].
pub fn present(path: impl AsRef<std::path::Path>) -> TResult<bool> {
    let path = path.as_ref();
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_failure(&format!("stat {}", path.display()), e)),
    }
}

/// Runs `f` again, up to 5 times in all, while it fails under MSHV_FAULTS
/// (failslab may fail a read's own allocations); once otherwise.
pub fn retry_under_faults<T, E>(mut f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let mut r = f();
    for _ in 1..if faults_mode() { 5 } else { 1 } {
        if r.is_ok() {
            break;
        }
        r = f();
    }
    r
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Set while [`crate_call`] runs a client-crate call whose panic it handles
/// itself; the test runner's panic hook then stays quiet.
pub static CRATE_PANIC_EXPECTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Runs `f`, a call into mshv-ioctls that unwraps some ioctl results itself
/// (`create_vm` unwraps its host property queries). Under MSHV_FAULTS a
/// panic on an errno (`Errno(Error(N))`) is that ioctl's clean error, and
/// becomes [`errno_failure`]; any other panic fails the test with its
/// message. Outside MSHV_FAULTS `f` runs as it is.
pub fn crate_call<T>(what: &str, f: impl FnOnce() -> T) -> TResult<T> {
    use std::sync::atomic::Ordering::SeqCst;
    if !faults_mode() {
        return Ok(f());
    }
    CRATE_PANIC_EXPECTED.store(true, SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CRATE_PANIC_EXPECTED.store(false, SeqCst);
    match r {
        Ok(v) => Ok(v),
        Err(payload) => {
            let msg = panic_message(&*payload);
            let errno = msg
                .split_once("Errno(Error(")
                .and_then(|(_, rest)| rest.split_once(')'))
                .and_then(|(n, _)| n.parse::<i32>().ok());
            match errno {
                Some(e) => Err(errno_failure(&format!("{what} (mshv-ioctls panicked)"), e)),
                None => Err(Failure::Fail(format!(
                    "{what}: mshv-ioctls panicked: {msg}"
                ))),
            }
        }
    }
}

/// The outcome of a raw ioctl: the return value or the errno.
pub type IoctlResult = Result<i32, i32>;

/// `ioctl(fd, req, arg)`.
///
/// # Safety
/// `arg` must be what the kernel expects for `req` (or deliberately invalid
/// in a way the kernel must reject without touching our memory wrongly).
pub unsafe fn ioctl_raw<T>(fd: i32, req: u64, arg: *mut T) -> IoctlResult {
    let r = libc::ioctl(fd, req as _, arg);
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

pub fn show_ioctl(r: IoctlResult) -> String {
    match r {
        Ok(v) => format!("success (returned {v})"),
        Err(e) => format!("failure {}", errname(e)),
    }
}

/// Accumulates many small expectations and fails once with all of them, so a
/// negative test reports every wrong errno at once.
#[derive(Default)]
pub struct Checks {
    failures: Vec<String>,
    count: usize,
}

impl Checks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Expects `r` to fail with `expected`. A success that returned a file
    /// descriptor is closed when `closes_fd` is set.
    pub fn errno(&mut self, what: &str, r: IoctlResult, expected: i32, closes_fd: bool) {
        self.count += 1;
        if let (Ok(fd), true) = (r, closes_fd) {
            if fd >= 0 {
                // SAFETY: the ioctl handed us this new descriptor.
                unsafe { libc::close(fd) };
            }
        }
        if r != Err(expected) {
            let line = format!(
                "{what}: expected failure {}, actual {}",
                errname(expected),
                show_ioctl(r)
            );
            note(&format!("FAILED {line}"));
            self.failures.push(line);
        } else if verbose() {
            note(&format!("ok: {what}: {}", errname(expected)));
        }
    }

    /// Expects `r` to succeed; returns the ioctl's return value if it did.
    pub fn success(&mut self, what: &str, r: IoctlResult) -> Option<i32> {
        self.count += 1;
        match r {
            Ok(v) => {
                if verbose() {
                    note(&format!("ok: {what}: success"));
                }
                Some(v)
            }
            Err(e) => {
                let line = format!("{what}: expected success, actual failure {}", errname(e));
                note(&format!("FAILED {line}"));
                self.failures.push(line);
                None
            }
        }
    }

    /// Records a free-form failed expectation.
    pub fn failed(&mut self, line: String) {
        self.count += 1;
        note(&format!("FAILED {line}"));
        self.failures.push(line);
    }

    pub fn finish(self) -> TResult {
        if self.failures.is_empty() {
            return Ok(());
        }
        Err(Failure::Fail(format!(
            "{} of {} expectations failed:\n{}",
            self.failures.len(),
            self.count,
            self.failures.join("\n")
        )))
    }
}

// ---------------------------------------------------------------------------
// Memory

pub const PAGE: usize = 4096;
pub const MIB: usize = 1 << 20;
/// MADV_POPULATE_WRITE (Linux 5.14), spelled out for older libc crates.
pub const MADV_POPULATE_WRITE: i32 = 23;

/// An anonymous private mapping (the VMM's guest RAM), unmapped on drop.
pub struct Mmap {
    ptr: *mut u8,
    len: usize,
}

impl Mmap {
    /// `mmap(NULL, len, RW, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE)`.
    pub fn anon(len: usize) -> TResult<Mmap> {
        Self::map(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
        )
    }

    /// `mmap(NULL, len, prot, flags, fd, 0)`, unmapped on drop.
    pub fn map(len: usize, prot: i32, flags: i32, fd: i32) -> TResult<Mmap> {
        Self::map_at(len, prot, flags, fd, 0)
    }

    /// `mmap(NULL, len, prot, flags, fd, offset)`, unmapped on drop.
    pub fn map_at(len: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> TResult<Mmap> {
        // SAFETY: a fresh mapping at an address the kernel picks; we own it
        // until drop.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset) };
        if p == libc::MAP_FAILED {
            return Err(errno_failure(
                &format!(
                    "mmap of {len:#x} bytes (prot {prot:#x}, flags {flags:#x}, offset {offset:#x})"
                ),
                errno(),
            ));
        }
        Ok(Mmap { ptr: p.cast(), len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    /// The bytes at `[off, off+len)`. Must not cover a hole punched with
    /// `punch_hole` that was not refilled.
    pub fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(off + len <= self.len);
        // SAFETY: in bounds of a live mapping.
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }
    }

    pub fn bytes_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
        assert!(off + len <= self.len);
        // SAFETY: in bounds of a live mapping, exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), len) }
    }

    pub fn read_u32(&self, off: usize) -> u32 {
        assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: aligned and in bounds; volatile as the guest shares it.
        unsafe { std::ptr::read_volatile(self.ptr.add(off).cast::<u32>()) }
    }

    pub fn write_u32(&self, off: usize, v: u32) {
        assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: aligned and in bounds; volatile as the guest shares it.
        unsafe { std::ptr::write_volatile(self.ptr.add(off).cast::<u32>(), v) }
    }

    pub fn madvise(&self, off: usize, len: usize, advice: i32) -> Result<(), i32> {
        assert!(off + len <= self.len);
        // SAFETY: a range of our own mapping.
        let r = unsafe { libc::madvise(self.ptr.add(off).cast(), len, advice) };
        if r == 0 {
            Ok(())
        } else {
            Err(errno())
        }
    }

    pub fn mprotect(&self, off: usize, len: usize, prot: i32) -> TResult {
        assert!(off + len <= self.len);
        // SAFETY: a range of our own mapping.
        let r = unsafe { libc::mprotect(self.ptr.add(off).cast(), len, prot) };
        if r != 0 {
            fail!("mprotect: {}", errname(errno()));
        }
        Ok(())
    }

    /// `munmap` of a part of the mapping, behind the driver's back.
    pub fn punch_hole(&self, off: usize, len: usize) -> TResult {
        assert!(off + len <= self.len);
        // SAFETY: unmaps part of our own mapping; nothing reads it until
        // `refill_hole` maps it again.
        let r = unsafe { libc::munmap(self.ptr.add(off).cast(), len) };
        if r != 0 {
            fail!("munmap of a part of guest memory: {}", errname(errno()));
        }
        Ok(())
    }

    /// Maps fresh anonymous memory at `[off, off+len)` (MAP_FIXED).
    pub fn refill_hole(&self, off: usize, len: usize) -> TResult {
        assert!(off + len <= self.len);
        // SAFETY: MAP_FIXED over a range of our own reservation.
        let p = unsafe {
            libc::mmap(
                self.ptr.add(off).cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        // SAFETY: `off + len <= self.len` (checked above): within the
        // reservation `self.ptr` starts.
        let want = unsafe { self.ptr.add(off) };
        if p == libc::MAP_FAILED || p.cast::<u8>() != want {
            fail!("mmap MAP_FIXED to refill the hole: {}", errname(errno()));
        }
        Ok(())
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A userfaultfd over one anonymous mapping in missing-page mode: the
/// kernel asks before it fills a page, and the VMM fills it (a post-copy
/// migration's guest memory). Nothing but a fault by the driver may touch
/// the mapping while a test relies on its events. Closed on drop.
pub struct Userfault {
    fd: i32,
}

/// `include/uapi/linux/userfaultfd.h`.
const UFFD_API: u64 = 0xaa;
const UFFDIO_API: u64 = 0xc018_aa3f;
const UFFDIO_REGISTER: u64 = 0xc020_aa00;
const UFFDIO_COPY: u64 = 0xc028_aa03;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;

impl Userfault {
    /// A userfaultfd with `mem` registered for missing-page faults (of
    /// kernel faults too: no `UFFD_USER_MODE_ONLY`).
    pub fn register(mem: &Mmap) -> TResult<Userfault> {
        // SAFETY: a plain system call.
        let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) }
            as i32;
        if fd < 0 {
            return Err(errno_failure("userfaultfd", errno()));
        }
        let uf = Userfault { fd };
        let mut api = [UFFD_API, 0, 0];
        uf.ioctl("UFFDIO_API", UFFDIO_API, api.as_mut_ptr())?;
        let mut reg = [
            mem.addr(),
            mem.len() as u64,
            UFFDIO_REGISTER_MODE_MISSING,
            0,
        ];
        uf.ioctl("UFFDIO_REGISTER", UFFDIO_REGISTER, reg.as_mut_ptr())?;
        Ok(uf)
    }

    fn ioctl(&self, what: &str, req: u64, arg: *mut u64) -> TResult {
        // SAFETY: `arg` points to the request's structure (u64 fields, as
        // large as `req` says).
        if unsafe { libc::ioctl(self.fd, req as _, arg) } != 0 {
            return Err(errno_failure(what, errno()));
        }
        Ok(())
    }

    /// The address of the next missing-page fault, waiting up to `limit`;
    /// `None` if none came.
    pub fn next_fault(&self, limit: Duration) -> TResult<Option<u64>> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, limit.as_millis().min(i32::MAX as u128) as i32) };
        if n <= 0 {
            return Ok(None);
        }
        let mut msg = [0u8; 32];
        // SAFETY: reads one `struct uffd_msg` into a buffer of its size.
        let got = unsafe { libc::read(self.fd, msg.as_mut_ptr().cast(), msg.len()) };
        // A fault that poll saw may be gone by the read (its waiter retried
        // or was woken another way): nothing to answer.
        if got < 0 && errno() == libc::EAGAIN {
            return Ok(None);
        }
        if got != msg.len() as isize {
            return Err(errno_failure("read the userfaultfd", errno()));
        }
        if msg[0] != UFFD_EVENT_PAGEFAULT {
            fail!(
                "userfaultfd event {:#x}, expected a page fault (0x12)",
                msg[0]
            );
        }
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&msg[16..24]);
        Ok(Some(u64::from_le_bytes(addr)))
    }

    /// Fills the missing page at `addr` (page-aligned) with `src` (one
    /// page) and wakes the thread that faulted on it.
    pub fn copy(&self, addr: u64, src: &[u8]) -> TResult {
        assert_eq!(src.len(), PAGE);
        let mut c = [addr, src.as_ptr() as u64, PAGE as u64, 0, 0];
        self.ioctl("UFFDIO_COPY", UFFDIO_COPY, c.as_mut_ptr())
    }
}

impl Drop for Userfault {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        unsafe { libc::close(self.fd) };
    }
}

/// The dword pattern guests and the VMM write: the dword at guest physical
/// address `gpa` holds `gpa ^ seed` (see monitor32.S, PATTERN_WRITE).
pub fn pattern_word(gpa: u64, seed: u32) -> u32 {
    (gpa as u32) ^ seed
}

/// Fills `[off, off+len)` of `mem`, which the guest sees at GPA `gpa`.
pub fn fill_pattern(mem: &mut Mmap, off: usize, len: usize, gpa: u64, seed: u32) {
    let bytes = mem.bytes_mut(off, len);
    for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&pattern_word(gpa + (i * 4) as u64, seed).to_le_bytes());
    }
}

/// Compares `[off, off+len)`, which the guest sees at GPA `gpa`, with the
/// pattern, byte for byte; reports the first mismatch and how many dwords
/// differ.
pub fn verify_pattern(
    mem: &Mmap,
    off: usize,
    len: usize,
    gpa: u64,
    seed: u32,
    what: &str,
) -> TResult {
    verify_words(mem, off, len, what, |i| {
        pattern_word(gpa + (i * 4) as u64, seed)
    })
}

/// Compares `[off, off+len)` with a constant dword.
pub fn verify_const(mem: &Mmap, off: usize, len: usize, value: u32, what: &str) -> TResult {
    verify_words(mem, off, len, what, |_| value)
}

fn verify_words(
    mem: &Mmap,
    off: usize,
    len: usize,
    what: &str,
    expect: impl Fn(usize) -> u32,
) -> TResult {
    let bytes = mem.bytes(off, len);
    let mut first: Option<(usize, u32, u32)> = None;
    let mut bad = 0usize;
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        let got = u32::from_le_bytes(chunk.try_into().unwrap());
        let want = expect(i);
        if got != want {
            bad += 1;
            if first.is_none() {
                first = Some((off + i * 4, want, got));
            }
        }
    }
    if let Some((o, want, got)) = first {
        fail!(
            "{what}: {bad} of {} dwords differ; first at offset {o:#x}\nexpected: {want:#010x}\nactual:   {got:#010x}",
            len / 4
        );
    }
    Ok(())
}

/// Splits `[off, off+len)` into dword counts for guest commands.
pub fn dwords(len: usize) -> u32 {
    (len / 4) as u32
}

/// Whether `ptr` is backed by transparent huge pages, from /proc/self/smaps:
/// the AnonHugePages of the VMA containing it, in kB.
pub fn anon_huge_kb(addr: u64) -> Option<u64> {
    let smaps = fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) {
                inside = lo <= addr && addr < hi;
                continue;
            }
        }
        if inside {
            if let Some(rest) = line.strip_prefix("AnonHugePages:") {
                return rest.split_whitespace().next()?.parse().ok();
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// debugfs

pub const DEBUGFS: &str = "/sys/kernel/debug";
/// The driver's debugfs directory; MSHV_VMTESTS_DEBUGFS overrides it (a
/// debugfs mounted elsewhere).
pub const MSHV_DEBUGFS_DEFAULT: &str = "/sys/kernel/debug/mshv_rs";

pub fn mshv_debugfs() -> PathBuf {
    match std::env::var_os("MSHV_VMTESTS_DEBUGFS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(MSHV_DEBUGFS_DEFAULT),
    }
}

/// `<debugfs>/mshv_rs/partitions`: one directory per partition, named by id.
pub fn partitions_dir() -> PathBuf {
    mshv_debugfs().join("partitions")
}

/// `<debugfs>/mshv_rs/live_objects`: `name N` lines.
pub fn live_objects_path() -> PathBuf {
    mshv_debugfs().join("live_objects")
}

/// `<debugfs>/mshv_rs/force_pinned`: 1 = map new regions pinned.
pub fn force_pinned_path() -> PathBuf {
    mshv_debugfs().join("force_pinned")
}
pub const STAT_NAMES: [&str; 6] = [
    "gpa_intercepts",
    "mapped_4k",
    "mapped_2m",
    "invalidations",
    "hypercalls",
    "deposit_retries",
];
pub const LIVE_NAMES: [&str; 7] = [
    "partitions",
    "vps",
    "regions",
    "pinned_pages",
    "deposited_pages",
    "irqfds",
    "ioeventfds",
];

/// Mounts debugfs at /sys/kernel/debug if mshv_rs' directory is not visible.
/// Returns a description of what is wrong if it still is not.
pub fn ensure_debugfs() -> Result<(), String> {
    let dir = mshv_debugfs();
    if dir.is_dir() {
        return Ok(());
    }
    if std::env::var_os("MSHV_VMTESTS_DEBUGFS").is_some() {
        return Err(format!(
            "{} (MSHV_VMTESTS_DEBUGFS) does not exist",
            dir.display()
        ));
    }
    let mounted = fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(DEBUGFS))
        })
        .unwrap_or(false);
    if !mounted {
        let _ = fs::create_dir_all(DEBUGFS);
        // SAFETY: constant NUL-terminated strings.
        let r = unsafe {
            libc::mount(
                c"debugfs".as_ptr(),
                c"/sys/kernel/debug".as_ptr(),
                c"debugfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(format!(
                "debugfs is not mounted and `mount -t debugfs` failed: {}",
                errname(errno())
            ));
        }
    }
    if dir.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "{} does not exist (debugfs is mounted)",
            dir.display()
        ))
    }
}

/// Parses a `name value` per line file into a map.
pub fn read_kv(path: &Path) -> Result<BTreeMap<String, u64>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(name), Some(value), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!(
                "{} line {}: expected `name value`, got {line:?}",
                path.display(),
                n + 1
            ));
        };
        let value = parse_u64(value).ok_or_else(|| {
            format!(
                "{} line {}: value {value:?} is not a number",
                path.display(),
                n + 1
            )
        })?;
        map.insert(name.to_string(), value);
    }
    Ok(map)
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

pub fn show_kv(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The debugfs directory of the partition created last: the numerically
/// highest entry of /sys/kernel/debug/mshv_rs/partitions/ (mshv-ioctls does
/// not expose the partition id; tests run one at a time).
pub fn latest_partition_dir() -> Result<PathBuf, String> {
    ensure_debugfs()?;
    let pdir = partitions_dir();
    let rd = fs::read_dir(&pdir).map_err(|e| format!("read_dir {}: {e}", pdir.display()))?;
    let mut best: Option<(u64, PathBuf)> = None;
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(id) = name.to_str().and_then(parse_u64) else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| id > *b) {
            best = Some((id, ent.path()));
        }
    }
    best.map(|(_, p)| p)
        .ok_or_else(|| format!("no partition directory under {}", pdir.display()))
}

/// The `stats` file of a partition directory, with all six names required.
pub fn partition_stats(dir: &Path) -> TResult<BTreeMap<String, u64>> {
    let map = read_kv(&dir.join("stats")).ctx("partition stats")?;
    for name in STAT_NAMES {
        ensure!(
            map.contains_key(name),
            "{}/stats has no `{name}` line (has: {})",
            dir.display(),
            show_kv(&map)
        );
    }
    Ok(map)
}

/// The `name value` lines of the emulator's debugfs file `sim/<file>`
/// (a missing file: [`debugfs_missing`], only the simulator has it).
pub fn sim_kv(file: &str) -> TResult<BTreeMap<String, u64>> {
    let path = mshv_debugfs().join("sim").join(file);
    if !present(&path)? {
        return Err(debugfs_missing(&path, true));
    }
    read_kv(&path).ctx(&format!("sim/{file}"))
}

/// Successful calls of hypercall `code` the emulator answered since load
/// (`sim/calls`; a code never called successfully has no line: 0).
pub fn sim_calls(code: u16) -> TResult<u64> {
    Ok(sim_kv("calls")?
        .get(&format!("{code:#06x}"))
        .copied()
        .unwrap_or(0))
}

/// The driver's object counters (`live_objects`, which the driver creates
/// on every backend). A missing file is a failure ([`debugfs_missing`]).
/// Fails unless each live-object counter in `keys`, read once now, is back
/// at its value in `start` ("live {k} {when}").
pub fn ensure_live_same(start: &BTreeMap<String, u64>, keys: &[&str], when: &str) -> TResult {
    let now = live_objects()?;
    for k in keys {
        crate::ensure_eq!(now[*k], start[*k], "live {k} {when}");
    }
    Ok(())
}

pub fn live_objects() -> TResult<BTreeMap<String, u64>> {
    let _ = ensure_debugfs();
    let path = live_objects_path();
    if !present(&path)? {
        return Err(debugfs_missing(&path, false));
    }
    let map = retry_under_faults(|| read_kv(&path)).ctx("live_objects")?;
    for name in LIVE_NAMES {
        ensure!(
            map.contains_key(name),
            "{} has no `{name}` line (has: {})",
            path.display(),
            show_kv(&map)
        );
    }
    Ok(map)
}

/// `/sys/module/mshv_rs/parameters/backend`: the backend the loaded module
/// was asked for (`sim` runs the simulated hypervisor; the module refuses to
/// load with anything else off a Hyper-V root).
pub const BACKEND_PARAM: &str = "/sys/module/mshv_rs/parameters/backend";

/// The loaded module's backend parameter, or why it cannot be read.
/// The emulator's scheduler model (`sim_scheduler=`: "root" or "core"), or
/// `None` when the module runs no emulator.
pub fn sim_scheduler() -> Option<String> {
    if backend().ok()? != "sim" {
        return None;
    }
    fs::read_to_string(SCHEDULER_PARAM)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `sim_scheduler=` of the loaded module.
const SCHEDULER_PARAM: &str = "/sys/module/mshv_rs/parameters/sim_scheduler";

pub fn backend() -> Result<String, String> {
    fs::read_to_string(BACKEND_PARAM)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("read {BACKEND_PARAM}: {e}"))
}

/// The failure for a driver debugfs file or directory `path` that does not
/// exist. `sim_only`: the file exists only with backend=sim, so on another
/// backend the test is skipped. Otherwise (the module is loaded and must
/// have created it) it is a test failure; only under MSHV_FAULTS, where
/// failslab may fail `debugfs_create_*` and the driver rightly carries on
/// without the file, it is an accepted outcome.
pub fn debugfs_missing(path: &Path, sim_only: bool) -> Failure {
    let b = backend().unwrap_or_else(|e| format!("unknown ({e})"));
    if sim_only && b != "sim" {
        return Failure::Skip(format!(
            "{} missing: the module runs backend={b}, and only the simulator has it",
            path.display()
        ));
    }
    if faults_mode() {
        return Failure::Skip(format!(
            "MSHV_FAULTS: injected failure accepted: {} missing (failslab may fail its creation)",
            path.display()
        ));
    }
    Failure::Fail(format!(
        "{} missing, with the module loaded (backend={b})",
        path.display()
    ))
}

/// While alive, the driver's invariant-violation messages in the kernel log
/// are expected (a test provokes one on purpose): scripts/vm-run, which
/// fails a run on such a message, ignores the lines between the begin and
/// end markers this writes to /dev/kmsg.
pub struct ExpectKernelErrors(());

impl ExpectKernelErrors {
    pub fn begin(why: &str) -> TResult<ExpectKernelErrors> {
        fs::write(
            "/dev/kmsg",
            format!("mshv-vmtests: expected driver errors begin ({why})\n"),
        )
        .ctx("write /dev/kmsg")?;
        Ok(ExpectKernelErrors(()))
    }
}

impl Drop for ExpectKernelErrors {
    fn drop(&mut self) {
        if let Err(e) = fs::write("/dev/kmsg", "mshv-vmtests: expected driver errors end\n") {
            note(&format!(
                "warning: writing the end marker to /dev/kmsg: {e}"
            ));
        }
    }
}

/// `force_pinned` = 1 while alive; written back to 0 on drop.
pub struct ForcePinned(());

impl ForcePinned {
    pub fn on() -> TResult<ForcePinned> {
        ensure_debugfs().ctx("debugfs")?;
        let path = force_pinned_path();
        fs::write(&path, "1").ctx(&format!("write 1 to {}", path.display()))?;
        Ok(ForcePinned(()))
    }
}

impl Drop for ForcePinned {
    fn drop(&mut self) {
        let path = force_pinned_path();
        if let Err(e) = fs::write(&path, "0") {
            note(&format!("warning: writing 0 to {}: {e}", path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errno_of_io_errors() {
        let e = std::io::Error::from_raw_os_error(libc::ENOMEM);
        assert_eq!(os_errno(&format!("read /x: {e}")), Some(libc::ENOMEM));
        assert_eq!(os_errno("read /x: unexpected end of file"), None);
        assert_eq!(os_errno("(os error 12) and more"), None);
    }

    #[test]
    fn faults_allow_lists() {
        // INSUFFICIENT_MEMORY must be absorbed: only failslab's errnos.
        for e in [libc::ENOMEM, libc::EFAULT, libc::EAGAIN] {
            assert!(allowed_under(Some(11), e), "{e}");
            assert!(allowed_under(None, e), "{e}");
        }
        for e in [
            libc::EINVAL,
            libc::EIO,
            libc::EBUSY,
            libc::EACCES,
            libc::EBADF,
        ] {
            assert!(!allowed_under(Some(11), e), "{e}");
            assert!(!allowed_under(None, e), "{e}");
        }
        // INVALID_PARAMETER surfaces as EINVAL, nothing else.
        assert!(allowed_under(Some(5), libc::EINVAL));
        assert!(!allowed_under(Some(5), libc::EIO));
        assert!(!allowed_under(Some(5), libc::EACCES));
    }

    #[test]
    fn crate_call_outcomes() {
        // The only test in this binary that reads MSHV_FAULTS.
        std::env::set_var("MSHV_FAULTS", "1");
        std::panic::set_hook(Box::new(|_| {}));
        let errno = crate_call("create_vm", || -> () {
            let r: Result<(), String> = Err("Errno(Error(12))".into());
            r.unwrap()
        });
        match errno {
            Err(Failure::Skip(s)) => assert_eq!(
                s,
                "MSHV_FAULTS: clean error accepted: create_vm (mshv-ioctls panicked): ENOMEM (12)"
            ),
            other => panic!("errno panic: {other:?}"),
        }
        match crate_call("create_vm", || -> () { panic!("index out of bounds") }) {
            Err(Failure::Fail(s)) => {
                assert_eq!(s, "create_vm: mshv-ioctls panicked: index out of bounds")
            }
            other => panic!("other panic: {other:?}"),
        }
        assert_eq!(crate_call("create_vm", || 7).ok(), Some(7));
        assert!(!CRATE_PANIC_EXPECTED.load(std::sync::atomic::Ordering::SeqCst));
    }
}

/// `/proc/self/pagemap` entry of `addr` (root sees pfns).
pub fn pagemap(addr: u64) -> TResult<u64> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open("/proc/self/pagemap")
        .map_err(|e| io_failure("open /proc/self/pagemap", e))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, (addr / PAGE as u64) * 8)
        .map_err(|e| io_failure("read /proc/self/pagemap", e))?;
    Ok(u64::from_ne_bytes(b))
}

/// pagemap: the page is present.
pub const PM_PRESENT: u64 = 1 << 63;
/// pagemap: a file or shared anonymous page.
pub const PM_FILE: u64 = 1 << 61;
/// pagemap: the pfn bits of a present page.
pub const PM_PFN: u64 = (1 << 55) - 1;
