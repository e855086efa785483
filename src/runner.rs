//! The Python face of the engine: `Runner`, `TaskHandle`, and the iterators
//! that wait for completions. Every wait is detached from Python and wakes
//! on a completion event (or every `WAIT_STEP` to let Ctrl-C through).

use parking_lot::Mutex;
use pyo3::exceptions::{PyKeyError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyString};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::classify::classify;
use crate::engine::{Config, Engine, Submission};
use crate::events::{Event, Subscription};
use crate::policy::PollPolicy;
use crate::record::{Kind, Record, State};
use crate::status::status_dict;
use crate::store::Retention;

const WAIT_STEP: Duration = Duration::from_millis(50);
pub const DEFAULT_MAX_WORKERS: usize = 256;

pyo3::create_exception!(
    taskrunner,
    TaskTimeoutError,
    pyo3::exceptions::PyException,
    "The task did not finish within its timeout and was ended as timed_out."
);

/// Seconds as a Duration, refusing what cannot be one.
fn seconds(what: &str, value: f64) -> PyResult<Duration> {
    if value.is_finite() && value >= 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(PyValueError::new_err(format!(
            "{what} must be a finite number >= 0, got {value}"
        )))
    }
}

fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    timeout
        .map(|t| Ok(Instant::now() + seconds("timeout", t)?))
        .transpose()
}

fn unknown(id: u64) -> PyErr {
    PyKeyError::new_err(format!("no task with id {id}"))
}

fn parse_kind(kind: Option<&str>) -> PyResult<Option<Kind>> {
    kind.map(|k| {
        Kind::parse(k).ok_or_else(|| {
            PyValueError::new_err(format!(
                "kind must be 'blocking', 'polling' or None, got {k:?}"
            ))
        })
    })
    .transpose()
}

pub fn parse_state(state: &str) -> PyResult<State> {
    State::parse(state).ok_or_else(|| {
        let names: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
        PyValueError::new_err(format!(
            "unknown state {state:?}; expected one of {}",
            names.join(", ")
        ))
    })
}

/// Sleeps, detached, until `done()` holds or `deadline` passes, handling
/// each event of `sub` while still detached (a flood of completions costs no
/// GIL traffic). Attaches every `WAIT_STEP` to let Ctrl-C through.
/// Returns whether `done()` held.
fn wait_until(
    py: Python<'_>,
    sub: &Subscription,
    deadline: Option<Instant>,
    mut on_event: impl FnMut(Event) -> bool + Send,
    done: impl Fn() -> bool + Sync,
) -> PyResult<bool> {
    loop {
        let settled = py.detach(|| {
            let now = Instant::now();
            let stretch_end = deadline.map_or(now + WAIT_STEP, |d| d.min(now + WAIT_STEP));
            loop {
                if done() {
                    return Some(true);
                }
                let Some(left) = stretch_end.checked_duration_since(Instant::now()) else {
                    break;
                };
                if let Ok(event) = sub.rx.recv_timeout(left) {
                    if on_event(event) {
                        return Some(true);
                    }
                }
            }
            deadline
                .is_some_and(|d| Instant::now() >= d)
                .then_some(false)
        });
        if let Some(result) = settled {
            return Ok(result);
        }
        py.check_signals()?;
    }
}

/// Waits for one record to be final; false on timeout.
fn wait_record(
    py: Python<'_>,
    engine: &Engine,
    record: &Record,
    timeout: Option<f64>,
) -> PyResult<bool> {
    let deadline = deadline_of(timeout)?;
    if record.state().is_final() {
        return Ok(true);
    }
    let sub = engine.events.subscribe(false, None);
    wait_until(
        py,
        &sub,
        deadline,
        |event| event.id == record.id,
        || record.state().is_final(),
    )
}

