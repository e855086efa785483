//! Figures, not checks: run with
//! `cargo test --release journal::bench -- --ignored --nocapture --test-threads=1`.

use super::tests::{an_hour_ago, row, Scratch};
use super::*;
use std::time::Instant;

const TASKS: u64 = 1_000_000;
const PRODUCERS: u64 = 4;
/// How far a task's start and end trail its submit, in tasks: for tasks
/// that take a while, the engine's writes of one task are spread out, so
/// few collapse within a batch.
const LAG: u64 = 5_000;

/// A task as the engine would write it at `stage` 0 (submit), 1 (start) or 2 (end).
fn task(id: u64, stage: u8) -> TaskRow {
    let state = match stage {
        0 => "pending",
        1 => "running",
        _ if id.is_multiple_of(100) => "failed",
        _ if id % 100 == 1 => "timed_out",
        _ => "succeeded",
    };
    let mut r = row(id, state);
    r.name = format!("job-{}", id % 50).into();
    // 100,000 tasks a second.
    let at = an_hour_ago() + id as f64 * 1.0e-5;
    r.submitted_at = at;
    r.started_at = r.started_at.map(|_| at + 0.5);
    r.finished_at = r.finished_at.map(|_| at + 1.0);
    if state == "succeeded" {
        r.result = Some(Stored {
            encoding: Encoding::Json,
            bytes: (id * 2).to_string().into_bytes(),
        });
    }
    r
}

/// Writes every task's submit, start and end from `PRODUCERS` threads, the
/// start and end `lag` tasks behind the submit; returns writes/s.
fn fill(journal: &Journal, base: u64, tasks: u64, lag: u64) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            s.spawn(move || {
                let mine = (1..=tasks + 2 * lag).filter(|i| i % PRODUCERS == p);
                for i in mine {
                    for (stage, at) in [
                        (0, i),
                        (1, i.wrapping_sub(lag)),
                        (2, i.wrapping_sub(2 * lag)),
                    ] {
                        if (1..=tasks).contains(&at) {
                            journal.write(task(base + at, stage)).unwrap();
                        }
                    }
                }
            });
        }
    });
    assert!(journal.flush(Duration::from_secs(600)));
    (3 * tasks) as f64 / started.elapsed().as_secs_f64()
}

#[test]
#[ignore]
fn writer_throughput() {
    for (durability, tasks) in [(Durability::Normal, TASKS), (Durability::Full, TASKS / 5)] {
        let dir = Scratch::new();
        let options = Options {
            durability,
            ..Options::default()
        };
        let journal = Journal::open(dir.path("j.db"), options).unwrap();
        for (base, lag, label) in [(0, LAG, "spread out"), (tasks, 0, "back to back")] {
            let rate = fill(&journal, base, tasks, lag);
            println!(
                "{durability:?}: {tasks} tasks x 3 writes {label}, {PRODUCERS} threads: \
                 {rate:.0} writes/s ({:.0} tasks/s)",
                rate / 3.0
            );
        }
        // One write per task: nothing to collapse.
        let started = Instant::now();
        let base = 10 * TASKS;
        for id in base..base + tasks {
            journal.write(row(id, "pending")).unwrap();
        }
        let sent = started.elapsed();
        assert!(journal.flush(Duration::from_secs(600)));
        let total = started.elapsed();
        println!(
            "  {tasks} distinct single writes from one thread: sent in {sent:.2?}, committed in {total:.2?}: {:.0} rows/s",
            tasks as f64 / total.as_secs_f64()
        );
    }
}

#[test]
#[ignore]
fn first_page_over_a_million_rows() {
    let dir = Scratch::new();
    let journal = Journal::open(dir.path("j.db"), Options::default()).unwrap();
    fill(&journal, 0, TASKS, LAG);
    let newest = an_hour_ago() + (TASKS - 10_000) as f64 * 1.0e-5;
    let oldest = an_hour_ago() + 10_000.0 * 1.0e-5;
    let since = |at| Filter {
        since: Some(at),
        ..Filter::default()
    };
    let named = |part: &str| Filter {
        name_contains: Some(part.into()),
        ..Filter::default()
    };
    let cases = [
        ("no filter", Filter::default()),
        ("failed (1%)", states(&["failed"])),
        ("succeeded or failed", states(&["succeeded", "failed"])),
        ("since the newest 1%", since(newest)),
        ("since the oldest (all rows)", since(an_hour_ago())),
        (
            "until the oldest 1%",
            Filter {
                until: Some(oldest),
                ..Filter::default()
            },
        ),
        ("name contains job-7 (2%)", named("job-7")),
        ("name matches nothing (a full scan)", named("zzz")),
        (
            "name matches nothing, since the newest 1%",
            Filter {
                since: Some(newest),
                ..named("zzz")
            },
        ),
        (
            "failed, since the newest 1%",
            Filter {
                since: Some(newest),
                ..states(&["failed"])
            },
        ),
    ];
    for (label, filter) in cases {
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let started = Instant::now();
                let page = journal.page(&filter, None, 50).unwrap();
                std::hint::black_box(page);
                started.elapsed()
            })
            .collect();
        times.sort();
        println!("first page of 50, {label}: median {:.2?}", times[2]);
    }
}

fn states(names: &[&str]) -> Filter {
    Filter {
        states: names.iter().map(|s| s.to_string()).collect(),
        ..Filter::default()
    }
}

/// The writer alone: finished rows built beforehand, one write each (as an
/// instant task's three writes collapse into), sent from one thread.
#[test]
#[ignore]
fn writer_alone_on_finished_rows() {
    const ROWS: u64 = 300_000;
    for round in 0..3 {
        let dir = Scratch::new();
        let journal = Journal::open(dir.path("j.db"), Options::default()).unwrap();
        let rows: Vec<TaskRow> = (1..=ROWS).map(|id| task(id, 2)).collect();
        let started = Instant::now();
        for row in rows {
            journal.write(row).unwrap();
        }
        let sent = started.elapsed();
        assert!(journal.flush(Duration::from_secs(600)));
        let total = started.elapsed();
        println!(
            "round {round}: {ROWS} finished rows: sent in {sent:.2?}, committed in {total:.2?}: {:.0} rows/s",
            ROWS as f64 / total.as_secs_f64()
        );
    }
}
