// SPDX-License-Identifier: GPL-2.0
//
// Stopping the worker threads at the end of a run.
//
// A worker may be inside a blocking call when the run ends: RUN_VP with a
// guest that spins forever, or waiting for a VP's mutex (the driver takes
// it with `mutex_lock_killable`, as KVM and upstream do, so only a fatal
// signal interrupts that wait). The wake-up signal has a handler that does
// nothing and no SA_RESTART, so a RUN_VP that gets it returns EINTR.
//
// Every thread still running is signalled on every round, not only the one
// being joined: a thread waiting for a VP's mutex leaves only after the
// thread that holds it leaves its RUN_VP, and that thread may have any
// index. (Signalling only the thread being joined was the fuzzer's
// "RUN_VP stall" of seeds 3 and 7: thread 2 waited for the mutex of a VP
// whose guest thread 3 ran, and thread 3 was never signalled.)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The wake-up signal sent to workers.
pub const WAKE: libc::c_int = libc::SIGUSR1;

extern "C" fn on_wake(_: libc::c_int) {}

/// Installs the do-nothing handler of [`WAKE`], without SA_RESTART, so a
/// blocking ioctl interrupted by it returns EINTR.
pub fn install_wake_handler() {
    // SAFETY: installing a handler that does nothing.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_wake as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(WAKE, &sa, std::ptr::null_mut());
    }
}

/// Sends [`WAKE`] to the thread whose `pthread_t` is `tid` (0: not started
/// yet, nothing to do).
///
/// # Safety
///
/// `tid` is 0 or the `pthread_t` of a thread that has not been joined.
pub unsafe fn wake(tid: u64) {
    if tid != 0 {
        // SAFETY: the caller's promise.
        unsafe { libc::pthread_kill(tid as libc::pthread_t, WAKE) };
    }
}

/// Joins `handles` (thread `i` has the `pthread_t` in `tids[i]`, 0 until it
/// has stored it), signalling every thread that has not finished every
/// `period`, and returns their results in order. If some thread has not
/// finished `stall` after the call, returns `Err` with the index of the
/// first such thread; the threads not joined are then left running.
pub fn join_all<T>(
    handles: Vec<JoinHandle<T>>,
    tids: &[AtomicU64],
    period: Duration,
    stall: Duration,
) -> Result<Vec<Option<T>>, usize> {
    let start = Instant::now();
    let mut handles: Vec<Option<JoinHandle<T>>> = handles.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = handles.iter().map(|_| None).collect();
    loop {
        let mut running = None;
        for (i, slot) in handles.iter_mut().enumerate() {
            match slot.take() {
                Some(h) if h.is_finished() => {
                    // A worker that panicked gives no result.
                    out[i] = h.join().ok();
                }
                Some(h) => {
                    let tid = tids.get(i).map_or(0, |t| t.load(Relaxed));
                    // SAFETY: `h` is not joined, so the thread's pthread_t
                    // is still valid.
                    unsafe { wake(tid) };
                    running.get_or_insert(i);
                    *slot = Some(h);
                }
                None => {}
            }
        }
        let Some(first) = running else {
            return Ok(out);
        };
        if start.elapsed() > stall {
            return Err(first);
        }
        std::thread::sleep(period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier, Mutex};

    fn self_tid(tids: &[AtomicU64], i: usize) {
        // SAFETY: pthread_self has no preconditions.
        tids[i].store(unsafe { libc::pthread_self() } as u64, Relaxed);
    }

    /// The fuzzer's stall: thread 0 waits (restartably, like a killable
    /// mutex) for a lock that thread 1 holds while it sits in a call only
    /// the wake-up signal ends (like RUN_VP on a spinning guest). Both
    /// leave, and each result comes back in its place.
    #[test]
    fn a_waiter_behind_a_higher_thread_is_freed() {
        install_wake_handler();
        let tids: Arc<Vec<AtomicU64>> = Arc::new((0..2).map(|_| AtomicU64::new(0)).collect());
        let lock = Arc::new(Mutex::new(()));
        let held = Arc::new(Barrier::new(2));
        let waiter = {
            let (tids, lock, held) = (tids.clone(), lock.clone(), held.clone());
            std::thread::spawn(move || {
                self_tid(&tids, 0);
                held.wait();
                // A futex wait restarts after a handled signal.
                drop(lock.lock());
                "waiter"
            })
        };
        let holder = {
            let (tids, lock, held) = (tids.clone(), lock.clone(), held.clone());
            std::thread::spawn(move || {
                self_tid(&tids, 1);
                let g = lock.lock();
                held.wait();
                // pause() returns only when a handled signal arrives.
                // SAFETY: plain syscall.
                unsafe { libc::pause() };
                drop(g);
                "holder"
            })
        };
        let r = join_all(
            vec![waiter, holder],
            &tids,
            Duration::from_millis(20),
            Duration::from_secs(10),
        );
        assert_eq!(r, Ok(vec![Some("waiter"), Some("holder")]));
    }

    /// A thread that never leaves is reported by index once the stall time
    /// has passed; the threads before it are joined.
    #[test]
    fn a_thread_that_never_stops_is_reported() {
        install_wake_handler();
        let tids: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
        let quick = std::thread::spawn(|| 0);
        let stuck = {
            let tids = tids.clone();
            std::thread::spawn(move || -> i32 {
                self_tid(&tids, 1);
                loop {
                    // Restarted after every signal: never leaves.
                    std::thread::sleep(Duration::from_secs(3600));
                }
            })
        };
        let late = std::thread::spawn(|| 2);
        let t0 = Instant::now();
        let r = join_all(
            vec![quick, stuck, late],
            &tids,
            Duration::from_millis(20),
            Duration::from_millis(300),
        );
        assert_eq!(r, Err(1));
        assert!(t0.elapsed() >= Duration::from_millis(300));
    }
}
