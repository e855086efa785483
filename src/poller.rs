//! The poller: one thread and a deadline queue for every timed action.
//!
//! Every timed action lives in one deadline queue (`deadlines.rs`):
//! starting a polling task, polling it again, and expiring a task at its
//! timeout. The poller thread sleeps until the earliest entry is due, takes
//! every due entry (up to `MAX_BATCH`), and handles them under one GIL
//! acquisition.
//!
//! A `get_output()` that blocks would hold up every other poll, so a
//! watchdog thread (which never touches Python) starts an extra poller when
//! no entry was handled for `POLL_STALL_BOUND` while work waited; extras
//! leave when they run out of work. The poller starts and joins its own
//! threads; what an entry means is its owner's business (the `Polled` trait).

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use crate::deadlines::at_once;
use crate::deadlines::Deadlines;
use crate::fork::{forget_waiters, release_in_child};
use crate::record::Record;

/// The longest one blocked `get_output()` (or polling `run()`) call holds up
/// the polling of other tasks: then the watchdog starts another poller.
pub const POLL_STALL_BOUND: Duration = Duration::from_millis(100);

/// What holds a poller and handles its due entries.
pub trait Polled: Send + Sync + 'static {
    fn poller(&self) -> &Poller;

    /// Handles one due entry, attached; an entry to schedule again goes in
    /// `again`. Contains its own panics, so that one bad task never kills a
    /// poller thread.
    fn handle_due(self: &Arc<Self>, py: Python<'_>, due: &Due, again: &mut Vec<Due>);

    /// Housekeeping the owner asked for with `Poller::chore_at`, run on the
    /// main poller thread, attached. Returns when it is next due.
    fn chore(self: &Arc<Self>, py: Python<'_>) -> Option<Instant>;
}

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
    /// A waiting task's start time came (a delay, a retry's back-off).
    Release,
    /// The task's rate limit may let more tasks through.
    Wake,
}

pub struct Due {
    pub at: Instant,
    pub record: Arc<Record>,
    pub action: Action,
}

#[derive(Default)]
struct PollerState {
    heap: Deadlines<Due>,
    /// Due entries taken off the heap, not handled yet: any poller thread may
    /// take them, so one blocked `get_output()` does not hold up its batch.
    ready: VecDeque<Due>,
    /// When the sleeping main poller plans to wake; None while it works.
    sleeping_until: Option<Instant>,
    /// When the owner's housekeeping is next due.
    chore_at: Option<Instant>,
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
    /// Entries handled so far: the watchdog's sign of progress.
    handled: AtomicU64,
}

impl Poller {
    /// Adds entries for `owner` (whose poller this is), starting the poller
    /// thread and its watchdog if they are not running.
    pub fn schedule<O: Polled>(
        &self,
        owner: &Arc<O>,
        entries: impl IntoIterator<Item = Due>,
    ) -> std::io::Result<()> {
        if self.add(entries) {
            Self::start(owner)
        } else {
            Ok(())
        }
    }

    /// Starts the poller thread and its watchdog before any work arrives,
    /// so that no submit pays for them.
    pub fn warm_up<O: Polled>(&self, owner: &Arc<O>) -> std::io::Result<()> {
        if self.reserve_main() {
            Self::start(owner)
        } else {
            Ok(())
        }
    }

    /// Adds entries. Returns true when the main poller thread (reserved now)
    /// must be started.
    fn add(&self, entries: impl IntoIterator<Item = Due>) -> bool {
        let mut s = self.state.lock();
        let mut earliest: Option<Instant> = None;
        for due in entries {
            earliest = Some(earliest.map_or(due.at, |e| e.min(due.at)));
            s.heap.push(due.at, due.record.plan().priority, due);
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
            // Woken after the lock is let go: notified under it, the
            // poller could be handed the lock before it runs again, and a
            // submitter's next add would wait for it to be scheduled.
            drop(s);
            self.wake.notify_one();
        }
        false
    }

    /// Starts the reserved main poller thread and the watchdog.
    fn start<O: Polled>(owner: &Arc<O>) -> std::io::Result<()> {
        let poller = owner.poller();
        if let Err(err) = Self::start_thread(owner, false) {
            let mut s = poller.state.lock();
            s.threads -= 1;
            s.main_alive = false;
            s.watchdog_alive = false;
            return Err(err);
        }
        let watched = owner.clone();
        let watchdog = thread::Builder::new()
            .name("taskrunner-watchdog".into())
            .spawn(move || Self::watch(&watched));
        match watchdog {
            Ok(handle) => poller.keep_handle(handle),
            // Polling goes on; only a blocked get_output() is no longer bounded.
            Err(_) => poller.state.lock().watchdog_alive = false,
        }
        Ok(())
    }

    /// Starts a poller thread whose place is already counted in `threads`.
    fn start_thread<O: Polled>(owner: &Arc<O>, extra: bool) -> std::io::Result<()> {
        let polling = owner.clone();
        let handle = thread::Builder::new()
            .name("taskrunner-poller".into())
            .spawn(move || Self::run(&polling, extra))?;
        owner.poller().keep_handle(handle);
        Ok(())
    }

    fn keep_handle(&self, handle: JoinHandle<()>) {
        let mut handles = self.handles.lock();
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }

    /// A poller thread's body. The main poller sleeps until work is due; an
    /// extra one (started by the watchdog) leaves when it runs out of work.
    fn run<O: Polled>(owner: &Arc<O>, extra: bool) {
        // One Python thread state for the thread's life (see `Pool::run_worker`).
        Python::attach(|py| py.detach(|| Self::poll_until_stopped(owner, extra)));
    }

