//! Redis for lookup tests: the test Redis's URL, a client to fill it, and
//! a TCP proxy in front of it that a test can cut to make an outage
//! without stopping the shared server.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The test Redis's URL (`WEIR_REDIS_URL`, written by
/// `deploy/dev/redis.sh start` into the services env file). `None` means
/// skip — but under `CI=true` a missing Redis fails the test instead, so
/// CI never passes without it.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("WEIR_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: WEIR_REDIS_URL is not set under CI=true; start Redis with deploy/dev/redis.sh start (scripts/test.sh does)")
        }
        _ => {
            eprintln!("SKIPPED {test}: WEIR_REDIS_URL is not set; start Redis with deploy/dev/redis.sh start, or any redis-server and export WEIR_REDIS_URL=redis://:PASSWORD@127.0.0.1:PORT/0");
            None
        }
    }
}

/// The parts of a Redis URL a test needs to write its own.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// `host:port`.
    pub address: String,
    /// The password, if the server has one.
    pub password: Option<String>,
    /// The user, if the URL names one.
    pub user: Option<String>,
    /// The database.
    pub db: i64,
}

impl RedisTarget {
    /// The parts of `url`.
    pub fn parse(url: &str) -> anyhow::Result<RedisTarget> {
        use redis::IntoConnectionInfo;
        let info = url.into_connection_info()?;
        let settings = info.redis_settings();
        Ok(RedisTarget {
            address: info.addr().to_string(),
            password: settings.password().map(String::from),
            user: settings.username().map(String::from),
            db: settings.db(),
        })
    }

    /// A URL for `address` with these credentials, the password written
    /// as `password` (a secret reference, or another password).
    pub fn url_at(&self, address: &str, password: Option<&str>) -> String {
        let user = self.user.clone().unwrap_or_default();
        match password {
            Some(p) => format!("redis://{user}:{p}@{address}/{}", self.db),
            None => format!("redis://{address}/{}", self.db),
        }
    }
}

/// A connection to fill the test Redis.
pub fn connect(url: &str) -> anyhow::Result<redis::Connection> {
    let client = redis::Client::open(url)?;
    Ok(client.get_connection_with_timeout(Duration::from_secs(5))?)
}

/// A TCP proxy on a loopback port forwarding to `upstream`, which can be
/// cut (every connection closed, new ones refused) and restored.
pub struct Proxy {
    /// `127.0.0.1:PORT` of the proxy.
    pub address: String,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?.to_string();
        listener.set_nonblocking(true)?;
        let up = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (u, s, o, upstream) = (up.clone(), stop.clone(), open.clone(), upstream.to_string());
        std::thread::spawn(move || accept(listener, &upstream, &u, &s, &o));
        Ok(Proxy {
            address,
            up,
            stop,
            open,
        })
    }

    /// Closes every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

fn accept(
    listener: TcpListener,
    upstream: &str,
    up: &AtomicBool,
    stop: &AtomicBool,
    open: &Mutex<Vec<TcpStream>>,
) {
    while !stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if !up.load(Ordering::SeqCst) {
            // Cut: the connection is closed at once, as a refused one.
            continue;
        }
        let Ok(server) = TcpStream::connect(upstream) else {
            continue;
        };
        let _ = client.set_nonblocking(false);
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        {
            let mut open = open.lock().unwrap();
            open.retain(|s| s.peer_addr().is_ok());
            if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                open.push(a);
                open.push(b);
            }
        }
        std::thread::spawn(move || pipe(client, s2));
        std::thread::spawn(move || pipe(server, c2));
    }
}

/// Copies `from` to `to` until either end closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
