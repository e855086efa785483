//! A record as the status dict that the Python and HTTP APIs share, and the
//! engine's load figures as the stats dict.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::engine::Stats;
use crate::record::{unix_now, Record};

/// Every key of the status dict, in the order the dict has them: the one
/// list that the Python package, the HTTP API and the dashboard read.
pub const STATUS_KEYS: [&str; 12] = [
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
];

pub fn status_dict<'py>(py: Python<'py>, record: &Record) -> PyResult<Bound<'py, PyDict>> {
    let p = record.progress.lock();
    let (state, kind, started, finished, polls) =
        (p.state, p.kind, p.started_at, p.finished_at, p.polls);
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
    let d = PyDict::new(py);
    d.set_item(intern!(py, "id"), record.id)?;
    d.set_item(intern!(py, "name"), record.name.bind(py))?;
    d.set_item(intern!(py, "kind"), kind.map(|k| k.as_str()))?;
    d.set_item(intern!(py, "state"), state.as_str())?;
    d.set_item(intern!(py, "done"), state.is_final())?;
    d.set_item(intern!(py, "result"), result)?;
    d.set_item(intern!(py, "error"), error)?;
    d.set_item(intern!(py, "submitted_at"), record.submitted_at)?;
    d.set_item(intern!(py, "started_at"), started)?;
    d.set_item(intern!(py, "finished_at"), finished)?;
    d.set_item(intern!(py, "runtime"), runtime)?;
    d.set_item(intern!(py, "polls"), polls)?;
    Ok(d)
}

/// Every key of the stats dict, in order.
pub const STATS_KEYS: [&str; 10] = [
    "max_workers",
    "workers",
    "workers_busy",
    "workers_idle",
    "workers_timed_out",
    "queued",
    "polling",
    "poller_queue",
    "polls",
    "unfinished",
];

pub fn stats_dict<'py>(py: Python<'py>, stats: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "max_workers"), stats.max_workers)?;
    d.set_item(intern!(py, "workers"), stats.workers)?;
    d.set_item(intern!(py, "workers_busy"), stats.workers_busy)?;
    d.set_item(intern!(py, "workers_idle"), stats.workers_idle)?;
    d.set_item(intern!(py, "workers_timed_out"), stats.workers_timed_out)?;
    d.set_item(intern!(py, "queued"), stats.queued)?;
    d.set_item(intern!(py, "polling"), stats.polling)?;
    d.set_item(intern!(py, "poller_queue"), stats.poller_queue)?;
    d.set_item(intern!(py, "polls"), stats.polls)?;
    d.set_item(intern!(py, "unfinished"), stats.unfinished)?;
    Ok(d)
}
