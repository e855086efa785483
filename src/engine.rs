//! The engine: routes tasks to the pool or the poller, moves records through
//! their states, and tells listeners. Everything here that calls into Python
//! does so with no Rust lock held.

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::events::{Event, Events};
use crate::policy::{load_floor, PollPolicy};
use crate::poller::{Action, Due, Poller, MAX_BATCH};
use crate::pool::Pool;
use crate::record::{unix_now, ErrorInfo, Finished, Kind, Outcome, Record, State};
use crate::store::{Retention, Store};

const WORKER_STACK: usize = 8 << 20;

/// How often a join wakes to let Ctrl-C through.
const JOIN_STEP: Duration = Duration::from_millis(50);

/// The longest one blocked `get_output()` (or polling `run()`) call holds up
/// the polling of other tasks: then the watchdog starts another poller.
pub const POLL_STALL_BOUND: Duration = Duration::from_millis(100);

pub struct Config {
    pub retention: Retention,
    /// At interpreter exit, run queued tasks (as `ThreadPoolExecutor` does)
    /// instead of cancelling them.
    pub run_pending_at_exit: bool,
    pub max_workers: usize,
    pub keep_alive: Duration,
    pub policy: PollPolicy,
    pub max_poll_rate: f64,
}

pub struct Engine {
    pub store: Store,
    pub events: Arc<Events>,
    pub pool: Pool<Arc<Record>>,
    pub poller: Poller,
    pub policy: PollPolicy,
    pub max_poll_rate: f64,
    pub run_pending_at_exit: bool,
    pub polls: AtomicU64,
    closed: AtomicBool,
    pid: AtomicU32,
}

