//! The engine: routes tasks to the pool or the poller and moves records
//! through their states. Every transition is published to `events`, the one
//! place to hear that a task changed. Everything here that calls into Python
//! does so with no Rust lock held.

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyString, PyTuple};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::attempts::{AttemptError, Trail};
use crate::errors::{failure, log_exception};
use crate::events::{Events, Subscription};
use crate::history::History;
use crate::journal::{Encoding, Stored, TaskRow};
use crate::journal::{Filter, Health};
use crate::journaling::Journaling;
use crate::keys::{Claim, Keys};
use crate::limits::Limits;
use crate::names::{is_coroutine, names};
use crate::policy::{bucket_of, Demand, PollPolicy, NO_BUCKET};
use crate::poller::{Action, Due, Polled, Poller};
use crate::pool::{Jobs, Pool, StartFailed};
use crate::progress;
use crate::record::{unix_now, Finished, Kind, Outcome, Plan, Record, State};
use crate::siblings::{is_live_poll, plan_poll, Families};
use crate::store::{Retention, Store};

mod history;
mod pause;
mod reports;
mod schedule;

/// How often a join wakes to let Ctrl-C through.
const JOIN_STEP: Duration = Duration::from_millis(50);

pub struct Config {
    pub retention: Retention,
    /// At interpreter exit, run queued tasks (as `ThreadPoolExecutor` does)
    /// instead of cancelling them.
    pub run_pending_at_exit: bool,
    pub max_workers: usize,
    pub keep_alive: Duration,
    pub policy: PollPolicy,
    pub max_poll_rate: f64,
    /// The interpreter's GIL switch interval, for the pool's growth rule.
    pub switch_interval: Duration,
    /// Where every submit and state change is written, if anywhere.
    pub journal: Option<Journaling>,
    /// A submit that finds no worker holding a task waits until one takes it.
    pub handoff: bool,
    /// Tasks recovered from the journal wait for `take_recovered` (a cluster
    /// runs them) instead of running here.
    pub recover_elsewhere: bool,
    pub limits: Limits<Record>,
}

/// The longest a submit waits for the worker it woke to take its task: long
/// enough for a thread to get a CPU on a loaded machine.
const TAKER_WAIT: Duration = Duration::from_millis(100);

/// The longest it then waits for that worker to start the task it took.
const CLAIM_WAIT: Duration = Duration::from_millis(20);

pub struct Engine {
    store: Store,
    events: Arc<Events>,
    pool: Pool<Arc<Record>>,
    poller: Poller,
    policy: PollPolicy,
    max_poll_rate: f64,
    /// How often the running polling tasks ask to be polled.
    demand: Demand,
    families: Families<Record>,
    handoff: bool,
    run_pending_at_exit: bool,
    closed: AtomicBool,
    pid: AtomicU32,
    journal: Option<Arc<Journaling>>,
    /// Set in a forked child, which must not touch its parent's file.
    journal_paused: AtomicBool,
    keys: Keys,
    recover_elsewhere: bool,
    /// Recovered tasks a cluster will run (see `take_recovered`).
    recovered: Mutex<Vec<Arc<Record>>>,
    limits: Limits<Record>,
    /// Running blocking tasks whose progress the poller reads.
    watched: Mutex<Vec<Arc<Record>>>,
    /// Shut down with its pending tasks cancelled: a failed task is not retried.
    cancelling: AtomicBool,
    /// Tasks finished, running and pending over the last hour and day.
    history: History,
    /// No pending task starts (see `engine/pause.rs`); `pause` holds what waits.
    paused: AtomicBool,
    pause: Mutex<pause::Pause>,
}

/// What a caller asks for at submit.
pub struct Submission<'py> {
    pub task: Bound<'py, PyAny>,
    pub kind: Option<Kind>,
    pub deadline: Option<Instant>,
    /// The task's name: as given, else its class's.
    pub name: Bound<'py, PyString>,
    pub policy: Option<PollPolicy>,
    /// How to re-create the task after a crash (see `Journaling::recipe`).
    pub recipe: Option<Stored>,
    /// An idempotency key: a repeat gets the task the key first made.
    pub key: Option<String>,
    /// The task runs on a cluster worker: recorded here, queued nowhere; its
    /// states come from `started_elsewhere`, `requeue` and `complete`.
    pub elsewhere: bool,
    pub plan: Plan,
    /// Unix time before which the task does not start.
    pub not_before: Option<f64>,
    /// The records of `plan.after`.
    pub upstream: Vec<Arc<Record>>,
    /// A label for the task (`submit(type=...)`).
    pub task_type: Option<Arc<str>>,
}

/// Which tasks a listing holds, and from where.
pub struct Listing {
    pub filter: Filter,
    /// Ids after this one (oldest first) or before it (newest first).
    pub cursor: Option<u64>,
    pub newest_first: bool,
    pub limit: usize,
}

/// Load figures, for `Runner.stats()`.
pub struct Stats {
    pub max_workers: usize,
    pub workers: usize,
    pub workers_busy: usize,
    pub workers_idle: usize,
    pub workers_timed_out: usize,
    /// Busy workers waiting for the GIL with a task in hand.
    pub workers_attaching: usize,
    pub queued: usize,
    pub polling: usize,
    pub poller_queue: usize,
    pub polls: u64,
    pub unfinished: usize,
    /// The journal's health; None without a journal.
    pub journal: Option<Health>,
    pub paused: bool,
}

/// Every engine alive, so that interpreter exit and fork can reach them.
static ENGINES: Mutex<Vec<Weak<Engine>>> = Mutex::new(Vec::new());

pub fn live_engines() -> Vec<Arc<Engine>> {
    let mut engines = ENGINES.lock();
    engines.retain(|e| e.strong_count() > 0);
    engines.iter().filter_map(Weak::upgrade).collect()
}

