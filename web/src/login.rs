//! Signing in from a browser: `/login` takes a token in a form and keeps
//! it in an `HttpOnly`, `SameSite=Strict` cookie that later requests carry
//! instead of an `Authorization` header.

use http::{HeaderMap, HeaderValue};

/// The cookie that holds a browser's token.
pub const COOKIE: &str = "weir_token";

/// The token of a request: its `Authorization: Bearer` header, else its
/// cookie, as an `Authorization` header for the policy to check.
pub fn with_cookie_token(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    if headers.contains_key(http::header::AUTHORIZATION) {
        return headers;
    }
    let token = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string());
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        headers.insert(http::header::AUTHORIZATION, value);
    }
    headers
}

/// The `Set-Cookie` value keeping `token` (or clearing it when `None`).
pub fn set_cookie(token: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(t) => format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Whether `token` can be kept in a cookie as it is.
pub fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 512
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}

/// The sign-in page, with `message` above the form.
pub fn page(message: &str) -> String {
    let message = escape(message);
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Weir: sign in</title>
<style>body{{font:15px system-ui,sans-serif;margin:4em auto;max-width:28em;color:#1d2733}}
input{{font:inherit;padding:.4em;width:100%;box-sizing:border-box}}button{{font:inherit;margin-top:1em;padding:.4em 1.2em}}
.msg{{color:#a33}}</style></head>
<body><h1>Weir</h1><p class="msg">{message}</p>
<form method="post" action="/login"><label for="token">Token (viewer role or more)</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<button type="submit">Sign in</button></form></body></html>
"#
    )
}

/// `text` with HTML's special characters escaped, safe inside an element
/// and inside a double- or single-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_becomes_a_bearer_header_unless_one_is_there() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; weir_token=secret-1; b=2"),
        );
        let out = with_cookie_token(&h);
        assert_eq!(out[http::header::AUTHORIZATION], "Bearer secret-1");
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer other"),
        );
        assert_eq!(
            with_cookie_token(&h)[http::header::AUTHORIZATION],
            "Bearer other"
        );
        assert!(!with_cookie_token(&HeaderMap::new()).contains_key(http::header::AUTHORIZATION));
    }

    #[test]
    fn cookies_are_strict_and_only_hold_safe_tokens() {
        let c = set_cookie(Some("t0k"), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(set_cookie(None, false).contains("Max-Age=0"));
        assert!(cookie_safe("abc-DEF_123"));
        assert!(!cookie_safe("a;b") && !cookie_safe("") && !cookie_safe("a b"));
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
