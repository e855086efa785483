//! What the journal stores, as plain Rust values: a task's whole row, the
//! idempotency keys and audit entries, and how each maps to table columns.
//! Values arrive already encoded (the engine encodes on the Python side).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Row, ToSql};
use std::borrow::Cow;
use std::sync::Arc;

/// The states a row may be in, in lifecycle order; the first two may change.
/// A test holds this list equal to the engine's.
pub const STATES: [&str; 6] = [
    "pending",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
];

/// The kinds a row may have.
pub const KINDS: [&str; 2] = ["blocking", "polling"];

/// How a stored value was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Pickle,
    /// The value could not be stored; its repr text is kept instead.
    Repr,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Pickle => "pickle",
            Encoding::Repr => "repr",
        }
    }

    pub fn parse(name: &str) -> Option<Encoding> {
        match name {
            "json" => Some(Encoding::Json),
            "pickle" => Some(Encoding::Pickle),
            "repr" => Some(Encoding::Repr),
            _ => None,
        }
    }
}

impl ToSql for Encoding {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Encoding {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        Encoding::parse(name)
            .ok_or_else(|| FromSqlError::Other(format!("encoding {name:?}").into()))
    }
}

/// An encoded value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub encoding: Encoding,
    pub bytes: Vec<u8>,
}

/// Why a task failed, as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorRow {
    pub type_name: String,
    pub message: String,
    pub traceback: Option<String>,
}

/// A task as the journal keeps it: the whole current row, written at each
/// change. Cloned at each change, so its texts are shared or static.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRow {
    pub id: u64,
    pub name: Arc<str>,
    /// One of [`KINDS`].
    pub kind: Option<&'static str>,
    /// One of [`STATES`].
    pub state: &'static str,
    pub submitted_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub polls: u64,
    /// 1 for a task's first run.
    pub attempt: u32,
    pub result: Option<Stored>,
    pub error: Option<Box<ErrorRow>>,
    /// How to re-create the task after a crash; None when it cannot be.
    pub recipe: Option<Box<Stored>>,
    /// Who submitted it ("library", ...).
    pub origin: Cow<'static, str>,
    /// The cluster worker it runs or ran on; None in the process itself.
    pub worker: Option<Arc<str>>,
    pub schedule: Schedule,
    /// The label it was submitted with (`submit(type=...)`, an HTTP task's type).
    pub task_type: Option<Arc<str>>,
}

/// What a task waits for, as the journal keeps it: enough to hold it again
/// after a restart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    pub priority: i32,
    /// Unix time before which a pending task does not start.
    pub not_before: Option<f64>,
    pub limit: Option<Arc<str>>,
    /// The ids it starts after, as "1,2,3".
    pub after: Option<Arc<str>>,
    /// Its retry policy, as `Retry::to_text` writes it.
    pub retry: Option<Arc<str>>,
}

impl TaskRow {
    /// A pending first attempt, with nothing else known yet.
    pub fn pending(id: u64, name: Arc<str>, submitted_at: f64, origin: &'static str) -> TaskRow {
        TaskRow {
            id,
            name,
            kind: None,
            state: STATES[0],
            submitted_at,
            started_at: None,
            finished_at: None,
            polls: 0,
            attempt: 1,
            result: None,
            error: None,
            recipe: None,
            origin: Cow::Borrowed(origin),
            worker: None,
            schedule: Schedule::default(),
            task_type: None,
        }
    }

    pub fn is_final(&self) -> bool {
        !is_changeable(self.state)
    }

    /// Which of two writes of one task wins: a later attempt, then a later
    /// stage of the lifecycle, then more polls. `tasks.upsert` in schema.rs
    /// compares the same triple in SQL; keep the two in step.
    pub fn order_key(&self) -> (u32, u8, u64) {
        (self.attempt, stage(self.state), self.polls)
    }
}

pub fn is_changeable(state: &str) -> bool {
    state == STATES[0] || state == STATES[1]
}

/// 0 pending, 1 running, 2 any final state.
fn stage(state: &str) -> u8 {
    match state {
        "pending" => 0,
        "running" => 1,
        _ => 2,
    }
}

/// The `tasks` columns in the order that `bind` and `from_row` use.
pub const TASK_COLUMNS: &str = "id, name, kind, state, submitted_at, started_at, finished_at, \
     polls, attempt, result_encoding, result, error_type, error_message, error_traceback, \
     recipe_encoding, recipe, origin, worker, priority, not_before, limit_label, after_ids, retry, \
     task_type";

