//! The writer thread: the only one that writes the file. It gathers what
//! arrives, commits it as one transaction at most once per batch interval,
//! then tells waiters how far it got. It also prunes old rows, and keeps
//! what it could not write until writing works again.

use crate::idmap::IdMap;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::{Condvar, Mutex};
use rusqlite::{params, Connection, TransactionBehavior};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::attempts::{write_dependents, AttemptRow, INSERT_ATTEMPT};
use super::error::JournalError;
use super::minutes::{self, MinuteRow};
use super::row::{to_i64, AuditRow, KeyRow, TaskRow};
use super::schema::{
    BLOCK_SHIFT, INSERT_AUDIT, PRUNE_BLOCKS, RAISE_HIGH_WATER, UPSERT_KEY, UPSERT_TASK, WIDEN_BLOCK,
};
use super::{unix_now, Health, Options};

/// Writes in one transaction at most, so that a backlog commits in steps.
const MAX_BATCH: usize = 65_536;
/// Rows deleted per pruning transaction, and transactions per pruning round.
const PRUNE_CHUNK: i64 = 1_000;
const PRUNE_CHUNKS_PER_ROUND: usize = 20;
/// Back-off between attempts while writes fail.
const FIRST_RETRY: Duration = Duration::from_millis(10);
const LAST_RETRY: Duration = Duration::from_secs(1);

// Nearly every message is a Task: boxing it would cost an allocation per write.
#[allow(clippy::large_enum_variant)]
pub enum Msg {
    /// Each write carries its sequence number.
    Task(u64, TaskRow),
    Key(u64, KeyRow),
    /// A task's first row and its idempotency key, for the same commit.
    /// The key is boxed: the largest variant sets every message's size.
    Keyed(u64, TaskRow, Box<KeyRow>),
    Audit(u64, AuditRow),
    /// An attempt a task left behind (a retry, a lost run).
    Attempt(u64, AttemptRow),
    Minute(u64, MinuteRow),
    Stop,
    #[cfg(test)]
    Run(Box<dyn FnOnce(&mut Writer) + Send>),
}

/// What the writer tells the journal's other threads.
pub struct Shared {
    /// Every write with a sequence number up to this one is committed.
    committed: Mutex<u64>,
    advanced: Condvar,
    health: Mutex<Health>,
    failures: AtomicU64,
    watcher: Mutex<Option<HealthWatcher>>,
}

type HealthWatcher = Box<dyn Fn(&Health) + Send + Sync>;

impl Shared {
    pub fn new() -> Shared {
        Shared {
            committed: Mutex::new(0),
            advanced: Condvar::new(),
            health: Mutex::new(Health::Ok),
            failures: AtomicU64::new(0),
            watcher: Mutex::new(None),
        }
    }

    pub fn wait_committed(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = later(Instant::now(), timeout);
        let mut committed = self.committed.lock();
        while *committed < seq {
            if self
                .advanced
                .wait_until(&mut committed, deadline)
                .timed_out()
            {
                return *committed >= seq;
            }
        }
        true
    }

    pub fn health(&self) -> Health {
        self.health.lock().clone()
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn watch_health(&self, watch: HealthWatcher) {
        *self.watcher.lock() = Some(watch);
    }

    fn failed(&self, reason: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.set_health(Health::Degraded(reason));
    }

    /// Sets the health; the watcher hears of a change between Ok and Degraded.
    fn set_health(&self, health: Health) {
        let was_ok = std::mem::replace(&mut *self.health.lock(), health.clone()) == Health::Ok;
        if was_ok != (health == Health::Ok) {
            if let Some(watch) = &*self.watcher.lock() {
                watch(&health);
            }
        }
    }
}

/// What is received and not yet committed. A task's writes collapse as they
/// arrive, by the rule the SQL upsert applies, so one id costs one row.
#[derive(Default)]
struct Backlog {
    tasks: Vec<TaskRow>,
    /// Index in `tasks` of each id's last kept row.
    last: IdMap<usize>,
    keys: Vec<KeyRow>,
    audits: Vec<AuditRow>,
    attempts: Vec<AttemptRow>,
    minutes: Vec<MinuteRow>,
    /// The sequence numbers received, as ranges (start, end exclusive).
    seqs: Vec<(u64, u64)>,
    writes: usize,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.writes == 0
    }

