//! Secret references in spec values: `${env:NAME}` and `${file:PATH}`.
//!
//! A Kafka property such as `sasl.password: ${env:KAFKA_PASSWORD}` keeps
//! the secret out of the spec: the spec (and so the Raft log, `weir
//! history`, `weir status` and every log line that shows a spec) holds only
//! the reference, and the process that creates a Kafka client resolves it
//! from its own environment or file system just before it does. A value can
//! mix text and references (`user=${env:USER};pass=${env:PASS}`); `$${`
//! stands for a literal `${`. Any other `${...}` is an error, so that a
//! misspelt reference is refused at `weir validate` instead of being sent to
//! the broker as a password.
//!
//! [`check`] validates the syntax (run by [`validate`](super::validate));
//! [`resolve`] substitutes the references.

use std::ffi::OsString;
use std::path::Path;

/// The largest secret file [`resolve`] reads (`max_secret_file_bytes`): a
/// password, token or PEM bundle is far smaller; a larger file is most
/// likely the wrong path.
pub const MAX_SECRET_FILE_BYTES: u64 = 1024 * 1024;

/// Where a reference's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `${env:NAME}`: the environment variable `NAME` of the process.
    Env(String),
    /// `${file:PATH}`: the contents of the file at the absolute `PATH`, one
    /// trailing newline removed.
    File(String),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Env(name) => write!(f, "${{env:{name}}}"),
            Reference::File(path) => write!(f, "${{file:{path}}}"),
        }
    }
}

/// One piece of a value: literal text or a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text taken as it is (`$${` already turned into `${`).
    Text(String),
    /// A reference to resolve.
    Ref(Reference),
}

/// Why a reference could not be resolved. The messages name the spec path
/// of the value and the variable or file, never a resolved value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The value's references are malformed.
    #[error("{at}: {reason}")]
    Syntax {
        /// Spec path of the value, e.g. `sink.kafka.properties.sasl.password`.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// `${env:NAME}` names a variable that is not set.
    #[error("{at}: environment variable {name} (from ${{env:{name}}}) is not set in the {process}'s environment")]
    EnvUnset {
        /// Spec path of the value.
        at: String,
        /// The variable.
        name: String,
        /// The process that resolved it (`driver`, `executor`, ...).
        process: String,
    },
    /// `${env:NAME}` names a variable whose value is not UTF-8 text.
    #[error("{at}: environment variable {name} (from ${{env:{name}}}) is not valid UTF-8")]
    EnvNotText {
        /// Spec path of the value.
        at: String,
        /// The variable.
        name: String,
    },
    /// `${file:PATH}` could not be read.
    #[error(
        "{at}: cannot read secret file {path} (from ${{file:{path}}}) on the {process}: {reason}"
    )]
    File {
        /// Spec path of the value.
        at: String,
        /// The file.
        path: String,
        /// The process that resolved it.
        process: String,
        /// The I/O error, or why the contents cannot be used.
        reason: String,
    },
}

/// Splits `value` into text and references, or says what is malformed.
pub fn parse(value: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            text.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err(format!(
                    "unclosed reference {:?}: write ${{env:NAME}} or ${{file:/path}}, or $${{ for a literal ${{",
                    shorten(tail)
                ));
            };
            let reference = reference(&after[..end])?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Ref(reference));
            rest = &after[end + 1..];
        } else {
            text.push('$');
            rest = &tail[1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn reference(inner: &str) -> Result<Reference, String> {
    // No length limit of its own: a spec is at most max_spec_bytes.
    if let Some(name) = inner.strip_prefix("env:") {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "${{env:{name}}}: an environment variable name is letters, digits and '_', not starting with a digit"
            ));
        }
        Ok(Reference::Env(name.to_string()))
    } else if let Some(path) = inner.strip_prefix("file:") {
        if !Path::new(path).is_absolute() {
            return Err(format!(
                "${{file:{path}}}: the path must be absolute (the driver and the executors run in different directories)"
            ));
        }
        Ok(Reference::File(path.to_string()))
    } else {
        Err(format!(
            "${{{}}} is not a reference: write ${{env:NAME}} or ${{file:/path}}, or $${{ for a literal ${{",
            shorten(inner)
        ))
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Whether `value` holds a reference (it may still be malformed).
pub fn has_references(value: &str) -> bool {
    match parse(value) {
        Ok(parts) => parts.iter().any(|p| matches!(p, Part::Ref(_))),
        Err(_) => true,
    }
}

/// Checks the references in `value` (at spec path `at`) without resolving
/// them.
pub fn check(at: &str, value: &str) -> Result<(), SecretError> {
    parse(value)
        .map(|_| ())
        .map_err(|reason| SecretError::Syntax {
            at: at.to_string(),
            reason,
        })
}

/// Where [`resolve`] looks references up: the process's environment and
/// file system, or a test's.
pub trait Lookup {
    /// The value of an environment variable.
    fn var(&self, name: &str) -> Option<OsString>;
    /// The contents of a file, at most `limit` bytes (more is an error).
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, String>;
}

/// The running process's environment and file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessLookup;

impl Lookup for ProcessLookup {
    fn var(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }

    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        // One byte past the limit tells "at the limit" from "over it".
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() as u64 > limit {
            return Err(format!(
                "the file is over the {limit}-byte limit (max_secret_file_bytes)"
            ));
        }
        Ok(bytes)
    }
}

