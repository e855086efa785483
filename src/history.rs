//! Throughput and runtime over time: how many tasks finished each second
//! and minute, by final state, how many were running and pending, and how
//! long the finished ones ran, in fixed-size rings.
//!
//! A finish costs two relaxed atomic adds into running totals (one for its
//! state, one for its runtime's histogram bucket): no lock, no allocation.
//! Once a second a tick (the poller's chore, or a read) takes what the
//! totals gained since the last tick into the second just closed, and each
//! closed minute into the minute ring, which the journal keeps. Reads and
//! ticks share one lock the finish path never takes.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::record::State;

/// The final states, in the order the counts are kept.
pub const FINAL_STATES: [State; 4] = [
    State::Succeeded,
    State::Failed,
    State::Cancelled,
    State::TimedOut,
];

/// Seconds in the per-second ring (an hour) and minutes in the per-minute
/// ring (a day).
pub const SECONDS_KEPT: usize = 3600;
pub const MINUTES_KEPT: usize = 1440;
/// Seconds whose runtimes are kept apart, for the last minute's percentiles.
const SECOND_RUNTIMES_KEPT: usize = 60;

/// Runtime histogram: 8 linear sub-buckets per power of two from 2^-13 s
/// (122 us) to 2^17 s (36 h), plus one below and one above. A bucket's
/// width is at most 1/8 of its lower edge, so its midpoint is within 6.25 %
/// of any runtime in it.
const SUB_BITS: u32 = 3;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
const MIN_EXP: i32 = -13;
const MAX_EXP: i32 = 17;
pub const RUNTIME_BUCKETS: usize = 2 + (MAX_EXP - MIN_EXP) as usize * SUB_BUCKETS;

/// The histogram bucket of a runtime in seconds.
pub fn runtime_bucket(seconds: f64) -> usize {
    if seconds.is_nan() || seconds < f64::powi(2.0, MIN_EXP) {
        return 0;
    }
    if seconds >= f64::powi(2.0, MAX_EXP) {
        return RUNTIME_BUCKETS - 1;
    }
    // The exponent and the top mantissa bits: a log2 without a log.
    let bits = seconds.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let sub = ((bits >> (52 - SUB_BITS)) & (SUB_BUCKETS as u64 - 1)) as usize;
    1 + (exponent - MIN_EXP) as usize * SUB_BUCKETS + sub
}

/// The runtime a bucket stands for: its midpoint (half the lowest edge for
/// the bucket below the range, the highest edge for the one above).
pub fn bucket_value(bucket: usize) -> f64 {
    if bucket == 0 {
        return f64::powi(2.0, MIN_EXP) / 2.0;
    }
    if bucket >= RUNTIME_BUCKETS - 1 {
        return f64::powi(2.0, MAX_EXP);
    }
    let i = bucket - 1;
    let exponent = MIN_EXP + (i / SUB_BUCKETS) as i32;
    let sub = (i % SUB_BUCKETS) as f64;
    f64::powi(2.0, exponent) * (1.0 + (sub + 0.5) / SUB_BUCKETS as f64)
}

/// A closed bucket's runtime histogram: (bucket, count) pairs, sorted, only
/// those with a count, so a quiet second costs nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Runtimes(pub Vec<(u16, u32)>);

impl Runtimes {
    fn add_to(&self, dense: &mut [u64]) {
        for &(bucket, count) in &self.0 {
            dense[usize::from(bucket)] += u64::from(count);
        }
    }

    fn of_dense(dense: &[u64]) -> Runtimes {
        let pairs = dense.iter().enumerate().filter(|(_, &n)| n > 0);
        Runtimes(pairs.map(|(b, &n)| (b as u16, clamp(n))).collect())
    }

