//! `Runner`, the Python class over the engine, and the module's functions.

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PySet, PyString};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most often a journal looks for rows past retention.
const MIN_PRUNE_INTERVAL: Duration = Duration::from_millis(100);
/// How long `flush` waits between looks for Ctrl-C.
const FLUSH_STEP: Duration = Duration::from_millis(100);

use crate::classify::CheckedClass;
use crate::engine::{Config, Engine, Listing, Submission};
use crate::handle::TaskHandle;
use crate::journal::{Durability, Filter};
use crate::journaling::Journaling;
use crate::keys::MAX_KEY_BYTES;
use crate::limits::{Limits, Rule};
use crate::policy::PollPolicy;
use crate::record::{unix_now, ErrorInfo, Kind, Outcome, Plan, Record, State};
use crate::retry::Retry;
use crate::status::{stats_dict, status_dict};
use crate::store::Retention;
use crate::wait::{deadline_of, seconds, wait_for, Completions, EventStream, WaitFor};

pub const DEFAULT_MAX_WORKERS: usize = 256;

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

/// The longest `type` label a submit takes, in characters (as a name over HTTP).
const MAX_TYPE_CHARS: usize = 200;

/// `type=` of a submit, checked: 1 to `MAX_TYPE_CHARS` characters.
fn checked_type(label: Option<&str>) -> PyResult<Option<Arc<str>>> {
    match label {
        Some(label) if label.is_empty() || label.chars().count() > MAX_TYPE_CHARS => {
            Err(PyValueError::new_err(format!(
                "type must be a str of 1 to {MAX_TYPE_CHARS} characters, got {} characters",
                label.chars().count()
            )))
        }
        label => Ok(label.map(Arc::from)),
    }
}

/// The most a start time may lie ahead: a year.
const MAX_DELAY_SECONDS: f64 = 365.0 * 86_400.0;

/// The Unix time before which a task does not start: `delay` seconds from
/// now, or `not_before`; None for at once.
fn start_time(delay: Option<f64>, not_before: Option<f64>) -> PyResult<Option<f64>> {
    if delay.is_none() && not_before.is_none() {
        return Ok(None); // most tasks: no clock read (one costs 30 to 45 ns here)
    }
    let now = unix_now();
    let at = match (delay, not_before) {
        (None, None) => unreachable!("returned above"),
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err("give delay or not_before, not both"))
        }
        (Some(d), None) if d.is_finite() && (0.0..=MAX_DELAY_SECONDS).contains(&d) => now + d,
        (Some(d), None) => {
            return Err(PyValueError::new_err(format!(
                "delay must be 0 to {MAX_DELAY_SECONDS} seconds, got {d}"
            )))
        }
        (None, Some(t)) if t.is_finite() && t <= now + MAX_DELAY_SECONDS => t,
        (None, Some(t)) => {
            return Err(PyValueError::new_err(format!(
                "not_before must be a Unix time at most a year ahead, got {t}"
            )))
        }
    };
    Ok((at > now).then_some(at))
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
    checked_class: CheckedClass,
}

impl Drop for Runner {
    /// Like a garbage-collected `ThreadPoolExecutor`: no new tasks, queued
    /// and running ones finish, then the threads leave.
    fn drop(&mut self) {
        Python::attach(|py| self.engine.close(py, false, false));
    }
}

/// An id as Python gives it: an int out of range is simply an unknown id.
fn id_of(id: &Bound<'_, PyAny>) -> PyResult<u64> {
    match id.extract::<u64>() {
        Ok(number) => Ok(number),
        Err(_) if id.is_instance_of::<PyInt>() => {
            Err(PyKeyError::new_err(format!("no task with id {id}")))
        }
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "a task id is an int, got {}",
            id.get_type().name()?
        ))),
    }
}

impl Runner {
    fn record(&self, py: Python<'_>, id: u64) -> PyResult<Arc<Record>> {
        self.engine.record(py, id)?.ok_or_else(|| unknown(id))
    }

    fn handle_of(&self, id: &Bound<'_, PyAny>) -> PyResult<TaskHandle> {
        Ok(self.handle_for(self.record_of(id)?))
    }

