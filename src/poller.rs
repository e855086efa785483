//! The deadline queue behind the one poller thread.
//!
//! Every timed action lives in one binary heap: starting a polling task,
//! polling it again, and expiring a task at its timeout. The poller thread
//! sleeps until the earliest entry is due, takes every due entry (up to
//! `MAX_BATCH`), and handles them under one GIL acquisition.

use parking_lot::{Condvar, Mutex};
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::Record;

/// Entries handled per GIL acquisition; bounds how long the poller holds it.
pub const MAX_BATCH: usize = 4096;

/// How long an idle poller sleeps before looking again (nothing is lost: a
/// new entry wakes it).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Call `run()` on a polling task.
    Start,
    /// Call `get_output()`; `since` is when the task started.
    Poll { since: Instant },
    /// End the task as timed out if it is not done.
    Expire,
}

pub struct Due {
    pub at: Instant,
    pub record: Arc<Record>,
    pub action: Action,
}

struct Entry {
    due: Due,
    seq: u64,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the earliest first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due.at, other.seq).cmp(&(self.due.at, self.seq))
    }
}

#[derive(Default)]
struct PollerState {
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// When the sleeping poller plans to wake; None while it works.
    sleeping_until: Option<Instant>,
    thread_alive: bool,
    stop: bool,
}

#[derive(Default)]
pub struct Poller {
    state: Mutex<PollerState>,
    wake: Condvar,
    stopped: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Polling tasks now running, for the poll-rate budget.
    pub active: AtomicUsize,
}

impl Poller {
    /// Adds entries. Returns true when the caller must start the poller thread.
    pub fn schedule(&self, entries: impl IntoIterator<Item = Due>) -> bool {
        let mut s = self.state.lock();
        let mut earliest: Option<Instant> = None;
        for due in entries {
            earliest = Some(earliest.map_or(due.at, |e| e.min(due.at)));
            s.seq += 1;
            let seq = s.seq;
            s.heap.push(Entry { due, seq });
        }
        let Some(earliest) = earliest else {
            return false;
        };
        if s.stop {
            return false;
        }
        if !s.thread_alive {
            s.thread_alive = true;
            return true;
        }
        if s.sleeping_until.is_some_and(|t| earliest < t) {
            self.wake.notify_one();
        }
        false
    }

    pub fn started(&self, handle: JoinHandle<()>) {
        *self.thread.lock() = Some(handle);
    }

    /// The thread could not be started: let the next schedule try again.
    pub fn start_failed(&self) {
        self.state.lock().thread_alive = false;
    }

    /// Sleeps (call it detached) until an entry is due; false when the
    /// poller must stop.
    pub fn wait_due(&self) -> bool {
        let mut s = self.state.lock();
        loop {
            if s.stop {
                s.thread_alive = false;
                self.stopped.notify_all();
                return false;
            }
            let now = Instant::now();
            let at = s.heap.peek().map_or(now + IDLE_WAKE, |e| e.due.at);
            if at <= now {
                return true;
            }
            s.sleeping_until = Some(at);
            self.wake.wait_until(&mut s, at);
            s.sleeping_until = None;
        }
    }

    /// Pops every entry due now, earliest first, up to `MAX_BATCH`. Called
    /// once attached, so that what fell due while waiting for the GIL rides
    /// along with the same acquisition.
    pub fn take_due(&self) -> Vec<Due> {
        let mut s = self.state.lock();
        let now = Instant::now();
        let mut batch = Vec::new();
        while batch.len() < MAX_BATCH && s.heap.peek().is_some_and(|e| e.due.at <= now) {
            batch.push(s.heap.pop().expect("peeked").due);
        }
        batch
    }

    /// Waits for due entries and takes them (for tests and simple loops).
    #[cfg(test)]
    pub fn next_batch(&self) -> Option<Vec<Due>> {
        loop {
            if !self.wait_due() {
                return None;
            }
            let batch = self.take_due();
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }

    /// Tells the thread to stop after its current batch; drops every entry.
    /// Returns the dropped entries so the caller can release them attached.
    pub fn stop(&self) -> Vec<Due> {
        let mut s = self.state.lock();
        s.stop = true;
        self.wake.notify_all();
        std::mem::take(&mut s.heap)
            .into_iter()
            .map(|e| e.due)
            .collect()
    }

    /// Removes every entry without stopping; returns them for release.
    pub fn clear(&self) -> Vec<Due> {
        let heap = std::mem::take(&mut self.state.lock().heap);
        heap.into_iter().map(|e| e.due).collect()
    }

    /// Waits up to `timeout` for the thread to exit; true once it has.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        while s.thread_alive {
            if self.stopped.wait_until(&mut s, deadline).timed_out() {
                return !s.thread_alive;
            }
        }
        drop(s);
        let handle = self.thread.lock().take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        true
    }

    /// True on the poller thread itself.
    pub fn is_current_thread(&self) -> bool {
        let current = std::thread::current().id();
        self.thread
            .lock()
            .as_ref()
            .is_some_and(|h| h.thread().id() == current)
    }

    pub fn queue_len(&self) -> usize {
        self.state.lock().heap.len()
    }

    /// In a forked child the thread is gone: let the next schedule start one.
    pub fn forget_thread(&self) {
        self.state.lock().thread_alive = false;
        std::mem::forget(self.thread.lock().take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PollPolicy;
    use pyo3::types::PyString;
    use pyo3::Python;

    fn record(id: u64) -> Arc<Record> {
        Python::initialize();
        Python::attach(|py| {
            let name = PyString::new(py, "t").unbind();
            Arc::new(Record::new(
                id,
                name,
                py.None(),
                None,
                None,
                PollPolicy::default(),
            ))
        })
    }

    fn due(at: Instant, id: u64) -> Due {
        Due {
            at,
            record: record(id),
            action: Action::Expire,
        }
    }

    #[test]
    fn due_entries_come_out_earliest_first_and_not_before_time() {
        let poller = Poller::default();
        let ms = Duration::from_millis;
        let records: Vec<Arc<Record>> = (1..=3).map(record).collect();
        let now = Instant::now();
        let at = |i: usize, offset| Due {
            at: now + offset,
            record: records[i].clone(),
            action: Action::Expire,
        };
        assert!(poller.schedule([at(2, ms(60)), at(0, ms(0)), at(1, ms(30))]));
        let first = poller.next_batch().unwrap();
        assert_eq!(
            first.iter().map(|d| d.record.id).collect::<Vec<_>>(),
            vec![1]
        );
        let mut later: Vec<u64> = Vec::new();
        while later.len() < 2 {
            let batch = poller.next_batch().unwrap();
            assert!(batch.iter().all(|d| d.at <= Instant::now()));
            later.extend(batch.iter().map(|d| d.record.id));
        }
        assert_eq!(later, vec![2, 3]);
        assert!(now.elapsed() >= ms(60));
    }

    #[test]
    fn equal_deadlines_keep_their_order() {
        let poller = Poller::default();
        let at = Instant::now();
        poller.schedule((1..=5).map(|id| due(at, id)));
        let ids: Vec<u64> = poller
            .next_batch()
            .unwrap()
            .iter()
            .map(|d| d.record.id)
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn stop_hands_back_every_entry_and_ends_the_loop() {
        let poller = Poller::default();
        poller.schedule([due(Instant::now() + Duration::from_secs(60), 1)]);
        assert_eq!(poller.stop().len(), 1);
        assert!(poller.next_batch().is_none());
        assert!(
            !poller.schedule([due(Instant::now(), 2)]),
            "no thread after stop"
        );
    }
}
