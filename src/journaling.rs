//! The engine's side of the journal (`journal/`, which never touches
//! Python): a record's row, with its result and error encoded through
//! Python's `json` or `pickle`; a finished record back from a row; and the
//! recipe that re-creates a durable task after a crash.
//!
//! Rows are written at three moments: submit, start, end. Start needs no
//! GIL (a worker claims its task detached), so the rows of unfinished tasks
//! are kept here as Rust values, and a change only copies and updates one.

use crate::idmap::IdMap;
use parking_lot::Mutex;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::attempts::{AttemptError, PastAttempt};
use crate::journal::{
    AttemptRow, AuditRow, Encoding, ErrorRow, Filter, Health, Journal, JournalError as StoreError,
    KeyRow, MinuteRow, Options, Page, Schedule, Stored, TaskRow,
};
use crate::record::{ErrorInfo, Kind, Plan, Record, Recorded, State};

pyo3::create_exception!(
    taskrunner,
    JournalError,
    PyOSError,
    "The journal cannot be opened, read or written (its message names the file and why)."
);

pyo3::create_exception!(
    taskrunner,
    TaskLost,
    PyRuntimeError,
    "A task's process ended before the task did, and the task could not be re-created."
);

/// How long a flush at shutdown may take before the runner gives up on it.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(10);
/// How long a listing waits for the last writes to be committed.
const FRESH_WAIT: Duration = Duration::from_secs(1);
/// The origin written in each row: who submitted the task.
const ORIGIN: &str = "library";

/// Logs a change of the journal's health, on a thread of its own: the
/// writer must not wait for the GIL (a thread holding it may be closing
/// the journal, and so waiting for the writer).
fn log_health(path: &str, health: &Health) {
    let (level, message) = match health {
        Health::Ok => ("info", format!("journal {path} writes again")),
        Health::Degraded(reason) => (
            "warning",
            format!(
                "the journal cannot write ({reason}): tasks go on in memory, \
                 and their rows are written once it can"
            ),
        ),
    };
    let _ = std::thread::Builder::new()
        .name("taskrunner-journal-log".into())
        .spawn(move || Python::try_attach(|py| log(py, level, &message)));
}

/// Logs `message` on the `taskrunner.journal` logger at `level` ("info", "error", ...).
pub fn log(py: Python<'_>, level: &str, message: &str) {
    let logger = py
        .import("logging")
        .and_then(|logging| logging.call_method1("getLogger", ("taskrunner.journal",)));
    if let Ok(logger) = logger {
        let _ = logger.call_method1(level, (message,));
    }
}

pub fn journal_error(err: crate::journal::JournalError) -> PyErr {
    JournalError::new_err(err.to_string())
}

/// Python's `json` and `pickle` functions, looked up once at open.
pub struct Codec {
    json_dumps: Py<PyAny>,
    json_loads: Py<PyAny>,
    pickle_dumps: Py<PyAny>,
    pickle_loads: Py<PyAny>,
}

impl Codec {
    pub fn new(py: Python<'_>) -> PyResult<Codec> {
        let json = py.import("json")?;
        let pickle = py.import("pickle")?;
        Ok(Codec {
            json_dumps: json.getattr("dumps")?.unbind(),
            json_loads: json.getattr("loads")?.unbind(),
            pickle_dumps: pickle.getattr("dumps")?.unbind(),
            pickle_loads: pickle.getattr("loads")?.unbind(),
        })
    }

    /// JSON for what JSON gives back equal, else a pickle, else the repr
    /// (flagged as such): storing a result never fails its task.
    fn encode(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> Stored {
        if let Some(text) = plain_json(value) {
            return stored(Encoding::Json, text.into_bytes());
        }
        if let Some(text) = self.json_round_trip(py, value) {
            return stored(Encoding::Json, text.into_bytes());
        }
        if let Ok(bytes) = self.pickle(py, value) {
            return stored(Encoding::Pickle, bytes);
        }
        let repr = value
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| format!("<unrepresentable {}>", type_name(value)));
        stored(Encoding::Repr, repr.into_bytes())
    }

