//! The client library: calls the leader driver, following `weir-leader`
//! hints from followers and retrying across the configured drivers while an
//! election is in progress.

use std::future::Future;
use std::time::{Duration, Instant};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use weir_proto::pb::weir_client_client::WeirClientClient;
use weir_security::Transport;

/// How the client reaches and authenticates to drivers: plaintext or TLS
/// (with a client certificate or only a CA), and a bearer token.
#[derive(Debug, Clone)]
pub struct Access {
    /// Plaintext or TLS.
    pub transport: Transport,
    /// The bearer token sent with every call, if any.
    pub token: Option<String>,
}

impl Access {
    /// Plaintext without credentials (an `--insecure` cluster).
    pub fn insecure() -> Access {
        Access {
            transport: Transport::Insecure,
            token: None,
        }
    }
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    authorization: Option<MetadataValue<Ascii>>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A client of one driver, with credentials.
pub type Client = WeirClientClient<InterceptedService<Channel, Credentials>>;

/// A connection to a Weir cluster through its drivers.
#[derive(Debug, Clone)]
pub struct Cluster {
    drivers: Vec<String>,
    access: Access,
    /// How long to keep looking for a leader.
    pub patience: Duration,
}

/// A failed call, after every driver was tried.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No driver address was given.
    #[error("no drivers given: pass --drivers host:port,... or set WEIR_DRIVERS")]
    NoDrivers,
    /// The cluster answered with an error.
    #[error("{}", .0.message())]
    Status(Status),
    /// No leader answered in time.
    #[error("no leader reachable within {patience:?} (tried {drivers}); last error: {last}")]
    NoLeader {
        /// The wait.
        patience: Duration,
        /// Addresses tried.
        drivers: String,
        /// The last error seen.
        last: String,
    },
}

impl ClientError {
    /// The gRPC code, for exit statuses and scripts.
    pub fn code(&self) -> Code {
        match self {
            ClientError::Status(s) => s.code(),
            _ => Code::Unavailable,
        }
    }
}

/// Longest wait for a read (status, list, cluster) from one driver: a
/// paused driver accepts connections but never answers.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a change (submit, stop, membership) on the leader: a
/// little over the drivers' proposal timeout, so their "no quorum" answer
/// arrives first.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(12);

/// A client for one driver address whose calls give up after `timeout`.
pub fn connect(address: &str, timeout: Duration, access: &Access) -> Result<Client, Status> {
    let channel = access
        .transport
        .channel(address, |e| {
            e.connect_timeout(Duration::from_millis(700))
                .timeout(timeout)
        })
        .map_err(|e| Status::invalid_argument(format!("bad driver address {address:?}: {e}")))?;
    let authorization = match &access.token {
        Some(token) => Some(weir_security::client::bearer(token).ok_or_else(|| {
            Status::invalid_argument("the token must be printable ASCII (--token, WEIR_TOKEN)")
        })?),
        None => None,
    };
    Ok(
        WeirClientClient::with_interceptor(channel, Credentials { authorization })
            .max_decoding_message_size(weir_proto::wire::MAX_CLIENT_MESSAGE_BYTES)
            .max_encoding_message_size(weir_proto::wire::MAX_CLIENT_MESSAGE_BYTES),
    )
}

impl Cluster {
    /// A cluster reached through `drivers` (`host:port`, comma-separated)
    /// with `access`.
    pub fn new(drivers: &str, access: Access) -> Result<Self, ClientError> {
        let drivers: Vec<String> = drivers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if drivers.is_empty() {
            return Err(ClientError::NoDrivers);
        }
        Ok(Cluster {
            drivers,
            access,
            patience: Duration::from_secs(15),
        })
    }

    /// The configured driver addresses.
    pub fn drivers(&self) -> &[String] {
        &self.drivers
    }

    /// How drivers are reached.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Calls the leader: tries the drivers in turn, jumps to a leader hint
    /// when a follower gives one, and retries while none answers as leader.
    pub async fn call<T, F, Fut>(&self, timeout: Duration, f: F) -> Result<T, ClientError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.patience;
        let mut last: String;
        let mut next: Option<String> = None;
        let mut i = 0;
        loop {
            let address = next.take().unwrap_or_else(|| {
                let a = self.drivers[i % self.drivers.len()].clone();
                i += 1;
                a
            });
            let client = connect(&address, timeout, &self.access).map_err(ClientError::Status)?;
            match f(client).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
                    ) =>
                {
                    last = format!("{address}: {}", s.message());
                    next = weir_proto::wire::leader_hint(&s).filter(|a| *a != address);
                }
                Err(s)
                    if matches!(self.access.transport, Transport::Insecure)
                        && (s.message().contains("transport error")
                            || s.message().contains("h2 protocol error")) =>
                {
                    // A TLS port answers plaintext HTTP/2 with garbage.
                    return Err(ClientError::Status(Status::unavailable(format!(
                        "{address}: {}: the driver may serve TLS; pass --tls-ca (WEIR_TLS_CA) and a token or client certificate (docs/security.md)",
                        s.message()
                    ))));
                }
                Err(s) => return Err(ClientError::Status(s)),
            }
            if Instant::now() >= deadline {
                return Err(ClientError::NoLeader {
                    patience: self.patience,
                    drivers: self.drivers.join(","),
                    last,
                });
            }
            if next.is_none() && i % self.drivers.len() == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