    /// As the journal keeps it: "bucket:count" pairs, space separated.
    pub fn to_text(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(b, n)| format!("{b}:{n}")).collect();
        pairs.join(" ")
    }

    /// From `to_text`; pairs that do not parse or name no bucket are skipped.
    pub fn from_text(text: &str) -> Runtimes {
        let mut pairs: Vec<(u16, u32)> = text
            .split_whitespace()
            .filter_map(|pair| {
                let (b, n) = pair.split_once(':')?;
                Some((b.parse().ok()?, n.parse().ok()?))
            })
            .filter(|&(b, _)| usize::from(b) < RUNTIME_BUCKETS)
            .collect();
        pairs.sort_unstable();
        Runtimes(pairs)
    }
}

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One closed second or minute.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// Its start, in Unix seconds.
    pub at: i64,
    /// Tasks finished in it, by final state (see `FINAL_STATES`).
    pub finished: [u32; 4],
    /// Tasks running and pending at its end.
    pub running: u32,
    pub pending: u32,
    pub runtimes: Runtimes,
}

impl Bucket {
    fn empty(at: i64) -> Bucket {
        Bucket {
            at,
            finished: [0; 4],
            running: 0,
            pending: 0,
            runtimes: Runtimes::default(),
        }
    }
}

/// Tasks running and pending now, sampled at each tick.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub running: u32,
    pub pending: u32,
}

/// A window a read asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Minute, Window::Hour, Window::Day];

    pub fn parse(name: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "1m",
            Window::Hour => "1h",
            Window::Day => "1d",
        }
    }

    /// Seconds per point.
    pub fn step(self) -> i64 {
        match self {
            Window::Minute => 1,
            Window::Hour => 10,
            Window::Day => 60,
        }
    }

    pub fn points(self) -> usize {
        match self {
            Window::Minute => 60,
            Window::Hour => 360,
            Window::Day => 1440,
        }
    }
}

/// Runtime percentiles over a window, in seconds; None when none finished.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

/// What a read gives: one point per step, oldest first.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub window: &'static str,
    pub step: i64,
    pub at: Vec<i64>,
    /// Tasks finished per second, averaged over each step, by final state.
    pub finished: [Vec<f64>; 4],
    pub running: Vec<u32>,
    pub pending: Vec<u32>,
    /// Over the last minute, hour and day.
    pub runtime: [Percentiles; 3],
}

/// The running totals the finish path adds to.
struct Totals {
    finished: [AtomicU64; 4],
    runtimes: [AtomicU64; RUNTIME_BUCKETS],
}

/// The minute being filled, from the seconds closed in it.
struct OpenMinute {
    at: i64,
    finished: [u64; 4],
    last: Sample,
    runtimes: Box<[u64; RUNTIME_BUCKETS]>,
    /// Something happened in it (worth a journal row).
    touched: bool,
}

impl OpenMinute {
    fn new(at: i64) -> OpenMinute {
        OpenMinute {
            at,
            finished: [0; 4],
            last: Sample::default(),
            runtimes: Box::new([0; RUNTIME_BUCKETS]),
            touched: false,
        }
    }

    fn add(&mut self, second: &Bucket) {
        for (sum, n) in self.finished.iter_mut().zip(second.finished) {
            *sum += u64::from(n);
        }
        second.runtimes.add_to(&mut self.runtimes[..]);
        self.last = Sample {
            running: second.running,
            pending: second.pending,
        };
        self.touched |=
            second.finished.iter().any(|&n| n > 0) || second.running > 0 || second.pending > 0;
    }

    /// Adds a row the journal kept for this same minute (written by the
    /// last process, which stopped inside it).
    fn merge(&mut self, row: &Bucket) {
        for (sum, n) in self.finished.iter_mut().zip(row.finished) {
            *sum += u64::from(n);
        }
        row.runtimes.add_to(&mut self.runtimes[..]);
        self.last = Sample {
            running: row.running,
            pending: row.pending,
        };
        self.touched = true;
    }

    fn closed(&self) -> Bucket {
        Bucket {
            at: self.at,
            finished: self.finished.map(clamp),
            running: self.last.running,
            pending: self.last.pending,
            runtimes: Runtimes::of_dense(&self.runtimes[..]),
        }
    }
}

