//! A fork-join pool for splitting one layer over threads, without heap allocation per job.
//!
//! Workers are spawned once (on first use, or by [`set_threads`]). A job is a borrowed
//! `Fn(task)` that task 0 runs on the calling thread and task `i` on worker `i`. Layers
//! follow each other within microseconds, so workers spin on the job counter for a while
//! (waking a sleeping thread costs tens of microseconds, as much as a small layer) and only
//! then sleep on a condition variable. One caller at a time uses the workers; a caller that
//! finds them busy (models called from many threads at once) runs the job's tasks itself.
//!
//! Soundness: a job borrows the caller's closure with its lifetime erased, so the
//! dispatcher must not return (or unwind) while a worker may still call it. `Pool::run`
//! waits for every worker in a drop guard, also when task 0 panics; a panic in a worker is
//! caught there, recorded, and re-raised on the calling thread once all have finished, so a
//! layer never returns partial output as if it were whole.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps.
const SPIN: Duration = Duration::from_millis(5);

/// A pointer to a buffer that a pool job's tasks write in disjoint parts.
#[derive(Clone, Copy)]
pub struct SharedMut(*mut f32);
// SAFETY: the pointer is only dereferenced by a job's tasks, each in a range no other task
// touches, and `Pool::run` returns only when all tasks have finished; sending or sharing
// the address itself is harmless.
unsafe impl Send for SharedMut {}
// SAFETY: as for `Send`.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    pub fn new(p: *mut f32) -> SharedMut {
        SharedMut(p)
    }

    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// A borrowed job, lifetime-erased while workers run it (the dispatcher waits for them).
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn(usize) + Sync));

struct Shared {
    /// Bumped (SeqCst) once a job is in `job`; workers run each generation once.
    generation: AtomicU64,
    /// Written by the dispatcher only while no worker reads it (between generations).
    job: UnsafeCell<Option<Job>>,
    /// Workers still running the current job.
    remaining: AtomicUsize,
    /// Whether a worker's task panicked in the current job.
    panicked: AtomicBool,
    /// Workers asleep (or about to be) on `wake`.
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the (serialised) dispatcher before it publishes a new
// generation and while every worker has finished the previous one; workers read it only
// after seeing that generation. The pointee is `Sync`. All other fields are `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as for `Sync`: the raw job pointer is only used under that protocol.
unsafe impl Send for Shared {}

/// The pool.
pub struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    dispatch: Mutex<()>,
}

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static POOL: OnceLock<Pool> = OnceLock::new();

/// The most threads a pool may have.
pub const MAX_THREADS: usize = 1024;

/// Sets the thread count of the global pool (1 to [`MAX_THREADS`]); only before its first
/// use.
pub fn set_threads(threads: usize) -> Result<(), String> {
    if threads == 0 || threads > MAX_THREADS {
        return Err(format!("the thread count must be 1 to {MAX_THREADS}, not {threads}"));
    }
    REQUESTED.store(threads, Ordering::SeqCst);
    match POOL.get() {
        Some(p) if p.threads != threads => Err(format!("the thread pool already runs {} threads", p.threads)),
        _ => Ok(()),
    }
}

/// Runs `job(0)`, ..., `job(threads - 1)` on the global pool (on the calling thread alone
/// when `threads` is 1), the pool's other threads idle.
pub fn run_first(threads: usize, job: &(dyn Fn(usize) + Sync)) {
    if threads <= 1 {
        job(0);
    } else {
        global().run(&|t| {
            if t < threads {
                job(t)
            }
        });
    }
}

/// The global pool (created on first use with the requested or available thread count).
pub fn global() -> &'static Pool {
    POOL.get_or_init(|| {
        let n = match REQUESTED.load(Ordering::SeqCst) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS),
            n => n,
        };
        Pool::new(n)
    })
}

