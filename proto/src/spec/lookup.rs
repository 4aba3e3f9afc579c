//! The `lookup:` step of a spec: conversion from YAML, validation and
//! rendering. The step adds columns to each record from values looked up
//! in Redis (docs/sinks-and-lookups.md); the executors run it, the plan
//! crate type-checks its key expression and its columns.

use super::validate::{over_limit, Issues};
use super::yaml::{LookupCacheYaml, LookupOnMissingYaml, LookupYaml, RedisLookupYaml};
use super::{format_duration_ms, secrets};
use crate::pb;
use std::fmt::Write;

use super::limits::{MAX_LOOKUP_CACHE_ENTRIES, MAX_LOOKUP_FIELDS};

/// The cache's time to live when `cache:` does not set `ttl`.
pub const DEFAULT_LOOKUP_TTL_MS: u64 = 60_000;
/// The cache's size when `cache:` does not set `max_entries`.
pub const DEFAULT_LOOKUP_CACHE_ENTRIES: u64 = 100_000;

/// The URL schemes a Redis lookup accepts.
const SCHEMES: [&str; 2] = ["redis://", "rediss://"];

/// `lookup:` as written, into its protobuf form; problems go to `issues`
/// under `path` (`pipeline[1].lookup`).
pub(super) fn convert(path: &str, y: LookupYaml, issues: &mut Issues) -> pb::LookupStep {
    let LookupYaml {
        redis,
        cache,
        on_missing,
        snapshot,
    } = y;
    let RedisLookupYaml {
        url,
        key,
        fields,
        hash,
    } = redis;
    let mut out_fields = Vec::with_capacity(fields.len().min(MAX_LOOKUP_FIELDS + 1));
    for (name, ty) in fields {
        let serde_yaml_ng::Value::String(name) = name else {
            issues.add(
                format!("{path}.redis.fields"),
                format!("field names must be strings, got {name:?}"),
            );
            continue;
        };
        let Some(ty) = field_type(ty.as_str()) else {
            issues.add(
                format!("{path}.redis.fields.{name}"),
                format!("unknown type {ty:?}; use one of bigint, double, string, boolean"),
            );
            continue;
        };
        out_fields.push(pb::SchemaField {
            name,
            r#type: ty as i32,
        });
    }
    let layout = if hash.unwrap_or(true) {
        pb::RedisLayout::Hash
    } else {
        pb::RedisLayout::Json
    };
    let cache = cache.map(|LookupCacheYaml { ttl, max_entries }| pb::LookupCache {
        ttl_ms: match ttl {
            Some(t) => issues.duration(&format!("{path}.cache.ttl"), &t),
            None => DEFAULT_LOOKUP_TTL_MS,
        },
        max_entries: max_entries.unwrap_or(DEFAULT_LOOKUP_CACHE_ENTRIES),
    });
    let on_missing = match on_missing.unwrap_or(LookupOnMissingYaml::Null) {
        LookupOnMissingYaml::Null => pb::LookupOnMissing::Null,
        LookupOnMissingYaml::Skip => pb::LookupOnMissing::Skip,
        LookupOnMissingYaml::Fail => pb::LookupOnMissing::Fail,
    };
    pb::LookupStep {
        redis: Some(pb::RedisLookup {
            url,
            key,
            fields: out_fields,
            layout: layout as i32,
        }),
        cache,
        on_missing: on_missing as i32,
        snapshot: snapshot.unwrap_or(false),
    }
}

fn field_type(text: Option<&str>) -> Option<pb::FieldType> {
    match text? {
        "bigint" => Some(pb::FieldType::Bigint),
        "double" => Some(pb::FieldType::Double),
        "string" => Some(pb::FieldType::String),
        "boolean" => Some(pb::FieldType::Boolean),
        _ => None,
    }
}

/// The YAML name of a field type.
pub(super) fn type_name(ty: i32) -> &'static str {
    match pb::FieldType::try_from(ty) {
        Ok(pb::FieldType::Double) => "double",
        Ok(pb::FieldType::String) => "string",
        Ok(pb::FieldType::Boolean) => "boolean",
        _ => "bigint",
    }
}