impl Engine {
    pub fn new(config: Config) -> Arc<Engine> {
        let first_id = config.journal.as_ref().map_or(1, Journaling::next_id);
        let engine = Arc::new(Engine {
            store: Store::starting_at(first_id, config.retention),
            events: Arc::new(Events::default()),
            pool: Pool::new(
                config.max_workers,
                config.keep_alive,
                config.switch_interval,
            ),
            poller: Poller::default(),
            policy: config.policy,
            max_poll_rate: config.max_poll_rate,
            demand: Demand::default(),
            families: Families::default(),
            handoff: config.handoff,
            recover_elsewhere: config.recover_elsewhere,
            recovered: Mutex::new(Vec::new()),
            limits: config.limits,
            watched: Mutex::new(Vec::new()),
            cancelling: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            pause: Mutex::default(),
            run_pending_at_exit: config.run_pending_at_exit,
            closed: AtomicBool::new(false),
            pid: AtomicU32::new(std::process::id()),
            journal: config.journal.map(Arc::new),
            journal_paused: AtomicBool::new(false),
            keys: Keys::default(),
            history: History::new(unix_now()),
        });
        ENGINES.lock().push(Arc::downgrade(&engine));
        engine
    }

    /// Starts the threads a runner needs before its first task arrives, so
    /// that no submit pays for starting them: the poller, its watchdog, and
    /// one worker (which leaves after `keep_alive` if no work comes).
    pub fn warm_up(self: &Arc<Self>, py: Python<'_>) {
        if let Err(err) = self.poller.warm_up(self) {
            poller_start_error(err).print(py);
        }
        self.poller.chore_at(Self::first_tick());
        // Nothing is queued yet: a worker that cannot start orphans no task.
        drop(self.pool.warm_up(self));
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn max_workers(&self) -> usize {
        self.pool.max_workers()
    }

    pub fn policy(&self) -> PollPolicy {
        self.policy
    }

    /// How `record` is polled: its own policy, or the runner's.
    pub fn policy_of<'a>(&'a self, record: &'a Record) -> &'a PollPolicy {
        record.policy.as_deref().unwrap_or(&self.policy)
    }

    pub fn max_poll_rate(&self) -> f64 {
        self.max_poll_rate
    }

    pub fn run_pending_at_exit(&self) -> bool {
        self.run_pending_at_exit
    }

    /// The record of a task still in memory.
    /// A task's record: in memory, or else read back from the journal.
    pub fn record(&self, py: Python<'_>, id: u64) -> PyResult<Option<Arc<Record>>> {
        if let Some(record) = self.store.get(id) {
            return Ok(Some(record));
        }
        match self.journal() {
            Some(journal) if id < self.store.next_id() => {
                Ok(journal.restored(py, id)?.map(Arc::new))
            }
            _ => Ok(None),
        }
    }

    /// The state of a task: in memory, or else in the journal.
    pub fn state_of(&self, py: Python<'_>, id: u64) -> PyResult<Option<State>> {
        if let Some(state) = self.store.state_of(id) {
            return Ok(Some(state));
        }
        Ok(self.record(py, id)?.map(|r| r.state()))
    }

    /// The journal, if any; none in a forked child, which leaves its
    /// parent's file alone.
    pub fn journal(&self) -> Option<&Journaling> {
        self.journal
            .as_deref()
            .filter(|_| !self.journal_paused.load(Ordering::Acquire))
    }

    /// Every record in memory, in submit order.
    pub fn records(&self) -> Vec<Arc<Record>> {
        self.store.all()
    }

    pub fn count(&self, state: State) -> usize {
        self.store.count(state)
    }

    pub fn unfinished(&self) -> usize {
        self.store.unfinished()
    }

    /// Forgets the records past their retention count or age. A task's end
    /// calls it; so does the poller when the oldest record reaches its age
    /// (see `Engine::chore`), so that an idle runner forgets on time and a
    /// read never pays for a sweep.
    fn expire(&self) {
        drop(self.store.expire(unix_now()));
    }

    /// When a record of age `limit` (Unix seconds) must go, as an instant.
    fn age_limit_instant(limit: f64) -> Option<Instant> {
        let wait = Duration::try_from_secs_f64((limit - unix_now()).max(0.0)).ok()?;
        Instant::now().checked_add(wait)
    }

    /// Forgets a finished task now. Returns false when it is not finished.
    pub fn forget(&self, record: &Record) -> bool {
        if !record.state().is_final() {
            return false;
        }
        drop(self.store.remove(record.id));
        // Ids forgotten one by one are compacted out of the finished list.
        self.expire();
        true
    }

    /// Listens to state changes (see `Events::subscribe`).
    pub fn subscribe(&self, every_change: bool, capacity: Option<usize>) -> Subscription {
        self.events.subscribe(every_change, capacity)
    }

    pub fn stats(&self) -> Stats {
        let pool = self.pool.stats();
        let counts = &self.store.counts;
        let timed_out = counts.ended_on_worker().min(pool.busy);
        Stats {
            max_workers: self.pool.max_workers(),
            workers: pool.threads,
            workers_busy: pool.busy - timed_out,
            workers_idle: pool.idle,
            workers_timed_out: timed_out,
            workers_attaching: pool.attaching,
            queued: pool.queued,
            polling: counts.polling(),
            poller_queue: self.poller.queue_len(),
            polls: counts.polls(),
            unfinished: self.store.unfinished(),
            journal: self.journal_health(),
            paused: self.is_paused(),
        }
    }

    /// Submits a task; with a key, returns the task the key already made,
    /// if any.
    pub fn submit(
        self: &Arc<Self>,
        py: Python<'_>,
        mut sub: Submission<'_>,
    ) -> PyResult<Arc<Record>> {
        let Some(key) = sub.key.take() else {
            return self.submit_new(py, sub, None);
        };
        let mut journal = self.journal();
        loop {
            match self.keys.claim(py, &key, journal)? {
                Claim::Made(id) => {
                    if let Some(record) = self.record(py, id)? {
                        return Ok(record);
                    }
                    // The key outlived its task (forgotten, or pruned): it is free.
                    self.keys.forget(&key, id);
                    journal = None;
                }
                Claim::Mine(ticket) => {
                    let record = self.submit_new(py, sub, Some(ticket.key()))?;
                    ticket.made(record.id);
                    return Ok(record);
                }
            }
        }
    }

    /// The task an idempotency key made, if it made one that is still known.
    pub fn task_of_key(&self, py: Python<'_>, key: &str) -> PyResult<Option<Arc<Record>>> {
        match self.keys.made(key, self.journal())? {
            Some(id) => self.record(py, id),
            None => Ok(None),
        }
    }

    fn submit_new(
        self: &Arc<Self>,
        py: Python<'_>,
        mut sub: Submission<'_>,
        key: Option<&str>,
    ) -> PyResult<Arc<Record>> {
        let (deadline, elsewhere) = (sub.deadline, sub.elsewhere);
        let upstream = std::mem::take(&mut sub.upstream);
        let waits = sub.not_before.is_some() || !upstream.is_empty();
        let held = waits || sub.plan.limit.is_some();
        let record = self.enter(py, sub, key)?;
        if elsewhere {
            self.expire_at(py, &record, deadline);
            return Ok(record);
        }
        if !held {
            return self.route(py, record, deadline, self.handoff);
        }
        self.expire_at(py, &record, deadline);
        if !waits {
            self.admit(py, &record); // only a limit to pass
        } else {
            self.hold(py, &record, &upstream)?;
        }
        Ok(record)
    }

    /// A task that runs elsewhere times out here: the cluster hears of it
    /// as of a cancel.
    fn expire_at(
        self: &Arc<Self>,
        py: Python<'_>,
        record: &Arc<Record>,
        deadline: Option<Instant>,
    ) {
        if let Some(at) = deadline {
            let expire = Due {
                at,
                record: record.clone(),
                action: Action::Expire,
            };
            self.schedule(py, vec![expire]);
        }
    }

    /// A task that runs elsewhere started on `worker`.
    pub fn started_elsewhere(
        &self,
        record: &Arc<Record>,
        kind: Option<Kind>,
        worker: Bound<'_, PyString>,
    ) -> PyResult<()> {
        let address: Arc<str> = Arc::from(worker.to_str()?);
        if record.start_on(kind, Some(worker.unbind()), &self.store.counts) {
            if let Some(journal) = self.journal() {
                journal.started_on(record, address);
            }
            self.events.publish(record, State::Running);
        }
        Ok(())
    }

    /// A task that runs elsewhere turned out to be `kind`.
    pub fn classified(&self, record: &Record, kind: Kind) {
        if record.kind().is_none() {
            record.classified(kind, &self.store.counts);
        }
    }

    /// A task that runs elsewhere lost its worker and is queued again (the
    /// attempt that ended is kept, saying so); returns its attempt now, or
    /// None when it is already final.
    pub fn requeue(&self, py: Python<'_>, record: &Arc<Record>) -> Option<u32> {
        let worker = record
            .progress
            .lock()
            .worker
            .as_ref()
            .map(|w| w.clone_ref(py));
        let why = match worker {
            Some(worker) => format!(
                "its cluster worker {} was lost",
                worker.bind(py).to_string_lossy()
            ),
            None => "the cluster worker it was sent to was lost before it started".into(),
        };
        let attempt = record.requeue(Some(AttemptError::lost(why)), &self.store.counts)?;
        if let Some(journal) = self.journal() {
            journal.attempt_ended(record);
        }
        self.events.publish(record, State::Pending);
        Some(attempt)
    }

    /// A task's record if it is still in memory (not read back from the journal).
    pub fn in_memory(&self, id: u64) -> Option<Arc<Record>> {
        self.store.get(id)
    }

    /// A new record, pending, in the store, the journal and the events.
    fn enter(
        self: &Arc<Self>,
        py: Python<'_>,
        sub: Submission<'_>,
        key: Option<&str>,
    ) -> PyResult<Arc<Record>> {
        if self.is_closed() {
            return Err(PyRuntimeError::new_err(
                "cannot submit a task after shutdown",
            ));
        }
        let name = sub.name.unbind();
        let (plan, not_before, task_type) = (sub.plan, sub.not_before, sub.task_type);
        let recipe = sub.recipe.as_ref().and_then(crate::journaling::recipe_text);
        let record = self.store.insert(|id| {
            let mut record = Record::new(id, name, sub.task.unbind(), sub.kind, sub.policy);
            record.set_plan(plan);
            record.set_given(task_type, recipe);
            record.progress.get_mut().not_before = not_before;
            record
        });
        if let Some(journal) = self.journal() {
            let name = record.name.bind(py);
            let name: Arc<str> = match name.to_str() {
                Ok(text) => text.into(),
                Err(_) => name.to_string_lossy().into(),
            };
            let schedule = crate::journaling::schedule_of(py, &record)?;
            journal.submitted(&record, name, sub.recipe, key, schedule);
        }
        self.events.publish(&record, State::Pending);
        Ok(record)
    }

    /// Tasks by `listing`: from the journal, which holds those no longer in
    /// memory, unless it is degraded (then rows may be missing from it);
    /// else from memory. A task still in memory is shown as it is now.
    pub fn list(&self, py: Python<'_>, listing: &Listing) -> PyResult<Vec<Arc<Record>>> {
        match self.list_journal(py, listing)? {
            None => self.list_memory(py, listing),
            Some((journal, rows)) => rows
                .iter()
                .map(|row| match self.store.get(row.id) {
                    Some(record) => Ok(record),
                    None => journal.record_of(py, row).map(Arc::new),
                })
                .collect(),
        }
    }

    /// The ids `list` would give, without reading any result back.
    pub fn list_ids(&self, py: Python<'_>, listing: &Listing) -> PyResult<Vec<u64>> {
        match self.journal().filter(|j| j.health() == Health::Ok) {
            Some(_) if listing.limit == 0 => Ok(Vec::new()),
            Some(journal) => journal.page_ids(
                py,
                &listing.filter,
                listing.cursor,
                listing.newest_first,
                listing.limit,
            ),
            None => Ok(self
                .list_memory(py, listing)?
                .iter()
                .map(|r| r.id)
                .collect()),
        }
    }

    /// The journal's rows for `listing`; None when memory must answer.
    fn list_journal(
        &self,
        py: Python<'_>,
        listing: &Listing,
    ) -> PyResult<Option<(&Journaling, Vec<TaskRow>)>> {
        let Some(journal) = self.journal().filter(|j| j.health() == Health::Ok) else {
            return Ok(None);
        };
        if listing.limit == 0 {
            return Ok(Some((journal, Vec::new())));
        }
        let page = journal.page(
            py,
            &listing.filter,
            listing.cursor,
            listing.newest_first,
            listing.limit,
        )?;
        Ok(Some((journal, page.rows)))
    }

    fn list_memory(&self, py: Python<'_>, listing: &Listing) -> PyResult<Vec<Arc<Record>>> {
        let f = &listing.filter;
        let mut records = self.store.all();
        if listing.newest_first {
            records.reverse();
        }
        let beyond_cursor = |id: u64| match (listing.cursor, listing.newest_first) {
            (None, _) => true,
            (Some(c), true) => id < c,
            (Some(c), false) => id > c,
        };
        let mut listed = Vec::new();
        for record in records {
            if listed.len() >= listing.limit {
                break;
            }
            let passes = beyond_cursor(record.id)
                && (f.states.is_empty() || f.states.iter().any(|s| s == record.state().as_str()))
                && f.since.is_none_or(|t| record.submitted_at >= t)
                && f.until.is_none_or(|t| record.submitted_at < t)
                && f.name_contains.as_ref().is_none_or(|part| {
                    record
                        .name
                        .bind(py)
                        .to_str()
                        .is_ok_and(|n| n.contains(part.as_str()))
                })
                && passes_labels(py, f, &record);
            if passes {
                listed.push(record);
            }
        }
        Ok(listed)
    }

    /// The journal's health; None without a journal.
    pub fn journal_health(&self) -> Option<Health> {
        self.journal().map(Journaling::health)
    }

    /// Queues a new record: blocking (or unknown) tasks on the pool, polling
    /// ones on the poller; and its deadline, if any.
    /// `handoff`: a submit that found every worker idle may wait for one to
    /// take its task (see `Config::handoff`).
    fn route(
        self: &Arc<Self>,
        py: Python<'_>,
        record: Arc<Record>,
        deadline: Option<Instant>,
        handoff: bool,
    ) -> PyResult<Arc<Record>> {
        let kind = record.kind();
        // Most tasks have neither a poll nor a deadline: no allocation, no poller lock.
        let mut timed: Vec<Due> = Vec::new();
        let mut pool_idle = false;
        if kind == Some(Kind::Polling) {
            timed.push(Due {
                at: crate::poller::at_once(),
                record: record.clone(),
                action: Action::Start,
            });
        } else {
            match self.pool.push(self, record.clone(), record.plan().priority) {
                Ok(idle) => pool_idle = idle && handoff,
                // As with ThreadPoolExecutor, a thread that cannot start is the submitter's error.
                Err(failed) => return Err(self.fail_orphans(py, failed)),
            }
        }
        if let Some(at) = deadline {
            timed.push(Due {
                at,
                record: record.clone(),
                action: Action::Expire,
            });
        }
        self.schedule(py, timed);
        if pool_idle {
            // The submitter may hold the GIL long after this (a loop of
            // submits, then shutdown(cancel_futures=True)): let a worker take
            // the task first, as ThreadPoolExecutor's submit waits for a new
            // thread to start. Only the first task after a lull pays, and
            // only where the runner asks for it (the Executor does).
            py.detach(|| {
                if self.pool.wait_taken(TAKER_WAIT) {
                    // Taken is not yet started: the worker claims the task
                    // just after it leaves the queue's lock. Until then a
                    // shutdown(cancel_futures=True) would still cancel it.
                    let until = Instant::now() + CLAIM_WAIT;
                    while record.state() == State::Pending && Instant::now() < until {
                        std::thread::yield_now();
                    }
                }
            });
        }
        Ok(record)
    }

    /// No worker could start: the queued tasks that no worker will ever run fail.
    fn fail_orphans(self: &Arc<Self>, py: Python<'_>, failed: StartFailed<Arc<Record>>) -> PyErr {
        let message = format!("cannot start a worker thread: {}", failed.error);
        for record in failed.orphans {
            let error = PyRuntimeError::new_err(message.clone());
            self.complete(py, &record, failure(py, error));
        }
        PyRuntimeError::new_err(message)
    }

    fn schedule(self: &Arc<Self>, py: Python<'_>, entries: Vec<Due>) {
        if entries.is_empty() {
            return;
        }
        if let Err(err) = self.poller.schedule(self, entries) {
            poller_start_error(err).print(py);
        }
    }

    /// A worker's job: run one claimed blocking (or not yet classified) task.
    fn run_blocking(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>) {
        let (known, task) = record.kind_and_task(py);
        if known.is_none() && !self.start(record, None) {
            return; // cancelled or timed out before its worker got the GIL
        }
        let Some(task) = task else {
            // It ended (timed out) between its claim and now.
            return record.leave_worker(None, &self.store.counts);
        };
        if progress::has_progress(task.bind(py)) {
            self.watch_progress(record);
        }
        let ran = catch_unwind(AssertUnwindSafe(|| run_and_collect(py, task.bind(py))));
        // What run() showed the task to be: a value (or a task known to be
        // blocking) ends it; no value yet, or a coroutine, makes it polled.
        let shown = match &ran {
            Ok(Ok(Ran::Output(value))) if !value.is_none() || known == Some(Kind::Blocking) => {
                Some(Kind::Blocking)
            }
            Ok(Ok(_)) => Some(Kind::Polling),
            _ => None,
        };
        record.leave_worker(shown, &self.store.counts);
        match (ran, shown) {
            (Ok(Ok(Ran::Coroutine(coroutine))), _) => {
                self.begin_coroutine(py, record, task.bind(py), coroutine)
            }
            (Ok(Ok(Ran::Output(value))), Some(Kind::Blocking)) => {
                self.complete(py, record, Outcome::Succeeded(value.unbind()))
            }
            (Ok(Ok(Ran::Output(_))), _) => self.begin_polling(py, record, Instant::now()),
            (Ok(Err(err)), _) => self.fail(py, record, err),
            (Err(_), _) => self.complete(py, record, internal_error(py, "running the task")),
        }
    }

    /// A task whose `run()` returned a coroutine (`async def run`): it runs
    /// on the one event-loop thread all such tasks share (no thread, no
    /// polls), and the task ends when it does.
    fn begin_coroutine(
        self: &Arc<Self>,
        py: Python<'_>,
        record: &Arc<Record>,
        task: &Bound<'_, PyAny>,
        coroutine: Bound<'_, PyAny>,
    ) {
        let started = (|| {
            let finish = self.finisher(py, record)?;
            py.import("taskrunner.coroutines")?
                .call_method1("start", (coroutine, task, finish))
        })();
        match started {
            // Released (so cancelled) here if the task ended meanwhile.
            Ok(running) => drop(record.keep_while_running(running.unbind())),
            Err(err) => self.complete(py, record, failure(py, err)),
        }
    }

    /// `finish(error, value)`: ends the task with its coroutine's outcome.
    fn finisher<'py>(
        self: &Arc<Self>,
        py: Python<'py>,
        record: &Arc<Record>,
    ) -> PyResult<Bound<'py, PyCFunction>> {
        let (engine, record) = (self.clone(), record.clone());
        let finish = move |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| {
            let py = args.py();
            let (error, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = args.extract()?;
            let outcome = if error.is_none() {
                Outcome::Succeeded(value.unbind())
            } else {
                failure(py, PyErr::from_value(error))
            };
            engine.complete(py, &record, outcome);
            PyResult::Ok(())
        };
        PyCFunction::new_closure(py, None, None, finish)
    }

