//! The web UI a driver (and `weir local`) serves on its HTTP port: the
//! jobs with their health, per job a batch timeline with charts like
//! Spark's Streaming tab, the batch table and a batch's detail, state per
//! partition, lag, executors, driver replicas and the upgrade history.
//! Every asset is embedded; pages refresh themselves without reloading.
//! docs/ui.md is the users' guide.
//!
//! Routes (anything else is `None`, a 404):
//!
//! | path | page |
//! |---|---|
//! | `/` (also `/jobs`) | every job: state, health, last batch, lag, state size |
//! | `/jobs/<name>?batches=N` | one job: summary, batch timeline, state, lag, batch table over its newest N (1 to 100) batches |
//! | `/jobs/<name>/batches/<id>` | one batch: records, timing, phases, ranges, durable versions |
//! | `/jobs/<name>/history` | the spec versions with their diffs |
//! | `/cluster` | driver replicas (the leader marked) and executors |
//! | `/assets/weir.js`, `/assets/weir.css` | the embedded script and stylesheet |
//!
//! Any page with `?fragment=1` returns only the content of its `<main>`,
//! which the script fetches every 2 s and swaps in.

mod batch;
mod batches;
mod charts;
mod cluster;
mod history;
mod html;
mod jobs;
mod layout;
#[cfg(test)]
mod tests;

use layout::Frame;
use weir_proto::pb;
use weir_proto::spec::check_job_name;
use weir_security::Caller;
use weir_web::{Page, PageRequest};

use batches::MAX_BATCHES;

/// Where the UI's figures come from: the replica's metadata and, on the
/// leader, the live health of the jobs it drives.
pub trait UiSource: Send + Sync {
    /// Every job, as `weir list` shows them.
    fn jobs(&self) -> Result<Vec<pb::JobStatus>, String>;
    /// One job, as `weir status` shows it; `None` if it does not exist.
    fn job(&self, name: &str) -> Result<Option<pb::JobStatus>, String>;
    /// The newest `limit` committed batches of `job`, newest first (as
    /// `weir batches`).
    fn batches(&self, job: &str, limit: usize) -> Result<Vec<pb::BatchCommit>, String>;
    /// The plan of a batch, while it is kept (the recent batches).
    fn plan(&self, job: &str, batch_id: u64) -> Result<Option<pb::BatchPlan>, String>;
    /// The versions of `job`'s spec, oldest first, the current one last.
    fn history(&self, job: &str) -> Result<Vec<pb::JobRecord>, String>;
    /// The driver replicas and executors (`weir cluster`); `None` in
    /// `weir local`.
    fn cluster(&self) -> Option<pb::ClusterInfo>;
}

/// Why a page cannot be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum UiError {
    /// The source failed (HTTP 503, with its message).
    #[error("{0}")]
    Unavailable(String),
    /// No such job or batch (HTTP 404, with what is missing).
    #[error("{0}")]
    NotFound(String),
}

/// The pages, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Jobs,
    Job(&'a str),
    History(&'a str),
    Batch(&'a str, u64),
    Cluster,
}

impl<'a> Route<'a> {
    /// The page at `path`; `None` for an unknown path, a name that is not
    /// a job name or an id that is not a batch id.
    fn parse(path: &'a str) -> Option<Route<'a>> {
        let rest = path.strip_prefix('/')?;
        // At most four segments matter; a fifth holds the rest and
        // matches nothing.
        let parts: Vec<&str> = rest.splitn(5, '/').collect();
        match parts.as_slice() {
            [""] | ["jobs"] => Some(Route::Jobs),
            ["cluster"] => Some(Route::Cluster),
            ["jobs", name] => Some(Route::Job(job_name(name)?)),
            ["jobs", name, "history"] => Some(Route::History(job_name(name)?)),
            ["jobs", name, "batches", id] => Some(Route::Batch(job_name(name)?, batch_id(id)?)),
            _ => None,
        }
    }
}

fn job_name(name: &str) -> Option<&str> {
    check_job_name(name).ok().map(|_| name)
}

/// A batch id as written in a link: decimal digits only, and at least 1
/// (the first batch of a job is batch 1).
fn batch_id(id: &str) -> Option<u64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok().filter(|id| *id > 0)
}

/// How many batches a job page shows: `?batches=N` clamped to 1 to
/// [`MAX_BATCHES`], else all the metadata keeps.
fn batch_limit(request: &PageRequest) -> usize {
    let Some(v) = request.param("batches") else {
        return MAX_BATCHES;
    };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return MAX_BATCHES;
    }
    // Digits that overflow are a very large number.
    v.parse::<usize>()
        .unwrap_or(MAX_BATCHES)
        .clamp(1, MAX_BATCHES)
}

/// The UI's response to `request`, `None` when nothing is at its path.
/// A failure of `source` is a 503 page with its message; a job or batch
/// that does not exist is a 404 page.
pub fn page(source: &dyn UiSource, request: &PageRequest) -> Option<Page> {
    if let Some(name) = request.path.strip_prefix("/assets/") {
        return layout::asset(name);
    }
    let route = Route::parse(&request.path)?;
    let cluster = source.cluster();
    let frame = Frame {
        signed_in: match &request.caller {
            Caller::Client { name, .. } => Some(name.clone()),
            _ => None,
        },
        notice: cluster.as_ref().map(cluster::notice).unwrap_or_default(),
        cluster: cluster.is_some(),
    };
    let view = match route {
        Route::Jobs => jobs::list(source),
        Route::Job(name) => jobs::page(source, name, batch_limit(request)),
        Route::History(name) => history::page(source, name),
        Route::Batch(name, id) => batch::page(source, name, id),
        Route::Cluster => Ok(cluster::page(cluster.as_ref())),
    };
    let (view, status) = match view {
        Ok(view) => (view, 200),
        Err(UiError::NotFound(m)) => (layout::not_found(&m), 404),
        Err(UiError::Unavailable(m)) => (layout::unavailable(&m), 503),
    };
    let fragment = request.param("fragment") == Some("1");
    Some(layout::render(&view, &frame, status, fragment))
}
