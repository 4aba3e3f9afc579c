//! [`StateBackend`] on HDFS, through the pure-Rust [`hdfs_native`] client.
//!
//! The state root is an `hdfs://namenode:port/path` URL (or
//! `hdfs://nameservice/path` for an HA nameservice configured through the
//! Hadoop options, or `viewfs://cluster/path`). See `docs/hdfs.md` for the
//! configuration keys, failure behaviour and Kerberos.
//!
//! # Threads and async
//!
//! `hdfs-native` is async (tokio). The backend owns a small dedicated tokio
//! runtime (one worker thread) that runs the client's connections, lease
//! renewal and every call; the synchronous [`StateBackend`] methods hand
//! their work to that runtime and block the calling thread until it is done.
//! They are meant to be called from plain threads, as the executor does.
//! Calling them from inside another runtime's async task does not panic or
//! deadlock, but blocks that task's worker thread for the duration of the
//! call: from async code, wrap calls in `tokio::task::spawn_blocking`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};
use tokio::runtime::Runtime;

use super::backend::{file_components, is_temp_name, path_components};
use super::{StateBackend, StateError};

#[cfg(test)]
mod tests;

/// Hadoop client settings the backend passes to `hdfs-native` unless the
/// options given to [`HdfsBackend::new`] set them.
///
/// `hdfs-native`'s defaults (15 failover attempts, sleeping 0.5 s doubling
/// up to 15 s between them) make a call against a dead namenode take about
/// three minutes to fail. With these, the client gives up after one retry
/// (per namenode) and ~0.2 s; the backend's own bounded retry
/// ([`OPT_ATTEMPTS`]) then decides.
pub const FAST_FAILURE_DEFAULTS: &[(&str, &str)] = &[
    // Failovers (retries, for a single namenode) after the first try.
    ("dfs.client.failover.max.attempts", "1"),
    // Exponential, jittered sleep between failover rounds.
    ("dfs.client.failover.sleep.base.millis", "100"),
    ("dfs.client.failover.sleep.max.millis", "1000"),
    // Connect and read timeout towards datanodes (hdfs-native's default is 60 s).
    ("dfs.client.socket-timeout", "20000"),
];

/// Option: how many times the backend tries an operation that failed with a
/// transient error (namenode unreachable or not answering, safe mode, a
/// datanode failure), default 3. `1` disables the backend's retry.
pub const OPT_ATTEMPTS: &str = "weir.hdfs.attempts";
/// Option: the sleep before the first retry in milliseconds, doubling for
/// each further retry; default 200.
pub const OPT_BACKOFF_MS: &str = "weir.hdfs.retry.backoff.ms";
/// Option: the time limit of one attempt of an operation in milliseconds,
/// default 10000. Attempts that move data get one more second per MiB.
/// `hdfs-native` has no connect or response timeout for namenode calls, so
/// this is what bounds a call to a namenode that does not answer.
pub const OPT_CALL_TIMEOUT_MS: &str = "weir.hdfs.call.timeout.ms";
/// Option: `true` (default) or `false`: whether `put_atomic` hsyncs the
/// temporary file (datanodes fsync the block) before closing it.
pub const OPT_HSYNC: &str = "weir.hdfs.hsync";
/// Option: the HDFS user to act as (simple authentication only). Without it,
/// `hdfs-native` takes `HADOOP_USER_NAME`, then the OS user; with Kerberos,
/// the principal of the credentials.
pub const OPT_USER: &str = "weir.hdfs.user";

/// Option: the Kerberos principal to authenticate as (e.g.
/// `weir/host@REALM`). Without it, the default principal of the ticket cache.
pub const OPT_KERBEROS_PRINCIPAL: &str = "weir.hdfs.kerberos.principal";
/// Option: a keytab to obtain tickets from (needs
/// [`OPT_KERBEROS_PRINCIPAL`]); the tickets go to a private in-memory cache
/// unless [`OPT_KERBEROS_CACHE`] is set.
pub const OPT_KERBEROS_KEYTAB: &str = "weir.hdfs.kerberos.keytab";
/// Option: the Kerberos credential cache to use (e.g.
/// `FILE:/run/weir/krb5cc`; needs [`OPT_KERBEROS_PRINCIPAL`]). Without it,
/// the default cache (`KRB5CCNAME`).
pub const OPT_KERBEROS_CACHE: &str = "weir.hdfs.kerberos.cache";