    /// Pending to running; false when the task ended before it could start.
    fn start(&self, record: &Arc<Record>, kind: Option<Kind>) -> bool {
        let started = record.start(kind, &self.store.counts);
        if started {
            self.announce_start(record);
        }
        started
    }

    /// Tells the journal and the listeners that `record` started.
    fn announce_start(&self, record: &Arc<Record>) {
        if let Some(journal) = self.journal() {
            journal.started(record);
        }
        self.events.publish(record, State::Running);
    }

    fn begin_polling(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>, since: Instant) {
        if let Err(err) = record.bind_get_output(py) {
            return self.complete(py, record, failure(py, err));
        }
        // A name that is not valid text has no siblings.
        if let Ok(name) = record.name.bind(py).to_str() {
            let family = record.family.get_or_init(|| self.families.of(name));
            family.join(record, since);
        }
        let due = self.poll_at(record, since, since);
        self.schedule(py, vec![due]);
    }

    /// The entry of a running polling task's next poll.
    fn next_poll(&self, record: &Arc<Record>, since: Instant) -> Due {
        self.poll_at(record, since, Instant::now())
    }

    /// The poll of a task polled since `since`, planned at `now`: by the
    /// policy and the budget, or sooner at its siblings' runtime
    /// (`siblings.rs`). It becomes the record's one live poll.
    fn poll_at(&self, record: &Arc<Record>, since: Instant, now: Instant) -> Due {
        let mut at = now + self.next_poll_interval(record, now - since);
        if let Some(runtime) = record.family.get().and_then(|f| f.runtime()) {
            let sibling_end = since + runtime;
            if sibling_end > now && sibling_end < at {
                at = sibling_end;
            }
        }
        plan_poll(&record.next_poll, at);
        Due {
            at,
            record: record.clone(),
            action: Action::Poll { since },
        }
    }

