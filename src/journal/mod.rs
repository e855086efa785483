//! A crash-safe journal of tasks in an SQLite file (WAL mode): each submit
//! and each change of a task is written, so that no accepted task is lost
//! and history outlives the process. Values arrive already encoded as bytes:
//! nothing here touches Python.
//!
//! One writer thread owns the write connection and commits in batches;
//! reads use a connection of their own. One live process owns a file
//! (`owner.rs`); a viewer may read it meanwhile (`Journal::open_read_only`).

// A key written apart from its task, the failure count and the schema
// version serve the tests only so far.
#![allow(dead_code, unused_imports)]

mod attempts;
mod error;
mod minutes;
mod owner;
mod query;
mod row;
mod schema;
mod writer;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

pub use attempts::AttemptRow;
pub use error::JournalError;
pub use minutes::MinuteRow;
pub use query::{Filter, IdPage, Page, Reader};
pub use row::{AuditRow, Encoding, ErrorRow, KeyRow, Schedule, Stored, TaskRow, STATES};
pub use schema::VERSION;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use owner::Owner;
use writer::{Msg, Shared};

/// When a commit is on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL`: a commit survives the process dying, and the
    /// last few may be lost if the machine loses power.
    #[default]
    Normal,
    /// `synchronous=FULL`: each commit is synced to disk before it counts.
    Full,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub durability: Durability,
    /// The writer commits at most this often: one transaction per batch.
    pub batch_interval: Duration,
    /// Finished tasks are deleted this long after they finished.
    pub retention: Duration,
    /// Idempotency keys expire this long after they were remembered.
    pub key_retention: Duration,
    /// How often the writer looks for rows past retention.
    pub prune_interval: Duration,
    /// How long `close` keeps retrying rows that fail to write.
    pub close_timeout: Duration,
    /// Caps the file's pages (SQLite `max_page_count`); tests use it to fill the disk.
    pub max_page_count: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Normal,
            batch_interval: Duration::from_millis(2),
            retention: Duration::from_secs(7 * 24 * 3600),
            key_retention: Duration::from_secs(24 * 3600),
            prune_interval: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            max_page_count: None,
        }
    }
}

/// Whether writes are landing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Writes fail (disk full, read-only, ...); the writer keeps the rows
    /// and retries, and turns Ok again once they land.
    Degraded(String),
}

impl Health {
    pub fn reason(&self) -> &str {
        match self {
            Health::Ok => "",
            Health::Degraded(reason) => reason,
        }
    }
}

pub struct Journal {
    path: PathBuf,
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    /// The last sequence number handed out.
    seq: AtomicU64,
    closed: AtomicBool,
    writer: Mutex<Option<JoinHandle<Result<(), JournalError>>>>,
    reader: Reader,
    next_id: u64,
    unfinished: Vec<TaskRow>,
    /// Declared last, so dropped last: the lock outlives both connections.
    /// Released at `close`: the file is then free for another runner, while
    /// this one may still read it (as a viewer does).
    owner: Mutex<Option<Owner>>,
}

impl Journal {
    /// Opens or creates the journal at `path`, migrating an older file, and
    /// starts its writer thread.
    ///
    /// Errors: `InUse` while another live process owns the file; `NotAJournal`,
    /// `Corrupt`, `NewerVersion`, `ReadOnly`, `DiskFull`, or `Io`/`Sqlite`.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Journal, JournalError> {
        let path = path.as_ref().to_path_buf();
        let owner = Owner::acquire(&path)?;
        let conn = schema::open_writer(&path, options.durability, options.max_page_count)?;
        let reader = Reader::open(&path, options.key_retention)?;
        let next_id = reader.next_id()?;
        let unfinished = reader.unfinished()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::new());
        let handle = writer::spawn(conn, path.clone(), rx, shared.clone(), options)?;
        Ok(Journal {
            path,
            tx,
            shared,
            seq: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(handle)),
            reader,
            next_id,
            unfinished,
            owner: Mutex::new(Some(owner)),
        })
    }

    /// Opens a journal to read only, taking no lock: for a viewer while the
    /// owner runs. Refuses an empty file and a newer version.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Reader, JournalError> {
        Reader::open(path.as_ref(), Options::default().key_retention)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id to give the first task of this process: ids are never reused.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The rows that were pending or running when the file was opened: the
    /// tasks the last process left unfinished.
    pub fn unfinished(&self) -> &[TaskRow] {
        &self.unfinished
    }
}

