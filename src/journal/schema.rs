//! The journal's tables, its schema version and the migrations between
//! versions, and how each connection is set up.

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

use super::error::{AtPath, JournalError};
use super::Durability;

/// Marks an SQLite file as a taskrunner journal ("TRJN"), so that another
/// program's database is refused rather than written into.
pub const APPLICATION_ID: i32 = 0x5452_4a4e;

/// Migration `i` takes a file from version `i` to `i + 1`. Append only: a
/// released entry never changes, since files in the field were made by it.
const MIGRATIONS: [&str; 8] = [
    // v1: tasks, and meta for the id high-water mark.
    "CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT,
        state TEXT NOT NULL,
        submitted_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        polls INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        result_encoding TEXT,
        result BLOB,
        error_type TEXT,
        error_message TEXT,
        error_traceback TEXT,
        recipe_encoding TEXT,
        recipe BLOB,
        origin TEXT NOT NULL
    );
    -- A page filtered by state walks one state in id order. Most rows end
    -- succeeded: a page of those finds them densely in id order without the
    -- index, and each such write saves an index entry.
    CREATE INDEX tasks_by_state ON tasks (state, id) WHERE state <> 'succeeded';
    -- (Dropped in version 3: see below.)
    CREATE INDEX tasks_by_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
    -- The range of submitted_at in each block of 1024 ids (id >> 10): a page
    -- filtered by time walks ids from the first block that can match to the
    -- last. Ids follow submit order, so the blocks are nearly sorted; an
    -- index on submitted_at would cost each write and still leave a sort.
    CREATE TABLE id_blocks (
        block INTEGER PRIMARY KEY,
        min_submitted REAL NOT NULL,
        max_submitted REAL NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;",
    // v2: idempotency keys, and the audit trail.
    "CREATE TABLE idempotency_keys (
        key TEXT PRIMARY KEY,
        task_id INTEGER NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX idempotency_keys_by_at ON idempotency_keys (at);
    CREATE TABLE audit (
        at REAL NOT NULL,
        route TEXT NOT NULL,
        task_id INTEGER,
        token_label TEXT
    );
    CREATE INDEX audit_by_at ON audit (at);",
    // Retention walks ids instead (see the writer's pruning): the index
    // cost every finished row's write about a third of its time.
    "DROP INDEX IF EXISTS tasks_by_finished;",
    // v4: the cluster worker a task ran on.
    "ALTER TABLE tasks ADD COLUMN worker TEXT;",
    // v5: what a task waits for (see `Schedule` in row.rs).
    "ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN not_before REAL;
    ALTER TABLE tasks ADD COLUMN limit_label TEXT;
    ALTER TABLE tasks ADD COLUMN after_ids TEXT;
    ALTER TABLE tasks ADD COLUMN retry TEXT;",
    // v6: the task's type, and what a search by kind, type, worker, error
    // type or name walks. Each is keyed by (column, id): a walk yields the
    // newest matches first, so a rare value's first page costs what it
    // returns. Partial where most rows have no value (only HTTP tasks have
    // a type, cluster tasks a worker, failed ones an error): such rows
    // write no entry. (Write cost: see docs/journal.md.)
    "ALTER TABLE tasks ADD COLUMN task_type TEXT;
    CREATE INDEX tasks_by_name ON tasks (name, id);
    CREATE INDEX tasks_by_kind ON tasks (kind, id) WHERE kind IS NOT NULL;
    CREATE INDEX tasks_by_type ON tasks (task_type, id) WHERE task_type IS NOT NULL;
    CREATE INDEX tasks_by_worker ON tasks (worker, id) WHERE worker IS NOT NULL;
    CREATE INDEX tasks_by_error ON tasks (error_type, id) WHERE error_type IS NOT NULL;",
    // v7: a task's timeline. `attempts` holds the attempts a task made
    // before its last one (a retry, a lost run), written as each ends: a
    // task that runs once has none. `task_after` indexes `after_ids` the
    // other way round (which tasks start after this one); the writer fills
    // it for the rows that have `after_ids`, and this fills it for the rows
    // already there. Both go when retention deletes the task they belong to
    // (only a task that ran again, or came after others, has any).
    "CREATE TABLE attempts (
        task_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        started_at REAL,
        ended_at REAL,
        error_type TEXT,
        error_message TEXT,
        error_traceback TEXT,
        PRIMARY KEY (task_id, attempt)
    );
    CREATE TABLE task_after (
        upstream INTEGER NOT NULL,
        dependent INTEGER NOT NULL,
        PRIMARY KEY (upstream, dependent)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO task_after (upstream, dependent)
        SELECT CAST(j.value AS INTEGER), tasks.id
        FROM tasks, json_each('[' || tasks.after_ids || ']') AS j
        WHERE json_valid('[' || tasks.after_ids || ']');
    CREATE TRIGGER timeline_pruned AFTER DELETE ON tasks
        WHEN old.attempt > 1 OR old.after_ids IS NOT NULL
    BEGIN
        DELETE FROM attempts WHERE task_id = old.id;
        DELETE FROM task_after WHERE dependent = old.id AND upstream IN
            (SELECT value FROM json_each('[' || old.after_ids || ']')
             WHERE json_valid('[' || old.after_ids || ']'));
    END;",
    // v8: throughput and runtime per minute (see `minutes.rs`).
    "CREATE TABLE history_minutes (
        at INTEGER PRIMARY KEY,
        succeeded INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        cancelled INTEGER NOT NULL,
        timed_out INTEGER NOT NULL,
        running INTEGER NOT NULL,
        pending INTEGER NOT NULL,
        runtimes TEXT NOT NULL
    );",
];

pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// Writes a task's whole row. The WHERE clause keeps final rows final and
/// lets a write through only if it is not older than the stored one, by
/// attempt, then stage (pending, running, final), then polls, whatever
/// order writes arrive in. `TaskRow::order_key` is the same rule in Rust.
/// A write without a recipe keeps the stored one: it is sent once, at submit.
/// A task's name and type never change, so an update leaves them out: SQLite
/// rewrites the entries of every index on a column an UPDATE sets.
pub const UPSERT_TASK: &str = "INSERT INTO tasks (id, name, kind, state, submitted_at,
        started_at, finished_at, polls, attempt, result_encoding, result, error_type,
        error_message, error_traceback, recipe_encoding, recipe, origin, worker, priority,
        not_before, limit_label, after_ids, retry, task_type)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
        ?19, ?20, ?21, ?22, ?23, ?24)
    ON CONFLICT (id) DO UPDATE SET kind = excluded.kind,
        state = excluded.state, submitted_at = excluded.submitted_at,
        started_at = excluded.started_at, finished_at = excluded.finished_at,
        polls = excluded.polls, attempt = excluded.attempt,
        result_encoding = excluded.result_encoding, result = excluded.result,
        error_type = excluded.error_type, error_message = excluded.error_message,
        error_traceback = excluded.error_traceback,
        recipe_encoding = coalesce(excluded.recipe_encoding, tasks.recipe_encoding),
        recipe = coalesce(excluded.recipe, tasks.recipe),
        origin = excluded.origin, worker = excluded.worker,
        priority = excluded.priority, not_before = excluded.not_before,
        limit_label = excluded.limit_label, after_ids = excluded.after_ids,
        retry = excluded.retry
    WHERE tasks.state IN ('pending', 'running')
        AND (excluded.attempt,
             CASE excluded.state WHEN 'pending' THEN 0 WHEN 'running' THEN 1 ELSE 2 END,
             excluded.polls)
         >= (tasks.attempt,
             CASE tasks.state WHEN 'pending' THEN 0 WHEN 'running' THEN 1 ELSE 2 END,
             tasks.polls)";

/// A key is written once; an expired one (older than `?4`) may be taken again.
pub const UPSERT_KEY: &str = "INSERT INTO idempotency_keys (key, task_id, at) VALUES (?1, ?2, ?3)
    ON CONFLICT (key) DO UPDATE SET task_id = excluded.task_id, at = excluded.at
    WHERE idempotency_keys.at < ?4";

pub const INSERT_AUDIT: &str =
    "INSERT INTO audit (at, route, task_id, token_label) VALUES (?1, ?2, ?3, ?4)";

/// Ids are never reused, even once retention deleted the newest rows.
pub const RAISE_HIGH_WATER: &str = "INSERT INTO meta (key, value) VALUES ('high_water', ?1)
    ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)";

/// Ids per row of `id_blocks`, as a shift: block = id >> BLOCK_SHIFT.
pub const BLOCK_SHIFT: u32 = 10;

pub const WIDEN_BLOCK: &str =
    "INSERT INTO id_blocks (block, min_submitted, max_submitted) VALUES (?1, ?2, ?3)
    ON CONFLICT (block) DO UPDATE SET
        min_submitted = min(min_submitted, excluded.min_submitted),
        max_submitted = max(max_submitted, excluded.max_submitted)";

/// Blocks below the lowest id left (or, with no rows, the high-water mark)
/// are empty. (`>> 10` is BLOCK_SHIFT; a test holds them together.)
pub const PRUNE_BLOCKS: &str = "DELETE FROM id_blocks WHERE block <
    (coalesce((SELECT min(id) FROM tasks),
              (SELECT value FROM meta WHERE key = 'high_water') + 1, 0) >> 10)";

