//! Which kind a task is, when the caller does not say: by `isinstance`
//! against classes registered with a kind (the fake tasks are, at import).
//! Tasks of other classes are classified by behaviour on a worker (see
//! `Engine::run_blocking`).

use parking_lot::RwLock;
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::sync::Arc;

use crate::record::Kind;

type Registry = Arc<Vec<(Py<PyType>, Kind)>>;

static KINDS: RwLock<Option<Registry>> = RwLock::new(None);

/// Declares that instances of `cls` (and its subclasses) are of `kind`.
pub fn register(py: Python<'_>, cls: &Bound<'_, PyType>, kind: Kind) {
    let mut entries: Vec<(Py<PyType>, Kind)> = KINDS
        .read()
        .as_ref()
        .map(|r| r.iter().map(|(t, k)| (t.clone_ref(py), *k)).collect())
        .unwrap_or_default();
    entries.retain(|(t, _)| !t.bind(py).is(cls));
    entries.push((cls.clone().unbind(), kind));
    let old = KINDS.write().replace(Arc::new(entries));
    drop(old);
}

/// The registered kind of `task`, if any. Checks the exact type first, which
/// is the common case and costs no Python call.
pub fn registered_kind(task: &Bound<'_, PyAny>) -> PyResult<Option<Kind>> {
    let Some(registry) = KINDS.read().clone() else {
        return Ok(None);
    };
    let py = task.py();
    let task_type = task.get_type();
    if let Some((_, kind)) = registry.iter().find(|(t, _)| task_type.is(t.bind(py))) {
        return Ok(Some(*kind));
    }
    for (cls, kind) in registry.iter() {
        if task.is_instance(cls.bind(py))? {
            return Ok(Some(*kind));
        }
    }
    Ok(None)
}

/// The kind a submit runs with: the caller's word, else the registry's.
/// Refuses an object without callable `run` and `get_output` first.
pub fn classify(task: &Bound<'_, PyAny>, requested: Option<Kind>) -> PyResult<Option<Kind>> {
    check_task_shape(task)?;
    match requested {
        Some(kind) => Ok(Some(kind)),
        None => registered_kind(task),
    }
}

/// True when `task` has callable `run` and `get_output`; a TypeError otherwise.
/// Looks on the class first: reading a method off the instance would make
/// (and free) a bound method each time, a third of a submit's cost. An
/// object whose methods live on the instance alone is checked there.
pub fn check_task_shape(task: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = task.py();
    let task_type = task.get_type();
    for method in [intern!(py, "run"), intern!(py, "get_output")] {
        let callable = |owner: &Bound<'_, PyAny>| {
            owner
                .getattr(method)
                .map(|m| m.is_callable())
                .unwrap_or(false)
        };
        if !callable(task_type.as_any()) && !callable(task) {
            let type_name = task_type
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string());
            return Err(PyTypeError::new_err(format!(
                "a task needs callable run() and get_output() methods; {type_name} object has no callable {method}"
            )));
        }
    }
    Ok(())
}
