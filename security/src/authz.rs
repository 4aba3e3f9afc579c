//! Who may call what: the table of every gRPC method Weir serves and the
//! identity or role it needs, and the tower layer that checks each call
//! against it before any handler runs.
//!
//! A caller is known by a verified client certificate (`weir://driver/…`,
//! `weir://executor/…`, `weir://client/…`) or by a bearer token from the
//! tokens file. Calls with neither are refused `UNAUTHENTICATED`; calls
//! by someone without the role or identity the method needs are refused
//! `PERMISSION_DENIED`, naming what is needed.

use crate::identity::Identity;
use crate::server::Peer;
use crate::tokens::{Role, Tokens};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;

/// Metadata key of a forwarded call naming the client a follower served.
pub const CALLER_KEY: &str = "weir-caller";
/// Metadata key of a forwarded call naming that client's role.
pub const ROLE_KEY: &str = "weir-role";
/// Metadata key marking a client call that a follower forwarded to the
/// leader (the same key as `weir_proto::wire::FORWARDED_KEY`).
pub const FORWARDED_KEY: &str = "weir-forwarded";

/// What a method needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the standard health check, for probes.
    Anyone,
    /// A client with at least this role.
    Role(Role),
    /// A driver replica (Raft messages, tasks sent to executors).
    Driver,
    /// An executor (registration and heartbeats, shuffle fetches).
    Executor,
}

/// Every method Weir serves and what it needs. A method missing here is
/// refused: a new RPC must be added to this table (a test walks the
/// service descriptors to check that none is missing).
pub const METHODS: &[(&str, Need)] = &[
    ("/grpc.health.v1.Health/Check", Need::Anyone),
    ("/grpc.health.v1.Health/Watch", Need::Anyone),
    ("/weir.v1.WeirClient/Submit", Need::Role(Role::Operator)),
    ("/weir.v1.WeirClient/History", Need::Role(Role::Viewer)),
    ("/weir.v1.WeirClient/Status", Need::Role(Role::Viewer)),
    ("/weir.v1.WeirClient/List", Need::Role(Role::Viewer)),
    ("/weir.v1.WeirClient/Batches", Need::Role(Role::Viewer)),
    // `purge` needs admin: the handler checks it (the role is known here,
    // the request's fields are not).
    ("/weir.v1.WeirClient/Stop", Need::Role(Role::Operator)),
    ("/weir.v1.WeirClient/Cluster", Need::Role(Role::Viewer)),
    ("/weir.v1.WeirClient/AddDriver", Need::Role(Role::Admin)),
    ("/weir.v1.WeirClient/RemoveDriver", Need::Role(Role::Admin)),
    ("/weir.v1.RaftTransport/Send", Need::Driver),
    ("/weir.v1.RaftTransport/SendSnapshot", Need::Driver),
    ("/weir.v1.ExecutorControl/Register", Need::Executor),
    ("/weir.v1.ExecutorControl/Heartbeat", Need::Executor),
    ("/weir.v1.ExecutorService/Deploy", Need::Driver),
    ("/weir.v1.ExecutorService/Undeploy", Need::Driver),
    ("/weir.v1.ExecutorService/StageA", Need::Driver),
    ("/weir.v1.ExecutorService/StageB", Need::Driver),
    ("/weir.v1.ExecutorService/Restore", Need::Driver),
    ("/weir.v1.ExecutorService/Commit", Need::Driver),
    ("/weir.v1.ExecutorService/FetchShuffle", Need::Executor),
];

/// What `path` needs, if Weir serves it.
pub fn need(path: &str) -> Option<Need> {
    METHODS.iter().find(|(p, _)| *p == path).map(|(_, n)| *n)
}

/// The authenticated caller of a request, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A plaintext cluster without a tokens file: nothing is checked.
    Open,
    /// A call that needs nothing (health checks).
    Anonymous,
    /// A driver or an executor, by its certificate (or any process in a
    /// plaintext cluster, where certificates do not exist).
    Process(Option<Identity>),
    /// A client with a role.
    Client {
        /// Its name in the tokens file (or a forwarded call's client, with
        /// the driver that forwarded it).
        name: String,
        /// Its role.
        role: Role,
    },
}

impl Caller {
    /// The caller's role: `Open` may do everything.
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Open => Some(Role::Admin),
            Caller::Client { role, .. } => Some(*role),
            _ => None,
        }
    }

    /// `Ok` if the caller has `role` (or more); else `PERMISSION_DENIED`
    /// naming what `action` needs.
    pub fn require(&self, role: Role, action: &str) -> Result<(), Status> {
        match self.role() {
            Some(r) if r >= role => Ok(()),
            _ => Err(Status::permission_denied(format!(
                "{action} needs the {role} role; {self} has {}",
                self.role().map_or("none", Role::as_str)
            ))),
        }
    }

    /// The process identity of a caller authenticated by certificate.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Caller::Process(identity) => identity.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Open => f.write_str("anyone (plaintext cluster)"),
            Caller::Anonymous => f.write_str("anonymous"),
            Caller::Process(Some(identity)) => write!(f, "{identity}"),
            Caller::Process(None) => f.write_str("a process (plaintext cluster)"),
            Caller::Client { name, .. } => f.write_str(name),
        }
    }
}