/// How long a connection waits for another one's lock (a checkpoint, a viewer).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating if need be) and migrates the file for the journal's writer.
pub fn open_writer(
    path: &Path,
    durability: Durability,
    max_page_count: Option<u64>,
) -> Result<Connection, JournalError> {
    let mut conn = Connection::open(path).at(path)?;
    conn.busy_timeout(BUSY_TIMEOUT).at(path)?;
    // SQLite quietly opens a file it may not write read-only.
    if conn.is_readonly(rusqlite::MAIN_DB).at(path)? {
        return Err(JournalError::ReadOnly {
            path: path.to_path_buf(),
        });
    }
    let found = inspect(&conn, path)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .at(path)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JournalError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("WAL mode unavailable (got {mode})")),
        });
    }
    let synchronous = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384; PRAGMA journal_size_limit = 67108864;"
    ))
    .at(path)?;
    if let Some(pages) = max_page_count {
        set_max_page_count(&conn, pages).at(path)?;
    }
    migrate(&mut conn, path, found, VERSION)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Opens a connection that only reads: the journal's own, or a viewer's.
pub fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).at(path)?;
    conn.busy_timeout(BUSY_TIMEOUT).at(path)?;
    if inspect(&conn, path)? == 0 {
        return Err(JournalError::NotAJournal {
            path: path.to_path_buf(),
            detail: "an empty database".into(),
        });
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub fn set_max_page_count(conn: &Connection, pages: u64) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("PRAGMA max_page_count = {pages}"))
}

/// The schema version of a journal, 0 for an empty file; refuses anything else.
fn inspect(conn: &Connection, path: &Path) -> Result<u32, JournalError> {
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .at(path)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .at(path)?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .at(path)?;
    let found = u32::try_from(version).unwrap_or(u32::MAX);
    if app == APPLICATION_ID && found > VERSION {
        return Err(JournalError::NewerVersion {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        });
    }
    if (app == APPLICATION_ID && found > 0) || (app == 0 && version == 0 && objects == 0) {
        return Ok(found);
    }
    Err(JournalError::NotAJournal {
        path: path.to_path_buf(),
        detail: format!(
            "application id {app:#x}, user version {version}, {objects} schema objects"
        ),
    })
}

/// Takes a file from version `from` to `to` in one transaction: all or nothing.
pub fn migrate(conn: &mut Connection, path: &Path, from: u32, to: u32) -> Result<(), JournalError> {
    if from >= to {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .at(path)?;
    for sql in &MIGRATIONS[from as usize..to as usize] {
        tx.execute_batch(sql).at(path)?;
    }
    tx.pragma_update(None, "user_version", to).at(path)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .at(path)?;
    tx.commit().at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_applies_in_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        let path = Path::new(":memory:");
        for v in 0..VERSION {
            migrate(&mut conn, path, v, v + 1).unwrap();
            assert_eq!(inspect(&conn, path).unwrap(), v + 1);
        }
    }

    #[test]
    fn the_block_size_is_one_everywhere() {
        let shift = format!(">> {BLOCK_SHIFT})");
        assert!(PRUNE_BLOCKS.contains(&shift));
        assert!(MIGRATIONS[0].contains(&format!("(id >> {BLOCK_SHIFT})")));
    }

    #[test]
    fn retention_and_filters_use_their_indexes() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:"), 0, VERSION).unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        let prune = plan("SELECT id FROM tasks WHERE id < 5000 AND finished_at < 1 LIMIT 10");
        assert!(prune.contains("INTEGER PRIMARY KEY (rowid<?)"), "{prune}");
        let by_state =
            plan("SELECT id FROM tasks WHERE state = 'failed' AND state <> 'succeeded' AND id > 5 ORDER BY id LIMIT 10");
        assert!(by_state.contains("tasks_by_state"), "{by_state}");
        assert!(!by_state.contains("TEMP B-TREE"), "{by_state}");
        let succeeded =
            plan("SELECT id FROM tasks WHERE state = 'succeeded' AND id > 5 ORDER BY id LIMIT 10");
        assert!(!succeeded.contains("TEMP B-TREE"), "{succeeded}");
        for (column, index) in [
            ("kind", "tasks_by_kind"),
            ("task_type", "tasks_by_type"),
            ("worker", "tasks_by_worker"),
            ("error_type", "tasks_by_error"),
        ] {
            let walk = plan(&format!(
                "SELECT id FROM tasks WHERE id > 5 AND id <= 90 AND {column} = 'x' \
                 AND {column} IS NOT NULL ORDER BY id DESC LIMIT 10"
            ));
            assert!(walk.contains(index), "{walk}");
            assert!(!walk.contains("TEMP B-TREE"), "{walk}");
        }
        let named =
            plan("SELECT id FROM tasks WHERE id > 5 AND name = 'x' ORDER BY id DESC LIMIT 10");
        assert!(named.contains("tasks_by_name"), "{named}");
        assert!(!named.contains("TEMP B-TREE"), "{named}");
    }
}
