//! The elastic pool that runs blocking tasks.
//!
//! One queue; workers up to `max_workers`; an idle worker leaves after
//! `keep_alive`. A worker that finds more work after a job runs it under the
//! same GIL acquisition, so a flood of short jobs pays for one attach, not
//! one per job.
//!
//! How the pool grows is about the GIL. A push wakes (or starts) a worker
//! only when no worker is serving the queue. Beyond that, more workers only
//! help when the busy ones wait off the GIL (they sleep, read, wait on a
//! socket); when they merely take turns with the GIL, another thread only
//! adds contention. So a monitor thread looks at the queue every
//! `GROWTH_TICK` while work waits, and adds workers by this rule:
//! - a worker is still on its way to the queue, or waits for the GIL with a
//!   job in hand: add none yet;
//! - a worker waited longer than a switch interval for the GIL since the
//!   last look: the GIL, not the workers, is the bottleneck. Add none for
//!   `NO_GAIN_BACKOFF`, then one at a time;
//! - no job finished for `blocked_after` (twice the interpreter's switch
//!   interval, 10 ms by default): a worker that merely waits its turn for the
//!   GIL gets it within one switch interval, so every busy worker is blocked
//!   off the GIL in a long job. Add as many workers as are busy (doubling
//!   each tick while the new ones get the GIL at once, up to the queue's
//!   length): 100 sleeping jobs all run within about 20 ms;
//! - jobs finish but work still waits: add one, and keep adding one a tick
//!   while each addition raises the number of jobs finished per tick by at
//!   least a tenth; once one does not, wait `NO_GAIN_BACKOFF` before trying
//!   again. A flood of instant jobs thus stays on a few threads.
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

use crate::fork::{forget_waiters, release_in_child};

const WORKER_STACK: usize = 8 << 20;

/// How often the monitor looks at waiting work: also the longest a job waits
/// behind busy workers before the pool considers growing.
const GROWTH_TICK: Duration = Duration::from_millis(1);

/// After adding a worker raised no throughput, how long before trying again.
const NO_GAIN_BACKOFF: Duration = Duration::from_millis(100);

/// What holds a pool and runs its jobs.
pub trait Jobs: Send + Sync + 'static {
    type Job: Send + 'static;

    fn pool(&self) -> &Pool<Self::Job>;

    /// A worker took `job` off the queue (detached): claims it, or returns
    /// false when the job ended while queued and is to be skipped.
    fn claim(&self, job: &Self::Job) -> bool;

    /// Runs one claimed job on a worker, attached. Contains its own panics, so that
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
    /// Jobs finished (or skipped) so far: the monitor's measure of throughput.
    completed: u64,
    /// Times a worker waited longer than a switch interval for the GIL.
    slow_attaches: u64,
    monitor_alive: bool,
    /// The monitor sleeps until a push leaves work to it.
    monitor_parked: bool,
    shutdown: bool,
}

impl<J> PoolState<J> {
    /// No worker is serving the queue or on its way to it.
    fn unserved(&self) -> bool {
        self.busy == 0 && self.searching == 0
    }
}

