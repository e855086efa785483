//! A deadline queue that stays in cache with many entries.
//!
//! A binary heap of 10,000 whole entries is cold by the time the poller
//! wakes for its next batch (its thread slept, Python ran, it may wake on
//! the other core), and every pop walks it to a leaf: a cache miss per
//! level, most of a poll's cost. So the heap holds only small sort keys
//! (24 bytes: time, priority, order of arrival, slot), and only the
//! earliest of them (`NEAR`, or a 64th of all); the rest wait unsorted in
//! `far`, which is read front to back (the cheapest way to read memory)
//! once per that many items taken out. The items themselves wait in a
//! slab, touched once each.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// How many of the earliest keys the heap holds: 512 keys are 12 KB.
const NEAR: usize = 512;

/// When an entry due at once is due: before every timed entry, so that
/// starts waiting together go in priority order. Also the epoch of every
/// queue's times.
pub fn at_once() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `at` as nanoseconds after `at_once()`, half the size of an `Instant`;
/// an earlier time counts as `at_once()` (it is due at once anyway).
pub fn nanos_after_epoch(at: Instant) -> u64 {
    let nanos = at.saturating_duration_since(at_once()).as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    /// `nanos_after_epoch` of its time.
    at: u64,
    priority: i32,
    slot: u32,
    seq: u64,
}

impl Key {
    /// Earliest first; at the same time, the higher priority, then the older.
    fn order(&self) -> (u64, Reverse<i32>, u64) {
        (self.at, Reverse(self.priority), self.seq)
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the first first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.order().cmp(&self.order())
    }
}

pub struct Deadlines<T> {
    /// The earliest keys, all before `cutoff`; empty only when `far` is too.
    near: BinaryHeap<Key>,
    /// The other keys, none before `cutoff`, in no order.
    far: Vec<Key>,
    /// None while every key is near.
    cutoff: Option<(u64, Reverse<i32>, u64)>,
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        at_once(); // the epoch is set before any time this queue is asked about
        Deadlines {
            near: BinaryHeap::new(),
            far: Vec::new(),
            cutoff: None,
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<T> Deadlines<T> {
    /// Adds `item`, due `at`; among items due at once, the higher
    /// `priority` comes first, then the one added first.
    pub fn push(&mut self, at: Instant, priority: i32, item: T) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(item);
                slot
            }
            None => {
                self.slots.push(Some(item));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 deadlines")
            }
        };
        self.seq += 1;
        let key = Key {
            at: nanos_after_epoch(at),
            priority,
            slot,
            seq: self.seq,
        };
        if self.cutoff.is_some_and(|cutoff| key.order() >= cutoff) {
            self.far.push(key);
            return;
        }
        self.near.push(key);
        if self.near.len() > 2 * self.near_size() {
            // Keep the earliest near; the rest go far.
            let n = self.near_size();
            let mut later = std::mem::take(&mut self.near).into_vec();
            let earliest = self.take_earliest(&mut later, n);
            self.far.append(&mut later);
            self.near = BinaryHeap::from(earliest);
        }
    }

    /// How many keys the heap holds after a refill: `NEAR`, or a 16th of
    /// all, so that a refill's pass over `far` costs at most 16 key reads
    /// per item taken out.
    fn near_size(&self) -> usize {
        (self.len() / 16).max(NEAR)
    }

    /// When the first item is due.
    pub fn next_at(&self) -> Option<Instant> {
        let at = self.near.peek()?.at;
        Some(at_once() + Duration::from_nanos(at))
    }

    /// The first item, if it is due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_at()? > now {
            return None;
        }
        let key = self.near.pop().expect("peeked");
        if self.near.is_empty() {
            self.bring_near();
        }
        self.free.push(key.slot);
        self.slots[key.slot as usize].take()
    }

    pub fn len(&self) -> usize {
        self.near.len() + self.far.len()
    }

    /// Takes every item out, in no particular order.
    pub fn drain(&mut self) -> impl Iterator<Item = T> {
        self.near.clear();
        self.far.clear();
        self.cutoff = None;
        self.free.clear();
        std::mem::take(&mut self.slots).into_iter().flatten()
    }

    /// Moves the earliest far keys near.
    fn bring_near(&mut self) {
        let n = self.near_size();
        let mut far = std::mem::take(&mut self.far);
        self.near = BinaryHeap::from(self.take_earliest(&mut far, n));
        self.far = far;
    }

    /// Takes the earliest `n` keys out of `keys` (all of them, if that
    /// few); the cutoff goes between them and the rest (none when nothing
    /// is left).
    fn take_earliest(&mut self, keys: &mut Vec<Key>, n: usize) -> Vec<Key> {
        if keys.len() <= n {
            self.cutoff = None;
            return std::mem::take(keys);
        }
        keys.select_nth_unstable_by_key(n, Key::order);
        // The n-th is the earliest of the rest.
        self.cutoff = Some(keys[n].order());
        let earliest = keys[..n].to_vec();
        // Fill their places from the end: the rest need no order.
        let len = keys.len();
        let moved = n.min(len - n);
        keys.copy_within(len - moved.., 0);
        keys.truncate(len - n);
        earliest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn items_come_out_earliest_first_then_by_priority_then_in_order() {
        let mut d = Deadlines::default();
        let now = Instant::now();
        let ms = Duration::from_millis;
        d.push(now + ms(5), 0, "late");
        d.push(now, 0, "first");
        d.push(now, 9, "urgent");
        d.push(now, 0, "second");
        assert_eq!(d.len(), 4);
        let due: Vec<_> = std::iter::from_fn(|| d.pop_due(now)).collect();
        assert_eq!(due, vec!["urgent", "first", "second"]);
        assert_eq!(d.next_at(), Some(now + ms(5)));
        assert_eq!(d.pop_due(now + ms(5)), Some("late"));
        assert_eq!(d.pop_due(now + ms(5)), None);
    }

    #[test]
    fn slots_are_reused_and_drain_hands_back_the_rest() {
        let mut d = Deadlines::default();
        let now = Instant::now();
        for round in 0..3 {
            d.push(now, 0, round);
            assert_eq!(d.pop_due(now), Some(round));
        }
        assert_eq!(d.slots.len(), 1);
        d.push(now + Duration::from_secs(9), 0, 8);
        d.push(now, 0, 7);
        let mut rest: Vec<_> = d.drain().collect();
        rest.sort();
        assert_eq!(rest, vec![7, 8]);
        assert_eq!(d.len(), 0);
        assert_eq!(d.next_at(), None);
    }
}

