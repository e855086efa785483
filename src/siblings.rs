//! Siblings: polling tasks of one name tend to take alike.
//!
//! The back-off policy notices an end within a fraction of the task's
//! runtime (3 % by default, 60 ms after 2 s), and the poll budget stretches
//! that further when thousands of tasks are polled. When a task ends, its
//! runtime says when its siblings (running tasks of the same name) are
//! likely to end too, so each is also polled once as it reaches that
//! runtime:
//! - a poll is never planned past a sibling's runtime: the task is polled
//!   at that runtime instead (a poll brought forward, never put off);
//! - when a task ends, the siblings already waiting for a later poll are
//!   brought forward to that runtime, or to now if they have run longer.
//!   One such sweep per name per `max(runtime, SWEEP_GAP)`, and up to
//!   `RESWEEPS` more in that time when a later end shows a shorter runtime
//!   (the first end may have been noticed late): at most four extra polls
//!   per sibling per runtime.
//!
//! The runtime is the shortest of the last `RECENT` ends noticed (each
//! bounds the true runtime from above), so one late notice does not push
//! every sibling's poll late. A sibling that is not done at that runtime
//! goes on by the policy: a wrong guess costs one poll. These extra polls
//! are outside the poll budget.
//!
//! A poll that was brought forward leaves its earlier entry in the poller's
//! queue; a record keeps the time of its one live poll (`Record::next_poll`)
//! and an entry for any other time is passed over.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::deadlines::nanos_after_epoch;

/// How many recent runtimes a name keeps.
const RECENT: usize = 8;

/// The least time between two sweeps of one name's siblings...
const SWEEP_GAP: Duration = Duration::from_secs(1);

/// ...but for this many, each for a shorter runtime than the last: the
/// first end noticed may have been noticed late, and the next few tell
/// the runtime closer.
const RESWEEPS: u32 = 3;

/// What a family needs of its members (task records).
pub trait Sibling {
    /// When its one live poll is due.
    fn next_poll(&self) -> &NextPoll;
    fn has_ended(&self) -> bool;
}

/// Every name's siblings. Names whose tasks are all gone are dropped as the
/// map grows, so unique names cost nothing lasting.
pub struct Families<M> {
    by_name: Mutex<HashMap<Box<str>, Weak<Family<M>>>>,
}

impl<M> Default for Families<M> {
    fn default() -> Self {
        Families {
            by_name: Mutex::new(HashMap::new()),
        }
    }
}

impl<M: Sibling> Families<M> {
    /// The family of `name`, made if it has none.
    pub fn of(&self, name: &str) -> Arc<Family<M>> {
        let mut by_name = self.by_name.lock();
        if let Some(family) = by_name.get(name).and_then(Weak::upgrade) {
            return family;
        }
        if by_name.len() >= 64 && by_name.len().is_power_of_two() {
            by_name.retain(|_, family| family.strong_count() > 0);
        }
        let family = Arc::new(Family::default());
        by_name.insert(name.into(), Arc::downgrade(&family));
        family
    }
}

/// The running polling tasks of one name, and how long the last few took.
pub struct Family<M> {
    inner: Mutex<Members<M>>,
}

impl<M> Default for Family<M> {
    fn default() -> Self {
        Family {
            inner: Mutex::new(Members {
                running: Vec::new(),
                compact_at: 0,
                recent: [Duration::ZERO; RECENT],
                known: 0,
                sweep: None,
            }),
        }
    }
}

struct Members<M> {
    /// Each running member and when its polling began; ended ones are
    /// dropped at each sweep, and when the list doubles.
    running: Vec<(Weak<M>, Instant)>,
    compact_at: usize,
    recent: [Duration; RECENT],
    known: usize,
    sweep: Option<Sweep>,
}

/// The last sweep of a family.
#[derive(Clone, Copy)]
struct Sweep {
    /// When its gap began.
    at: Instant,
    /// The runtime it brought polls forward to.
    runtime: Duration,
    /// Sweeps since the gap began, for a shorter runtime.
    resweeps: u32,
}

impl<M: Sibling> Members<M> {
    fn runtime(&self) -> Option<Duration> {
        self.recent[..self.known.min(RECENT)].iter().min().copied()
    }

    fn compact(&mut self) {
        self.running
            .retain(|(member, _)| member.upgrade().is_some_and(|m| !m.has_ended()));
        self.compact_at = (2 * self.running.len()).max(64);
    }
}

/// A poll brought forward by a sweep: the member's poll at `at`.
pub struct BroughtForward<M> {
    pub member: Arc<M>,
    pub since: Instant,
    pub at: Instant,
}

impl<M: Sibling> Family<M> {
    /// A member began polling at `since`.
    pub fn join(&self, member: &Arc<M>, since: Instant) {
        let mut m = self.inner.lock();
        if m.running.len() >= m.compact_at {
            m.compact();
        }
        m.running.push((Arc::downgrade(member), since));
    }

    /// The siblings' runtime, if one has ended.
    pub fn runtime(&self) -> Option<Duration> {
        self.inner.lock().runtime()
    }

