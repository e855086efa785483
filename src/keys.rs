//! Idempotency keys: the first submit with a key makes the task, and a
//! repeat within the key's lifetime gets that task back, even while the
//! first is still being submitted. Keys live here for this process and in
//! the journal (committed with the task's first row) across processes.

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

use crate::journaling::Journaling;
use crate::record::unix_now;

/// How long a key finds its task: a day, as the journal keeps keys.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The longest key taken, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

enum Entry {
    /// A submit with this key is under way.
    Submitting,
    /// The task the key made, and when.
    Made(u64, f64),
}

#[derive(Default)]
pub struct Keys {
    map: Mutex<HashMap<String, Entry>>,
    /// Signalled when a submit under way settles its key.
    settled: Condvar,
    /// The map's size after the last sweep of expired keys.
    swept_len: Mutex<usize>,
}

/// What a key stands for at submit.
pub enum Claim<'a> {
    /// No task has the key: the caller submits one, and settles the ticket.
    Mine(Ticket<'a>),
    /// The task the key already made.
    Made(u64),
}

/// The right to make the task of a key; dropped unsettled (the submit
/// failed), it frees the key for the next try.
pub struct Ticket<'a> {
    keys: &'a Keys,
    key: String,
    made: Option<u64>,
}

impl Ticket<'_> {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn made(mut self, id: u64) {
        self.made = Some(id);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut map = self.keys.map.lock();
        match self.made {
            Some(id) => {
                map.insert(std::mem::take(&mut self.key), Entry::Made(id, unix_now()));
            }
            None => {
                map.remove(&self.key);
            }
        }
        self.keys.settled.notify_all();
    }
}

impl Keys {
    /// Claims `key`: the task it made (here, or in the journal's earlier
    /// processes), or the right to make it. Waits, detached, while another
    /// thread submits with the same key. The lock is never held while
    /// Python runs, so a thread waiting for it cannot hold the GIL.
    pub fn claim<'a>(
        &'a self,
        py: Python<'_>,
        key: &str,
        journal: Option<&Journaling>,
    ) -> PyResult<Claim<'a>> {
        let fresh_after = unix_now() - KEY_LIFETIME.as_secs_f64();
        py.detach(|| {
            let mut map = self.map.lock();
            loop {
                match map.get(key) {
                    Some(Entry::Submitting) => self.settled.wait(&mut map),
                    Some(&Entry::Made(id, at)) if at >= fresh_after => return Ok(Claim::Made(id)),
                    _ => break,
                }
            }
            if let Some(id) = journal.map(|j| j.task_for_key(key)).transpose()?.flatten() {
                return Ok(Claim::Made(id));
            }
            self.sweep(&mut map, fresh_after);
            map.insert(key.to_owned(), Entry::Submitting);
            Ok(Claim::Mine(Ticket {
                keys: self,
                key: key.to_owned(),
                made: None,
            }))
        })
    }

    /// The task `key` made, if it has made one (a submit with it still under
    /// way is not waited for).
    pub fn made(&self, key: &str, journal: Option<&Journaling>) -> PyResult<Option<u64>> {
        let fresh_after = unix_now() - KEY_LIFETIME.as_secs_f64();
        if let Some(&Entry::Made(id, at)) = self.map.lock().get(key) {
            if at >= fresh_after {
                return Ok(Some(id));
            }
        }
        Ok(journal.map(|j| j.task_for_key(key)).transpose()?.flatten())
    }

    /// Frees a key whose task is gone (forgotten, or pruned from the
    /// journal), unless another submit took it meanwhile.
    pub fn forget(&self, key: &str, id: u64) {
        let mut map = self.map.lock();
        if matches!(map.get(key), Some(&Entry::Made(made, _)) if made == id) {
            map.remove(key);
        }
    }

    /// Drops expired keys once the map has doubled since the last sweep.
    fn sweep(&self, map: &mut HashMap<String, Entry>, fresh_after: f64) {
        let mut swept_len = self.swept_len.lock();
        if map.len() < 2 * *swept_len + 1024 {
            return;
        }
        map.retain(|_, e| !matches!(*e, Entry::Made(_, at) if at < fresh_after));
        *swept_len = map.len();
    }

    /// In a forked child: the parent's threads held these locks, if anyone.
    pub fn release_locks_in_child(&self) {
        crate::fork::release_in_child(&self.map);
        crate::fork::release_in_child(&self.swept_len);
        crate::fork::forget_waiters(&self.settled);
    }
}
