//! The journal as the engine will use it: writes, reads, recovery, retention,
//! a full disk, migrations, ownership and the errors of `open`.

use super::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;

const WAIT: Duration = Duration::from_secs(10);

/// A directory of its own for each test, removed afterwards.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("taskrunner-journal-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An hour ago, the same for every row of a test run: rows are within the
/// default retention, and past a retention of zero.
pub fn an_hour_ago() -> f64 {
    static AT: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| (unix_now() - 3600.0).floor())
}

/// Task `id` in `state`, submitted `id` milliseconds after an hour ago.
pub fn row(id: u64, state: &'static str) -> TaskRow {
    let at = an_hour_ago() + id as f64 * 1e-3;
    let mut row = TaskRow::pending(id, "job".into(), at, "library");
    row.state = state;
    if state != "pending" {
        row.started_at = Some(at + 1.0);
        row.kind = Some("blocking");
    }
    if !is_changeable(state) {
        row.finished_at = Some(at + 2.0);
    }
    row
}

use super::row::is_changeable;

fn open(path: &Path) -> Journal {
    Journal::open(path, Options::default()).unwrap()
}

fn write_all(journal: &Journal, rows: impl IntoIterator<Item = TaskRow>) {
    for r in rows {
        journal.write(r).unwrap();
    }
    assert!(journal.flush(WAIT));
}

#[test]
fn a_row_reads_back_as_written() {
    let dir = Scratch::new();
    let journal = open(&dir.path("j.db"));
    let mut failed = row(7, "failed");
    failed.polls = 3;
    failed.attempt = 2;
    failed.error = Some(Box::new(ErrorRow {
        type_name: "ValueError".into(),
        message: "bad".into(),
        traceback: Some("Traceback...".into()),
    }));
    failed.recipe = Some(Box::new(Stored {
        encoding: Encoding::Pickle,
        bytes: vec![0x80, 4, 0],
    }));
    failed.task_type = Some("resize".into());
    let mut done = row(8, "succeeded");
    done.result = Some(Stored {
        encoding: Encoding::Repr,
        bytes: b"<object at 0x1>".to_vec(),
    });
    write_all(&journal, [failed.clone(), done.clone(), row(9, "pending")]);
    assert_eq!(journal.get(7).unwrap(), Some(failed));
    assert_eq!(journal.get(8).unwrap(), Some(done));
    assert_eq!(journal.get(9).unwrap(), Some(row(9, "pending")));
    assert_eq!(journal.get(10).unwrap(), None);
}

#[test]
fn a_final_row_never_changes_again() {
    let dir = Scratch::new();
    let journal = open(&dir.path("j.db"));
    write_all(&journal, [row(1, "cancelled")]);
    // A late start and a late result, each in a batch of its own, then together.
    write_all(&journal, [row(1, "running")]);
    write_all(&journal, [row(1, "succeeded")]);
    let mut retry = row(1, "running");
    retry.attempt = 2;
    write_all(&journal, [row(1, "pending"), retry]);
    assert_eq!(journal.get(1).unwrap(), Some(row(1, "cancelled")));
}

#[test]
fn an_earlier_attempt_never_overwrites_a_later_one() {
    let dir = Scratch::new();
    let journal = open(&dir.path("j.db"));
    let mut second = row(1, "running");
    second.attempt = 2;
    write_all(&journal, [second.clone()]);
    write_all(&journal, [row(1, "succeeded")]);
    assert_eq!(journal.get(1).unwrap(), Some(second.clone()));
    let mut second_done = row(1, "succeeded");
    second_done.attempt = 2;
    write_all(&journal, [second_done.clone()]);
    assert_eq!(journal.get(1).unwrap(), Some(second_done));
}

#[test]
fn a_stale_write_of_the_same_attempt_never_moves_a_row_back() {
    let dir = Scratch::new();
    let journal = open(&dir.path("j.db"));
    let mut polled = row(1, "running");
    polled.polls = 5;
    write_all(&journal, [polled.clone()]);
    let mut stale = polled.clone();
    stale.polls = 4;
    write_all(&journal, [row(1, "pending"), stale]);
    assert_eq!(journal.get(1).unwrap(), Some(polled));
}

