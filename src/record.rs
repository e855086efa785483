//! One task's record: what it is, where it stands, and what it produced.

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::attempts::{AttemptError, PastAttempt, Trail};
use crate::limits::{Gate, Waiter};
use crate::policy::{PollPolicy, NO_BUCKET};
use crate::retry::Retry;
use crate::siblings::{Family, NextPoll, Sibling};

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

    fn from_index(index: u8) -> State {
        State::ALL[usize::from(index)]
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

/// Figures that records keep up to date as they change, under their own
/// lock, so that the counts never see a task in two states or in none.
#[derive(Default)]
pub struct Counts {
    states: [AtomicUsize; 6],
    /// Polling tasks now running: the poll budget is shared among them.
    polling: AtomicUsize,
    /// `get_output()` calls made by the poller so far.
    polls: AtomicU64,
    /// Tasks that ended (timed out) while a worker is still inside their
    /// `run()`: Python cannot interrupt it, so the worker stays busy.
    ended_on_worker: AtomicUsize,
}

impl Counts {
    fn transition(&self, from: State, to: State) {
        self.states[from.index()].fetch_sub(1, Ordering::Relaxed);
        self.states[to.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A new record, pending.
    pub fn added(&self) {
        self.states[State::Pending.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A record forgotten in `state`.
    pub fn removed(&self, state: State) {
        self.states[state.index()].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self, state: State) -> usize {
        self.states[state.index()].load(Ordering::Relaxed)
    }

    pub fn polling(&self) -> usize {
        self.polling.load(Ordering::Relaxed)
    }

    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    pub fn ended_on_worker(&self) -> usize {
        self.ended_on_worker.load(Ordering::Relaxed)
    }

    /// In a forked child no worker exists: none is held by an ended task.
    pub fn forget_workers(&self) {
        self.ended_on_worker.store(0, Ordering::Relaxed);
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
    /// Cancelled for a reason the status tells: a task it waited for did
    /// not succeed.
    CancelledBecause(ErrorInfo),
    TimedOut,
}

impl Outcome {
    pub fn state(&self) -> State {
        match self {
            Outcome::Succeeded(_) => State::Succeeded,
            Outcome::Failed(_) => State::Failed,
            Outcome::Cancelled | Outcome::CancelledBecause(_) => State::Cancelled,
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
    pub error: Option<Box<ErrorInfo>>,
    /// The task object; released once the task is final.
    pub task: Option<Py<PyAny>>,
    /// The task's bound `get_output`, while it is polled (or, for a task
    /// whose `run()` is a coroutine, what stands for the running coroutine).
    pub get_output: Option<Py<PyAny>>,
    /// Who hears when it ends, if anyone (most tasks: no one).
    pub listeners: Option<Box<Listeners>>,
    /// A worker is inside the task's `run()` (or collecting its output).
    pub on_worker: bool,
    /// The cluster worker's address where the task runs or ran; None here.
    pub worker: Option<Py<PyString>>,
    /// Runs started again: after a retry, or a lost cluster worker.
    pub reruns: u32,
    /// Unix time before which a pending task does not start (a delay, or a
    /// retry's back-off).
    pub not_before: Option<f64>,
    /// The task holds a slot of its concurrency limit.
    pub slot: bool,
    /// `get_output()` calls in a row that raised (see `PollPolicy::errors`).
    pub poll_errors: u32,
    /// What the task last said of its progress (its optional `progress()`).
    pub report: Option<Box<Report>>,
    /// Its `progress()` raised once already (and was logged).
    pub report_failed: bool,
    /// Its past attempts and the tasks submitted after it, for its
    /// timeline; None until it has either.
    pub trail: Option<Box<Trail>>,
}

/// What is told when a task ends.
#[derive(Default)]
pub struct Listeners {
    /// Done callbacks, each with the argument it is called with.
    pub callbacks: Vec<(Py<PyAny>, Py<PyAny>)>,
    /// Tasks submitted `after` this one, waiting for it to end.
    pub dependents: Vec<Arc<Record>>,
}

impl Listeners {
    /// The listeners in `slot`, made on first use.
    fn of(slot: &mut Option<Box<Listeners>>) -> &mut Listeners {
        slot.get_or_insert_with(Box::default)
    }
}

/// A task's progress as the status dict shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// In [0, 1].
    pub fraction: Option<f64>,
    pub message: Option<String>,
}

/// What a task waits for and how it is ordered: fixed at submit.
#[derive(Default)]
pub struct Plan {
    /// Among pending tasks, a higher one starts first.
    pub priority: i32,
    pub limit: Option<Arc<Gate<Record>>>,
    /// The limit's label (also for a record read back from the journal,
    /// which has no gate).
    pub limit_label: Option<Arc<str>>,
    pub retry: Option<Py<Retry>>,
    /// The tasks this one starts after.
    pub after: Vec<u64>,
}

/// The plan of a task submitted with none of the options a plan holds.
static PLAIN: Plan = Plan {
    priority: 0,
    limit: None,
    limit_label: None,
    retry: None,
    after: Vec::new(),
};

impl Plan {
    /// Nothing but the defaults: the task is routed at submit.
    pub fn is_plain(&self) -> bool {
        self.priority == 0 && self.limit.is_none() && self.retry.is_none() && self.after.is_empty()
    }
}

/// What `Record::restored` makes a record of.
pub struct Recorded {
    pub id: u64,
    pub name: Py<PyString>,
    pub kind: Option<Kind>,
    pub state: State,
    pub submitted_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub polls: u64,
    pub attempt: u32,
    pub result: Option<Py<PyAny>>,
    pub error: Option<ErrorInfo>,
    pub worker: Option<Py<PyString>>,
    pub plan: Plan,
    pub not_before: Option<f64>,
    pub task_type: Option<Arc<str>>,
    pub recipe: Option<Box<str>>,
}

pub struct Record {
    pub id: u64,
    pub name: Py<PyString>,
    pub submitted_at: f64,
    /// 1 for a task's first run; a task that runs again after a crash has a
    /// new record with the next number.
    pub attempt: u32,
    /// How it is polled, if not by the runner's policy (see `Engine::policy_of`).
    pub policy: Option<Box<PollPolicy>>,
    /// See `plan()`: None for the plain plan, which most tasks have, so
    /// that they carry none of its memory (a record's every byte is a
    /// page touched per few thousand tasks).
    plan: Option<Box<Plan>>,
    /// Its type label and its recipe, if it was given either (see `Given`).
    given: Option<Box<Given>>,
    /// Tasks in `plan.after` not yet succeeded, plus one while the submit
    /// that registers them is under way.
    pub unmet: AtomicUsize,
    /// Where the poll budget counts this task (`policy::Demand`).
    pub poll_bucket: AtomicU8,
    /// When its one live poll is due (`siblings::poll_time`; 0: none).
    pub next_poll: NextPoll,
    /// The running polling tasks of its name, once it polls.
    pub family: OnceLock<Arc<Family<Record>>>,
    /// The state, also readable without the lock (a done check takes no lock);
    /// written only under `progress`, with it.
    state: AtomicU8,
    pub progress: Mutex<Progress>,
}

impl Sibling for Record {
    fn next_poll(&self) -> &NextPoll {
        &self.next_poll
    }

    fn has_ended(&self) -> bool {
        self.state().is_final()
    }
}

/// What some tasks are submitted with, and most are not.
pub struct Given {
    /// The label it was submitted with: `submit(type=...)`, an HTTP task's type.
    task_type: Option<Arc<str>>,
    /// The recipe given as data at submit (JSON text), which makes the task
    /// again (the HTTP API's "run again").
    recipe: Option<Box<str>>,
}

impl Given {
    fn boxed(task_type: Option<Arc<str>>, recipe: Option<Box<str>>) -> Option<Box<Given>> {
        (task_type.is_some() || recipe.is_some()).then(|| Box::new(Given { task_type, recipe }))
    }
}

/// None for a plan like `PLAIN` (its limit's label too: a record read back
/// from the journal has the label without the gate).
fn boxed_unless_plain(plan: Plan) -> Option<Box<Plan>> {
    (!plan.is_plain() || plan.limit_label.is_some()).then(|| Box::new(plan))
}

impl Record {
    /// What it waits for and how it is ordered: fixed at submit.
    pub fn plan(&self) -> &Plan {
        self.plan.as_deref().unwrap_or(&PLAIN)
    }

    pub fn set_plan(&mut self, plan: Plan) {
        self.plan = boxed_unless_plain(plan);
    }

    /// The label it was submitted with: `submit(type=...)`, an HTTP task's type.
    pub fn task_type(&self) -> Option<&Arc<str>> {
        self.given.as_ref()?.task_type.as_ref()
    }

    /// The recipe given as data at submit (JSON text), if any.
    pub fn recipe(&self) -> Option<&str> {
        self.given.as_ref()?.recipe.as_deref()
    }

    pub fn set_given(&mut self, task_type: Option<Arc<str>>, recipe: Option<Box<str>>) {
        self.given = Given::boxed(task_type, recipe);
    }

    pub fn new(
        id: u64,
        name: Py<PyString>,
        task: Py<PyAny>,
        kind: Option<Kind>,
        policy: Option<PollPolicy>,
    ) -> Record {
        Record {
            id,
            name,
            submitted_at: unix_now(),
            attempt: 1,
            policy: policy.map(Box::new),
            plan: None,
            given: None,
            unmet: AtomicUsize::new(0),
            poll_bucket: AtomicU8::new(NO_BUCKET),
            next_poll: NextPoll::new(0),
            family: OnceLock::new(),
            state: AtomicU8::new(State::Pending as u8),
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
                listeners: None,
                on_worker: false,
                worker: None,
                reruns: 0,
                not_before: None,
                slot: false,
                poll_errors: 0,
                report: None,
                report_failed: false,
                trail: None,
            }),
        }
    }

    /// A finished task as it was recorded elsewhere (read back from the
    /// journal): final, and in no store.
    pub fn restored(r: Recorded) -> Record {
        Record {
            id: r.id,
            name: r.name,
            submitted_at: r.submitted_at,
            attempt: r.attempt,
            policy: None,
            plan: boxed_unless_plain(r.plan),
            given: Given::boxed(r.task_type, r.recipe),
            unmet: AtomicUsize::new(0),
            poll_bucket: AtomicU8::new(NO_BUCKET),
            next_poll: NextPoll::new(0),
            family: OnceLock::new(),
            state: AtomicU8::new(r.state as u8),
            progress: Mutex::new(Progress {
                state: r.state,
                kind: r.kind,
                started_at: r.started_at,
                finished_at: r.finished_at,
                polls: r.polls,
                result: r.result,
                error: r.error.map(Box::new),
                task: None,
                get_output: None,
                listeners: None,
                on_worker: false,
                worker: r.worker,
                reruns: 0,
                not_before: r.not_before,
                slot: false,
                poll_errors: 0,
                report: None,
                report_failed: false,
                trail: None,
            }),
        }
    }

    pub fn state(&self) -> State {
        State::from_index(self.state.load(Ordering::Acquire))
    }

    pub fn kind(&self) -> Option<Kind> {
        self.progress.lock().kind
    }

    /// Pending to running; false when the task ended before it could start.
    /// A task not known to be polling starts on a worker, which calls its
    /// `run()`. Needs no GIL: a worker claims its task before it attaches.
    pub fn start(&self, kind: Option<Kind>, counts: &Counts) -> bool {
        self.start_on(kind, None, counts)
    }

    /// Pending to running: here (`worker` None), or on a cluster worker,
    /// where no thread of this process holds it.
    pub fn start_on(
        &self,
        kind: Option<Kind>,
        worker: Option<Py<PyString>>,
        counts: &Counts,
    ) -> bool {
        let mut p = self.progress.lock();
        self.start_locked(&mut p, kind, worker, counts)
    }

    /// A worker's claim, detached: a task known to be blocking starts now.
    /// None when its kind is not known to be blocking (it starts, if at
    /// all, once its worker has the GIL); else whether it started.
    pub fn start_if_blocking(&self, counts: &Counts) -> Option<bool> {
        let mut p = self.progress.lock();
        (p.kind == Some(Kind::Blocking)).then(|| self.start_locked(&mut p, None, None, counts))
    }

    fn start_locked(
        &self,
        p: &mut Progress,
        kind: Option<Kind>,
        worker: Option<Py<PyString>>,
        counts: &Counts,
    ) -> bool {
        if p.state != State::Pending {
            return false;
        }
        p.state = State::Running;
        self.state.store(State::Running as u8, Ordering::Release);
        counts.transition(State::Pending, State::Running);
        p.started_at = Some(unix_now());
        if kind.is_some() {
            p.kind = kind;
        }
        if p.kind == Some(Kind::Polling) {
            counts.polling.fetch_add(1, Ordering::Relaxed);
        } else if worker.is_none() {
            p.on_worker = true;
        }
        p.worker = worker;
        true
    }

    /// The attempt now under way: the first run's number plus the runs
    /// started again after a lost cluster worker.
    pub fn attempt_now(&self) -> u32 {
        self.attempt + self.progress.lock().reruns
    }

    /// A task whose cluster worker was lost runs again: back to pending,
    /// with the next attempt; the attempt that ended goes to its trail with
    /// `error` (why). Returns the attempt it is now on, or None when it is
    /// already final.
    pub fn requeue(&self, error: Option<AttemptError>, counts: &Counts) -> Option<u32> {
        let mut p = self.progress.lock();
        self.run_again(&mut p, error, counts)
    }

    fn run_again(
        &self,
        p: &mut Progress,
        error: Option<AttemptError>,
        counts: &Counts,
    ) -> Option<u32> {
        match p.state {
            State::Pending => {}
            State::Running => {
                p.state = State::Pending;
                self.state.store(State::Pending as u8, Ordering::Release);
                counts.transition(State::Running, State::Pending);
                if p.kind == Some(Kind::Polling) {
                    counts.polling.fetch_sub(1, Ordering::Relaxed);
                }
            }
            _ => return None,
        }
        let ended = PastAttempt {
            attempt: self.attempt + p.reruns,
            started_at: p.started_at.take(),
            ended_at: Some(unix_now()),
            error,
        };
        Trail::of(&mut p.trail).attempts.push(ended);
        p.worker = None;
        p.reruns += 1;
        Some(self.attempt + p.reruns)
    }

    /// A task whose run failed waits to run again (with the next attempt)
    /// until `not_before`, keeping its error (and, in its trail, the attempt
    /// that ended with it). Returns the attempt it is now on and whether it
    /// gave back a limit slot, or None when it is already final.
    pub fn retry_later(
        &self,
        error: ErrorInfo,
        not_before: f64,
        counts: &Counts,
    ) -> Option<(u32, bool)> {
        let mut p = self.progress.lock();
        let why = AttemptError {
            type_name: error.type_name.clone(),
            message: error.message.clone(),
            traceback: error.traceback.clone(),
        };
        let attempt = self.run_again(&mut p, Some(why), counts)?;
        p.error = Some(Box::new(error));
        p.not_before = Some(not_before);
        p.get_output = None;
        p.poll_errors = 0;
        Some((attempt, std::mem::take(&mut p.slot)))
    }

    /// Registers `dependent` to hear when this task ends. Returns the final
    /// state instead when it has ended already.
    pub fn add_dependent(&self, dependent: &Arc<Record>) -> Option<State> {
        let mut p = self.progress.lock();
        Trail::of(&mut p.trail).dependents.push(dependent.id);
        if p.state.is_final() {
            return Some(p.state);
        }
        Listeners::of(&mut p.listeners)
            .dependents
            .push(dependent.clone());
        None
    }

    /// One of the tasks this one waits for succeeded (or, with the extra
    /// count a submit holds, the submit is done): true when none is left.
    pub fn dependency_met(&self) -> bool {
        self.unmet.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// The task object, until the task is final.
    pub fn task(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.progress.lock().task.as_ref().map(|t| t.clone_ref(py))
    }

    /// Its kind so far, and the task object (None once it is final).
    pub fn kind_and_task(&self, py: Python<'_>) -> (Option<Kind>, Option<Py<PyAny>>) {
        let p = self.progress.lock();
        (p.kind, p.task.as_ref().map(|t| t.clone_ref(py)))
    }

    /// The worker is done with the task's `run()`, which showed the task to
    /// be `kind` (None: it raised, and the kind stays as it was). If the
    /// task ended meanwhile, its worker no longer counts as held by an
    /// ended task.
    pub fn leave_worker(&self, kind: Option<Kind>, counts: &Counts) {
        let mut p = self.progress.lock();
        if std::mem::take(&mut p.on_worker) && p.state.is_final() {
            counts.ended_on_worker.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(kind) = kind {
            Self::classified_locked(&mut p, kind, counts);
        }
    }

    /// A running task whose kind was not known turned out to be `kind`.
    pub fn classified(&self, kind: Kind, counts: &Counts) {
        Self::classified_locked(&mut self.progress.lock(), kind, counts);
    }

    fn classified_locked(p: &mut Progress, kind: Kind, counts: &Counts) {
        if p.kind.is_none() && kind == Kind::Polling && p.state == State::Running {
            counts.polling.fetch_add(1, Ordering::Relaxed);
        }
        p.kind = Some(kind);
    }

    /// Looks up `get_output` once, so that each poll is a plain call.
    pub fn bind_get_output(&self, py: Python<'_>) -> PyResult<()> {
        let Some(task) = self.progress.lock().task.as_ref().map(|t| t.clone_ref(py)) else {
            return Ok(());
        };
        let method = task
            .bind(py)
            .getattr(crate::names::names().get_output.bind(py))?
            .unbind();
        self.progress.lock().get_output = Some(method);
        Ok(())
    }

    /// Keeps what stands for a running coroutine task (releasing it cancels
    /// the coroutine) until the task is final. Hands it back if it already is.
    pub fn keep_while_running(&self, running: Py<PyAny>) -> Option<Py<PyAny>> {
        let mut p = self.progress.lock();
        if p.state.is_final() {
            return Some(running);
        }
        p.get_output = Some(running);
        None
    }

    /// The bound `get_output` of a running task, counting one poll: the only
    /// place polls are counted.
    pub fn get_output_for_poll(&self, py: Python<'_>, counts: &Counts) -> Option<Py<PyAny>> {
        let mut p = self.progress.lock();
        if p.state != State::Running {
            return None;
        }
        p.polls += 1;
        counts.polls.fetch_add(1, Ordering::Relaxed);
        p.get_output.as_ref().map(|m| m.clone_ref(py))
    }

    /// Adds a done callback, called with `arg`, unless the task is final:
    /// then hands it back to be called now.
    pub fn add_callback(
        &self,
        callback: Py<PyAny>,
        arg: Py<PyAny>,
    ) -> Option<(Py<PyAny>, Py<PyAny>)> {
        let mut p = self.progress.lock();
        if p.state.is_final() {
            return Some((callback, arg));
        }
        Listeners::of(&mut p.listeners)
            .callbacks
            .push((callback, arg));
        None
    }
}

impl Waiter for Record {
    fn priority(&self) -> i32 {
        self.plan().priority
    }

    fn is_final(&self) -> bool {
        self.state().is_final()
    }

    fn take_slot(&self) -> bool {
        let mut p = self.progress.lock();
        if p.state.is_final() {
            return false;
        }
        p.slot = true;
        true
    }
}

/// What a final transition hands back to the engine: the state left, and
/// what must be released or called while attached to Python.
pub struct Finished {
    pub to: State,
    /// Unix time it finished at.
    pub at: f64,
    /// Seconds from its start to its end; None if it never started.
    pub runtime: Option<f64>,
    /// The task had started: its work may still be going on somewhere.
    pub was_running: bool,
    pub listeners: Listeners,
    /// The task object and its bound method, to release while attached.
    pub task: (Option<Py<PyAny>>, Option<Py<PyAny>>),
    /// The task gave back a slot of its concurrency limit.
    pub slot: bool,
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
        self.state.store(to as u8, Ordering::Release);
        counts.transition(from, to);
        if from == State::Running && p.kind == Some(Kind::Polling) {
            counts.polling.fetch_sub(1, Ordering::Relaxed);
        }
        if p.on_worker {
            counts.ended_on_worker.fetch_add(1, Ordering::Relaxed);
        }
        let at = unix_now();
        p.finished_at = Some(at);
        match outcome {
            Outcome::Succeeded(value) => {
                p.result = Some(value);
                p.error = None; // an earlier attempt's, kept while a retry waited
            }
            Outcome::Failed(error) | Outcome::CancelledBecause(error) => {
                p.error = Some(Box::new(error))
            }
            Outcome::Cancelled | Outcome::TimedOut => {}
        }
        p.not_before = None;
        Some(Finished {
            to,
            at,
            runtime: p.started_at.map(|started| (at - started).max(0.0)),
            was_running: from == State::Running,
            listeners: p.listeners.take().map(|l| *l).unwrap_or_default(),
            task: (p.task.take(), p.get_output.take()),
            slot: std::mem::take(&mut p.slot),
        })
    }
}

/// The wall clock in Unix seconds. A task reads it twice or three times,
/// so it goes straight to `clock_gettime`: `SystemTime` and `Duration`
/// add about 12 ns to its 32 here.
#[cfg(unix)]
pub fn unix_now() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } != 0 {
        return 0.0;
    }
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

#[cfg(not(unix))]
pub fn unix_now() -> f64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
impl Record {
    /// A record named "t" with no task object, for unit tests.
    pub fn bare(id: u64, kind: Option<Kind>) -> Record {
        Python::initialize();
        Python::attach(|py| {
            let name = PyString::new(py, "t").unbind();
            Record::new(id, name, py.None(), kind, None)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Option<Kind>) -> Record {
        Record::bare(1, kind)
    }

    fn counted(kind: Option<Kind>, counts: &Counts) -> Record {
        let record = record(kind);
        counts.added();
        record
    }

    #[test]
    fn a_running_polling_task_is_counted_until_it_ends() {
        let counts = Counts::default();
        let known = counted(Some(Kind::Polling), &counts);
        let found = counted(None, &counts);
        known.start(Some(Kind::Polling), &counts);
        found.start(None, &counts);
        assert_eq!(counts.polling(), 1);
        found.leave_worker(Some(Kind::Polling), &counts);
        assert_eq!(counts.polling(), 2);
        drop(known.finish(Outcome::Cancelled, &counts));
        drop(found.finish(Outcome::TimedOut, &counts));
        assert_eq!(counts.polling(), 0);
        assert_eq!(counts.get(State::Running), 0);
        assert_eq!(counts.get(State::Cancelled), 1);
    }

    #[test]
    fn a_task_that_ends_while_its_worker_runs_it_holds_the_worker_until_run_returns() {
        let counts = Counts::default();
        let task = counted(Some(Kind::Blocking), &counts);
        task.start(Some(Kind::Blocking), &counts);
        drop(task.finish(Outcome::TimedOut, &counts));
        assert_eq!(counts.ended_on_worker(), 1);
        task.leave_worker(None, &counts);
        assert_eq!(counts.ended_on_worker(), 0);
        // A task that ends after its worker left it holds no worker.
        let task = counted(Some(Kind::Blocking), &counts);
        task.start(Some(Kind::Blocking), &counts);
        task.leave_worker(Some(Kind::Blocking), &counts);
        drop(task.finish(Outcome::Cancelled, &counts));
        assert_eq!(counts.ended_on_worker(), 0);
    }

    #[test]
    fn a_worker_claim_starts_only_a_task_known_to_be_blocking() {
        let counts = Counts::default();
        assert_eq!(counted(None, &counts).start_if_blocking(&counts), None);
        let blocking = counted(Some(Kind::Blocking), &counts);
        assert_eq!(blocking.start_if_blocking(&counts), Some(true));
        assert_eq!(blocking.state(), State::Running);
        assert_eq!(
            blocking.start_if_blocking(&counts),
            Some(false),
            "already running"
        );
        let finished = blocking
            .finish(Outcome::Cancelled, &counts)
            .expect("it was running");
        assert!(finished.runtime.is_some_and(|r| r >= 0.0));
        assert_eq!(counts.get(State::Running), 0);
    }

    #[test]
    fn a_record_stays_small() {
        // A record is the memory a submit touches first (a page fault per
        // few thousand tasks); with its Arc's counts it takes 256 bytes.
        let size = std::mem::size_of::<Record>();
        assert!(size <= 232, "a record takes {size} bytes");
    }

    #[test]
    fn only_polls_count_as_polls() {
        let counts = Counts::default();
        let task = counted(Some(Kind::Polling), &counts);
        Python::attach(|py| {
            assert!(
                task.get_output_for_poll(py, &counts).is_none(),
                "not running yet"
            );
            task.start(Some(Kind::Polling), &counts);
            task.get_output_for_poll(py, &counts);
            task.get_output_for_poll(py, &counts);
        });
        assert_eq!(task.progress.lock().polls, 2);
        assert_eq!(counts.polls(), 2);
    }
}
