//! When to call `get_output()` next: the poll back-off policy.
//!
//! A task that has been running for `t` seconds is polled again after
//! `ratio * t`, kept within `[min_interval, max_interval]`. Completion is
//! therefore noticed within a fixed fraction of a task's runtime, and a
//! long task costs `O(log t)` polls until `max_interval` takes over.
//! The runner stretches intervals further when many tasks are polled at
//! once, so that all of them together stay under its poll-rate budget. The
//! budget follows how often the tasks ask to be polled, not how many there
//! are (`Demand`): 10,000 old tasks polled once a second leave the rest of
//! the budget to a new task that asks for a poll every millisecond.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
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
    /// `get_output()` calls in a row that may raise before the task fails:
    /// each is logged and polled again, as if it had answered None.
    #[pyo3(get)]
    pub errors: u32,
}

#[pymethods]
impl PollPolicy {
    #[new]
    #[pyo3(signature = (min_interval=0.001, max_interval=1.0, ratio=0.03, *, errors=0))]
    fn py_new(min_interval: f64, max_interval: f64, ratio: f64, errors: i64) -> PyResult<Self> {
        let errors = u32::try_from(errors).map_err(|_| {
            PyValueError::new_err(format!("errors must be 0 to {}, got {errors}", u32::MAX))
        })?;
        let policy = PollPolicy {
            min_interval,
            max_interval,
            ratio,
            errors,
        };
        policy.validate().map_err(PyValueError::new_err)?;
        Ok(policy)
    }

    fn __repr__(&self) -> String {
        format!(
            "PollPolicy(min_interval={}, max_interval={}, ratio={}, errors={})",
            self.min_interval, self.max_interval, self.ratio, self.errors
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
            errors: 0,
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
    /// by the policy alone (the runner's budget may stretch it).
    pub fn own_interval(&self, elapsed: Duration) -> Duration {
        let own = (elapsed.as_secs_f64() * self.ratio).clamp(self.min_interval, self.max_interval);
        Duration::from_secs_f64(own)
    }

    /// The wait before the next poll, given a floor imposed by the budget
    /// (the engine takes the two apart, as it also files the own interval).
    #[cfg(test)]
    pub fn next_interval(&self, elapsed: Duration, load_floor: Duration) -> Duration {
        self.own_interval(elapsed).max(load_floor)
    }
}

/// Intervals by powers of two of microseconds: bucket k holds the tasks
/// whose own interval is in [2^k, 2^(k+1)) us (up to a day: 2^37 us).
const BUCKETS: usize = 38;

/// A task in no bucket (not polled, or ended).
pub const NO_BUCKET: u8 = u8::MAX;

pub fn bucket_of(interval: Duration) -> u8 {
    let micros = interval.as_micros().clamp(1, 1 << (BUCKETS - 1));
    (127 - micros.leading_zeros()) as u8
}

/// How often the polling tasks ask to be polled: how many own an interval
/// in each bucket. Kept up to date as tasks are rescheduled and end.
pub struct Demand {
    buckets: [AtomicUsize; BUCKETS],
}

impl Default for Demand {
    fn default() -> Self {
        Demand {
            buckets: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }
}

impl Demand {
    /// A task's own interval is now in bucket `to` (`NO_BUCKET`: it ended);
    /// `at` remembers where it was.
    pub fn place(&self, at: &AtomicU8, to: u8) {
        let from = at.swap(to, Ordering::AcqRel);
        if from == to {
            return;
        }
        if let Some(bucket) = self.buckets.get(usize::from(from)) {
            bucket.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(bucket) = self.buckets.get(usize::from(to)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The smallest interval that keeps all polls within `max_rate` per
    /// second, counting each task at the rate it asks for: a task whose
    /// own interval is longer than the floor costs only its own rate, and
    /// the rest share what is left.
    pub fn floor(&self, max_rate: f64) -> Duration {
        if max_rate <= 0.0 || !max_rate.is_finite() {
            return Duration::ZERO;
        }
        let counts = self
            .buckets
            .each_ref()
            .map(|b| b.load(Ordering::Relaxed) as f64);
        let total: f64 = counts.iter().sum();
        let (mut fast, mut slow_rate) = (total, 0.0);
        for (k, &n) in counts.iter().enumerate().rev() {
            if n == 0.0 {
                continue;
            }
            // The bucket's shortest interval: its tasks ask for no more than that.
            let shortest = (1u64 << k) as f64 * 1e-6;
            let spare = max_rate - (slow_rate + n / shortest);
            if spare <= 0.0 || shortest < (fast - n) / spare {
                break;
            }
            slow_rate += n / shortest;
            fast -= n;
        }
        if fast <= 0.0 {
            return Duration::ZERO;
        }
        let spare = max_rate - slow_rate;
        if spare <= 0.0 {
            return load_floor(total as usize, max_rate);
        }
        Duration::from_secs_f64((fast / spare).min(MAX_INTERVAL_LIMIT))
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

    fn demand(tasks: &[(usize, Duration)]) -> Demand {
        let demand = Demand::default();
        for &(n, interval) in tasks {
            for _ in 0..n {
                demand.place(&AtomicU8::new(NO_BUCKET), bucket_of(interval));
            }
        }
        demand
    }

    #[test]
    fn tasks_that_all_ask_alike_share_the_budget_evenly() {
        let floor = demand(&[(10_000, secs(0.06))]).floor(100_000.0);
        assert_eq!(floor, load_floor(10_000, 100_000.0));
    }

    #[test]
    fn slow_old_tasks_leave_the_budget_to_a_young_one() {
        // 10,000 tasks polled about every 0.5 s ask for about 20,000 polls a
        // second (counted at their bucket's shortest interval, 0.26 s:
        // 38,000); the young ones share the rest, instead of 0.1 s each.
        let floor = demand(&[(10_000, secs(0.5)), (100, secs(0.001))]).floor(100_000.0);
        let expected = 100.0 / (100_000.0 - 10_000.0 / 0.262_144);
        assert!((floor.as_secs_f64() - expected).abs() < 1e-6, "{floor:?}");
        assert!(floor < secs(0.002));
    }

    #[test]
    fn within_the_budget_there_is_no_floor() {
        assert_eq!(
            demand(&[(50, secs(0.001))]).floor(100_000.0),
            Duration::ZERO
        );
        assert_eq!(demand(&[]).floor(100_000.0), Duration::ZERO);
    }

    #[test]
    fn a_task_moves_between_buckets_and_leaves_when_it_ends() {
        let demand = Demand::default();
        let at = AtomicU8::new(NO_BUCKET);
        demand.place(&at, bucket_of(secs(0.001)));
        demand.place(&at, bucket_of(secs(1.0)));
        let total: usize = demand
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum();
        assert_eq!(total, 1);
        demand.place(&at, NO_BUCKET);
        assert!(demand
            .buckets
            .iter()
            .all(|b| b.load(Ordering::Relaxed) == 0));
        assert_eq!(bucket_of(Duration::from_micros(1)), 0);
        assert!(usize::from(bucket_of(Duration::from_secs(86_400))) < BUCKETS);
        assert_eq!(bucket_of(Duration::MAX), (BUCKETS - 1) as u8);
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
            errors: 0,
        };
        assert!(inverted.validate().unwrap_err().contains("must not exceed"));
        assert!(PollPolicy::default().validate().is_ok());
    }
}
