//! A queue of pending work ordered by priority: higher first, first in
//! first out within a priority.
//!
//! Nearly all work has the default priority 0, so that level is a plain
//! deque, and other levels live in a short sorted list beside it: a queue
//! of priority-0 work costs what a `VecDeque` costs.

use std::collections::VecDeque;

/// Levels beyond which empty ones are dropped when a new one is made.
const KEPT_LEVELS: usize = 32;

pub struct PriorityQueue<J> {
    normal: VecDeque<J>,
    /// Levels other than 0, highest first. An emptied level is kept (up to
    /// `KEPT_LEVELS`), so that work coming and going at a few priorities
    /// allocates nothing.
    others: Vec<(i32, VecDeque<J>)>,
    /// Jobs queued above priority 0.
    above: usize,
    len: usize,
}

impl<J> Default for PriorityQueue<J> {
    fn default() -> Self {
        PriorityQueue {
            normal: VecDeque::new(),
            others: Vec::new(),
            above: 0,
            len: 0,
        }
    }
}

impl<J> PriorityQueue<J> {
    pub fn push(&mut self, job: J, priority: i32) {
        self.len += 1;
        if priority == 0 {
            return self.normal.push_back(job);
        }
        self.above += usize::from(priority > 0);
        match self.others.binary_search_by(|(p, _)| priority.cmp(p)) {
            Ok(at) => self.others[at].1.push_back(job),
            Err(_) => {
                if self.others.len() >= KEPT_LEVELS {
                    self.others.retain(|(_, level)| !level.is_empty());
                }
                let at = self
                    .others
                    .binary_search_by(|(p, _)| priority.cmp(p))
                    .unwrap_err();
                self.others.insert(at, (priority, VecDeque::from([job])));
            }
        }
    }

    /// Where the job `pop` would take is: a level of `others`, or None for `normal`.
    fn next_level(&self) -> Option<Option<usize>> {
        if self.len == 0 {
            return None;
        }
        if self.above == 0 && !self.normal.is_empty() {
            return Some(None);
        }
        for (at, (priority, level)) in self.others.iter().enumerate() {
            if *priority < 0 && !self.normal.is_empty() {
                return Some(None);
            }
            if !level.is_empty() {
                return Some(Some(at));
            }
        }
        Some(None)
    }

    /// The oldest job of the highest priority.
    pub fn pop(&mut self) -> Option<J> {
        let job = match self.next_level()? {
            None => self.normal.pop_front(),
            Some(at) => {
                let (priority, level) = &mut self.others[at];
                self.above -= usize::from(*priority > 0);
                level.pop_front()
            }
        };
        self.len -= usize::from(job.is_some());
        job
    }

    /// The job `pop` would take, left in place.
    pub fn peek(&self) -> Option<&J> {
        match self.next_level()? {
            None => self.normal.front(),
            Some(at) => self.others[at].1.front(),
        }
    }

    /// Every job, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &J> {
        self.normal
            .iter()
            .chain(self.others.iter().flat_map(|(_, level)| level))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every job, highest priority first.
    pub fn drain(&mut self) -> Vec<J> {
        let mut jobs = Vec::with_capacity(self.len);
        while let Some(job) = self.pop() {
            jobs.push(job);
        }
        jobs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_first_then_first_in_first_out() {
        let mut queue = PriorityQueue::default();
        for (job, priority) in [(1, 0), (2, -1), (3, 5), (4, 0), (5, 5), (6, 1), (7, -1)] {
            queue.push(job, priority);
        }
        assert_eq!(queue.len(), 7);
        assert_eq!(queue.peek(), Some(&3));
        assert_eq!(queue.iter().count(), 7);
        assert_eq!(queue.drain(), vec![3, 5, 6, 1, 4, 2, 7]);
        assert!(queue.is_empty() && queue.pop().is_none());
    }

    #[test]
    fn many_levels_come_and_go_in_order() {
        let mut queue = PriorityQueue::default();
        for round in 0..3 {
            for p in (-50..50).rev() {
                queue.push((round, p), p);
            }
            let popped: Vec<i32> = queue.drain().into_iter().map(|(_, p)| p).collect();
            assert_eq!(popped, (-50..50).rev().collect::<Vec<_>>());
        }
        assert!(queue.others.len() <= 100);
    }

    #[test]
    fn a_level_emptied_and_filled_again_keeps_its_place() {
        let mut queue = PriorityQueue::default();
        queue.push("low", -3);
        queue.push("high", 2);
        assert_eq!(queue.pop(), Some("high"));
        queue.push("normal", 0);
        queue.push("high again", 2);
        assert_eq!(queue.drain(), vec!["high again", "normal", "low"]);
    }
}