    /// A member was found done `ran` after its polling began, at `now`.
    /// Returns the polls to bring forward, if a sweep is due.
    pub fn ended(&self, ran: Duration, now: Instant) -> Vec<BroughtForward<M>> {
        let mut m = self.inner.lock();
        let slot = m.known % RECENT;
        m.recent[slot] = ran;
        m.known += 1;
        let runtime = m.runtime().unwrap_or(ran);
        let gap = ran.max(SWEEP_GAP);
        match m.sweep {
            Some(last) if now < last.at + gap => {
                // Within the gap, only a shorter runtime sweeps again, a few times.
                if runtime >= last.runtime || last.resweeps >= RESWEEPS {
                    return Vec::new();
                }
                m.sweep = Some(Sweep {
                    runtime,
                    resweeps: last.resweeps + 1,
                    ..last
                });
            }
            _ => {
                m.sweep = Some(Sweep {
                    at: now,
                    runtime,
                    resweeps: 0,
                })
            }
        }
        m.compact();
        m.running
            .iter()
            .filter_map(|(member, since)| {
                let member = member.upgrade()?;
                let at = (*since + runtime).max(now);
                bring_forward(member.next_poll(), at).then_some(BroughtForward {
                    member,
                    since: *since,
                    at,
                })
            })
            .collect()
    }
}

/// A poll's time as the record keeps it: nanoseconds after the poller's
/// epoch, never 0 (which stands for none).
fn poll_time(at: Instant) -> u64 {
    nanos_after_epoch(at).max(1)
}

/// The record's one live poll, by `poll_time`.
pub type NextPoll = AtomicU64;

/// Marks `at` as the record's live poll.
pub fn plan_poll(next: &NextPoll, at: Instant) {
    next.store(poll_time(at), Ordering::Release);
}

/// True when the entry for `at` is the record's live poll.
pub fn is_live_poll(next: &NextPoll, at: Instant) -> bool {
    next.load(Ordering::Acquire) == poll_time(at)
}

/// Moves the live poll to `at` if that is sooner; true when it moved.
pub fn bring_forward(next: &NextPoll, at: Instant) -> bool {
    let to = poll_time(at);
    let mut current = next.load(Ordering::Acquire);
    while current != 0 && to < current {
        match next.compare_exchange(current, to, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(now) => current = now,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Task {
        id: u64,
        next_poll: NextPoll,
    }

    impl Sibling for Task {
        fn next_poll(&self) -> &NextPoll {
            &self.next_poll
        }
        fn has_ended(&self) -> bool {
            false
        }
    }

    fn task(id: u64) -> Arc<Task> {
        Arc::new(Task {
            id,
            ..Task::default()
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_runtime_is_the_shortest_recent_end() {
        let family = Family::<Task>::default();
        assert_eq!(family.runtime(), None);
        let now = Instant::now();
        family.ended(ms(2_010), now);
        family.ended(ms(2_003), now);
        family.ended(ms(2_050), now);
        assert_eq!(family.runtime(), Some(ms(2_003)));
        for _ in 0..RECENT {
            family.ended(ms(3_000), now);
        }
        assert_eq!(family.runtime(), Some(ms(3_000)), "old ends age out");
    }

    #[test]
    fn an_end_brings_forward_the_siblings_waiting_longer() {
        let _ = crate::deadlines::at_once();
        let start = Instant::now();
        let family = Family::<Task>::default();
        let (late, soon) = (task(1), task(2));
        plan_poll(&late.next_poll, start + ms(2_100));
        plan_poll(&soon.next_poll, start + ms(1_000));
        family.join(&late, start);
        family.join(&soon, start + ms(1_500));
        let moved = family.ended(ms(2_000), start + ms(2_001));
        // `late` has run 2.001 s: polled now; `soon` is polled sooner than
        // its sibling's runtime anyway, so it stays.
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].member.id, 1);
        assert_eq!(moved[0].at, start + ms(2_001));
        assert!(is_live_poll(&late.next_poll, start + ms(2_001)));
        assert!(!is_live_poll(&late.next_poll, start + ms(2_100)));
        assert!(is_live_poll(&soon.next_poll, start + ms(1_000)));
        assert!(
            family.ended(ms(2_000), start + ms(2_500)).is_empty(),
            "one sweep per runtime..."
        );
        plan_poll(&late.next_poll, start + ms(9_000));
        let moved = family.ended(ms(1_900), start + ms(2_600));
        assert_eq!(moved.len(), 1, "...but a shorter runtime sweeps again");
        for shorter in 1..RESWEEPS {
            plan_poll(&late.next_poll, start + ms(9_000));
            let runtime = ms(1_900 - 100 * u64::from(shorter));
            assert_eq!(family.ended(runtime, start + ms(2_700)).len(), 1);
        }
        plan_poll(&late.next_poll, start + ms(9_000));
        assert!(
            family.ended(ms(900), start + ms(2_800)).is_empty(),
            "a few times"
        );
    }

    #[test]
    fn names_map_to_one_family_while_their_tasks_live() {
        let families = Families::<Task>::default();
        let a = families.of("resize");
        assert!(Arc::ptr_eq(&a, &families.of("resize")));
        assert!(!Arc::ptr_eq(&a, &families.of("upload")));
        drop(a);
        for i in 0..200 {
            drop(families.of(&format!("unique-{i}")));
        }
        assert!(
            families.by_name.lock().len() < 200,
            "dead names are dropped"
        );
    }
}