    fn poll_until_stopped<O: Polled>(owner: &Arc<O>, extra: bool) {
        let poller = owner.poller();
        loop {
            let go_on = if extra {
                poller.extra_has_work()
            } else {
                poller.wait_due()
            };
            if !go_on {
                return;
            }
            if !extra && poller.take_chore(Instant::now()) {
                if let Some(next) = Python::attach(|py| owner.chore(py)) {
                    poller.chore_at(next);
                }
            }
            poller.fill_ready();
            let mut again = Vec::new();
            Python::attach(|py| {
                let mut refilled = false;
                for _ in 0..MAX_BATCH {
                    let mut due = poller.take_ready();
                    if due.is_none() && !refilled {
                        // What fell due while this thread waited for the GIL rides along.
                        refilled = true;
                        poller.fill_ready();
                        due = poller.take_ready();
                    }
                    let Some(due) = due else {
                        break;
                    };
                    owner.handle_due(py, &due, &mut again);
                    poller.handled.fetch_add(1, Ordering::Relaxed);
                }
            });
            // This thread is a poller: rescheduling never needs to start one.
            poller.add(again);
        }
    }

    /// The watchdog's body: starts an extra poller when a `get_output()` (or
    /// `run()`) call has blocked every poller for `POLL_STALL_BOUND` while
    /// work waits. Never touches Python.
    fn watch<O: Polled>(owner: &Arc<O>) {
        let poller = owner.poller();
        let mut handled = poller.handled();
        while poller.watchdog_sleep(POLL_STALL_BOUND) {
            if poller.stalled(handled, POLL_STALL_BOUND / 2)
                && Self::start_thread(owner, true).is_err()
            {
                poller.state.lock().threads -= 1;
            }
            handled = poller.handled();
        }
    }

    /// Asks for the owner's housekeeping at `at` (or earlier, if it is due sooner).
    pub fn chore_at(&self, at: Instant) {
        let mut s = self.state.lock();
        if s.chore_at.is_some_and(|t| t <= at) {
            return;
        }
        s.chore_at = Some(at);
        if s.sleeping_until.is_some_and(|t| at < t) {
            self.wake.notify_one();
        }
    }

    /// True (and the chore taken) when the housekeeping is due.
    fn take_chore(&self, now: Instant) -> bool {
        let mut s = self.state.lock();
        let due = s.chore_at.is_some_and(|t| t <= now);
        if due {
            s.chore_at = None;
        }
        due
    }

    fn has_work(s: &PollerState, now: Instant) -> bool {
        !s.ready.is_empty() || s.heap.next_at().is_some_and(|at| at <= now)
    }

    /// The main poller sleeps here (detached) until something is due; false
    /// when it must stop.
    fn wait_due(&self) -> bool {
        let mut s = self.state.lock();
        loop {
            if s.stop {
                s.main_alive = false;
                self.thread_exits(&mut s);
                return false;
            }
            let now = Instant::now();
            if Self::has_work(&s, now) || s.chore_at.is_some_and(|t| t <= now) {
                return true;
            }
            let next_entry = s.heap.next_at().unwrap_or(now + IDLE_WAKE);
            let at = s.chore_at.map_or(next_entry, |t| t.min(next_entry));
            s.sleeping_until = Some(at);
            self.wake.wait_until(&mut s, at);
            s.sleeping_until = None;
        }
    }

    /// An extra poller goes on while there is work; false when it should exit.
    fn extra_has_work(&self) -> bool {
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
    fn take_ready(&self) -> Option<Due> {
        self.state.lock().ready.pop_front()
    }

    /// Moves every entry due now (up to `MAX_BATCH`) from the heap to the
    /// ready queue, if that is empty. Heap work is cache-heavy: done detached
    /// before a batch, and once more attached for what fell due meanwhile.
    fn fill_ready(&self) {
        let mut s = self.state.lock();
        if !s.ready.is_empty() {
            return;
        }
        let now = Instant::now();
        while s.ready.len() < MAX_BATCH {
            let Some(due) = s.heap.pop_due(now) else {
                break;
            };
            s.ready.push_back(due);
        }
    }

    /// Reserves the main poller thread if it is not running; true to start it.
    fn reserve_main(&self) -> bool {
        let mut s = self.state.lock();
        if s.main_alive || s.stop {
            return false;
        }
        s.main_alive = true;
        s.watchdog_alive = true;
        s.threads += 1;
        true
    }

    /// The watchdog's wait: false once the poller stops.
    fn watchdog_sleep(&self, period: Duration) -> bool {
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
    fn stalled(&self, handled_before: u64, grace: Duration) -> bool {
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

    fn handled(&self) -> u64 {
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
        let mut all: Vec<Due> = s.ready.drain(..).collect();
        all.extend(s.heap.drain());
        all
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
        release_in_child(&self.state);
        release_in_child(&self.handles);
        forget_waiters(&self.wake);
        forget_waiters(&self.stopped);
    }

    /// In a forked child the threads are gone: let the next schedule start them.
    pub fn forget_threads(&self) {
        let mut s = self.state.lock();
        s.main_alive = false;
        s.watchdog_alive = false;
        s.threads = 0;
        s.sleeping_until = None;
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

    fn record(id: u64) -> Arc<Record> {
        Arc::new(Record::bare(id, None))
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
        assert!(poller.add([at(2, ms(60)), at(0, ms(0)), at(1, ms(30))]));
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
        poller.add((1..=5).map(|id| due(at, id)));
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
        poller.add([due(Instant::now() + Duration::from_secs(60), 1)]);
        assert_eq!(poller.stop().len(), 1);
        assert!(poller.next_batch().is_none());
        assert!(
            !poller.add([due(Instant::now(), 2)]),
            "no thread after stop"
        );
    }
}