/// The result of a final record, or the exception `result()` raises.
fn outcome(py: Python<'_>, record: &Record) -> PyResult<Py<PyAny>> {
    let p = record.progress.lock();
    let state = p.state;
    let result = p.result.as_ref().map(|r| r.clone_ref(py));
    let exception = p.error.as_ref().map(|e| e.exception.clone_ref(py));
    drop(p);
    match state {
        State::Succeeded => Ok(result.unwrap_or_else(|| py.None())),
        State::Failed => Err(PyErr::from_value(
            exception.expect("failed has error").into_bound(py),
        )),
        State::Cancelled => {
            let cancelled = py.import("concurrent.futures")?.getattr("CancelledError")?;
            Err(PyErr::from_value(
                cancelled.call1((format!("task {} was cancelled", record.id),))?,
            ))
        }
        State::TimedOut => Err(TaskTimeoutError::new_err(format!(
            "task {} timed out",
            record.id
        ))),
        State::Pending | State::Running => unreachable!("outcome of an unfinished task"),
    }
}

fn wait_timeout_error(id: u64) -> PyErr {
    PyTimeoutError::new_err(format!("task {id} is not done yet"))
}

#[derive(Clone, Copy)]
enum WaitFor {
    First,
    FirstException,
    All,
}

/// The state of one `wait()`: O(1) per completion event.
#[derive(Default)]
struct WaitProgress {
    done: Vec<u64>,
    pending: HashMap<u64, Arc<Record>>,
    failed: bool,
}

impl WaitProgress {
    fn add(&mut self, record: Arc<Record>) {
        let state = record.state();
        if state.is_final() {
            self.failed |= matches!(state, State::Failed | State::TimedOut);
            self.done.push(record.id);
        } else {
            self.pending.insert(record.id, record);
        }
    }

    /// Takes one completion event; the record is final by the time it is sent.
    fn finished(&mut self, id: u64, condition: WaitFor) -> bool {
        if let Some(record) = self.pending.remove(&id) {
            self.add(record);
        }
        self.satisfied(condition)
    }

    fn satisfied(&mut self, condition: WaitFor) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        match condition {
            WaitFor::First => !self.done.is_empty(),
            WaitFor::FirstException => self.failed,
            WaitFor::All => false,
        }
    }
}

/// Runs blocking tasks on an elastic thread pool and polling tasks on one
/// poller thread, and keeps every task's status.
#[pyclass(
    frozen,
    subclass,
    weakref,
    module = "taskrunner._core",
    name = "Runner"
)]
pub struct Runner {
    engine: Arc<Engine>,
}

impl Drop for Runner {
    /// Like a garbage-collected `ThreadPoolExecutor`: no new tasks, queued
    /// and running ones finish, then the threads leave.
    fn drop(&mut self) {
        Python::attach(|py| self.engine.close(py, false, false));
    }
}

impl Runner {
    fn record(&self, id: u64) -> PyResult<Arc<Record>> {
        self.engine.store.get(id).ok_or_else(|| unknown(id))
    }

    /// The record of an id as Python gives it: an int out of range is
    /// simply an unknown id.
    fn record_of(&self, id: &Bound<'_, PyAny>) -> PyResult<Arc<Record>> {
        match id.extract::<u64>() {
            Ok(id) => self.record(id),
            Err(_) if id.is_instance_of::<PyInt>() => {
                Err(PyKeyError::new_err(format!("no task with id {id}")))
            }
            Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "a task id is an int, got {}",
                id.get_type().name()?
            ))),
        }
    }
}

