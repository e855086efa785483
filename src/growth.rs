//! When the blocking pool adds workers, and when it takes back the ones
//! that did not pay: the rule is about the GIL.
//!
//! More workers only help when the busy ones wait off the GIL (they sleep,
//! read, wait on a socket); when they merely take turns with the GIL,
//! another thread only adds contention. The pool's monitor looks at the
//! queue every tick while work waits, and asks `Growth::decide`:
//! - a worker is still on its way to the queue, or waits for the GIL with a
//!   job in hand: change nothing yet;
//! - a submitter floods the queue (`FLOOD_RATE` jobs a second or more): it
//!   holds the GIL for most of the time, so workers stall whatever their
//!   jobs do. Change nothing, and judge afresh once the flood ends: a flood
//!   of instant jobs then meets the one worker that keeps up with it, and
//!   a flood of sleeping ones is seen blocked a tick later;
//! - a new worker waited longer than a switch interval for the GIL: the GIL,
//!   not the workers, is the bottleneck (another thread runs Python). Take
//!   back the workers just added and add none for a back-off;
//! - no job finished for `blocked_after` (three of the interpreter's switch
//!   intervals, 15 ms by default): a worker that merely waits its turn for
//!   the GIL gets it within a switch interval, and a job that gives the GIL
//!   up once (a `sleep(0)`) needs two turns while another thread holds on to
//!   it. So the busy workers are likely blocked off the GIL in long jobs.
//!   Add a wave of workers: one, then as many as are busy each tick while
//!   the new ones get the GIL at once and no submitter is queueing more
//!   work (a submitter holds the GIL for long spells), up to the queue's
//!   length. 100 sleeping jobs all run within about 25 ms;
//! - jobs finish but work still waits: a trial. Measure the jobs finished
//!   per second over a window (20 to 50 ms and 16 jobs or more), add a step
//!   of workers (a quarter of the busy ones at least), measure again. If
//!   the rate rose by at least a tenth, keep them; the next step doubles
//!   when the rise was at least three quarters of what workers blocked off
//!   the GIL would give (k more on top of n: k/n) and nothing was queued
//!   meanwhile, else it is one. (Half was too little: a second worker on
//!   `sleep(0)` jobs gives +25 to +70% on two cores, so the step doubled
//!   into a trial of four, and a noisy window could keep them.) If not,
//!   retire them (each leaves after its current job) and back off, 100 ms
//!   at first, doubling to 1 s while trials keep failing. A flood of
//!   instant jobs that each release the GIL once thus settles on the two or
//!   three workers that keep the GIL busy, not on dozens that fight for it.

use std::time::{Duration, Instant};

/// How long the monitor measures throughput before and after adding
/// workers: at least `WINDOW`, and until `WINDOW_JOBS` jobs finished (a
/// rate from a handful is noise), but no longer than `MAX_WINDOW`.
const WINDOW: Duration = Duration::from_millis(20);
const WINDOW_JOBS: u64 = 16;
const MAX_WINDOW: Duration = Duration::from_millis(50);

/// Jobs queued a second from which a submitter is taken to hold the GIL
/// most of the time: a submit costs about a microsecond with the GIL held,
/// and a loop of submits spends as much again in its own Python.
const FLOOD_RATE: f64 = 200_000.0;

/// The wait after a trial that raised nothing; it doubles up to the maximum
/// while trials keep failing.
pub const NO_GAIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_NO_GAIN_BACKOFF: Duration = Duration::from_secs(1);

/// What the monitor sees of the pool at a tick.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    pub queued: usize,
    pub busy: usize,
    /// Woken or new workers that have not yet looked at the queue.
    pub searching: usize,
    /// Workers holding a job while they wait for the GIL.
    pub attaching: usize,
    /// Jobs finished so far.
    pub completed: u64,
    /// Jobs queued so far.
    pub pushed: u64,
    /// Times a worker waited longer than a switch interval for the GIL.
    pub slow_attaches: u64,
}

/// What the pool should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Keep,
    Add(usize),
    /// Let this many workers leave after their current job.
    Retire(usize),
}

/// Workers added to see whether they pay, and the rate before them (None
/// for a wave added while no job finished).
struct Trial {
    added: usize,
    /// Busy workers when it began.
    busy_before: usize,
    rate_before: Option<f64>,
}

/// The monitor's memory between ticks.
pub struct Growth {
    blocked_after: Duration,
    /// Jobs finished by the last look, and when that count last rose.
    completed: u64,
    progress_at: Instant,
    /// When the monitor last looked.
    looked_at: Instant,
    /// Jobs queued by the last look, and by the start of the window.
    pushed: u64,
    window_pushed: u64,
    slow_attaches: u64,
    /// The throughput window under way: its start and the jobs finished then.
    window_start: Instant,
    window_completed: u64,
    trial: Option<Trial>,
    /// Workers the next trial adds.
    step: usize,
    backoff: Duration,
    /// No trial before this.
    retry_at: Instant,
}

