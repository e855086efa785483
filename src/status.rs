//! A record as the status dict that the Python and HTTP APIs share, and the
//! engine's load figures as the stats dict.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString};
use std::sync::OnceLock;

use crate::engine::Stats;
use crate::history::{View, Window, FINAL_STATES};
use crate::journal::Health;
use crate::record::{unix_now, Kind, Record, State};

/// Every key of the status dict, in the order the dict has them: the one
/// list that the Python package, the HTTP API and the dashboard read.
pub const STATUS_KEYS: [&str; 20] = [
    "id",
    "name",
    "kind",
    "state",
    "done",
    "result",
    "error",
    "submitted_at",
    "started_at",
    "finished_at",
    "runtime",
    "polls",
    "attempt",
    "worker",
    "progress",
    "priority",
    "not_before",
    "after",
    "limit",
    "type",
];

/// The status dict's keys, states and kinds as Python strings, made at
/// import (for the reason in `names.rs`): a status dict then makes no string.
struct Interned {
    keys: [Py<PyString>; STATUS_KEYS.len()],
    states: [Py<PyString>; State::ALL.len()],
    kinds: [Py<PyString>; Kind::ALL.len()],
    /// A dict with every key (values None), never handed out: a copy of it
    /// is sized and keyed already, so filling it resizes nothing.
    template: Py<PyDict>,
}

static INTERNED: OnceLock<Interned> = OnceLock::new();

/// Makes the strings: called while the module is imported.
pub fn init(py: Python<'_>) {
    let _ = INTERNED.set(intern_all(py));
}

fn interned() -> &'static Interned {
    INTERNED.get_or_init(|| Python::attach(intern_all))
}

fn intern_all(py: Python<'_>) -> Interned {
    let name = |s: &str| PyString::intern(py, s).unbind();
    let keys = STATUS_KEYS.map(name);
    let template = PyDict::new(py);
    for key in &keys {
        template
            .set_item(key.bind(py), py.None())
            .expect("a dict takes a str key");
    }
    Interned {
        keys,
        states: State::ALL.map(|s| name(s.as_str())),
        kinds: Kind::ALL.map(|k| name(k.as_str())),
        template: template.unbind(),
    }
}

pub fn status_dict<'py>(py: Python<'py>, record: &Record) -> PyResult<Bound<'py, PyDict>> {
    let p = record.progress.lock();
    let (state, kind, started, finished, polls) =
        (p.state, p.kind, p.started_at, p.finished_at, p.polls);
    let attempt = record.attempt + p.reruns;
    let worker = p.worker.as_ref().map(|w| w.clone_ref(py));
    let not_before = p.not_before;
    let report = p.report.clone();
    let result = p.result.as_ref().map(|r| r.clone_ref(py));
    let error = p
        .error
        .as_ref()
        .map(|e| (e.type_name.clone(), e.message.clone(), e.traceback.clone()));
    drop(p);

    let runtime = started.map(|s| finished.unwrap_or_else(unix_now) - s);
    let error = match error {
        None => None,
        Some((type_name, message, traceback)) => {
            let e = PyDict::new(py);
            e.set_item(intern!(py, "type"), type_name)?;
            e.set_item(intern!(py, "message"), message)?;
            e.set_item(intern!(py, "traceback"), traceback)?;
            Some(e)
        }
    };
    let names = interned();
    let values = [
        record.id.into_pyobject(py)?.into_any(),
        record.name.bind(py).clone().into_any(),
        match kind {
            Some(kind) => names.kinds[kind as usize].bind(py).clone().into_any(),
            None => py.None().into_bound(py),
        },
        names.states[state.index()].bind(py).clone().into_any(),
        PyBool::new(py, state.is_final()).to_owned().into_any(),
        result.into_pyobject(py)?.into_any(),
        error.into_pyobject(py)?.into_any(),
        record.submitted_at.into_pyobject(py)?.into_any(),
        started.into_pyobject(py)?.into_any(),
        finished.into_pyobject(py)?.into_any(),
        runtime.into_pyobject(py)?.into_any(),
        polls.into_pyobject(py)?.into_any(),
        attempt.into_pyobject(py)?.into_any(),
        worker.into_pyobject(py)?.into_any(),
        match report {
            None => py.None().into_bound(py),
            Some(report) => {
                let r = PyDict::new(py);
                r.set_item(intern!(py, "fraction"), report.fraction)?;
                r.set_item(intern!(py, "message"), report.message)?;
                r.into_any()
            }
        },
        record.plan().priority.into_pyobject(py)?.into_any(),
        not_before.into_pyobject(py)?.into_any(),
        PyList::new(py, record.plan().after.iter())?.into_any(),
        match &record.plan().limit_label {
            Some(label) => PyString::new(py, label).into_any(),
            None => py.None().into_bound(py),
        },
        match record.task_type() {
            Some(label) => PyString::new(py, label).into_any(),
            None => py.None().into_bound(py),
        },
    ];
    let d = names.template.bind(py).copy()?;
    for (key, value) in names.keys.iter().zip(values) {
        d.set_item(key.bind(py), value)?;
    }
    Ok(d)
}

