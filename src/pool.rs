//! The elastic pool that runs blocking tasks.
//!
//! One queue; workers up to `max_workers`; an idle worker leaves after
//! `keep_alive`. A worker that finds more work after a job runs it under the
//! same GIL acquisition, so a flood of short jobs pays for one attach, not
//! one per job.
//!
//! How the pool grows is about the GIL. A push wakes (or starts) a worker
//! only when no worker is serving the queue. Beyond that, a monitor thread
//! looks at the queue every `GROWTH_TICK` while work waits and adds workers
//! only where they add throughput, or retires the ones that did not: the
//! rule is in `growth.rs`. Workers shorten their timer slack, so that a
//! task's short sleep is not stretched by 50 us.
//!
//! While the pool is paused, workers take no job: the queue keeps its order
//! and waits. Workers that run on, idle ones leave after their keep-alive,
//! and the monitor parks as it does when no work waits. The flag lives in
//! the state the workers lock anyway, so pausing costs a job nothing.
//!
//! The pool starts and joins its own threads. What a job means is its
//! owner's business (the `Jobs` trait): each worker holds the owner for its
//! life, so an owner outlives the work it queued.

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use std::cell::Cell;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::fork::{forget_waiters, release_in_child};
use crate::growth::{Change, Growth, Load};
use crate::queue::PriorityQueue;

const WORKER_STACK: usize = 8 << 20;

/// Linux stretches every timed sleep of a thread by its timer slack, 50 us by
/// default, so a task's `time.sleep(0)` (CPython >= 3.11) takes 60 us instead
/// of 10. Workers run tasks, whose short sleeps should stay short.
#[cfg(target_os = "linux")]
const WORKER_TIMER_SLACK_NS: libc::c_ulong = 1_000;

#[cfg(target_os = "linux")]
fn shorten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long and changes only the
    // calling thread's slack. A failure leaves the default, which is harmless.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, WORKER_TIMER_SLACK_NS);
    }
}

#[cfg(not(target_os = "linux"))]
fn shorten_timer_slack() {}

/// How often the monitor looks at waiting work: also the longest a job waits
/// behind busy workers before the pool considers growing.
const GROWTH_TICK: Duration = Duration::from_millis(1);

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

/// How `wake_one` serves the queue: an idle worker to notify, or a new
/// one to start. Either happens once the pool's lock is let go: a thread
/// notified under the lock may be handed the lock before it runs, and the
/// submitter's next push then waits until it is scheduled (about 0.4 ms on
/// two busy cores).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Wake {
    Idle,
    New,
    /// At the cap (or not asked): no worker.
    #[default]
    Capped,
}

/// What a push (or an unpause, or a warm-up) reserved under the lock.
#[derive(Default)]
struct Calls {
    worker: Wake,
    unpark_monitor: bool,
    start_monitor: bool,
}

/// What a worker does after a job.
enum Next<J> {
    Job(J),
    /// The queue is empty: look again (or idle).
    Search,
    /// The monitor took this worker back.
    Retire,
}