/// Everything behind the lock: the rings and where the last tick left off.
struct Rings {
    /// The first second not closed yet.
    next: i64,
    /// The first second this process counted: earlier ones come from the
    /// journal's minutes.
    began: i64,
    /// The totals as of the last tick.
    taken_finished: [u64; 4],
    taken_runtimes: Box<[u64; RUNTIME_BUCKETS]>,
    /// Slot `t % SECONDS_KEPT` holds second `t` if its `at` says so.
    seconds: Vec<Bucket>,
    second_runtimes: Vec<(i64, Runtimes)>,
    minutes: Vec<Bucket>,
    open: OpenMinute,
    /// The journal's row for the minute this process began in, if any.
    seed: Option<Bucket>,
}

pub struct History {
    totals: Totals,
    rings: Mutex<Rings>,
}

/// A ring slot no second or minute has used.
const UNUSED: i64 = i64::MIN;

fn minute_of(second: i64) -> i64 {
    second.div_euclid(60) * 60
}

fn slot(at: i64, len: usize) -> usize {
    at.rem_euclid(len as i64) as usize
}

impl History {
    /// An empty history whose first second is `now` (Unix seconds).
    pub fn new(now: f64) -> History {
        let began = now.floor() as i64;
        History {
            totals: Totals {
                finished: Default::default(),
                runtimes: std::array::from_fn(|_| AtomicU64::new(0)),
            },
            rings: Mutex::new(Rings {
                next: began,
                began,
                taken_finished: [0; 4],
                taken_runtimes: Box::new([0; RUNTIME_BUCKETS]),
                seconds: vec![Bucket::empty(UNUSED); SECONDS_KEPT],
                second_runtimes: vec![(UNUSED, Runtimes::default()); SECOND_RUNTIMES_KEPT],
                minutes: vec![Bucket::empty(UNUSED); MINUTES_KEPT],
                open: OpenMinute::new(minute_of(began)),
                seed: None,
            }),
        }
    }

