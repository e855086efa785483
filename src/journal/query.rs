//! Reads, on a connection of their own: WAL lets them see the last commit
//! without waiting for the writer's transaction in progress.

use parking_lot::Mutex;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{AtPath, JournalError};
use super::row::{to_i64, TaskRow, STATES, TASK_COLUMNS};
use super::schema::{self, BLOCK_SHIFT};
use super::unix_now;

/// Which rows a page holds. Empty `states` means any state; `since` (inclusive)
/// and `until` (exclusive) bound `submitted_at`; `name_contains` is case-sensitive;
/// `kind`, `task_type`, `worker` and `error_type` (the error's type name) are exact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub states: Vec<String>,
    pub name_contains: Option<String>,
    pub since: Option<f64>,
    pub until: Option<f64>,
    pub kind: Option<String>,
    pub task_type: Option<String>,
    pub worker: Option<String>,
    pub error_type: Option<String>,
}

/// A name search lists the distinct names (a seek each on the name index)
/// and walks each match's (name, id) entries; past this many distinct names
/// it scans the rows instead.
const MAX_NAMES_LISTED: usize = 5_000;

/// Ids in id order, and the cursor for the next page if there may be one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdPage {
    pub ids: Vec<u64>,
    pub next: Option<u64>,
}

/// Rows in id order, and the cursor for the next page if there may be one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    pub rows: Vec<TaskRow>,
    pub next: Option<u64>,
}

/// Reads a journal. The journal's owner has one; a viewer opens its own
/// while the owner runs.
pub struct Reader {
    path: PathBuf,
    conn: Mutex<Connection>,
    key_retention: Duration,
}

impl Reader {
    pub fn open(path: &Path, key_retention: Duration) -> Result<Reader, JournalError> {
        Ok(Reader {
            path: path.to_path_buf(),
            conn: Mutex::new(schema::open_reader(path)?),
            key_retention,
        })
    }

