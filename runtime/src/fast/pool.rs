//! A fork-join pool for splitting one layer over threads, without heap allocation per job.
//!
//! Workers are spawned once (on first use, or by [`set_threads`]). A job is a borrowed
//! `Fn(task)` that task 0 runs on the calling thread and task `i` on worker `i`. Layers
//! follow each other within microseconds, so workers spin on the job counter for a while
//! (waking a sleeping thread costs tens of microseconds, as much as a small layer) and only
//! then sleep on a condition variable. Dispatches are serialised, so models may be called
//! from many threads.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps.
const SPIN: Duration = Duration::from_millis(5);

/// A pointer to a buffer that a pool job's tasks write in disjoint parts.
#[derive(Clone, Copy)]
pub struct SharedMut(*mut f32);
// SAFETY: tasks write disjoint ranges, and `Pool::run` returns only when all have finished.
unsafe impl Send for SharedMut {}
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
    /// Workers asleep (or about to be) on `wake`.
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the (serialised) dispatcher before it publishes a new
// generation and while every worker has finished the previous one; workers read it only
// after seeing that generation. The pointee is `Sync`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// The pool.
pub struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    dispatch: Mutex<()>,
}

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static POOL: OnceLock<Pool> = OnceLock::new();

/// Sets the thread count of the global pool; only before its first use.
pub fn set_threads(threads: usize) -> Result<(), String> {
    REQUESTED.store(threads.max(1), Ordering::SeqCst);
    match POOL.get() {
        Some(p) if p.threads != threads.max(1) => Err(format!("the thread pool already runs {} threads", p.threads)),
        _ => Ok(()),
    }
}

/// The global pool (created on first use with the requested or available thread count).
pub fn global() -> &'static Pool {
    POOL.get_or_init(|| {
        let n = match REQUESTED.load(Ordering::SeqCst) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
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
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        for index in 1..threads {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("resnetc-{index}"))
                .spawn(move || worker(&shared, index))
                .expect("invariant: the OS can start the pool's threads");
        }
        Pool { shared, threads, dispatch: Mutex::new(()) }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(0)`, ..., `f(threads - 1)` at once and returns when all have finished.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            f(0);
            return;
        }
        let _serial = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        let sh = &*self.shared;
        // SAFETY: only the lifetime is erased; this function waits below until every worker
        // has finished with the job, so `f` outlives all uses. No worker reads `job` now:
        // the previous generation is finished and the next is not yet published.
        unsafe {
            let job: *const (dyn Fn(usize) + Sync + 'static) = std::mem::transmute(f as *const (dyn Fn(usize) + Sync));
            *sh.job.get() = Some(Job(job));
        }
        sh.remaining.store(self.threads - 1, Ordering::SeqCst);
        sh.generation.fetch_add(1, Ordering::SeqCst);
        if sh.sleeping.load(Ordering::SeqCst) > 0 {
            let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        f(0);
        let mut spins = 0u32;
        while sh.remaining.load(Ordering::Acquire) > 0 {
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
        // SAFETY: the dispatcher wrote the job before publishing this generation and keeps
        // it (and its pointee) alive until `remaining` reaches zero.
        let job = unsafe { (*shared.job.get()).expect("invariant: a new generation carries a job") };
        let f = unsafe { &*job.0 };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(index)));
        shared.remaining.fetch_sub(1, Ordering::Release);
        if outcome.is_err() {
            eprintln!("resnetc: a worker thread panicked in a kernel");
        }
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
}