/// The caller of a request, from its extensions; `Open` when the request
/// did not pass the layer (handlers called directly in tests).
pub fn caller<T>(request: &tonic::Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Open)
}

/// Logs an operator's or admin's action: who did what to which target.
pub fn audit(caller: &Caller, action: &str, target: &str) {
    tracing::info!(target: "weir::audit", who = %caller, role = caller.role().map_or("none", Role::as_str), action, target, "audit");
}

/// How calls are checked on one server.
#[derive(Debug)]
pub struct Policy {
    /// Whether the server runs TLS (certificates identify processes).
    pub tls: bool,
    /// The tokens file, if any.
    pub tokens: Option<Tokens>,
}

fn bearer(headers: &http::HeaderMap) -> Option<Result<&str, Status>> {
    let value = headers.get(http::header::AUTHORIZATION)?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                Status::unauthenticated("the authorization header must be 'Bearer <token>'")
            }),
    )
}

impl Policy {
    /// The caller of a call to `path`, or why it is refused.
    pub fn authorize(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        peer: Option<&Peer>,
    ) -> Result<Caller, Status> {
        let need = need(path).ok_or_else(|| {
            Status::permission_denied(format!("{path} is not a method Weir serves"))
        })?;
        if need == Need::Anyone {
            return Ok(Caller::Anonymous);
        }
        if !self.tls && self.tokens.is_none() {
            return Ok(Caller::Open);
        }
        let identity = peer.and_then(|p| p.identity.clone());
        match need {
            Need::Anyone => Ok(Caller::Anonymous),
            Need::Driver | Need::Executor => {
                if !self.tls {
                    return Ok(Caller::Process(None));
                }
                let ok = matches!(
                    (&identity, need),
                    (Some(Identity::Driver(_)), Need::Driver)
                        | (Some(Identity::Executor(_)), Need::Executor)
                );
                match identity {
                    Some(identity) if ok => Ok(Caller::Process(Some(identity))),
                    Some(other) => Err(Status::permission_denied(format!(
                        "{path} is for {} only; {other} may not call it",
                        if need == Need::Driver {
                            "drivers"
                        } else {
                            "executors"
                        }
                    ))),
                    None => Err(Status::unauthenticated(format!(
                        "{path} needs a {} certificate",
                        if need == Need::Driver {
                            "weir://driver/<id>"
                        } else {
                            "weir://executor/<id>"
                        }
                    ))),
                }
            }
            Need::Role(needed) => {
                let caller = self.client(headers, identity)?;
                caller.require(needed, path.rsplit('/').next().unwrap_or(path))?;
                Ok(caller)
            }
        }
    }

    /// The caller of an HTTP request (metrics, the web UI) that needs
    /// `role`: a token in `headers` or a client certificate with a role;
    /// anyone on a plaintext server without a tokens file.
    pub fn authorize_role(
        &self,
        role: Role,
        what: &str,
        headers: &http::HeaderMap,
        peer: Option<&Peer>,
    ) -> Result<Caller, Status> {
        if !self.tls && self.tokens.is_none() {
            return Ok(Caller::Open);
        }
        let caller = self.client(headers, peer.and_then(|p| p.identity.clone()))?;
        caller.require(role, what)?;
        Ok(caller)
    }

    fn client(
        &self,
        headers: &http::HeaderMap,
        identity: Option<Identity>,
    ) -> Result<Caller, Status> {
        if let Some(token) = bearer(headers) {
            let token = token?;
            let (name, role) = self
                .tokens
                .as_ref()
                .and_then(|t| t.by_token(token))
                .ok_or_else(|| Status::unauthenticated("unknown token"))?;
            return Ok(Caller::Client { name, role });
        }
        match identity {
            Some(Identity::Client(name)) => {
                let role = self.tokens.as_ref().and_then(|t| t.by_name(&name)).ok_or_else(|| {
                    Status::permission_denied(format!(
                        "client certificate weir://client/{name} has no role: add {{ name: {name}, role: ... }} to the drivers' tokens file"
                    ))
                })?;
                Ok(Caller::Client { name, role })
            }
            Some(Identity::Driver(id)) if headers.contains_key(FORWARDED_KEY) => {
                // A follower forwards a call it authorized; drivers are
                // trusted to name the client and its role.
                let name = headers
                    .get(CALLER_KEY)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("unknown");
                let role = headers
                    .get(ROLE_KEY)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Role::parse)
                    .ok_or_else(|| {
                        Status::permission_denied(format!(
                            "a call forwarded by driver {id} names no role"
                        ))
                    })?;
                Ok(Caller::Client {
                    name: format!("{name} (via driver {id})"),
                    role,
                })
            }
            Some(other) => Err(Status::permission_denied(format!(
                "{other} is not a client: client calls need a token or a weir://client/<name> certificate"
            ))),
            None => Err(Status::unauthenticated(
                "no credentials: pass --token (WEIR_TOKEN) or a client certificate (--tls-cert, --tls-key)",
            )),
        }
    }
}

