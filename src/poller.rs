//! The deadline queue behind the one poller thread.
//!
//! Every timed action lives in one binary heap: starting a polling task,
//! polling it again, and expiring a task at its timeout. The poller thread
//! sleeps until the earliest entry is due, takes every due entry (up to
//! `MAX_BATCH`), and handles them under one GIL acquisition.

use parking_lot::{Condvar, Mutex};
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::record::Record;

/// Entries handled per GIL acquisition; bounds how long the poller holds it.
pub const MAX_BATCH: usize = 4096;

/// The most poller threads: one, plus extras while calls block.
pub const MAX_POLLERS: usize = 4;

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
    /// Due entries taken off the heap, not handled yet: any poller thread may
    /// take them, so one blocked `get_output()` does not hold up its batch.
    ready: VecDeque<Due>,
    seq: u64,
    /// When the sleeping main poller plans to wake; None while it works.
    sleeping_until: Option<Instant>,
    main_alive: bool,
    /// Poller threads alive: the main one and extras started after a stall.
    threads: usize,
    watchdog_alive: bool,
    stop: bool,
}

#[derive(Default)]
pub struct Poller {
    state: Mutex<PollerState>,
    wake: Condvar,
    stopped: Condvar,
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// Polling tasks now running, for the poll-rate budget.
    pub active: AtomicUsize,
    /// Entries handled so far: the watchdog's sign of progress.
    handled: AtomicU64,
}

