//! Python exceptions as the engine keeps and reports them: a failed task's
//! error record, and user callbacks' exceptions, logged and never raised further.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::names::names;
use crate::record::{ErrorInfo, Outcome};

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
    let names = names();
    // The three-argument form: Python 3.9 has no other.
    let lines = py.import(names.traceback.bind(py))?.call_method1(
        names.format_exception.bind(py),
        (value.get_type(), value, value.getattr("__traceback__")?),
    )?;
    let mut text = String::new();
    for line in lines.try_iter()? {
        text.push_str(&line?.extract::<String>()?);
    }
    Ok(text)
}

/// Logs an exception raised by user code we call back (never raised further).
pub fn log_exception(py: Python<'_>, message: &str, err: PyErr) {
    let logged = (|| -> PyResult<()> {
        let names = names();
        let logger = py
            .import(names.logging.bind(py))?
            .call_method1(names.get_logger.bind(py), ("taskrunner",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", err.value(py))?;
        logger.call_method(
            names.error.bind(py),
            PyTuple::new(py, [message])?,
            Some(&kwargs),
        )?;
        Ok(())
    })();
    if logged.is_err() {
        err.print(py);
    }
}

/// Logs a warning on the `taskrunner` logger.
pub fn log_warning(py: Python<'_>, message: &str) {
    let names = names();
    let logger = py
        .import(names.logging.bind(py))
        .and_then(|logging| logging.call_method1(names.get_logger.bind(py), ("taskrunner",)));
    if let Ok(logger) = logger {
        let _ = logger.call_method1("warning", (message,));
    }
}