    /// `json.dumps(value)`, if `json.loads` of it equals `value` (a tuple,
    /// for one, comes back a list).
    fn json_round_trip(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> Option<String> {
        let text = self.json_dumps.bind(py).call1((value,)).ok()?;
        let back = self.json_loads.bind(py).call1((&text,)).ok()?;
        let same = back.eq(value).ok()? && back.get_type().is(value.get_type());
        same.then(|| text.extract::<String>().ok()).flatten()
    }

    /// A recipe given as data, as JSON that reads back equal, else `TypeError`.
    fn recipe_data(&self, data: &Bound<'_, PyAny>) -> PyResult<Stored> {
        match self.json_round_trip(data.py(), data) {
            Some(text) => Ok(stored(Encoding::Json, text.into_bytes())),
            None => Err(PyTypeError::new_err(format!(
                "a recipe must be JSON that reads back equal, and this {} is not",
                type_name(data)
            ))),
        }
    }

    fn pickle(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let bytes = self.pickle_dumps.bind(py).call1((value,))?;
        Ok(bytes.cast_into::<PyBytes>()?.as_bytes().to_vec())
    }

    fn decode<'py>(&self, py: Python<'py>, value: &Stored) -> PyResult<Bound<'py, PyAny>> {
        match value.encoding {
            Encoding::Json => {
                let text = std::str::from_utf8(&value.bytes)
                    .map_err(|e| PyValueError::new_err(format!("a stored JSON value: {e}")))?;
                self.json_loads.bind(py).call1((text,))
            }
            Encoding::Pickle => self
                .pickle_loads
                .bind(py)
                .call1((PyBytes::new(py, &value.bytes),)),
            Encoding::Repr => {
                Ok(PyString::new(py, &String::from_utf8_lossy(&value.bytes)).into_any())
            }
        }
    }

    /// A record that stands for a row, as it was when written.
    pub fn record_of(&self, py: Python<'_>, row: &TaskRow) -> PyResult<Record> {
        let state = State::parse(row.state).unwrap_or(State::Failed);
        let result = match &row.result {
            Some(value) => Some(self.decode(py, value)?.unbind()),
            None => None,
        };
        let error = row.error.as_ref().map(|e| error_of(py, e));
        let record = Record::restored(Recorded {
            id: row.id,
            name: PyString::new(py, &row.name).unbind(),
            kind: row.kind.and_then(Kind::parse),
            state,
            submitted_at: row.submitted_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            polls: row.polls,
            attempt: row.attempt,
            result,
            error,
            worker: row.worker.as_deref().map(|w| PyString::new(py, w).unbind()),
            plan: Plan {
                priority: row.schedule.priority,
                limit_label: row.schedule.limit.clone(),
                after: after_ids(row.schedule.after.as_deref()),
                ..Plan::default()
            },
            not_before: row.schedule.not_before.filter(|_| !row.is_final()),
            task_type: row.task_type.clone(),
            recipe: row.recipe.as_deref().and_then(recipe_text),
        });
        Ok(record)
    }
}

/// The text of a recipe given as data (JSON); None for a pickled task.
pub fn recipe_text(recipe: &Stored) -> Option<Box<str>> {
    if recipe.encoding != Encoding::Json {
        return None;
    }
    std::str::from_utf8(&recipe.bytes).ok().map(Box::from)
}

