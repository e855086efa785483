//! One live process owns a journal: an exclusive advisory lock on a sidecar
//! file `<journal>.lock`, which names the owner. The OS drops the lock when
//! the owner dies, however it dies, so a stale file never blocks anyone.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{AtPath, JournalError};

/// Holds the lock until dropped. The file stays behind: removing it would
/// let a newcomer lock a fresh file while someone else still holds the old one.
#[derive(Debug)]
pub struct Owner {
    _file: File,
}

pub fn lock_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl Owner {
    /// Takes the lock for `journal`, or names who holds it.
    pub fn acquire(journal: &Path) -> Result<Owner, JournalError> {
        let path = lock_path(journal);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        lock(&mut file, journal, &path)?;
        let me = format!("{}\n{}\n", std::process::id(), host_name());
        file.set_len(0).at(&path)?;
        file.seek(SeekFrom::Start(0)).at(&path)?;
        file.write_all(me.as_bytes()).at(&path)?;
        Ok(Owner { _file: file })
    }
}

/// Takes the lock, retrying for a moment: a process that forks and execs
/// (any subprocess) holds a copy of the owner's descriptor, and so the lock,
/// until the exec closes it.
fn lock(file: &mut File, journal: &Path, path: &Path) -> Result<(), JournalError> {
    for _ in 0..LOCK_TRIES {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => std::thread::sleep(LOCK_RETRY),
            Err(TryLockError::Error(e)) => return Err(JournalError::from_io(path, e)),
        }
    }
    Err(in_use(journal, file))
}

const LOCK_TRIES: u32 = 20;
const LOCK_RETRY: Duration = Duration::from_millis(10);

/// Who holds the lock. The owner writes its name just after locking, so a
/// few short retries cover the moment between the two.
fn in_use(journal: &Path, file: &mut File) -> JournalError {
    let mut owner = None;
    for _ in 0..LOCK_TRIES {
        owner = read_owner(file);
        if owner.is_some() {
            break;
        }
        std::thread::sleep(LOCK_RETRY);
    }
    let (pid, host) = owner.unwrap_or_else(|| (0, "an unknown host".to_owned()));
    JournalError::InUse {
        path: journal.to_path_buf(),
        pid,
        host,
    }
}

fn read_owner(file: &mut File) -> Option<(u32, String)> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let host = lines.next()?.trim().to_owned();
    Some((pid, host))
}

/// The machine's name, for telling which host holds a journal on shared storage.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests::Scratch;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    const CHILD_ENV: &str = "TASKRUNNER_JOURNAL_LOCK_CHILD";

    #[test]
    fn a_second_owner_is_refused_with_the_first_ones_name() {
        let dir = Scratch::new();
        let journal = dir.path("j.db");
        let first = Owner::acquire(&journal).unwrap();
        match Owner::acquire(&journal) {
            Err(JournalError::InUse { pid, host, .. }) => {
                assert_eq!(pid, std::process::id());
                assert_eq!(host, host_name());
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        Owner::acquire(&journal).unwrap();
    }

    /// Not a test by itself: the child process of the next test, which
    /// holds the lock until it is killed.
    #[test]
    #[ignore]
    fn lock_holding_child() {
        let Some(journal) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let _owner = Owner::acquire(Path::new(&journal)).unwrap();
        println!("locked");
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn the_lock_dies_with_its_owner_even_by_sigkill() {
        let dir = Scratch::new();
        let journal = dir.path("j.db");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "journal::owner::tests::lock_holding_child"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &journal)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let locked = stdout
            .lines()
            .map_while(Result::ok)
            .any(|l| l.ends_with("locked"));
        assert!(locked, "the child never took the lock");
        match Owner::acquire(&journal) {
            Err(JournalError::InUse { pid, .. }) => assert_eq!(pid, child.id()),
            other => panic!("expected InUse, got {other:?}"),
        }
        child.kill().unwrap(); // SIGKILL: no destructor runs
        child.wait().unwrap();
        Owner::acquire(&journal).unwrap();
    }
}
