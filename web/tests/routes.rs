//! The HTTP port on a real socket, plaintext with a tokens file: probes
//! need nothing, metrics and pages need the viewer role by header or by
//! the cookie `/login` sets, and oversized or unexpected requests are
//! refused.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_security::{tokens::token_hash, Policy, Tokens};
use weir_web::{Page, PageRequest, Site};

struct TestSite;

impl Site for TestSite {
    fn metrics(&self) -> String {
        "# TYPE weir_test gauge\nweir_test 1\n".into()
    }
    fn ready(&self) -> Result<(), String> {
        Err("still catching up".into())
    }
    fn page(&self, request: &PageRequest) -> Option<Page> {
        (request.path == "/hello")
            .then(|| Page::html(format!("hello {} {:?}", request.caller, request.param("x"))))
    }
}

/// Sends `request` (a whole HTTP/1.1 request) and returns the response.
async fn send(address: &str, request: String) -> String {
    let mut s = TcpStream::connect(address).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn get(path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n")
}

fn status(response: &str) -> u16 {
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_check_roles_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        format!(
            "- {{ name: alice, role: viewer, sha256: {} }}\n",
            token_hash("view-token")
        ),
    )
    .unwrap();
    let policy = Arc::new(Policy {
        tls: false,
        tokens: Some(Tokens::load(&tokens).unwrap()),
    });
    let listener = weir_web::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(weir_web::serve(
        listener,
        None,
        policy,
        Arc::new(TestSite),
        std::future::pending(),
    ));
    let a = address.as_str();

    let r = send(a, get("/healthz", "")).await;
    assert_eq!(status(&r), 200, "{r}");
    let r = send(a, get("/readyz", "")).await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.contains("not ready: still catching up"), "{r}");

    let r = send(a, get("/metrics", "")).await;
    assert_eq!(status(&r), 401, "{r}");
    assert!(r.contains("www-authenticate: Bearer"), "{r}");
    let r = send(a, get("/metrics", "Authorization: Bearer wrong\r\n")).await;
    assert_eq!(status(&r), 401, "{r}");
    assert!(r.contains("unknown token"), "{r}");
    let r = send(a, get("/metrics", "Authorization: Bearer view-token\r\n")).await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("weir_test 1"), "{r}");
    assert!(r.contains("text/plain; version=0.0.4"), "{r}");

    // A page without credentials goes to the sign-in page.
    let r = send(a, get("/hello", "")).await;
    assert_eq!(status(&r), 303, "{r}");
    assert!(r.contains("location: /login"), "{r}");
    // Signing in with a wrong token shows why; the right one sets a
    // strict cookie that then opens pages.
    let form = |token: &str| {
        let body = format!("token={token}");
        format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let r = send(a, form("nope")).await;
    assert_eq!(status(&r), 401, "{r}");
    assert!(r.contains("unknown token"), "{r}");
    let r = send(a, form("view-token")).await;
    assert_eq!(status(&r), 303, "{r}");
    assert!(
        r.contains("set-cookie: weir_token=view-token; Path=/; HttpOnly; SameSite=Strict"),
        "{r}"
    );
    let r = send(
        a,
        get("/hello?x=a%20b", "Cookie: weir_token=view-token\r\n"),
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("hello alice Some(\"a b\")"), "{r}");
    assert!(
        r.contains("content-security-policy: default-src 'self'"),
        "{r}"
    );
    let r = send(a, get("/nothing", "Cookie: weir_token=view-token\r\n")).await;
    assert_eq!(status(&r), 404, "{r}");

    // Bounds: a form over 4 KiB, a head over 64 KiB, other methods.
    let big = "x".repeat(5_000);
    let r = send(
        a,
        format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\ntoken={big}",
            big.len() + 6
        ),
    )
    .await;
    assert_eq!(status(&r), 413, "{r}");
    let r = send(
        a,
        get("/metrics", &format!("X-Big: {}\r\n", "y".repeat(70_000))),
    )
    .await;
    assert!(r.is_empty() || status(&r) == 431, "{r}");
    let r = send(
        a,
        "DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status(&r), 405, "{r}");
}
