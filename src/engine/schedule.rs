//! What a task waits for before it runs, and when it runs again: the tasks
//! it comes after, its start time, its limit, and its retries.
//!
//! A held task goes through the gates in that order, each of which calls
//! the next when it opens: `hold` (dependencies), `advance` (start time,
//! a poller entry), `admit` (limit), then `route` to the pool or the
//! poller, where its priority orders it. A retry sends a failed task back
//! to `advance` with a new start time.

use pyo3::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Engine;
use crate::errors::{failure, log_exception, log_warning};
use crate::limits::{Admission, Released, Rule};
use crate::policy::NO_BUCKET;
use crate::poller::{Action, Due};
use crate::record::{unix_now, ErrorInfo, Outcome, Record, State};

/// Tasks to end, each with why.
type Endings = Vec<(Arc<Record>, Outcome)>;

thread_local! {
    /// Tasks to cancel because a task they waited for did not succeed, while
    /// this thread is already cancelling such tasks: a chain of thousands is
    /// walked in a loop, not by recursion.
    static CASCADE: RefCell<Option<Endings>> = const { RefCell::new(None) };
}

/// Empties `CASCADE` when the loop that drains it leaves, even by a panic.
struct CascadeGuard;

impl Drop for CascadeGuard {
    fn drop(&mut self) {
        CASCADE.with(|c| *c.borrow_mut() = None);
    }
}

/// The instant of a Unix time, if it is still to come.
fn instant_of(unix: f64) -> Option<Instant> {
    let wait = Duration::try_from_secs_f64(unix - unix_now()).ok()?;
    (!wait.is_zero()).then(|| Instant::now() + wait)
}

impl Engine {
    /// A new task that waits for something before it runs: first for the
    /// tasks in `upstream` to succeed.
    pub(super) fn hold(
        self: &Arc<Self>,
        py: Python<'_>,
        record: &Arc<Record>,
        upstream: &[Arc<Record>],
    ) -> PyResult<()> {
        // One more than the dependencies, so that none of them can let the
        // task go while the others are still being registered.
        record.unmet.store(upstream.len() + 1, Ordering::Release);
        for up in upstream {
            match up.add_dependent(record) {
                None => {}
                Some(State::Succeeded) => drop(record.dependency_met()),
                Some(state) => {
                    let why = upstream_failed(py, record, up, state)?;
                    self.complete(py, record, why);
                    return Ok(());
                }
            }
        }
        if record.dependency_met() {
            self.advance(py, record);
        }
        Ok(())
    }

    /// Its dependencies are met: the task waits for its start time, if any.
    fn advance(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>) {
        if record.state() != State::Pending {
            return;
        }
        let not_before = record.progress.lock().not_before;
        if let Some(at) = not_before.and_then(instant_of) {
            let release = Due {
                at,
                record: record.clone(),
                action: Action::Release,
            };
            return self.schedule(py, vec![release]);
        }
        self.release(py, record);
    }

    /// Its start time came (the poller's `Release`): on to its limit.
    pub(super) fn release(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>) {
        {
            let mut p = record.progress.lock();
            if p.state != State::Pending {
                return;
            }
            p.not_before = None;
        }
        self.admit(py, record);
    }

    /// The task's limit lets it through, or holds it in priority order.
    pub(super) fn admit(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>) {
        if let Some(gate) = &record.plan().limit {
            if let Admission::Held(wake) = gate.admit(record) {
                if let Some(at) = wake {
                    self.wake_gate_at(py, at, record.clone());
                }
                return;
            }
        }
        self.route_held(py, record.clone());
    }

    fn route_held(self: &Arc<Self>, py: Python<'_>, record: Arc<Record>) {
        if let Err(err) = self.route(py, record, None, false) {
            log_exception(py, "cannot start a task that waited", err);
        }
    }

    fn wake_gate_at(self: &Arc<Self>, py: Python<'_>, at: Instant, record: Arc<Record>) {
        let wake = Due {
            at,
            record,
            action: Action::Wake,
        };
        self.schedule(py, vec![wake]);
    }

    fn let_through(self: &Arc<Self>, py: Python<'_>, released: Released<Record>) {
        for record in released.through {
            self.route_held(py, record);
        }
        if let Some((at, record)) = released.wake {
            self.wake_gate_at(py, at, record);
        }
    }

    /// A task gave back its slot: the limit lets the next ones through.
    pub(super) fn leave_gate(self: &Arc<Self>, py: Python<'_>, record: &Record) {
        if let Some(gate) = &record.plan().limit {
            self.let_through(py, gate.leave());
        }
    }

    /// A rate limit's window moved on (the poller's `Wake`).
    pub(super) fn wake_gate(self: &Arc<Self>, py: Python<'_>, record: &Record) {
        if let Some(gate) = &record.plan().limit {
            self.let_through(py, gate.wake());
        }
    }

