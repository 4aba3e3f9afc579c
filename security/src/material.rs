//! A process's TLS material (its certificate chain and key, and the CA it
//! trusts), read from PEM files and read again when they change on disk, so
//! that cert-manager or an operator can rotate certificates without a
//! restart.

use crate::identity::Identity;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How often the files are looked at for changes, at most.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// The largest PEM file read (a certificate chain or a CA bundle).
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// The three files of `--tls-cert`, `--tls-key` and `--tls-ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This process's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates peers' certificates must chain to (PEM).
    pub ca: PathBuf,
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{what} {path}: {source}")]
    Read {
        /// Which file (`--tls-cert`, ...).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{what} {path}: {message}")]
    Invalid {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// The certificate does not name the identity this process runs as.
    #[error("--tls-cert {path} names {found}, but this process is {expected}: issue it with the SAN URI {expected} (docs/security.md)")]
    WrongIdentity {
        /// The certificate file.
        path: PathBuf,
        /// What it names (or "no weir:// identity").
        found: String,
        /// What it should name.
        expected: Identity,
    },
}

/// One consistent reading of the files.
#[derive(Debug)]
pub struct Material {
    /// The chain and key this process presents.
    pub certified: Arc<CertifiedKey>,
    /// The identity its leaf certificate names, if any.
    pub identity: Option<Identity>,
    /// Verifies servers this process dials.
    pub server_verifier: Arc<dyn ServerCertVerifier>,
    /// Verifies clients that dial this process (a certificate is optional:
    /// callers with a bearer token present none).
    pub client_verifier: Arc<dyn ClientCertVerifier>,
}

/// The crypto provider of every Weir TLS connection: rustls on *ring*.
///
/// rustls 0.23.48 deprecates the *ring* provider because it has no
/// post-quantum key exchange; aws-lc-rs has one but adds a large C and
/// CMake build to every build of Weir. Weir keeps *ring* (X25519 and the
/// NIST curves, TLS 1.2 and 1.3) until that trade is worth it; see
/// docs/security.md.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let io = |source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_PEM_BYTES {
        return Err(TlsError::Invalid {
            what,
            path: path.to_path_buf(),
            message: format!("{len} bytes; a PEM file is at most {MAX_PEM_BYTES}"),
        });
    }
    std::fs::read(path).map_err(io)
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |message: String| TlsError::Invalid {
        what,
        path: path.to_path_buf(),
        message,
    };
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the file".into()));
    }
    Ok(certs)
}

/// A verifier of servers whose certificates chain to the CA in `path`
/// (a client that authenticates with a token, not a certificate).
pub fn server_verifier(path: &Path) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates("--tls-ca", path)? {
        roots.add(ca).map_err(|e| TlsError::Invalid {
            what: "--tls-ca",
            path: path.to_path_buf(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Invalid {
                what: "--tls-ca",
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
    Ok(verifier)
}

impl Material {
    /// Reads and checks the three files.
    pub fn load(files: &TlsFiles) -> Result<Material, TlsError> {
        let provider = provider();
        let chain = certificates("--tls-cert", &files.cert)?;
        let key_pem = read("--tls-key", &files.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
            what: "--tls-key",
            path: files.key.clone(),
            message: format!("no private key: {e}"),
        })?;
        let identity = Identity::of_certificate(&chain[0]);
        let certified =
            CertifiedKey::from_der(chain, key, &provider).map_err(|e| TlsError::Invalid {
                what: "--tls-key",
                path: files.key.clone(),
                message: format!("does not match --tls-cert {}: {e}", files.cert.display()),
            })?;
        let mut roots = RootCertStore::empty();
        for ca in certificates("--tls-ca", &files.ca)? {
            roots.add(ca).map_err(|e| TlsError::Invalid {
                what: "--tls-ca",
                path: files.ca.clone(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let roots = Arc::new(roots);
        let invalid_ca = |e: &dyn std::fmt::Display| TlsError::Invalid {
            what: "--tls-ca",
            path: files.ca.clone(),
            message: e.to_string(),
        };
        let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| invalid_ca(&e))?;
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| invalid_ca(&e))?;
        Ok(Material {
            certified: Arc::new(certified),
            identity,
            server_verifier,
            client_verifier,
        })
    }
}

/// What the files looked like when last read: modification times and sizes.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &TlsFiles) -> Stamp {
    [&files.cert, &files.key, &files.ca]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// The current [`Material`], read again when the files change.
#[derive(Debug)]
pub struct Reloading {
    files: TlsFiles,
    expected: Option<Identity>,
    current: RwLock<(Stamp, Arc<Material>)>,
    checked: Mutex<Instant>,
}

impl Reloading {
    /// Reads the files once; a process's own certificate must name
    /// `expected` when given (drivers and executors), which is checked on
    /// every reload too.
    pub fn load(files: TlsFiles, expected: Option<Identity>) -> Result<Reloading, TlsError> {
        let seen = stamp(&files);
        let material = Self::read(&files, expected.as_ref())?;
        Ok(Reloading {
            files,
            expected,
            current: RwLock::new((seen, Arc::new(material))),
            checked: Mutex::new(Instant::now()),
        })
    }

    fn read(files: &TlsFiles, expected: Option<&Identity>) -> Result<Material, TlsError> {
        let material = Material::load(files)?;
        if let Some(expected) = expected {
            if material.identity.as_ref() != Some(expected) {
                return Err(TlsError::WrongIdentity {
                    path: files.cert.clone(),
                    found: material
                        .identity
                        .as_ref()
                        .map_or("no weir:// identity".into(), |i| i.to_string()),
                    expected: expected.clone(),
                });
            }
        }
        Ok(material)
    }

    /// The files this material comes from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The material now: read again first if a file changed since the last
    /// look (at most once per [`RELOAD_CHECK`]). A change that cannot be
    /// read (a half-written file, a key that does not match the new
    /// certificate yet) keeps the previous material and is tried again.
    pub fn current(&self) -> Arc<Material> {
        let due = {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            let due = checked.elapsed() >= RELOAD_CHECK;
            if due {
                *checked = Instant::now();
            }
            due
        };
        if due {
            let seen = stamp(&self.files);
            let changed = self.current.read().unwrap_or_else(|p| p.into_inner()).0 != seen;
            if changed {
                match Self::read(&self.files, self.expected.as_ref()) {
                    Ok(material) => {
                        tracing::info!(cert = %self.files.cert.display(), ca = %self.files.ca.display(), "TLS certificates reloaded");
                        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                            (seen, Arc::new(material));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but cannot be used yet; keeping the previous certificates");
                    }
                }
            }
        }
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }
}