/// The prefix of the options the backend consumes itself; all other options
/// are Hadoop configuration handed to the client.
const WEIR_OPTION_PREFIX: &str = "weir.hdfs.";

/// Hadoop's `hadoop.security.authentication` key (`simple` or `kerberos`).
const SECURITY_AUTHENTICATION: &str = "hadoop.security.authentication";

// Java exception classes the namenode reports, as hdfs-native passes them on
// in `HdfsError::RPCError(class, message)`.
const ACCESS_CONTROL_EXCEPTION: &str = "org.apache.hadoop.security.AccessControlException";
const AUTHORIZATION_EXCEPTION: &str = "org.apache.hadoop.security.authorize.AuthorizationException";
const SAFE_MODE_EXCEPTION: &str = "org.apache.hadoop.hdfs.server.namenode.SafeModeException";
const FILE_NOT_FOUND_EXCEPTION: &str = "java.io.FileNotFoundException";
const PARENT_NOT_DIRECTORY_EXCEPTION: &str = "org.apache.hadoop.fs.ParentNotDirectoryException";
const STANDBY_EXCEPTION: &str = "org.apache.hadoop.ipc.StandbyException";
const RETRIABLE_EXCEPTION: &str = "org.apache.hadoop.ipc.RetriableException";
const IO_EXCEPTION: &str = "java.io.IOException";

/// Distinguishes temporary files of concurrent writes within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How the backend retries and bounds its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    attempts: u32,
    backoff: Duration,
    call_timeout: Duration,
    hsync: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 3,
            backoff: Duration::from_millis(200),
            call_timeout: Duration::from_secs(10),
            hsync: true,
        }
    }
}

/// Why one attempt of an operation failed.
#[derive(Debug)]
enum Failure {
    /// The client reported an error.
    Hdfs(HdfsError),
    /// The attempt did not finish within its time limit.
    TimedOut(Duration),
}

/// A [`StateBackend`] storing files under a root directory of HDFS.
///
/// Writes go to `.<name>.tmp-<pid>-<counter>` in the target directory
/// (created with its parents if missing), are hsynced and closed (closing
/// waits until the namenode has committed the last block), then, once the
/// namenode reports the file's whole length to readers, renamed onto the
/// final name with overwrite, which HDFS does atomically.
///
/// Every operation is retried (see [`OPT_ATTEMPTS`]) when it fails with a
/// transient error; what remains is reported as [`StateError::Unavailable`],
/// [`StateError::SafeMode`], [`StateError::PermissionDenied`],
/// [`StateError::ParentMissing`] or [`StateError::Io`].
#[derive(Debug)]
pub struct HdfsBackend {
    /// The normalized root URL, `hdfs://authority/root`.
    url: String,
    /// The absolute root path on the filesystem without a trailing `/`;
    /// empty for the filesystem root.
    root: String,
    client: Client,
    /// Always `Some` until dropped.
    runtime: Option<Runtime>,
    policy: Policy,
    /// Who the namenode sees, for permission errors.
    user: String,
}