    fn received(&mut self, seq: u64) {
        self.writes += 1;
        match self.seqs.last_mut() {
            Some(range) if range.1 == seq => range.1 += 1,
            _ => self.seqs.push((seq, seq + 1)),
        }
    }

    /// Keeps only what can still matter, whatever the stored row is: a write
    /// older than the kept one never lands, and a newer one replaces a kept
    /// row that is not final. After a final row, a later attempt's row is
    /// kept too: it lands if the stored row is that later attempt's.
    fn add_task(&mut self, row: TaskRow) {
        let Some(&i) = self.last.get(&row.id) else {
            self.last.insert(row.id, self.tasks.len());
            self.tasks.push(row);
            return;
        };
        let kept = &self.tasks[i];
        let (new, old) = (row.order_key(), kept.order_key());
        if new < old {
            return;
        }
        // A kept row with a recipe stays, and the new one goes after it: the
        // upsert keeps a stored recipe when a later write has none, so the
        // two must land one by one (only a durable task's submit has one).
        let keeps_recipe = kept.recipe.is_some() && row.recipe.is_none();
        if !kept.is_final() && !keeps_recipe {
            self.tasks[i] = row;
        } else if new > old || keeps_recipe {
            self.last.insert(row.id, self.tasks.len());
            self.tasks.push(row);
        }
    }

    /// Empties the backlog, keeping its allocations for the next batch.
    fn clear(&mut self) {
        if self.tasks.capacity() > MAX_BATCH {
            // After a long outage: give the memory back.
            *self = Backlog::default();
            return;
        }
        self.tasks.clear();
        self.last.clear();
        self.keys.clear();
        self.audits.clear();
        self.attempts.clear();
        self.minutes.clear();
        self.seqs.clear();
        self.writes = 0;
    }
}

pub struct Writer {
    conn: Connection,
    path: PathBuf,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    options: Options,
    backlog: Backlog,
    /// Committed ranges above `committed` (writes can arrive out of order).
    done_above: BTreeMap<u64, u64>,
    committed: u64,
    last_commit: Instant,
    retry_at: Instant,
    backoff: Duration,
    degraded: bool,
    prune_at: Instant,
    /// Rows committed since pruning last caught up: a round deletes at least
    /// as many before it yields, so that pruning keeps pace with a stream
    /// of writes that never lets up.
    owed: usize,
}

pub fn spawn(
    conn: Connection,
    path: PathBuf,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    options: Options,
) -> Result<JoinHandle<Result<(), JournalError>>, JournalError> {
    let now = Instant::now();
    let writer = Writer {
        conn,
        path: path.clone(),
        rx,
        shared,
        prune_at: now,
        options,
        backlog: Backlog::default(),
        done_above: BTreeMap::new(),
        committed: 0,
        last_commit: now,
        retry_at: now,
        backoff: FIRST_RETRY,
        degraded: false,
        owed: 0,
    };
    std::thread::Builder::new()
        .name("taskrunner-journal".into())
        .spawn(move || writer.run())
        .map_err(|source| JournalError::Io { path, source })
}

impl Writer {
    fn run(mut self) -> Result<(), JournalError> {
        loop {
            let stop = match self.rx.recv_deadline(self.next_wake()) {
                Ok(msg) => self.take(msg) || self.drain(),
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            if stop {
                return self.finish();
            }
            let now = Instant::now();
            if !self.backlog.is_empty() && now >= self.commit_at() {
                self.commit();
            }
            if self.backlog.is_empty() && now >= self.prune_at {
                self.prune();
            }
        }
    }

    /// Group commit: at most one commit per batch interval, start to start,
    /// so a write after a quiet spell commits at once and a busy stream
    /// commits in batches. A failed commit waits for its back-off.
    fn commit_at(&self) -> Instant {
        if !self.degraded && self.backlog.writes >= MAX_BATCH {
            return self.last_commit;
        }
        later(self.last_commit, self.options.batch_interval).max(self.retry_at)
    }

    fn next_wake(&self) -> Instant {
        if self.backlog.is_empty() {
            self.prune_at
        } else {
            self.commit_at()
        }
    }

    /// Files one message; true for Stop.
    fn take(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Task(seq, row) => {
                self.backlog.received(seq);
                self.backlog.add_task(row);
            }
            Msg::Key(seq, key) => {
                self.backlog.received(seq);
                self.backlog.keys.push(key);
            }
            Msg::Keyed(seq, row, key) => {
                self.backlog.received(seq);
                self.backlog.add_task(row);
                self.backlog.keys.push(*key);
            }
            Msg::Audit(seq, audit) => {
                self.backlog.received(seq);
                self.backlog.audits.push(audit);
            }
            Msg::Attempt(seq, attempt) => {
                self.backlog.received(seq);
                self.backlog.attempts.push(attempt);
            }
            Msg::Minute(seq, minute) => {
                self.backlog.received(seq);
                self.backlog.minutes.push(minute);
            }
            Msg::Stop => return true,
            #[cfg(test)]
            Msg::Run(f) => f(self),
        }
        false
    }