impl Poller {
    /// Adds entries. Returns true when the caller must start the main poller
    /// thread and the watchdog.
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
        if !s.main_alive {
            drop(s);
            return self.reserve_main();
        }
        if s.sleeping_until.is_some_and(|t| earliest < t) {
            self.wake.notify_one();
        }
        false
    }

    pub fn started(&self, handle: JoinHandle<()>) {
        let mut handles = self.handles.lock();
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }

    /// A poller thread could not be started.
    pub fn start_failed(&self, main: bool) {
        let mut s = self.state.lock();
        s.threads -= 1;
        if main {
            s.main_alive = false;
            s.watchdog_alive = false;
        }
    }

    /// The watchdog could not be started.
    pub fn watchdog_failed(&self) {
        self.state.lock().watchdog_alive = false;
    }

    fn has_work(s: &PollerState, now: Instant) -> bool {
        !s.ready.is_empty() || s.heap.peek().is_some_and(|e| e.due.at <= now)
    }

    /// The main poller sleeps here (detached) until something is due; false
    /// when it must stop.
    pub fn wait_due(&self) -> bool {
        let mut s = self.state.lock();
        loop {
            if s.stop {
                s.main_alive = false;
                self.thread_exits(&mut s);
                return false;
            }
            let now = Instant::now();
            if Self::has_work(&s, now) {
                return true;
            }
            let at = s.heap.peek().map_or(now + IDLE_WAKE, |e| e.due.at);
            s.sleeping_until = Some(at);
            self.wake.wait_until(&mut s, at);
            s.sleeping_until = None;
        }
    }

    /// An extra poller goes on while there is work; false when it should exit.
    pub fn extra_has_work(&self) -> bool {
        let mut s = self.state.lock();
        if !s.stop && Self::has_work(&s, Instant::now()) {
            return true;
        }
        self.thread_exits(&mut s);
        false
    }

    fn thread_exits(&self, s: &mut PollerState) {
        s.threads -= 1;
        self.stopped.notify_all();
    }

    /// The next due entry, refilling the ready queue from the heap (every
    /// entry due now, up to `MAX_BATCH`) when it runs dry. Called attached,
    /// so that what fell due while waiting for the GIL rides along.
    pub fn take_ready(&self) -> Option<Due> {
        self.state.lock().ready.pop_front()
    }

    /// Moves every entry due now (up to `MAX_BATCH`) from the heap to the
    /// ready queue, if that is empty. Heap work is cache-heavy: done detached
    /// before a batch, and once more attached for what fell due meanwhile.
    pub fn fill_ready(&self) {
        let mut s = self.state.lock();
        if !s.ready.is_empty() {
            return;
        }
        let now = Instant::now();
        while s.ready.len() < MAX_BATCH && s.heap.peek().is_some_and(|e| e.due.at <= now) {
            let due = s.heap.pop().expect("peeked").due;
            s.ready.push_back(due);
        }
    }

    /// Reserves the main poller thread if it is not running; true to start it.
    pub fn reserve_main(&self) -> bool {
        let mut s = self.state.lock();
        if s.main_alive || s.stop {
            return false;
        }
        s.main_alive = true;
        s.watchdog_alive = true;
        s.threads += 1;
        true
    }

    pub fn note_handled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    /// The watchdog's wait: false once the poller stops.
    pub fn watchdog_sleep(&self, period: Duration) -> bool {
        let mut s = self.state.lock();
        if !s.stop {
            self.stopped.wait_for(&mut s, period);
        }
        if s.stop {
            s.watchdog_alive = false;
            self.stopped.notify_all();
            return false;
        }
        true
    }

    /// True (and an extra thread reserved) when work has waited for a whole
    /// watchdog period with no entry handled: some call blocks every poller.
    pub fn stalled(&self, handled_before: u64, grace: Duration) -> bool {
        let mut s = self.state.lock();
        let overdue = Instant::now()
            .checked_sub(grace)
            .is_some_and(|t| Self::has_work(&s, t));
        let stuck = self.handled() == handled_before && (overdue || !s.ready.is_empty());
        if stuck && !s.stop && s.threads < MAX_POLLERS {
            s.threads += 1;
            return true;
        }
        false
    }

    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Tells every poller thread to stop; drops every entry. Returns the
    /// dropped entries so the caller can release them attached.
    pub fn stop(&self) -> Vec<Due> {
        let mut s = self.state.lock();
        s.stop = true;
        self.wake.notify_all();
        self.stopped.notify_all();
        Self::take_all(&mut s)
    }

    fn take_all(s: &mut PollerState) -> Vec<Due> {
        let heap = std::mem::take(&mut s.heap);
        s.ready
            .drain(..)
            .chain(heap.into_iter().map(|e| e.due))
            .collect()
    }

    /// Removes every entry without stopping; returns them for release.
    pub fn clear(&self) -> Vec<Due> {
        Self::take_all(&mut self.state.lock())
    }

    /// Waits up to `timeout` for every poller thread and the watchdog to
    /// exit; true once they have.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        while s.threads > 0 || s.watchdog_alive {
            if self.stopped.wait_until(&mut s, deadline).timed_out() {
                return false;
            }
        }
        drop(s);
        let current = std::thread::current().id();
        for handle in self.handles.lock().drain(..) {
            if handle.thread().id() != current {
                let _ = handle.join();
            }
        }
        true
    }

    /// True on one of the poller threads.
    pub fn is_current_thread(&self) -> bool {
        let current = std::thread::current().id();
        self.handles
            .lock()
            .iter()
            .any(|h| h.thread().id() == current && !h.is_finished())
    }

    pub fn queue_len(&self) -> usize {
        let s = self.state.lock();
        s.heap.len() + s.ready.len()
    }

    pub fn release_locks_in_child(&self) {
        crate::store::release_in_child(&self.state);
        crate::store::release_in_child(&self.handles);
    }

    /// In a forked child the threads are gone: let the next schedule start them.
    pub fn forget_threads(&self) {
        let mut s = self.state.lock();
        s.main_alive = false;
        s.watchdog_alive = false;
        s.threads = 0;
        std::mem::forget(std::mem::take(&mut *self.handles.lock()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Poller {
        /// Waits for due entries and takes all of them.
        fn next_batch(&self) -> Option<Vec<Due>> {
            if !self.wait_due() {
                return None;
            }
            self.fill_ready();
            Some(std::iter::from_fn(|| self.take_ready()).collect())
        }
    }
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
