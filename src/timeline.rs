//! A task's timeline, the dict `Runner.timeline` gives and
//! `GET /api/tasks/{id}/timeline` sends: the states it went through with
//! their times, the attempts it made with their errors, the tasks it
//! starts after and those that start after it, and whether it can run again.
//!
//! A task in memory has it all on its record (its trail); a task known
//! only to the journal has its row, its past attempts in `attempts` and its
//! dependents in `task_after`.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::attempts::{AttemptError, PastAttempt, Trail};
use crate::engine::Engine;
use crate::record::{Record, State};

/// What a timeline is made of, copied out of a record (and the journal).
#[derive(Clone, Debug, PartialEq)]
struct Facts {
    id: u64,
    submitted_at: f64,
    state: State,
    /// The attempt now under way (once final, the last one).
    attempt: u32,
    started_at: Option<f64>,
    finished_at: Option<f64>,
    /// The status dict's error.
    error: Option<AttemptError>,
    past: Vec<PastAttempt>,
    after: Vec<u64>,
    dependents: Vec<u64>,
    /// The task is final and has a recipe given as data.
    again: bool,
}

/// A moment the task's state changed.
#[derive(Clone, Debug, PartialEq)]
struct Event {
    at: f64,
    state: State,
    attempt: u32,
    error: Option<AttemptError>,
}

impl Facts {
    fn of(record: &Record) -> Facts {
        let p = record.progress.lock();
        Facts {
            id: record.id,
            submitted_at: record.submitted_at,
            state: p.state,
            attempt: record.attempt + p.reruns,
            started_at: p.started_at,
            finished_at: p.finished_at,
            error: p.error.as_ref().map(|e| AttemptError {
                type_name: e.type_name.clone(),
                message: e.message.clone(),
                traceback: e.traceback.clone(),
            }),
            past: Trail::attempts_in(&p.trail).to_vec(),
            after: record.plan().after.to_vec(),
            dependents: Trail::dependents_in(&p.trail).to_vec(),
            again: record.recipe().is_some() && p.state.is_final(),
        }
    }

    /// Oldest first: pending at submit; for each past attempt, running at
    /// its start and pending again at its end (with its error, and the
    /// attempt the task then waited for); running at the last start; the
    /// final state with the status's error. An attempt lost with its
    /// process has no known end, so no event marks it.
    fn events(&self) -> Vec<Event> {
        let first = self.past.first().map_or(self.attempt, |a| a.attempt);
        let event = |at, state, attempt, error| Event {
            at,
            state,
            attempt,
            error,
        };
        let mut events = vec![event(self.submitted_at, State::Pending, first, None)];
        for past in &self.past {
            if let Some(at) = past.started_at {
                events.push(event(at, State::Running, past.attempt, None));
            }
            if let Some(at) = past.ended_at {
                let error = past.error.clone();
                events.push(event(at, State::Pending, past.attempt + 1, error));
            }
        }
        if let Some(at) = self.started_at {
            events.push(event(at, State::Running, self.attempt, None));
        }
        if let (true, Some(at)) = (self.state.is_final(), self.finished_at) {
            events.push(event(at, self.state, self.attempt, self.error.clone()));
        }
        events
    }

    /// The past attempts, then the last one if it started (or failed).
    fn attempts(&self) -> Vec<PastAttempt> {
        let mut attempts = self.past.clone();
        let failed = self.state == State::Failed;
        if self.started_at.is_some() || failed {
            attempts.push(PastAttempt {
                attempt: self.attempt,
                started_at: self.started_at,
                ended_at: self.finished_at.filter(|_| self.state.is_final()),
                error: self.error.clone().filter(|_| failed),
            });
        }
        attempts
    }

    /// Adds the dependents the journal knows of (tasks of an earlier
    /// process), each once, in id order.
    fn add_dependents(&mut self, more: Vec<u64>) {
        self.dependents.extend(more);
        self.dependents.sort_unstable();
        self.dependents.dedup();
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let events = PyList::empty(py);
        for e in self.events() {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "at"), e.at)?;
            d.set_item(intern!(py, "state"), e.state.as_str())?;
            d.set_item(intern!(py, "attempt"), e.attempt)?;
            d.set_item(intern!(py, "error"), error_dict(py, e.error.as_ref())?)?;
            events.append(d)?;
        }
        let attempts = PyList::empty(py);
        for a in self.attempts() {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "attempt"), a.attempt)?;
            d.set_item(intern!(py, "started_at"), a.started_at)?;
            d.set_item(intern!(py, "ended_at"), a.ended_at)?;
            d.set_item(intern!(py, "error"), error_dict(py, a.error.as_ref())?)?;
            attempts.append(d)?;
        }
        let d = PyDict::new(py);
        d.set_item(intern!(py, "id"), self.id)?;
        d.set_item(intern!(py, "events"), events)?;
        d.set_item(intern!(py, "attempts"), attempts)?;
        d.set_item(intern!(py, "after"), PyList::new(py, &self.after)?)?;
        d.set_item(
            intern!(py, "dependents"),
            PyList::new(py, &self.dependents)?,
        )?;
        d.set_item(intern!(py, "again"), self.again)?;
        Ok(d)
    }
}