    /// Takes what is already queued, up to a batch (while writes fail, a
    /// batch more each time: it collapses into the rows already waiting);
    /// true if Stop was among it.
    fn drain(&mut self) -> bool {
        for _ in 0..MAX_BATCH {
            if !self.degraded && self.backlog.writes >= MAX_BATCH {
                break;
            }
            let Ok(msg) = self.rx.try_recv() else {
                break;
            };
            if self.take(msg) {
                return true;
            }
        }
        false
    }

    fn commit(&mut self) {
        let started = Instant::now();
        let key_cutoff = unix_now() - self.options.key_retention.as_secs_f64();
        match write_batch(&mut self.conn, &self.backlog, key_cutoff) {
            Ok(()) => {
                // Healthy before waiters wake, so that they see it.
                if std::mem::take(&mut self.degraded) {
                    self.shared.set_health(Health::Ok);
                }
                self.backoff = FIRST_RETRY;
                self.publish();
                let b = &self.backlog;
                self.owed += b.tasks.len() + b.keys.len() + b.audits.len();
                self.backlog.clear();
            }
            Err(e) => {
                let e = JournalError::from_sqlite(&self.path, e);
                let rows = self.backlog.tasks.len();
                self.shared
                    .failed(format!("{e}; {rows} task rows waiting to be written"));
                self.degraded = true;
                self.retry_at = later(Instant::now(), self.backoff);
                self.backoff = (self.backoff * 2).min(LAST_RETRY);
            }
        }
        self.last_commit = started;
    }

    /// Moves the committed mark past every write now committed, and wakes waiters.
    fn publish(&mut self) {
        for &(start, end) in &self.backlog.seqs {
            self.done_above.insert(start, end);
        }
        while let Some(entry) = self.done_above.first_entry() {
            if *entry.key() > self.committed + 1 {
                break;
            }
            self.committed = self.committed.max(entry.remove() - 1);
        }
        *self.shared.committed.lock() = self.committed;
        self.shared.advanced.notify_all();
    }

    /// Commits what is left, retrying for up to the close timeout.
    fn finish(mut self) -> Result<(), JournalError> {
        self.drain_all();
        let deadline = later(Instant::now(), self.options.close_timeout);
        while !self.backlog.is_empty() {
            self.commit();
            let now = Instant::now();
            if self.backlog.is_empty() {
                break;
            }
            if now >= deadline {
                return Err(JournalError::Unwritten {
                    path: self.path.clone(),
                    rows: self.backlog.tasks.len(),
                    reason: self.shared.health().reason().to_owned(),
                });
            }
            std::thread::sleep(self.backoff.min(deadline - now));
        }
        // Keeps the query planner's statistics fresh for the next open, and
        // leaves everything in the main file: the journal's own reader, open
        // until it drops, only reads and so cannot checkpoint when it closes.
        let _ = self
            .conn
            .execute_batch("PRAGMA optimize; PRAGMA wal_checkpoint(TRUNCATE);");
        Ok(())
    }

    fn drain_all(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            self.take(msg);
        }
    }
}

