//! A lookup step's Redis: a small pool of synchronous connections, the
//! pipelined reads of a chunk's keys, and the classification of Redis's
//! errors into outages (retried) and refusals (the job's to fix).
//!
//! The password is sent with an `AUTH` of our own rather than by the
//! client library, so that a refusal carries Redis's own words
//! (`WRONGPASS invalid username-password pair or user is disabled.`).
//! Messages name the server by host and port only, never by URL.

use redis::{Connection, ConnectionInfo, ErrorKind, IntoConnectionInfo, RedisError};
use redis::{RedisConnectionInfo, ServerErrorKind};
use std::sync::Mutex;
use std::time::Duration;
use weir_plan::lookup::{Layout, Values};

/// How long connecting (and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may wait for its reply: a stalled server is an
/// outage, not a task that hangs.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per step (more are closed after use): at most
/// one is in use per task running the step at once.
const MAX_IDLE: usize = 16;
/// The bytes one key's values may take (`max_lookup_value_bytes`): they
/// are held in the chunk's columns and the cache.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Why a read from Redis failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Redis cannot be reached or is not serving yet (refused or dropped
    /// connection, time-out, `LOADING`, `MASTERDOWN`, ...): an outage.
    Unavailable(String),
    /// Redis refused the client: a wrong password or user, a missing
    /// permission, a database that does not exist.
    Refused(String),
    /// The data is not what the step expects: a key of another type, a
    /// value that is not a JSON object, a value over the size limit.
    Data(String),
}

/// One step's connections to one Redis.
pub struct RedisStore {
    /// Where to connect, without credentials or database: those are sent
    /// by [`RedisStore::connect`] itself.
    bare: ConnectionInfo,
    user: Option<String>,
    password: Option<String>,
    db: i64,
    /// `host:port`, for messages.
    address: String,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.address)
            .finish()
    }
}

impl RedisStore {
    /// A store for the resolved `url`; nothing is connected yet. The error
    /// says what is wrong with the URL without showing it.
    pub fn open(url: &str) -> Result<Self, String> {
        let info = url
            .into_connection_info()
            .map_err(|e| {
                format!(
                    "not a Redis URL ({}); write redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or rediss:// for TLS",
                    e.category()
                )
            })?;
        let address = info.addr().to_string();
        let settings = info.redis_settings();
        let user = settings.username().map(String::from);
        let password = settings.password().map(String::from);
        let db = settings.db();
        let bare = info.set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
        Ok(RedisStore {
            bare,
            user,
            password,
            db,
            address,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The server's `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The values of `fields` for each of `keys`, in order (`None`: the
    /// key is missing: it does not exist or holds none of the fields),
    /// read with one pipelined request.
    pub fn fetch(
        &self,
        layout: Layout,
        fields: &[String],
        keys: &[&str],
    ) -> Result<Vec<Option<Values>>, StoreError> {
        let pooled = self.take_idle();
        let from_pool = pooled.is_some();
        let mut con = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        let mut result = read(&mut con, layout, fields, keys);
        // A pooled connection may have been closed by the server (a
        // restart, an idle time-out) since it was last used: one retry on
        // a new connection before calling it an outage.
        if from_pool && matches!(&result, Err(e) if is_outage(e)) {
            con = self.connect()?;
            result = read(&mut con, layout, fields, keys);
        }
        match result {
            Ok(raw) => {
                self.put_idle(con);
                raw.into_iter()
                    .zip(keys)
                    .map(|(r, key)| decode(layout, fields, key, r))
                    .collect()
            }
            Err(e) => Err(classify(&e, keys)),
        }
    }

    fn take_idle(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_idle(&self, con: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(con);
        }
    }

    /// A new connection, authenticated and on its database.
    fn connect(&self) -> Result<Connection, StoreError> {
        let client = redis::Client::open(self.bare.clone())
            .map_err(|e| StoreError::Refused(format!("cannot use the URL: {e}")))?;
        let con = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| classify(&e, &[]))?;
        let timeouts = con
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| con.set_write_timeout(Some(IO_TIMEOUT)));
        timeouts.map_err(|e| classify(&e, &[]))?;
        let mut con = con;
        if let Some(password) = &self.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = self.user.as_deref().filter(|u| !u.is_empty()) {
                auth.arg(user);
            }
            auth.arg(password);
            auth.query::<()>(&mut con)
                .map_err(|e| refused(&e, "AUTH"))?;
        }
        if self.db != 0 {
            redis::cmd("SELECT")
                .arg(self.db)
                .query::<()>(&mut con)
                .map_err(|e| refused(&e, "SELECT"))?;
        }
        Ok(con)
    }
}

/// The raw replies of one pipelined read: per key, the fields' values of
/// a hash, or the one string of a JSON layout.
fn read(
    con: &mut Connection,
    layout: Layout,
    fields: &[String],
    keys: &[&str],
) -> Result<Vec<Vec<Option<Vec<u8>>>>, RedisError> {
    match layout {
        Layout::Hash => {
            let mut pipe = redis::pipe();
            for key in keys {
                pipe.cmd("HMGET").arg(*key).arg(fields);
            }
            pipe.query(con)
        }
        Layout::Json => {
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(keys).query(con)?;
            Ok(values.into_iter().map(|v| vec![v]).collect())
        }
    }
}

