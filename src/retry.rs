//! When a failed task runs again: `Retry`, the policy a submit gives.
//!
//! The wait before attempt `k + 1` is `backoff * 2^(k - 1)` seconds, at most
//! `max_backoff`; with jitter, a random point in its upper half, so that
//! tasks that failed together (one outage) do not all come back together.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest back-off a policy may ask for: a day.
pub const MAX_BACKOFF_LIMIT: f64 = 86_400.0;

/// How a failed task runs again.
#[pyclass(frozen, module = "taskrunner._core")]
pub struct Retry {
    /// The most runs in all, the first included.
    #[pyo3(get)]
    pub attempts: u32,
    #[pyo3(get)]
    pub backoff: f64,
    #[pyo3(get)]
    pub max_backoff: f64,
    #[pyo3(get)]
    pub jitter: bool,
    /// The exception types that call for another attempt.
    #[pyo3(get)]
    pub on: Py<PyTuple>,
}

#[pymethods]
impl Retry {
    #[new]
    #[pyo3(signature = (attempts, *, backoff=1.0, max_backoff=60.0, jitter=true, on=None))]
    fn py_new(
        py: Python<'_>,
        attempts: i64,
        backoff: f64,
        max_backoff: f64,
        jitter: bool,
        on: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if !(1..=i64::from(u32::MAX)).contains(&attempts) {
            return Err(PyValueError::new_err(format!(
                "attempts counts the first run too: it must be >= 1, got {attempts}"
            )));
        }
        for (name, value) in [("backoff", backoff), ("max_backoff", max_backoff)] {
            if !(value.is_finite() && (0.0..=MAX_BACKOFF_LIMIT).contains(&value)) {
                return Err(PyValueError::new_err(format!(
                    "{name} must be 0 to {MAX_BACKOFF_LIMIT} seconds, got {value}"
                )));
            }
        }
        if max_backoff < backoff {
            return Err(PyValueError::new_err(format!(
                "max_backoff ({max_backoff}) must not be below backoff ({backoff})"
            )));
        }
        Ok(Retry {
            attempts: attempts as u32,
            backoff,
            max_backoff,
            jitter,
            on: exception_types(py, on)?,
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Retry({}, backoff={}, max_backoff={}, jitter={}, on={})",
            self.attempts,
            self.backoff,
            self.max_backoff,
            if self.jitter { "True" } else { "False" },
            self.on.bind(py).repr()?
        ))
    }
}

/// `on` as a tuple of exception classes; `(Exception,)` when not given.
fn exception_types(py: Python<'_>, on: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyTuple>> {
    let base = py.get_type::<pyo3::exceptions::PyBaseException>();
    let types = match on {
        None => {
            return Ok(PyTuple::new(py, [py.get_type::<pyo3::exceptions::PyException>()])?.unbind())
        }
        Some(one) if one.is_instance_of::<PyType>() => PyTuple::new(py, [one])?,
        Some(many) => PyTuple::new(py, many.try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
    };
    for cls in types.iter() {
        let is_exception = cls
            .cast::<PyType>()
            .is_ok_and(|t| t.is_subclass(&base).unwrap_or(false));
        if !is_exception {
            return Err(PyTypeError::new_err(format!(
                "on takes exception classes, got {}",
                cls.repr()?
            )));
        }
    }
    Ok(types.unbind())
}

impl Retry {
    /// A policy of `retries` more runs after the first, with the defaults.
    pub fn times(py: Python<'_>, retries: i64) -> PyResult<Retry> {
        if retries < 0 {
            return Err(PyValueError::new_err(format!(
                "retries must be >= 0, got {retries}"
            )));
        }
        Retry::py_new(py, retries.saturating_add(1), 1.0, 60.0, true, None)
    }

    /// True when the failure of attempt `attempt` with `error` calls for another.
    pub fn covers(&self, py: Python<'_>, attempt: u32, error: &PyErr) -> bool {
        attempt < self.attempts && error.is_instance(py, self.on.bind(py).as_any())
    }

    /// The wait after attempt `attempt` failed.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let doubled = self.backoff * 2f64.powi(attempt.saturating_sub(1).min(64) as i32);
        let mut seconds = doubled.min(self.max_backoff);
        if self.jitter {
            seconds *= 0.5 + 0.5 * unit_random();
        }
        Duration::from_secs_f64(seconds)
    }
}

impl Retry {
    /// The policy as the journal keeps it: `attempts backoff max_backoff
    /// jitter on`, `on` as `module:qualname` of each class, comma-separated.
    pub fn to_text(&self, py: Python<'_>) -> PyResult<String> {
        let mut on = Vec::new();
        for cls in self.on.bind(py).iter() {
            let module: String = cls.getattr("__module__")?.extract()?;
            let qualname: String = cls.getattr("__qualname__")?.extract()?;
            on.push(format!("{module}:{qualname}"));
        }
        Ok(format!(
            "{} {} {} {} {}",
            self.attempts,
            self.backoff,
            self.max_backoff,
            u8::from(self.jitter),
            on.join(",")
        ))
    }

    /// The policy `to_text` wrote, its exception classes imported again.
    pub fn from_text(py: Python<'_>, text: &str) -> PyResult<Retry> {
        let bad = || PyValueError::new_err(format!("not a retry policy: {text:?}"));
        let parts: Vec<&str> = text.split(' ').collect();
        let [attempts, backoff, max_backoff, jitter, on] = parts[..] else {
            return Err(bad());
        };
        let mut classes = Vec::new();
        for name in on.split(',').filter(|n| !n.is_empty()) {
            let (module, qualname) = name.split_once(':').ok_or_else(bad)?;
            let mut cls = py.import(module)?.into_any();
            for part in qualname.split('.') {
                cls = cls.getattr(part)?;
            }
            classes.push(cls);
        }
        Retry::py_new(
            py,
            attempts.parse().map_err(|_| bad())?,
            backoff.parse().map_err(|_| bad())?,
            max_backoff.parse().map_err(|_| bad())?,
            jitter == "1",
            Some(PyTuple::new(py, classes)?.into_any()),
        )
    }
}

/// A number in [0, 1): splitmix64 over a counter seeded by the clock. Jitter
/// needs spread, not secrecy.
fn unit_random() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: bool) -> Retry {
        Python::initialize();
        Python::attach(|py| Retry::py_new(py, 5, 0.5, 3.0, jitter, None).unwrap())
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let retry = policy(false);
        let waits: Vec<f64> = (1..=5)
            .map(|a| retry.backoff_after(a).as_secs_f64())
            .collect();
        assert_eq!(waits, vec![0.5, 1.0, 2.0, 3.0, 3.0]);
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let retry = policy(true);
        for _ in 0..1000 {
            let wait = retry.backoff_after(2).as_secs_f64();
            assert!((0.5..=1.0).contains(&wait), "{wait}");
        }
    }
}
