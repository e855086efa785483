//! The history's minutes (see `crate::history`): one row per minute in
//! which tasks finished or waited, kept for a day, read back at open so
//! that a restarted runner shows the day before it.

use rusqlite::{params, Connection, Transaction};
use std::time::Duration;

/// How long a minute's row is kept.
pub const MINUTE_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// One minute of history. `runtimes` is the runtime histogram as the
/// history writes it ("bucket:count" pairs); the journal only keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct MinuteRow {
    /// The minute's start, Unix seconds.
    pub at: i64,
    /// Tasks finished in it: succeeded, failed, cancelled, timed out.
    pub finished: [u32; 4],
    /// Tasks running and pending at its end.
    pub running: u32,
    pub pending: u32,
    pub runtimes: String,
}

/// A later write of the same minute (a process that stopped inside it and
/// the next one, which carried it on) replaces the earlier one.
const UPSERT_MINUTE: &str = "INSERT OR REPLACE INTO history_minutes
    (at, succeeded, failed, cancelled, timed_out, running, pending, runtimes)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

const PRUNE_MINUTES: &str = "DELETE FROM history_minutes WHERE at < ?1";

const SELECT_MINUTES: &str = "SELECT at, succeeded, failed, cancelled, timed_out, running,
    pending, runtimes FROM history_minutes WHERE at >= ?1 ORDER BY at";

pub fn write(tx: &Transaction<'_>, rows: &[MinuteRow]) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(UPSERT_MINUTE)?;
    for m in rows {
        let [s, f, c, t] = m.finished;
        upsert.execute(params![m.at, s, f, c, t, m.running, m.pending, m.runtimes])?;
    }
    Ok(())
}

/// Deletes the minutes past retention (a day holds at most 1,440 rows: one
/// statement is enough).
pub fn prune(conn: &Connection, now: f64) -> rusqlite::Result<()> {
    let cutoff = (now - MINUTE_RETENTION.as_secs_f64()).floor() as i64;
    conn.prepare_cached(PRUNE_MINUTES)?.execute([cutoff])?;
    Ok(())
}

/// The minutes from `since` (Unix seconds) on, oldest first.
pub fn read(conn: &Connection, since: i64) -> rusqlite::Result<Vec<MinuteRow>> {
    let mut stmt = conn.prepare_cached(SELECT_MINUTES)?;
    let rows = stmt.query_map([since], |r| {
        Ok(MinuteRow {
            at: r.get(0)?,
            finished: [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
            running: r.get(5)?,
            pending: r.get(6)?,
            runtimes: r.get(7)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::schema::{migrate, VERSION};
    use std::path::Path;

    fn minute(at: i64, succeeded: u32) -> MinuteRow {
        MinuteRow {
            at,
            finished: [succeeded, 1, 0, 2],
            running: 3,
            pending: 4,
            runtimes: "12:5 40:1".into(),
        }
    }

    #[test]
    fn minutes_read_back_replace_their_own_and_go_after_a_day() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:"), 0, VERSION).unwrap();
        let now = 1_700_000_000.0;
        let day = MINUTE_RETENTION.as_secs() as i64;
        let (old, recent) = (now as i64 - day - 60, now as i64 - 120);
        let tx = conn.transaction().unwrap();
        write(&tx, &[minute(old, 1), minute(recent, 1), minute(recent, 7)]).unwrap();
        tx.commit().unwrap();
        assert_eq!(read(&conn, 0).unwrap().len(), 2);
        prune(&conn, now).unwrap();
        assert_eq!(read(&conn, 0).unwrap(), vec![minute(recent, 7)]);
        assert!(read(&conn, recent + 1).unwrap().is_empty());
    }
}