/// One key's reply as the step's values.
fn decode(
    layout: Layout,
    fields: &[String],
    key: &str,
    raw: Vec<Option<Vec<u8>>>,
) -> Result<Option<Values>, StoreError> {
    let size: usize = raw.iter().flatten().map(Vec::len).sum();
    if size > MAX_VALUE_BYTES {
        return Err(StoreError::Data(format!(
            "key {key:?} holds {size} bytes of values, over the {MAX_VALUE_BYTES}-byte limit (max_lookup_value_bytes)"
        )));
    }
    let values: Values = match layout {
        Layout::Hash => raw
            .into_iter()
            .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .collect(),
        Layout::Json => {
            let Some(Some(bytes)) = raw.into_iter().next() else {
                return Ok(None);
            };
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError::Data(format!(
                        "key {key:?} does not hold a JSON object ({e}); a lookup with hash: false reads string keys holding objects such as {{\"name\": \"Ann\"}}"
                    ))
                })?;
            fields
                .iter()
                .map(|f| match object.get(f) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                })
                .collect()
        }
    };
    Ok(values.iter().any(Option::is_some).then_some(values))
}

/// Whether a failed request is an outage: the connection or the server is
/// not there, or not ready.
fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Parse
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                )
        )
}

/// Error codes by which Redis refuses a client.
const REFUSALS: [&str; 3] = ["NOAUTH", "WRONGPASS", "NOPERM"];

/// Classifies a failed request over `keys`.
fn classify(e: &RedisError, keys: &[&str]) -> StoreError {
    if is_outage(e) {
        return StoreError::Unavailable(e.to_string());
    }
    if let Some(errors) = e.clone().into_server_errors() {
        if let Some((index, first)) = errors.first() {
            let message = server_message(first.code(), first.details());
            if REFUSALS.contains(&first.code()) {
                return StoreError::Refused(message);
            }
            if matches!(
                first.code(),
                "LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN"
            ) {
                return StoreError::Unavailable(message);
            }
            return match keys.get(*index) {
                Some(key) => StoreError::Data(format!("key {key:?}: {message}")),
                None => StoreError::Data(message),
            };
        }
    }
    match e.code() {
        Some(code) if REFUSALS.contains(&code) => {
            StoreError::Refused(server_message(code, e.detail()))
        }
        Some(code) => StoreError::Data(server_message(code, e.detail())),
        None if e.kind() == ErrorKind::AuthenticationFailed => StoreError::Refused(e.to_string()),
        None => StoreError::Data(e.to_string()),
    }
}

/// A failed `AUTH` or `SELECT`: an outage if the connection went away,
/// else Redis refused the client, in its own words.
fn refused(e: &RedisError, command: &str) -> StoreError {
    if is_outage(e) {
        return StoreError::Unavailable(e.to_string());
    }
    let message = match e.code() {
        Some(code) => server_message(code, e.detail()),
        None => e.to_string(),
    };
    StoreError::Refused(format!("{command} refused: {message}"))
}

/// A server error as Redis writes it: `CODE detail`.
fn server_message(code: &str, detail: Option<&str>) -> String {
    match detail {
        Some(d) => format!("{code} {d}"),
        None => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hashes_with_none_of_the_fields_are_missing() {
        let f = fields(&["a", "b"]);
        assert_eq!(decode(Layout::Hash, &f, "k", vec![None, None]), Ok(None));
        assert_eq!(
            decode(Layout::Hash, &f, "k", vec![Some(b"1".to_vec()), None]),
            Ok(Some(vec![Some("1".into()), None]))
        );
        let big = vec![Some(vec![b'x'; MAX_VALUE_BYTES]), Some(b"y".to_vec())];
        let Err(StoreError::Data(m)) = decode(Layout::Hash, &f, "k", big) else {
            panic!("over the limit")
        };
        assert!(m.contains("max_lookup_value_bytes"), "{m}");
        let at = vec![Some(vec![b'x'; MAX_VALUE_BYTES - 1]), Some(b"y".to_vec())];
        assert!(decode(Layout::Hash, &f, "k", at).is_ok());
    }

    #[test]
    fn json_members_are_read_as_text() {
        let f = fields(&["name", "age", "vip", "tags", "none"]);
        let raw = br#"{"name":"Ann","age":42,"vip":true,"tags":["x"],"none":null,"other":1}"#;
        assert_eq!(
            decode(Layout::Json, &f, "k", vec![Some(raw.to_vec())]),
            Ok(Some(vec![
                Some("Ann".into()),
                Some("42".into()),
                Some("true".into()),
                Some("[\"x\"]".into()),
                None
            ]))
        );
        assert_eq!(decode(Layout::Json, &f, "k", vec![None]), Ok(None));
        assert_eq!(
            decode(Layout::Json, &f, "k", vec![Some(b"{\"other\":1}".to_vec())]),
            Ok(None),
            "none of the fields"
        );
        let Err(StoreError::Data(m)) = decode(Layout::Json, &f, "k", vec![Some(b"[1]".to_vec())])
        else {
            panic!("not an object")
        };
        assert!(m.contains("key \"k\" does not hold a JSON object"), "{m}");
    }

    #[test]
    fn urls_are_parsed_without_being_shown() {
        let s = RedisStore::open("redis://weir:s3cret@127.0.0.1:16400/2").unwrap();
        assert_eq!(s.address(), "127.0.0.1:16400");
        assert_eq!(
            (s.user.as_deref(), s.password.as_deref(), s.db),
            (Some("weir"), Some("s3cret"), 2)
        );
        assert!(!format!("{s:?}").contains("s3cret"));
        let e = RedisStore::open("redis://:s3cret@127.0.0.1:16400/x").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }

    /// Connecting where nothing listens is an outage, quickly.
    #[test]
    fn nothing_listening_is_an_outage() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let s = RedisStore::open(&format!("redis://:pw@127.0.0.1:{port}")).unwrap();
        let e = s.fetch(Layout::Hash, &fields(&["a"]), &["k"]).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }
}