    /// The hot path: a task reached final `state` after running `runtime`
    /// seconds (None if it never started).
    pub fn finished(&self, state: State, runtime: Option<f64>) {
        let Some(i) = FINAL_STATES.iter().position(|&s| s == state) else {
            return;
        };
        self.totals.finished[i].fetch_add(1, Ordering::Relaxed);
        if let Some(seconds) = runtime {
            self.totals.runtimes[runtime_bucket(seconds)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the minutes a journal kept (any order): those of the last day
    /// fill the minute ring; the one this process began in is carried on.
    pub fn load(&self, rows: Vec<Bucket>) {
        let mut r = self.rings.lock();
        let oldest = minute_of(r.next) - (MINUTES_KEPT as i64 - 1) * 60;
        for row in rows {
            if row.at == r.open.at {
                r.open.merge(&row);
                r.seed = Some(row);
            } else if row.at >= oldest && row.at < r.open.at {
                let i = slot(row.at / 60, MINUTES_KEPT);
                r.minutes[i] = row;
            }
        }
    }

    /// Closes every second before `now` (Unix seconds): what the totals
    /// gained since the last tick goes into the last of them, and `sample`
    /// is the running and pending count at their end. Returns the minutes
    /// this closed, for the journal.
    pub fn tick(&self, now: f64, sample: Sample) -> Vec<Bucket> {
        let current = now.floor() as i64;
        let mut r = self.rings.lock();
        if current <= r.next {
            return Vec::new();
        }
        let mut last = Bucket::empty(current - 1);
        last.running = sample.running;
        last.pending = sample.pending;
        for (i, taken) in r.taken_finished.iter_mut().enumerate() {
            let total = self.totals.finished[i].load(Ordering::Relaxed);
            last.finished[i] = clamp(total - *taken);
            *taken = total;
        }
        let mut gained = Box::new([0u64; RUNTIME_BUCKETS]);
        for (i, taken) in r.taken_runtimes.iter_mut().enumerate() {
            let total = self.totals.runtimes[i].load(Ordering::Relaxed);
            gained[i] = total - *taken;
            *taken = total;
        }
        last.runtimes = Runtimes::of_dense(&gained[..]);
        let mut closed = Vec::new();
        // A tick that comes late leaves the seconds it skipped with no
        // finishes and the same sample; past an hour, only the last hour.
        let first = r.next.max(current - SECONDS_KEPT as i64);
        for t in first..current - 1 {
            let mut quiet = Bucket::empty(t);
            quiet.running = sample.running;
            quiet.pending = sample.pending;
            r.close_second(quiet, &mut closed);
        }
        r.close_second(last, &mut closed);
        r.next = current;
        closed
    }

    /// The minute still open, as a journal row (written at close, so that
    /// a restart inside the same minute loses nothing); None if it is empty.
    pub fn open_minute(&self) -> Option<Bucket> {
        let r = self.rings.lock();
        r.open.touched.then(|| r.open.closed())
    }

    /// The points and percentiles of `window`, as of the last tick.
    pub fn view(&self, window: Window) -> View {
        let r = self.rings.lock();
        let step = window.step();
        let newest = r.next - 1;
        let last_start = newest.div_euclid(step) * step;
        let points = window.points() as i64;
        let mut view = View {
            window: window.as_str(),
            step,
            ..View::default()
        };
        for k in (0..points).rev() {
            let at = last_start - k * step;
            let point = match window {
                Window::Day => r.minute_point(at),
                _ => r.seconds_point(at, step),
            };
            view.at.push(at);
            for (series, rate) in view.finished.iter_mut().zip(point.0) {
                series.push(rate);
            }
            view.running.push(point.1.running);
            view.pending.push(point.1.pending);
        }
        let (hour, day) = r.percentiles_of_hour_and_day();
        view.runtime = [r.percentiles_of_seconds(), hour, day];
        view
    }
}

impl Rings {
    fn close_second(&mut self, second: Bucket, closed: &mut Vec<Bucket>) {
        let minute = minute_of(second.at);
        if minute != self.open.at {
            let done = std::mem::replace(&mut self.open, OpenMinute::new(minute));
            let row = done.closed();
            let i = slot(row.at / 60, MINUTES_KEPT);
            self.minutes[i] = row.clone();
            if done.touched {
                closed.push(row);
            }
        }
        self.open.add(&second);
        let i = slot(second.at, SECOND_RUNTIMES_KEPT);
        self.second_runtimes[i] = (second.at, second.runtimes.clone());
        let i = slot(second.at, SECONDS_KEPT);
        self.seconds[i] = Bucket {
            runtimes: Runtimes::default(),
            ..second
        };
    }

    /// The closed second `t`: from the second ring, or, before this process
    /// began, as its minute's average from the journal.
    fn second(&self, t: i64) -> Option<([f64; 4], Sample)> {
        if t >= self.next {
            return None;
        }
        if t >= self.began {
            let s = &self.seconds[slot(t, SECONDS_KEPT)];
            return (s.at == t).then(|| (s.finished.map(f64::from), sample_of(s)));
        }
        let minute = minute_of(t);
        let m = match &self.seed {
            Some(seed) if seed.at == minute => seed,
            _ => self.minutes.get(slot(minute / 60, MINUTES_KEPT))?,
        };
        (m.at == minute).then(|| (m.finished.map(|n| f64::from(n) / 60.0), sample_of(m)))
    }

    /// Seconds `at..at + step`: the mean rate over the closed ones, and the
    /// sample at the last of them.
    fn seconds_point(&self, at: i64, step: i64) -> ([f64; 4], Sample) {
        let mut sums = [0.0; 4];
        let mut sample = Sample::default();
        let covered = (self.next - at).clamp(1, step);
        for t in at..at + covered {
            if let Some((rates, s)) = self.second(t) {
                for (sum, rate) in sums.iter_mut().zip(rates) {
                    *sum += rate;
                }
                sample = s;
            } else {
                sample = Sample::default();
            }
        }
        (sums.map(|s| s / covered as f64), sample)
    }

    /// Minute `at`: closed (from the ring) or open (its closed seconds).
    fn minute_point(&self, at: i64) -> ([f64; 4], Sample) {
        if at == self.open.at {
            let seconds = (self.next - at).max(1) as f64;
            let rates = self.open.finished.map(|n| n as f64 / seconds);
            return (rates, self.open.last);
        }
        let m = &self.minutes[slot(at / 60, MINUTES_KEPT)];
        if m.at != at {
            return ([0.0; 4], Sample::default());
        }
        (m.finished.map(|n| f64::from(n) / 60.0), sample_of(m))
    }

    fn percentiles_of_seconds(&self) -> Percentiles {
        let mut dense = [0u64; RUNTIME_BUCKETS];
        let oldest = self.next - SECOND_RUNTIMES_KEPT as i64;
        for (at, runtimes) in &self.second_runtimes {
            if *at >= oldest {
                runtimes.add_to(&mut dense);
            }
        }
        percentiles(&dense)
    }

    /// Over the open minute and the 59 (hour) or 1,439 (day) closed before
    /// it, in one pass over the minute ring.
    fn percentiles_of_hour_and_day(&self) -> (Percentiles, Percentiles) {
        let mut hour = *self.open.runtimes;
        let mut day = [0u64; RUNTIME_BUCKETS];
        let oldest_in_hour = self.open.at - 59 * 60;
        let oldest_in_day = self.open.at - (MINUTES_KEPT as i64 - 1) * 60;
        for m in &self.minutes {
            if m.at >= oldest_in_day && m.at < self.open.at {
                let sum = if m.at >= oldest_in_hour {
                    &mut hour
                } else {
                    &mut day
                };
                m.runtimes.add_to(sum);
            }
        }
        for (d, h) in day.iter_mut().zip(hour.iter()) {
            *d += h;
        }
        (percentiles(&hour), percentiles(&day))
    }
}

fn sample_of(b: &Bucket) -> Sample {
    Sample {
        running: b.running,
        pending: b.pending,
    }
}

/// p50, p90 and p99 of a dense histogram: the value of the bucket that
/// holds the rank-th runtime (rank = ceil(p * count)).
pub fn percentiles(dense: &[u64]) -> Percentiles {
    let count: u64 = dense.iter().sum();
    if count == 0 {
        return Percentiles::default();
    }
    let at = |p: f64| {
        let rank = ((p * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &n) in dense.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_value(bucket));
            }
        }
        None
    };
    Percentiles {
        count,
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_699_999_980.0; // a minute boundary

    #[test]
    fn each_bucket_value_is_within_its_stated_error_of_what_lands_in_it() {
        let mut x = 1e-4;
        while x < 2e5 {
            let value = bucket_value(runtime_bucket(x));
            if (f64::powi(2.0, MIN_EXP)..f64::powi(2.0, MAX_EXP)).contains(&x) {
                assert!((value - x).abs() / x <= 0.0625 + 1e-12, "{x} -> {value}");
            }
            x *= 1.01;
        }
        assert_eq!(runtime_bucket(0.0), 0);
        assert_eq!(runtime_bucket(1e9), RUNTIME_BUCKETS - 1);
        assert!(
            runtime_bucket(86_400.0) < RUNTIME_BUCKETS - 1,
            "a day is in range"
        );
    }

    #[test]
    fn finishes_land_in_the_second_they_are_ticked_into() {
        let h = History::new(T0);
        h.finished(State::Succeeded, Some(0.5));
        h.finished(State::Failed, Some(0.5));
        h.finished(State::Cancelled, None);
        let sample = Sample {
            running: 3,
            pending: 7,
        };
        assert!(h.tick(T0 + 1.2, sample).is_empty());
        let view = h.view(Window::Minute);
        assert_eq!(view.at.len(), 60);
        assert_eq!(*view.at.last().unwrap(), T0 as i64);
        let last: Vec<f64> = view.finished.iter().map(|s| s[59]).collect();
        assert_eq!(last, [1.0, 1.0, 1.0, 0.0]);
        assert_eq!((view.running[59], view.pending[59]), (3, 7));
        assert_eq!(view.runtime[0].count, 2);
    }

    #[test]
    fn a_closed_minute_is_handed_back_and_kept() {
        let h = History::new(T0);
        h.finished(State::TimedOut, Some(2.0));
        assert!(h.tick(T0 + 30.0, Sample::default()).is_empty());
        let closed = h.tick(T0 + 61.0, Sample::default());
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].at, T0 as i64);
        assert_eq!(closed[0].finished, [0, 0, 0, 1]);
        let day = h.view(Window::Day);
        assert_eq!(day.at.len(), 1440);
        assert_eq!(day.at[1438], T0 as i64);
        assert!((day.finished[3][1438] - 1.0 / 60.0).abs() < 1e-9);
        assert_eq!(day.runtime[2].count, 1);
    }