pub struct Pool<J> {
    state: Mutex<PoolState<J>>,
    work_ready: Condvar,
    all_exited: Condvar,
    /// Wakes the parked monitor.
    backlog: Condvar,
    handles: Mutex<Vec<JoinHandle<()>>>,
    max_workers: usize,
    keep_alive: Duration,
    switch_interval: Duration,
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
    /// `switch_interval`: the interpreter's GIL switch interval, which tells
    /// a wait for the GIL from a wait off it (see the module comment).
    pub fn new(max_workers: usize, keep_alive: Duration, switch_interval: Duration) -> Self {
        Pool {
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                notified: 0,
                searching: 0,
                attaching: 0,
                busy: 0,
                completed: 0,
                slow_attaches: 0,
                monitor_alive: false,
                monitor_parked: false,
                shutdown: false,
            }),
            work_ready: Condvar::new(),
            all_exited: Condvar::new(),
            backlog: Condvar::new(),
            handles: Mutex::new(Vec::new()),
            max_workers,
            keep_alive,
            switch_interval,
        }
    }

    pub fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// Queues a job for `owner` (whose pool this is). Wakes or starts a
    /// worker if none serves the queue; otherwise leaves growth to the monitor.
    pub fn push<O: Jobs<Job = J>>(&self, owner: &Arc<O>, job: J) -> Result<(), StartFailed<J>> {
        let (start_worker, start_monitor) = {
            let mut s = self.state.lock();
            s.queue.push_back(job);
            let start_worker = s.unserved() && self.wake_one(&mut s);
            if s.monitor_parked && !s.unserved() {
                s.monitor_parked = false;
                self.backlog.notify_one();
            }
            (start_worker, self.reserve_monitor(&mut s))
        };
        Self::start_reserved(owner, start_worker, start_monitor)
    }

    /// Starts a first worker and the monitor, so that no push pays for them.
    pub fn warm_up<O: Jobs<Job = J>>(&self, owner: &Arc<O>) -> Result<(), StartFailed<J>> {
        let (start_worker, start_monitor) = {
            let mut s = self.state.lock();
            let start_worker = s.threads == 0 && !s.shutdown && self.wake_one(&mut s);
            (start_worker, self.reserve_monitor(&mut s))
        };
        Self::start_reserved(owner, start_worker, start_monitor)
    }

    /// Starts the threads reserved under the lock: the monitor, then a worker.
    fn start_reserved<O: Jobs<Job = J>>(
        owner: &Arc<O>,
        worker: bool,
        monitor: bool,
    ) -> Result<(), StartFailed<J>> {
        if monitor {
            Self::start_monitor(owner);
        }
        if worker {
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
                pool.keep_handle(handle);
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
        // A new worker takes its first job before it first needs the GIL:
        // the submitter may hold the GIL until long after its submit.
        let mut searching = true; // a new worker is counted as searching
        let Some(first) = self.next_claimed(&**owner, &mut searching) else {
            return;
        };
        // One Python thread state for the worker's whole life: thread-locals
        // and the thread's name last from one job to the next, as on a
        // Python thread. The worker holds the GIL only inside `attach`.
        Python::attach(|py| py.detach(|| self.work(owner, first)));
    }

    /// Runs `first`, then every job it takes after it.
    fn work<O: Jobs<Job = J>>(&self, owner: &Arc<O>, first: J) {
        let mut job = Some(first);
        // A worker on its way to the queue counts as searching, so that a
        // push meanwhile does not start another: new, woken, or just done.
        let mut searching = true;
        while let Some(first) = job
            .take()
            .or_else(|| self.next_claimed(&**owner, &mut searching))
        {
            searching = true;
            let asked = Instant::now();
            Python::attach(|py| {
                self.attached(asked.elapsed());
                let mut job = first;
                loop {
                    owner.run_job(py, job);
                    match self.finish_and_take_next(&**owner) {
                        Some(next) => job = next,
                        None => break,
                    }
                }
            });
        }
    }

    /// Waits, detached, for a job this worker can claim; None when it should exit.
    fn next_claimed<O: Jobs<Job = J>>(&self, owner: &O, searching: &mut bool) -> Option<J> {
        loop {
            let job = self.next_job(searching)?;
            if owner.claim(&job) {
                return Some(job);
            }
            self.skipped();
            *searching = true;
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

    /// The worker holds the GIL now, after waiting `waited` for it.
    fn attached(&self, waited: Duration) {
        let mut s = self.state.lock();
        s.attaching -= 1;
        s.slow_attaches += u64::from(waited > self.switch_interval);
    }

    /// The job taken had ended while queued: the worker looks again.
    fn skipped(&self) {
        let mut s = self.state.lock();
        s.attaching -= 1;
        s.busy -= 1;
        s.searching += 1;
        s.completed += 1;
    }

    /// Marks the current job done and takes the next queued one this worker
    /// can claim, if any; if none, the worker is searching again.
    fn finish_and_take_next<O: Jobs<Job = J>>(&self, owner: &O) -> Option<J> {
        loop {
            let next = {
                let mut s = self.state.lock();
                s.completed += 1;
                let next = s.queue.pop_front();
                if next.is_none() {
                    s.busy -= 1;
                    s.searching += 1;
                }
                next?
            };
            if owner.claim(&next) {
                return Some(next);
            }
        }
    }

    /// Reserves the monitor thread if it is not running; true to start it.
    fn reserve_monitor(&self, s: &mut PoolState<J>) -> bool {
        if s.monitor_alive || s.shutdown {
            return false;
        }
        s.monitor_alive = true;
        true
    }

    fn start_monitor<O: Jobs<Job = J>>(owner: &Arc<O>) {
        let watched = owner.clone();
        let spawned = thread::Builder::new()
            .name("taskrunner-pool-monitor".into())
            .spawn(move || Self::monitor(&watched));
        let pool = owner.pool();
        match spawned {
            Ok(handle) => pool.keep_handle(handle),
            // The pool still serves its queue; it only grows no further than
            // a push lets it. The next push tries again.
            Err(_) => pool.state.lock().monitor_alive = false,
        }
    }

    fn keep_handle(&self, handle: JoinHandle<()>) {
        let mut handles = self.handles.lock();
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }

    /// The monitor's body: adds workers by the rule in the module comment.
    /// Never touches Python.
    fn monitor<O: Jobs<Job = J>>(owner: &Arc<O>) {
        let pool = owner.pool();
        let mut s = pool.state.lock();
        let mut growth = Growth::new(&s, 2 * pool.switch_interval);
        while !s.shutdown {
            if s.queue.is_empty() || s.unserved() {
                s.monitor_parked = true;
                pool.backlog.wait(&mut s);
                growth.resume(&s);
                continue;
            }
            // A plain sleep, not a timed wait: a thread parked in parking_lot's
            // global table at a fork() can block that table in the child,
            // and a tick each millisecond would often be there.
            drop(s);
            thread::sleep(GROWTH_TICK);
            s = pool.state.lock();
            if s.shutdown {
                break;
            }
            let wanted = growth.workers_to_add(&s, Instant::now());
            let mut start = 0;
            for _ in 0..wanted {
                if s.searching >= s.queue.len() {
                    break;
                }
                start += usize::from(pool.wake_one(&mut s));
            }
            if start > 0 {
                drop(s);
                for _ in 0..start {
                    // Workers are busy, so none of the queue is orphaned.
                    if Self::start_worker(owner).is_err() {
                        break;
                    }
                }
                s = pool.state.lock();
            }
        }
        s.monitor_alive = false;
        pool.all_exited.notify_all();
    }

    /// Stops taking new work once the queue is drained; wakes idle workers
    /// and the monitor.
    pub fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.work_ready.notify_all();
        self.backlog.notify_all();
    }

    /// Removes and returns every queued job.
    pub fn drain(&self) -> Vec<J> {
        self.state.lock().queue.drain(..).collect()
    }

    /// Waits up to `timeout` for every worker to exit; true when none is left.
    pub fn wait_exited(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        while s.threads > 0 || s.monitor_alive {
            if self.all_exited.wait_until(&mut s, deadline).timed_out() {
                return false;
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
        for condvar in [&self.work_ready, &self.all_exited, &self.backlog] {
            forget_waiters(condvar);
        }
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
        s.monitor_alive = false;
        s.monitor_parked = false;
        std::mem::forget(std::mem::take(&mut *self.handles.lock()));
    }
}

/// The monitor's memory between ticks.
struct Growth {
    blocked_after: Duration,
    /// Jobs finished by the last look, and when that count last rose.
    completed: u64,
    progress_at: Instant,
    /// Slow attaches counted by the last look.
    slow_attaches: u64,
    /// The last wave of workers got the GIL at once: the next may double.
    wave_ok: bool,
    /// Jobs finished in the tick before the last single addition.
    trial: Option<u64>,
    /// No addition before this (the last one raised nothing, or met a busy GIL).
    retry_at: Instant,
}

impl Growth {
    fn new<J>(s: &PoolState<J>, blocked_after: Duration) -> Growth {
        let now = Instant::now();
        Growth {
            blocked_after,
            completed: s.completed,
            progress_at: now,
            slow_attaches: s.slow_attaches,
            wave_ok: false,
            trial: None,
            retry_at: now,
        }
    }

    /// After the monitor slept with nothing to do: if jobs finished
    /// meanwhile, the busy workers are not known to be blocked.
    fn resume<J>(&mut self, s: &PoolState<J>) {
        if s.completed != self.completed {
            let retry_at = self.retry_at;
            *self = Growth::new(s, self.blocked_after);
            self.retry_at = retry_at;
        }
    }

    /// How many workers to add now.
    fn workers_to_add<J>(&mut self, s: &PoolState<J>, now: Instant) -> usize {
        let finished = s.completed - self.completed;
        self.completed = s.completed;
        if finished > 0 {
            self.progress_at = now;
        }
        if s.slow_attaches != self.slow_attaches {
            self.slow_attaches = s.slow_attaches;
            self.wave_ok = false;
            self.trial = None;
            self.retry_at = now + NO_GAIN_BACKOFF;
        }
        if s.queue.is_empty() || s.searching > 0 || s.attaching > 0 || now < self.retry_at {
            return 0;
        }
        if finished == 0 {
            self.trial = None;
            if now.duration_since(self.progress_at) < self.blocked_after {
                return 0;
            }
            let wave = if self.wave_ok { s.busy.max(1) } else { 1 };
            self.wave_ok = true;
            return wave;
        }
        match self.trial {
            Some(before) if finished * 10 >= before * 11 => {
                self.trial = Some(finished);
                1
            }
            Some(_) => {
                self.trial = None;
                self.retry_at = now + NO_GAIN_BACKOFF;
                0
            }
            None => {
                self.trial = Some(finished);
                1
            }
        }
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

        fn claim(&self, _job: &u32) -> bool {
            true
        }

        fn run_job(self: &Arc<Self>, _py: Python<'_>, job: u32) {
            self.done.lock().send(job).unwrap();
        }
    }

    fn recorder(max_workers: usize, keep_alive: Duration) -> (Arc<Recorder>, mpsc::Receiver<u32>) {
        Python::initialize();
        let (tx, rx) = mpsc::channel();
        let owner = Arc::new(Recorder {
            pool: Pool::new(max_workers, keep_alive, SWITCH_INTERVAL),
            done: Mutex::new(tx),
        });
        (owner, rx)
    }

    #[test]
    fn never_more_workers_than_the_cap() {
        let pool: Pool<u32> = Pool::new(1, Duration::from_secs(1), SWITCH_INTERVAL);
        let mut s = pool.state.lock();
        assert!(pool.wake_one(&mut s), "no idle worker: reserve one");
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

    const SWITCH_INTERVAL: Duration = Duration::from_millis(5);
    const BLOCKED_AFTER: Duration = Duration::from_millis(10);

    fn state(queued: u32, busy: usize, completed: u64) -> PoolState<u32> {
        let pool: Pool<u32> = Pool::new(8, Duration::from_secs(1), SWITCH_INTERVAL);
        let mut s = pool.state.into_inner();
        s.queue.extend(0..queued);
        s.busy = busy;
        s.completed = completed;
        s
    }

    fn growth() -> Growth {
        Growth::new(&state(0, 0, 0), BLOCKED_AFTER)
    }

    #[test]
    fn growth_doubles_once_every_busy_worker_is_blocked_past_a_switch_interval() {
        let mut growth = growth();
        let start = Instant::now();
        let ms = Duration::from_millis;
        let add = |g: &mut Growth, queued, busy, at| g.workers_to_add(&state(queued, busy, 0), at);
        assert_eq!(
            add(&mut growth, 99, 1, start + ms(5)),
            0,
            "maybe a wait for the GIL"
        );
        assert_eq!(
            add(&mut growth, 99, 1, start + ms(10)),
            1,
            "a first wave of one"
        );
        assert_eq!(add(&mut growth, 98, 2, start + ms(11)), 2);
        assert_eq!(add(&mut growth, 96, 4, start + ms(12)), 4);
        assert_eq!(
            add(&mut growth, 3, 8, start + ms(13)),
            8,
            "capped by the caller"
        );
    }

    #[test]
    fn growth_stops_when_a_new_worker_waited_for_the_gil() {
        let mut growth = growth();
        let later = Instant::now() + Duration::from_secs(1);
        assert_eq!(growth.workers_to_add(&state(99, 1, 0), later), 1);
        let mut s = state(98, 2, 0);
        s.slow_attaches = 1;
        assert_eq!(
            growth.workers_to_add(&s, later),
            0,
            "the GIL is the bottleneck"
        );
        let after_backoff = later + NO_GAIN_BACKOFF;
        assert_eq!(
            growth.workers_to_add(&s, after_backoff),
            1,
            "one at a time again"
        );
    }

    #[test]
    fn growth_waits_while_a_worker_is_on_its_way() {
        let mut growth = growth();
        let later = Instant::now() + Duration::from_secs(1);
        let mut s = state(10, 1, 0);
        s.attaching = 1;
        assert_eq!(growth.workers_to_add(&s, later), 0);
        s.attaching = 0;
        s.searching = 1;
        assert_eq!(growth.workers_to_add(&s, later), 0);
        assert_eq!(
            growth.workers_to_add(&state(0, 1, 0), later),
            0,
            "nothing waits"
        );
    }

    #[test]
    fn growth_goes_on_while_it_pays_and_backs_off_when_it_does_not() {
        let mut growth = growth();
        let now = Instant::now();
        assert_eq!(
            growth.workers_to_add(&state(1000, 1, 100), now),
            1,
            "a first trial"
        );
        assert_eq!(
            growth.workers_to_add(&state(1000, 2, 290), now),
            1,
            "+90%: again"
        );
        assert_eq!(
            growth.workers_to_add(&state(1000, 3, 490), now),
            0,
            "+5%: stop"
        );
        assert_eq!(
            growth.workers_to_add(&state(1000, 3, 690), now),
            0,
            "backing off"
        );
        let later = now + NO_GAIN_BACKOFF;
        assert_eq!(
            growth.workers_to_add(&state(1000, 3, 890), later),
            1,
            "try again"
        );
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while owner.pool.stats().threads > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            owner.pool.stats(),
            PoolStats::default(),
            "the idle worker left"
        );
        owner.pool.shutdown();
        assert!(
            owner.pool.wait_exited(Duration::from_secs(10)),
            "the monitor too"
        );
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
