//! What a task's timeline reads beyond its row: the attempts it made
//! before its last one (`attempts`), and the tasks that start after it
//! (`task_after`, written with the rows that have `after_ids`). Rows of
//! both go when retention deletes the task they belong to (see the
//! schema's trigger).

use rusqlite::{params, Connection, Row, Transaction};

use super::row::{to_i64, ErrorRow, TaskRow};

/// One attempt a task made and left behind (a retry, a lost run).
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRow {
    pub task_id: u64,
    pub attempt: u32,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    pub error: Option<ErrorRow>,
}

/// The first write of an attempt wins: a process that finds the attempt
/// lost at restart does not overwrite what its own process wrote.
pub const INSERT_ATTEMPT: &str = "INSERT INTO attempts (task_id, attempt, started_at,
        ended_at, error_type, error_message, error_traceback)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
    ON CONFLICT (task_id, attempt) DO NOTHING";

const SELECT_ATTEMPTS: &str = "SELECT task_id, attempt, started_at, ended_at, error_type,
        error_message, error_traceback
    FROM attempts WHERE task_id = ?1 ORDER BY attempt";

const SELECT_DEPENDENTS: &str =
    "SELECT dependent FROM task_after WHERE upstream = ?1 ORDER BY dependent";

/// A task's row may be written more than once: its edges are written once.
const INSERT_DEPENDENT: &str =
    "INSERT OR IGNORE INTO task_after (upstream, dependent) VALUES (?1, ?2)";

/// Indexes, for each row of `rows` that comes after other tasks, which
/// tasks it comes after. Rows without `after_ids` (most) cost nothing:
/// a trigger on every insert cost the writer a third more time.
pub fn write_dependents(tx: &Transaction<'_>, rows: &[TaskRow]) -> rusqlite::Result<()> {
    let mut insert = None;
    for row in rows {
        let Some(after) = &row.schedule.after else {
            continue;
        };
        if insert.is_none() {
            insert = Some(tx.prepare_cached(INSERT_DEPENDENT)?);
        }
        let insert = insert.as_mut().expect("prepared");
        for upstream in after.split(',').filter_map(|id| id.parse::<i64>().ok()) {
            insert.execute(params![upstream, to_i64(row.id)])?;
        }
    }
    Ok(())
}

