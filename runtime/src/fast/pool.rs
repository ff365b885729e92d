//! A fork-join pool for splitting one layer over threads, without heap allocation per job.
//!
//! Workers are spawned once (on first use, or by [`set_threads`]) and wait on a condition
//! variable; a job is a borrowed `Fn(task)` that task 0 runs on the calling thread and task
//! `i` on worker `i`. Dispatches are serialised, so models may be called from many threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

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
// SAFETY: the pointee is `Sync` and outlives every use (see `Pool::run`).
unsafe impl Send for Job {}

struct State {
    job: Option<Job>,
    generation: u64,
    remaining: usize,
}

struct Shared {
    state: Mutex<State>,
    start: Condvar,
    done: Condvar,
}

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
            state: Mutex::new(State { job: None, generation: 0, remaining: 0 }),
            start: Condvar::new(),
            done: Condvar::new(),
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
        {
            let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: only the lifetime is erased; this function waits below until every
            // worker has finished with the job, so `f` outlives all uses.
            let job: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(f as *const (dyn Fn(usize) + Sync)) };
            s.job = Some(Job(job));
            s.generation += 1;
            s.remaining = self.threads - 1;
            self.shared.start.notify_all();
        }
        f(0);
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.remaining > 0 {
            s = self.shared.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.job = None;
    }
}

fn worker(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let job = {
            let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            while s.generation == seen {
                s = shared.start.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            seen = s.generation;
            s.job.expect("invariant: a new generation carries a job")
        };
        // SAFETY: the dispatcher keeps the job alive until `remaining` reaches zero.
        let f = unsafe { &*job.0 };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(index)));
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.remaining -= 1;
        if s.remaining == 0 {
            shared.done.notify_one();
        }
        drop(s);
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
