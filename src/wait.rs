//! Waiting for tasks without holding the GIL: one detached loop that wakes
//! on completion events (or every `WAIT_STEP` to let Ctrl-C through), and
//! the iterators built on it.

use parking_lot::Mutex;
use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::events::{Event, Subscription};
use crate::record::{Record, State};

const WAIT_STEP: Duration = Duration::from_millis(50);

/// A waiter woken twice within `FLOOD_GAP` sleeps `GATHER` before it looks
/// again: waking it for each of thousands of completions would cost each
/// finishing thread a system call, and the waiter a context switch.
const FLOOD_GAP: Duration = Duration::from_millis(1);
const GATHER: Duration = Duration::from_micros(500);

/// Seconds as a Duration, refusing what cannot be one.
pub fn seconds(what: &str, value: f64) -> PyResult<Duration> {
    if value >= 0.0 {
        Ok(Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX))
    } else {
        Err(PyValueError::new_err(format!(
            "{what} must be a number >= 0, got {value}"
        )))
    }
}

/// The instant `timeout` seconds from now; None when there is no timeout,
/// or when it lies beyond what the clock can hold (which is the same thing).
pub fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    let Some(t) = timeout else {
        return Ok(None);
    };
    if t.is_nan() || t < 0.0 {
        return Err(PyValueError::new_err(format!(
            "timeout must be a number >= 0, got {t}"
        )));
    }
    Ok(Duration::try_from_secs_f64(t)
        .ok()
        .and_then(|d| Instant::now().checked_add(d)))
}

/// Sleeps, detached, until `done()` holds or `deadline` passes, handling
/// each event of `sub` while still detached (a flood of completions costs no
/// GIL traffic). Attaches every `WAIT_STEP` to let Ctrl-C through.
/// Returns whether `done()` held.
pub fn wait_until(
    py: Python<'_>,
    sub: &Subscription,
    deadline: Option<Instant>,
    mut on_event: impl FnMut(Event) -> bool + Send,
    done: impl Fn() -> bool + Sync,
) -> PyResult<bool> {
    let mut last_wake: Option<Instant> = None;
    loop {
        let settled = py.detach(|| {
            let now = Instant::now();
            let stretch_end = deadline.map_or(now + WAIT_STEP, |d| d.min(now + WAIT_STEP));
            loop {
                if done() {
                    return Some(true);
                }
                let Some(left) = stretch_end.checked_duration_since(Instant::now()) else {
                    break;
                };
                let Ok(event) = sub.rx.recv_timeout(left) else {
                    continue;
                };
                if on_event(event) || sub.rx.try_iter().any(&mut on_event) {
                    return Some(true);
                }
                // Woken again within a gap: events flood in. Let them gather
                // rather than cost whoever finishes a task a wake-up each.
                let woke = Instant::now();
                if last_wake.is_some_and(|at| woke - at < FLOOD_GAP) {
                    std::thread::sleep(GATHER.min(stretch_end.saturating_duration_since(woke)));
                }
                last_wake = Some(woke);
            }
            deadline
                .is_some_and(|d| Instant::now() >= d)
                .then_some(false)
        });
        if let Some(result) = settled {
            return Ok(result);
        }
        py.check_signals()?;
    }
}

/// Waits for one record to be final; false on timeout.
pub fn wait_record(
    py: Python<'_>,
    engine: &Engine,
    record: &Record,
    timeout: Option<f64>,
) -> PyResult<bool> {
    let deadline = deadline_of(timeout)?;
    if record.state().is_final() {
        return Ok(true);
    }
    let sub = engine.subscribe(false, None);
    wait_until(
        py,
        &sub,
        deadline,
        |event| event.id == record.id,
        || record.state().is_final(),
    )
}

#[derive(Clone, Copy)]
pub enum WaitFor {
    First,
    FirstException,
    All,
}

impl WaitFor {
    /// The `return_when` names of `concurrent.futures`.
    pub fn parse(name: &str) -> PyResult<WaitFor> {
        match name {
            "FIRST_COMPLETED" => Ok(WaitFor::First),
            "FIRST_EXCEPTION" => Ok(WaitFor::FirstException),
            "ALL_COMPLETED" => Ok(WaitFor::All),
            _ => Err(PyValueError::new_err(format!(
                "Invalid return condition: {name:?}"
            ))),
        }
    }
}

/// Waits until `condition` holds for `records` or `deadline` passes.
/// Returns the ids (done, not_done).
pub fn wait_for(
    py: Python<'_>,
    engine: &Engine,
    records: Vec<Arc<Record>>,
    deadline: Option<Instant>,
    condition: WaitFor,
) -> PyResult<(Vec<u64>, Vec<u64>)> {
    // Subscribe before looking at states, so that no completion slips between.
    let sub = engine.subscribe(false, None);
    if let WaitFor::All = condition {
        return wait_all(py, &sub, records, deadline);
    }
    let progress = Mutex::new(WaitProgress::default());
    for record in records {
        progress.lock().add(record);
    }
    let on_event = |event: Event| progress.lock().finished(event.id, condition);
    let satisfied = || progress.lock().satisfied(condition);
    wait_until(py, &sub, deadline, on_event, satisfied)?;
    let progress = progress.into_inner();
    Ok((progress.done, progress.pending.into_keys().collect()))
}