/// Checks a lookup step at `path` (`pipeline[1].lookup`), from YAML or
/// from the wire. Its key expression and its columns are type-checked
/// against the step's input by the plan.
pub(super) fn validate(path: &str, l: &pb::LookupStep, issues: &mut Issues) {
    let Some(redis) = &l.redis else {
        issues.add(
            path,
            "missing: give the store, e.g. redis: { url: \"redis://127.0.0.1:6379\", key: user, fields: { name: string } }",
        );
        return;
    };
    let rp = format!("{path}.redis");
    if let Err(m) = check_url(&redis.url) {
        issues.add(format!("{rp}.url"), m);
    }
    if redis.key.trim().is_empty() {
        issues.add(
            format!("{rp}.key"),
            "must be an SQL expression giving the Redis key, e.g. \"'user:' || user\"",
        );
    }
    if redis.fields.is_empty() {
        issues.add(
            format!("{rp}.fields"),
            "must name at least one field and its type, e.g. { name: string }",
        );
    } else if redis.fields.len() > MAX_LOOKUP_FIELDS {
        issues.add(
            format!("{rp}.fields"),
            over_limit(
                "fields",
                redis.fields.len(),
                MAX_LOOKUP_FIELDS,
                "max_lookup_fields",
            ),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for f in &redis.fields {
        if f.name.is_empty() {
            issues.add(format!("{rp}.fields"), "field names must not be empty");
        } else if !seen.insert(f.name.as_str()) {
            issues.add(format!("{rp}.fields.{}", f.name), "duplicate field");
        }
        if pb::FieldType::try_from(f.r#type).is_err() {
            issues.add(
                format!("{rp}.fields.{}", f.name),
                "unknown type; use one of bigint, double, string, boolean",
            );
        }
    }
    if pb::RedisLayout::try_from(redis.layout).is_err() {
        issues.add(format!("{rp}.hash"), "unknown value layout");
    }
    if let Some(c) = &l.cache {
        if c.ttl_ms == 0 {
            issues.add(format!("{path}.cache.ttl"), "must be positive, e.g. 1m");
        }
        if c.max_entries == 0 {
            issues.add(
                format!("{path}.cache.max_entries"),
                "must be at least 1 (leave cache out for none)",
            );
        } else if c.max_entries > MAX_LOOKUP_CACHE_ENTRIES {
            issues.add(
                format!("{path}.cache.max_entries"),
                over_limit(
                    "entries",
                    c.max_entries,
                    MAX_LOOKUP_CACHE_ENTRIES,
                    "max_lookup_cache_entries",
                ),
            );
        }
    }
    if pb::LookupOnMissing::try_from(l.on_missing).is_err() {
        issues.add(format!("{path}.on_missing"), "must be null, skip or fail");
    }
    if l.snapshot {
        issues.add(
            format!("{path}.snapshot"),
            "not supported yet: a replayed batch looks its keys up again and may see newer values (see docs/sinks-and-lookups.md, \"Replays\"); remove snapshot or set it to false",
        );
    }
}

/// Checks a Redis URL as far as it can be checked before its secret
/// references are resolved: the references' syntax, the scheme, and, when
/// the host part holds no reference, that there is a host and the port is
/// a number. The executors parse the resolved URL in full.
fn check_url(url: &str) -> Result<(), String> {
    secrets::parse(url)?;
    let Some(rest) = SCHEMES.iter().find_map(|s| url.strip_prefix(s)) else {
        return Err(format!(
            "must start with redis:// or rediss:// (TLS), e.g. redis://:${{env:REDIS_PASSWORD}}@127.0.0.1:6379/0, got {:?}",
            shorten(url)
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // The password may hold anything, including '@': the host follows the
    // last one.
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    if secrets::has_references(host_port) {
        return Ok(());
    }
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err("an IPv6 host must be closed with ']'".into()),
        },
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("names no host, e.g. redis://127.0.0.1:6379".into());
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("port {p:?} is not a port number (1-65535)"));
        }
    }
    let path = rest[authority.len()..]
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    let db = path.trim_start_matches('/');
    if !db.is_empty() && !secrets::has_references(db) && db.parse::<u32>().is_err() {
        return Err(format!(
            "the path must be a database number, e.g. /0, got {:?}",
            shorten(path)
        ));
    }
    Ok(())
}

/// The start of a value for an error message; a URL may hold a password,
/// so only its scheme-like start is shown.
fn shorten(s: &str) -> String {
    let head: String = s.chars().take(12).collect();
    if head.len() < s.len() {
        format!("{head}...")
    } else {
        head
    }
}

/// A lookup step as one YAML flow mapping, as [`convert`] reads it back.
pub(super) fn render(l: &pb::LookupStep, quote: impl Fn(&str) -> String) -> String {
    let mut y = String::from("{ redis: { ");
    if let Some(r) = &l.redis {
        let fields: Vec<String> = r
            .fields
            .iter()
            .map(|f| format!("{}: {}", quote(&f.name), type_name(f.r#type)))
            .collect();
        let _ = write!(
            y,
            "url: {}, key: {}, fields: {{ {} }}, hash: {}",
            quote(&r.url),
            quote(&r.key),
            fields.join(", "),
            r.layout != pb::RedisLayout::Json as i32
        );
    }
    y.push_str(" }");
    if let Some(c) = &l.cache {
        let _ = write!(
            y,
            ", cache: {{ ttl: {}, max_entries: {} }}",
            format_duration_ms(c.ttl_ms),
            c.max_entries
        );
    }
    let _ = write!(
        y,
        ", on_missing: {}, snapshot: {} }}",
        on_missing_name(l.on_missing),
        l.snapshot
    );
    y
}

/// The YAML name of an `on_missing` value (`null` reads back as the
/// default, which is null).
pub fn on_missing_name(v: i32) -> &'static str {
    match pb::LookupOnMissing::try_from(v) {
        Ok(pb::LookupOnMissing::Skip) => "skip",
        Ok(pb::LookupOnMissing::Fail) => "fail",
        _ => "null",
    }
}

/// A Redis URL for messages and diffs: the password replaced by `***`
/// unless it is only secret references (which show where it comes from,
/// not what it is).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let (userinfo, host) = authority.split_at(at);
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    match password {
        Some(p) if !p.is_empty() && !only_references(p) => {
            format!("{scheme}://{user}:***{host}{tail}")
        }
        _ => url.to_string(),
    }
}

fn only_references(value: &str) -> bool {
    secrets::parse(value)
        .is_ok_and(|parts| parts.iter().all(|p| matches!(p, secrets::Part::Ref(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_their_references_resolve() {
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1",
            "redis://:pw@localhost:6379/0",
            "rediss://user:p@ss@redis.example:6380/3",
            "redis://:${env:REDIS_PASSWORD}@127.0.0.1:6379/0",
            "redis://${env:REDIS_HOST}/0",
            "redis://[::1]:6379",
            "${env:REDIS_URL}",
        ] {
            // A URL that is one reference is checked by the executors.
            if ok.starts_with("${") {
                assert!(check_url(ok).is_err(), "{ok}: no scheme to see");
                continue;
            }
            check_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("http://127.0.0.1:6379", "must start with redis://"),
            ("unix:///tmp/redis.sock", "must start with redis://"),
            ("redis://:6379", "names no host"),
            ("redis://h:0", "not a port number"),
            ("redis://h:port", "not a port number"),
            ("redis://h/db", "database number"),
            ("redis://[::1", "closed"),
            ("redis://:${env:X@h", "unclosed reference"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        // The message never shows more than the URL's start.
        let e = check_url("http://:secret-password@h").unwrap_err();
        assert!(!e.contains("secret-password"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Any URL text, hostile included, is accepted or refused with a
        /// message, never a panic; a redacted URL never shows a literal
        /// password.
        #[test]
        fn any_url_is_checked_and_redacted_without_panic(
            scheme in "(redis|rediss|http|)(://)?",
            user in "[a-z@:]{0,4}",
            password in "[a-z0-9@:/$\\{}]{0,12}",
            rest in "[\\[\\]a-z0-9.:/?#@$\\{}]{0,24}",
        ) {
            let url = format!("{scheme}{user}:{password}@{rest}");
            let _ = check_url(&url);
            let shown = redact_url(&url);
            if url.starts_with("redis://") && !password.is_empty() && !password.contains(['@', '/', '?', '#', '$']) && !rest.contains(['@']) {
                proptest::prop_assert!(!shown.contains(&format!(":{password}@")), "{shown}");
            }
        }
    }

    #[test]
    fn passwords_are_redacted_unless_they_are_references() {
        assert_eq!(
            redact_url("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("rediss://weir:p@ss@h:1"),
            "rediss://weir:***@h:1"
        );
        for kept in [
            "redis://:${env:REDIS_PASSWORD}@127.0.0.1:6379/0",
            "redis://127.0.0.1:6379",
            "redis://weir@h:1",
        ] {
            assert_eq!(redact_url(kept), kept);
        }
        assert_eq!(
            redact_url("redis://:x${env:P}@h"),
            "redis://:***@h",
            "text around a reference is a secret too"
        );
    }
}