/// Writing: each call queues for the writer thread and returns at once
/// with the write's sequence number, for `wait_committed`.
impl Journal {
    /// Writes a task's whole current row. Refuses a row that could never be
    /// stored (an unknown state, an id above `i64::MAX`, a time that is not
    /// finite): queued, it would fail its batch on every retry.
    pub fn write(&self, row: TaskRow) -> Result<u64, JournalError> {
        self.check_task(&row)?;
        self.send(|seq| Msg::Task(seq, row))
    }

    fn check_task(&self, row: &TaskRow) -> Result<(), JournalError> {
        let times = [Some(row.submitted_at), row.started_at, row.finished_at];
        if !STATES.contains(&row.state)
            || i64::try_from(row.id).is_err()
            || !times.into_iter().flatten().all(f64::is_finite)
        {
            return Err(self.invalid(format!("task {} {row:?}", row.id)));
        }
        Ok(())
    }

    fn check_key(&self, key: &KeyRow) -> Result<(), JournalError> {
        if !key.at.is_finite() || i64::try_from(key.task_id).is_err() {
            return Err(self.invalid(format!("{key:?}")));
        }
        Ok(())
    }

    /// Writes a new task's first row with the idempotency key that started
    /// it: both land in the same commit.
    pub fn write_keyed(&self, row: TaskRow, key: KeyRow) -> Result<u64, JournalError> {
        self.check_task(&row)?;
        self.check_key(&key)?;
        self.send(|seq| Msg::Keyed(seq, row, Box::new(key)))
    }

    /// Remembers that idempotency key `key` started task `task_id` at `at`.
    pub fn remember_key(&self, key: String, task_id: u64, at: f64) -> Result<u64, JournalError> {
        let key = KeyRow { key, task_id, at };
        self.check_key(&key)?;
        self.send(|seq| Msg::Key(seq, key))
    }

    pub fn write_audit(&self, audit: AuditRow) -> Result<u64, JournalError> {
        if !audit.at.is_finite() || audit.task_id.is_some_and(|id| i64::try_from(id).is_err()) {
            return Err(self.invalid(format!("{audit:?}")));
        }
        self.send(|seq| Msg::Audit(seq, audit))
    }

    /// Writes an attempt a task left behind (a retry, a lost run). Refuses
    /// one that could never be stored, as `write` does.
    pub fn write_attempt(&self, attempt: AttemptRow) -> Result<u64, JournalError> {
        let times = [attempt.started_at, attempt.ended_at];
        if i64::try_from(attempt.task_id).is_err()
            || !times.into_iter().flatten().all(f64::is_finite)
        {
            return Err(self.invalid(format!("{attempt:?}")));
        }
        self.send(|seq| Msg::Attempt(seq, attempt))
    }

    /// Writes one minute of history (replacing a row of the same minute).
    pub fn write_minute(&self, minute: MinuteRow) -> Result<u64, JournalError> {
        self.send(|seq| Msg::Minute(seq, minute))
    }

    fn invalid(&self, detail: String) -> JournalError {
        JournalError::InvalidRow {
            path: self.path.clone(),
            detail,
        }
    }

    fn send(&self, msg: impl FnOnce(u64) -> Msg) -> Result<u64, JournalError> {
        let closed = || JournalError::Closed {
            path: self.path.clone(),
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        self.tx.send(msg(seq)).map_err(|_| closed())?;
        Ok(seq)
    }

    /// Waits until write `seq` and every write before it are committed;
    /// false if `timeout` passed first (the journal may be degraded).
    pub fn wait_committed(&self, seq: u64, timeout: Duration) -> bool {
        self.shared.wait_committed(seq, timeout)
    }

    /// Waits until every write sent so far is committed.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.wait_committed(self.seq.load(Ordering::Acquire), timeout)
    }