thread_local! {
    /// The pool whose worker this thread is (its address), or 0.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

struct PoolState<J> {
    queue: PriorityQueue<J>,
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
    /// Jobs queued so far.
    pushed: u64,
    /// Times a worker waited longer than a switch interval for the GIL.
    slow_attaches: u64,
    /// Workers asked to leave after their current job (they did not pay).
    retiring: usize,
    /// Submitters waiting in `wait_taken`.
    awaiting_taker: usize,
    monitor_alive: bool,
    /// The monitor sleeps until a push leaves work to it.
    monitor_parked: bool,
    /// No worker takes a job (see `set_paused`).
    paused: bool,
    shutdown: bool,
}

impl<J> PoolState<J> {
    /// No worker is serving the queue or on its way to it.
    fn unserved(&self) -> bool {
        self.busy == 0 && self.searching == 0
    }

    /// Queued work a worker may take now.
    fn has_work(&self) -> bool {
        !self.paused && !self.queue.is_empty()
    }

    /// The next job a worker may take: none while paused.
    fn take_job(&mut self) -> Option<J> {
        if self.paused {
            return None;
        }
        self.queue.pop()
    }

    fn load(&self) -> Load {
        Load {
            queued: self.queue.len(),
            busy: self.busy,
            searching: self.searching,
            attaching: self.attaching,
            completed: self.completed,
            pushed: self.pushed,
            slow_attaches: self.slow_attaches,
        }
    }

    /// One worker fewer; the last one out says so.
    fn worker_left(&mut self, all_exited: &Condvar) {
        self.threads -= 1;
        if self.threads == 0 {
            all_exited.notify_all();
        }
    }

    /// True (and counted) when this worker is to leave rather than go on.
    fn take_retirement(&mut self) -> bool {
        let retire = self.retiring > 0;
        self.retiring -= usize::from(retire);
        retire
    }
}

pub struct Pool<J> {
    state: Mutex<PoolState<J>>,
    work_ready: Condvar,
    all_exited: Condvar,
    /// Wakes the parked monitor.
    backlog: Condvar,
    /// A worker on its way took a job (for `wait_taken`).
    taken: Condvar,
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
    /// Busy workers waiting for the GIL with a job in hand.
    pub attaching: usize,
    pub queued: usize,
}

impl<J: Send + 'static> Pool<J> {
    /// `switch_interval`: the interpreter's GIL switch interval, which tells
    /// a wait for the GIL from a wait off it (see the module comment).
    pub fn new(max_workers: usize, keep_alive: Duration, switch_interval: Duration) -> Self {
        Pool {
            state: Mutex::new(PoolState {
                queue: PriorityQueue::default(),
                threads: 0,
                idle: 0,
                notified: 0,
                searching: 0,
                attaching: 0,
                busy: 0,
                completed: 0,
                pushed: 0,
                slow_attaches: 0,
                retiring: 0,
                awaiting_taker: 0,
                monitor_alive: false,
                monitor_parked: false,
                paused: false,
                shutdown: false,
            }),
            work_ready: Condvar::new(),
            all_exited: Condvar::new(),
            backlog: Condvar::new(),
            taken: Condvar::new(),
            handles: Mutex::new(Vec::new()),
            max_workers,
            keep_alive,
            switch_interval,
        }
    }

    pub fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// Queues a job for `owner` (whose pool this is), behind the queued
    /// jobs of its priority and above those of lower ones. Wakes or starts a
    /// worker if none serves the queue; otherwise leaves growth to the
    /// monitor. Returns true when no worker holds a job (see `wait_taken`).
    pub fn push<O: Jobs<Job = J>>(
        &self,
        owner: &Arc<O>,
        job: J,
        priority: i32,
    ) -> Result<bool, StartFailed<J>> {
        let (idle, calls) = {
            let mut s = self.state.lock();
            s.queue.push(job, priority);
            s.pushed += 1;
            let idle = s.busy == 0 && !s.paused;
            (idle, self.serve(&mut s))
        };
        self.call(owner, calls)?;
        Ok(idle)
    }

    /// After work was queued or unpaused: a worker to wake or start if none
    /// serves the queue, and the monitor to unpark (or start).
    fn serve(&self, s: &mut PoolState<J>) -> Calls {
        if s.paused {
            return Calls::default();
        }
        let worker = if s.unserved() {
            self.wake_one(s)
        } else {
            Wake::Capped
        };
        let unpark_monitor = s.monitor_parked && !s.unserved();
        s.monitor_parked &= !unpark_monitor;
        Calls {
            worker,
            unpark_monitor,
            start_monitor: self.reserve_monitor(s),
        }
    }

    /// Pauses the pool (no worker takes a job; running ones go on), or
    /// resumes it: then the queued jobs are served at once, in their order,
    /// and the pool grows for them by its usual rule.
    pub fn set_paused<O: Jobs<Job = J>>(
        &self,
        owner: &Arc<O>,
        paused: bool,
    ) -> Result<(), StartFailed<J>> {
        let calls = {
            let mut s = self.state.lock();
            s.paused = paused;
            if paused || s.queue.is_empty() {
                return Ok(());
            }
            self.serve(&mut s)
        };
        self.call(owner, calls)
    }

    /// Waits, up to `timeout`, until a worker holds a job (or none is left
    /// queued); true when one does. Called detached by a submitter that
    /// would otherwise go on holding the GIL while the worker it woke (or a
    /// new one) gets going.
    pub fn wait_taken(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        while s.busy == 0 && s.has_work() && !s.shutdown {
            s.awaiting_taker += 1;
            let timed_out = self.taken.wait_until(&mut s, deadline).timed_out();
            s.awaiting_taker -= 1;
            if timed_out {
                break;
            }
        }
        s.busy > 0
    }

    /// Starts a first worker and the monitor, so that no push pays for them.
    pub fn warm_up<O: Jobs<Job = J>>(&self, owner: &Arc<O>) -> Result<(), StartFailed<J>> {
        let calls = {
            let mut s = self.state.lock();
            let worker = if s.threads == 0 && !s.shutdown {
                self.wake_one(&mut s)
            } else {
                Wake::Capped
            };
            Calls {
                worker,
                unpark_monitor: false,
                start_monitor: self.reserve_monitor(&mut s),
            }
        };
        self.call(owner, calls)
    }

    /// Carries out, with the lock let go, what was reserved under it: the
    /// monitor, then a worker.
    fn call<O: Jobs<Job = J>>(&self, owner: &Arc<O>, calls: Calls) -> Result<(), StartFailed<J>> {
        if calls.unpark_monitor {
            self.backlog.notify_one();
        }
        if calls.start_monitor {
            Self::start_monitor(owner);
        }
        match calls.worker {
            Wake::Idle => {
                self.work_ready.notify_one();
                Ok(())
            }
            Wake::New => Self::start_worker(owner),
            Wake::Capped => Ok(()),
        }
    }

    /// Reserves an idle worker to wake, or a new one to start, for the
    /// caller to call on once the lock is let go (see `Wake`). Also after
    /// shutdown: a task queued then (a retry, a delayed start) is still one
    /// the runner owes, and its worker leaves once the queue is empty.
    fn wake_one(&self, s: &mut PoolState<J>) -> Wake {
        if s.idle > s.notified {
            s.notified += 1;
            s.searching += 1;
            Wake::Idle
        } else if s.threads < self.max_workers {
            s.threads += 1;
            s.searching += 1;
            Wake::New
        } else {
            Wake::Capped
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
            return s.queue.drain();
        }
        Vec::new()
    }

    /// The body of a worker thread: runs jobs until shutdown or keep-alive expiry.
    fn run_worker<O: Jobs<Job = J>>(&self, owner: &Arc<O>) {
        WORKER_OF.with(|w| w.set(self as *const Self as usize));
        shorten_timer_slack();
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

    /// Runs `first`, then every job it takes after it, until the worker is
    /// to exit (shutdown, keep-alive, or retired by the monitor).
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
            let retired = Python::attach(|py| {
                self.attached(asked.elapsed());
                let mut job = first;
                loop {
                    owner.run_job(py, job);
                    match self.finish_and_take_next(&**owner) {
                        Next::Job(next) => job = next,
                        Next::Search => return false,
                        Next::Retire => return true,
                    }
                }
            });
            if retired {
                return;
            }
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
            if let Some(job) = s.take_job() {
                if std::mem::take(searching) {
                    s.searching -= 1;
                }
                s.attaching += 1;
                s.busy += 1;
                if s.awaiting_taker > 0 {
                    self.taken.notify_all();
                }
                return Some(job);
            }
            if std::mem::take(searching) {
                s.searching -= 1;
            }
            if s.shutdown || s.take_retirement() {
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
            } else if timed_out && !s.has_work() {
                break;
            }
        }
        s.worker_left(&self.all_exited);
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
    fn finish_and_take_next<O: Jobs<Job = J>>(&self, owner: &O) -> Next<J> {
        loop {
            let next = {
                let mut s = self.state.lock();
                s.completed += 1;
                // The last worker serving a queue stays until it is empty:
                // idle ones are not woken for work already queued.
                let others_serve = s.busy > 1 || s.searching > 0;
                if (others_serve || !s.has_work()) && s.take_retirement() {
                    s.busy -= 1;
                    s.worker_left(&self.all_exited);
                    return Next::Retire;
                }
                let Some(next) = s.take_job() else {
                    s.busy -= 1;
                    s.searching += 1;
                    return Next::Search;
                };
                next
            };
            if owner.claim(&next) {
                return Next::Job(next);
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
        let mut growth = Growth::new(&s.load(), 3 * pool.switch_interval, Instant::now());
        while !s.shutdown {
            if !s.has_work() || s.unserved() {
                s.monitor_parked = true;
                pool.backlog.wait(&mut s);
                growth.resume(&s.load(), Instant::now());
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
            match growth.decide(&s.load(), Instant::now()) {
                Change::Keep => {}
                Change::Retire(n) => s.retiring = (s.retiring + n).min(s.threads - 1),
                Change::Add(wanted) => {
                    let (mut start, mut wake) = (0, 0);
                    for _ in 0..wanted {
                        if s.searching >= s.queue.len() {
                            break;
                        }
                        match pool.wake_one(&mut s) {
                            Wake::Idle => wake += 1,
                            Wake::New => start += 1,
                            Wake::Capped => {}
                        }
                    }
                    growth.added(start);
                    drop(s);
                    for _ in 0..wake {
                        pool.work_ready.notify_one();
                    }
                    for _ in 0..start {
                        // Workers are busy, so none of the queue is orphaned.
                        if Self::start_worker(owner).is_err() {
                            break;
                        }
                    }
                    s = pool.state.lock();
                }
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
        self.taken.notify_all();
    }

    /// Removes and returns every queued job.
    pub fn drain(&self) -> Vec<J> {
        self.state.lock().queue.drain()
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
        for condvar in [
            &self.work_ready,
            &self.all_exited,
            &self.backlog,
            &self.taken,
        ] {
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
            attaching: s.attaching,
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
        s.awaiting_taker = 0;
        s.paused = false;
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
        assert_eq!(
            pool.wake_one(&mut s),
            Wake::New,
            "no idle worker: reserve one"
        );
        s.queue.push(1, 0);
        drop(s);
        assert_eq!(
            pool.start_failed(),
            vec![1],
            "no worker left: the job is orphaned"
        );
        let mut s = pool.state.lock();
        assert_eq!(pool.wake_one(&mut s), Wake::New);
        s.searching = 0;
        assert_eq!(pool.wake_one(&mut s), Wake::Capped, "the cap is reached");
        drop(s);
        assert_eq!(pool.stats().threads, 1);
    }

    const SWITCH_INTERVAL: Duration = Duration::from_millis(5);

    #[test]
    fn the_last_worker_serving_the_queue_is_not_retired_before_it_is_empty() {
        let (owner, _rx) = recorder(4, Duration::from_secs(60));
        {
            let mut s = owner.pool.state.lock();
            s.threads = 2; // this worker, and one idle on the condition variable
            s.idle = 1;
            s.busy = 1;
            s.retiring = 1;
            s.queue.push(7, 0);
        }
        assert!(
            matches!(owner.pool.finish_and_take_next(&*owner), Next::Job(7)),
            "an idle worker is not woken for queued work: this one takes it"
        );
        assert!(matches!(
            owner.pool.finish_and_take_next(&*owner),
            Next::Retire
        ));
    }

    #[test]
    fn a_worker_runs_jobs_in_fifo_order_and_leaves_after_keep_alive() {
        let (owner, rx) = recorder(1, Duration::from_millis(50));
        for job in 0..100 {
            owner.pool.push(&owner, job, 0).ok().unwrap();
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
    fn a_paused_pool_takes_no_job_until_resumed_then_keeps_the_order() {
        let (owner, rx) = recorder(1, Duration::from_secs(60));
        owner.pool.set_paused(&owner, true).ok().unwrap();
        for job in 0..5 {
            owner
                .pool
                .push(&owner, job, i32::from(job == 3))
                .ok()
                .unwrap();
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "nothing runs while paused"
        );
        assert_eq!(owner.pool.stats().queued, 5);
        owner.pool.set_paused(&owner, false).ok().unwrap();
        let seen: Vec<u32> = (0..5)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(seen, vec![3, 0, 1, 2, 4], "priority, then queue order");
        owner.pool.shutdown();
        assert!(owner.pool.wait_exited(Duration::from_secs(10)));
    }

    #[test]
    fn idle_workers_leave_after_their_keep_alive_while_paused() {
        let (owner, rx) = recorder(2, Duration::from_millis(50));
        owner.pool.warm_up(&owner).ok().unwrap();
        owner.pool.set_paused(&owner, true).ok().unwrap();
        owner.pool.push(&owner, 7, 0).ok().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while owner.pool.stats().threads > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(owner.pool.stats().threads, 0, "the idle worker left");
        owner.pool.set_paused(&owner, false).ok().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            7,
            "resuming starts a worker"
        );
        owner.pool.shutdown();
        assert!(owner.pool.wait_exited(Duration::from_secs(10)));
    }

    #[test]
    fn shutdown_lets_workers_drain_then_exit() {
        let (owner, rx) = recorder(2, Duration::from_secs(60));
        for job in 0..10 {
            owner.pool.push(&owner, job, 0).ok().unwrap();
        }
        owner.pool.shutdown();
        assert!(owner.pool.wait_exited(Duration::from_secs(10)));
        assert_eq!(rx.try_iter().count(), 10);
        owner.pool.push(&owner, 11, 0).ok().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            11,
            "a job queued after shutdown still runs"
        );
        assert!(
            owner.pool.wait_exited(Duration::from_secs(10)),
            "and its worker leaves"
        );
    }
}
