//! Reading what tasks say of their progress (their optional `progress()`):
//! at each poll of a polling task, and about once a second, on the poller
//! thread, for a running blocking task, so that its worker is never held up.

use pyo3::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Engine;
use crate::errors::log_exception;
use crate::progress;
use crate::record::{Kind, Record};

/// How often the progress of a running blocking task is read.
pub const READ_EVERY: Duration = Duration::from_secs(1);

impl Engine {
    /// Reads and keeps what `task` says of its progress. A `progress()` that
    /// raises shows None, and is logged the first time.
    pub(super) fn note_progress(&self, py: Python<'_>, record: &Record, task: &Bound<'_, PyAny>) {
        let said = progress::read(task);
        let mut p = record.progress.lock();
        match said {
            Ok(report) => p.report = report.map(Box::new),
            Err(err) => {
                p.report = None;
                if !std::mem::replace(&mut p.report_failed, true) {
                    drop(p);
                    let message = format!("progress() of task {} raised", record.id);
                    log_exception(py, &message, err);
                }
            }
        }
    }

    /// At a poll: reads the progress of a polling task whose class reports it.
    pub(super) fn poll_progress(&self, py: Python<'_>, record: &Record) {
        let Some(task) = record.task(py) else {
            return;
        };
        if progress::has_progress(task.bind(py)) {
            self.note_progress(py, record, task.bind(py));
        }
    }

    /// A blocking task that reports progress started: the poller reads it
    /// from now on.
    pub(super) fn watch_progress(&self, record: &Arc<Record>) {
        let mut watched = self.watched.lock();
        watched.push(record.clone());
        if watched.len() == 1 {
            self.poller.chore_at(Instant::now() + READ_EVERY);
        }
    }

    /// Reads the progress of every watched task still running (the
    /// poller's chore); returns when to read again, if any is left.
    pub(super) fn read_watched_progress(&self, py: Python<'_>) -> Option<Instant> {
        let running: Vec<Arc<Record>> = {
            let mut watched = self.watched.lock();
            watched.retain(|r| !r.state().is_final() && r.kind() != Some(Kind::Polling));
            watched.clone()
        };
        for record in &running {
            if let Some(task) = record.task(py) {
                self.note_progress(py, record, task.bind(py));
            }
        }
        (!running.is_empty()).then(|| Instant::now() + READ_EVERY)
    }
}