impl Growth {
    pub fn new(load: &Load, blocked_after: Duration, now: Instant) -> Growth {
        Growth {
            blocked_after,
            completed: load.completed,
            progress_at: now,
            looked_at: now,
            pushed: load.pushed,
            window_pushed: load.pushed,
            slow_attaches: load.slow_attaches,
            window_start: now,
            window_completed: load.completed,
            trial: None,
            step: 1,
            backoff: NO_GAIN_BACKOFF,
            retry_at: now,
        }
    }

    /// After the monitor slept with nothing to do: if jobs finished
    /// meanwhile, the busy workers are not known to be blocked, and the
    /// window starts again. A back-off under way stays.
    pub fn resume(&mut self, load: &Load, now: Instant) {
        if load.completed != self.completed {
            let (retry_at, backoff) = (self.retry_at, self.backoff);
            *self = Growth::new(load, self.blocked_after, now);
            self.retry_at = retry_at;
            self.backoff = backoff;
        }
    }

    /// What to do at this tick (see the module comment).
    pub fn decide(&mut self, load: &Load, now: Instant) -> Change {
        let finished = load.completed - self.completed;
        self.completed = load.completed;
        if finished > 0 {
            self.progress_at = now;
        }
        // While a submitter queues work it holds the GIL for long spells:
        // the rates and waits seen meanwhile say little about the workers.
        let pushed = load.pushed - self.pushed;
        let pushing = pushed > 0;
        let since = now.duration_since(self.looked_at).as_secs_f64();
        let flooding = pushing && pushed as f64 >= FLOOD_RATE * since;
        self.pushed = load.pushed;
        self.looked_at = now;
        if load.slow_attaches != self.slow_attaches {
            self.slow_attaches = load.slow_attaches;
            return self.no_gain(now);
        }
        if flooding {
            // What the workers did meanwhile says nothing of their jobs.
            self.progress_at = now;
            self.restart_window(load, now);
            return Change::Keep;
        }
        if load.queued == 0 || load.searching > 0 || load.attaching > 0 {
            return Change::Keep;
        }
        if finished == 0 {
            return self.when_blocked(load, now, pushing);
        }
        self.when_flowing(load, now)
    }

    /// Started workers: `added` of what `decide` asked for (the cap, or
    /// workers already searching, may allow fewer).
    pub fn added(&mut self, added: usize) {
        if added == 0 {
            self.trial = None;
        } else if let Some(trial) = &mut self.trial {
            trial.added = added;
        }
    }

    /// No job finished since the last look.
    fn when_blocked(&mut self, load: &Load, now: Instant, pushing: bool) -> Change {
        if now.duration_since(self.progress_at) < self.blocked_after || now < self.retry_at {
            return Change::Keep;
        }
        // The last wave, if any, got the GIL at once: it stays, and the
        // next one is as large as the busy workers (one while a submitter
        // holds the GIL: the GIL, not a sleep, may be what holds them up).
        let wave = if self.trial.take().is_some() && !pushing {
            load.busy.max(1)
        } else {
            1
        };
        self.restart_window(load, now);
        self.trial = Some(Trial {
            added: wave,
            busy_before: load.busy,
            rate_before: None,
        });
        Change::Add(wave)
    }

    /// Jobs finish and work still waits: run, judge or start a trial.
    fn when_flowing(&mut self, load: &Load, now: Instant) -> Change {
        let elapsed = now.duration_since(self.window_start);
        let jobs = load.completed - self.window_completed;
        if elapsed < WINDOW || (jobs < WINDOW_JOBS && elapsed < MAX_WINDOW) {
            return Change::Keep;
        }
        let rate = jobs as f64 / elapsed.as_secs_f64();
        let quiet = load.pushed == self.window_pushed;
        self.restart_window(load, now);
        let Some(trial) = self.trial.take() else {
            return if now >= self.retry_at {
                self.start_trial(load, rate)
            } else {
                Change::Keep
            };
        };
        match trial.rate_before {
            // A wave that got the GIL: its workers stay; measure afresh.
            None => Change::Keep,
            Some(before) if rate >= before * 1.1 => {
                self.backoff = NO_GAIN_BACKOFF;
                // Workers blocked off the GIL raise the rate in proportion:
                // at three quarters of that or more, the next step may double (unless
                // a submitter's spells with the GIL blur the measure).
                let ideal = trial.added as f64 / trial.busy_before.max(1) as f64;
                let near_ideal = rate >= before * (1.0 + ideal * 0.75);
                self.step = if near_ideal && quiet {
                    trial.added * 2
                } else {
                    1
                };
                self.start_trial(load, rate)
            }
            Some(_) => {
                self.trial = Some(trial);
                self.no_gain(now)
            }
        }
    }