    fn next_poll_interval(&self, record: &Record, elapsed: Duration) -> Duration {
        let own = self.policy_of(record).own_interval(elapsed);
        self.demand.place(&record.poll_bucket, bucket_of(own));
        own.max(self.demand.floor(self.max_poll_rate))
    }

    fn poll(self: &Arc<Self>, py: Python<'_>, due: &Due, again: &mut Vec<Due>) {
        let record = &due.record;
        if matches!(due.action, Action::Start | Action::Expire) && self.held_by_pause(due) {
            return;
        }
        match due.action {
            Action::Expire => self.complete(py, record, Outcome::TimedOut),
            Action::Start => {
                if !self.start(record, Some(Kind::Polling)) {
                    return;
                }
                let Some(task) = record.task(py) else {
                    return; // ended since it started
                };
                let task = task.bind(py);
                match task.call_method0(names().run.bind(py)) {
                    Ok(value) if is_coroutine(&value) => {
                        self.begin_coroutine(py, record, task, value)
                    }
                    Ok(_) => self.begin_polling(py, record, Instant::now()),
                    Err(err) => self.fail(py, record, err),
                }
            }
            Action::Release => self.release(py, record),
            Action::Wake => self.wake_gate(py, record),
            Action::Poll { since } => {
                if !is_live_poll(&record.next_poll, due.at) {
                    return; // brought forward: this entry is spent
                }
                let Some(get_output) = record.get_output_for_poll(py, &self.store.counts) else {
                    return;
                };
                match get_output.bind(py).call0().and_then(resolved) {
                    Ok(value) if value.is_none() => {
                        if self.policy_of(record).errors > 0 {
                            record.progress.lock().poll_errors = 0;
                        }
                        self.poll_progress(py, record);
                        again.push(self.next_poll(record, since));
                    }
                    Ok(value) => {
                        self.poll_progress(py, record);
                        self.complete(py, record, Outcome::Succeeded(value.unbind()));
                        self.siblings_ended(record, since, again);
                    }
                    Err(err) => {
                        if self.poll_error_forgiven(py, record, &err) {
                            again.push(self.next_poll(record, since));
                        } else {
                            self.fail(py, record, err);
                        }
                    }
                }
            }
        }
    }

