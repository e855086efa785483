//! The table of records: O(1) lookup by id, listing in submit order, and
//! the count of tasks in each state.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::fork::release_in_child;
use crate::record::{Counts, Record, State};

/// Ids are handed out in order, so a deque indexed by `id - first_id` finds a
/// record in O(1); a forgotten record leaves a hole until the front catches up.
struct Table {
    first_id: u64,
    slots: VecDeque<Option<Arc<Record>>>,
}

/// How many finished records to keep, and for how long (seconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retention {
    pub count: usize,
    pub seconds: f64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            count: 100_000,
            seconds: 3600.0,
        }
    }
}

pub struct Store {
    table: Mutex<Table>,
    pub counts: Counts,
    /// Finished ids with their finish time, oldest first.
    finished: Mutex<VecDeque<(u64, f64)>>,
    retention: Retention,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(Retention::default())
    }
}

impl Store {
    pub fn new(retention: Retention) -> Store {
        Store::starting_at(1, retention)
    }

    /// A store whose first new id is `first_id` (ids continue a journal's).
    pub fn starting_at(first_id: u64, retention: Retention) -> Store {
        Store {
            table: Mutex::new(Table {
                first_id: first_id.max(1),
                slots: VecDeque::new(),
            }),
            counts: Default::default(),
            finished: Mutex::new(VecDeque::new()),
            retention,
        }
    }

    /// In a forked child: frees the locks that threads gone with the fork
    /// may have held (the forking thread holds none of ours while it is in Python).
    pub fn release_locks_in_child(&self) {
        release_in_child(&self.finished);
        release_in_child(&self.table);
        for record in self.all() {
            release_in_child(&record.progress);
        }
    }

    /// Notes that a task finished, for retention. Returns when its record
    /// will be too old to keep, if it is the oldest finished one now (no
    /// sweep was due before it).
    pub fn finished(&self, id: u64, at: f64) -> Option<f64> {
        let mut finished = self.finished.lock();
        finished.push_back((id, at));
        (finished.len() == 1).then_some(at + self.retention.seconds)
    }

    /// When the oldest finished record will be too old to keep, if any.
    pub fn next_age_limit(&self) -> Option<f64> {
        let finished = self.finished.lock();
        finished.front().map(|&(_, at)| at + self.retention.seconds)
    }

    /// More finished records are kept than the retention count allows.
    pub fn over_count(&self) -> bool {
        self.finished_count() > self.retention.count
    }

