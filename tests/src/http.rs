//! A small HTTP/1.1 client for tests of the processes' HTTP ports
//! (metrics, probes, the web UI): plaintext, or TLS trusting the test CA.

use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The head, lowercased header names included as sent.
    pub head: String,
    /// The body as text.
    pub body: String,
}

/// `GET path` from `address` (`host:port`) with an optional bearer
/// `token`; over TLS when `ca` names the CA to trust.
pub fn get(
    address: &str,
    path: &str,
    token: Option<&str>,
    ca: Option<&str>,
) -> Result<Response, String> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{auth}\r\n");
    let stream = TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match ca {
        None => {
            let mut s = stream;
            s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
            s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        }
        Some(ca) => {
            let verifier = weir_security::material::server_verifier(std::path::Path::new(ca))
                .map_err(|e| e.to_string())?;
            let mut config =
                rustls::ClientConfig::builder_with_provider(weir_security::material::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
            let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
            let conn =
                rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
            let mut s = rustls::StreamOwned::new(conn, stream);
            s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
            // A peer closing without close_notify ends the body too.
            if let Err(e) = s.read_to_end(&mut raw) {
                if raw.is_empty() {
                    return Err(e.to_string());
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response from {address}{path}: {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line from {address}{path}: {head:?}"))?;
    Ok(Response {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// The samples of a Prometheus text exposition, parsed by an independent
/// parser (`prometheus-parse`).
pub fn parse_metrics(text: &str) -> Result<prometheus_parse::Scrape, String> {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| e.to_string())
}

/// The value of the sample `name` whose labels include every pair of
/// `labels`, if exactly one matches.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .filter_map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
        .collect();
    (matching.len() == 1).then(|| matching[0])
}