#[cfg(test)]
mod many {
    use super::*;

    /// Far more items than the heap holds near (more than `NEAR`: a 16th),
    /// pushed out of order and interleaved with pops: every one comes out
    /// once, in order.
    #[test]
    fn many_items_come_out_in_order_across_near_and_far() {
        let mut d = Deadlines::default();
        let now = Instant::now();
        let at = |i: u64| now + Duration::from_micros((i * 7919) % 70_001);
        let mut out = Vec::new();
        for i in 0..70_001u64 {
            d.push(at(i), (i % 3) as i32, i);
            if i % 4 == 0 {
                out.extend(d.pop_due(now));
            }
        }
        let end = now + Duration::from_secs(1);
        out.extend(std::iter::from_fn(|| d.pop_due(end)));
        assert_eq!(out.len(), 70_001);
        assert_eq!(d.len(), 0);
        let order = |i: &u64| (at(*i), Reverse((i % 3) as i32));
        // Popped before the end: only what was due at `now`, in order.
        let (early, late): (Vec<u64>, Vec<u64>) = out.iter().partition(|&&i| at(i) <= now);
        assert!(early.windows(2).all(|w| order(&w[0]) <= order(&w[1])));
        let tail = &out[out.len() - late.len()..];
        assert!(tail.windows(2).all(|w| order(&w[0]) <= order(&w[1])));
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use std::time::Duration;

    #[test]
    #[ignore]
    fn pop_push_10k() {
        let mut d = Deadlines::default();
        let now = Instant::now();
        for i in 0..10_000u64 {
            d.push(now + Duration::from_micros(i * 10), 0, i);
        }
        let t = Instant::now();
        let n = 1_000_000u64;
        let mut at = now;
        for _ in 0..n {
            at = d.next_at().unwrap();
            let item = d.pop_due(at).unwrap();
            d.push(at + Duration::from_millis(100), 0, item);
        }
        eprintln!("{:?} per pop+push ({at:?})", t.elapsed() / n as u32);
    }
}