    fn finished_count(&self) -> usize {
        State::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|s| self.count(*s))
            .sum()
    }

    /// Forgets the oldest finished records beyond the retention count or age;
    /// returns them so the caller can release them while attached.
    pub fn expire(&self, now: f64) -> Vec<Arc<Record>> {
        let mut expired = Vec::new();
        let mut finished = self.finished.lock();
        while let Some(&(id, at)) = finished.front() {
            let over =
                self.finished_count() > self.retention.count || now - at > self.retention.seconds;
            let forgotten = self.get(id).is_none();
            if !(over || forgotten) {
                break;
            }
            finished.pop_front();
            expired.extend(self.remove(id));
        }
        // Ids forgotten one by one may sit behind live ones: compact now and then.
        if finished.len() > 2 * self.finished_count() + 1024 {
            finished.retain(|(id, _)| self.get(*id).is_some());
        }
        expired
    }

    /// Assigns the next id and stores the record `make` builds for it.
    pub fn insert(&self, make: impl FnOnce(u64) -> Record) -> Arc<Record> {
        let mut table = self.table.lock();
        let id = table.first_id + table.slots.len() as u64;
        let record = Arc::new(make(id));
        table.slots.push_back(Some(record.clone()));
        drop(table);
        self.counts.added();
        record
    }

    /// Stores a record under its own id, one below every id stored so far
    /// (a task recovered from the journal, taken newest first).
    pub fn insert_recovered(&self, record: Record) -> Arc<Record> {
        let record = Arc::new(record);
        let mut table = self.table.lock();
        while table.first_id > record.id {
            table.slots.push_front(None);
            table.first_id -= 1;
        }
        let index = (record.id - table.first_id) as usize;
        table.slots[index] = Some(record.clone());
        drop(table);
        self.counts.added();
        record
    }

    /// The id the next new task gets.
    pub fn next_id(&self) -> u64 {
        let table = self.table.lock();
        table.first_id + table.slots.len() as u64
    }

    pub fn get(&self, id: u64) -> Option<Arc<Record>> {
        let table = self.table.lock();
        let index = id.checked_sub(table.first_id)?;
        table.slots.get(index as usize)?.clone()
    }

    /// The state of a record, if it is in memory (no reference taken).
    pub fn state_of(&self, id: u64) -> Option<State> {
        let table = self.table.lock();
        let index = id.checked_sub(table.first_id)?;
        Some(table.slots.get(index as usize)?.as_ref()?.state())
    }

    /// Removes a record; returns it so the caller can release it while attached.
    pub fn remove(&self, id: u64) -> Option<Arc<Record>> {
        let mut table = self.table.lock();
        let index = id.checked_sub(table.first_id)? as usize;
        let record = table.slots.get_mut(index)?.take()?;
        while let Some(None) = table.slots.front() {
            table.slots.pop_front();
            table.first_id += 1;
        }
        drop(table);
        self.counts.removed(record.state());
        Some(record)
    }

    /// Every record, in submit order.
    pub fn all(&self) -> Vec<Arc<Record>> {
        self.table.lock().slots.iter().flatten().cloned().collect()
    }

    pub fn count(&self, state: State) -> usize {
        self.counts.get(state)
    }

    pub fn unfinished(&self) -> usize {
        self.count(State::Pending) + self.count(State::Running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::PyString;
    use pyo3::Python;

    fn store_with(n: usize) -> Store {
        Python::initialize();
        let store = Store::default();
        Python::attach(|py| {
            for _ in 0..n {
                store.insert(|id| {
                    let name = PyString::new(py, "t").unbind();
                    Record::new(id, name, py.None(), None, None)
                });
            }
        });
        store
    }

    #[test]
    fn ids_are_sequential_and_found_in_constant_time() {
        let store = store_with(5);
        assert_eq!(
            store.all().iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(store.get(3).unwrap().id, 3);
        assert!(store.get(0).is_none() && store.get(6).is_none());
        assert_eq!(store.count(State::Pending), 5);
    }

    #[test]
    fn finished_records_beyond_retention_are_forgotten_oldest_first() {
        Python::initialize();
        let store = Store::new(Retention {
            count: 2,
            seconds: 100.0,
        });
        Python::attach(|py| {
            for _ in 0..4 {
                let record = store.insert(|id| {
                    Record::new(id, PyString::new(py, "t").unbind(), py.None(), None, None)
                });
                record.finish(crate::record::Outcome::Cancelled, &store.counts);
                store.finished(record.id, 10.0 + record.id as f64);
            }
            let expired: Vec<u64> = store.expire(20.0).iter().map(|r| r.id).collect();
            assert_eq!(expired, vec![1, 2]);
            // Age: at t=113, the record finished at 13 is over 100 s old.
            let expired: Vec<u64> = store.expire(113.5).iter().map(|r| r.id).collect();
            assert_eq!(expired, vec![3]);
        });
        assert_eq!(
            store.all().iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![4]
        );
    }

    #[test]
    fn removal_leaves_a_hole_and_the_front_moves_up() {
        let store = store_with(4);
        Python::attach(|_| {
            assert!(store.remove(2).is_some());
            assert!(store.get(2).is_none() && store.remove(2).is_none());
            assert!(store.remove(1).is_some());
        });
        assert_eq!(store.table.lock().first_id, 3);
        assert_eq!(store.get(4).unwrap().id, 4);
        assert_eq!(store.all().len(), 2);
        assert_eq!(store.count(State::Pending), 2);
    }
}