#[pymethods]
impl Runner {
    #[new]
    #[pyo3(signature = (
        max_workers=None, *, poll=None, max_poll_rate=100_000.0, keep_alive=10.0,
        retain_finished=Some(100_000), retain_seconds=Some(3600.0), run_pending_at_exit=false
    ))]
    #[pyo3(
        text_signature = "(max_workers=None, *, poll=None, max_poll_rate=100000.0, keep_alive=10.0, retain_finished=100000, retain_seconds=3600.0, run_pending_at_exit=False)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_workers: Option<i64>,
        poll: Option<PollPolicy>,
        max_poll_rate: f64,
        keep_alive: f64,
        retain_finished: Option<i64>,
        retain_seconds: Option<f64>,
        run_pending_at_exit: bool,
    ) -> PyResult<Self> {
        let retention = Retention {
            count: match retain_finished {
                None => usize::MAX,
                Some(n) if n >= 0 => n as usize,
                Some(n) => {
                    return Err(PyValueError::new_err(format!(
                        "retain_finished must be >= 0 or None, got {n}"
                    )))
                }
            },
            seconds: match retain_seconds {
                None => f64::INFINITY,
                Some(t) if t >= 0.0 => t,
                Some(t) => {
                    return Err(PyValueError::new_err(format!(
                        "retain_seconds must be >= 0 or None, got {t}"
                    )))
                }
            },
        };
        let max_workers = match max_workers {
            None => DEFAULT_MAX_WORKERS,
            Some(n) if n > 0 => n as usize,
            Some(_) => return Err(PyValueError::new_err("max_workers must be greater than 0")),
        };
        if max_poll_rate.is_nan() || max_poll_rate <= 0.0 {
            return Err(PyValueError::new_err(format!(
                "max_poll_rate must be > 0 (use float('inf') for no budget), got {max_poll_rate}"
            )));
        }
        let config = Config {
            retention,
            run_pending_at_exit,
            max_workers,
            keep_alive: seconds("keep_alive", keep_alive)?,
            policy: poll.unwrap_or_default(),
            max_poll_rate,
        };
        Ok(Runner {
            engine: Engine::new(config),
        })
    }

    /// Starts a task without waiting for it; returns its handle.
    #[pyo3(signature = (task, *, kind=None, timeout=None, name=None, poll=None))]
    fn submit(
        &self,
        py: Python<'_>,
        task: Bound<'_, PyAny>,
        kind: Option<&str>,
        timeout: Option<f64>,
        name: Option<Bound<'_, PyString>>,
        poll: Option<PollPolicy>,
    ) -> PyResult<TaskHandle> {
        let kind = classify(&task, parse_kind(kind)?)?;
        let timeout = match timeout {
            Some(t) if t > 0.0 && t.is_finite() => Some(Duration::from_secs_f64(t)),
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a positive finite number, got {t}"
                )))
            }
            None => None,
        };
        let submission = Submission {
            task,
            kind,
            timeout,
            name,
            policy: poll,
        };
        let record = self.engine.submit(py, submission)?;
        Ok(TaskHandle {
            engine: self.engine.clone(),
            record,
        })
    }

    /// The handle of a task by id.
    fn handle(&self, id: &Bound<'_, PyAny>) -> PyResult<TaskHandle> {
        Ok(TaskHandle {
            engine: self.engine.clone(),
            record: self.record_of(id)?,
        })
    }

    /// The status dict of one task.
    fn status<'py>(&self, py: Python<'py>, id: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        status_dict(py, &*self.record_of(id)?)
    }

    /// Status dicts of every task (or those in `state`), in submit order.
    #[pyo3(signature = (state=None))]
    fn tasks<'py>(&self, py: Python<'py>, state: Option<&str>) -> PyResult<Bound<'py, PyList>> {
        let wanted = state.map(parse_state).transpose()?;
        let list = PyList::empty(py);
        for record in self.engine.store.all() {
            if wanted.is_none_or(|w| record.state() == w) {
                list.append(status_dict(py, &record)?)?;
            }
        }
        Ok(list)
    }

    /// Ids of tasks, newest first, below `before` (a paging cursor), at most `limit`.
    #[pyo3(signature = (state=None, limit=None, before=None))]
    fn ids(
        &self,
        state: Option<&str>,
        limit: Option<usize>,
        before: Option<u64>,
    ) -> PyResult<Vec<u64>> {
        let wanted = state.map(parse_state).transpose()?;
        let limit = limit.unwrap_or(usize::MAX);
        Ok(self
            .engine
            .store
            .all()
            .iter()
            .rev()
            .filter(|r| before.is_none_or(|b| r.id < b))
            .filter(|r| wanted.is_none_or(|w| r.state() == w))
            .take(limit)
            .map(|r| r.id)
            .collect())
    }

    /// The number of tasks in each state.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for state in State::ALL {
            d.set_item(state.as_str(), self.engine.store.count(state))?;
        }
        Ok(d)
    }

    /// Waits for a task and returns its result (or raises its failure).
    #[pyo3(signature = (id, timeout=None))]
    fn result(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        self.handle(id)?.result(py, timeout)
    }

    /// Cancels a pending task or a running polling task.
    fn cancel(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.engine.cancel(py, &self.record_of(id)?))
    }

    /// Forgets a finished task now, releasing its result.
    fn forget(&self, id: &Bound<'_, PyAny>) -> PyResult<()> {
        let record = self.record_of(id)?;
        let id = record.id;
        if !record.state().is_final() {
            return Err(PyValueError::new_err(format!(
                "task {id} is not finished; only finished tasks can be forgotten"
            )));
        }
        drop(self.engine.store.remove(id));
        Ok(())
    }

    /// Waits until `return_when` holds for `ids` (all tasks when None).
    /// Returns the lists (done, not_done).
    #[pyo3(signature = (ids=None, timeout=None, return_when="ALL_COMPLETED"))]
    fn _wait(
        &self,
        py: Python<'_>,
        ids: Option<Vec<u64>>,
        timeout: Option<f64>,
        return_when: &str,
    ) -> PyResult<(Vec<u64>, Vec<u64>)> {
        let condition = match return_when {
            "FIRST_COMPLETED" => WaitFor::First,
            "FIRST_EXCEPTION" => WaitFor::FirstException,
            "ALL_COMPLETED" => WaitFor::All,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "Invalid return condition: {return_when:?}"
                )))
            }
        };
        let deadline = deadline_of(timeout)?;
        // Subscribe before looking at states, so that no completion slips between.
        let sub = self.engine.events.subscribe(false, None);
        let progress = Mutex::new(WaitProgress::default());
        for record in self.records_of(ids)? {
            progress.lock().add(record);
        }
        let on_event = |event: Event| progress.lock().finished(event.id, condition);
        let satisfied = || progress.lock().satisfied(condition);
        wait_until(py, &sub, deadline, on_event, satisfied)?;
        let progress = progress.into_inner();
        Ok((progress.done, progress.pending.into_keys().collect()))
    }

    /// An iterator of ids as their tasks finish (all tasks when None).
    #[pyo3(signature = (ids=None, timeout=None))]
    fn _completions(&self, ids: Option<Vec<u64>>, timeout: Option<f64>) -> PyResult<Completions> {
        let sub = self.engine.events.subscribe(false, None);
        let records = self.records_of(ids)?;
        let total = records.len();
        let (done, pending): (Vec<_>, Vec<_>) =
            records.into_iter().partition(|r| r.state().is_final());
        Ok(Completions {
            sub,
            ready: Mutex::new(done.iter().map(|r| r.id).collect()),
            pending: Mutex::new(pending.iter().map(|r| r.id).collect()),
            deadline: deadline_of(timeout)?,
            total,
        })
    }

    /// A stream of every state change, for dashboards. A consumer that falls
    /// more than `capacity` events behind is flagged `lagged`.
    #[pyo3(signature = (capacity=4096))]
    fn events(&self, capacity: usize) -> EventStream {
        EventStream {
            sub: self.engine.events.subscribe(true, Some(capacity.max(1))),
        }
    }

    /// Stops taking tasks; with `wait`, returns once every task is done and
    /// every thread has exited. Safe to call more than once.
    #[pyo3(signature = (wait=true, *, cancel_pending=false))]
    fn shutdown(&self, py: Python<'_>, wait: bool, cancel_pending: bool) -> PyResult<()> {
        self.engine.close(py, cancel_pending, false);
        if wait {
            self.engine.join(py)?;
        }
        Ok(())
    }

    /// Load figures: workers, queues and polls so far.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let pool = self.engine.pool.stats();
        let d = PyDict::new(py);
        d.set_item("max_workers", self.engine.pool.max_workers)?;
        d.set_item("workers", pool.threads)?;
        d.set_item("workers_busy", pool.busy)?;
        d.set_item("workers_idle", pool.idle)?;
        d.set_item("queued", pool.queued)?;
        d.set_item("polling", self.engine.poller.active.load(Ordering::Relaxed))?;
        d.set_item("poller_queue", self.engine.poller.queue_len())?;
        d.set_item("polls", self.engine.polls.load(Ordering::Relaxed))?;
        d.set_item("unfinished", self.engine.store.unfinished())?;
        Ok(d)
    }

    #[getter]
    fn max_workers(&self) -> usize {
        self.engine.pool.max_workers
    }

    #[getter]
    fn poll(&self) -> PollPolicy {
        self.engine.policy
    }

    #[getter]
    fn max_poll_rate(&self) -> f64 {
        self.engine.max_poll_rate
    }

    /// True once `shutdown` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.engine.is_closed()
    }
}

