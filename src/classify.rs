//! Which kind a task is, when the caller does not say: by `isinstance`
//! against classes registered with a kind (the fake tasks are, at import).
//! Tasks of other classes are classified by behaviour on a worker (see
//! `Engine::run_blocking`).

use parking_lot::{Mutex, RwLock};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyType};
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

/// Whether `task` has callable `run` and `get_output` (a TypeError if not):
/// true when its class has them, false when only the object itself does.
/// Looks on the class first: reading a method off the instance would make
/// (and free) a bound method each time, a third of a submit's cost.
pub fn check_task_shape(task: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = task.py();
    let task_type = task.get_type();
    let mut class_alone = true;
    for method in [intern!(py, "run"), intern!(py, "get_output")] {
        let callable = |owner: &Bound<'_, PyAny>| {
            owner
                .getattr(method)
                .map(|m| m.is_callable())
                .unwrap_or(false)
        };
        if callable(task_type.as_any()) {
            continue;
        }
        class_alone = false;
        if !callable(task) {
            let type_name = task_type
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string());
            return Err(PyTypeError::new_err(format!(
                "a task needs callable run() and get_output() methods; {type_name} object has no callable {method}"
            )));
        }
    }
    Ok(class_alone)
}

/// The class a runner last took a task of, checked, and its name: a loop
/// submitting tasks of one class looks up `run`, `get_output` and
/// `__name__` once rather than for each task (a tenth of a submit). A class
/// changed after its check (a method deleted) is not checked again; its
/// tasks then fail when they run, saying what is missing.
#[derive(Default)]
pub struct CheckedClass(Mutex<Option<(Py<PyType>, Py<PyString>)>>);

impl CheckedClass {
    /// Refuses a task without callable `run` and `get_output` (see
    /// `check_task_shape`); returns the name of its class.
    pub fn name_of<'py>(&self, task: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
        let py = task.py();
        let class = task.get_type();
        if let Some((checked, name)) = &*self.0.lock() {
            if class.is(checked.bind(py)) {
                return Ok(name.bind(py).clone());
            }
        }
        let class_alone = check_task_shape(task)?;
        let name = class.name()?.cast_into::<PyString>()?;
        if class_alone {
            let old = self
                .0
                .lock()
                .replace((class.unbind(), name.clone().unbind()));
            drop(old); // outside the lock: freeing a class may run Python code
        }
        Ok(name)
    }
}
