//! The HTTP server: the accept loop of [`weir_security::incoming_http`]
//! (TLS with HTTP/2 and HTTP/1.1), a bounded number of connections, and
//! the routes.

use crate::login;
use crate::site::{pairs, percent_decode, Page, PageRequest, Site};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;
use tonic::transport::server::Connected as _;
use tracing::{info, warn};
use weir_security::{Peer, Policy, Reloading, Role};

/// Connections served at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 256;
/// The largest request body read (the sign-in form).
const MAX_BODY_BYTES: usize = 4 * 1024;
/// The largest request head (HTTP/1.1 buffer, HTTP/2 header list).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a client may take to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 streams at once per connection.
const MAX_STREAMS: u32 = 32;
/// `Content-Type` of `/metrics`: the Prometheus text format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// What pages may load: only this port's own assets (no CDN), inline
/// styles, and images from `data:` URLs.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'";

/// Why the HTTP port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address cannot be listened on.
    #[error("cannot listen for HTTP on {address}: {source} (--http-listen)")]
    Bind {
        /// The address asked for.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Listens on `address` (`host:port`).
pub async fn bind(address: &str) -> Result<TcpListener, HttpError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| HttpError::Bind {
            address: address.to_string(),
            source,
        })
}

/// Serves `site` on `listener` until `shutdown` completes: with `tls`,
/// only over TLS with the process's certificate; every route but the
/// probes and the sign-in page is checked against `policy` for the
/// `viewer` role.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<Reloading>>,
    policy: Arc<Policy>,
    site: Arc<dyn Site>,
    shutdown: impl Future<Output = ()>,
) {
    let address = listener.local_addr().ok();
    let secure = tls.is_some();
    let mut conns = weir_security::incoming_http(listener, tls);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    info!(address = ?address, tls = secure, "HTTP port serving /healthz, /readyz, /metrics");
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            () = &mut shutdown => break,
            next = conns.next() => match next {
                Some(Ok(conn)) => conn,
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(
                max = MAX_CONNECTIONS,
                "HTTP connection refused: too many open"
            );
            continue;
        };
        let routes = Routes {
            policy: policy.clone(),
            site: site.clone(),
            peer: conn.connect_info(),
            secure,
        };
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let routes = routes.clone();
                async move { Ok::<_, Infallible>(routes.handle(request).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES);
            builder
                .http2()
                .max_header_list_size(MAX_HEAD_BYTES as u32)
                .max_concurrent_streams(MAX_STREAMS);
            let _ = builder.serve_connection(TokioIo::new(conn), service).await;
        });
    }
}

/// The routes of one connection.
#[derive(Clone)]
struct Routes {
    policy: Arc<Policy>,
    site: Arc<dyn Site>,
    peer: Peer,
    secure: bool,
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut r = text(StatusCode::SEE_OTHER, "");
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

impl Routes {
    async fn handle(self, request: Request<Incoming>) -> Response<Body> {
        let path = percent_decode(request.uri().path(), false);
        let method = request.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET | &Method::HEAD, "/readyz") => {
                let site = self.site.clone();
                match tokio::task::spawn_blocking(move || site.ready()).await {
                    Ok(Ok(())) => text(StatusCode::OK, "ready\n"),
                    Ok(Err(why)) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                    Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
                }
            }
            (&Method::GET, "/login") => {
                respond(StatusCode::OK, "text/html; charset=utf-8", login::page(""))
            }
            (&Method::POST, "/login") => self.login(request).await,
            (&Method::POST, "/logout") => {
                redirect("/login", Some(login::set_cookie(None, self.secure)))
            }
            (&Method::GET | &Method::HEAD, _) => self.viewer(request, path).await,
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        }
    }

    /// A signed-in request: metrics or a page of the site.
    async fn viewer(&self, request: Request<Incoming>, path: String) -> Response<Body> {
        let headers = login::with_cookie_token(request.headers());
        let api = path == "/metrics" || path.starts_with("/api/");
        let caller =
            match self
                .policy
                .authorize_role(Role::Viewer, &path, &headers, Some(&self.peer))
            {
                Ok(caller) => caller,
                Err(status) => {
                    let code = if status.code() == tonic::Code::Unauthenticated {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::FORBIDDEN
                    };
                    if !api && code == StatusCode::UNAUTHORIZED {
                        return redirect("/login", None);
                    }
                    let mut r = text(code, format!("{}\n", status.message()));
                    if code == StatusCode::UNAUTHORIZED {
                        r.headers_mut()
                            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    }
                    return r;
                }
            };
        let site = self.site.clone();
        if path == "/metrics" {
            return match tokio::task::spawn_blocking(move || site.metrics()).await {
                Ok(body) => respond(StatusCode::OK, METRICS_TYPE, body),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "metrics failed\n"),
            };
        }
        let page = PageRequest {
            path,
            query: request.uri().query().map(pairs).unwrap_or_default(),
            caller,
        };
        match tokio::task::spawn_blocking(move || site.page(&page)).await {
            Ok(Some(Page {
                status,
                content_type,
                body,
            })) => respond(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                content_type,
                body,
            ),
            Ok(None) => text(StatusCode::NOT_FOUND, "not found\n"),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the page failed\n"),
        }
    }

    /// `POST /login`: checks the form's token, keeps it in the cookie.
    async fn login(&self, request: Request<Incoming>) -> Response<Body> {
        let form = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n"),
        };
        let fields = pairs(&String::from_utf8_lossy(&form));
        let token = fields
            .iter()
            .find(|(n, _)| n == "token")
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let refused = |message: &str| {
            respond(
                StatusCode::UNAUTHORIZED,
                "text/html; charset=utf-8",
                login::page(message),
            )
        };
        if !login::cookie_safe(&token) {
            return refused("Enter a token.");
        }
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(header::AUTHORIZATION, v);
        }
        match self
            .policy
            .authorize_role(Role::Viewer, "the web UI", &headers, Some(&self.peer))
        {
            Ok(_) => redirect("/", Some(login::set_cookie(Some(&token), self.secure))),
            Err(status) => refused(status.message()),
        }
    }
}
