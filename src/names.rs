//! Python names the core's own threads look up, interned once at import.
//!
//! A name interned lazily (`intern!`) is initialized by the first thread to
//! need it, behind a once-lock. If `fork()` came while a worker was doing
//! that, the child would wait on the lock forever; names made at import
//! leave nothing to initialize later.

use pyo3::prelude::*;
use pyo3::types::{PyString, PyType};
use std::sync::OnceLock;

pub struct Names {
    pub run: Py<PyString>,
    pub get_output: Py<PyString>,
    pub cancel: Py<PyString>,
    pub progress: Py<PyString>,
    pub traceback: Py<PyString>,
    pub format_exception: Py<PyString>,
    pub logging: Py<PyString>,
    pub get_logger: Py<PyString>,
    pub error: Py<PyString>,
    /// `types.CoroutineType`: what an `async def` method returns.
    pub coroutine: Py<PyType>,
}

static NAMES: OnceLock<Names> = OnceLock::new();

/// The names; made at import (see `init`), or now if the module was not imported.
pub fn names() -> &'static Names {
    NAMES.get_or_init(|| Python::attach(make))
}

/// Makes the names: called while the module is imported.
pub fn init(py: Python<'_>) {
    let _ = NAMES.set(make(py));
}

fn make(py: Python<'_>) -> Names {
    let name = |s: &str| PyString::intern(py, s).unbind();
    Names {
        run: name("run"),
        get_output: name("get_output"),
        cancel: name("cancel"),
        progress: name("progress"),
        traceback: name("traceback"),
        format_exception: name("format_exception"),
        logging: name("logging"),
        get_logger: name("getLogger"),
        error: name("error"),
        coroutine: py
            .import("types")
            .and_then(|types| types.getattr("CoroutineType"))
            .and_then(|t| Ok(t.cast_into::<PyType>()?))
            .expect("types.CoroutineType exists")
            .unbind(),
    }
}

/// True for the coroutine object an `async def` call returns.
pub fn is_coroutine(value: &Bound<'_, PyAny>) -> bool {
    value.get_type().is(names().coroutine.bind(value.py()))
}
