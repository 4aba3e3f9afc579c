//! The dialing side: channels to drivers and executors, over TLS with this
//! process's certificate (or a client's), or plaintext when the cluster
//! runs `--insecure`.

use crate::identity::Identity;
use crate::material::{provider, Reloading};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use tokio::net::TcpStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint, Uri};

/// Verifies servers against the current CA.
#[derive(Debug)]
struct CurrentServerCa(Arc<Reloading>);

impl ServerCertVerifier for CurrentServerCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current().server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .server_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .server_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().server_verifier.supported_verify_schemes()
    }
}

/// Presents the current certificate as a client certificate.
#[derive(Debug)]
struct CurrentClientCert(Arc<Reloading>);

impl ResolvesClientCert for CurrentClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// How this process dials Weir ports.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plaintext (`--insecure`, and `weir local` inside one process).
    Insecure,
    /// TLS: the server is verified against `ca`; `identity`, if any, is
    /// presented as a client certificate.
    Tls {
        /// The CA (and this process's certificate and key, for mutual TLS).
        material: Arc<TlsMaterial>,
    },
}

/// What a TLS dialer verifies servers with and presents to them.
#[derive(Debug)]
pub enum TlsMaterial {
    /// A process or a client with its own certificate (mutual TLS).
    Mutual(Arc<Reloading>),
    /// A client that only trusts a CA and authenticates with a token.
    CaOnly(Arc<dyn ServerCertVerifier>),
}

impl Transport {
    /// Mutual TLS with `material`.
    pub fn mutual(material: Arc<Reloading>) -> Transport {
        Transport::Tls {
            material: Arc::new(TlsMaterial::Mutual(material)),
        }
    }

    /// TLS that verifies servers against the CA in `ca` and presents no
    /// certificate (a client with a token).
    pub fn ca_only(ca: &std::path::Path) -> Result<Transport, crate::TlsError> {
        Ok(Transport::Tls {
            material: Arc::new(TlsMaterial::CaOnly(crate::material::server_verifier(ca)?)),
        })
    }

    fn client_config(material: &TlsMaterial) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions");
        let mut config = match material {
            TlsMaterial::Mutual(m) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CurrentServerCa(m.clone())))
                .with_client_cert_resolver(Arc::new(CurrentClientCert(m.clone()))),
            TlsMaterial::CaOnly(verifier) => builder
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }

    /// A lazily connecting channel to `address` (`host:port`), with the
    /// endpoint settings `configure` adds (timeouts, window sizes).
    pub fn channel(
        &self,
        address: &str,
        configure: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<Channel, tonic::transport::Error> {
        self.channel_to(address, None, configure)
    }

    /// Like [`channel`](Self::channel), and with TLS the server's
    /// certificate must name `expect`: an address learnt from the wire (an
    /// executor's registration, a shuffle location) reaches the process it
    /// was given for, or nothing.
    pub fn channel_to(
        &self,
        address: &str,
        expect: Option<Identity>,
        configure: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<Channel, tonic::transport::Error> {
        match self {
            Transport::Insecure => {
                Ok(configure(Endpoint::from_shared(format!("http://{address}"))?).connect_lazy())
            }
            Transport::Tls { material } => {
                let endpoint = configure(Endpoint::from_shared(format!("https://{address}"))?);
                let connector = tokio_rustls::TlsConnector::from(Self::client_config(material));
                Ok(
                    endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
                        connect_tls(connector.clone(), uri, expect.clone())
                    })),
                )
            }
        }
    }
}

/// Dials `uri` over TLS and, when `expect` is given, checks that the
/// server's certificate names it.
async fn connect_tls(
    connector: tokio_rustls::TlsConnector,
    uri: Uri,
    expect: Option<Identity>,
) -> std::io::Result<hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let tls = connector.connect(name, tcp).await?;
    if let Some(expected) = expect {
        let found = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|leaf| Identity::of_certificate(leaf));
        if found.as_ref() != Some(&expected) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{host}:{port} is {}, not {expected}",
                    found.map_or("no weir:// identity".into(), |f| f.to_string())
                ),
            ));
        }
    }
    Ok(hyper_util::rt::TokioIo::new(tls))
}

/// A bearer token as the `authorization` metadata value of a call.
pub fn bearer(token: &str) -> Option<MetadataValue<Ascii>> {
    format!("Bearer {token}").parse().ok()
}
