//! When to call `get_output()` next: the poll back-off policy.
//!
//! A task that has been running for `t` seconds is polled again after
//! `ratio * t`, kept within `[min_interval, max_interval]`. Completion is
//! therefore noticed within a fixed fraction of a task's runtime, and a
//! long task costs `O(log t)` polls until `max_interval` takes over.
//! The runner stretches intervals further when many tasks are polled at
//! once, so that all of them together stay under its poll-rate budget.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::time::Duration;

/// The longest interval between two polls a policy may ask for.
pub const MAX_INTERVAL_LIMIT: f64 = 86_400.0;

/// Per-task back-off parameters (seconds).
#[pyclass(frozen, from_py_object, module = "taskrunner._core")]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PollPolicy {
    #[pyo3(get)]
    pub min_interval: f64,
    #[pyo3(get)]
    pub max_interval: f64,
    #[pyo3(get)]
    pub ratio: f64,
}

#[pymethods]
impl PollPolicy {
    #[new]
    #[pyo3(signature = (min_interval=0.001, max_interval=1.0, ratio=0.03))]
    fn py_new(min_interval: f64, max_interval: f64, ratio: f64) -> PyResult<Self> {
        let policy = PollPolicy {
            min_interval,
            max_interval,
            ratio,
        };
        policy.validate().map_err(PyValueError::new_err)?;
        Ok(policy)
    }

    fn __repr__(&self) -> String {
        format!(
            "PollPolicy(min_interval={}, max_interval={}, ratio={})",
            self.min_interval, self.max_interval, self.ratio
        )
    }

    fn __eq__(&self, other: &Self) -> bool {
        self == other
    }
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            min_interval: 0.001,
            max_interval: 1.0,
            ratio: 0.03,
        }
    }
}

impl PollPolicy {
    /// Checks the parameters, returning a message naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a positive finite number, got {v}"))
            }
        };
        positive("min_interval", self.min_interval)?;
        positive("max_interval", self.max_interval)?;
        if self.max_interval > MAX_INTERVAL_LIMIT {
            return Err(format!(
                "max_interval must be at most {MAX_INTERVAL_LIMIT} s (a day), got {}",
                self.max_interval
            ));
        }
        if !(self.ratio.is_finite() && self.ratio >= 0.0) {
            return Err(format!(
                "ratio must be a finite number >= 0, got {}",
                self.ratio
            ));
        }
        if self.min_interval > self.max_interval {
            return Err(format!(
                "min_interval ({}) must not exceed max_interval ({})",
                self.min_interval, self.max_interval
            ));
        }
        Ok(())
    }

    /// The wait before the next poll of a task that has run for `elapsed`,
    /// given a floor imposed by the runner's poll-rate budget.
    pub fn next_interval(&self, elapsed: Duration, load_floor: Duration) -> Duration {
        let own = (elapsed.as_secs_f64() * self.ratio).clamp(self.min_interval, self.max_interval);
        Duration::from_secs_f64(own).max(load_floor)
    }
}

/// The smallest interval that keeps `active` polled tasks within `max_rate`
/// polls per second in aggregate.
pub fn load_floor(active: usize, max_rate: f64) -> Duration {
    if max_rate <= 0.0 || !max_rate.is_finite() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64((active as f64 / max_rate).min(MAX_INTERVAL_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn interval_grows_with_elapsed_time() {
        let p = PollPolicy::default();
        let early = p.next_interval(secs(0.01), Duration::ZERO);
        let later = p.next_interval(secs(2.0), Duration::ZERO);
        assert_eq!(early, secs(0.001));
        assert!((later.as_secs_f64() - 0.06).abs() < 1e-9);
    }

    #[test]
    fn interval_is_capped() {
        let p = PollPolicy::default();
        assert_eq!(p.next_interval(secs(3600.0), Duration::ZERO), secs(1.0));
    }

    #[test]
    fn load_floor_stretches_intervals() {
        let p = PollPolicy::default();
        let floor = load_floor(10_000, 100_000.0);
        assert!((floor.as_secs_f64() - 0.1).abs() < 1e-9);
        assert_eq!(p.next_interval(secs(0.5), floor), floor);
    }

    #[test]
    fn no_budget_means_no_floor() {
        assert_eq!(load_floor(10, 0.0), Duration::ZERO);
        assert_eq!(load_floor(10, f64::INFINITY), Duration::ZERO);
    }

    #[test]
    fn polls_of_a_long_task_grow_logarithmically() {
        let p = PollPolicy::default();
        let (mut t, mut polls) = (0.0, 0);
        while t < 2.0 {
            t += p.next_interval(secs(t), Duration::ZERO).as_secs_f64();
            polls += 1;
        }
        assert!(polls < 200, "{polls} polls for a 2 s task");
    }

    #[test]
    fn validation_names_the_bad_field() {
        let bad = PollPolicy {
            min_interval: -1.0,
            ..PollPolicy::default()
        };
        assert!(bad.validate().unwrap_err().contains("min_interval"));
        let inverted = PollPolicy {
            min_interval: 2.0,
            max_interval: 1.0,
            ratio: 0.1,
        };
        assert!(inverted.validate().unwrap_err().contains("must not exceed"));
        assert!(PollPolicy::default().validate().is_ok());
    }
}