    fn handle_for(&self, record: Arc<Record>) -> TaskHandle {
        TaskHandle {
            engine: self.engine.clone(),
            record,
        }
    }

    /// The record of an id as Python gives it: an int out of range is
    /// simply an unknown id.
    fn record_of(&self, id: &Bound<'_, PyAny>) -> PyResult<Arc<Record>> {
        match id.extract::<u64>() {
            Ok(number) => self.record(id.py(), number),
            Err(_) if id.is_instance_of::<PyInt>() => {
                Err(PyKeyError::new_err(format!("no task with id {id}")))
            }
            Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "a task id is an int, got {}",
                id.get_type().name()?
            ))),
        }
    }

    /// What a submit's scheduling options ask for: its plan, and the
    /// records of the tasks it comes after.
    fn plan(
        &self,
        py: Python<'_>,
        retries: Option<Bound<'_, PyAny>>,
        priority: i32,
        after: Option<Bound<'_, PyAny>>,
        limit: Option<&str>,
    ) -> PyResult<(Plan, Vec<Arc<Record>>)> {
        let retry = match retries {
            None => None,
            Some(r) if r.is_instance_of::<Retry>() => Some(r.cast_into::<Retry>()?.unbind()),
            Some(r)
                if r.is_instance_of::<PyInt>() && !r.is_instance_of::<pyo3::types::PyBool>() =>
            {
                Some(Py::new(py, Retry::times(py, r.extract()?)?)?)
            }
            Some(r) => {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "retries takes an int or a taskrunner.Retry, got {}",
                    r.get_type().name()?
                )))
            }
        };
        let mut upstream = Vec::new();
        for item in after.iter().flat_map(|a| a.try_iter()).flatten() {
            let item = item?;
            let record = match item.cast::<TaskHandle>() {
                Ok(handle) => {
                    let handle = handle.get();
                    if !Arc::ptr_eq(&handle.engine, &self.engine) {
                        return Err(PyValueError::new_err(format!(
                            "after: task {} belongs to another runner",
                            handle.record.id
                        )));
                    }
                    handle.record.clone()
                }
                Err(_) => self.record_of(&item)?,
            };
            if !upstream.iter().any(|r: &Arc<Record>| r.id == record.id) {
                upstream.push(record);
            }
        }
        if let Some(after) = &after {
            if upstream.is_empty() && after.try_iter().is_err() {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "after takes a list of task ids or handles",
                ));
            }
        }
        let gate = limit
            .map(|label| self.engine.limits().gate(label))
            .transpose()?;
        let plan = Plan {
            priority,
            limit_label: gate.as_ref().map(|g| g.label.clone()),
            limit: gate,
            retry,
            after: upstream.iter().map(|r| r.id).collect(),
        };
        Ok((plan, upstream))
    }

    /// The state of an id as Python gives it, without taking its record.
    fn state_of(&self, id: &Bound<'_, PyAny>) -> PyResult<State> {
        match id.extract::<u64>() {
            Ok(number) => self
                .engine
                .state_of(id.py(), number)?
                .ok_or_else(|| unknown(number)),
            Err(_) => Ok(self.record_of(id)?.state()), // raises the right error
        }
    }
}

