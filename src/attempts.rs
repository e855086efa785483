//! What a task's timeline shows beyond its status: the attempts it made
//! before the one now under way, and the tasks submitted after it.
//!
//! A record keeps these in a `Trail` it allocates only when it needs one
//! (its first retry or lost run, its first dependent), so a task that runs
//! once with nothing after it pays a null pointer.

/// Why an attempt ended, as text (what the status dict's `error` holds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptError {
    pub type_name: String,
    pub message: String,
    pub traceback: String,
}

impl AttemptError {
    /// The error of an attempt that was lost rather than failed: no
    /// exception was raised, so there is no traceback.
    pub fn lost(message: String) -> AttemptError {
        AttemptError {
            type_name: LOST.into(),
            message,
            traceback: String::new(),
        }
    }
}

/// The type name of a lost attempt's error: the exception a task that
/// cannot run again ends with (`taskrunner.TaskLost`).
pub const LOST: &str = "TaskLost";

/// One attempt the task made and left behind.
#[derive(Clone, Debug, PartialEq)]
pub struct PastAttempt {
    pub attempt: u32,
    /// None when it never started (it waited when its process ended).
    pub started_at: Option<f64>,
    /// None when the moment is unknown: the attempt was lost with its process.
    pub ended_at: Option<f64>,
    pub error: Option<AttemptError>,
}

/// A task's past attempts, oldest first, and the ids of the tasks
/// submitted `after` it, in the order they were.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trail {
    pub attempts: Vec<PastAttempt>,
    pub dependents: Vec<u64>,
}

impl Trail {
    /// The trail in `slot`, made on first use.
    pub fn of(slot: &mut Option<Box<Trail>>) -> &mut Trail {
        slot.get_or_insert_with(Box::default)
    }

    /// The past attempts in `slot`, none if it is empty.
    pub fn attempts_in(slot: &Option<Box<Trail>>) -> &[PastAttempt] {
        slot.as_deref().map_or(&[], |t| &t.attempts)
    }

    /// The dependents in `slot`, none if it is empty.
    pub fn dependents_in(slot: &Option<Box<Trail>>) -> &[u64] {
        slot.as_deref().map_or(&[], |t| &t.dependents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trail_is_made_on_first_use_only() {
        let mut slot: Option<Box<Trail>> = None;
        assert!(Trail::attempts_in(&slot).is_empty());
        assert!(Trail::dependents_in(&slot).is_empty());
        Trail::of(&mut slot).dependents.push(7);
        Trail::of(&mut slot).dependents.push(9);
        assert_eq!(Trail::dependents_in(&slot), &[7, 9]);
        assert_eq!(
            std::mem::size_of::<Option<Box<Trail>>>(),
            std::mem::size_of::<usize>()
        );
    }
}
