//! Concurrency and rate limits on labelled tasks.
//!
//! A label names a gate. A concurrency gate lets at most `n` of its tasks
//! hold a slot at once: from the moment they are let through (queued for a
//! worker, or due to start on the poller) until they end or wait for a
//! retry. A rate gate lets at most `count` tasks through in any window of
//! `per` seconds. Tasks the gate holds back wait in priority order; the
//! engine routes those let through, with no gate lock held.

use parking_lot::{Mutex, RwLock};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue::PriorityQueue;

/// What waits at a gate (a task's record).
pub trait Waiter {
    fn priority(&self) -> i32;
    fn is_final(&self) -> bool;
    /// Takes a concurrency slot, unless it has ended: false then.
    fn take_slot(&self) -> bool;
}

/// At most `count` starts in any `per` seconds: `taskrunner.Rate`.
#[pyclass(frozen, from_py_object, module = "taskrunner._core")]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    #[pyo3(get)]
    pub count: usize,
    #[pyo3(get)]
    pub per: f64,
}

#[pymethods]
impl Rate {
    #[new]
    #[pyo3(signature = (count, per=1.0))]
    fn py_new(count: i64, per: f64) -> PyResult<Self> {
        if count < 1 {
            return Err(PyValueError::new_err(format!(
                "a rate lets at least 1 task through, got {count}"
            )));
        }
        if !(per.is_finite() && per > 0.0 && per <= 86_400.0) {
            return Err(PyValueError::new_err(format!(
                "per must be more than 0 and at most 86400 seconds, got {per}"
            )));
        }
        Ok(Rate {
            count: count as usize,
            per,
        })
    }

    fn __repr__(&self) -> String {
        format!("Rate({}, per={})", self.count, self.per)
    }

    fn __eq__(&self, other: &Self) -> bool {
        self == other
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    Concurrent(usize),
    Rate(Rate),
}

impl Rule {
    /// A limit as Python gives it: an int >= 0, or a `Rate`.
    pub fn from_py(label: &str, value: &Bound<'_, PyAny>) -> PyResult<Rule> {
        if let Ok(rate) = value.extract::<Rate>() {
            return Ok(Rule::Rate(rate));
        }
        match value.extract::<i64>() {
            Ok(n) if n >= 0 && !value.is_instance_of::<pyo3::types::PyBool>() => {
                Ok(Rule::Concurrent(n as usize))
            }
            _ => Err(PyValueError::new_err(format!(
                "limit '{label}' must be an int >= 0 or a taskrunner.Rate, got {}",
                value.repr()?
            ))),
        }
    }
}

/// What a gate did with a task.
pub enum Admission {
    /// Let through: route it.
    Through,
    /// Held back; a rate gate asks to be woken at the given time.
    Held(Option<Instant>),
}

struct GateState<W> {
    rule: Rule,
    /// Concurrency gate: slots held.
    holding: usize,
    waiting: PriorityQueue<Arc<W>>,
    /// Rate gate: when the tasks of the current window went through.
    passed: VecDeque<Instant>,
    /// Rate gate: when a wake is already asked for.
    wake_at: Option<Instant>,
}

/// Tasks a gate lets through, and when it wants to be woken next (with a
/// task of its own to hang the wake on).
pub struct Released<W> {
    pub through: Vec<Arc<W>>,
    pub wake: Option<(Instant, Arc<W>)>,
}

pub struct Gate<W> {
    pub label: Arc<str>,
    state: Mutex<GateState<W>>,
}

impl<W: Waiter> Gate<W> {
    fn new(label: &str, rule: Rule) -> Gate<W> {
        Gate {
            label: label.into(),
            state: Mutex::new(GateState {
                rule,
                holding: 0,
                waiting: PriorityQueue::default(),
                passed: VecDeque::new(),
                wake_at: None,
            }),
        }
    }

    /// Lets `record` through, or holds it back in priority order.
    pub fn admit(&self, record: &Arc<W>) -> Admission {
        let mut s = self.state.lock();
        let now = Instant::now();
        if s.waiting.is_empty() && s.pass(record, now) {
            return Admission::Through;
        }
        s.waiting.push(record.clone(), record.priority());
        Admission::Held(s.ask_wake(now).map(|(at, _)| at))
    }

