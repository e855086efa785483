//! The elastic pool that runs blocking tasks.
//!
//! One queue and one condition variable. A worker is started when a job
//! arrives and no worker is idle, up to `max_workers`; an idle worker leaves
//! after `keep_alive`. Waking is a relay, so a submit never pays for more
//! than one wake-up: a job is pushed, and one worker is woken (or started)
//! only if no worker is already on its way to the queue. Each worker, as it
//! takes a job and finds more queued behind it, wakes the next one before it
//! runs its own. A worker that finds more work after a job runs it under the
//! same GIL acquisition, so a flood of short jobs pays for one attach, not
//! one per job; and while one worker waits for the GIL with a job in hand,
//! no other is woken, so such a flood does not start a thread per job.
//!
//! The pool starts and joins its own threads. What a job means is its
//! owner's business (the `Jobs` trait): each worker holds the owner for its
//! life, so an owner outlives the work it queued.

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::fork::release_in_child;

const WORKER_STACK: usize = 8 << 20;

/// What holds a pool and runs its jobs.
pub trait Jobs: Send + Sync + 'static {
    type Job: Send + 'static;

    fn pool(&self) -> &Pool<Self::Job>;

    /// Runs one job on a worker, attached. Contains its own panics, so that
    /// one bad job never kills a worker.
    fn run_job(self: &Arc<Self>, py: Python<'_>, job: Self::Job);
}

/// No worker thread could be started.
pub struct StartFailed<J> {
    pub error: std::io::Error,
    /// Queued jobs that no worker will ever take: none is left to take them.
    pub orphans: Vec<J>,
}

thread_local! {
    /// The pool whose worker this thread is (its address), or 0.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

struct PoolState<J> {
    queue: VecDeque<J>,
    threads: usize,
    /// Waiting on the condition variable.
    idle: usize,
    /// Idle workers woken and not yet awake.
    notified: usize,
    /// Woken or new workers that have not yet looked at the queue.
    searching: usize,
    /// Workers holding a job while they wait for the GIL.
    attaching: usize,
    /// Workers holding a job (attaching ones included).
    busy: usize,
    shutdown: bool,
}

impl<J> PoolState<J> {
    /// Queued work that no worker is on its way to take.
    fn unattended(&self) -> bool {
        !self.queue.is_empty() && self.searching == 0 && self.attaching == 0
    }
}

pub struct Pool<J> {
    state: Mutex<PoolState<J>>,
    work_ready: Condvar,
    all_exited: Condvar,
    handles: Mutex<Vec<JoinHandle<()>>>,
    max_workers: usize,
    keep_alive: Duration,
}

/// A snapshot for statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub threads: usize,
    pub idle: usize,
    pub busy: usize,
    pub queued: usize,
}