/// `value` (at spec path `at`) with its references substituted from
/// `lookup`. `process` names the resolving process in errors (`driver`,
/// `executor`).
pub fn resolve(
    at: &str,
    value: &str,
    process: &str,
    lookup: &dyn Lookup,
) -> Result<String, SecretError> {
    let parts = parse(value).map_err(|reason| SecretError::Syntax {
        at: at.to_string(),
        reason,
    })?;
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(&t),
            Part::Ref(Reference::Env(name)) => match lookup.var(&name) {
                None => {
                    return Err(SecretError::EnvUnset {
                        at: at.to_string(),
                        name,
                        process: process.to_string(),
                    })
                }
                Some(v) => match v.into_string() {
                    Ok(v) => out.push_str(&v),
                    Err(_) => {
                        return Err(SecretError::EnvNotText {
                            at: at.to_string(),
                            name,
                        })
                    }
                },
            },
            Part::Ref(Reference::File(path)) => {
                let file_error = |reason: String| SecretError::File {
                    at: at.to_string(),
                    path: path.clone(),
                    process: process.to_string(),
                    reason,
                };
                let bytes = lookup
                    .read(&path, MAX_SECRET_FILE_BYTES)
                    .map_err(file_error)?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| file_error("the contents are not UTF-8 text".into()))?;
                // `echo secret > file` and most editors end a file with a
                // newline that is not part of the secret.
                let text = text
                    .strip_suffix("\r\n")
                    .or_else(|| text.strip_suffix('\n'))
                    .unwrap_or(&text);
                if text.contains('\0') {
                    return Err(file_error("the contents hold a NUL byte".into()));
                }
                out.push_str(text);
            }
        }
    }
    if out.contains('\0') {
        return Err(SecretError::Syntax {
            at: at.to_string(),
            reason: "the resolved value holds a NUL byte".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake {
        vars: HashMap<String, OsString>,
        files: HashMap<String, Vec<u8>>,
    }

    impl Lookup for Fake {
        fn var(&self, name: &str) -> Option<OsString> {
            self.vars.get(name).cloned()
        }
        fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, String> {
            let b = self
                .files
                .get(path)
                .cloned()
                .ok_or_else(|| "No such file or directory (os error 2)".to_string())?;
            if b.len() as u64 > limit {
                return Err("over the limit".into());
            }
            Ok(b)
        }
    }

    fn fake() -> Fake {
        let mut f = Fake::default();
        f.vars.insert("PW".into(), "s3cret".into());
        f.vars.insert("USER_1".into(), "alice".into());
        f.files.insert("/run/pw".into(), b"from-file\n".to_vec());
        f.files.insert("/run/crlf".into(), b"x\r\n".to_vec());
        f.files.insert("/run/two".into(), b"a\n\n".to_vec());
        f.files.insert("/run/bin".into(), vec![0xff, 0xfe]);
        f.files.insert("/run/nul".into(), b"a\0b".to_vec());
        f
    }

    fn r(value: &str) -> Result<String, SecretError> {
        resolve("p.k", value, "executor", &fake())
    }

    #[test]
    fn plain_values_are_unchanged() {
        for v in [
            "",
            "plain",
            "a$b",
            "$",
            "cost: 5$",
            "}{",
            "$$",
            "$ {env:PW}",
        ] {
            assert_eq!(r(v).unwrap(), v, "{v:?}");
            assert!(!has_references(v), "{v:?}");
        }
    }

    #[test]
    fn env_and_file_references_resolve() {
        assert_eq!(r("${env:PW}").unwrap(), "s3cret");
        assert_eq!(
            r("user=${env:USER_1};pass=${env:PW}").unwrap(),
            "user=alice;pass=s3cret"
        );
        assert_eq!(r("${file:/run/pw}").unwrap(), "from-file");
        assert_eq!(r("${file:/run/crlf}").unwrap(), "x");
        // Only one trailing newline is taken off.
        assert_eq!(r("${file:/run/two}").unwrap(), "a\n");
        assert!(has_references("x${env:PW}"));
    }

    #[test]
    fn double_dollar_is_a_literal() {
        assert_eq!(r("$${env:PW}").unwrap(), "${env:PW}");
        assert_eq!(r("a$${b}c").unwrap(), "a${b}c");
        assert!(!has_references("$${env:PW}"));
    }

    #[test]
    fn malformed_references_are_refused_with_the_path() {
        for (v, want) in [
            ("${env:PW", "unclosed reference"),
            ("${PW}", "is not a reference"),
            ("${vault:x}", "is not a reference"),
            ("${env:}", "environment variable name"),
            ("${env:1A}", "environment variable name"),
            ("${env:A-B}", "environment variable name"),
            ("${file:relative/path}", "must be absolute"),
            ("${file:}", "must be absolute"),
        ] {
            let e = check("source.kafka.properties.sasl.password", v).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with("source.kafka.properties.sasl.password: ") && text.contains(want),
                "{v:?}: {text}"
            );
            assert!(r(v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn unresolvable_references_name_the_variable_or_file() {
        let e = r("${env:MISSING}").unwrap_err().to_string();
        assert_eq!(
            e,
            "p.k: environment variable MISSING (from ${env:MISSING}) is not set in the executor's environment"
        );
        let e = r("${file:/no/such}").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "p.k: cannot read secret file /no/such (from ${file:/no/such}) on the executor: "
            ),
            "{e}"
        );
        assert!(r("${file:/run/bin}")
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
        assert!(r("${file:/run/nul}")
            .unwrap_err()
            .to_string()
            .contains("NUL"));
    }

    #[test]
    fn errors_never_carry_a_resolved_value() {
        // The one error after a successful lookup must not echo it.
        let mut f = fake();
        f.vars.insert("BAD".into(), "top\0secret".into());
        let e = resolve("p.k", "${env:BAD}", "driver", &f).unwrap_err();
        assert!(!e.to_string().contains("top"), "{e}");
    }

    #[test]
    fn the_process_lookup_reads_files_up_to_the_limit() {
        let dir = tempfile_dir();
        let at = dir.join("at");
        let over = dir.join("over");
        std::fs::write(&at, vec![b'a'; MAX_SECRET_FILE_BYTES as usize]).unwrap();
        std::fs::write(&over, vec![b'a'; MAX_SECRET_FILE_BYTES as usize + 1]).unwrap();
        let value = |p: &Path| format!("${{file:{}}}", p.display());
        let got = resolve("p", &value(&at), "driver", &ProcessLookup).unwrap();
        assert_eq!(got.len() as u64, MAX_SECRET_FILE_BYTES);
        let e = resolve("p", &value(&over), "driver", &ProcessLookup).unwrap_err();
        assert!(e.to_string().contains("max_secret_file_bytes"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "weir-secrets-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    proptest::proptest! {
        #[test]
        fn any_value_parses_or_is_refused_without_panic(v in ".{0,64}") {
            let _ = parse(&v);
            let _ = resolve("p", &v, "driver", &fake());
        }

        #[test]
        fn escaped_text_round_trips(v in "[a-z${}:/]{0,32}") {
            // Escaping every "${" makes any text a literal.
            let escaped = v.replace("${", "$${");
            // "$${" in the input itself would be escaped again by replace;
            // only inputs without it round-trip this way.
            if !v.contains("$${") {
                proptest::prop_assert_eq!(r(&escaped).unwrap(), v);
            }
        }
    }
}