    /// A polling task was found done: its running siblings are likely done
    /// by the same runtime (`siblings.rs`).
    fn siblings_ended(&self, record: &Record, since: Instant, again: &mut Vec<Due>) {
        let Some(family) = record.family.get() else {
            return;
        };
        let now = Instant::now();
        for sibling in family.ended(now - since, now) {
            again.push(Due {
                at: sibling.at,
                record: sibling.member,
                action: Action::Poll {
                    since: sibling.since,
                },
            });
        }
    }

    /// Moves a task to its final state (if it is not final yet), then tells
    /// listeners and runs its done callbacks on this thread.
    pub fn complete(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>, outcome: Outcome) {
        let Some(Finished {
            to,
            at,
            runtime,
            was_running,
            listeners,
            task,
            slot,
        }) = record.finish(outcome, &self.store.counts)
        else {
            return;
        };
        if let Some(limit) = self.store.finished(record.id, at) {
            if let Some(at) = Self::age_limit_instant(limit) {
                self.poller.chore_at(at);
            }
        }
        self.demand.place(&record.poll_bucket, NO_BUCKET);
        // Its runtime is its last attempt's, None if it never started.
        self.history.finished(to, runtime);
        if let Some(journal) = self.journal() {
            journal.finished(py, record);
        }
        self.events.publish(record, to);
        if was_running && matches!(to, State::Cancelled | State::TimedOut) {
            if let Some(task) = &task.0 {
                stop_work(py, record, task.bind(py));
            }
        }
        drop(task);
        if slot {
            self.leave_gate(py, record);
        }
        self.upstream_ended(py, record, to, listeners.dependents);
        run_callbacks(py, listeners.callbacks);
        // Records past their age go at the poller's chores.
        if self.store.over_count() {
            self.expire();
        }
        if self.is_closed() && self.store.unfinished() == 0 {
            drop(self.poller.stop());
        }
    }