impl<J: Send + 'static> Pool<J> {
    pub fn new(max_workers: usize, keep_alive: Duration) -> Self {
        Pool {
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                notified: 0,
                searching: 0,
                attaching: 0,
                busy: 0,
                shutdown: false,
            }),
            work_ready: Condvar::new(),
            all_exited: Condvar::new(),
            handles: Mutex::new(Vec::new()),
            max_workers,
            keep_alive,
        }
    }

    pub fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// Queues a job for `owner` (whose pool this is), waking or starting a
    /// worker if none is on its way to the queue.
    pub fn push<O: Jobs<Job = J>>(&self, owner: &Arc<O>, job: J) -> Result<(), StartFailed<J>> {
        let start = {
            let mut s = self.state.lock();
            s.queue.push_back(job);
            s.unattended() && self.wake_one(&mut s)
        };
        if start {
            Self::start_worker(owner)
        } else {
            Ok(())
        }
    }

    /// Starts a first worker if there is none, so that no push pays for it.
    pub fn warm_up<O: Jobs<Job = J>>(&self, owner: &Arc<O>) -> Result<(), StartFailed<J>> {
        let start = {
            let mut s = self.state.lock();
            s.threads == 0 && !s.shutdown && self.wake_one(&mut s)
        };
        if start {
            Self::start_worker(owner)
        } else {
            Ok(())
        }
    }

    /// Wakes an idle worker, or reserves a new one (returns true to start it).
    fn wake_one(&self, s: &mut PoolState<J>) -> bool {
        if s.idle > s.notified {
            s.notified += 1;
            s.searching += 1;
            self.work_ready.notify_one();
            false
        } else if s.threads < self.max_workers && !s.shutdown {
            s.threads += 1;
            s.searching += 1;
            true
        } else {
            false
        }
    }

    /// Starts the worker reserved by `wake_one`.
    fn start_worker<O: Jobs<Job = J>>(owner: &Arc<O>) -> Result<(), StartFailed<J>> {
        let worker = owner.clone();
        let spawned = thread::Builder::new()
            .name("taskrunner-worker".into())
            .stack_size(WORKER_STACK)
            .spawn(move || worker.pool().run_worker(&worker));
        let pool = owner.pool();
        match spawned {
            Ok(handle) => {
                let mut handles = pool.handles.lock();
                handles.retain(|h| !h.is_finished());
                handles.push(handle);
                Ok(())
            }
            Err(error) => Err(StartFailed {
                error,
                orphans: pool.start_failed(),
            }),
        }
    }

    /// Undoes the reservation of a worker that could not be started; returns
    /// the jobs no worker will ever take (when no worker is left at all).
    fn start_failed(&self) -> Vec<J> {
        let mut s = self.state.lock();
        s.threads -= 1;
        s.searching -= 1;
        if s.threads == 0 {
            self.all_exited.notify_all();
            return s.queue.drain(..).collect();
        }
        Vec::new()
    }

    /// The body of a worker thread: runs jobs until shutdown or keep-alive expiry.
    fn run_worker<O: Jobs<Job = J>>(&self, owner: &Arc<O>) {
        WORKER_OF.with(|w| w.set(self as *const Self as usize));
        // One Python thread state for the worker's whole life: thread-locals
        // and the thread's name last from one job to the next, as on a
        // Python thread. The worker holds the GIL only inside `attach`.
        Python::attach(|py| py.detach(|| self.work(owner)));
    }

    fn work<O: Jobs<Job = J>>(&self, owner: &Arc<O>) {
        // Another worker will try again if a relayed one cannot start; this
        // one is alive, so no job is orphaned.
        let relay = || {
            if let Err(failed) = Self::start_worker(owner) {
                debug_assert!(failed.orphans.is_empty());
            }
        };
        let mut searching = true; // a new worker is counted as searching
        while let Some(first) = self.next_job(&mut searching) {
            Python::attach(|py| {
                if self.attached() {
                    relay();
                }
                let mut job = first;
                loop {
                    owner.run_job(py, job);
                    let (next, wake) = self.finish_and_take_next();
                    if wake {
                        relay();
                    }
                    match next {
                        Some(next) => job = next,
                        None => break,
                    }
                }
            });
        }
    }

    /// Waits, detached, for a job; None when this worker should exit.
    fn next_job(&self, searching: &mut bool) -> Option<J> {
        let mut s = self.state.lock();
        loop {
            if let Some(job) = s.queue.pop_front() {
                if std::mem::take(searching) {
                    s.searching -= 1;
                }
                s.attaching += 1;
                s.busy += 1;
                return Some(job);
            }
            if std::mem::take(searching) {
                s.searching -= 1;
            }
            if s.shutdown {
                break;
            }
            s.idle += 1;
            let timed_out = self
                .work_ready
                .wait_for(&mut s, self.keep_alive)
                .timed_out();
            s.idle -= 1;
            if s.notified > 0 {
                // Counted as searching by whoever woke us.
                s.notified -= 1;
                *searching = true;
            } else if timed_out && s.queue.is_empty() {
                break;
            }
        }
        s.threads -= 1;
        if s.threads == 0 {
            self.all_exited.notify_all();
        }
        None
    }

    /// The worker holds the GIL now; before its job runs (and perhaps
    /// blocks), pass the relay on. Returns true to start a worker.
    fn attached(&self) -> bool {
        let mut s = self.state.lock();
        s.attaching -= 1;
        s.unattended() && self.wake_one(&mut s)
    }

    /// Marks the current job done and takes the next queued one, if any,
    /// passing the relay on if more wait behind it. The flag asks to start a worker.
    fn finish_and_take_next(&self) -> (Option<J>, bool) {
        let mut s = self.state.lock();
        s.busy -= 1;
        let next = s.queue.pop_front();
        if next.is_none() {
            return (None, false);
        }
        s.busy += 1;
        let wake = s.unattended() && self.wake_one(&mut s);
        (next, wake)
    }

    /// Stops taking new work once the queue is drained; wakes idle workers.
    pub fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.work_ready.notify_all();
    }

    /// Removes and returns every queued job.
    pub fn drain(&self) -> Vec<J> {
        self.state.lock().queue.drain(..).collect()
    }

    /// Waits up to `timeout` for every worker to exit; true when none is left.
    pub fn wait_exited(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        while s.threads > 0 {
            if self.all_exited.wait_until(&mut s, deadline).timed_out() {
                return s.threads == 0;
            }
        }
        drop(s);
        for handle in self.handles.lock().drain(..) {
            let _ = handle.join();
        }
        true
    }

    pub fn release_locks_in_child(&self) {
        release_in_child(&self.state);
        release_in_child(&self.handles);
    }

    /// True on one of this pool's worker threads.
    pub fn is_own_worker(&self) -> bool {
        WORKER_OF.with(|w| w.get() == self as *const Self as usize)
    }

    pub fn stats(&self) -> PoolStats {
        let s = self.state.lock();
        PoolStats {
            threads: s.threads,
            idle: s.idle,
            busy: s.busy,
            queued: s.queue.len(),
        }
    }

    /// In a forked child no worker exists: forget them and their handles.
    pub fn forget_workers(&self) {
        let mut s = self.state.lock();
        s.threads = 0;
        s.idle = 0;
        s.notified = 0;
        s.searching = 0;
        s.attaching = 0;
        s.busy = 0;
        std::mem::forget(std::mem::take(&mut *self.handles.lock()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Records each job it runs.
    struct Recorder {
        pool: Pool<u32>,
        done: Mutex<mpsc::Sender<u32>>,
    }

    impl Jobs for Recorder {
        type Job = u32;

        fn pool(&self) -> &Pool<u32> {
            &self.pool
        }

        fn run_job(self: &Arc<Self>, _py: Python<'_>, job: u32) {
            self.done.lock().send(job).unwrap();
        }
    }

    fn recorder(max_workers: usize, keep_alive: Duration) -> (Arc<Recorder>, mpsc::Receiver<u32>) {
        Python::initialize();
        let (tx, rx) = mpsc::channel();
        let owner = Arc::new(Recorder {
            pool: Pool::new(max_workers, keep_alive),
            done: Mutex::new(tx),
        });
        (owner, rx)
    }

    #[test]
    fn first_push_reserves_a_worker_and_later_pushes_wake_none() {
        let pool: Pool<u32> = Pool::new(4, Duration::from_secs(1));
        let mut s = pool.state.lock();
        assert!(pool.wake_one(&mut s), "no idle worker: reserve one");
        s.queue.push_back(1);
        // The reserved worker has not looked at the queue yet: no second wake.
        assert!(!s.unattended());
        drop(s);
        assert_eq!(pool.stats().threads, 1);
    }

    #[test]
    fn never_more_workers_than_the_cap() {
        let pool: Pool<u32> = Pool::new(1, Duration::from_secs(1));
        let mut s = pool.state.lock();
        assert!(pool.wake_one(&mut s));
        s.queue.push_back(1);
        drop(s);
        assert_eq!(
            pool.start_failed(),
            vec![1],
            "no worker left: the job is orphaned"
        );
        let mut s = pool.state.lock();
        assert!(pool.wake_one(&mut s));
        s.searching = 0;
        assert!(!pool.wake_one(&mut s), "the cap is reached");
        drop(s);
        assert_eq!(pool.stats().threads, 1);
    }

    #[test]
    fn a_worker_runs_jobs_in_fifo_order_and_leaves_after_keep_alive() {
        let (owner, rx) = recorder(1, Duration::from_millis(50));
        for job in 0..100 {
            owner.pool.push(&owner, job).ok().unwrap();
        }
        let seen: Vec<u32> = (0..100)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert!(owner.pool.wait_exited(Duration::from_secs(10)));
        assert_eq!(owner.pool.stats(), PoolStats::default());
    }

    #[test]
    fn shutdown_lets_workers_drain_then_exit() {
        let (owner, rx) = recorder(2, Duration::from_secs(60));
        for job in 0..10 {
            owner.pool.push(&owner, job).ok().unwrap();
        }
        owner.pool.shutdown();
        assert!(owner.pool.wait_exited(Duration::from_secs(10)));
        assert_eq!(rx.try_iter().count(), 10);
        owner.pool.push(&owner, 11).ok().unwrap();
        assert_eq!(
            owner.pool.stats().threads,
            0,
            "no worker is started after shutdown"
        );
    }
}