    pub fn health(&self) -> Health {
        self.shared.health()
    }

    /// Calls `watch` on the writer thread each time the health changes
    /// (Ok to Degraded, and back); it must not wait for anything.
    pub fn watch_health(&self, watch: impl Fn(&Health) + Send + Sync + 'static) {
        self.shared.watch_health(Box::new(watch));
    }

    /// How many commits (and pruning rounds) have failed since open.
    pub fn write_failures(&self) -> u64 {
        self.shared.failures()
    }

    /// Commits what was sent, stops the writer and waits for it. Idempotent;
    /// Drop does it too. Errors with `Unwritten` if rows still failed to
    /// write after `Options::close_timeout`. Writes racing with close may be
    /// refused (`Closed`) or lost.
    pub fn close(&self) -> Result<(), JournalError> {
        let mut writer = self.writer.lock();
        let Some(handle) = writer.take() else {
            return Ok(());
        };
        self.closed.store(true, Ordering::Release);
        // The writer stops at Stop or when the channel disconnects; either way it commits first.
        let _ = self.tx.send(Msg::Stop);
        let stopped = handle.join().unwrap_or_else(|_| {
            Err(JournalError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("the journal's writer thread panicked"),
            })
        });
        drop(self.owner.lock().take());
        stopped
    }
}

impl Journal {
    /// In a forked child: closes the child's descriptor of the lock file,
    /// which the parent's still holds (the lock stays the parent's).
    pub fn forget_owner_in_child(&self) {
        if let Some(mut owner) = self.owner.try_lock() {
            drop(owner.take());
        }
    }
}

/// Reading, on the journal's own read connection: sees what is committed.
impl Journal {
    pub fn get(&self, id: u64) -> Result<Option<TaskRow>, JournalError> {
        self.reader.get(id)
    }

    pub fn page(
        &self,
        filter: &Filter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page, JournalError> {
        self.reader.page(filter, after, limit)
    }

    pub fn page_newest(
        &self,
        filter: &Filter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page, JournalError> {
        self.reader.page_newest(filter, before, limit)
    }

    /// The ids of a page, without their rows (see `Reader::page_ids`).
    pub fn page_ids(
        &self,
        filter: &Filter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> Result<IdPage, JournalError> {
        self.reader.page_ids(filter, cursor, newest_first, limit)
    }

    /// The attempts task `id` made before its last one, oldest first.
    pub fn attempts(&self, id: u64) -> Result<Vec<AttemptRow>, JournalError> {
        self.reader.read(|conn| attempts::attempts_of(conn, id))
    }

    /// The ids of the tasks that start after task `id` (and are still held).
    pub fn dependents(&self, id: u64) -> Result<Vec<u64>, JournalError> {
        self.reader.read(|conn| attempts::dependents_of(conn, id))
    }

    /// The history's minutes from `since` (Unix seconds) on, oldest first.
    pub fn minutes(&self, since: i64) -> Result<Vec<MinuteRow>, JournalError> {
        self.reader.minutes(since)
    }

    /// The task an unexpired key started, once the key is committed.
    pub fn lookup_key(&self, key: &str) -> Result<Option<u64>, JournalError> {
        self.reader.lookup_key(key)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
impl Journal {
    /// Runs `f` on the writer thread, between batches, and waits for it.
    fn on_writer(&self, f: impl FnOnce(&mut writer::Writer) + Send + 'static) {
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let run = move |w: &mut writer::Writer| {
            f(w);
            let _ = done_tx.send(());
        };
        self.tx.send(Msg::Run(Box::new(run))).unwrap();
        done_rx.recv().unwrap();
    }

    fn reader(&self) -> &Reader {
        &self.reader
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