    pub fn get(&self, id: u64) -> Result<Option<TaskRow>, JournalError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&sql).at(&self.path)?;
        let mut rows = stmt.query([id]).at(&self.path)?;
        match rows.next().at(&self.path)? {
            Some(row) => Ok(Some(TaskRow::from_row(row).at(&self.path)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` (at least 1) rows with ids above `after` that pass
    /// `filter`, oldest first.
    pub fn page(
        &self,
        filter: &Filter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page, JournalError> {
        self.page_in(filter, (to_i64(after.unwrap_or(0)), i64::MAX), false, limit)
    }

    /// Up to `limit` (at least 1) rows with ids below `before` that pass
    /// `filter`, newest first.
    pub fn page_newest(
        &self,
        filter: &Filter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page, JournalError> {
        let upto = before.map_or(i64::MAX, |b| to_i64(b).saturating_sub(1));
        self.page_in(filter, (0, upto), true, limit)
    }

    /// Up to `limit` (at least 1) ids past `cursor` that pass `filter`:
    /// newest first (ids below it) or oldest first (ids above it). Reads
    /// indexes, and rows only where a filter needs them.
    pub fn page_ids(
        &self,
        filter: &Filter,
        cursor: Option<u64>,
        newest_first: bool,
        limit: usize,
    ) -> Result<IdPage, JournalError> {
        let range = match (newest_first, cursor) {
            (true, before) => (0, before.map_or(i64::MAX, |b| to_i64(b).saturating_sub(1))),
            (false, after) => (to_i64(after.unwrap_or(0)), i64::MAX),
        };
        let mut conn = self.conn.lock();
        let tx = conn.transaction().at(&self.path)?;
        let query = PageQuery {
            conn: &tx,
            path: &self.path,
            filter,
            newest_first,
        };
        query.id_page(range, limit)
    }

    /// A page of the ids in (above, upto], walked up or down, with their rows.
    fn page_in(
        &self,
        filter: &Filter,
        ids: (i64, i64),
        newest_first: bool,
        limit: usize,
    ) -> Result<Page, JournalError> {
        let mut conn = self.conn.lock();
        // One snapshot for the whole page: a row that changes state between
        // two walks must not show twice, or not at all. Dropped, it rolls back.
        let tx = conn.transaction().at(&self.path)?;
        let query = PageQuery {
            conn: &tx,
            path: &self.path,
            filter,
            newest_first,
        };
        let page = query.id_page(ids, limit)?;
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
        let mut stmt = tx.prepare_cached(&sql).at(&self.path)?;
        let mut rows = Vec::with_capacity(page.ids.len());
        for id in page.ids {
            let row = stmt.query_row([to_i64(id)], TaskRow::from_row);
            rows.push(row.at(&self.path)?);
        }
        Ok(Page {
            rows,
            next: page.next,
        })
    }

    /// Rows still pending or running: at open, those the last process left.
    pub fn unfinished(&self) -> Result<Vec<TaskRow>, JournalError> {
        let filter = Filter {
            states: vec![STATES[0].into(), STATES[1].into()],
            ..Filter::default()
        };
        Ok(self.page(&filter, None, usize::MAX - 1)?.rows)
    }

    /// The task an unexpired idempotency key started. Sees committed keys only.
    pub fn lookup_key(&self, key: &str) -> Result<Option<u64>, JournalError> {
        let cutoff = unix_now() - self.key_retention.as_secs_f64();
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached("SELECT task_id FROM idempotency_keys WHERE key = ?1 AND at >= ?2")
            .at(&self.path)?;
        let mut rows = stmt.query(rusqlite::params![key, cutoff]).at(&self.path)?;
        match rows.next().at(&self.path)? {
            Some(row) => Ok(Some(
                u64::try_from(row.get::<_, i64>(0).at(&self.path)?).unwrap_or(0),
            )),
            None => Ok(None),
        }
    }

    /// The history's minutes from `since` (Unix seconds) on, oldest first.
    pub fn minutes(&self, since: i64) -> Result<Vec<super::MinuteRow>, JournalError> {
        super::minutes::read(&self.conn.lock(), since).at(&self.path)
    }

    /// One more than the highest id ever written, pruned or not.
    pub fn next_id(&self) -> Result<u64, JournalError> {
        let conn = self.conn.lock();
        let sql = "SELECT max(coalesce((SELECT value FROM meta WHERE key = 'high_water'), 0),
                       coalesce((SELECT max(id) FROM tasks), 0))";
        let high: i64 = conn.query_row(sql, [], |r| r.get(0)).at(&self.path)?;
        Ok(u64::try_from(high).unwrap_or(0) + 1)
    }

    /// Runs `read` on this reader's connection: for reads that live with
    /// their own tables (`attempts.rs`).
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, JournalError> {
        read(&self.conn.lock()).at(&self.path)
    }

    #[cfg(test)]
    pub fn query_i64(&self, sql: &str) -> i64 {
        self.conn.lock().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// One page's reads, inside one read transaction.
struct PageQuery<'a> {
    conn: &'a Connection,
    path: &'a Path,
    filter: &'a Filter,
    newest_first: bool,
}

impl PageQuery<'_> {
    fn id_page(&self, ids: (i64, i64), limit: usize) -> Result<IdPage, JournalError> {
        let limit = limit.max(1);
        // One more than asked tells whether a next page exists.
        let mut ids = self.ids(ids, limit.saturating_add(1))?;
        let next = (ids.len() > limit).then(|| ids[limit - 1]);
        ids.truncate(limit);
        Ok(IdPage { ids, next })
    }

    fn ids(&self, ids: (i64, i64), want: usize) -> Result<Vec<u64>, JournalError> {
        let Some(ids) = self.id_range(ids)? else {
            return Ok(Vec::new());
        };
        let states: Vec<Option<&str>> = if self.filter.states.is_empty() {
            vec![None]
        } else {
            distinct_states(&self.filter.states)
                .into_iter()
                .map(Some)
                .collect()
        };
        let names: Vec<Option<String>> = match &self.filter.name_contains {
            None => vec![None],
            Some(part) => match self.names_containing(part)? {
                Some(names) => names.into_iter().map(Some).collect(),
                None => vec![None], // too many names to list: the rows are scanned
            },
        };
        // Each state and each matching name walks its own (value, id)
        // index in order, so a rare one's first page costs what it returns;
        // the walks are merged. Once `want` ids are in hand, a later walk
        // looks only for ids ahead of the last of them.
        let (mut above, mut upto) = ids;
        let mut merged: Vec<i64> = Vec::new();
        for state in &states {
            for name in &names {
                if above >= upto {
                    break;
                }
                merged.extend(self.select(*state, name.as_deref(), (above, upto), want)?);
                merged.sort_unstable_by(|a, b| {
                    if self.newest_first {
                        b.cmp(a)
                    } else {
                        a.cmp(b)
                    }
                });
                merged.truncate(want);
                if let (true, Some(&last)) = (merged.len() == want, merged.last()) {
                    if self.newest_first {
                        above = above.max(last);
                    } else {
                        upto = upto.min(last - 1);
                    }
                }
            }
        }
        Ok(merged
            .into_iter()
            .map(|id| u64::try_from(id).unwrap_or(0))
            .collect())
    }

    /// The distinct names that contain `part`, each found by one seek on
    /// the name index; None when there are more than `MAX_NAMES_LISTED`.
    fn names_containing(&self, part: &str) -> Result<Option<Vec<String>>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM tasks WHERE name > ?1 ORDER BY name LIMIT 1")
            .at(self.path)?;
        let mut first = self
            .conn
            .prepare_cached("SELECT name FROM tasks ORDER BY name LIMIT 1")
            .at(self.path)?;
        let mut next: Option<String> = first.query_row([], |r| r.get(0)).optional().at(self.path)?;
        let mut found = Vec::new();
        for _ in 0..MAX_NAMES_LISTED {
            let Some(name) = next else {
                return Ok(Some(found));
            };
            next = stmt
                .query_row([&name], |r| r.get(0))
                .optional()
                .at(self.path)?;
            if name.contains(part) {
                found.push(name);
            }
        }
        Ok(next.is_none().then_some(found))
    }

    /// The ids of `(above, upto]` that can pass the filter's time bounds,
    /// from the blocks' ranges of `submitted_at`; None if none can.
    fn id_range(
        &self,
        (mut above, mut upto): (i64, i64),
    ) -> Result<Option<(i64, i64)>, JournalError> {
        let bound = |sql: &str, at: f64| -> Result<Option<i64>, JournalError> {
            let mut stmt = self.conn.prepare_cached(sql).at(self.path)?;
            stmt.query_row([at], |r| r.get(0)).at(self.path)
        };
        if let Some(since) = self.filter.since {
            let sql = "SELECT min(block) FROM id_blocks WHERE max_submitted >= ?1";
            let Some(block) = bound(sql, since)? else {
                return Ok(None);
            };
            above = above.max((block << BLOCK_SHIFT) - 1);
        }
        if let Some(until) = self.filter.until {
            let sql = "SELECT max(block) FROM id_blocks WHERE min_submitted < ?1";
            let Some(block) = bound(sql, until)? else {
                return Ok(None);
            };
            upto = upto.min(((block + 1) << BLOCK_SHIFT) - 1);
        }
        Ok((above < upto).then_some((above, upto)))
    }

    /// The ids in `(above, upto]` in `state` (any when None), named `name`
    /// (else containing the filter's part of a name), that pass the rest.
    fn select(
        &self,
        state: Option<&str>,
        name: Option<&str>,
        (above, upto): (i64, i64),
        limit: usize,
    ) -> Result<Vec<i64>, JournalError> {
        let mut sql = String::from("SELECT id FROM tasks WHERE id > ? AND id <= ?");
        let mut args = vec![Value::Integer(above), Value::Integer(upto)];
        if let Some(state) = state {
            // `state` is one of STATES. SQLite uses a partial index only for
            // a query that repeats the index's condition word for word.
            sql.push_str(&format!(" AND state = '{state}'"));
            if state != "succeeded" {
                sql.push_str(" AND state <> 'succeeded'");
            }
        }
        if let Some(since) = self.filter.since {
            sql.push_str(" AND submitted_at >= ?");
            args.push(Value::Real(since));
        }
        if let Some(until) = self.filter.until {
            sql.push_str(" AND submitted_at < ?");
            args.push(Value::Real(until));
        }
        match (name, &self.filter.name_contains) {
            (Some(name), _) => {
                sql.push_str(" AND name = ?");
                args.push(Value::Text(name.to_owned()));
            }
            (None, Some(part)) => {
                sql.push_str(" AND instr(name, ?) > 0");
                args.push(Value::Text(part.clone()));
            }
            (None, None) => {}
        }
        let f = self.filter;
        for (column, value) in [
            ("kind", &f.kind),
            ("task_type", &f.task_type),
            ("worker", &f.worker),
            ("error_type", &f.error_type),
        ] {
            if let Some(value) = value {
                // IS NOT NULL, for the partial index (as above).
                sql.push_str(&format!(" AND {column} = ? AND {column} IS NOT NULL"));
                args.push(Value::Text(value.clone()));
            }
        }
        sql.push_str(if self.newest_first {
            " ORDER BY id DESC LIMIT ?"
        } else {
            " ORDER BY id LIMIT ?"
        });
        args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let mut stmt = self.conn.prepare_cached(&sql).at(self.path)?;
        let ids = stmt
            .query_map(params_from_iter(args), |r| r.get::<_, i64>(0))
            .at(self.path)?;
        ids.collect::<rusqlite::Result<Vec<_>>>().at(self.path)
    }
}

/// The known states among `states`, each once: an unknown one matches nothing.
fn distinct_states(states: &[String]) -> Vec<&'static str> {
    STATES
        .into_iter()
        .filter(|s| states.iter().any(|w| w == s))
        .collect()
}