impl HdfsBackend {
    /// A backend rooted at `url` (`hdfs://host:port/path`). The root
    /// directory is created on first write.
    ///
    /// `options` are Hadoop client configuration keys (the same keys as in
    /// `core-site.xml`/`hdfs-site.xml`, e.g. `hadoop.security.authentication`
    /// or the `dfs.ha.*` keys of an HA nameservice) handed to `hdfs-native`,
    /// overriding the files found through `HADOOP_CONF_DIR`/`HADOOP_HOME`,
    /// plus the backend's own `weir.hdfs.*` options ([`OPT_ATTEMPTS`],
    /// [`OPT_BACKOFF_MS`], [`OPT_CALL_TIMEOUT_MS`], [`OPT_HSYNC`],
    /// [`OPT_USER`] and the `weir.hdfs.kerberos.*` options). [`FAST_FAILURE_DEFAULTS`] apply to keys not given.
    ///
    /// Does not contact the namenode: an unreachable namenode surfaces in
    /// the first operation.
    pub fn new(url: &str, options: HashMap<String, String>) -> Result<Self, StateError> {
        let invalid = |detail: String| StateError::InvalidConfig {
            url: url.to_owned(),
            detail,
        };
        let (client_url, root) = parse_root_url(url).map_err(invalid)?;
        let mut policy = Policy::default();
        let mut user = None;
        let (mut principal, mut keytab, mut cache) = (None, None, None);
        let mut hadoop: HashMap<String, String> = FAST_FAILURE_DEFAULTS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for (key, value) in options {
            if !key.starts_with(WEIR_OPTION_PREFIX) {
                hadoop.insert(key, value);
                continue;
            }
            let number = || {
                value.trim().parse::<u64>().map_err(|_| {
                    invalid(format!(
                        "option `{key}` must be a non-negative integer, got `{value}`"
                    ))
                })
            };
            match key.as_str() {
                OPT_ATTEMPTS => {
                    policy.attempts = u32::try_from(number()?)
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| {
                            invalid(format!("option `{key}` must be at least 1, got `{value}`"))
                        })?;
                }
                OPT_BACKOFF_MS => policy.backoff = Duration::from_millis(number()?),
                OPT_CALL_TIMEOUT_MS => match number()? {
                    0 => return Err(invalid(format!("option `{key}` must be positive"))),
                    ms => policy.call_timeout = Duration::from_millis(ms),
                },
                OPT_HSYNC => {
                    policy.hsync = value.trim().parse().map_err(|_| {
                        invalid(format!(
                            "option `{key}` must be `true` or `false`, got `{value}`"
                        ))
                    })?;
                }
                OPT_USER => user = Some(value),
                OPT_KERBEROS_PRINCIPAL => principal = Some(value),
                OPT_KERBEROS_KEYTAB => keytab = Some(value),
                OPT_KERBEROS_CACHE => cache = Some(value),
                _ => {
                    return Err(invalid(format!(
                        "unknown option `{key}`; the backend's own options are {OPT_ATTEMPTS}, \
                         {OPT_BACKOFF_MS}, {OPT_CALL_TIMEOUT_MS}, {OPT_HSYNC}, {OPT_USER}, \
                         {OPT_KERBEROS_PRINCIPAL}, {OPT_KERBEROS_KEYTAB} and {OPT_KERBEROS_CACHE}"
                    )))
                }
            }
        }
        if principal.is_none() && (keytab.is_some() || cache.is_some()) {
            let key = if keytab.is_some() {
                OPT_KERBEROS_KEYTAB
            } else {
                OPT_KERBEROS_CACHE
            };
            return Err(invalid(format!(
                "option `{key}` needs `{OPT_KERBEROS_PRINCIPAL}` too (the principal to take \
                 from the keytab or cache)"
            )));
        }
        let kerberos = hadoop
            .get(SECURITY_AUTHENTICATION)
            .is_some_and(|v| v != "simple");
        let effective_user = match (&user, &principal) {
            (Some(user), _) => user.clone(),
            (None, Some(principal)) if kerberos => principal.clone(),
            (None, _) if kerberos => "the Kerberos principal of the ticket cache".to_owned(),
            (None, _) => std::env::var("HADOOP_USER_NAME")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| "the OS user".to_owned()),
        };

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .thread_name("weir-hdfs")
            .enable_all()
            .build()
            .map_err(|e| invalid(format!("cannot start the HDFS client runtime: {e}")))?;
        let mut builder = ClientBuilder::new()
            .with_url(client_url)
            .with_config(hadoop)
            .with_io_runtime(runtime.handle().clone());
        if let Some(user) = user {
            builder = builder.with_user(user);
        }
        if let Some(principal) = principal {
            builder = builder.with_kerberos_principal(principal);
        }
        if let Some(keytab) = keytab {
            builder = builder.with_kerberos_keytab(keytab);
        }
        if let Some(cache) = cache {
            builder = builder.with_kerberos_cache(cache);
        }
        let client = {
            let _entered = runtime.enter();
            builder
                .build()
                .map_err(|e| invalid(format!("cannot create the HDFS client: {e}")))?
        };
        let normalized = format!(
            "{}{}",
            url_authority_prefix(url),
            if root.is_empty() { "/" } else { &root }
        );
        Ok(HdfsBackend {
            url: normalized,
            root,
            client,
            runtime: Some(runtime),
            policy,
            user: effective_user,
        })
    }

    /// The normalized root URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The absolute path on HDFS of `parts` under the root.
    fn absolute(&self, parts: &[&str]) -> String {
        if parts.is_empty() {
            return if self.root.is_empty() {
                "/".to_owned()
            } else {
                self.root.clone()
            };
        }
        let mut p = self.root.clone();
        for part in parts {
            p.push('/');
            p.push_str(part);
        }
        p
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("runtime lives until drop")
    }

    /// Runs `fut` on the backend's runtime within `timeout`, blocking the
    /// calling thread until it is done.
    fn run<T, F>(&self, timeout: Duration, fut: F) -> Result<T, Failure>
    where
        F: Future<Output = hdfs_native::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let result = match tokio::time::timeout(timeout, fut).await {
                Ok(result) => result.map_err(Failure::Hdfs),
                Err(_) => Err(Failure::TimedOut(timeout)),
            };
            let _ = tx.send(result);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(Failure::Hdfs(HdfsError::InternalError(
                "the HDFS client task panicked".to_owned(),
            )))
        })
    }

    /// The time limit of an attempt moving `bytes` bytes.
    fn transfer_timeout(&self, bytes: usize) -> Duration {
        self.policy.call_timeout + Duration::from_secs((bytes >> 20) as u64)
    }

    /// Runs `attempt` until it succeeds, fails with a permanent error, or
    /// the attempts are used up; maps the last failure to a [`StateError`].
    fn with_retry<T>(
        &self,
        op: &'static str,
        path: &str,
        mut attempt: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T, StateError> {
        let started = Instant::now();
        let mut backoff = self.policy.backoff;
        let mut tried = 0;
        loop {
            tried += 1;
            let failure = match attempt() {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let transient = is_transient(&failure);
            if !transient || tried >= self.policy.attempts {
                let note = if tried > 1 {
                    format!(
                        " (after {tried} attempts in {:.1} s)",
                        started.elapsed().as_secs_f64()
                    )
                } else {
                    String::new()
                };
                return Err(self.to_state_error(op, path, failure, &note));
            }
            tracing::warn!(
                backend = %self.url, op, path, attempt = tried, error = ?failure,
                "transient HDFS error, retrying in {backoff:?}"
            );
            std::thread::sleep(backoff);
            backoff = backoff.saturating_mul(2);
        }
    }

    /// Maps a failure to the [`StateError`] that tells the user what to do.
    fn to_state_error(
        &self,
        op: &'static str,
        path: &str,
        failure: Failure,
        note: &str,
    ) -> StateError {
        let url = self.url.clone();
        let path = path.to_owned();
        let err = match failure {
            Failure::TimedOut(limit) => {
                return StateError::Unavailable {
                    url,
                    path,
                    detail: format!("{op}: no answer within {limit:?}{note}"),
                }
            }
            Failure::Hdfs(err) => err,
        };
        match err {
            HdfsError::IOError(e) => StateError::Unavailable {
                url,
                path,
                detail: format!("{op}: {e}{note}"),
            },
            HdfsError::RPCError(class, msg) | HdfsError::FatalRPCError(class, msg) => {
                match class.as_str() {
                    ACCESS_CONTROL_EXCEPTION | AUTHORIZATION_EXCEPTION => {
                        StateError::PermissionDenied {
                            path,
                            user: self.user.clone(),
                            detail: format!("{op} under {url}: {}", first_line(&msg)),
                        }
                    }
                    SAFE_MODE_EXCEPTION => StateError::SafeMode {
                        url,
                        path,
                        detail: format!("{op}: {}{note}", first_line(&msg)),
                    },
                    STANDBY_EXCEPTION | RETRIABLE_EXCEPTION => StateError::Unavailable {
                        url,
                        path,
                        detail: format!(
                            "{op}: no active namenode answered ({class}: {}){note}",
                            first_line(&msg)
                        ),
                    },
                    FILE_NOT_FOUND_EXCEPTION | PARENT_NOT_DIRECTORY_EXCEPTION => {
                        StateError::ParentMissing {
                            url,
                            path,
                            detail: format!("{op}: {class}: {}", first_line(&msg)),
                        }
                    }
                    _ => io_error(op, path, HdfsError::RPCError(class, msg)),
                }
            }
            HdfsError::FileNotFound(msg) => StateError::ParentMissing {
                url,
                path,
                detail: format!("{op}: file not found: {msg}"),
            },
            err @ (HdfsError::SASLError(_)
            | HdfsError::GSSAPIError(..)
            | HdfsError::NoSASLMechanism) => StateError::PermissionDenied {
                path,
                user: self.user.clone(),
                detail: format!(
                    "{op} under {url}: authentication failed: {err}; with Kerberos, check that \
                     the ticket cache (KRB5CCNAME, `klist`) holds a valid ticket and that \
                     hadoop.security.authentication matches the cluster"
                ),
            },
            err => io_error(op, path, err),
        }
    }

    /// Writes `bytes` to `path` (relative to the root, hidden names
    /// allowed) in place, replacing any existing file: creates missing
    /// parents, writes, hsyncs (unless [`OPT_HSYNC`] is `false`), closes and
    /// waits until readers see the whole file.
    /// Not atomic: a reader may see a partial file while this runs. For
    /// files that become visible later through [`rename`](Self::rename),
    /// such as the file sink's hidden pre-committed output.
    pub fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), StateError> {
        let parts = path_components(path, false)?;
        let target = self.absolute(&parts);
        let data = Bytes::copy_from_slice(bytes);
        let hsync = self.policy.hsync;
        self.with_retry("put", path, || {
            let client = self.client.clone();
            let (data, target) = (data.clone(), target.clone());
            self.run(self.transfer_timeout(data.len()), async move {
                let options = WriteOptions::default().create_parent(true).overwrite(true);
                let mut writer = client.create(&target, options).await?;
                let len = data.len();
                if !data.is_empty() {
                    writer.write_bytes(data).await?;
                    if hsync {
                        writer.hsync().await?;
                    }
                }
                writer.close().await?;
                await_readable(&client, &target, len).await
            })
        })
    }

    /// Renames `from` onto `to` (both relative to the root, hidden names
    /// allowed), replacing `to` atomically. Returns `false` without error
    /// when `from` does not exist (already renamed, or never written).
    pub fn rename(&self, from: &str, to: &str) -> Result<bool, StateError> {
        let source = self.absolute(&path_components(from, false)?);
        let target = self.absolute(&path_components(to, false)?);
        self.with_retry("rename", from, || {
            let client = self.client.clone();
            let (source, target) = (source.clone(), target.clone());
            self.run(self.policy.call_timeout, async move {
                match client.rename(&source, &target, true).await {
                    Ok(()) => Ok(true),
                    Err(e) if is_not_found(&e) => Ok(false),
                    Err(e) => Err(e),
                }
            })
        })
    }

    /// The absolute path of `dir` and the names of the files directly
    /// inside it, temporary ones included, unsorted.
    fn file_names(&self, dir: &str) -> Result<(String, Vec<String>), StateError> {
        let parts = path_components(dir, true)?;
        let absolute = self.absolute(&parts);
        let statuses = self.with_retry("list", dir, || {
            let client = self.client.clone();
            let listed = absolute.clone();
            self.run(self.policy.call_timeout, async move {
                match client.list_status(&listed, false).await {
                    Ok(statuses) => Ok(statuses),
                    Err(e) if is_not_found(&e) => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            })
        })?;
        let mut names = Vec::with_capacity(statuses.len());
        for status in statuses {
            if status.isdir {
                continue;
            }
            // Listing a file yields the file itself.
            if status.path.trim_end_matches('/') == absolute.trim_end_matches('/') {
                return Err(StateError::Io {
                    op: "list",
                    path: dir.to_owned(),
                    source: io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{absolute} is a file, not a directory"),
                    ),
                });
            }
            let name = status.path.rsplit('/').next().unwrap_or_default();
            if !name.is_empty() {
                names.push(name.to_owned());
            }
        }
        Ok((absolute, names))
    }

    /// Deletes the file at `path` (relative to the root, hidden names
    /// allowed); a missing file is not an error.
    pub fn remove_file(&self, path: &str) -> Result<(), StateError> {
        let parts = path_components(path, false)?;
        self.delete_absolute(path, self.absolute(&parts))
    }

    fn delete_absolute(&self, path: &str, absolute: String) -> Result<(), StateError> {
        self.with_retry("delete", path, || {
            let client = self.client.clone();
            let file = absolute.clone();
            self.run(self.policy.call_timeout, async move {
                match client.delete(&file, false).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => Err(e),
                }
            })
        })
    }

    /// Deletes `absolute` (a temporary file of a failed write), ignoring
    /// errors: leftovers are hidden from listings.
    fn discard_temp(&self, absolute: String) {
        let client = self.client.clone();
        let _ = self.run(self.policy.call_timeout, async move {
            client.delete(&absolute, false).await
        });
    }
}