#[pymethods]
impl Runner {
    #[new]
    #[pyo3(signature = (
        max_workers=None, *, poll=None, max_poll_rate=100_000.0, keep_alive=10.0,
        retain_finished=Some(100_000), retain_seconds=Some(3600.0), run_pending_at_exit=false,
        journal=None, durability="normal", journal_batch=0.002, journal_retention=604_800.0,
        recreate=None, handoff=false, limits=None, _recover_elsewhere=false
    ))]
    #[pyo3(
        text_signature = "(max_workers=None, *, poll=None, max_poll_rate=100000.0, keep_alive=10.0, retain_finished=100000, retain_seconds=3600.0, run_pending_at_exit=False, journal=None, durability='normal', journal_batch=0.002, journal_retention=604800.0, recreate=None, handoff=False, limits=None, _recover_elsewhere=False)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        max_workers: Option<i64>,
        poll: Option<PollPolicy>,
        max_poll_rate: f64,
        keep_alive: f64,
        retain_finished: Option<i64>,
        retain_seconds: Option<f64>,
        run_pending_at_exit: bool,
        journal: Option<std::path::PathBuf>,
        durability: &str,
        journal_batch: f64,
        journal_retention: f64,
        recreate: Option<Py<PyAny>>,
        handoff: bool,
        limits: Option<Bound<'_, PyDict>>,
        _recover_elsewhere: bool,
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
        let gates: Limits<Record> = Limits::default();
        for (label, value) in limits.iter().flat_map(|l| l.iter()) {
            let label: String = label.extract().map_err(|_| {
                PyValueError::new_err(format!(
                    "a limit's label is a str, got {}",
                    label.repr().map_or_else(|_| "?".into(), |r| r.to_string())
                ))
            })?;
            drop(gates.set(&label, Rule::from_py(&label, &value)?));
        }
        let journal = match journal {
            None => None,
            Some(path) => {
                let options = journal_options(durability, journal_batch, journal_retention)?;
                Some(Journaling::open(py, &path, options, recreate)?)
            }
        };
        let config = Config {
            retention,
            run_pending_at_exit,
            max_workers,
            keep_alive: seconds("keep_alive", keep_alive)?,
            policy: poll.unwrap_or_default(),
            max_poll_rate,
            switch_interval: switch_interval(py),
            journal,
            handoff,
            recover_elsewhere: _recover_elsewhere,
            limits: gates,
        };
        let engine = Engine::new(config);
        engine.load_history(py);
        engine.warm_up(py);
        engine.recover(py)?;
        Ok(Runner {
            engine,
            checked_class: CheckedClass::default(),
        })
    }

    /// Starts a task without waiting for it; returns its handle.
    #[pyo3(signature = (
        task, *, kind=None, timeout=None, name=None, poll=None, durable=false, recipe=None, key=None,
        retries=None, delay=None, not_before=None, priority=0, after=None, limit=None,
        r#type=None, _elsewhere=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn submit<'py>(
        &self,
        py: Python<'py>,
        task: Bound<'_, PyAny>,
        kind: Option<&str>,
        timeout: Option<f64>,
        name: Option<Bound<'_, PyString>>,
        poll: Option<PollPolicy>,
        durable: bool,
        recipe: Option<Bound<'_, PyAny>>,
        key: Option<String>,
        retries: Option<Bound<'_, PyAny>>,
        delay: Option<f64>,
        not_before: Option<f64>,
        priority: i32,
        after: Option<Bound<'_, PyAny>>,
        limit: Option<&str>,
        r#type: Option<&str>,
        _elsewhere: bool,
    ) -> PyResult<Bound<'py, TaskHandle>> {
        let requested = parse_kind(kind)?;
        let class_name = self.checked_class.name_of(&task)?;
        let kind = match requested {
            Some(kind) => Some(kind),
            None => crate::classify::registered_kind(&task)?,
        };
        let task_type = checked_type(r#type)?;
        // A recipe given as data is kept (`recipe(id)`) with or without a
        // journal; with one, it also makes the task durable.
        let recipe = match (&recipe, durable, self.engine.journal()) {
            (Some(data), _, Some(journal)) => Some(journal.recipe_data(data)?),
            (Some(data), false, None) => Some(crate::journaling::recipe_json(py, data)?),
            (None, true, Some(journal)) => Some(journal.recipe(py, &task)?),
            (_, true, None) => {
                return Err(PyValueError::new_err(
                    "a durable task needs a journal: TaskRunner(journal=PATH)",
                ))
            }
            (None, false, _) => None,
        };
        if let Some(key) = &key {
            if key.is_empty() || key.len() > MAX_KEY_BYTES {
                return Err(PyValueError::new_err(format!(
                    "an idempotency key must be 1 to {MAX_KEY_BYTES} bytes, got {}",
                    key.len()
                )));
            }
        }
        let planned = start_time(delay, not_before)
            .and_then(|at| Ok((at, self.plan(py, retries, priority, after, limit)?)));
        let (not_before, (plan, upstream)) = match planned {
            Ok(planned) => planned,
            // A repeat gets its key's task even when its options no longer
            // hold (a limit not declared since a restart, an `after` task forgotten).
            Err(err) => match key.as_deref().map(|k| self.engine.task_of_key(py, k)) {
                Some(Ok(Some(record))) => {
                    return self.handle_for(record).into_untracked(py);
                }
                _ => return Err(err),
            },
        };
        if _elsewhere && (not_before.is_some() || !plan.is_plain() || !upstream.is_empty()) {
            return Err(PyValueError::new_err(
                "retries, delay, not_before, priority, after and limit do not work on a cluster yet",
            ));
        }
        // A timeout counts from the start time, if there is one.
        let timeout = timeout.map(|t| t + not_before.map_or(0.0, |at| (at - unix_now()).max(0.0)));
        let deadline = match timeout {
            Some(t) if t > 0.0 => deadline_of(Some(t))?,
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a positive number of seconds, got {t}"
                )))
            }
            None => None,
        };
        let submission = Submission {
            task,
            kind,
            deadline,
            name: name.unwrap_or(class_name),
            policy: poll,
            recipe,
            key,
            elsewhere: _elsewhere,
            plan,
            not_before,
            upstream,
            task_type,
        };
        let record = self.engine.submit(py, submission)?;
        self.handle_for(record).into_untracked(py)
    }

    /// The tasks recovered from the journal for a cluster to run (a runner
    /// made with `_recover_elsewhere`): `(handle, task)` each, handed out once.
    fn _take_recovered(&self, py: Python<'_>) -> Vec<(TaskHandle, Option<Py<PyAny>>)> {
        self.engine
            .take_recovered()
            .into_iter()
            .map(|record| {
                let task = record.task(py);
                (self.handle_for(record), task)
            })
            .collect()
    }

    /// Tasks that started on cluster workers: `(id, kind, worker)` each.
    /// Ids no longer known are passed over.
    fn _started_elsewhere(
        &self,
        py: Python<'_>,
        started: Vec<(u64, Option<String>, Bound<'_, PyString>)>,
    ) -> PyResult<()> {
        for (id, kind, worker) in started {
            if let Some(record) = self.engine.record(py, id)? {
                let kind = parse_kind(kind.as_deref())?;
                self.engine.started_elsewhere(&record, kind, worker)?;
            }
        }
        Ok(())
    }

    /// Tasks that ended on cluster workers: `(id, kind, state, result,
    /// error, polls)` each, the error a tuple `(type, message, traceback,
    /// exception)` for a failed one, polls the worker's count. A task
    /// already final stays as it is.
    #[allow(clippy::type_complexity)]
    fn _finished_elsewhere(
        &self,
        py: Python<'_>,
        finished: Vec<(
            u64,
            Option<String>,
            String,
            Py<PyAny>,
            Option<(String, String, String, Py<PyAny>)>,
            u64,
        )>,
    ) -> PyResult<()> {
        for (id, kind, state, result, error, polls) in finished {
            let Some(record) = self.engine.record(py, id)? else {
                continue;
            };
            {
                let mut p = record.progress.lock();
                if !p.state.is_final() {
                    p.polls = polls;
                }
            }
            if let Some(kind) = parse_kind(kind.as_deref())? {
                self.engine.classified(&record, kind);
            }
            let outcome = match (parse_state(&state)?, error) {
                (State::Succeeded, _) => Outcome::Succeeded(result),
                (State::Failed, Some((type_name, message, traceback, exception))) => {
                    Outcome::Failed(ErrorInfo {
                        type_name,
                        message,
                        traceback,
                        exception,
                    })
                }
                (State::Cancelled, _) => Outcome::Cancelled,
                (State::TimedOut, _) => Outcome::TimedOut,
                (other, _) => {
                    return Err(PyValueError::new_err(format!(
                        "task {id} cannot end {}",
                        other.as_str()
                    )))
                }
            };
            self.engine.complete(py, &record, outcome);
        }
        Ok(())
    }

    /// Tasks whose cluster worker was lost run again: back to pending with
    /// the next attempt. Returns `(id, attempt)` for each one not yet final.
    fn _requeue(&self, py: Python<'_>, ids: Vec<u64>) -> PyResult<Vec<(u64, u32)>> {
        let mut requeued = Vec::new();
        for id in ids {
            if let Some(record) = self.engine.record(py, id)? {
                if let Some(attempt) = self.engine.requeue(py, &record) {
                    requeued.push((id, attempt));
                }
            }
        }
        Ok(requeued)
    }

    /// Sets the limit of tasks submitted with `limit=label`: an int (at most
    /// that many run at once; 0 holds them all) or a `Rate`. A new label
    /// is declared; tasks the new limit allows start at once.
    fn set_limit(&self, py: Python<'_>, label: &str, limit: &Bound<'_, PyAny>) -> PyResult<()> {
        let rule = Rule::from_py(label, limit)?;
        self.engine.set_limit(py, label, rule);
        Ok(())
    }

    /// Every limit by label: `{"limit": int or Rate, "running": int,
    /// "waiting": int}` ("running": tasks holding a slot, for an int limit).
    fn limits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let all = PyDict::new(py);
        for gate in self.engine.limits().all() {
            let (rule, holding, waiting) = gate.figures();
            let d = PyDict::new(py);
            match rule {
                Rule::Concurrent(n) => d.set_item("limit", n)?,
                Rule::Rate(rate) => d.set_item("limit", rate)?,
            }
            d.set_item("running", holding)?;
            d.set_item("waiting", waiting)?;
            all.set_item(&*gate.label, d)?;
        }
        Ok(all)
    }

    /// The handle of a task by id.
    fn handle<'py>(&self, id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, TaskHandle>> {
        self.handle_of(id)?.into_untracked(id.py())
    }

    /// True once the task is final; builds no status dict.
    fn done(&self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.state_of(id)?.is_final())
    }

    /// True while the task is pending or running: the drop-in's
    /// `get_task_status`. Builds no status dict.
    fn unfinished(&self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(!self.state_of(id)?.is_final())
    }

    /// The timeline of one task, in memory or known only to the journal:
    /// `{"id", "events", "attempts", "after", "dependents", "again"}` (see
    /// the Python API's docs). `KeyError` for an unknown id.
    fn timeline<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let number = id_of(id)?;
        crate::timeline::timeline(py, &self.engine, number)?.ok_or_else(|| unknown(number))
    }

    /// The recipe given as data at the task's submit (`recipe=`), read back
    /// from its JSON; None for a task submitted without one. `KeyError` for
    /// an unknown id.
    fn recipe<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let record = self.record_of(id)?;
        let Some(text) = record.recipe() else {
            return Ok(None);
        };
        let loads = py.import("json")?.getattr("loads")?;
        loads.call1((text,)).map(Some)
    }

    /// The status dict of one task.
    fn status<'py>(&self, py: Python<'py>, id: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        status_dict(py, &*self.record_of(id)?)
    }

    /// Status dicts of tasks, oldest first: those in `state`, whose name
    /// contains `name`, of `kind`, `type` and `worker`, whose error's type
    /// is named `error`, submitted at or after `since` and before `until`
    /// (Unix seconds), with ids after `after` (a paging cursor), at most
    /// `limit`. With a journal, tasks no longer in memory are listed too.
    #[pyo3(signature = (
        state=None, *, name=None, since=None, until=None, after=None, limit=None, kind=None,
        r#type=None, worker=None, error=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn tasks<'py>(
        &self,
        py: Python<'py>,
        state: Option<&str>,
        name: Option<String>,
        since: Option<f64>,
        until: Option<f64>,
        after: Option<&Bound<'_, PyInt>>,
        limit: Option<&Bound<'_, PyInt>>,
        kind: Option<String>,
        r#type: Option<String>,
        worker: Option<String>,
        error: Option<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        // Below every id, a negative cursor lists them all.
        let after = after.and_then(|a| a.extract::<u64>().ok());
        let labels = Labels {
            kind,
            task_type: r#type,
            worker,
            error_type: error,
        };
        let listing = listing(state, name, since, until, labels, after, false, limit)?;
        let list = PyList::empty(py);
        for record in self.engine.list(py, &listing)? {
            list.append(status_dict(py, &record)?)?;
        }
        Ok(list)
    }

    /// Ids of tasks, newest first, below `before` (a paging cursor), at
    /// most `limit`; filtered as `tasks` filters.
    #[pyo3(signature = (
        state=None, limit=None, before=None, *, name=None, since=None, until=None, kind=None,
        r#type=None, worker=None, error=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn ids(
        &self,
        py: Python<'_>,
        state: Option<&str>,
        limit: Option<&Bound<'_, PyInt>>,
        before: Option<&Bound<'_, PyInt>>,
        name: Option<String>,
        since: Option<f64>,
        until: Option<f64>,
        kind: Option<String>,
        r#type: Option<String>,
        worker: Option<String>,
        error: Option<String>,
    ) -> PyResult<Vec<u64>> {
        // Out-of-range ints mean what they say: no id is below a negative
        // cursor, every id is below a huge one, and a huge limit is no limit.
        if before.is_some_and(|b| b.lt(0).unwrap_or(false)) {
            return Ok(Vec::new());
        }
        let before = before.and_then(|b| b.extract::<u64>().ok());
        let labels = Labels {
            kind,
            task_type: r#type,
            worker,
            error_type: error,
        };
        let listing = listing(state, name, since, until, labels, before, true, limit)?;
        self.engine.list_ids(py, &listing)
    }

    /// The number of tasks in each state.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for state in State::ALL {
            d.set_item(state.as_str(), self.engine.count(state))?;
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
        self.handle_of(id)?.result(py, timeout)
    }

    /// Cancels a pending task or a running polling task.
    fn cancel(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.engine.cancel(py, &self.record_of(id)?))
    }

    /// Forgets a finished task now, releasing its result.
    fn forget(&self, id: &Bound<'_, PyAny>) -> PyResult<()> {
        let record = self.record_of(id)?;
        if !self.engine.forget(&record) {
            return Err(PyValueError::new_err(format!(
                "task {} is not finished; only finished tasks can be forgotten",
                record.id
            )));
        }
        Ok(())
    }

    /// Waits until `return_when` holds for `ids` (all tasks when None).
    /// Returns the sets (done, not_done).
    #[pyo3(signature = (ids=None, timeout=None, return_when="ALL_COMPLETED"))]
    fn _wait<'py>(
        &self,
        py: Python<'py>,
        ids: Option<Vec<Bound<'_, PyAny>>>,
        timeout: Option<f64>,
        return_when: &str,
    ) -> PyResult<(Bound<'py, PySet>, Bound<'py, PySet>)> {
        let condition = WaitFor::parse(return_when)?;
        let deadline = deadline_of(timeout)?;
        let (done, not_done) = wait_for(
            py,
            &self.engine,
            self.records_of(py, ids)?,
            deadline,
            condition,
        )?;
        Ok((PySet::new(py, done)?, PySet::new(py, not_done)?))
    }

    /// An iterator of ids as their tasks finish (all tasks when None).
    #[pyo3(signature = (ids=None, timeout=None))]
    fn _completions(
        &self,
        py: Python<'_>,
        ids: Option<Vec<Bound<'_, PyAny>>>,
        timeout: Option<f64>,
    ) -> PyResult<Completions> {
        Completions::new(
            &self.engine,
            self.records_of(py, ids)?,
            deadline_of(timeout)?,
        )
    }

    /// A stream of every state change, for dashboards. A consumer that falls
    /// more than `capacity` events behind is flagged `lagged`.
    #[pyo3(signature = (capacity=4096))]
    fn events(&self, capacity: usize) -> EventStream {
        EventStream::new(&self.engine, capacity)
    }

    /// Stops taking tasks; with `wait`, returns once every task is done and
    /// every thread has exited. Safe to call more than once.
    #[pyo3(signature = (wait=true, *, cancel_pending=false))]
    fn shutdown(&self, py: Python<'_>, wait: bool, cancel_pending: bool) -> PyResult<()> {
        self.engine.close(py, cancel_pending, false);
        if wait {
            self.engine.join(py)?;
            // Everything is written; the file is free for another runner.
            self.engine.close_journal(py)?;
        }
        Ok(())
    }

    /// Waits until everything written to the journal so far is on disk
    /// (committed at the runner's durability); True at once without a
    /// journal, False if `timeout` seconds passed first.
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let Some(journal) = self.engine.journal() else {
            return Ok(true);
        };
        let deadline = deadline_of(timeout)?;
        loop {
            // In steps, so that Ctrl-C gets through while a disk is stuck.
            let step = match deadline {
                None => FLUSH_STEP,
                Some(d) => d.saturating_duration_since(Instant::now()).min(FLUSH_STEP),
            };
            if journal.flush(py, step) {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }

    /// Writes an audit entry to the journal: a change made through the API
    /// (its route, its task, the name of the token that made it). Returns
    /// False for a runner without a journal.
    #[pyo3(signature = (route, task_id, token_label))]
    fn _audit(&self, route: &str, task_id: Option<u64>, token_label: &str) -> PyResult<bool> {
        match self.engine.journal() {
            Some(journal) => journal.audit(route, task_id, token_label).map(|()| true),
            None => Ok(false),
        }
    }

    /// The journal's file, or None for a runner that keeps tasks in memory only.
    #[getter]
    fn journal(&self) -> Option<String> {
        self.engine.journal().map(Journaling::path)
    }

    /// Load figures: workers, queues and polls so far.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.engine.stats())
    }

    /// Tasks finished per second by final state, and tasks running and
    /// pending, over `window`; runtime percentiles over the last minute,
    /// hour and day (see `GET /api/stats/history`).
    #[pyo3(signature = (window="1h"))]
    fn history<'py>(&self, py: Python<'py>, window: &str) -> PyResult<Bound<'py, PyDict>> {
        let Some(window) = crate::history::Window::parse(window) else {
            return Err(PyValueError::new_err(format!(
                "window must be '1m', '1h' or '1d', got {window:?}"
            )));
        };
        let view = py.detach(|| self.engine.history(window));
        crate::status::history_dict(py, &view)
    }

    #[getter]
    fn max_workers(&self) -> usize {
        self.engine.max_workers()
    }

    #[getter]
    fn poll(&self) -> PollPolicy {
        self.engine.policy()
    }

    #[getter]
    fn max_poll_rate(&self) -> f64 {
        self.engine.max_poll_rate()
    }

    /// True once `shutdown` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.engine.is_closed()
    }

    /// Stops starting tasks until `resume()`: pending tasks wait (blocking
    /// and polling ones, delayed tasks and retries whose time comes), running
    /// ones go on, and submits are still accepted. Does nothing when paused.
    ///
    /// Raises:
    ///     RuntimeError: after shutdown.
    fn pause(&self) -> PyResult<()> {
        self.engine.pause().map(drop)
    }

    /// Starts at once what waited during the pause, in the usual order
    /// (priority, then submit order). Does nothing when not paused.
    fn resume(&self, py: Python<'_>) {
        self.engine.resume(py);
    }

    /// True between `pause()` and `resume()` (or shutdown, which resumes).
    #[getter]
    fn paused(&self) -> bool {
        self.engine.is_paused()
    }
}

