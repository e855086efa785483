//! Why a journal could not be opened, read or written, naming the file.

use rusqlite::ErrorCode;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum JournalError {
    /// Not an SQLite file, or an SQLite file that some other program owns.
    NotAJournal {
        path: PathBuf,
        detail: String,
    },
    /// An SQLite file whose pages are damaged.
    Corrupt {
        path: PathBuf,
        detail: String,
    },
    /// Written by a newer taskrunner, whose schema this one does not know.
    NewerVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The file or its directory cannot be written.
    ReadOnly {
        path: PathBuf,
    },
    /// The disk (or the configured page limit) is full.
    DiskFull {
        path: PathBuf,
    },
    /// Another live process owns the journal.
    InUse {
        path: PathBuf,
        pid: u32,
        host: String,
    },
    /// A row the journal refuses before it reaches the writer.
    InvalidRow {
        path: PathBuf,
        detail: String,
    },
    /// The journal was closed; nothing more can be written.
    Closed {
        path: PathBuf,
    },
    /// `close` gave up on rows that could not be written.
    Unwritten {
        path: PathBuf,
        rows: usize,
        reason: String,
    },
    Io {
        path: PathBuf,
        source: io::Error,
    },
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use JournalError::*;
        match self {
            NotAJournal { path, detail } => {
                write!(f, "{} is not a taskrunner journal ({detail})", path.display())
            }
            Corrupt { path, detail } => {
                write!(f, "journal {} is corrupt ({detail})", path.display())
            }
            NewerVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "journal {} has schema version {found}, newer than the {supported} this taskrunner knows",
                path.display()
            ),
            ReadOnly { path } => write!(f, "journal {} cannot be written (read-only)", path.display()),
            DiskFull { path } => write!(f, "journal {}: disk full", path.display()),
            InUse { path, pid, host } => write!(
                f,
                "journal {} is in use by process {pid} on {host}",
                path.display()
            ),
            InvalidRow { path, detail } => {
                write!(f, "journal {}: row refused ({detail})", path.display())
            }
            Closed { path } => write!(f, "journal {} is closed", path.display()),
            Unwritten { path, rows, reason } => write!(
                f,
                "journal {}: {rows} rows could not be written before close ({reason})",
                path.display()
            ),
            Io { path, source } => write!(f, "journal {}: {source}", path.display()),
            Sqlite { path, source } => write!(f, "journal {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source),
            JournalError::Sqlite { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl JournalError {
    /// Names the SQLite failures that have a variant of their own.
    pub fn from_sqlite(path: &Path, source: rusqlite::Error) -> JournalError {
        let path = path.to_path_buf();
        let detail = source.to_string();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => JournalError::NotAJournal { path, detail },
            Some(ErrorCode::DatabaseCorrupt) => JournalError::Corrupt { path, detail },
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
                JournalError::ReadOnly { path }
            }
            Some(ErrorCode::DiskFull) => JournalError::DiskFull { path },
            _ if matches!(source, rusqlite::Error::FromSqlConversionFailure(..)) => {
                JournalError::Corrupt { path, detail }
            }
            _ => JournalError::Sqlite { path, source },
        }
    }

    pub fn from_io(path: &Path, source: io::Error) -> JournalError {
        let path = path.to_path_buf();
        match source.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                JournalError::ReadOnly { path }
            }
            io::ErrorKind::StorageFull => JournalError::DiskFull { path },
            _ => JournalError::Io { path, source },
        }
    }
}

/// `?` on rusqlite calls, with the path to name.
pub trait AtPath<T> {
    fn at(self, path: &Path) -> Result<T, JournalError>;
}

impl<T> AtPath<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T, JournalError> {
        self.map_err(|e| JournalError::from_sqlite(path, e))
    }
}

impl<T> AtPath<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, JournalError> {
        self.map_err(|e| JournalError::from_io(path, e))
    }
}