impl Runner {
    fn records_of(&self, ids: Option<Vec<u64>>) -> PyResult<Vec<Arc<Record>>> {
        match ids {
            None => Ok(self.engine.store.all()),
            Some(ids) => ids.into_iter().map(|id| self.record(id)).collect(),
        }
    }
}

/// One submitted task.
#[pyclass(frozen, weakref, module = "taskrunner._core", name = "TaskHandle")]
pub struct TaskHandle {
    engine: Arc<Engine>,
    record: Arc<Record>,
}

impl TaskHandle {
    pub fn new_py(
        py: Python<'_>,
        engine: Arc<Engine>,
        record: Arc<Record>,
    ) -> PyResult<Py<TaskHandle>> {
        Py::new(py, TaskHandle { engine, record })
    }
}

#[pymethods]
impl TaskHandle {
    #[getter]
    fn id(&self) -> u64 {
        self.record.id
    }

    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyString> {
        self.record.name.clone_ref(py)
    }

    /// The current state's name.
    #[getter]
    fn state(&self) -> &'static str {
        self.record.state().as_str()
    }

    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        status_dict(py, &self.record)
    }

    fn done(&self) -> bool {
        self.record.state().is_final()
    }

    fn running(&self) -> bool {
        self.record.state() == State::Running
    }

    fn cancelled(&self) -> bool {
        self.record.state() == State::Cancelled
    }

    /// Waits for the task; returns its result or raises what it raised
    /// (`CancelledError`, `TaskTimeoutError`), or `TimeoutError` if `timeout`
    /// seconds pass first.
    #[pyo3(signature = (timeout=None))]
    fn result(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        if !wait_record(py, &self.engine, &self.record, timeout)? {
            return Err(wait_timeout_error(self.record.id));
        }
        outcome(py, &self.record)
    }

    /// Waits for the task; returns the exception it failed with, or None.
    #[pyo3(signature = (timeout=None))]
    fn exception(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        if !wait_record(py, &self.engine, &self.record, timeout)? {
            return Err(wait_timeout_error(self.record.id));
        }
        match outcome(py, &self.record) {
            Ok(_) => Ok(None),
            Err(err) if self.record.state() == State::Failed => {
                Ok(Some(err.value(py).clone().into_any().unbind()))
            }
            Err(err) => Err(err),
        }
    }

    fn cancel(&self, py: Python<'_>) -> bool {
        self.engine.cancel(py, &self.record)
    }

    /// Calls `fn(handle)` when the task is done (now, if it already is).
    fn add_done_callback(&self, py: Python<'_>, callback: Bound<'_, PyAny>) -> PyResult<()> {
        if !callback.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "the done callback must be callable",
            ));
        }
        {
            let mut p = self.record.progress.lock();
            if !p.state.is_final() {
                p.callbacks.push(callback.unbind());
                return Ok(());
            }
        }
        self.engine
            .run_callbacks(py, &self.record, vec![callback.unbind()]);
        Ok(())
    }

    /// A `concurrent.futures.Future` that settles with this task.
    fn future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("taskrunner.executor")?
            .call_method1("future_of", (slf,))
    }

    /// Awaiting a handle in asyncio waits for the task without blocking the loop.
    fn __await__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("taskrunner.aio")?
            .call_method1("await_handle", (slf,))
    }

    fn __repr__(&self) -> String {
        format!(
            "<TaskHandle id={} state={}>",
            self.record.id,
            self.record.state().as_str()
        )
    }

    fn __hash__(&self) -> u64 {
        (Arc::as_ptr(&self.engine) as u64) ^ self.record.id.rotate_left(17)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<TaskHandle>().is_ok_and(|o| {
            let o = o.get();
            Arc::ptr_eq(&o.engine, &self.engine) && o.record.id == self.record.id
        })
    }
}

