//! taskrunner's Rust core, exposed to Python as `taskrunner._core`.

mod classify;
mod engine;
mod events;
mod handle;
mod policy;
mod poller;
mod pool;
mod record;
mod runner;
mod status;
mod store;
mod wait;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<runner::Runner>()?;
    m.add_class::<handle::TaskHandle>()?;
    m.add_class::<wait::Completions>()?;
    m.add_class::<wait::EventStream>()?;
    m.add_class::<policy::PollPolicy>()?;
    m.add(
        "TaskTimeoutError",
        m.py().get_type::<handle::TaskTimeoutError>(),
    )?;
    m.add_function(wrap_pyfunction!(runner::register_kind, m)?)?;
    m.add_function(wrap_pyfunction!(runner::registered_kind, m)?)?;
    m.add_function(wrap_pyfunction!(runner::_shutdown_all, m)?)?;
    m.add_function(wrap_pyfunction!(runner::_after_fork_in_child, m)?)?;
    m.add("DEFAULT_MAX_WORKERS", runner::DEFAULT_MAX_WORKERS)?;
    Ok(())
}