impl AttemptRow {
    pub fn execute(&self, statement: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<()> {
        let error = self.error.as_ref();
        statement.execute(params![
            to_i64(self.task_id),
            self.attempt,
            self.started_at,
            self.ended_at,
            error.map(|e| &e.type_name),
            error.map(|e| &e.message),
            error.and_then(|e| e.traceback.as_ref()),
        ])?;
        Ok(())
    }

    fn from_row(row: &Row<'_>) -> rusqlite::Result<AttemptRow> {
        let error = match row.get::<_, Option<String>>(4)? {
            None => None,
            Some(type_name) => Some(ErrorRow {
                type_name,
                message: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
                traceback: row.get(6)?,
            }),
        };
        Ok(AttemptRow {
            task_id: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
            attempt: row.get(1)?,
            started_at: row.get(2)?,
            ended_at: row.get(3)?,
            error,
        })
    }
}

/// The past attempts of task `id`, oldest first.
pub fn attempts_of(conn: &Connection, id: u64) -> rusqlite::Result<Vec<AttemptRow>> {
    let mut stmt = conn.prepare_cached(SELECT_ATTEMPTS)?;
    let rows = stmt.query_map([to_i64(id)], AttemptRow::from_row)?;
    rows.collect()
}

/// The ids of the tasks that start after task `id`, in id order: an index
/// lookup, whatever the size of the journal.
pub fn dependents_of(conn: &Connection, id: u64) -> rusqlite::Result<Vec<u64>> {
    let mut stmt = conn.prepare_cached(SELECT_DEPENDENTS)?;
    let rows = stmt.query_map([to_i64(id)], |r| r.get::<_, i64>(0))?;
    rows.map(|r| r.map(|id| u64::try_from(id).unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{row, Scratch};
    use super::super::*;
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn attempt(task_id: u64, attempt: u32, message: &str) -> AttemptRow {
        AttemptRow {
            task_id,
            attempt,
            started_at: Some(10.0 + f64::from(attempt)),
            ended_at: Some(10.5 + f64::from(attempt)),
            error: Some(ErrorRow {
                type_name: "ValueError".into(),
                message: message.into(),
                traceback: Some(format!("Traceback...\nValueError: {message}\n")),
            }),
        }
    }

    fn after(id: u64, state: &'static str, upstream: &str) -> TaskRow {
        let mut r = row(id, state);
        r.schedule.after = Some(upstream.into());
        r
    }

    #[test]
    fn attempts_read_back_oldest_first_and_the_first_write_of_one_wins() {
        let dir = Scratch::new();
        let journal = Journal::open(dir.path("j.db"), Options::default()).unwrap();
        journal.write(row(4, "succeeded")).unwrap();
        journal.write_attempt(attempt(4, 2, "two")).unwrap();
        journal.write_attempt(attempt(4, 1, "one")).unwrap();
        journal.write_attempt(attempt(4, 1, "again")).unwrap();
        let lost = AttemptRow {
            task_id: 5,
            attempt: 1,
            started_at: None,
            ended_at: None,
            error: None,
        };
        journal.write_attempt(lost.clone()).unwrap();
        assert!(journal.flush(WAIT));
        assert_eq!(
            journal.attempts(4).unwrap(),
            [attempt(4, 1, "one"), attempt(4, 2, "two")]
        );
        assert_eq!(journal.attempts(5).unwrap(), [lost]);
        assert!(journal.attempts(6).unwrap().is_empty());
        let mut bad = attempt(4, 3, "x");
        bad.ended_at = Some(f64::NAN);
        assert!(journal.write_attempt(bad).is_err());
    }

    #[test]
    fn the_tasks_that_start_after_one_are_found_from_their_after_ids() {
        let dir = Scratch::new();
        let journal = Journal::open(dir.path("j.db"), Options::default()).unwrap();
        journal.write(row(1, "succeeded")).unwrap();
        journal.write(row(2, "succeeded")).unwrap();
        journal.write(after(3, "pending", "1")).unwrap();
        journal.write(after(4, "pending", "1,2")).unwrap();
        // Later writes of a dependent change nothing.
        journal.write(after(4, "succeeded", "1,2")).unwrap();
        // What is no id in the text is passed over, and the row still lands.
        journal.write(after(5, "pending", "1,,x")).unwrap();
        assert!(journal.flush(WAIT));
        assert_eq!(journal.dependents(1).unwrap(), [3, 4, 5]);
        assert_eq!(journal.dependents(2).unwrap(), [4]);
        assert!(journal.dependents(3).unwrap().is_empty());
        assert!(journal.get(5).unwrap().is_some());
    }

    #[test]
    fn attempts_and_dependents_go_with_their_task() {
        let dir = Scratch::new();
        let path = dir.path("j.db");
        let journal = Journal::open(&path, Options::default()).unwrap();
        // A task with a past attempt is on a later one.
        let mut retried = row(1, "failed");
        retried.attempt = 2;
        journal.write(retried).unwrap();
        journal.write(after(2, "cancelled", "1")).unwrap();
        let mut running = after(3, "running", "1");
        running.attempt = 2;
        journal.write(running).unwrap();
        journal.write(row(4, "succeeded")).unwrap();
        journal.write_attempt(attempt(1, 1, "one")).unwrap();
        journal.write_attempt(attempt(3, 1, "one")).unwrap();
        assert!(journal.flush(WAIT));
        drop(journal);
        let pruning = Options {
            retention: Duration::ZERO,
            ..Options::default()
        };
        let journal = Journal::open(&path, pruning).unwrap();
        journal.on_writer(|w| w.prune_now());
        // The running task stays, with what is its own (it came after 1).
        assert_eq!(journal.attempts(3).unwrap().len(), 1);
        assert!(journal.attempts(1).unwrap().is_empty());
        assert_eq!(journal.dependents(1).unwrap(), [3]);
        let count = |table: &str| {
            journal
                .reader()
                .query_i64(&format!("SELECT count(*) FROM {table}"))
        };
        assert_eq!((count("attempts"), count("task_after")), (1, 1));
    }

    /// Figures, not checks: what the timeline's trigger costs the writer and
    /// retention, on rows without `after` (the common case). Run with
    /// `cargo test --release journal::attempts::tests::what_the_triggers_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn what_the_triggers_cost() {
        const ROWS: u64 = 200_000;
        for round in 0..10 {
            let with_triggers = round % 2 == 0;
            let dir = Scratch::new();
            let path = dir.path("j.db");
            let journal = Journal::open(&path, Options::default()).unwrap();
            if !with_triggers {
                journal.on_writer(|w| {
                    w.conn()
                        .execute_batch("DROP TRIGGER timeline_pruned")
                        .unwrap();
                });
            }
            let rows: Vec<TaskRow> = (1..=ROWS).map(|id| row(id, "succeeded")).collect();
            let (started, cpu) = (std::time::Instant::now(), cpu_seconds());
            for r in rows {
                journal.write(r).unwrap();
            }
            assert!(journal.flush(WAIT));
            let written = (started.elapsed(), cpu_seconds() - cpu);
            drop(journal);
            let (started, cpu) = (std::time::Instant::now(), cpu_seconds());
            let pruning = Options {
                retention: Duration::ZERO,
                ..Options::default()
            };
            let journal = Journal::open(&path, pruning).unwrap();
            journal.on_writer(|w| w.prune_now());
            let pruned = (started.elapsed(), cpu_seconds() - cpu);
            assert_eq!(journal.reader().query_i64("SELECT count(*) FROM tasks"), 0);
            println!(
                "trigger {}: {ROWS} finished rows written in {:.2?} ({:.2} s CPU), \
                 pruned in {:.2?} ({:.2} s CPU)",
                if with_triggers { "on " } else { "off" },
                written.0,
                written.1,
                pruned.0,
                pruned.1,
            );
        }
    }

    /// This process's CPU time (user and system), from /proc: wall time on
    /// a shared machine says more about its neighbours than about SQLite.
    fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime, in clock ticks of 1/100 s (Linux's USER_HZ).
        (ticks(11) + ticks(12)) / 100.0
    }

    #[test]
    fn a_version_5_file_gains_the_dependents_of_its_rows() {
        let dir = Scratch::new();
        let path = dir.path("j.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            schema::migrate(&mut conn, &path, 0, 5).unwrap();
            conn.execute_batch(
                "INSERT INTO tasks (id, name, state, submitted_at, polls, attempt, origin, after_ids)
                 VALUES (1, 'a', 'succeeded', 1.0, 0, 1, 'library', NULL),
                        (2, 'b', 'succeeded', 2.0, 0, 1, 'library', '1'),
                        (3, 'c', 'pending', 3.0, 0, 1, 'library', '1,2');",
            )
            .unwrap();
        }
        let journal = Journal::open(&path, Options::default()).unwrap();
        assert_eq!(journal.dependents(1).unwrap(), [2, 3]);
        assert_eq!(journal.dependents(2).unwrap(), [3]);
    }
}
