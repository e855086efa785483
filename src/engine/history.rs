//! The engine's side of the history (`crate::history`): each finish
//! counted, the once-a-second tick (a poller chore), and the minutes the
//! journal keeps, written as they close and read back at start.

use pyo3::prelude::*;
use std::time::{Duration, Instant};

use super::Engine;
use crate::history::{Bucket, Runtimes, Sample, View, Window, MINUTES_KEPT};
use crate::journal::MinuteRow;
use crate::record::{unix_now, State};

/// A tick lands just after a second ends, so that the second it closes is whole.
const TICK_AFTER: Duration = Duration::from_millis(5);

impl Engine {
    /// The poller's chore: closes the seconds that ended; returns when to
    /// tick again.
    pub(super) fn tick_history(&self) -> Instant {
        let now = unix_now();
        self.tick_history_at(now);
        next_tick(now)
    }

    /// When the first tick is due.
    pub(super) fn first_tick() -> Instant {
        next_tick(unix_now())
    }

    fn tick_history_at(&self, now: f64) {
        let sample = Sample {
            running: count_u32(self.store.count(State::Running)),
            pending: count_u32(self.store.count(State::Pending)),
        };
        let closed = self.history.tick(now, sample);
        if let Some(journal) = self.journal() {
            for minute in closed {
                journal.write_minute(row_of(minute));
            }
        }
    }

    /// The points and percentiles of `window`, up to the last whole second.
    pub fn history(&self, window: Window) -> View {
        // Ticks here too: a runner whose poller stopped (shut down) still reads true.
        self.tick_history_at(unix_now());
        self.history.view(window)
    }

    /// Fills the history with the journal's minutes of the last day.
    pub fn load_history(&self, py: Python<'_>) {
        let Some(journal) = self.journal() else {
            return;
        };
        let since = (unix_now() as i64).div_euclid(60) * 60 - MINUTES_KEPT as i64 * 60;
        match py.detach(|| journal.minutes(since)) {
            Ok(rows) => self.history.load(rows.into_iter().map(bucket_of).collect()),
            Err(err) => crate::errors::log_warning(
                py,
                &format!("the history of the last day could not be read: {err}"),
            ),
        }
    }

    /// At close: writes the minute still open, so that a runner started
    /// again within it carries it on.
    pub(super) fn write_open_minute(&self) {
        self.tick_history_at(unix_now());
        if let (Some(journal), Some(open)) = (self.journal(), self.history.open_minute()) {
            journal.write_minute(row_of(open));
        }
    }
}

fn next_tick(now: f64) -> Instant {
    let wait = (now.floor() + 1.0 - now).clamp(0.0, 1.0);
    Instant::now() + Duration::from_secs_f64(wait) + TICK_AFTER
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn row_of(b: Bucket) -> MinuteRow {
    MinuteRow {
        at: b.at,
        finished: b.finished,
        running: b.running,
        pending: b.pending,
        runtimes: b.runtimes.to_text(),
    }
}

fn bucket_of(m: MinuteRow) -> Bucket {
    Bucket {
        at: m.at,
        finished: m.finished,
        running: m.running,
        pending: m.pending,
        runtimes: Runtimes::from_text(&m.runtimes),
    }
}