    #[test]
    fn minutes_loaded_from_a_journal_show_before_the_process_began() {
        let before = T0 as i64 - 120;
        let mut row = Bucket::empty(before);
        row.finished = [120, 0, 0, 0];
        row.runtimes = Runtimes(vec![(runtime_bucket(1.0) as u16, 120)]);
        let h = History::new(T0 + 0.5);
        h.load(vec![row]);
        h.tick(T0 + 2.0, Sample::default());
        let hour = h.view(Window::Hour);
        let i = hour.at.iter().position(|&a| a == before).unwrap();
        assert!((hour.finished[0][i] - 2.0).abs() < 1e-9);
        let p = h.view(Window::Day).runtime[1];
        assert_eq!(p.count, 120);
        assert!((p.p50.unwrap() - 1.0).abs() <= 0.0625 + 1e-12);
    }

    #[test]
    fn the_rings_never_grow() {
        let h = History::new(T0);
        for s in 1..5000 {
            h.finished(State::Succeeded, Some(f64::from(s) / 100.0));
            h.tick(T0 + f64::from(s) * 20.0, Sample::default());
        }
        let r = h.rings.lock();
        assert_eq!(r.seconds.len(), SECONDS_KEPT);
        assert_eq!(r.minutes.len(), MINUTES_KEPT);
        assert_eq!(r.second_runtimes.len(), SECOND_RUNTIMES_KEPT);
    }

