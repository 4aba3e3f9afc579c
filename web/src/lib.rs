//! Weir's HTTP port (`--http-listen`): `/healthz`, `/readyz`, `/metrics`
//! in the Prometheus text format and, on drivers and `weir local`, the web
//! UI. It uses the process's TLS material and the drivers' roles: metrics
//! and pages need the `viewer` role (a token, in an `Authorization:
//! Bearer` header or the cookie `/login` sets, or a client certificate
//! with a role); the probes need nothing and say nothing beyond ready or
//! not. docs/metrics.md and docs/ui.md are the users' guides.

mod login;
pub mod metrics;
mod server;
mod site;

pub use login::escape;
pub use server::{bind, serve, HttpError, MAX_CONNECTIONS};
pub use site::{Page, PageRequest, Site};