impl Pool {
    fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            remaining: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut started = 1;
        for index in 1..threads {
            let shared = Arc::clone(&shared);
            match std::thread::Builder::new().name(format!("resnetc-{index}")).spawn(move || worker(&shared, index)) {
                Ok(_) => started += 1,
                Err(e) => {
                    eprintln!("resnetc: could start only {started} of {threads} threads ({e}); running on {started}");
                    break;
                }
            }
        }
        Pool { shared, threads: started, dispatch: Mutex::new(()) }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(0)`, ..., `f(threads - 1)` at once and returns when all have finished.
    ///
    /// # Panics
    /// If a task panicked (after every task has finished).
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            f(0);
            return;
        }
        let _serial = match self.dispatch.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                // Another caller (another model call at the same time) holds the workers:
                // run every task on this thread instead of waiting for them. Tasks write
                // disjoint parts and never wait for each other, so any order is the same job.
                for task in 0..self.threads {
                    f(task);
                }
                return;
            }
        };
        let sh = &*self.shared;
        // SAFETY: only the lifetime is erased; this function waits below until every worker
        // has finished with the job, so `f` outlives all uses. No worker reads `job` now:
        // the previous generation is finished and the next is not yet published.
        unsafe {
            let job: *const (dyn Fn(usize) + Sync + 'static) = std::mem::transmute(f as *const (dyn Fn(usize) + Sync));
            *sh.job.get() = Some(Job(job));
        }
        sh.panicked.store(false, Ordering::SeqCst);
        sh.remaining.store(self.threads - 1, Ordering::SeqCst);
        sh.generation.fetch_add(1, Ordering::SeqCst);
        if sh.sleeping.load(Ordering::SeqCst) > 0 {
            let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        // Waits for every worker when dropped: after task 0, or while it unwinds.
        let wait = WaitForWorkers(sh);
        f(0);
        drop(wait);
        if sh.panicked.swap(false, Ordering::SeqCst) {
            panic!("a resnetc worker thread panicked in a kernel (its message is above)");
        }
    }
}

/// Spins until every worker has finished the current job.
struct WaitForWorkers<'a>(&'a Shared);

impl Drop for WaitForWorkers<'_> {
    fn drop(&mut self) {
        let mut spins = 0u32;
        while self.0.remaining.load(Ordering::Acquire) > 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Waits for the generation after `seen`: spinning for [`SPIN`], then asleep.
fn next_generation(sh: &Shared, seen: u64) -> u64 {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let g = sh.generation.load(Ordering::Acquire);
        if g != seen {
            return g;
        }
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(1024) || start.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        let mut guard = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
        sh.sleeping.fetch_add(1, Ordering::SeqCst);
        while sh.generation.load(Ordering::SeqCst) == seen {
            guard = sh.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        sh.sleeping.fetch_sub(1, Ordering::SeqCst);
    }
}

fn worker(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        seen = next_generation(shared, seen);
        // SAFETY: the dispatcher wrote the job before publishing this generation and does
        // not write it again before `remaining` reaches zero.
        let job = unsafe { (*shared.job.get()).expect("invariant: a new generation carries a job") };
        // SAFETY: the dispatcher keeps the pointee alive until `remaining` reaches zero (its
        // `WaitForWorkers` guard waits even while it unwinds).
        let f = unsafe { &*job.0 };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(index)));
        if outcome.is_err() {
            shared.panicked.store(true, Ordering::SeqCst);
        }
        shared.remaining.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_once_per_job() {
        let pool = super::Pool::new(3);
        for _ in 0..100 {
            let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            pool.run(&|t| {
                hits[t].fetch_add(1, Ordering::SeqCst);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
        }
    }

    #[test]
    fn callers_at_once_each_get_every_task_run_once() {
        // Four callers share a 3-thread pool: those that find the workers busy run their
        // tasks themselves; every job still runs each task exactly once.
        let pool = super::Pool::new(3);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
                        pool.run(&|t| {
                            hits[t].fetch_add(1, Ordering::SeqCst);
                            std::hint::spin_loop();
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
                    }
                });
            }
        });
    }

    #[test]
    fn a_worker_panic_reaches_the_caller_after_every_task_ends() {
        let pool = super::Pool::new(3);
        let done = AtomicUsize::new(0);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(&|t| {
                if t == 1 {
                    panic!("task 1 fails");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
                done.fetch_add(1, Ordering::SeqCst);
            })
        }));
        assert!(outcome.is_err(), "the worker's panic must reach the caller");
        assert_eq!(done.load(Ordering::SeqCst), 2, "tasks 0 and 2 finished before run returned");
        // The pool still works.
        let hits = AtomicUsize::new(0);
        pool.run(&|_| {
            hits.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_panic_in_task_zero_waits_for_the_workers() {
        let pool = super::Pool::new(3);
        let done = AtomicUsize::new(0);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(&|t| {
                if t == 0 {
                    panic!("task 0 fails");
                }
                std::thread::sleep(std::time::Duration::from_millis(30));
                done.fetch_add(1, Ordering::SeqCst);
            })
        }));
        assert!(outcome.is_err());
        // Had run unwound at once, the workers would still be asleep in the closure here.
        assert_eq!(done.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn thread_counts_are_bounded() {
        assert!(super::set_threads(0).is_err());
        assert!(super::set_threads(super::MAX_THREADS + 1).is_err());
    }
}