    /// Cancels a pending task, or a running polling task. Returns whether the
    /// task is now cancelled; a running blocking task cannot be.
    pub fn cancel(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>) -> bool {
        let (state, kind) = {
            let p = record.progress.lock();
            (p.state, p.kind)
        };
        let cancellable = match state {
            State::Pending => true,
            State::Running => kind == Some(Kind::Polling),
            State::Cancelled => return true,
            _ => false,
        };
        if cancellable {
            self.complete(py, record, Outcome::Cancelled);
        }
        record.state() == State::Cancelled
    }

    /// Stops taking tasks. With `cancel_pending`, tasks that have not started
    /// are cancelled; with `cancel_polling`, running polling tasks are too.
    /// Ends a pause (after those cancels), so that the rest can drain.
    pub fn close(self: &Arc<Self>, py: Python<'_>, cancel_pending: bool, cancel_polling: bool) {
        self.closed.store(true, Ordering::Release);
        if cancel_pending {
            self.cancelling.store(true, Ordering::Release);
        }
        self.pool.shutdown();
        if cancel_pending || cancel_polling {
            for record in self.store.all() {
                let (state, kind) = {
                    let p = record.progress.lock();
                    (p.state, p.kind)
                };
                let cancel = (cancel_pending && state == State::Pending)
                    || (cancel_polling && state == State::Running && kind == Some(Kind::Polling));
                if cancel {
                    self.complete(py, &record, Outcome::Cancelled);
                }
            }
        }
        self.resume(py);
        if self.store.unfinished() == 0 {
            drop(self.poller.stop());
        }
    }

    /// Waits, detached and interruptible, until every thread has exited.
    pub fn join(&self, py: Python<'_>) -> PyResult<()> {
        self.join_until(py, None).map(drop)
    }