/// What a caller asks for at submit.
pub struct Submission<'py> {
    pub task: Bound<'py, PyAny>,
    pub kind: Option<Kind>,
    pub deadline: Option<Instant>,
    pub name: Option<Bound<'py, PyString>>,
    pub policy: Option<PollPolicy>,
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
        let engine = Arc::new(Engine {
            store: Store::new(config.retention),
            events: Arc::new(Events::default()),
            pool: Pool::new(config.max_workers, config.keep_alive),
            poller: Poller::default(),
            policy: config.policy,
            max_poll_rate: config.max_poll_rate,
            run_pending_at_exit: config.run_pending_at_exit,
            polls: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            pid: AtomicU32::new(std::process::id()),
        });
        ENGINES.lock().push(Arc::downgrade(&engine));
        engine
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn submit(self: &Arc<Self>, py: Python<'_>, sub: Submission<'_>) -> PyResult<Arc<Record>> {
        if self.is_closed() {
            return Err(PyRuntimeError::new_err(
                "cannot submit a task after shutdown",
            ));
        }
        drop(self.store.expire(unix_now()));
        let name = match sub.name {
            Some(name) => name.unbind(),
            None => sub
                .task
                .get_type()
                .name()?
                .cast_into::<PyString>()?
                .unbind(),
        };
        let deadline = sub.deadline;
        let policy = sub.policy.unwrap_or(self.policy);
        let record = self
            .store
            .insert(|id| Record::new(id, name, sub.task.unbind(), sub.kind, policy));
        self.events.publish(Event {
            id: record.id,
            state: State::Pending,
        });
        let now = Instant::now();
        let mut timed: Vec<Due> = Vec::with_capacity(2);
        if sub.kind == Some(Kind::Polling) {
            timed.push(Due {
                at: now,
                record: record.clone(),
                action: Action::Start,
            });
        } else if self.pool.push(record.clone()) {
            // As with ThreadPoolExecutor, a thread that cannot start is the submitter's error.
            self.spawn_worker()?;
        }
        if let Some(at) = deadline {
            timed.push(Due {
                at,
                record: record.clone(),
                action: Action::Expire,
            });
        }
        self.schedule(py, timed);
        Ok(record)
    }

    /// Starts a worker. If none can start and none is left, the queued tasks
    /// fail (no thread will ever run them) and so does this call.
    fn spawn_worker(self: &Arc<Self>) -> PyResult<()> {
        let engine = self.clone();
        let spawned = thread::Builder::new()
            .name("taskrunner-worker".into())
            .stack_size(WORKER_STACK)
            .spawn(move || {
                let run = |py: Python<'_>, record| engine.run_blocking(py, record);
                // Another worker will try again if this one cannot start.
                engine.pool.run_worker(run, || drop(engine.spawn_worker()));
            });
        let err = match spawned {
            Ok(handle) => {
                self.pool.spawned(handle);
                return Ok(());
            }
            Err(err) => err,
        };
        let orphans = self.pool.spawn_failed();
        let message = format!("cannot start a worker thread: {err}");
        if !orphans.is_empty() {
            Python::attach(|py| {
                for record in orphans {
                    let error = PyRuntimeError::new_err(message.clone());
                    self.complete(py, &record, failure(py, error));
                }
            });
        }
        Err(PyRuntimeError::new_err(message))
    }

    fn schedule(self: &Arc<Self>, py: Python<'_>, entries: Vec<Due>) {
        if self.poller.schedule(entries) {
            self.start_poller(py);
        }
    }

    /// Starts the threads a runner needs before its first task arrives, so
    /// that no submit pays for starting them: the poller, its watchdog, and
    /// one worker (which leaves after `keep_alive` if no work comes).
    pub fn warm_up(self: &Arc<Self>, py: Python<'_>) {
        if self.poller.reserve_main() {
            self.start_poller(py);
        }
        if self.pool.reserve_worker() {
            drop(self.spawn_worker());
        }
    }

    fn start_poller(self: &Arc<Self>, py: Python<'_>) {
        if let Err(err) = self.spawn_poller(false) {
            self.poller.start_failed(true);
            PyRuntimeError::new_err(format!("cannot start the poller thread: {err}")).print(py);
            return;
        }
        let engine = self.clone();
        let watchdog = thread::Builder::new()
            .name("taskrunner-watchdog".into())
            .spawn(move || engine.run_watchdog());
        match watchdog {
            Ok(handle) => self.poller.started(handle),
            Err(_) => self.poller.watchdog_failed(),
        }
    }

    fn spawn_poller(self: &Arc<Self>, extra: bool) -> std::io::Result<()> {
        let engine = self.clone();
        let handle = thread::Builder::new()
            .name("taskrunner-poller".into())
            .spawn(move || engine.run_poller(extra))?;
        self.poller.started(handle);
        Ok(())
    }

    /// A worker's job: run one blocking (or not yet classified) task.
    fn run_blocking(self: &Arc<Self>, py: Python<'_>, record: Arc<Record>) {
        let ran = catch_unwind(AssertUnwindSafe(|| self.run_blocking_inner(py, &record)));
        if ran.is_err() {
            let error =
                PyRuntimeError::new_err("taskrunner internal error (panic) while running the task");
            self.complete(py, &record, failure(py, error));
        }
    }

    fn run_blocking_inner(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>) {
        let known = record.kind();
        let Some(task) = self.start(py, record, known) else {
            return;
        };
        let task = task.bind(py);
        let returned = match task.call_method0(intern!(py, "run")) {
            Ok(value) => value,
            Err(err) => return self.complete(py, record, failure(py, err)),
        };
        let output = match self.get_output(py, record, task) {
            Ok(value) => value,
            Err(err) => return self.complete(py, record, failure(py, err)),
        };
        // The output wins; a blocking task may instead only return it from run().
        let value = if !output.is_none() { output } else { returned };
        if !value.is_none() || known == Some(Kind::Blocking) {
            record.set_kind(Kind::Blocking);
            return self.complete(py, record, Outcome::Succeeded(value.unbind()));
        }
        // run() returned at once with no output yet: a polling task.
        record.set_kind(Kind::Polling);
        self.begin_polling(py, record, Instant::now());
    }

    /// Pending to running; None when the task ended before it could start.
    fn start(&self, py: Python<'_>, record: &Record, kind: Option<Kind>) -> Option<Py<PyAny>> {
        let task = record.start(py, kind, &self.store.counts)?;
        self.events.publish(Event {
            id: record.id,
            state: State::Running,
        });
        Some(task)
    }

    fn get_output<'py>(
        &self,
        py: Python<'py>,
        record: &Record,
        task: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        record.progress.lock().polls += 1;
        self.polls.fetch_add(1, Ordering::Relaxed);
        task.call_method0(intern!(py, "get_output"))
    }

    fn begin_polling(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>, since: Instant) {
        if let Err(err) = record.bind_get_output(py) {
            return self.complete(py, record, failure(py, err));
        }
        self.poller.active.fetch_add(1, Ordering::Relaxed);
        let at = since + self.next_poll_interval(record, Duration::ZERO);
        self.schedule(
            py,
            vec![Due {
                at,
                record: record.clone(),
                action: Action::Poll { since },
            }],
        );
    }

    fn next_poll_interval(&self, record: &Record, elapsed: Duration) -> Duration {
        let active = self.poller.active.load(Ordering::Relaxed);
        record
            .policy
            .next_interval(elapsed, load_floor(active, self.max_poll_rate))
    }

    /// A poller thread's body. The main poller sleeps until work is due; an
    /// extra one (started by the watchdog) leaves when it runs out of work.
    fn run_poller(self: Arc<Self>, extra: bool) {
        // One Python thread state for the thread's life (see `Pool::run_worker`).
        Python::attach(|py| py.detach(|| self.poll_until_stopped(extra)));
    }

    fn poll_until_stopped(self: &Arc<Self>, extra: bool) {
        loop {
            let go_on = if extra {
                self.poller.extra_has_work()
            } else {
                self.poller.wait_due()
            };
            if !go_on {
                return;
            }
            self.poller.fill_ready();
            let mut again = Vec::new();
            Python::attach(|py| {
                let mut refilled = false;
                for _ in 0..MAX_BATCH {
                    let mut due = self.poller.take_ready();
                    if due.is_none() && !refilled {
                        // What fell due while this thread waited for the GIL rides along.
                        refilled = true;
                        self.poller.fill_ready();
                        due = self.poller.take_ready();
                    }
                    let Some(due) = due else {
                        break;
                    };
                    let handled =
                        catch_unwind(AssertUnwindSafe(|| self.handle_due(py, &due, &mut again)));
                    if handled.is_err() {
                        let error = PyRuntimeError::new_err(
                            "taskrunner internal error (panic) while polling",
                        );
                        self.complete(py, &due.record, failure(py, error));
                    }
                    self.poller.note_handled();
                }
            });
            // This thread is a poller: rescheduling never needs to start one.
            self.poller.schedule(again);
        }
    }

    /// Starts an extra poller when a `get_output()` (or `run()`) call has
    /// blocked every poller for `POLL_STALL_BOUND` while work waits. Never
    /// touches Python.
    fn run_watchdog(self: Arc<Self>) {
        let mut handled = self.poller.handled();
        while self.poller.watchdog_sleep(POLL_STALL_BOUND) {
            if self.poller.stalled(handled, POLL_STALL_BOUND / 2)
                && self.spawn_poller(true).is_err()
            {
                self.poller.start_failed(false);
            }
            handled = self.poller.handled();
        }
    }

    fn handle_due(self: &Arc<Self>, py: Python<'_>, due: &Due, again: &mut Vec<Due>) {
        let record = &due.record;
        match due.action {
            Action::Expire => self.complete(py, record, Outcome::TimedOut),
            Action::Start => {
                let Some(task) = self.start(py, record, Some(Kind::Polling)) else {
                    return;
                };
                match task.bind(py).call_method0(intern!(py, "run")) {
                    Ok(_) => self.begin_polling(py, record, Instant::now()),
                    Err(err) => self.complete(py, record, failure(py, err)),
                }
            }
            Action::Poll { since } => {
                let Some(get_output) = record.get_output_for_poll(py) else {
                    return;
                };
                self.polls.fetch_add(1, Ordering::Relaxed);
                match get_output.bind(py).call0() {
                    Ok(value) if value.is_none() => {
                        let now = Instant::now();
                        let at = now + self.next_poll_interval(record, now - since);
                        again.push(Due {
                            at,
                            record: record.clone(),
                            action: due.action,
                        });
                    }
                    Ok(value) => self.complete(py, record, Outcome::Succeeded(value.unbind())),
                    Err(err) => self.complete(py, record, failure(py, err)),
                }
            }
        }
    }

    /// Moves a task to its final state (if it is not final yet), then tells
    /// listeners and runs its done callbacks on this thread.
    pub fn complete(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>, outcome: Outcome) {
        let Some(Finished {
            from,
            to,
            kind,
            callbacks,
            task,
        }) = record.finish(outcome, &self.store.counts)
        else {
            return;
        };
        if from == State::Running && kind == Some(Kind::Polling) {
            self.poller.active.fetch_sub(1, Ordering::Relaxed);
        }
        self.store.finished(record.id, unix_now());
        self.events.publish(Event {
            id: record.id,
            state: to,
        });
        drop(task);
        if !callbacks.is_empty() {
            self.run_callbacks(py, record, callbacks);
        }
        drop(self.store.expire(unix_now()));
        if self.is_closed() && self.store.unfinished() == 0 {
            drop(self.poller.stop());
        }
    }

    pub fn run_callbacks(
        self: &Arc<Self>,
        py: Python<'_>,
        record: &Arc<Record>,
        callbacks: Vec<Py<PyAny>>,
    ) {
        let handle = match crate::handle::TaskHandle::new_py(py, self.clone(), record.clone()) {
            Ok(handle) => handle,
            Err(err) => return err.print(py),
        };
        for callback in callbacks {
            if let Err(err) = callback.bind(py).call1((handle.clone_ref(py),)) {
                log_exception(py, "exception in a done callback", err);
            }
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
    pub fn close(self: &Arc<Self>, py: Python<'_>, cancel_pending: bool, cancel_polling: bool) {
        self.closed.store(true, Ordering::Release);
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

    /// A forked child has none of the parent's threads: forget them, and end
    /// the inherited unfinished tasks, which the parent still owns and runs.
    /// Called by the `os.register_at_fork` hook in the child.
    fn check_fork(self: &Arc<Self>, py: Python<'_>) {
        let pid = std::process::id();
        if self.pid.swap(pid, Ordering::AcqRel) == pid {
            return;
        }
        // Free the locks the parent's threads may have held at the fork.
        self.store.release_locks_in_child();
        self.pool.release_locks_in_child();
        self.poller.release_locks_in_child();
        self.events.release_locks_in_child();
        self.pool.forget_workers();
        drop(self.pool.drain());
        self.poller.forget_threads();
        drop(self.poller.clear());
        for record in self.store.all() {
            if !record.state().is_final() {
                self.complete(py, &record, Outcome::Cancelled);
            }
        }
        self.poller.active.store(0, Ordering::Relaxed);
    }

    pub fn after_fork(self: &Arc<Self>, py: Python<'_>) {
        self.check_fork(py);
    }
}

/// The failure record of a Python exception: type, message, traceback.
pub fn failure(py: Python<'_>, err: PyErr) -> Outcome {
    // into_value attaches the traceback, so the exception re-raised later keeps it.
    let value = err.into_value(py).into_bound(py);
    let type_name = value
        .get_type()
        .qualname()
        .map_or_else(|_| "<unknown>".to_string(), |n| n.to_string());
    let message = value
        .str()
        .map_or_else(|_| "<unprintable>".to_string(), |s| s.to_string());
    let traceback = format_traceback(&value).unwrap_or_else(|_| format!("{type_name}: {message}"));
    Outcome::Failed(ErrorInfo {
        type_name,
        message,
        traceback,
        exception: value.into_any().unbind(),
    })
}

fn format_traceback(value: &Bound<'_, pyo3::exceptions::PyBaseException>) -> PyResult<String> {
    let py = value.py();
    let lines = py
        .import(intern!(py, "traceback"))?
        .call_method1(intern!(py, "format_exception"), (value,))?;
    PyString::new(py, "")
        .call_method1(intern!(py, "join"), (lines,))?
        .extract()
}

/// Logs an exception raised by user code we call back (never raised further).
pub fn log_exception(py: Python<'_>, message: &str, err: PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py
            .import(intern!(py, "logging"))?
            .call_method1(intern!(py, "getLogger"), ("taskrunner",))?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("exc_info", err.value(py))?;
        logger.call_method(
            intern!(py, "error"),
            PyTuple::new(py, [message])?,
            Some(&kwargs),
        )?;
        Ok(())
    })();
    if logged.is_err() {
        err.print(py);
    }
}

/// True when `task` has callable `run` and `get_output`; a TypeError otherwise.
pub fn check_task_shape(task: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = task.py();
    for method in [intern!(py, "run"), intern!(py, "get_output")] {
        let callable = task
            .getattr(method)
            .map(|m| m.is_callable())
            .unwrap_or(false);
        if !callable {
            let type_name = task
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string());
            return Err(PyTypeError::new_err(format!(
                "a task needs callable run() and get_output() methods; {type_name} object has no callable {method}"
            )));
        }
    }
    Ok(())
}