impl Runner {
    /// The records of ids and handles (every record when None). A handle of
    /// this runner brings its own record, so waiting on it works even once
    /// its task has been forgotten.
    fn records_of(
        &self,
        py: Python<'_>,
        tasks: Option<Vec<Bound<'_, PyAny>>>,
    ) -> PyResult<Vec<Arc<Record>>> {
        let Some(tasks) = tasks else {
            // Detached: workers go on finishing tasks while this copies.
            return Ok(py.detach(|| self.engine.records()));
        };
        tasks
            .iter()
            .map(|task| match task.cast::<TaskHandle>() {
                Ok(handle) if Arc::ptr_eq(&handle.get().engine, &self.engine) => {
                    Ok(handle.get().record.clone())
                }
                Ok(handle) => self.record(task.py(), handle.get().record.id),
                Err(_) => self.record_of(task),
            })
            .collect()
    }
}

/// The interpreter's GIL switch interval (`sys.getswitchinterval()`).
fn switch_interval(py: Python<'_>) -> std::time::Duration {
    let seconds = py
        .import("sys")
        .and_then(|sys| sys.call_method0("getswitchinterval"))
        .and_then(|v| v.extract::<f64>())
        .unwrap_or(0.005);
    std::time::Duration::try_from_secs_f64(seconds).unwrap_or(std::time::Duration::from_millis(5))
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

/// The first half of interpreter exit: every runner stops taking tasks,
/// pending and polling tasks are cancelled (queued ones run instead with
/// `run_pending_at_exit`). Returns how many tasks are still running, which
/// `_join_all` then waits for.
#[pyfunction]
pub fn _close_all(py: Python<'_>) -> usize {
    let engines = crate::engine::live_engines();
    for engine in &engines {
        engine.exiting();
        engine.close(py, !engine.run_pending_at_exit(), true);
    }
    engines.iter().map(|e| e.unfinished()).sum()
}

/// Waits, interruptibly, up to `timeout` seconds (None: as long as it takes)
/// for every runner's threads to exit; true once they all have.
#[pyfunction]
#[pyo3(signature = (timeout=None))]
pub fn _join_all(py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
    let deadline = deadline_of(timeout)?;
    for engine in crate::engine::live_engines() {
        if !engine.join_until(py, deadline)? {
            return Ok(false);
        }
        if let Err(err) = engine.close_journal(py) {
            // At exit nobody can catch it: say it, and close the others.
            crate::journaling::log(py, "error", &err.value(py).to_string());
        }
    }
    Ok(true)
}

/// Called in a forked child: the parent's threads are gone.
#[pyfunction]
pub fn _after_fork_in_child(py: Python<'_>) {
    for engine in crate::engine::live_engines() {
        engine.after_fork(py);
    }
}

/// The exact-match filters of a listing: kind, type, worker, error type.
#[derive(Default)]
pub struct Labels {
    pub kind: Option<String>,
    pub task_type: Option<String>,
    pub worker: Option<String>,
    pub error_type: Option<String>,
}

/// A listing from the arguments of `tasks` and `ids`.
#[allow(clippy::too_many_arguments)]
pub fn listing(
    state: Option<&str>,
    name: Option<String>,
    since: Option<f64>,
    until: Option<f64>,
    labels: Labels,
    cursor: Option<u64>,
    newest_first: bool,
    limit: Option<&Bound<'_, PyInt>>,
) -> PyResult<Listing> {
    let states = match state {
        Some(state) => vec![parse_state(state)?.as_str().to_owned()],
        None => Vec::new(),
    };
    for (what, time) in [("since", since), ("until", until)] {
        if time.is_some_and(f64::is_nan) {
            return Err(PyValueError::new_err(format!(
                "{what} must be a time, got nan"
            )));
        }
    }
    if let Some(kind) = &labels.kind {
        parse_kind(Some(kind))?;
    }
    let limit = match limit {
        Some(l) if l.lt(0)? => {
            return Err(PyValueError::new_err(format!(
                "limit must be >= 0, got {l}"
            )))
        }
        Some(l) => l.extract::<usize>().unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    Ok(Listing {
        filter: Filter {
            states,
            name_contains: name,
            since,
            until,
            kind: labels.kind,
            task_type: labels.task_type,
            worker: labels.worker,
            error_type: labels.error_type,
        },
        cursor,
        newest_first,
        limit,
    })
}

/// The journal's options from the runner's arguments.
fn journal_options(
    durability: &str,
    batch: f64,
    retention: f64,
) -> PyResult<crate::journal::Options> {
    let durability = match durability {
        "normal" => Durability::Normal,
        "full" => Durability::Full,
        other => {
            return Err(PyValueError::new_err(format!(
                "durability must be 'normal' or 'full', got {other:?}"
            )))
        }
    };
    let retention = seconds("journal_retention", retention)?;
    let defaults = crate::journal::Options::default();
    Ok(crate::journal::Options {
        durability,
        batch_interval: seconds("journal_batch", batch)?,
        retention,
        // A short retention is pruned often enough to bound the file by it.
        prune_interval: (retention / 10).clamp(MIN_PRUNE_INTERVAL, defaults.prune_interval),
        ..defaults
    })
}
