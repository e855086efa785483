//! `TaskHandle`: one submitted task, in the manner of a `concurrent.futures.Future`.

use pyo3::exceptions::PyTimeoutError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::sync::Arc;

use crate::engine::{run_callbacks, Engine};
use crate::record::{Kind, Record, State};
use crate::status::status_dict;
use crate::wait::wait_record;

pyo3::create_exception!(
    taskrunner,
    TaskTimeoutError,
    pyo3::exceptions::PyException,
    "The task did not finish within its timeout and was ended as timed_out."
);

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
        State::Cancelled if exception.is_some() => Err(PyErr::from_value(
            exception.expect("checked").into_bound(py),
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

/// One submitted task.
#[pyclass(frozen, weakref, module = "taskrunner._core", name = "TaskHandle")]
pub struct TaskHandle {
    pub(crate) engine: Arc<Engine>,
    pub(crate) record: Arc<Record>,
}

impl TaskHandle {
    /// The handle as a Python object the cycle collector leaves alone: it
    /// holds no Python object itself (its task sits behind the record, which
    /// the collector cannot see into), so tracking it would only make each
    /// collection walk it.
    pub fn into_untracked(self, py: Python<'_>) -> PyResult<Bound<'_, TaskHandle>> {
        let handle = Bound::new(py, self)?;
        // SAFETY: the object is alive and its type supports the collector;
        // its dealloc untracks again, which does nothing when untracked.
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(handle.as_ptr().cast()) };
        Ok(handle)
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

    /// "blocking", "polling", or None until known (the status dict's `kind`).
    #[getter]
    fn kind(&self) -> Option<&'static str> {
        self.record.kind().map(Kind::as_str)
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
    pub(crate) fn result(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
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
    fn add_done_callback(slf: &Bound<'_, Self>, callback: Bound<'_, PyAny>) -> PyResult<()> {
        if !callback.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "the done callback must be callable",
            ));
        }
        let handle = slf.clone().into_any().unbind();
        if let Some(now) = slf.get().record.add_callback(callback.unbind(), handle) {
            run_callbacks(slf.py(), vec![now]);
        }
        Ok(())
    }

    /// A `concurrent.futures.Future` that settles with this task.
    fn future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("taskrunner.futures")?
            .call_method1("future_of", (slf,))
    }

    /// Awaiting a handle in asyncio waits for the task without blocking the loop.
    fn __await__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("taskrunner.futures")?
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