/// Waits until all of `records` are final: an event only says "look
/// again", and a cursor passes each record once it is final, so that a
/// flood of completions costs the waiter no bookkeeping per task.
fn wait_all(
    py: Python<'_>,
    sub: &Subscription,
    records: Vec<Arc<Record>>,
    deadline: Option<Instant>,
) -> PyResult<(Vec<u64>, Vec<u64>)> {
    let cursor = Mutex::new(0);
    let all_final = || {
        let mut at = cursor.lock();
        while records.get(*at).is_some_and(|r| r.state().is_final()) {
            *at += 1;
        }
        *at == records.len()
    };
    wait_until(py, sub, deadline, |_| all_final(), all_final)?;
    let (done, not_done): (Vec<_>, Vec<_>) = records.iter().partition(|r| r.state().is_final());
    let ids = |records: Vec<&Arc<Record>>| records.iter().map(|r| r.id).collect();
    Ok((ids(done), ids(not_done)))
}

/// The state of one `wait()` for a first completion or failure: O(1) per
/// completion event.
#[derive(Default)]
struct WaitProgress {
    done: Vec<u64>,
    pending: HashMap<u64, Arc<Record>>,
    failed: bool,
}

impl WaitProgress {
    fn add(&mut self, record: Arc<Record>) {
        let state = record.state();
        if state.is_final() {
            self.failed |= matches!(state, State::Failed | State::TimedOut);
            self.done.push(record.id);
        } else {
            self.pending.insert(record.id, record);
        }
    }

    /// Takes one completion event; the record is final by the time it is sent.
    fn finished(&mut self, id: u64, condition: WaitFor) -> bool {
        if let Some(record) = self.pending.remove(&id) {
            self.add(record);
        }
        self.satisfied(condition)
    }

    fn satisfied(&mut self, condition: WaitFor) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        match condition {
            WaitFor::First => !self.done.is_empty(),
            WaitFor::FirstException => self.failed,
            WaitFor::All => false,
        }
    }
}

/// Yields task ids as their tasks finish; raises `TimeoutError` at the deadline.
#[pyclass(frozen, module = "taskrunner._core")]
pub struct Completions {
    sub: Subscription,
    ready: Mutex<VecDeque<u64>>,
    pending: Mutex<HashSet<u64>>,
    deadline: Option<Instant>,
    total: usize,
}

impl Completions {
    pub fn new(
        engine: &Engine,
        records: Vec<Arc<Record>>,
        deadline: Option<Instant>,
    ) -> PyResult<Self> {
        // Subscribe before looking at states, so that no completion slips between.
        let sub = engine.subscribe(false, None);
        let total = records.len();
        let (done, pending): (Vec<_>, Vec<_>) =
            records.into_iter().partition(|r| r.state().is_final());
        Ok(Completions {
            sub,
            ready: Mutex::new(done.iter().map(|r| r.id).collect()),
            pending: Mutex::new(pending.iter().map(|r| r.id).collect()),
            deadline,
            total,
        })
    }
}

#[pymethods]
impl Completions {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        if let Some(id) = self.ready.lock().pop_front() {
            return Ok(Some(id));
        }
        if self.pending.lock().is_empty() {
            return Ok(None);
        }
        let on_event = |Event { id, .. }: Event| {
            if self.pending.lock().remove(&id) {
                self.ready.lock().push_back(id);
                return true;
            }
            false
        };
        if !wait_until(py, &self.sub, self.deadline, on_event, || {
            !self.ready.lock().is_empty()
        })? {
            let left = self.pending.lock().len();
            return Err(PyTimeoutError::new_err(format!(
                "{left} (of {}) tasks unfinished",
                self.total
            )));
        }
        Ok(self.ready.lock().pop_front())
    }
}

/// Every state change of a runner's tasks, as `(id, state)` pairs.
#[pyclass(frozen, module = "taskrunner._core")]
pub struct EventStream {
    sub: Subscription,
    engine: Arc<Engine>,
}

impl EventStream {
    pub fn new(engine: &Arc<Engine>, capacity: usize) -> Self {
        EventStream {
            sub: engine.subscribe(true, Some(capacity.max(1))),
            engine: engine.clone(),
        }
    }

    /// No event can come any more: the runner is shut down with nothing left to run.
    fn ended(&self) -> bool {
        self.engine.is_closed() && self.engine.unfinished() == 0 && self.sub.rx.is_empty()
    }
}

#[pymethods]
impl EventStream {
    /// Up to `max` pending events, waiting up to `timeout` seconds for the first.
    #[pyo3(signature = (timeout=None, max=1024))]
    fn next_batch(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        max: usize,
    ) -> PyResult<Vec<(u64, &'static str)>> {
        let deadline = deadline_of(timeout)?;
        let max = max.max(1);
        let mut out = Vec::new();
        // The event that ends the wait is the batch's first.
        wait_until(
            py,
            &self.sub,
            deadline,
            |event| {
                out.push((event.id, event.state.as_str()));
                true
            },
            || self.ended(),
        )?;
        out.extend(
            self.sub
                .rx
                .try_iter()
                .take(max - out.len())
                .map(|e| (e.id, e.state.as_str())),
        );
        Ok(out)
    }

    /// Whether events were dropped since the last call (the consumer fell behind).
    fn take_lagged(&self) -> bool {
        self.sub.lagged.swap(false, Ordering::Relaxed)
    }
}