fn write_batch(conn: &mut Connection, backlog: &Backlog, key_cutoff: f64) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !backlog.tasks.is_empty() {
        let mut upsert = tx.prepare_cached(UPSERT_TASK)?;
        for row in &backlog.tasks {
            row.execute(&mut upsert)?;
        }
        let high = backlog.tasks.iter().map(|r| r.id).max().unwrap_or(0);
        tx.prepare_cached(RAISE_HIGH_WATER)?
            .execute([to_i64(high)])?;
        let mut widen = tx.prepare_cached(WIDEN_BLOCK)?;
        for (block, (low, high)) in submitted_ranges(&backlog.tasks) {
            widen.execute(params![block, low, high])?;
        }
        write_dependents(&tx, &backlog.tasks)?;
    }
    if !backlog.keys.is_empty() {
        let mut upsert = tx.prepare_cached(UPSERT_KEY)?;
        for k in &backlog.keys {
            upsert.execute(params![k.key, to_i64(k.task_id), k.at, key_cutoff])?;
        }
    }
    if !backlog.audits.is_empty() {
        let mut insert = tx.prepare_cached(INSERT_AUDIT)?;
        for a in &backlog.audits {
            insert.execute(params![a.at, a.route, a.task_id.map(to_i64), a.token_label])?;
        }
    }
    if !backlog.attempts.is_empty() {
        let mut insert = tx.prepare_cached(INSERT_ATTEMPT)?;
        for a in &backlog.attempts {
            a.execute(&mut insert)?;
        }
    }
    if !backlog.minutes.is_empty() {
        minutes::write(&tx, &backlog.minutes)?;
    }
    tx.commit()
}

/// `at + after`, or far beyond it where that would overflow (a timeout of
/// `Duration::MAX` means no timeout).
fn later(at: Instant, after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(after.min(CENTURY)).unwrap_or(at)
}

/// The range of `submitted_at` in each block of ids that `rows` touch.
fn submitted_ranges(rows: &[TaskRow]) -> BTreeMap<i64, (f64, f64)> {
    let mut ranges = BTreeMap::new();
    for r in rows {
        let block = to_i64(r.id >> BLOCK_SHIFT);
        let at = r.submitted_at;
        let range = ranges.entry(block).or_insert((at, at));
        range.0 = at.min(range.0);
        range.1 = at.max(range.1);
    }
    ranges
}

/// Each pruning statement deletes at most one chunk: its own short transaction.
/// Tasks are found by walking ids below `?3` (no index on `finished_at`: it
/// would cost every finished row's write an index entry): a task finishes
/// after its submit, so only the blocks of ids that began before the cutoff
/// can hold rows past it, and the rows already pruned are no longer walked.
const PRUNE_TASKS: &str = "DELETE FROM tasks WHERE id IN
    (SELECT id FROM tasks WHERE id < ?3 AND finished_at < ?1 LIMIT ?2)";
const PRUNE_KEYS: &str = "DELETE FROM idempotency_keys WHERE rowid IN
    (SELECT rowid FROM idempotency_keys WHERE at < ?1 LIMIT ?2)";
const PRUNE_AUDIT: &str =
    "DELETE FROM audit WHERE rowid IN (SELECT rowid FROM audit WHERE at < ?1 LIMIT ?2)";
/// The last block of ids whose first task was submitted before `?1`.
const LAST_OLD_BLOCK: &str = "SELECT max(block) FROM id_blocks WHERE min_submitted < ?1";

impl Writer {
    /// Deletes rows past retention in chunks, yielding to waiting writes
    /// between chunks; comes back soon if some are left.
    fn prune(&mut self) {
        let pause = match self.prune_round() {
            Ok(left) => {
                // Pruning runs with nothing waiting to be written: only a
                // failed pruning round can have left the journal degraded.
                if std::mem::take(&mut self.degraded) {
                    self.shared.set_health(Health::Ok);
                }
                if left {
                    Duration::ZERO
                } else {
                    self.owed = 0;
                    self.options.prune_interval
                }
            }
            Err(e) => {
                let e = JournalError::from_sqlite(&self.path, e);
                self.shared.failed(format!("pruning: {e}"));
                self.degraded = true;
                self.options.prune_interval
            }
        };
        self.prune_at = later(Instant::now(), pause);
    }

    /// True if rows past retention are left for another round.
    fn prune_round(&mut self) -> rusqlite::Result<bool> {
        let now = unix_now();
        let tasks = now - self.options.retention.as_secs_f64();
        let keys = now - self.options.key_retention.as_secs_f64();
        let last_old_block: Option<i64> = self
            .conn
            .prepare_cached(LAST_OLD_BLOCK)?
            .query_row([tasks], |r| r.get(0))?;
        let mut left = false;
        if let Some(block) = last_old_block {
            let below = (block + 1) << BLOCK_SHIFT;
            left |= !self.prune_one(PRUNE_TASKS, params![tasks, PRUNE_CHUNK, below])?;
        }
        left |= !self.prune_one(PRUNE_KEYS, params![keys, PRUNE_CHUNK])?;
        left |= !self.prune_one(PRUNE_AUDIT, params![tasks, PRUNE_CHUNK])?;
        self.conn.prepare_cached(PRUNE_BLOCKS)?.execute([])?;
        minutes::prune(&self.conn, now)?;
        Ok(left)
    }