#[test]
fn waiting_for_a_write_returns_once_it_is_committed() {
    let dir = Scratch::new();
    let journal = open(&dir.path("j.db"));
    let seq = journal.write(row(1, "pending")).unwrap();
    assert!(journal.wait_committed(seq, WAIT));
    assert!(journal.get(1).unwrap().is_some());
    let never = seq + 1;
    assert!(!journal.wait_committed(never, Duration::from_millis(50)));
    assert!(journal.flush(WAIT), "nothing unsent to wait for");
}

#[test]
fn a_row_that_could_never_be_stored_is_refused_at_once() {
    let dir = Scratch::new();
    let journal = open(&dir.path("j.db"));
    let refused = |r: TaskRow| matches!(journal.write(r), Err(JournalError::InvalidRow { .. }));
    assert!(refused(row(1, "sleeping")));
    assert!(refused(row(u64::MAX, "pending")));
    assert!(refused(TaskRow {
        started_at: Some(f64::NAN),
        ..row(1, "running")
    }));
    assert!(journal.remember_key("k".into(), 1, f64::INFINITY).is_err());
    write_all(&journal, [row(2, "pending")]);
}

#[test]
fn close_commits_and_is_idempotent_and_drop_closes() {
    let dir = Scratch::new();
    let path = dir.path("j.db");
    let journal = open(&path);
    journal.write(row(1, "pending")).unwrap();
    journal.close().unwrap();
    journal.close().unwrap();
    assert!(matches!(
        journal.write(row(2, "pending")),
        Err(JournalError::Closed { .. })
    ));
    assert_eq!(journal.get(1).unwrap(), Some(row(1, "pending")));
    drop(journal);
    let journal = open(&path);
    journal.write(row(3, "pending")).unwrap();
    drop(journal);
    assert!(open(&path).get(3).unwrap().is_some());
}

#[test]
fn ids_continue_after_a_restart_even_when_the_newest_rows_were_pruned() {
    let dir = Scratch::new();
    let path = dir.path("j.db");
    assert_eq!(open(&path).next_id(), 1);
    let journal = open(&path);
    write_all(&journal, (1..=5).map(|id| row(id, "succeeded")));
    drop(journal);
    assert_eq!(open(&path).next_id(), 6);
    let journal = Journal::open(
        &path,
        Options {
            retention: Duration::ZERO,
            ..Options::default()
        },
    )
    .unwrap();
    journal.on_writer(|w| w.prune_now());
    assert_eq!(journal.reader().query_i64("SELECT count(*) FROM tasks"), 0);
    drop(journal);
    assert_eq!(open(&path).next_id(), 6);
}

#[test]
fn the_tasks_a_dead_process_left_unfinished_are_found_at_open() {
    let dir = Scratch::new();
    let path = dir.path("j.db");
    let journal = open(&path);
    let states = ["pending", "running", "succeeded", "running", "timed_out"];
    write_all(&journal, states.iter().zip(1..).map(|(s, id)| row(id, s)));
    drop(journal);
    let journal = open(&path);
    let ids: Vec<u64> = journal.unfinished().iter().map(|r| r.id).collect();
    assert_eq!(ids, [1, 2, 4]);
}

const CHILD_ENV: &str = "TASKRUNNER_JOURNAL_CRASH_CHILD";

/// Not a test by itself: the child of the next test, killed while it runs.
#[test]
#[ignore]
fn journal_writing_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let journal = open(Path::new(&path));
    write_all(&journal, (1..=1000).map(|id| row(id, "running")));
    println!("flushed");
    // Keeps writing until it is killed (or, should the test die first, for 30 s).
    let started = std::time::Instant::now();
    for id in 1001.. {
        journal.write(row(id, "pending")).unwrap();
        std::thread::sleep(Duration::from_micros(50));
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
}

#[test]
fn committed_rows_outlive_a_sigkill_and_the_file_opens_again() {
    let dir = Scratch::new();
    let path = dir.path("j.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "journal::tests::journal_writing_child"])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    assert!(stdout
        .lines()
        .map_while(Result::ok)
        .any(|l| l.ends_with("flushed")));
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    child.wait().unwrap();
    let journal = open(&path);
    let unfinished = journal.unfinished();
    assert!(unfinished.len() >= 1000);
    assert!(unfinished.iter().take(1000).map(|r| r.id).eq(1..=1000));
    assert_eq!(journal.next_id(), unfinished.last().unwrap().id + 1);
}

