//! Fan-out of state changes to whoever listens: waits, `as_completed`, event
//! streams, and anything else that must know when a task changed. This is
//! the one tap: the engine publishes every transition here and nowhere else.
//! Costs one atomic load per change while nobody listens.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::record::{Record, State};

/// A task entered `state`. The record is there for listeners that need more
/// than the id (it may have moved on since).
#[derive(Clone)]
pub struct Event {
    pub id: u64,
    pub state: State,
    pub record: Arc<Record>,
}

struct Subscriber {
    key: u64,
    tx: Sender<Event>,
    /// Listens to every change, not only final ones.
    every_change: bool,
    /// Set when a bounded subscriber missed an event because it was full.
    lagged: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct Events {
    subscribers: Mutex<Vec<Subscriber>>,
    listening: AtomicUsize,
    next_key: AtomicUsize,
}

/// One listener's end. Unsubscribes when dropped.
pub struct Subscription {
    events: Arc<Events>,
    key: u64,
    pub rx: Receiver<Event>,
    pub lagged: Arc<AtomicBool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.events.subscribers.lock();
        subs.retain(|s| s.key != self.key);
        self.events.listening.store(subs.len(), Ordering::Release);
    }
}

impl Events {
    /// `capacity` None is unbounded; a full bounded listener drops events and is flagged lagged.
    pub fn subscribe(
        self: &Arc<Self>,
        every_change: bool,
        capacity: Option<usize>,
    ) -> Subscription {
        let (tx, rx) = match capacity {
            Some(n) => crossbeam_channel::bounded(n),
            None => crossbeam_channel::unbounded(),
        };
        let key = self.next_key.fetch_add(1, Ordering::Relaxed) as u64;
        let lagged = Arc::new(AtomicBool::new(false));
        let mut subs = self.subscribers.lock();
        subs.push(Subscriber {
            key,
            tx,
            every_change,
            lagged: lagged.clone(),
        });
        self.listening.store(subs.len(), Ordering::Release);
        Subscription {
            events: self.clone(),
            key,
            rx,
            lagged,
        }
    }

    pub fn release_locks_in_child(&self) {
        crate::fork::release_in_child(&self.subscribers);
    }

    pub fn publish(&self, record: &Arc<Record>, state: State) {
        if self.listening.load(Ordering::Acquire) == 0 {
            return;
        }
        let event = Event {
            id: record.id,
            state,
            record: record.clone(),
        };
        let final_change = state.is_final();
        for sub in self.subscribers.lock().iter() {
            if !(final_change || sub.every_change) {
                continue;
            }
            if let Err(TrySendError::Full(_)) = sub.tx.try_send(event.clone()) {
                sub.lagged.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> Arc<Record> {
        Arc::new(Record::bare(id, None))
    }

    #[test]
    fn final_only_listeners_skip_running() {
        let events = Arc::new(Events::default());
        let finals = events.subscribe(false, None);
        let all = events.subscribe(true, None);
        events.publish(&record(1), State::Running);
        events.publish(&record(1), State::Succeeded);
        assert_eq!(finals.rx.try_iter().count(), 1);
        assert_eq!(all.rx.try_iter().count(), 2);
    }

    #[test]
    fn full_listener_is_flagged_lagged() {
        let events = Arc::new(Events::default());
        let sub = events.subscribe(true, Some(1));
        events.publish(&record(1), State::Running);
        events.publish(&record(2), State::Running);
        assert!(sub.lagged.load(Ordering::Relaxed));
        assert_eq!(sub.rx.try_iter().count(), 1);
    }

    #[test]
    fn dropping_a_subscription_unsubscribes() {
        let events = Arc::new(Events::default());
        let sub = events.subscribe(false, None);
        assert_eq!(events.listening.load(Ordering::Relaxed), 1);
        drop(sub);
        assert_eq!(events.listening.load(Ordering::Relaxed), 0);
    }
}