/// Yields task ids as their tasks finish; raises `TimeoutError` at the deadline.
#[pyclass(frozen, module = "taskrunner._core")]
pub struct Completions {
    sub: Subscription,
    ready: Mutex<VecDeque<u64>>,
    pending: Mutex<HashSet<u64>>,
    deadline: Option<Instant>,
    total: usize,
}

#[pymethods]
impl Completions {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        if let Some(id) = self.ready.lock().pop_front() {
            return Ok(Some(id));
        }
        if self.pending.lock().is_empty() {
            return Ok(None);
        }
        let on_event = |Event { id, .. }: Event| {
            if self.pending.lock().remove(&id) {
                self.ready.lock().push_back(id);
                return true;
            }
            false
        };
        if !wait_until(py, &self.sub, self.deadline, on_event, || {
            !self.ready.lock().is_empty()
        })? {
            let left = self.pending.lock().len();
            return Err(PyTimeoutError::new_err(format!(
                "{left} (of {}) tasks unfinished",
                self.total
            )));
        }
        Ok(self.ready.lock().pop_front())
    }
}

/// Every state change of a runner's tasks, as `(id, state)` pairs.
#[pyclass(frozen, module = "taskrunner._core")]
pub struct EventStream {
    sub: Subscription,
}

#[pymethods]
impl EventStream {
    /// Up to `max` pending events, waiting up to `timeout` seconds for the first.
    #[pyo3(signature = (timeout=None, max=1024))]
    fn next_batch(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        max: usize,
    ) -> PyResult<Vec<(u64, &'static str)>> {
        let deadline = deadline_of(timeout)?;
        let max = max.max(1);
        let mut out = Vec::new();
        // The event that ends the wait is the batch's first.
        wait_until(
            py,
            &self.sub,
            deadline,
            |event| {
                out.push((event.id, event.state.as_str()));
                true
            },
            || false,
        )?;
        out.extend(
            self.sub
                .rx
                .try_iter()
                .take(max - out.len())
                .map(|e| (e.id, e.state.as_str())),
        );
        Ok(out)
    }