/// Every key of the stats dict, in order.
pub const STATS_KEYS: [&str; 14] = [
    "max_workers",
    "workers",
    "workers_busy",
    "workers_idle",
    "workers_timed_out",
    "workers_attaching",
    "queued",
    "polling",
    "poller_queue",
    "polls",
    "unfinished",
    "journal",
    "journal_problem",
    "paused",
];

pub fn stats_dict<'py>(py: Python<'py>, stats: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "max_workers"), stats.max_workers)?;
    d.set_item(intern!(py, "workers"), stats.workers)?;
    d.set_item(intern!(py, "workers_busy"), stats.workers_busy)?;
    d.set_item(intern!(py, "workers_idle"), stats.workers_idle)?;
    d.set_item(intern!(py, "workers_timed_out"), stats.workers_timed_out)?;
    d.set_item(intern!(py, "workers_attaching"), stats.workers_attaching)?;
    d.set_item(intern!(py, "queued"), stats.queued)?;
    d.set_item(intern!(py, "polling"), stats.polling)?;
    d.set_item(intern!(py, "poller_queue"), stats.poller_queue)?;
    d.set_item(intern!(py, "polls"), stats.polls)?;
    d.set_item(intern!(py, "unfinished"), stats.unfinished)?;
    // "ok" or "degraded", with why; None (twice) without a journal.
    let (health, problem) = match &stats.journal {
        None => (None, None),
        Some(Health::Ok) => (Some("ok"), None),
        Some(Health::Degraded(why)) => (Some("degraded"), Some(why.as_str())),
    };
    d.set_item(intern!(py, "journal"), health)?;
    d.set_item(intern!(py, "journal_problem"), problem)?;
    d.set_item(intern!(py, "paused"), stats.paused)?;
    Ok(d)
}

/// A history view as `Runner.history` returns it (see `crate::history`).
pub fn history_dict<'py>(py: Python<'py>, view: &View) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("window", view.window)?;
    d.set_item("step", view.step)?;
    d.set_item("at", &view.at)?;
    let finished = PyDict::new(py);
    for (state, series) in FINAL_STATES.iter().zip(&view.finished) {
        finished.set_item(state.as_str(), series)?;
    }
    d.set_item("finished", finished)?;
    d.set_item("running", &view.running)?;
    d.set_item("pending", &view.pending)?;
    let runtime = PyDict::new(py);
    for (window, p) in Window::ALL.iter().zip(&view.runtime) {
        let r = PyDict::new(py);
        r.set_item("count", p.count)?;
        r.set_item("p50", p.p50)?;
        r.set_item("p90", p.p90)?;
        r.set_item("p99", p.p99)?;
        runtime.set_item(window.as_str(), r)?;
    }
    d.set_item("runtime", runtime)?;
    Ok(d)
}
