//! The TLS settings of `weir-driver` and `weir-executor`, checked against
//! each other: TLS needs all three files, and plaintext must be asked for.

use crate::material::TlsFiles;
use std::path::PathBuf;

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct SettingError {
    /// The flag at fault.
    pub setting: &'static str,
    /// What is wrong and what to write.
    pub message: String,
}

/// TLS files from `--tls-cert`, `--tls-key` and `--tls-ca`, or `None` for
/// plaintext, which only `--insecure` allows.
pub fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    insecure: bool,
) -> Result<Option<TlsFiles>, SettingError> {
    match (cert, key, ca) {
        (None, None, None) if insecure => Ok(None),
        (None, None, None) => Err(SettingError {
            setting: "--tls-cert",
            message: "no TLS settings: give --tls-cert, --tls-key and --tls-ca \
                      (WEIR_TLS_CERT, WEIR_TLS_KEY, WEIR_TLS_CA), or --insecure to \
                      serve plaintext without authentication (tests and development \
                      only; see docs/security.md)"
                .into(),
        }),
        (Some(cert), Some(key), Some(ca)) if !insecure => Ok(Some(TlsFiles { cert, key, ca })),
        (Some(_), Some(_), Some(_)) => Err(SettingError {
            setting: "--insecure",
            message: "given with --tls-cert/--tls-key/--tls-ca: choose TLS or plaintext".into(),
        }),
        (cert, key, _) => Err(SettingError {
            setting: if cert.is_none() {
                "--tls-cert"
            } else if key.is_none() {
                "--tls-key"
            } else {
                "--tls-ca"
            },
            message: "TLS needs all of --tls-cert, --tls-key and --tls-ca".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_three_files_and_plaintext_must_be_asked_for() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert!(tls_files(p("c"), p("k"), p("a"), false).unwrap().is_some());
        assert!(tls_files(None, None, None, true).unwrap().is_none());
        let e = tls_files(None, None, None, false).unwrap_err();
        assert!(e.to_string().contains("--insecure"), "{e}");
        assert_eq!(
            tls_files(p("c"), None, p("a"), false).unwrap_err().setting,
            "--tls-key"
        );
        assert_eq!(
            tls_files(p("c"), p("k"), None, true).unwrap_err().setting,
            "--tls-ca"
        );
        assert_eq!(
            tls_files(p("c"), p("k"), p("a"), true).unwrap_err().setting,
            "--insecure"
        );
    }
}