    /// Waits, detached and interruptible, until every thread has exited or
    /// `deadline` passes; true once they have.
    pub fn join_until(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        if self.pool.is_own_worker() || self.poller.is_current_thread() {
            // A task or done callback cannot wait for the thread it runs on.
            return Err(PyRuntimeError::new_err(
                "cannot join current thread: shutdown(wait=True) called from one of the runner's own threads",
            ));
        }
        loop {
            let step = match deadline {
                None => JOIN_STEP,
                Some(d) => d.saturating_duration_since(Instant::now()).min(JOIN_STEP),
            };
            let done = py.detach(|| self.pool.wait_exited(step) && self.poller.wait_stopped(step));
            if done {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }

    /// Takes up the tasks the journal's last process left unfinished: a
    /// durable one runs again (same id, next attempt), any other ends
    /// `failed` with `TaskLost`. Called once, before the runner is handed out.
    pub fn recover(self: &Arc<Self>, py: Python<'_>) -> PyResult<()> {
        let Some(journal) = self.journal.as_deref() else {
            return Ok(());
        };
        let mut rows: Vec<&TaskRow> = journal.unfinished().iter().collect();
        // Newest first: the store grows its table downwards one id at a time.
        rows.sort_by_key(|row| std::cmp::Reverse(row.id));
        let mut held = Vec::new();
        for row in rows {
            let Some(recipe) = &row.recipe else {
                journal.lost(row, "");
                continue;
            };
            let task = match journal.recreate(py, recipe) {
                Ok(task) => task,
                Err(err) => {
                    journal.lost(row, &format!(", and it could not be re-created: {err}"));
                    continue;
                }
            };
            // A pickled task is the object that was classified; one made
            // anew from data is classified anew, as a submit would.
            let recorded = row.kind.and_then(Kind::parse);
            let kind = match recipe.encoding {
                Encoding::Pickle => Ok(recorded),
                _ => crate::classify::classify(&task, None),
            };
            let kind = match kind {
                Ok(kind) => kind,
                Err(err) => {
                    journal.lost(row, &format!(", and what was re-created is no task: {err}"));
                    continue;
                }
            };
            let plan = match self.plan_of(py, &row.schedule) {
                Ok(plan) => plan,
                Err(err) => {
                    journal.lost(row, &format!(", and what it waits for is gone: {err}"));
                    continue;
                }
            };
            let name = PyString::new(py, &row.name).unbind();
            let mut record = Record::new(row.id, name, task.unbind(), kind, None);
            record.submitted_at = row.submitted_at;
            record.attempt = row.attempt + 1;
            record.set_plan(plan);
            record.set_given(
                row.task_type.clone(),
                crate::journaling::recipe_text(recipe),
            );
            // The attempts it made before, and the one lost with the process.
            let lost = crate::journaling::lost_attempt(row);
            let mut attempts = journal.past_attempts(py, row.id)?;
            attempts.push(lost.clone());
            let p = record.progress.get_mut();
            p.not_before = row.schedule.not_before;
            // A task waiting for a retry keeps its last error.
            p.error = row
                .error
                .as_ref()
                .map(|e| Box::new(crate::journaling::error_of(py, e)));
            Trail::of(&mut p.trail).attempts = attempts;
            let record = self.store.insert_recovered(record);
            journal.resubmitted(&record, row);
            journal.write_attempt(record.id, &lost);
            self.events.publish(&record, State::Pending);
            if self.recover_elsewhere {
                self.recovered.lock().push(record);
            } else if record.plan().is_plain() && row.schedule.not_before.is_none() {
                self.route(py, record, None, false)?;
            } else {
                held.push(record);
            }
        }
        // Held once all are back, so that a task finds the ones it comes after.
        for record in held {
            let mut upstream = Vec::new();
            for id in record.plan().after.iter() {
                match self.record(py, *id)? {
                    Some(up) => upstream.push(up),
                    // Retention forgets only finished rows, long after they finished.
                    None => crate::errors::log_warning(
                        py,
                        &format!(
                            "task {} came after task {id}, which the journal no longer holds: taken as done",
                            record.id
                        ),
                    ),
                }
            }
            self.hold(py, &record, &upstream)?;
        }
        Ok(())
    }

    /// A plan as the journal kept it: its limit found again by label, its
    /// retry policy's exception classes imported again.
    fn plan_of(&self, py: Python<'_>, schedule: &crate::journal::Schedule) -> PyResult<Plan> {
        let limit = match &schedule.limit {
            Some(label) => Some(self.limits.gate(label)?),
            None => None,
        };
        let retry = match &schedule.retry {
            Some(text) => Some(Py::new(py, crate::retry::Retry::from_text(py, text)?)?),
            None => None,
        };
        Ok(Plan {
            priority: schedule.priority,
            limit_label: schedule.limit.clone(),
            limit,
            retry,
            after: crate::journaling::after_ids(schedule.after.as_deref()),
        })
    }

    /// The process exits: the cancellations it makes are not written for
    /// durable tasks, which run again when the journal is next opened.
    pub fn exiting(&self) {
        if let Some(journal) = self.journal.as_deref() {
            journal.begin_exit();
        }
    }

    /// The recovered tasks waiting to run elsewhere (see
    /// `Config::recover_elsewhere`), handed out once.
    pub fn take_recovered(&self) -> Vec<Arc<Record>> {
        std::mem::take(&mut *self.recovered.lock())
    }

    /// Writes what is left and closes the journal (at exit, once joined).
    pub fn close_journal(&self, py: Python<'_>) -> PyResult<()> {
        self.write_open_minute();
        match self.journal() {
            Some(journal) => journal.close(py),
            None => Ok(()),
        }
    }

    /// Called by the `os.register_at_fork` hook in a child. The child has
    /// none of the parent's threads: forget them, and end the inherited
    /// unfinished tasks, which the parent still owns and runs.
    pub fn after_fork(self: &Arc<Self>, py: Python<'_>) {
        let pid = std::process::id();
        if self.pid.swap(pid, Ordering::AcqRel) == pid {
            return;
        }
        self.journal_paused.store(true, Ordering::Release);
        if let Some(journal) = &self.journal {
            // The child never writes, reads or closes its parent's file: an
            // SQLite connection must not be used, or closed, across a fork
            // (closing may check the WAL back into the file under the
            // parent), and the writer thread is not here to join. Leaked on
            // purpose, less the lock file's descriptor, so that the lock
            // goes with the parent alone.
            journal.forget_owner_in_child();
            std::mem::forget(journal.clone());
        }
        // Free the locks the parent's threads may have held at the fork.
        self.store.release_locks_in_child();
        self.pool.release_locks_in_child();
        self.poller.release_locks_in_child();
        self.events.release_locks_in_child();
        self.keys.release_locks_in_child();
        self.forget_pause_in_child();
        self.pool.forget_workers();
        drop(self.pool.drain());
        self.poller.forget_threads();
        drop(self.poller.clear());
        for record in self.store.all() {
            if !record.state().is_final() {
                self.complete(py, &record, Outcome::Cancelled);
            }
        }
        self.store.counts.forget_workers();
    }
}

impl Jobs for Engine {
    type Job = Arc<Record>;

    fn pool(&self) -> &Pool<Arc<Record>> {
        &self.pool
    }

    /// A blocking task is running from the moment a worker takes it: from
    /// then on it can no longer be cancelled, as with `ThreadPoolExecutor`.
    /// A task of unknown kind starts once its worker holds the GIL, so that
    /// no one sees it running before its kind is known (a polling one stays
    /// cancellable).
    fn claim(&self, record: &Arc<Record>) -> bool {
        match record.start_if_blocking(&self.store.counts) {
            Some(started) => {
                if started {
                    self.announce_start(record);
                }
                started
            }
            None => !record.state().is_final(),
        }
    }

    fn run_job(self: &Arc<Self>, py: Python<'_>, record: Arc<Record>) {
        let ran = catch_unwind(AssertUnwindSafe(|| self.run_blocking(py, &record)));
        if ran.is_err() {
            self.complete(py, &record, internal_error(py, "running the task"));
        }
    }
}

impl Polled for Engine {
    fn poller(&self) -> &Poller {
        &self.poller
    }

    fn handle_due(self: &Arc<Self>, py: Python<'_>, due: &Due, again: &mut Vec<Due>) {
        let handled = catch_unwind(AssertUnwindSafe(|| self.poll(py, due, again)));
        if handled.is_err() {
            self.complete(py, &due.record, internal_error(py, "polling"));
        }
    }

    /// Forgets the records that reached their age; due again at the next one's.
    /// And reads the progress of the running blocking tasks that report it,
    /// and closes the history's last second.
    fn chore(self: &Arc<Self>, py: Python<'_>) -> Option<Instant> {
        self.expire();
        let forget = self
            .store
            .next_age_limit()
            .and_then(Self::age_limit_instant);
        let read = self.read_watched_progress(py);
        let next = [forget, read].into_iter().flatten();
        Some(next.fold(self.tick_history(), Instant::min))
    }
}

/// What a worker got from a task.
/// Tells a task that ended while it ran (cancelled, timed out) to stop its
/// work, by its optional `cancel()`: a subprocess to terminate, a remote job
/// to call off. What it raises is logged.
fn stop_work(py: Python<'_>, record: &Record, task: &Bound<'_, PyAny>) {
    let Ok(cancel) = task.getattr(names().cancel.bind(py)) else {
        return;
    };
    if let Err(err) = cancel.call0() {
        let message = format!("cancel() of task {} raised", record.id);
        log_exception(py, &message, err);
    }
}

enum Ran<'py> {
    Output(Bound<'py, PyAny>),
    /// `run()` is a coroutine function: this is its coroutine, not started.
    Coroutine(Bound<'py, PyAny>),
}

/// Calls a blocking task's `run()`, then `get_output()`: the output wins; a
/// blocking task may instead only return it from `run()`. The call that
/// collects the output is not a poll.
fn run_and_collect<'py>(py: Python<'py>, task: &Bound<'py, PyAny>) -> PyResult<Ran<'py>> {
    let names = names();
    let returned = task.call_method0(names.run.bind(py))?;
    if is_coroutine(&returned) {
        return Ok(Ran::Coroutine(returned));
    }
    let output = resolved(task.call_method0(names.get_output.bind(py))?)?;
    Ok(Ran::Output(if output.is_none() {
        returned
    } else {
        output
    }))
}

/// The value itself, or, for the coroutine of an `async def get_output`,
/// what it returns once run on the event-loop thread (this thread waits).
fn resolved(value: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    if !is_coroutine(&value) {
        return Ok(value);
    }
    let py = value.py();
    py.import("taskrunner.coroutines")?
        .call_method1("resolve", (value,))
}

/// Calls each done callback with its argument; an exception is logged.
pub fn run_callbacks(py: Python<'_>, callbacks: Vec<(Py<PyAny>, Py<PyAny>)>) {
    for (callback, arg) in callbacks {
        if let Err(err) = callback.bind(py).call1((arg,)) {
            log_exception(py, "exception in a done callback", err);
        }
    }
}

/// Whether `record` passes the filter's kind, type, worker and error type.
fn passes_labels(py: Python<'_>, f: &Filter, record: &Record) -> bool {
    let same =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    if !same(&f.task_type, record.task_type().map(|t| &**t)) {
        return false;
    }
    if f.kind.is_none() && f.worker.is_none() && f.error_type.is_none() {
        return true;
    }
    let p = record.progress.lock();
    let worker = p.worker.as_ref().and_then(|w| w.bind(py).to_str().ok());
    same(&f.kind, p.kind.map(Kind::as_str))
        && same(&f.worker, worker)
        && same(
            &f.error_type,
            p.error.as_ref().map(|e| e.type_name.as_str()),
        )
}

/// A panic inside taskrunner, as the failure of the task it hit.
fn internal_error(py: Python<'_>, doing: &str) -> Outcome {
    let error = PyRuntimeError::new_err(format!("taskrunner internal error (panic) while {doing}"));
    failure(py, error)
}

fn poller_start_error(err: std::io::Error) -> PyErr {
    PyRuntimeError::new_err(format!("cannot start the poller thread: {err}"))
}