/// An error as the status dict shows one: `{"type", "message", "traceback"}`.
fn error_dict<'py>(
    py: Python<'py>,
    error: Option<&AttemptError>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(error) = error else {
        return Ok(None);
    };
    let d = PyDict::new(py);
    d.set_item(intern!(py, "type"), &error.type_name)?;
    d.set_item(intern!(py, "message"), &error.message)?;
    d.set_item(intern!(py, "traceback"), &error.traceback)?;
    Ok(Some(d))
}

/// The timeline of task `id`, or None for an id no one knows.
pub fn timeline<'py>(
    py: Python<'py>,
    engine: &Engine,
    id: u64,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let journal = engine.journal();
    let facts = match engine.in_memory(id) {
        Some(record) => {
            let mut facts = Facts::of(&record);
            // Tasks of an earlier process that came after it (and ended
            // there) are only in the journal, committed long ago.
            if let Some(journal) = journal {
                facts.add_dependents(journal.dependents(py, id, false)?);
            }
            facts
        }
        None => {
            let Some(record) = engine.record(py, id)? else {
                return Ok(None);
            };
            let mut facts = Facts::of(&record);
            if let Some(journal) = journal {
                facts.past = journal.past_attempts(py, id)?;
                // A task submitted after it may have come just now.
                facts.add_dependents(journal.dependents(py, id, true)?);
            }
            facts
        }
    };
    facts.to_dict(py).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(message: &str) -> Option<AttemptError> {
        Some(AttemptError {
            type_name: "ValueError".into(),
            message: message.into(),
            traceback: format!("Traceback...\nValueError: {message}\n"),
        })
    }

    fn facts(state: State, attempt: u32, past: Vec<PastAttempt>) -> Facts {
        Facts {
            id: 1,
            submitted_at: 100.0,
            state,
            attempt,
            started_at: Some(110.0),
            finished_at: state.is_final().then_some(120.0),
            error: None,
            past,
            after: Vec::new(),
            dependents: Vec::new(),
            again: false,
        }
    }

    fn states(facts: &Facts) -> Vec<(f64, &'static str, u32)> {
        facts
            .events()
            .iter()
            .map(|e| (e.at, e.state.as_str(), e.attempt))
            .collect()
    }

    #[test]
    fn a_task_that_ran_once_has_three_events_and_one_attempt() {
        let once = facts(State::Succeeded, 1, Vec::new());
        assert_eq!(
            states(&once),
            [
                (100.0, "pending", 1),
                (110.0, "running", 1),
                (120.0, "succeeded", 1)
            ]
        );
        let attempts = once.attempts();
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            (attempts[0].started_at, attempts[0].ended_at),
            (Some(110.0), Some(120.0))
        );
    }

    #[test]
    fn each_retry_is_a_run_and_a_pending_again_with_its_error() {
        let past = vec![
            PastAttempt {
                attempt: 1,
                started_at: Some(101.0),
                ended_at: Some(102.0),
                error: failed("one"),
            },
            PastAttempt {
                attempt: 2,
                started_at: Some(103.0),
                ended_at: Some(104.0),
                error: failed("two"),
            },
        ];
        let retried = facts(State::Succeeded, 3, past);
        assert_eq!(
            states(&retried),
            [
                (100.0, "pending", 1),
                (101.0, "running", 1),
                (102.0, "pending", 2),
                (103.0, "running", 2),
                (104.0, "pending", 3),
                (110.0, "running", 3),
                (120.0, "succeeded", 3),
            ]
        );
        let events = retried.events();
        assert_eq!(events[2].error, failed("one"));
        assert_eq!(events[4].error, failed("two"));
        let errors: Vec<_> = retried.attempts().into_iter().map(|a| a.error).collect();
        assert_eq!(errors, [failed("one"), failed("two"), None]);
    }

    #[test]
    fn a_task_that_never_started_made_no_attempt() {
        let mut cancelled = facts(State::Cancelled, 1, Vec::new());
        cancelled.started_at = None;
        assert_eq!(
            states(&cancelled),
            [(100.0, "pending", 1), (120.0, "cancelled", 1)]
        );
        assert!(cancelled.attempts().is_empty());
    }

    #[test]
    fn an_attempt_lost_with_its_process_has_no_end_event() {
        let lost = PastAttempt {
            attempt: 1,
            started_at: Some(101.0),
            ended_at: None,
            error: Some(AttemptError::lost("gone".into())),
        };
        let mut running = facts(State::Running, 2, vec![lost]);
        running.started_at = Some(130.0);
        assert_eq!(
            states(&running),
            [
                (100.0, "pending", 1),
                (101.0, "running", 1),
                (130.0, "running", 2)
            ]
        );
        let attempts = running.attempts();
        assert_eq!(attempts[1].ended_at, None, "still running");
    }

    #[test]
    fn dependents_from_both_places_are_listed_once_in_order() {
        let mut f = facts(State::Succeeded, 1, Vec::new());
        f.dependents = vec![5, 9];
        f.add_dependents(vec![3, 5]);
        assert_eq!(f.dependents, [3, 5, 9]);
    }
}