impl Drop for HdfsBackend {
    fn drop(&mut self) {
        // Never block in drop (it may run inside an async context, where
        // dropping a runtime normally panics): in-flight calls are abandoned.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl StateBackend for HdfsBackend {
    fn put_atomic(&self, path: &str, bytes: &[u8]) -> Result<(), StateError> {
        let parts = file_components(path)?;
        let (name, dir_parts) = parts.split_last().expect("file path has a name");
        let dir = self.absolute(dir_parts);
        let target = self.absolute(&parts);
        let data = Bytes::copy_from_slice(bytes);
        let hsync = self.policy.hsync;
        self.with_retry("put", path, || {
            let temp = format!(
                "{}/.{name}.tmp-{}-{}",
                dir.trim_end_matches('/'),
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let client = self.client.clone();
            let (data, target, temp_path) = (data.clone(), target.clone(), temp.clone());
            let result = self.run(self.transfer_timeout(data.len()), async move {
                let options = WriteOptions::default().create_parent(true);
                let mut writer = client.create(&temp_path, options).await?;
                let len = data.len();
                let written = async {
                    if !data.is_empty() {
                        writer.write_bytes(data).await?;
                        if hsync {
                            writer.hsync().await?;
                        }
                    }
                    writer.close().await
                }
                .await;
                written?;
                await_readable(&client, &temp_path, len).await?;
                client.rename(&temp_path, &target, true).await
            });
            if result.is_err() {
                self.discard_temp(temp);
            }
            result
        })
    }

    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StateError> {
        let parts = file_components(path)?;
        let absolute = self.absolute(&parts);
        self.with_retry("get", path, || {
            let client = self.client.clone();
            let file = absolute.clone();
            let reader = self.run(self.policy.call_timeout, async move {
                match client.read(&file).await {
                    Ok(reader) => Ok(Some(reader)),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            })?;
            let Some(reader) = reader else {
                return Ok(None);
            };
            let len = reader.file_length();
            if len == 0 {
                return Ok(Some(Vec::new()));
            }
            self.run(self.transfer_timeout(len), async move {
                let bytes = reader.read_range(0, len).await?;
                Ok(Some(Vec::from(bytes)))
            })
        })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StateError> {
        let (_, mut names) = self.file_names(dir)?;
        names.retain(|name| !is_temp_name(name));
        names.sort_unstable();
        Ok(names)
    }

    fn sweep_temp(&self, dir: &str) -> Result<usize, StateError> {
        let (absolute, names) = self.file_names(dir)?;
        let mut swept = 0;
        for name in names.iter().filter(|n| is_temp_name(n)) {
            let file = format!("{}/{name}", absolute.trim_end_matches('/'));
            self.delete_absolute(&format!("{dir}/{name}"), file)?;
            swept += 1;
        }
        Ok(swept)
    }

    fn delete(&self, path: &str) -> Result<(), StateError> {
        let parts = file_components(path)?;
        self.delete_absolute(path, self.absolute(&parts))
    }

    fn describe(&self) -> String {
        format!("HDFS at {}", self.url)
    }
}

/// Waits until readers of the closed file `path` see all of its `len` bytes.
///
/// A namenode with `dfs.namenode.file.close.num-committed-allowed` > 0 lets
/// a file close while its last block is committed by the write pipeline but
/// not yet reported by a datanode. Until the report arrives (usually within
/// milliseconds) the namenode's block locations leave that block out of the
/// file's length, and `hdfs-native` reads such a file as shorter, even
/// empty. Renaming it into place then would break the atomic-visibility
/// contract of [`StateBackend::put_atomic`], so writes wait for the report;
/// the caller's time limit bounds the wait.
async fn await_readable(client: &Client, path: &str, len: usize) -> hdfs_native::Result<()> {
    let mut pause = Duration::from_millis(1);
    loop {
        if client.read(path).await?.file_length() >= len {
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether the client says the path does not exist.
fn is_not_found(err: &HdfsError) -> bool {
    match err {
        HdfsError::FileNotFound(_) => true,
        HdfsError::RPCError(class, _) => class == FILE_NOT_FOUND_EXCEPTION,
        _ => false,
    }
}

/// Whether retrying the operation may help.
fn is_transient(failure: &Failure) -> bool {
    match failure {
        Failure::TimedOut(_) => true,
        Failure::Hdfs(err) => match err {
            HdfsError::IOError(_)
            | HdfsError::DataTransferError(_)
            | HdfsError::ChecksumError
            | HdfsError::BlocksNotFound(_)
            | HdfsError::OperationFailed(_) => true,
            // A plain IOException is how the namenode reports, among others,
            // "could only be written to 0 of the 1 minReplication nodes"
            // while datanodes (re)register after a restart.
            HdfsError::RPCError(class, _) | HdfsError::FatalRPCError(class, _) => matches!(
                class.as_str(),
                SAFE_MODE_EXCEPTION | STANDBY_EXCEPTION | RETRIABLE_EXCEPTION | IO_EXCEPTION
            ),
            _ => false,
        },
    }
}

fn io_error(op: &'static str, path: String, err: HdfsError) -> StateError {
    StateError::Io {
        op,
        path,
        source: io::Error::other(err),
    }
}

/// The first line of a (Java) error message: namenode messages often carry
/// a stack trace after it.
fn first_line(msg: &str) -> String {
    msg.lines().next().unwrap_or_default().trim().to_owned()
}

/// `scheme://authority` of a URL that [`parse_root_url`] accepted.
fn url_authority_prefix(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Splits a state root URL into the client URL (`scheme://authority`) and
/// the absolute root path (no trailing `/`, empty for `/`).
fn parse_root_url(url: &str) -> Result<(String, String), String> {
    const FORMAT: &str = "expected hdfs://namenode-host:port/path/to/state-root \
                          (or hdfs://nameservice/path, viewfs://cluster/path)";
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("not a URL; {FORMAT}"));
    };
    if scheme != "hdfs" && scheme != "viewfs" {
        return Err(format!("unsupported scheme `{scheme}`; {FORMAT}"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!(
            "query strings and fragments are not supported; {FORMAT}"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("the namenode address is missing; {FORMAT}"));
    }
    if authority.contains('@') {
        return Err(format!(
            "user names in the URL are not supported, use the `{OPT_USER}` option; {FORMAT}"
        ));
    }
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok((format!("{scheme}://{authority}"), String::new()));
    }
    path_components(trimmed, false).map_err(|e| match e {
        StateError::InvalidPath { reason, .. } => format!("bad root path `{path}`: {reason}"),
        other => other.to_string(),
    })?;
    Ok((format!("{scheme}://{authority}"), format!("/{trimmed}")))
}
