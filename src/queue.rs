//! A queue of pending work ordered by priority: higher first, first in
//! first out within a priority.
//!
//! Nearly all work has the default priority 0, so that level is a plain
//! deque, and other levels live in an ordered map beside it: a queue of
//! priority-0 work costs what a `VecDeque` costs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};

pub struct PriorityQueue<J> {
    normal: VecDeque<J>,
    /// Levels other than 0, highest first.
    others: BTreeMap<Reverse<i32>, VecDeque<J>>,
    len: usize,
}

impl<J> Default for PriorityQueue<J> {
    fn default() -> Self {
        PriorityQueue {
            normal: VecDeque::new(),
            others: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<J> PriorityQueue<J> {
    pub fn push(&mut self, job: J, priority: i32) {
        self.len += 1;
        if priority == 0 {
            self.normal.push_back(job);
        } else {
            self.others
                .entry(Reverse(priority))
                .or_default()
                .push_back(job);
        }
    }

    /// The oldest job of the highest priority.
    pub fn pop(&mut self) -> Option<J> {
        let above_normal = self
            .others
            .first_key_value()
            .is_some_and(|(Reverse(p), _)| *p > 0);
        let job = if above_normal || self.normal.is_empty() {
            let mut level = self.others.first_entry()?;
            let job = level.get_mut().pop_front();
            if level.get().is_empty() {
                level.remove();
            }
            job
        } else {
            self.normal.pop_front()
        };
        self.len -= usize::from(job.is_some());
        job
    }

    /// The job `pop` would take, left in place.
    pub fn peek(&self) -> Option<&J> {
        let above_normal = self
            .others
            .first_key_value()
            .is_some_and(|(Reverse(p), _)| *p > 0);
        if above_normal || self.normal.is_empty() {
            self.others.first_key_value()?.1.front()
        } else {
            self.normal.front()
        }
    }

    /// Every job, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &J> {
        self.normal.iter().chain(self.others.values().flatten())
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