    /// Sets a limit (new or changed); tasks it now allows go through.
    pub fn set_limit(self: &Arc<Self>, py: Python<'_>, label: &str, rule: Rule) {
        let released = self.limits.set(label, rule);
        self.let_through(py, released);
    }

    pub fn limits(&self) -> &crate::limits::Limits<Record> {
        &self.limits
    }

    /// A task ended: those waiting for it go on if it succeeded, and are
    /// cancelled, saying why, if not.
    pub(super) fn upstream_ended(
        self: &Arc<Self>,
        py: Python<'_>,
        record: &Record,
        to: State,
        dependents: Vec<Arc<Record>>,
    ) {
        if dependents.is_empty() {
            return;
        }
        let mut cancels = Vec::new();
        for dependent in dependents {
            if to == State::Succeeded {
                if dependent.dependency_met() {
                    self.advance(py, &dependent);
                }
            } else if !dependent.state().is_final() {
                match upstream_failed(py, &dependent, record, to) {
                    Ok(why) => cancels.push((dependent, why)),
                    Err(err) => log_exception(py, "cannot cancel a dependent task", err),
                }
            }
        }
        self.cancel_in_turn(py, cancels);
    }

    fn cancel_in_turn(self: &Arc<Self>, py: Python<'_>, cancels: Endings) {
        let outermost = CASCADE.with(|c| {
            let mut c = c.borrow_mut();
            match c.as_mut() {
                Some(queued) => {
                    queued.extend(cancels);
                    false
                }
                None => {
                    *c = Some(cancels);
                    true
                }
            }
        });
        if !outermost {
            return;
        }
        let _guard = CascadeGuard;
        while let Some((record, why)) = CASCADE.with(|c| c.borrow_mut().as_mut().and_then(Vec::pop))
        {
            self.complete(py, &record, why);
        }
    }

    /// A task's run failed: it runs again after its back-off if its retry
    /// policy covers the error, and fails otherwise.
    pub(super) fn fail(self: &Arc<Self>, py: Python<'_>, record: &Arc<Record>, err: PyErr) {
        let attempt = record.attempt_now();
        let Some(retry) = record.plan().retry.as_ref().map(|r| r.get()) else {
            return self.complete(py, record, failure(py, err));
        };
        if !retry.covers(py, attempt, &err) || self.cancelling.load(Ordering::Acquire) {
            return self.complete(py, record, failure(py, err));
        }
        let wait = retry.backoff_after(attempt);
        let Outcome::Failed(error) = failure(py, err) else {
            unreachable!("failure() makes a failed outcome");
        };
        self.retry_later(py, record, error, wait);
    }

    fn retry_later(
        self: &Arc<Self>,
        py: Python<'_>,
        record: &Arc<Record>,
        error: ErrorInfo,
        wait: Duration,
    ) {
        let not_before = unix_now() + wait.as_secs_f64();
        let Some((_, slot)) = record.retry_later(error, not_before, &self.store.counts) else {
            return; // it ended meanwhile (cancelled, timed out)
        };
        self.demand.place(&record.poll_bucket, NO_BUCKET);
        if let Some(journal) = self.journal() {
            journal.retrying(record);
        }
        self.events.publish(record, State::Pending);
        if slot {
            self.leave_gate(py, record);
        }
        let release = Due {
            at: Instant::now() + wait,
            record: record.clone(),
            action: Action::Release,
        };
        self.schedule(py, vec![release]);
    }

    /// True when a `get_output()` that raised is forgiven by the task's
    /// poll policy (`errors` in a row): it is polled again, and a warning logged.
    pub(super) fn poll_error_forgiven(&self, py: Python<'_>, record: &Record, err: &PyErr) -> bool {
        let allowed = self.policy_of(record).errors;
        if allowed == 0 {
            return false;
        }
        let in_a_row = {
            let mut p = record.progress.lock();
            if p.state != State::Running {
                return false;
            }
            p.poll_errors += 1;
            p.poll_errors
        };
        if in_a_row > allowed {
            return false;
        }
        let message = format!(
            "task {}: get_output() raised {}; polling again ({in_a_row} of {allowed} errors in a row)",
            record.id,
            err.value(py)
                .repr()
                .map_or_else(|_| "an exception".into(), |r| r.to_string()),
        );
        log_warning(py, &message);
        true
    }
}

/// Why `dependent` is cancelled: `upstream` ended in `state`.
fn upstream_failed(
    py: Python<'_>,
    dependent: &Record,
    upstream: &Record,
    state: State,
) -> PyResult<Outcome> {
    let message = format!(
        "task {} waited for task {} ({}), which ended {}",
        dependent.id,
        upstream.id,
        upstream.name.bind(py).to_string_lossy(),
        state.as_str()
    );
    let cancelled = py
        .import("concurrent.futures")?
        .getattr("CancelledError")?
        .call1((message.clone(),))?;
    Ok(Outcome::CancelledBecause(ErrorInfo {
        type_name: "CancelledError".into(),
        message,
        traceback: String::new(),
        exception: cancelled.unbind(),
    }))
}