#[test]
fn pages_follow_the_filter_in_id_order() {
    let dir = Scratch::new();
    let journal = open(&dir.path("j.db"));
    let rows: Vec<TaskRow> = (1..=500)
        .map(|id| {
            let mut r = row(id, STATES[(id % 6) as usize]);
            r.name = format!("job-{}", id % 7).into();
            if id % 5 == 0 {
                r.kind = Some("polling");
            }
            r.task_type = (id % 3 == 0).then(|| format!("type-{}", id % 4).into());
            r.worker = (id % 11 == 0).then(|| "tcp://w:1".into());
            r.error = (id % 13 == 0).then(|| {
                Box::new(ErrorRow {
                    type_name: format!("Error{}", id % 2),
                    message: "m".into(),
                    traceback: None,
                })
            });
            r
        })
        .chain([
            // Submitted out of id order (a clock stepped back, say), far from its neighbours.
            TaskRow {
                submitted_at: an_hour_ago() + 0.2,
                ..row(1500, "running")
            },
            TaskRow {
                submitted_at: an_hour_ago() + 0.99,
                ..row(3000, "running")
            },
        ])
        .collect();
    write_all(&journal, rows.clone());
    let filters = [
        Filter::default(),
        Filter {
            states: vec!["failed".into(), "pending".into(), "failed".into()],
            ..Filter::default()
        },
        Filter {
            states: vec!["running".into()],
            name_contains: Some("-3".into()),
            since: Some(an_hour_ago() + 0.1),
            until: Some(an_hour_ago() + 0.4),
            ..Filter::default()
        },
        Filter {
            name_contains: Some("job-".into()),
            ..Filter::default()
        },
        Filter {
            name_contains: Some("nothing".into()),
            ..Filter::default()
        },
        Filter {
            kind: Some("polling".into()),
            ..Filter::default()
        },
        Filter {
            task_type: Some("type-1".into()),
            ..Filter::default()
        },
        Filter {
            worker: Some("tcp://w:1".into()),
            ..Filter::default()
        },
        Filter {
            error_type: Some("Error1".into()),
            ..Filter::default()
        },
        Filter {
            states: vec!["failed".into(), "cancelled".into()],
            name_contains: Some("-".into()),
            kind: Some("blocking".into()),
            task_type: Some("type-3".into()),
            ..Filter::default()
        },
        Filter {
            worker: Some("tcp://w:1".into()),
            error_type: Some("Error0".into()),
            since: Some(an_hour_ago() + 0.1),
            ..Filter::default()
        },
        Filter {
            states: vec!["no such state".into()],
            ..Filter::default()
        },
        Filter {
            since: Some(an_hour_ago() + 0.45),
            ..Filter::default()
        },
        Filter {
            until: Some(an_hour_ago() + 0.2),
            ..Filter::default()
        },
        Filter {
            since: Some(an_hour_ago() + 0.6),
            ..Filter::default()
        },
        Filter {
            until: Some(an_hour_ago()),
            ..Filter::default()
        },
    ];
    for filter in filters {
        let expected: Vec<u64> = rows
            .iter()
            .filter(|r| passes(&filter, r))
            .map(|r| r.id)
            .collect();
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let page = journal.page(&filter, after, 37).unwrap();
            assert!(page.rows.len() <= 37);
            got.extend(page.rows.iter().map(|r| r.id));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(got, expected, "{filter:?}");
        let mut newest = Vec::new();
        let mut before = None;
        loop {
            let page = journal.page_newest(&filter, before, 37).unwrap();
            assert!(page.rows.len() <= 37);
            newest.extend(page.rows.iter().map(|r| r.id));
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        newest.reverse();
        assert_eq!(newest, expected, "newest first: {filter:?}");
        let ids = journal.page_ids(&filter, None, true, 1000).unwrap();
        assert_eq!(ids.ids.iter().rev().copied().collect::<Vec<_>>(), expected);
    }
}

#[test]
fn a_name_search_over_more_names_than_it_lists_scans_the_rows_instead() {
    let dir = Scratch::new();
    let journal = open(&dir.path("j.db"));
    let rows: Vec<TaskRow> = (1..=5_100)
        .map(|id| TaskRow {
            name: format!("job-{id}").into(),
            ..row(id, "succeeded")
        })
        .collect();
    write_all(&journal, rows);
    let filter = Filter {
        name_contains: Some("-42".into()),
        ..Filter::default()
    };
    let mut expected: Vec<u64> = (1..=5_100)
        .filter(|id| format!("job-{id}").contains("-42"))
        .collect();
    expected.reverse();
    let page = journal.page_ids(&filter, None, true, 1000).unwrap();
    assert_eq!(page.ids, expected);
    let few = journal.page_ids(&filter, None, true, 3).unwrap();
    assert_eq!(few.ids, expected[..3]);
    assert_eq!(few.next, Some(expected[2]));
}

fn passes(f: &Filter, r: &TaskRow) -> bool {
    (f.states.is_empty() || f.states.iter().any(|s| s == r.state))
        && f.name_contains
            .as_ref()
            .is_none_or(|n| r.name.contains(n.as_str()))
        && f.since.is_none_or(|s| r.submitted_at >= s)
        && f.until.is_none_or(|u| r.submitted_at < u)
        && f.kind.as_deref().is_none_or(|k| r.kind == Some(k))
        && f.task_type
            .as_deref()
            .is_none_or(|t| r.task_type.as_deref() == Some(t))
        && f.worker
            .as_deref()
            .is_none_or(|w| r.worker.as_deref() == Some(w))
        && f.error_type
            .as_deref()
            .is_none_or(|e| r.error.as_ref().is_some_and(|x| x.type_name == e))
}

#[test]
fn an_idempotency_key_finds_its_task_until_it_expires() {
    let dir = Scratch::new();
    let options = Options {
        key_retention: Duration::from_secs(60),
        ..Options::default()
    };
    let journal = Journal::open(dir.path("j.db"), options).unwrap();
    let now = unix_now();
    journal.remember_key("fresh".into(), 1, now).unwrap();
    journal.remember_key("fresh".into(), 2, now).unwrap();
    journal
        .remember_key("stale".into(), 3, now - 120.0)
        .unwrap();
    assert!(journal.flush(WAIT));
    assert_eq!(
        journal.lookup_key("fresh").unwrap(),
        Some(1),
        "first one wins"
    );
    assert_eq!(journal.lookup_key("stale").unwrap(), None, "expired");
    assert_eq!(journal.lookup_key("unknown").unwrap(), None);
    journal.remember_key("stale".into(), 4, now).unwrap();
    assert!(journal.flush(WAIT));
    assert_eq!(
        journal.lookup_key("stale").unwrap(),
        Some(4),
        "an expired key is reusable"
    );
    journal.remember_key("old".into(), 5, now - 120.0).unwrap();
    assert!(journal.flush(WAIT));
    journal.on_writer(|w| w.prune_now());
    let keys = "SELECT count(*) FROM idempotency_keys";
    assert_eq!(journal.reader().query_i64(keys), 2);
}

#[test]
fn audit_rows_are_written_with_the_same_batches() {
    let dir = Scratch::new();
    let journal = open(&dir.path("j.db"));
    let audit = |task_id| AuditRow {
        at: unix_now(),
        route: "POST /tasks".into(),
        task_id,
        token_label: Some("ci".into()),
    };
    journal.write(row(1, "pending")).unwrap();
    journal.write_audit(audit(Some(1))).unwrap();
    journal.write_audit(audit(None)).unwrap();
    assert!(journal.flush(WAIT));
    let count = "SELECT count(*) FROM audit WHERE route = 'POST /tasks'";
    assert_eq!(journal.reader().query_i64(count), 2);
}

#[test]
fn pruning_keeps_the_file_bounded() {
    let dir = Scratch::new();
    let options = Options {
        retention: Duration::ZERO,
        prune_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let journal = Journal::open(dir.path("j.db"), options).unwrap();
    // The first round is pruned at the interval's start, as the writes go:
    // prune now, so that every round writes all its rows before pruning.
    journal.on_writer(|w| w.prune_now());
    let mut sizes = Vec::new();
    for round in 0..6u64 {
        let mut done = row(0, "succeeded");
        done.result = Some(Stored {
            encoding: Encoding::Json,
            bytes: vec![b'7'; 200],
        });
        write_all(
            &journal,
            (1..=20_000).map(|i| TaskRow {
                id: round * 20_000 + i,
                ..done.clone()
            }),
        );
        journal.on_writer(|w| w.prune_now());
        assert_eq!(journal.reader().query_i64("SELECT count(*) FROM tasks"), 0);
        sizes.push(journal.reader().query_i64("PRAGMA page_count"));
    }
    // Freed pages are reused: the file stays near its size after one round
    // rather than growing by a round's worth each time.
    let first = sizes[0];
    assert!(sizes.iter().all(|&s| s <= first + first / 4), "{sizes:?}");
    assert_eq!(sizes[4], sizes[5], "{sizes:?}");
}

#[test]
fn pruning_deletes_exactly_the_rows_finished_before_the_retention() {
    let dir = Scratch::new();
    let options = Options {
        retention: Duration::from_secs(3600),
        prune_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let journal = Journal::open(dir.path("j.db"), options).unwrap();
    let now = unix_now();
    let at = |id: u64, submitted: f64, finished: Option<f64>| {
        let mut r = row(
            id,
            if finished.is_some() {
                "succeeded"
            } else {
                "running"
            },
        );
        r.submitted_at = submitted;
        r.started_at = Some(submitted);
        r.finished_at = finished;
        r
    };
    // Blocks of old tasks: most finished long ago, one still running, some
    // finished lately; then new tasks, finished now.
    let old = now - 7200.0;
    write_all(
        &journal,
        (1..=3000u64).map(|id| match id {
            2001 => at(id, old, None),
            ..=2000 => at(id, old, Some(old + 1.0)),
            _ => at(id, old, Some(now - 600.0)),
        }),
    );
    write_all(&journal, (3001..=4000).map(|id| at(id, now, Some(now))));
    journal.on_writer(|w| w.prune_now());
    let count = |sql: &str| journal.reader().query_i64(sql);
    assert_eq!(count("SELECT count(*) FROM tasks"), 2000);
    assert_eq!(count("SELECT min(id) FROM tasks"), 2001);
    assert_eq!(count("SELECT count(*) FROM tasks WHERE id > 2001"), 1999);
}

#[test]
fn a_full_disk_degrades_the_journal_and_it_recovers_without_losing_a_row() {
    let dir = Scratch::new();
    let options = Options {
        max_page_count: Some(64),
        ..Options::default()
    };
    let journal = Journal::open(dir.path("j.db"), options).unwrap();
    let mut last = 0;
    for id in 1..=5_000 {
        let mut r = row(id, "running");
        r.recipe = Some(Box::new(Stored {
            encoding: Encoding::Pickle,
            bytes: vec![1; 100],
        }));
        last = journal.write(r).unwrap();
    }
    assert!(!journal.wait_committed(last, Duration::from_millis(300)));
    assert!(matches!(journal.health(), Health::Degraded(ref why) if why.contains("disk full")));
    let failures = journal.write_failures();
    assert!(failures >= 1);
    // Later changes of rows already waiting collapse into them.
    for id in 1..=5_000 {
        last = journal.write(row(id, "succeeded")).unwrap();
    }
    journal.on_writer(|w| {
        schema::set_max_page_count(w.conn(), 1 << 20).unwrap();
        w.retry_now();
    });
    assert!(journal.wait_committed(last, WAIT));
    assert_eq!(journal.health(), Health::Ok);
    let done = "SELECT count(*) FROM tasks WHERE state = 'succeeded'";
    assert_eq!(journal.reader().query_i64(done), 5_000);
}

#[test]
fn a_version_1_file_is_migrated_with_its_rows() {
    let dir = Scratch::new();
    let path = dir.path("j.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        schema::migrate(&mut conn, &path, 0, 1).unwrap();
        conn.execute(
            &format!(
                "INSERT INTO tasks ({}) VALUES ({})",
                // Version 1's columns: the worker came in version 4.
                row::TASK_COLUMNS.split(", worker").next().unwrap(),
                ["?"; 17].join(",")
            ),
            rusqlite::params![
                3,
                "old",
                "polling",
                "succeeded",
                1.0,
                2.0,
                3.0,
                9,
                1,
                "json",
                b"6".to_vec(),
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<Vec<u8>>,
                "library"
            ],
        )
        .unwrap();
    }
    let journal = open(&path);
    assert_eq!(
        journal.reader().query_i64("PRAGMA user_version"),
        VERSION as i64
    );
    let old = journal.get(3).unwrap().unwrap();
    assert_eq!((&*old.name, old.polls, old.worker), ("old", 9, None));
    assert_eq!(old.result.unwrap().bytes, b"6");
    assert_eq!(journal.next_id(), 4);
    journal.remember_key("k".into(), 3, unix_now()).unwrap();
    assert!(journal.flush(WAIT));
    assert_eq!(journal.lookup_key("k").unwrap(), Some(3));
}

#[test]
fn a_second_open_names_the_owner() {
    let dir = Scratch::new();
    let path = dir.path("j.db");
    let _owner = open(&path);
    match Journal::open(&path, Options::default()) {
        Err(e @ JournalError::InUse { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&std::process::id().to_string()), "{text}");
            assert!(text.contains("j.db"), "{text}");
        }
        other => panic!("expected InUse, got {:?}", other.err()),
    }
}

#[test]
fn a_viewer_reads_while_the_owner_writes() {
    let dir = Scratch::new();
    let path = dir.path("j.db");
    let journal = open(&path);
    write_all(&journal, [row(1, "running")]);
    let viewer = Journal::open_read_only(&path).unwrap();
    assert_eq!(viewer.get(1).unwrap(), Some(row(1, "running")));
    write_all(&journal, [row(1, "succeeded")]);
    assert_eq!(viewer.get(1).unwrap(), Some(row(1, "succeeded")));
    drop(journal);
    assert_eq!(
        viewer
            .page(&Filter::default(), None, 10)
            .unwrap()
            .rows
            .len(),
        1
    );
}

mod open_errors {
    use super::*;

    fn open_err(path: &Path) -> JournalError {
        match Journal::open(path, Options::default()) {
            Ok(_) => panic!("{} opened", path.display()),
            Err(e) => e,
        }
    }

    #[test]
    fn a_text_file_is_not_a_journal() {
        let dir = Scratch::new();
        let path = dir.path("notes.txt");
        std::fs::write(
            &path,
            "not a database, just some text that is long enough\n".repeat(20),
        )
        .unwrap();
        let e = open_err(&path);
        assert!(matches!(e, JournalError::NotAJournal { .. }), "{e:?}");
        assert!(e.to_string().contains("notes.txt"), "{e}");
    }

    #[test]
    fn another_programs_database_is_not_a_journal() {
        let dir = Scratch::new();
        let path = dir.path("other.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE customers (id INTEGER)")
            .unwrap();
        drop(conn);
        let e = open_err(&path);
        assert!(matches!(e, JournalError::NotAJournal { .. }), "{e:?}");
    }

    #[test]
    fn a_newer_version_is_refused() {
        let dir = Scratch::new();
        let path = dir.path("j.db");
        drop(open(&path));
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        match open_err(&path) {
            JournalError::NewerVersion {
                found, supported, ..
            } => {
                assert_eq!((found, supported), (99, VERSION));
            }
            e => panic!("expected NewerVersion, got {e:?}"),
        }
        assert!(Journal::open_read_only(&path).is_err());
    }

    #[test]
    fn a_garbled_journal_is_corrupt() {
        let dir = Scratch::new();
        let path = dir.path("j.db");
        drop(open(&path));
        let mut bytes = std::fs::read(&path).unwrap();
        // Page 1 past its 100-byte header holds the schema.
        for b in &mut bytes[100..4096] {
            *b = 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        let e = open_err(&path);
        assert!(matches!(e, JournalError::Corrupt { .. }), "{e:?}");
    }

    #[test]
    fn a_full_disk_at_open_is_named() {
        let dir = Scratch::new();
        let options = Options {
            max_page_count: Some(2),
            ..Options::default()
        };
        match Journal::open(dir.path("j.db"), options) {
            Err(JournalError::DiskFull { .. }) => {}
            other => panic!("expected DiskFull, got {:?}", other.err()),
        }
    }

    #[test]
    fn a_write_refused_by_sqlite_as_read_only_is_named() {
        let dir = Scratch::new();
        let path = dir.path("j.db");
        drop(open(&path));
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let conn = rusqlite::Connection::open_with_flags(&path, flags).unwrap();
        let e = conn.execute("DELETE FROM tasks", []).unwrap_err();
        let e = JournalError::from_sqlite(&path, e);
        assert!(matches!(e, JournalError::ReadOnly { .. }), "{e:?}");
    }

    #[test]
    fn a_read_only_directory_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = Scratch::new();
        let locked = dir.path("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(locked.join("probe"), b"").is_ok() {
            eprintln!("skipped: this user writes into a 0555 directory (root ignores modes)");
            return;
        }
        let e = open_err(&locked.join("j.db"));
        assert!(matches!(e, JournalError::ReadOnly { .. }), "{e:?}");
    }
}

#[test]
fn the_journal_and_a_reader_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Journal>();
    shareable::<Reader>();
}