    /// A task let through by a concurrency gate gave its slot back: the
    /// next waiting ones go through.
    pub fn leave(&self) -> Released<W> {
        let mut s = self.state.lock();
        s.holding = s.holding.saturating_sub(1);
        s.release(Instant::now())
    }

    /// A rate gate's window moved on: the waiting tasks it now allows go through.
    pub fn wake(&self) -> Released<W> {
        let mut s = self.state.lock();
        s.wake_at = None;
        s.release(Instant::now())
    }

    pub fn set(&self, rule: Rule) -> Released<W> {
        let mut s = self.state.lock();
        s.rule = rule;
        s.wake_at = None;
        s.release(Instant::now())
    }

    /// `(rule, holding, waiting)`; waiting counts only tasks still pending.
    pub fn figures(&self) -> (Rule, usize, usize) {
        let s = self.state.lock();
        let waiting = s.waiting.iter().filter(|r| !r.is_final()).count();
        (s.rule, s.holding, waiting)
    }
}

impl<W: Waiter> GateState<W> {
    /// Lets one task through if the rule allows; a concurrency slot is
    /// taken only by a task still pending (one cancelled meanwhile is not).
    fn pass(&mut self, record: &W, now: Instant) -> bool {
        match self.rule {
            Rule::Concurrent(n) => {
                if self.holding >= n || !record.take_slot() {
                    return self.holding < n; // a finished task passes, to be dropped
                }
                self.holding += 1;
                true
            }
            Rule::Rate(rate) => {
                let window = Duration::from_secs_f64(rate.per);
                while self.passed.front().is_some_and(|t| now - *t >= window) {
                    self.passed.pop_front();
                }
                if self.passed.len() >= rate.count {
                    return false;
                }
                if !record.is_final() {
                    self.passed.push_back(now);
                }
                true
            }
        }
    }

    fn release(&mut self, now: Instant) -> Released<W> {
        let mut through = Vec::new();
        while let Some(next) = self.waiting.peek() {
            if next.is_final() {
                self.waiting.pop();
                continue;
            }
            let next = next.clone();
            if !self.pass(&next, now) {
                break;
            }
            self.waiting.pop();
            through.push(next);
        }
        Released {
            through,
            wake: self.ask_wake(now),
        }
    }

    /// For a rate gate with tasks waiting: when the oldest pass leaves the
    /// window, unless a wake is already asked for.
    fn ask_wake(&mut self, now: Instant) -> Option<(Instant, Arc<W>)> {
        let Rule::Rate(rate) = self.rule else {
            return None;
        };
        let head = self.waiting.peek()?.clone();
        if self.wake_at.is_some() {
            return None;
        }
        let oldest = self.passed.front().copied().unwrap_or(now);
        let at = oldest + Duration::from_secs_f64(rate.per);
        self.wake_at = Some(at);
        Some((at, head))
    }
}

/// Every gate of a runner, by label.
pub struct Limits<W> {
    gates: RwLock<HashMap<String, Arc<Gate<W>>>>,
}

impl<W> Default for Limits<W> {
    fn default() -> Self {
        Limits {
            gates: RwLock::new(HashMap::new()),
        }
    }
}

impl<W: Waiter> Limits<W> {
    pub fn gate(&self, label: &str) -> PyResult<Arc<Gate<W>>> {
        if let Some(gate) = self.gates.read().get(label) {
            return Ok(gate.clone());
        }
        let mut known: Vec<String> = self.gates.read().keys().cloned().collect();
        known.sort();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        Err(PyValueError::new_err(format!(
            "no limit named '{label}' (known: {known}); declare it with \
             TaskRunner(limits={{'{label}': N}}) or runner.set_limit('{label}', N)"
        )))
    }

    /// Sets a label's rule, making its gate if need be.
    pub fn set(&self, label: &str, rule: Rule) -> Released<W> {
        let gate = self
            .gates
            .write()
            .entry(label.to_string())
            .or_insert_with(|| Arc::new(Gate::new(label, rule)))
            .clone();
        gate.set(rule)
    }

    pub fn all(&self) -> Vec<Arc<Gate<W>>> {
        let mut gates: Vec<Arc<Gate<W>>> = self.gates.read().values().cloned().collect();
        gates.sort_by(|a, b| a.label.cmp(&b.label));
        gates
    }
}