/// Ids and counts are u64 in Rust and i64 in SQLite; `Journal::write` refuses
/// ids above i64::MAX, and a poll count that large cannot happen.
pub fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl TaskRow {
    /// Runs `statement` (whose 24 parameters are [`TASK_COLUMNS`]) for this row.
    /// Binds only the values present, after clearing every parameter to
    /// NULL: most of a row's columns are empty, and binding each of them
    /// was about a fifth of the writer's time.
    pub fn execute(&self, statement: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<()> {
        fn bind(
            statement: &mut rusqlite::Statement<'_>,
            column: usize,
            value: Option<impl rusqlite::ToSql>,
        ) -> rusqlite::Result<()> {
            match value {
                Some(value) => statement.raw_bind_parameter(column, value),
                None => Ok(()),
            }
        }
        let (result_encoding, result) = split(self.result.as_ref());
        let (recipe_encoding, recipe) = split(self.recipe.as_deref());
        let error = self.error.as_ref();
        let schedule = &self.schedule;
        statement.clear_bindings();
        let s: &mut rusqlite::Statement<'_> = statement;
        s.raw_bind_parameter(1, to_i64(self.id))?;
        s.raw_bind_parameter(2, &*self.name)?;
        bind(s, 3, self.kind)?;
        s.raw_bind_parameter(4, self.state)?;
        s.raw_bind_parameter(5, self.submitted_at)?;
        bind(s, 6, self.started_at)?;
        bind(s, 7, self.finished_at)?;
        s.raw_bind_parameter(8, to_i64(self.polls))?;
        s.raw_bind_parameter(9, self.attempt)?;
        bind(s, 10, result_encoding)?;
        bind(s, 11, result)?;
        bind(s, 12, error.map(|e| &e.type_name))?;
        bind(s, 13, error.map(|e| &e.message))?;
        bind(s, 14, error.and_then(|e| e.traceback.as_ref()))?;
        bind(s, 15, recipe_encoding)?;
        bind(s, 16, recipe)?;
        s.raw_bind_parameter(17, self.origin.as_ref())?;
        bind(s, 18, self.worker.as_deref())?;
        s.raw_bind_parameter(19, schedule.priority)?;
        bind(s, 20, schedule.not_before)?;
        bind(s, 21, schedule.limit.as_deref())?;
        bind(s, 22, schedule.after.as_deref())?;
        bind(s, 23, schedule.retry.as_deref())?;
        bind(s, 24, self.task_type.as_deref())?;
        s.raw_execute()?;
        Ok(())
    }

    /// Reads a row selected as [`TASK_COLUMNS`].
    pub fn from_row(row: &Row<'_>) -> rusqlite::Result<TaskRow> {
        let error = match row.get::<_, Option<String>>(11)? {
            None => None,
            Some(type_name) => Some(Box::new(ErrorRow {
                type_name,
                message: row.get(12)?,
                traceback: row.get(13)?,
            })),
        };
        Ok(TaskRow {
            id: to_u64(row.get(0)?),
            name: Arc::from(row.get::<_, String>(1)?),
            kind: row
                .get::<_, Option<String>>(2)?
                .and_then(|k| known(&KINDS, &k)),
            state: known(&STATES, &row.get::<_, String>(3)?).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    3,
                    rusqlite::types::Type::Text,
                    "a state this release does not know".into(),
                )
            })?,
            submitted_at: row.get(4)?,
            started_at: row.get(5)?,
            finished_at: row.get(6)?,
            polls: to_u64(row.get(7)?),
            attempt: row.get(8)?,
            result: stored(row.get(9)?, row.get(10)?),
            error,
            recipe: stored(row.get(14)?, row.get(15)?).map(Box::new),
            origin: Cow::Owned(row.get(16)?),
            worker: row.get::<_, Option<String>>(17)?.map(Arc::from),
            schedule: Schedule {
                priority: row.get(18)?,
                not_before: row.get(19)?,
                limit: row.get::<_, Option<String>>(20)?.map(Arc::from),
                after: row.get::<_, Option<String>>(21)?.map(Arc::from),
                retry: row.get::<_, Option<String>>(22)?.map(Arc::from),
            },
            task_type: row.get::<_, Option<String>>(23)?.map(Arc::from),
        })
    }
}

/// `name` as the entry of `names` it equals.
fn known(names: &[&'static str], name: &str) -> Option<&'static str> {
    names.iter().copied().find(|n| *n == name)
}

fn split(value: Option<&Stored>) -> (Option<Encoding>, Option<&[u8]>) {
    match value {
        Some(s) => (Some(s.encoding), Some(&s.bytes)),
        None => (None, None),
    }
}

fn stored(encoding: Option<Encoding>, bytes: Option<Vec<u8>>) -> Option<Stored> {
    Some(Stored {
        encoding: encoding?,
        bytes: bytes.unwrap_or_default(),
    })
}

/// An idempotency key and the task it started.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyRow {
    pub key: String,
    pub task_id: u64,
    pub at: f64,
}

/// Who did what to which task, for the security audit.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRow {
    pub at: f64,
    pub route: String,
    pub task_id: Option<u64>,
    pub token_label: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Kind, State};

    #[test]
    fn the_states_and_kinds_are_the_engines() {
        assert_eq!(STATES, State::ALL.map(|s| s.as_str()));
        assert_eq!(KINDS, [Kind::Blocking, Kind::Polling].map(|k| k.as_str()));
        for s in State::ALL {
            assert_eq!(is_changeable(s.as_str()), !s.is_final());
        }
    }

    #[test]
    fn a_later_attempt_then_stage_then_poll_count_wins() {
        let mut a = TaskRow::pending(1, "t".into(), 0.0, "library");
        let mut b = a.clone();
        b.state = "running";
        assert!(b.order_key() > a.order_key());
        a.attempt = 2;
        assert!(a.order_key() > b.order_key());
        b.attempt = 2;
        b.polls = 3;
        let mut c = b.clone();
        c.polls = 4;
        assert!(c.order_key() > b.order_key());
        c.state = "timed_out";
        c.polls = 0;
        assert!(c.order_key() > b.order_key());
    }
}
