//! One task's record: what it is, where it stands, and what it produced.

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::policy::PollPolicy;
use crate::store::Counts;

/// A task's lifecycle. `Pending` and `Running` may change; the rest are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Pending,
        State::Running,
        State::Succeeded,
        State::Failed,
        State::Cancelled,
        State::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::TimedOut => "timed_out",
        }
    }

    pub fn parse(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, State::Pending | State::Running)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a task does its work: inside `run()`, or elsewhere while we poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Blocking,
    Polling,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Blocking, Kind::Polling];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Blocking => "blocking",
            Kind::Polling => "polling",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "blocking" => Some(Kind::Blocking),
            "polling" => Some(Kind::Polling),
            _ => None,
        }
    }
}

/// Why a task failed, kept as text so that a status never calls into user code.
pub struct ErrorInfo {
    pub type_name: String,
    pub message: String,
    pub traceback: String,
    /// The exception itself, re-raised by `result()`.
    pub exception: Py<PyAny>,
}

/// How a task ended.
pub enum Outcome {
    Succeeded(Py<PyAny>),
    Failed(ErrorInfo),
    Cancelled,
    TimedOut,
}

impl Outcome {
    pub fn state(&self) -> State {
        match self {
            Outcome::Succeeded(_) => State::Succeeded,
            Outcome::Failed(_) => State::Failed,
            Outcome::Cancelled => State::Cancelled,
            Outcome::TimedOut => State::TimedOut,
        }
    }
}

/// The mutable part of a record, behind the record's own lock.
pub struct Progress {
    pub state: State,
    pub kind: Option<Kind>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub polls: u64,
    pub result: Option<Py<PyAny>>,
    pub error: Option<ErrorInfo>,
    /// The task object; released once the task is final.
    pub task: Option<Py<PyAny>>,
    /// The task's bound `get_output`, while it is polled.
    pub get_output: Option<Py<PyAny>>,
    pub callbacks: Vec<Py<PyAny>>,
}

pub struct Record {
    pub id: u64,
    pub name: Py<PyString>,
    pub submitted_at: f64,
    pub policy: PollPolicy,
    pub progress: Mutex<Progress>,
}

impl Record {
    pub fn new(
        id: u64,
        name: Py<PyString>,
        task: Py<PyAny>,
        kind: Option<Kind>,
        policy: PollPolicy,
    ) -> Record {
        Record {
            id,
            name,
            submitted_at: unix_now(),
            policy,
            progress: Mutex::new(Progress {
                state: State::Pending,
                kind,
                started_at: None,
                finished_at: None,
                polls: 0,
                result: None,
                error: None,
                task: Some(task),
                get_output: None,
                callbacks: Vec::new(),
            }),
        }
    }

    pub fn state(&self) -> State {
        self.progress.lock().state
    }

    pub fn kind(&self) -> Option<Kind> {
        self.progress.lock().kind
    }

    /// Pending to running; returns the task object, or None when the task
    /// was cancelled or timed out before it could start.
    pub fn start(&self, py: Python<'_>, kind: Option<Kind>, counts: &Counts) -> Option<Py<PyAny>> {
        let mut p = self.progress.lock();
        if p.state != State::Pending {
            return None;
        }
        p.state = State::Running;
        counts.transition(State::Pending, State::Running);
        p.started_at = Some(unix_now());
        if kind.is_some() {
            p.kind = kind;
        }
        p.task.as_ref().map(|t| t.clone_ref(py))
    }

    /// The task object of a running task, counting one poll.
    /// Looks up `get_output` once, so that each poll is a plain call.
    pub fn bind_get_output(&self, py: Python<'_>) -> PyResult<()> {
        let Some(task) = self.progress.lock().task.as_ref().map(|t| t.clone_ref(py)) else {
            return Ok(());
        };
        let method = task
            .bind(py)
            .getattr(pyo3::intern!(py, "get_output"))?
            .unbind();
        self.progress.lock().get_output = Some(method);
        Ok(())
    }

    /// The bound `get_output` of a running task, counting one poll.
    pub fn get_output_for_poll(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let mut p = self.progress.lock();
        if p.state != State::Running {
            return None;
        }
        p.polls += 1;
        p.get_output.as_ref().map(|m| m.clone_ref(py))
    }

    pub fn set_kind(&self, kind: Kind) {
        self.progress.lock().kind = Some(kind);
    }
}

/// What a final transition hands back to the engine: the state left, and
/// what must be released or called while attached to Python.
pub struct Finished {
    pub from: State,
    pub to: State,
    pub kind: Option<Kind>,
    pub callbacks: Vec<Py<PyAny>>,
    /// The task object and its bound method, to release while attached.
    pub task: (Option<Py<PyAny>>, Option<Py<PyAny>>),
}

impl Record {
    /// Moves a pending or running task to its final state. Returns None when
    /// the task is already final: the first outcome wins, later ones are dropped.
    pub fn finish(&self, outcome: Outcome, counts: &Counts) -> Option<Finished> {
        let mut p = self.progress.lock();
        if p.state.is_final() {
            drop(p);
            // The late outcome (a result after a timeout) is discarded here.
            drop(outcome);
            return None;
        }
        let from = p.state;
        let to = outcome.state();
        p.state = to;
        counts.transition(from, to);
        p.finished_at = Some(unix_now());
        match outcome {
            Outcome::Succeeded(value) => p.result = Some(value),
            Outcome::Failed(error) => p.error = Some(error),
            Outcome::Cancelled | Outcome::TimedOut => {}
        }
        Some(Finished {
            from,
            to,
            kind: p.kind,
            callbacks: std::mem::take(&mut p.callbacks),
            task: (p.task.take(), p.get_output.take()),
        })
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