    /// Whether events were dropped since the last call (the consumer fell behind).
    fn take_lagged(&self) -> bool {
        self.sub.lagged.swap(false, Ordering::Relaxed)
    }
}

/// Declares the kind of a class's instances for automatic classification.
#[pyfunction]
pub fn register_kind(
    py: Python<'_>,
    cls: Bound<'_, pyo3::types::PyType>,
    kind: &str,
) -> PyResult<()> {
    let kind = parse_kind(Some(kind))?.expect("parsed");
    crate::classify::register(py, &cls, kind);
    Ok(())
}

/// The registered kind of a task object, or None when it is not known.
#[pyfunction]
pub fn registered_kind(task: Bound<'_, PyAny>) -> PyResult<Option<&'static str>> {
    Ok(crate::classify::registered_kind(&task)?.map(|k| k.as_str()))
}

/// Ends every runner at interpreter exit: pending and polling tasks are
/// cancelled, running blocking tasks are waited for, threads are joined.
#[pyfunction]
pub fn _shutdown_all(py: Python<'_>) -> PyResult<()> {
    for engine in crate::engine::live_engines() {
        engine.close(py, !engine.run_pending_at_exit, true);
        engine.join(py)?;
    }
    Ok(())
}

/// Called in a forked child: the parent's threads are gone.
#[pyfunction]
pub fn _after_fork_in_child(py: Python<'_>) {
    for engine in crate::engine::live_engines() {
        engine.after_fork(py);
    }
}
