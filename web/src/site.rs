//! What a process serves on its HTTP port beyond the fixed routes.

use weir_security::Caller;

/// The content of one process's HTTP port.
pub trait Site: Send + Sync + 'static {
    /// The process's metrics in the Prometheus text format.
    fn metrics(&self) -> String;

    /// `Ok` once the process can do its work (a driver has joined its
    /// Raft group and caught up; an executor is registered with the
    /// leader), else why not.
    fn ready(&self) -> Result<(), String>;

    /// A page or API response for an authorized viewer, `None` when
    /// nothing is at that path. Called on a blocking thread: it may read
    /// the metadata store.
    fn page(&self, _request: &PageRequest) -> Option<Page> {
        None
    }
}

/// A request for a [`Site::page`].
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// The path, percent-decoded (`/jobs/clicks`).
    pub path: String,
    /// The query's `name=value` pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Who asks.
    pub caller: Caller,
}

impl PageRequest {
    /// The value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response from a [`Site`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Page {
    /// A 200 HTML page.
    pub fn html(body: String) -> Page {
        Page {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
        }
    }

    /// A 200 JSON document.
    pub fn json(body: String) -> Page {
        Page {
            status: 200,
            content_type: "application/json",
            body: body.into_bytes(),
        }
    }

    /// A plain-text response with `status`.
    pub fn text(status: u16, body: impl Into<String>) -> Page {
        Page {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    /// A static asset.
    pub fn asset(content_type: &'static str, body: &[u8]) -> Page {
        Page {
            status: 200,
            content_type,
            body: body.to_vec(),
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus`); invalid
/// escapes are kept as written.
pub(crate) fn percent_decode(text: &str, plus: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `name=value` pairs of a query string or form body.
pub(crate) fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(n, true), percent_decode(v, true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_pairs() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%zz%4", true), "%zz%4");
        assert_eq!(
            pairs("token=ab%2Fc&x=&y"),
            vec![
                ("token".into(), "ab/c".into()),
                ("x".into(), String::new()),
                ("y".into(), String::new())
            ]
        );
    }
}