    /// True when nothing past retention is left (`args`: the cutoff, the
    /// chunk, and what else `sql` takes). Yields to waiting writes, or after
    /// a round's chunks, only once it has deleted what is owed.
    fn prune_one(&mut self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> rusqlite::Result<bool> {
        let mut deleted = 0;
        for chunk in 1.. {
            let n = self.conn.prepare_cached(sql)?.execute(args)?;
            if n < PRUNE_CHUNK as usize {
                return Ok(true);
            }
            deleted += n;
            let paid = deleted >= self.owed;
            if paid && (chunk >= PRUNE_CHUNKS_PER_ROUND || !self.rx.is_empty()) {
                break;
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
impl Writer {
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Retries a failed commit now rather than after its back-off.
    pub fn retry_now(&mut self) {
        self.retry_at = Instant::now();
    }

    /// Prunes until nothing past retention is left.
    pub fn prune_now(&mut self) {
        loop {
            self.prune();
            if self.prune_at > Instant::now() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::row::{Encoding, Stored, STATES};
    use crate::journal::schema;
    use std::path::Path;

    fn table() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn, Path::new(":memory:"), 0, schema::VERSION).unwrap();
        conn
    }

    fn apply(conn: &mut Connection, rows: &[TaskRow]) {
        let mut backlog = Backlog::default();
        for (seq, row) in (1..).zip(rows) {
            backlog.received(seq);
            backlog.add_task(row.clone());
        }
        write_batch(conn, &backlog, 0.0).unwrap();
    }

    type Dumped = (i64, String, u32, i64, Option<Vec<u8>>);

    fn dump(conn: &Connection) -> Vec<Dumped> {
        let sql = "SELECT id, state, attempt, polls, recipe FROM tasks ORDER BY id";
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        });
        rows.unwrap().map(|r| r.unwrap()).collect()
    }

    /// Collapsing a batch must give what writing its rows one by one gives,
    /// whatever the stored rows and the order of arrival.
    #[test]
    fn a_collapsed_batch_lands_as_its_writes_would_one_by_one() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            let mut random_row = || {
                let mut r = TaskRow::pending(1 + next(3), "t".into(), 0.0, "library");
                r.state = STATES[next(6) as usize];
                r.attempt = 1 + next(3) as u32;
                r.polls = next(3);
                // A recipe is sent once, at submit; later writes carry none.
                r.recipe = (next(3) == 0).then(|| {
                    Box::new(Stored {
                        encoding: Encoding::Pickle,
                        bytes: vec![next(250) as u8],
                    })
                });
                r
            };
            let stored: Vec<TaskRow> = (0..3).map(|_| random_row()).collect();
            let batch: Vec<TaskRow> = (0..8).map(|_| random_row()).collect();
            let (mut one_by_one, mut collapsed) = (table(), table());
            apply(&mut one_by_one, &stored);
            apply(&mut collapsed, &stored);
            for row in &batch {
                apply(&mut one_by_one, std::slice::from_ref(row));
            }
            apply(&mut collapsed, &batch);
            assert_eq!(
                dump(&one_by_one),
                dump(&collapsed),
                "{stored:?} then {batch:?}"
            );
        }
    }

    #[test]
    fn the_committed_mark_waits_for_writes_that_arrive_late() {
        let (_tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::new());
        let mut writer = Writer {
            conn: table(),
            path: ":memory:".into(),
            rx,
            shared: shared.clone(),
            options: Options::default(),
            backlog: Backlog::default(),
            done_above: BTreeMap::new(),
            committed: 0,
            last_commit: Instant::now(),
            retry_at: Instant::now(),
            backoff: FIRST_RETRY,
            degraded: false,
            prune_at: Instant::now(),
            owed: 0,
        };
        // Write 3 was sent before 4 and 5 but reaches the writer after them.
        for seq in [1, 2, 4, 5] {
            writer.take(Msg::Audit(seq, audit()));
        }
        writer.commit();
        assert_eq!(*shared.committed.lock(), 2);
        writer.take(Msg::Audit(3, audit()));
        writer.commit();
        assert_eq!(*shared.committed.lock(), 5);
    }

    fn audit() -> AuditRow {
        AuditRow {
            at: 0.0,
            route: "GET /".into(),
            task_id: None,
            token_label: None,
        }
    }
}
