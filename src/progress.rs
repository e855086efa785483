//! A task's optional `progress()`: whether its class has one, and what it
//! says, normalized to the status dict's `{"fraction", "message"}`.
//!
//! Whether a class has the method is looked up once per class: a lookup
//! that misses raises `AttributeError` inside Python, which would cost a
//! task without the method more than the rest of its submit.

use parking_lot::RwLock;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt, PyType};
use std::cell::Cell;
use std::collections::HashMap;

use crate::names::names;
use crate::record::Report;

/// Classes by address, each with whether it has a callable `progress`.
/// Each entry holds its class, so that an address is never reused by another.
type ByClass = HashMap<usize, (Py<PyType>, bool)>;

static HAS_PROGRESS: RwLock<Option<ByClass>> = RwLock::new(None);

thread_local! {
    /// The last class this thread asked about (its address), and the answer:
    /// a worker mostly runs tasks of one class. The address stays that
    /// class's, since `HAS_PROGRESS` holds every class it was asked about.
    static LAST_ASKED: Cell<(usize, bool)> = const { Cell::new((0, false)) };
}

/// True when `task`'s class has a callable `progress`.
pub fn has_progress(task: &Bound<'_, PyAny>) -> bool {
    let cls = task.get_type();
    let address = cls.as_ptr() as usize;
    let (last, last_has) = LAST_ASKED.get();
    if last == address {
        return last_has;
    }
    let known = HAS_PROGRESS
        .read()
        .as_ref()
        .and_then(|m| m.get(&address).map(|(_, has)| *has));
    if let Some(has) = known {
        LAST_ASKED.set((address, has));
        return has;
    }
    let has = cls
        .getattr(names().progress.bind(task.py()))
        .is_ok_and(|m| m.is_callable());
    HAS_PROGRESS
        .write()
        .get_or_insert_with(HashMap::new)
        .insert(address, (cls.unbind(), has));
    LAST_ASKED.set((address, has));
    has
}

/// Calls `task.progress()` and normalizes what it says: a number is the
/// fraction (kept within [0, 1]; NaN is no fraction), a dict gives
/// `fraction` and `message`, None says nothing.
pub fn read(task: &Bound<'_, PyAny>) -> PyResult<Option<Report>> {
    let said = task.call_method0(names().progress.bind(task.py()))?;
    if said.is_none() {
        return Ok(None);
    }
    if let Ok(d) = said.cast::<PyDict>() {
        let fraction = match d.get_item("fraction")? {
            Some(f) if !f.is_none() => fraction_of(&f)?,
            _ => None,
        };
        let message = match d.get_item("message")? {
            Some(m) if !m.is_none() => Some(m.str()?.to_string()),
            _ => None,
        };
        return Ok(Some(Report { fraction, message }));
    }
    Ok(Some(Report {
        fraction: fraction_of(&said)?,
        message: None,
    }))
}

fn fraction_of(value: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    let is_number = value.is_instance_of::<PyFloat>()
        || (value.is_instance_of::<PyInt>() && !value.is_instance_of::<pyo3::types::PyBool>());
    if !is_number {
        let shown = value
            .repr()
            .map_or_else(|_| "?".to_string(), |r| r.to_string());
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "progress() must give a number in [0, 1], a dict with fraction and message, or None; got {shown}"
        )));
    }
    let x: f64 = value.extract()?;
    Ok((!x.is_nan()).then(|| x.clamp(0.0, 1.0)))
}