/// The tower layer that authorizes every call with a [`Policy`].
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    policy: Arc<Policy>,
}

impl AuthorizeLayer {
    /// A layer checking calls against `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        AuthorizeLayer { policy }
    }
}

impl<S> tower::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// A service behind [`AuthorizeLayer`].
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    policy: Arc<Policy>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let peer = request.extensions().get::<Peer>();
        match self
            .policy
            .authorize(request.uri().path(), request.headers(), peer)
        {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                // The clone that was made ready is the one called.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(status) => {
                tracing::debug!(path = request.uri().path(), peer = ?peer, code = ?status.code(), message = status.message(), "call refused");
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::token_hash;
    use tonic::Code;

    fn policy(tls: bool) -> (Policy, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        std::fs::write(
            &path,
            format!(
                "- {{ name: val, role: viewer, sha256: {} }}\n- {{ name: oscar, role: operator, sha256: {} }}\n- {{ name: ada, role: admin, sha256: {} }}\n- {{ name: bot, role: operator }}\n",
                token_hash("v"),
                token_hash("o"),
                token_hash("a")
            ),
        )
        .unwrap();
        let tokens = Some(Tokens::load(&path).unwrap());
        (Policy { tls, tokens }, dir)
    }

    fn peer(identity: Option<Identity>) -> Peer {
        Peer {
            remote: None,
            tls: true,
            identity,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn code(r: Result<Caller, Status>) -> Code {
        r.map_or_else(|s| s.code(), |_| Code::Ok)
    }

    #[test]
    fn each_role_may_do_its_own_and_less() {
        let (policy, _dir) = policy(true);
        let submit = "/weir.v1.WeirClient/Submit";
        let status = "/weir.v1.WeirClient/Status";
        let add = "/weir.v1.WeirClient/AddDriver";
        let call = |path, token: &str| {
            code(policy.authorize(
                path,
                &headers(&[("authorization", &format!("Bearer {token}"))]),
                Some(&peer(None)),
            ))
        };
        assert_eq!(call(status, "v"), Code::Ok);
        assert_eq!(call(submit, "v"), Code::PermissionDenied);
        assert_eq!(call(submit, "o"), Code::Ok);
        assert_eq!(call(add, "o"), Code::PermissionDenied);
        assert_eq!(call(add, "a"), Code::Ok);
        assert_eq!(call(status, "nope"), Code::Unauthenticated);
        let denied = policy
            .authorize(submit, &headers(&[("authorization", "Bearer v")]), None)
            .unwrap_err();
        assert!(
            denied.message().contains("needs the operator role"),
            "{}",
            denied.message()
        );
        assert_eq!(
            code(policy.authorize(status, &headers(&[]), Some(&peer(None)))),
            Code::Unauthenticated
        );
        assert_eq!(
            code(policy.authorize(status, &headers(&[("authorization", "Basic x")]), None)),
            Code::Unauthenticated
        );
        // Certificates: a client by name, processes never as clients.
        let by_cert =
            |identity| code(policy.authorize(submit, &headers(&[]), Some(&peer(Some(identity)))));
        assert_eq!(by_cert(Identity::Client("bot".into())), Code::Ok);
        assert_eq!(
            by_cert(Identity::Client("eve".into())),
            Code::PermissionDenied
        );
        assert_eq!(
            by_cert(Identity::Executor("e1".into())),
            Code::PermissionDenied
        );
        assert_eq!(by_cert(Identity::Driver(1)), Code::PermissionDenied);
        assert_eq!(
            policy
                .authorize(
                    submit,
                    &headers(&[]),
                    Some(&peer(Some(Identity::Client("bot".into()))))
                )
                .unwrap(),
            Caller::Client {
                name: "bot".into(),
                role: Role::Operator
            }
        );
    }

    #[test]
    fn process_methods_need_the_process_certificate() {
        let (policy, _dir) = policy(true);
        let raft = "/weir.v1.RaftTransport/Send";
        let register = "/weir.v1.ExecutorControl/Register";
        let fetch = "/weir.v1.ExecutorService/FetchShuffle";
        let stage = "/weir.v1.ExecutorService/StageA";
        let call = |path, identity: Option<Identity>| {
            code(policy.authorize(
                path,
                &headers(&[("authorization", "Bearer a")]),
                Some(&peer(identity)),
            ))
        };
        assert_eq!(call(raft, Some(Identity::Driver(2))), Code::Ok);
        assert_eq!(
            call(raft, Some(Identity::Executor("e".into()))),
            Code::PermissionDenied
        );
        // An admin token is not a driver.
        assert_eq!(
            call(raft, Some(Identity::Client("ada".into()))),
            Code::PermissionDenied
        );
        assert_eq!(call(raft, None), Code::Unauthenticated);
        assert_eq!(
            call(register, Some(Identity::Executor("e".into()))),
            Code::Ok
        );
        assert_eq!(
            call(register, Some(Identity::Driver(1))),
            Code::PermissionDenied
        );
        assert_eq!(call(fetch, Some(Identity::Executor("e".into()))), Code::Ok);
        assert_eq!(
            call(fetch, Some(Identity::Driver(1))),
            Code::PermissionDenied
        );
        assert_eq!(call(stage, Some(Identity::Driver(1))), Code::Ok);
        assert_eq!(
            call(stage, Some(Identity::Executor("e".into()))),
            Code::PermissionDenied
        );
        assert_eq!(
            call("/weir.v1.Nope/Nope", Some(Identity::Driver(1))),
            Code::PermissionDenied
        );
        assert_eq!(call("/grpc.health.v1.Health/Check", None), Code::Ok);
    }

    #[test]
    fn forwarded_calls_are_trusted_from_drivers_only() {
        let (policy, _dir) = policy(true);
        let submit = "/weir.v1.WeirClient/Submit";
        let fwd = headers(&[
            (FORWARDED_KEY, "1"),
            (CALLER_KEY, "oscar"),
            (ROLE_KEY, "operator"),
        ]);
        let caller = policy
            .authorize(submit, &fwd, Some(&peer(Some(Identity::Driver(2)))))
            .unwrap();
        assert_eq!(caller.to_string(), "oscar (via driver 2)");
        assert_eq!(
            code(policy.authorize(
                submit,
                &fwd,
                Some(&peer(Some(Identity::Client("bot".into()))))
            )),
            Code::Ok,
            "a client certificate is judged by its own role"
        );
        let claims_admin = headers(&[(FORWARDED_KEY, "1"), (ROLE_KEY, "admin")]);
        assert_eq!(
            code(policy.authorize(submit, &claims_admin, Some(&peer(None)))),
            Code::Unauthenticated
        );
        assert_eq!(
            code(policy.authorize(
                submit,
                &claims_admin,
                Some(&peer(Some(Identity::Executor("e".into()))))
            )),
            Code::PermissionDenied
        );
        let viewer = headers(&[(FORWARDED_KEY, "1"), (ROLE_KEY, "viewer")]);
        assert_eq!(
            code(policy.authorize(submit, &viewer, Some(&peer(Some(Identity::Driver(2)))))),
            Code::PermissionDenied
        );
    }

    #[test]
    fn plaintext_checks_tokens_when_given_and_nothing_otherwise() {
        let (mut policy, _dir) = policy(false);
        let submit = "/weir.v1.WeirClient/Submit";
        assert_eq!(
            code(policy.authorize(submit, &headers(&[]), None)),
            Code::Unauthenticated
        );
        assert_eq!(
            code(policy.authorize(submit, &headers(&[("authorization", "Bearer o")]), None)),
            Code::Ok
        );
        assert_eq!(
            policy
                .authorize("/weir.v1.RaftTransport/Send", &headers(&[]), None)
                .unwrap(),
            Caller::Process(None)
        );
        policy.tokens = None;
        assert_eq!(
            policy.authorize(submit, &headers(&[]), None).unwrap(),
            Caller::Open
        );
    }

    #[test]
    fn every_method_weir_serves_is_in_the_table_and_nothing_else() {
        let pool = prost_reflect::DescriptorPool::decode(weir_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut served: Vec<String> = pool
            .services()
            .flat_map(|s| {
                s.methods()
                    .map(|m| format!("/{}/{}", s.full_name(), m.name()))
                    .collect::<Vec<_>>()
            })
            .collect();
        served.push("/grpc.health.v1.Health/Check".into());
        served.push("/grpc.health.v1.Health/Watch".into());
        served.sort();
        let mut table: Vec<String> = METHODS.iter().map(|(p, _)| p.to_string()).collect();
        table.sort();
        assert_eq!(served, table);
        assert!(
            served.len() > 15,
            "the descriptor set has the services: {served:?}"
        );
    }
}
