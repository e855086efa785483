//! `JournalView`: reads a journal, even while another process owns it and
//! writes (the `tasks` command). It takes no lock and writes nothing.

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList};
use std::path::PathBuf;

use crate::journal::{Journal, Reader, TaskRow};
use crate::journaling::{journal_error, Codec};
use crate::runner::{listing, Labels};
use crate::status::status_dict;

/// A journal, read-only: task statuses as the owner last committed them.
#[pyclass(module = "taskrunner._core", frozen)]
pub struct JournalView {
    reader: Reader,
    codec: Codec,
    path: PathBuf,
}

#[pymethods]
impl JournalView {
    /// Opens the journal at `path` to read; `JournalError` if it is missing,
    /// not a journal, or of a newer version.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<JournalView> {
        let codec = Codec::new(py)?;
        let reader = py
            .detach(|| Journal::open_read_only(&path))
            .map_err(journal_error)?;
        Ok(JournalView {
            reader,
            codec,
            path,
        })
    }

    /// The status dict of one task, as last committed.
    fn status<'py>(&self, py: Python<'py>, id: &Bound<'_, PyInt>) -> PyResult<Bound<'py, PyDict>> {
        let unknown = || PyKeyError::new_err(format!("no task with id {id} in the journal"));
        let id = id.extract::<u64>().map_err(|_| unknown())?;
        let row = py
            .detach(|| self.reader.get(id))
            .map_err(journal_error)?
            .ok_or_else(unknown)?;
        self.status_of(py, &row)
    }

    /// Status dicts, oldest first (newest first with `newest_first`), past
    /// `cursor`, filtered as `TaskRunner.tasks` filters.
    #[pyo3(signature = (
        state=None, *, name=None, since=None, until=None, cursor=None, limit=None,
        newest_first=false, kind=None, r#type=None, worker=None, error=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn tasks<'py>(
        &self,
        py: Python<'py>,
        state: Option<&str>,
        name: Option<String>,
        since: Option<f64>,
        until: Option<f64>,
        cursor: Option<u64>,
        limit: Option<&Bound<'_, PyInt>>,
        newest_first: bool,
        kind: Option<String>,
        r#type: Option<String>,
        worker: Option<String>,
        error: Option<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        let labels = Labels {
            kind,
            task_type: r#type,
            worker,
            error_type: error,
        };
        let listing = listing(
            state,
            name,
            since,
            until,
            labels,
            cursor,
            newest_first,
            limit,
        )?;
        let list = PyList::empty(py);
        if listing.limit == 0 {
            return Ok(list);
        }
        let page = py
            .detach(|| {
                if newest_first {
                    self.reader
                        .page_newest(&listing.filter, cursor, listing.limit)
                } else {
                    self.reader.page(&listing.filter, cursor, listing.limit)
                }
            })
            .map_err(journal_error)?;
        for row in &page.rows {
            list.append(self.status_of(py, row)?)?;
        }
        Ok(list)
    }

    #[getter]
    fn path(&self) -> String {
        self.path.display().to_string()
    }
}

impl JournalView {
    fn status_of<'py>(&self, py: Python<'py>, row: &TaskRow) -> PyResult<Bound<'py, PyDict>> {
        status_dict(py, &self.codec.record_of(py, row)?)
    }
}