    #[test]
    fn runtimes_read_back_from_their_text() {
        let r = Runtimes(vec![(1, 2), (30, 4)]);
        assert_eq!(Runtimes::from_text(&r.to_text()), r);
        assert_eq!(Runtimes::from_text("x 9999:1 5:2"), Runtimes(vec![(5, 2)]));
    }
}

/// Figures, not checks: run with
/// `cargo test --release history::figures -- --ignored --nocapture --test-threads=1`.
#[cfg(test)]
mod figures {
    use super::*;
    use std::hint::black_box;
    use std::time::Instant;

    const T0: f64 = 1_699_999_980.0;

    fn per_call(n: u32, mut f: impl FnMut(u32)) -> f64 {
        let started = Instant::now();
        for i in 0..n {
            f(i);
        }
        started.elapsed().as_secs_f64() / f64::from(n)
    }

    #[test]
    #[ignore]
    fn what_a_finish_a_tick_and_a_read_cost() {
        let h = History::new(T0);
        let finish = per_call(20_000_000, |i| {
            h.finished(
                State::Succeeded,
                Some(black_box(f64::from(i % 1000) * 1e-3)),
            )
        });
        let two = std::thread::scope(|s| {
            let threads: Vec<_> = (0..2)
                .map(|_| s.spawn(|| per_call(5_000_000, |_| h.finished(State::Failed, Some(0.1)))))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .fold(0.0, f64::max)
        });
        let tick = per_call(3_600, |s| {
            black_box(h.tick(T0 + 1.0 + f64::from(s), Sample::default()));
        });
        // Every minute of the day with every runtime bucket in use: the worst read.
        let full = Runtimes((0..RUNTIME_BUCKETS as u16).map(|b| (b, 1)).collect());
        let rows = (1..=MINUTES_KEPT as i64).map(|m| Bucket {
            runtimes: full.clone(),
            ..Bucket::empty(T0 as i64 - m * 60)
        });
        let h = History::new(T0);
        h.load(rows.collect());
        h.tick(T0 + 1.0, Sample::default());
        let day = per_call(50, |_| drop(black_box(h.view(Window::Day))));
        let minute = per_call(50, |_| drop(black_box(h.view(Window::Minute))));
        println!(
            "finish {:.1} ns (2 threads at once: {:.1} ns); tick {:.2} us; \
             worst read: 1d {:.0} us, 1m {:.0} us",
            finish * 1e9,
            two * 1e9,
            tick * 1e6,
            day * 1e6,
            minute * 1e6
        );
    }
}
