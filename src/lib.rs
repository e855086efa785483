//! taskrunner's Rust core, exposed to Python as `taskrunner._core`.

mod attempts;
mod classify;
mod deadlines;
mod engine;
mod errors;
mod events;
mod fork;
mod growth;
mod handle;
mod history;
mod idmap;
mod journal;
mod journaling;
mod keys;
mod limits;
mod names;
mod policy;
mod poller;
mod pool;
mod progress;
mod queue;
mod record;
mod retry;
mod runner;
mod siblings;
mod status;
mod store;
mod timeline;
mod viewer;
mod wait;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    names::init(m.py());
    status::init(m.py());
    // Made now, not by the first thread to need it (see `names.rs` on fork).
    poller::at_once();
    m.add_class::<runner::Runner>()?;
    m.add_class::<handle::TaskHandle>()?;
    m.add_class::<wait::Completions>()?;
    m.add_class::<wait::EventStream>()?;
    m.add_class::<policy::PollPolicy>()?;
    m.add_class::<retry::Retry>()?;
    m.add_class::<limits::Rate>()?;
    m.add_class::<viewer::JournalView>()?;
    m.add("TaskLost", m.py().get_type::<journaling::TaskLost>())?;
    m.add(
        "JournalError",
        m.py().get_type::<journaling::JournalError>(),
    )?;
    m.add(
        "TaskTimeoutError",
        m.py().get_type::<handle::TaskTimeoutError>(),
    )?;
    m.add_function(wrap_pyfunction!(runner::register_kind, m)?)?;
    m.add_function(wrap_pyfunction!(runner::registered_kind, m)?)?;
    m.add_function(wrap_pyfunction!(runner::_close_all, m)?)?;
    m.add_function(wrap_pyfunction!(runner::_join_all, m)?)?;
    m.add_function(wrap_pyfunction!(runner::_after_fork_in_child, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_MAX_WORKERS", runner::DEFAULT_MAX_WORKERS)?;
    let py = m.py();
    let states = record::State::ALL.map(|s| s.as_str());
    m.add("STATES", PyTuple::new(py, states)?)?;
    m.add(
        "KINDS",
        PyTuple::new(py, record::Kind::ALL.map(|k| k.as_str()))?,
    )?;
    m.add("STATUS_KEYS", PyTuple::new(py, status::STATUS_KEYS)?)?;
    m.add("STATS_KEYS", PyTuple::new(py, status::STATS_KEYS)?)?;
    Ok(())
}
