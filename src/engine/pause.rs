//! Pausing: while paused, no pending task starts. The pool's workers take
//! no job (`Pool::set_paused`), and the poller holds back the first `run()`
//! of polling tasks here. Running tasks go on, submits are accepted, and the
//! gates before a start (dependencies, start times, retries' back-offs,
//! limits) open as usual: the tasks they let through queue up and wait.
//!
//! A timeout keeps counting for a running task. A pending task's timeout
//! that falls inside the pause is held too, and once the pause ends it gets
//! the time it had left when the pause began.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::Engine;
use crate::poller::{at_once, Action, Due};
use crate::record::{Record, State};

/// A pause under way: when it began, and the poller entries it holds back.
#[derive(Default)]
pub(super) struct Pause {
    since: Option<Instant>,
    held: Vec<Due>,
}

impl Engine {
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// No pending task starts until `resume`. Returns false when already
    /// paused. A runner shut down cannot pause: it must drain.
    pub fn pause(self: &Arc<Self>) -> PyResult<bool> {
        let mut pause = self.pause.lock();
        // Checked under the lock: `close` marks the engine closed before it
        // takes the lock to resume, so no pause outlives a shutdown.
        if self.is_closed() {
            return Err(PyRuntimeError::new_err("cannot pause after shutdown"));
        }
        if pause.since.is_some() {
            return Ok(false);
        }
        pause.since = Some(Instant::now());
        self.paused.store(true, Ordering::Relaxed);
        // Pausing starts no thread, so it cannot fail.
        drop(self.pool.set_paused(self, true));
        Ok(true)
    }

    /// Starts what waited at once: queued blocking tasks (the pool's order:
    /// priority, then queue order) and held polling starts (priority, then
    /// submit order). Returns false when not paused.
    pub fn resume(self: &Arc<Self>, py: Python<'_>) -> bool {
        let (since, mut held) = {
            let mut pause = self.pause.lock();
            let Some(since) = pause.since.take() else {
                return false;
            };
            self.paused.store(false, Ordering::Relaxed);
            (since, std::mem::take(&mut pause.held))
        };
        if let Err(failed) = self.pool.set_paused(self, false) {
            self.fail_orphans(py, failed).print(py);
        }
        let now = Instant::now();
        for due in &mut held {
            due.at = match due.action {
                // The time it had left when the pause began.
                Action::Expire => now + due.at.saturating_duration_since(since),
                _ => at_once(),
            };
        }
        held.sort_by_key(|due| (std::cmp::Reverse(due.record.plan().priority), due.record.id));
        self.schedule(py, held);
        true
    }

    /// A due poller entry that must wait for the end of the pause: a polling
    /// task's first `run()`, or a pending task's timeout. True when held.
    /// Costs one relaxed load while not paused.
    pub(super) fn held_by_pause(&self, due: &Due) -> bool {
        if !self.is_paused() || !Self::waits_for_resume(due.action, &due.record) {
            return false;
        }
        let mut pause = self.pause.lock();
        // Checked again under the lock, which `resume` takes to empty the list.
        if pause.since.is_none() {
            return false;
        }
        pause.held.push(Due {
            at: due.at,
            record: due.record.clone(),
            action: due.action,
        });
        true
    }

    /// In a forked child: the parent's pause is not the child's (whose
    /// inherited tasks are all cancelled).
    pub(super) fn forget_pause_in_child(&self) {
        crate::fork::release_in_child(&self.pause);
        drop(std::mem::take(&mut *self.pause.lock()));
        self.paused.store(false, Ordering::Relaxed);
    }

    fn waits_for_resume(action: Action, record: &Record) -> bool {
        match action {
            Action::Start => true,
            Action::Expire => record.state() == State::Pending,
            _ => false,
        }
    }
}