    fn start_trial(&mut self, load: &Load, rate_before: f64) -> Change {
        // A quarter more at least: one more among many would raise the rate
        // by less than the tenth a trial must show.
        let added = self.step.max(load.busy / 4);
        self.trial = Some(Trial {
            added,
            busy_before: load.busy,
            rate_before: Some(rate_before),
        });
        Change::Add(added)
    }

    /// A trial did not pay, or the GIL is the bottleneck: take back the
    /// trial's workers and wait before the next.
    fn no_gain(&mut self, now: Instant) -> Change {
        self.retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_NO_GAIN_BACKOFF);
        self.step = 1;
        match self.trial.take() {
            Some(trial) => Change::Retire(trial.added),
            None => Change::Keep,
        }
    }

    fn restart_window(&mut self, load: &Load, now: Instant) {
        self.window_start = now;
        self.window_completed = load.completed;
        self.window_pushed = load.pushed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCKED_AFTER: Duration = Duration::from_millis(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn load(queued: usize, busy: usize, completed: u64) -> Load {
        Load {
            queued,
            busy,
            completed,
            ..Load::default()
        }
    }

    #[test]
    fn growth_doubles_once_every_busy_worker_is_blocked_past_a_switch_interval() {
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        let mut decide = |queued, busy, at| growth.decide(&load(queued, busy, 0), start + at);
        assert_eq!(
            decide(99, 1, ms(5)),
            Change::Keep,
            "maybe a wait for the GIL"
        );
        assert_eq!(decide(99, 1, ms(10)), Change::Add(1), "a first wave of one");
        assert_eq!(decide(98, 2, ms(11)), Change::Add(2));
        assert_eq!(decide(96, 4, ms(12)), Change::Add(4));
        assert_eq!(decide(3, 8, ms(13)), Change::Add(8), "capped by the caller");
    }

    #[test]
    fn nothing_changes_while_a_submitter_floods_the_queue() {
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        // A thousand jobs queued a millisecond and none finished for 30 ms:
        // the submitter, not the jobs, holds the worker up.
        let mut flood = load(0, 1, 0);
        for tick in 1..=30 {
            flood.pushed = tick * 1000;
            flood.queued = flood.pushed as usize;
            let change = growth.decide(&flood, start + ms(tick));
            assert_eq!(change, Change::Keep, "tick {tick}");
        }
        // The flood is over and still no job finishes: blocked, once
        // `blocked_after` has passed since the flood's end.
        assert_eq!(growth.decide(&flood, start + ms(31)), Change::Keep);
        let blocked = start + ms(30) + BLOCKED_AFTER;
        assert_eq!(growth.decide(&flood, blocked), Change::Add(1));
    }

    #[test]
    fn growth_takes_back_a_trial_when_a_new_worker_waited_for_the_gil() {
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        assert_eq!(
            growth.decide(&load(99, 1, 100), start + WINDOW),
            Change::Add(1)
        );
        let mut slow = load(98, 2, 200);
        slow.slow_attaches = 1;
        let at = start + WINDOW + ms(1);
        assert_eq!(
            growth.decide(&slow, at),
            Change::Retire(1),
            "the GIL is the bottleneck"
        );
        slow.completed = 300;
        assert_eq!(
            growth.decide(&slow, at + ms(20)),
            Change::Keep,
            "backing off"
        );
        slow.completed = 400;
        let after_backoff = at + NO_GAIN_BACKOFF;
        assert_eq!(
            growth.decide(&slow, after_backoff),
            Change::Add(1),
            "a new trial"
        );
    }

    #[test]
    fn a_wave_whose_worker_waited_for_the_gil_is_taken_back() {
        // Another thread runs Python: no job finishes, yet the workers are
        // not blocked off the GIL, and the new one waits for it too.
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        assert_eq!(
            growth.decide(&load(99, 1, 0), start + ms(10)),
            Change::Add(1)
        );
        let mut slow = load(99, 2, 0);
        slow.slow_attaches = 1;
        assert_eq!(growth.decide(&slow, start + ms(16)), Change::Retire(1));
        assert_eq!(
            growth.decide(&slow, start + ms(30)),
            Change::Keep,
            "backing off"
        );
    }

    #[test]
    fn growth_waits_while_a_worker_is_on_its_way() {
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        let later = start + Duration::from_secs(1);
        let mut on_its_way = load(10, 1, 0);
        on_its_way.attaching = 1;
        assert_eq!(growth.decide(&on_its_way, later), Change::Keep);
        on_its_way.attaching = 0;
        on_its_way.searching = 1;
        assert_eq!(growth.decide(&on_its_way, later), Change::Keep);
        assert_eq!(
            growth.decide(&load(0, 1, 0), later),
            Change::Keep,
            "nothing waits"
        );
    }

    /// Feeds `decide` one window after another: (busy workers, jobs per ms
    /// in the window just past, what `decide` should say).
    fn windows(growth: &mut Growth, start: Instant, steps: &[(usize, u64, Change)]) {
        let w = WINDOW.as_millis() as u64;
        let (mut at, mut completed) = (0, 0);
        for (i, &(busy, per_ms, expected)) in steps.iter().enumerate() {
            at += w;
            completed += per_ms * w;
            let said = growth.decide(&load(10_000, busy, completed), start + ms(at));
            assert_eq!(said, expected, "window {i}: {busy} busy, {per_ms} jobs/ms");
        }
    }

    #[test]
    fn growth_doubles_its_step_while_trials_pay_and_retires_the_one_that_does_not() {
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        let backing_off = (NO_GAIN_BACKOFF.as_millis() / WINDOW.as_millis()) as usize;
        let mut steps = vec![
            (1, 20, Change::Add(1)),    // a first trial
            (2, 40, Change::Add(2)),    // 2x the rate: keep, double the step
            (4, 80, Change::Add(4)),    // 2x again
            (8, 84, Change::Retire(4)), // +5%: take them back
        ];
        steps.extend(vec![(4, 80, Change::Keep); backing_off - 1]);
        steps.push((4, 80, Change::Add(1))); // one at a time again
        steps.push((5, 80, Change::Retire(1))); // no gain: the back-off doubles
        steps.extend(vec![(4, 80, Change::Keep); 2 * backing_off - 1]);
        steps.push((4, 80, Change::Add(1)));
        windows(&mut growth, start, &steps);
    }

    #[test]
    fn a_gain_well_short_of_blocked_workers_grows_one_at_a_time() {
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        windows(
            &mut growth,
            start,
            &[
                (2, 100, Change::Add(1)),
                // +15% where a blocked worker would give +50%: one more, not two.
                (3, 115, Change::Add(1)),
            ],
        );
    }

    #[test]
    fn a_second_worker_short_of_three_quarters_of_the_ideal_grows_one_at_a_time() {
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        windows(
            &mut growth,
            start,
            &[
                (1, 100, Change::Add(1)),
                // +60% where a blocked worker would give +100% (sleep(0)
                // jobs on two cores): a trial of one more, not of two.
                (2, 160, Change::Add(1)),
                (3, 165, Change::Retire(1)),
            ],
        );
    }

    #[test]
    fn no_wave_or_step_doubles_while_a_submitter_queues_work() {
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        let mut pushing = load(5_000, 1, 0);
        pushing.pushed = 1_000; // 100,000 a second: no flood
        assert_eq!(
            growth.decide(&pushing, start + BLOCKED_AFTER),
            Change::Add(1)
        );
        pushing.pushed = 1_100;
        pushing.busy = 2;
        let next_tick = start + BLOCKED_AFTER + ms(1);
        assert_eq!(
            growth.decide(&pushing, next_tick),
            Change::Add(1),
            "a wave of one"
        );
        let w = WINDOW;
        let mut flowing = load(9_000, 3, 1_000);
        flowing.pushed = 1_200;
        assert_eq!(
            growth.decide(&flowing, next_tick + w),
            Change::Keep,
            "a wave stays"
        );
        flowing.completed = 2_000;
        flowing.pushed = 1_300;
        assert_eq!(growth.decide(&flowing, next_tick + w * 2), Change::Add(1));
        flowing.completed = 4_000;
        flowing.pushed = 1_400;
        flowing.busy = 4;
        assert_eq!(
            growth.decide(&flowing, next_tick + w * 3),
            Change::Add(1),
            "twice the rate, yet a step of one while work is queued"
        );
    }

    #[test]
    fn a_trial_adds_a_quarter_of_many_busy_workers() {
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        let many = load(10_000, 40, 400);
        assert_eq!(growth.decide(&many, start + WINDOW), Change::Add(10));
    }

    #[test]
    fn a_trial_that_could_add_nobody_is_forgotten() {
        let start = Instant::now();
        let mut growth = Growth::new(&load(0, 0, 0), BLOCKED_AFTER, start);
        assert_eq!(
            growth.decide(&load(9, 1, 100), start + WINDOW),
            Change::Add(1)
        );
        growth.added(0);
        assert_eq!(
            growth.decide(&load(9, 1, 200), start + WINDOW * 2),
            Change::Add(1),
            "a new trial, not the verdict on one that never began"
        );
    }
}
