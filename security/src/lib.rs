//! Weir's transport security: TLS on every port with certificates that
//! reload from disk, the identities certificates name (`weir://driver/…`,
//! `weir://executor/…`, `weir://client/…`), bearer tokens and roles, and
//! the layer that authorizes every gRPC call before its handler runs.
//! docs/security.md is the user's guide.

pub mod authz;
pub mod client;
mod der;
pub mod identity;
pub mod material;
pub mod server;
pub mod settings;
pub mod tokens;

pub use authz::{audit, caller, AuthorizeLayer, Caller, Need, Policy};
pub use client::Transport;
pub use identity::Identity;
pub use material::{Reloading, TlsError, TlsFiles};
pub use server::{incoming, incoming_http, Conn, Peer};
pub use settings::tls_files;
pub use tokens::{Role, Tokens};