/// A recipe given as data, as JSON text: JSON that reads back equal, else
/// `TypeError`. Kept by the runner with or without a journal.
pub fn recipe_json(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Stored> {
    Codec::new(py)?.recipe_data(data)
}

/// An attempt as the journal keeps it.
fn attempt_row(task_id: u64, past: &PastAttempt) -> AttemptRow {
    AttemptRow {
        task_id,
        attempt: past.attempt,
        started_at: past.started_at,
        ended_at: past.ended_at,
        error: past.error.as_ref().map(|e| ErrorRow {
            type_name: e.type_name.clone(),
            message: e.message.clone(),
            traceback: Some(e.traceback.clone()),
        }),
    }
}

/// An attempt read back from the journal.
fn past_attempt(row: AttemptRow) -> PastAttempt {
    PastAttempt {
        attempt: row.attempt,
        started_at: row.started_at,
        ended_at: row.ended_at,
        error: row.error.map(|e| AttemptError {
            type_name: e.type_name,
            message: e.message,
            traceback: e.traceback.unwrap_or_default(),
        }),
    }
}

/// The attempt a task the last process left unfinished was on: lost with
/// that process, at a moment nobody saw (so it has no end time).
pub fn lost_attempt(row: &TaskRow) -> PastAttempt {
    let message = if row.started_at.is_some() && row.state == State::Running.as_str() {
        "its process ended while this attempt ran; the task ran again when the journal was next opened"
    } else {
        "its process ended before this attempt started; the task ran again when the journal was next opened"
    };
    PastAttempt {
        attempt: row.attempt,
        started_at: row
            .started_at
            .filter(|_| row.state == State::Running.as_str()),
        ended_at: None,
        error: Some(AttemptError::lost(message.into())),
    }
}

/// An error as a row keeps it. The exception itself is gone: one of its
/// type's name and message stands for it.
pub fn error_of(py: Python<'_>, e: &ErrorRow) -> ErrorInfo {
    let exception = if e.type_name == "TaskLost" {
        TaskLost::new_err(e.message.clone())
    } else {
        PyRuntimeError::new_err(format!("{}: {}", e.type_name, e.message))
    };
    ErrorInfo {
        type_name: e.type_name.clone(),
        message: e.message.clone(),
        traceback: e.traceback.clone().unwrap_or_default(),
        exception: exception.into_value(py).into_any(),
    }
}

/// The ids of a row's `after_ids` ("1,2,3"); none for a text not of that form.
pub fn after_ids(text: Option<&str>) -> Vec<u64> {
    text.map(|t| t.split(',').filter_map(|id| id.parse().ok()).collect())
        .unwrap_or_default()
}

/// What a task waits for, as its rows keep it.
pub fn schedule_of(py: Python<'_>, record: &Record) -> PyResult<Schedule> {
    let plan = record.plan();
    let join = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    Ok(Schedule {
        priority: plan.priority,
        not_before: record.progress.lock().not_before,
        limit: plan.limit_label.clone(),
        after: (!plan.after.is_empty()).then(|| Arc::from(join(&plan.after))),
        retry: match &plan.retry {
            Some(retry) => Some(Arc::from(retry.get().to_text(py)?)),
            None => None,
        },
    })
}

fn stored(encoding: Encoding, bytes: Vec<u8>) -> Stored {
    Stored { encoding, bytes }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// JSON text for the exact types JSON holds as they are, made without
/// calling Python: None, bool, int (64-bit), finite float.
fn plain_json(value: &Bound<'_, PyAny>) -> Option<String> {
    if value.is_none() {
        return Some("null".into());
    }
    if value.is_exact_instance_of::<PyBool>() {
        return Some(value.is_truthy().ok()?.to_string());
    }
    if value.is_exact_instance_of::<PyInt>() {
        return value.extract::<i64>().ok().map(|n| n.to_string());
    }
    if value.is_exact_instance_of::<PyFloat>() {
        let x = value.extract::<f64>().ok()?;
        // Debug is the shortest text that reads back the same, with a dot or
        // an exponent, so that JSON reads a float, not an int.
        return x.is_finite().then(|| format!("{x:?}"));
    }
    None
}

/// A task's error as its row keeps it.
fn error_row(error: &ErrorInfo) -> Box<ErrorRow> {
    Box::new(ErrorRow {
        type_name: error.type_name.clone(),
        message: error.message.clone(),
        traceback: Some(error.traceback.clone()),
    })
}

/// The journal of one runner, and the rows of its unfinished tasks.
pub struct Journaling {
    journal: Journal,
    /// The rows of unfinished tasks as last written (less their recipe,
    /// written once), and whether each is durable. Boxed: a flood of
    /// submits grows the map, and moving whole rows at each growth cost
    /// more than the rest of a journaled submit.
    live: Mutex<IdMap<(Box<TaskRow>, bool)>>,
    codec: Codec,
    /// Re-creates a task from a JSON recipe (the runner's `recreate`).
    recreate: Option<Py<PyAny>>,
    /// The process exits (see `Engine::exiting`).
    exiting: AtomicBool,
}

impl Journaling {
    pub fn open(
        py: Python<'_>,
        path: &Path,
        options: Options,
        recreate: Option<Py<PyAny>>,
    ) -> PyResult<Journaling> {
        let codec = Codec::new(py)?;
        let journal = py
            .detach(|| Journal::open(path, options))
            .map_err(journal_error)?;
        let shown = journal.path().display().to_string();
        journal.watch_health(move |health| log_health(&shown, health));
        Ok(Journaling {
            journal,
            live: Mutex::new(IdMap::default()),
            codec,
            recreate,
            exiting: AtomicBool::new(false),
        })
    }

    pub fn next_id(&self) -> u64 {
        self.journal.next_id()
    }

    /// The rows the last process left pending or running.
    pub fn unfinished(&self) -> &[TaskRow] {
        self.journal.unfinished()
    }

    /// A task's recipe: its object, pickled. A task that cannot be pickled
    /// cannot be durable: `TypeError`, naming why.
    pub fn recipe(&self, py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<Stored> {
        match self.codec.pickle(py, task) {
            Ok(bytes) => Ok(stored(Encoding::Pickle, bytes)),
            Err(err) => Err(PyTypeError::new_err(format!(
                "a durable task must be picklable, and this {} is not: {err}",
                type_name(task)
            ))),
        }
    }

    /// A recipe given as data (a JSON-able value, such as an HTTP task's
    /// type and input), which the runner's `recreate` turns back into a task.
    pub fn recipe_data(&self, data: &Bound<'_, PyAny>) -> PyResult<Stored> {
        self.codec.recipe_data(data)
    }

    /// Re-creates a task from its recipe: a pickled task is unpickled, a
    /// recipe given as data goes to the runner's `recreate`.
    pub fn recreate<'py>(&self, py: Python<'py>, recipe: &Stored) -> PyResult<Bound<'py, PyAny>> {
        let value = self.codec.decode(py, recipe)?;
        if recipe.encoding != Encoding::Json {
            return Ok(value);
        }
        match &self.recreate {
            Some(recreate) => recreate.bind(py).call1((value,)),
            None => Err(PyValueError::new_err(
                "its recipe is data, and this runner was given no recreate function",
            )),
        }
    }

    /// A new task (or a recovered one, running again): its first row, with
    /// the idempotency key that started it, if any.
    pub fn submitted(
        &self,
        record: &Record,
        name: Arc<str>,
        recipe: Option<Stored>,
        key: Option<&str>,
        schedule: Schedule,
    ) {
        let mut row = TaskRow::pending(record.id, name, record.submitted_at, ORIGIN);
        row.attempt = record.attempt;
        row.schedule = schedule;
        row.kind = record.kind().map(Kind::as_str);
        row.task_type = record.task_type().cloned();
        self.live
            .lock()
            .insert(record.id, (Box::new(row.clone()), recipe.is_some()));
        row.recipe = recipe.map(Box::new);
        // Refused only as `write` says.
        let _ = match key {
            None => self.journal.write(row),
            Some(key) => {
                let key = KeyRow {
                    key: key.to_owned(),
                    task_id: record.id,
                    at: record.submitted_at,
                };
                self.journal.write_keyed(row, key)
            }
        };
    }

    /// The task an idempotency key started, if the key is committed and
    /// has not expired.
    pub fn task_for_key(&self, key: &str) -> PyResult<Option<u64>> {
        self.journal.lookup_key(key).map_err(journal_error)
    }

    /// A page of rows, oldest or newest first; what is written so far is
    /// committed first (for at most `FRESH_WAIT`).
    pub fn page(
        &self,
        py: Python<'_>,
        filter: &Filter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> PyResult<Page> {
        self.flush(py, FRESH_WAIT);
        py.detach(|| -> Result<Page, StoreError> {
            if newest_first {
                self.journal.page_newest(filter, cursor, limit)
            } else {
                self.journal.page(filter, cursor, limit)
            }
        })
        .map_err(journal_error)
    }

    /// The ids of a page, as `page` finds them, without reading rows.
    pub fn page_ids(
        &self,
        py: Python<'_>,
        filter: &Filter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> PyResult<Vec<u64>> {
        self.flush(py, FRESH_WAIT);
        py.detach(|| self.journal.page_ids(filter, cursor, newest_first, limit))
            .map(|page| page.ids)
            .map_err(journal_error)
    }

    pub fn health(&self) -> Health {
        self.journal.health()
    }

    /// A task the last process left unfinished runs again: its row, at
    /// the next attempt (the recipe stays in the file).
    pub fn resubmitted(&self, record: &Record, last: &TaskRow) {
        let mut row = TaskRow::pending(record.id, last.name.clone(), last.submitted_at, ORIGIN);
        row.origin = last.origin.clone();
        row.attempt = record.attempt;
        row.kind = last.kind;
        row.schedule = last.schedule.clone();
        row.task_type = last.task_type.clone();
        self.live
            .lock()
            .insert(record.id, (Box::new(row.clone()), true));
        self.write(row);
    }

    /// A copy of the live row of task `id`, if it is unfinished.
    fn live_row(&self, id: u64) -> Option<TaskRow> {
        self.live.lock().get(&id).map(|(row, _)| (**row).clone())
    }

    pub fn begin_exit(&self) {
        self.exiting.store(true, Ordering::Release);
    }

    /// A task started (or was classified): needs no GIL.
    pub fn started(&self, record: &Record) {
        let Some(mut row) = self.live_row(record.id) else {
            return;
        };
        let p = record.progress.lock();
        row.state = p.state.as_str();
        row.kind = p.kind.map(Kind::as_str);
        row.started_at = p.started_at;
        row.attempt = record.attempt + p.reruns;
        row.schedule.not_before = None;
        drop(p);
        self.write(row);
    }

    /// A task whose run failed waits to run again: pending, at its next
    /// attempt, with the error of the last one.
    pub fn retrying(&self, record: &Record) {
        let Some(mut row) = self.live_row(record.id) else {
            return;
        };
        let p = record.progress.lock();
        row.state = p.state.as_str();
        row.kind = p.kind.map(Kind::as_str);
        row.polls = p.polls;
        row.attempt = record.attempt + p.reruns;
        row.schedule.not_before = p.not_before;
        row.error = p.error.as_deref().map(error_row);
        let ended = crate::attempts::Trail::attempts_in(&p.trail)
            .last()
            .cloned();
        drop(p);
        self.write(row);
        if let Some(ended) = ended {
            self.write_attempt(record.id, &ended);
        }
    }

    /// The attempt a task just left behind (its worker was lost): the last
    /// of its trail.
    pub fn attempt_ended(&self, record: &Record) {
        let p = record.progress.lock();
        let ended = crate::attempts::Trail::attempts_in(&p.trail)
            .last()
            .cloned();
        drop(p);
        if let Some(ended) = ended {
            self.write_attempt(record.id, &ended);
        }
    }

    /// Writes one past attempt of task `id`.
    pub fn write_attempt(&self, id: u64, past: &PastAttempt) {
        // Refused only as `write` says.
        let _ = self.journal.write_attempt(attempt_row(id, past));
    }

    /// The attempts task `id` made before its last one, as committed.
    pub fn past_attempts(&self, py: Python<'_>, id: u64) -> PyResult<Vec<PastAttempt>> {
        let rows = py
            .detach(|| self.journal.attempts(id))
            .map_err(journal_error)?;
        Ok(rows.into_iter().map(past_attempt).collect())
    }

    /// The tasks that start after task `id`, as committed; with `fresh`,
    /// once what is written so far is (for at most `FRESH_WAIT`).
    pub fn dependents(&self, py: Python<'_>, id: u64, fresh: bool) -> PyResult<Vec<u64>> {
        if fresh {
            self.flush(py, FRESH_WAIT);
        }
        py.detach(|| self.journal.dependents(id))
            .map_err(journal_error)
    }

    /// A task started on a cluster worker (its attempt counts the reruns
    /// after lost workers); the worker stays in the task's later rows.
    pub fn started_on(&self, record: &Record, worker: Arc<str>) {
        let mut row = {
            let mut live = self.live.lock();
            let Some((row, _)) = live.get_mut(&record.id) else {
                return;
            };
            row.worker = Some(worker);
            (**row).clone()
        };
        let p = record.progress.lock();
        row.state = p.state.as_str();
        row.kind = p.kind.map(Kind::as_str);
        row.started_at = p.started_at;
        row.attempt = record.attempt + p.reruns;
        drop(p);
        self.write(row);
    }

    /// A task ended: its last row, with its result or error.
    pub fn finished(&self, py: Python<'_>, record: &Record) {
        let Some((row, durable)) = self.live.lock().remove(&record.id) else {
            return;
        };
        let mut row = *row;
        let p = record.progress.lock();
        if durable && p.state == State::Cancelled && self.exiting.load(Ordering::Acquire) {
            return; // cancelled by the exit: it runs again next time
        }
        row.state = p.state.as_str();
        row.kind = p.kind.map(Kind::as_str);
        row.started_at = p.started_at;
        row.finished_at = p.finished_at;
        row.polls = p.polls;
        row.attempt = record.attempt + p.reruns;
        let result = p.result.as_ref().map(|r| r.clone_ref(py));
        row.error = p.error.as_deref().map(error_row);
        drop(p);
        row.result = result.map(|value| self.codec.encode(py, value.bind(py)));
        self.write(row);
    }

    /// A task the last process left unfinished that cannot run again.
    pub fn lost(&self, row: &TaskRow, why: &str) {
        let mut row = row.clone();
        row.state = State::Failed.as_str();
        row.finished_at = Some(crate::record::unix_now());
        row.error = Some(Box::new(ErrorRow {
            type_name: "TaskLost".into(),
            message: format!("its process ended before it finished{why}"),
            traceback: None,
        }));
        row.recipe = None;
        self.write(row);
    }

    /// Records a change made through the API: its route, its task, and the
    /// name of the token that made it.
    pub fn audit(&self, route: &str, task_id: Option<u64>, token_label: &str) -> PyResult<()> {
        let row = AuditRow {
            at: crate::record::unix_now(),
            route: route.to_owned(),
            task_id,
            token_label: Some(token_label.to_owned()),
        };
        self.journal
            .write_audit(row)
            .map(drop)
            .map_err(journal_error)
    }

    fn write(&self, row: TaskRow) {
        // Refused only for a row that could never be stored, or after close:
        // the journal's health says why, and the task itself goes on.
        let _ = self.journal.write(row);
    }

    /// The history's minutes from `since` (Unix seconds) on, oldest first.
    pub fn minutes(&self, since: i64) -> Result<Vec<MinuteRow>, StoreError> {
        self.journal.minutes(since)
    }

    /// Writes one minute of history; refused only after close.
    pub fn write_minute(&self, minute: MinuteRow) {
        let _ = self.journal.write_minute(minute);
    }

    /// A finished task read back from the journal, as a record.
    pub fn restored(&self, py: Python<'_>, id: u64) -> PyResult<Option<Record>> {
        let read = || self.journal.get(id);
        let mut row = py.detach(read).map_err(journal_error)?;
        if !row.as_ref().is_some_and(TaskRow::is_final) {
            // A task no longer in memory has ended: its last row is on its
            // way to the file. Read what this process wrote, not what was.
            self.flush(py, CLOSE_FLUSH);
            row = py.detach(read).map_err(journal_error)?;
        }
        row.map(|row| self.record_of(py, &row)).transpose()
    }

    /// A record that stands for a row: final, as it was when written.
    pub fn record_of(&self, py: Python<'_>, row: &TaskRow) -> PyResult<Record> {
        self.codec.record_of(py, row)
    }

    /// Waits (detached) until every row so far is committed; false on timeout.
    pub fn flush(&self, py: Python<'_>, timeout: Duration) -> bool {
        py.detach(|| self.journal.flush(timeout))
    }

    pub fn path(&self) -> String {
        self.journal.path().display().to_string()
    }

    /// In a forked child: closes this process's copy of the lock file.
    pub fn forget_owner_in_child(&self) {
        self.journal.forget_owner_in_child();
    }

    /// Flushes and closes the file; idempotent.
    pub fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.journal.close()).map_err(journal_error)
    }
}
