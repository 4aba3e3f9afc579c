//! Who is at the other end of a connection: the identity a certificate
//! names in a `weir://` URI of its subject alternative name.
//!
//! | URI | identity |
//! |---|---|
//! | `weir://driver/<replica-id>` | a driver replica (also on its server certificate) |
//! | `weir://executor/<executor-id>` | an executor |
//! | `weir://client/<name>` | a person or program; its role comes from the tokens file |

use std::fmt;

/// The longest name or id an identity URI may carry.
pub const MAX_NAME_BYTES: usize = 128;

/// A process or client identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// Driver replica with this id.
    Driver(u64),
    /// Executor with this id.
    Executor(String),
    /// A client certificate's name.
    Client(String),
}

impl Identity {
    /// Parses a `weir://kind/name` URI; `None` for any other URI.
    pub fn from_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix("weir://")?;
        let (kind, name) = rest.split_once('/')?;
        if name.is_empty()
            || name.len() > MAX_NAME_BYTES
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        {
            return None;
        }
        match kind {
            "driver" => name.parse().ok().filter(|id| *id > 0).map(Identity::Driver),
            "executor" => Some(Identity::Executor(name.to_string())),
            "client" => Some(Identity::Client(name.to_string())),
            _ => None,
        }
    }

    /// The identity a DER certificate names: its first `weir://` SAN URI.
    pub fn of_certificate(der: &[u8]) -> Option<Identity> {
        crate::der::san_uris(der)
            .iter()
            .find_map(|uri| Identity::from_uri(uri))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Driver(id) => write!(f, "weir://driver/{id}"),
            Identity::Executor(id) => write!(f, "weir://executor/{id}"),
            Identity::Client(name) => write!(f, "weir://client/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_one_kind_and_a_bounded_name() {
        assert_eq!(
            Identity::from_uri("weir://driver/3"),
            Some(Identity::Driver(3))
        );
        assert_eq!(
            Identity::from_uri("weir://executor/exec-1"),
            Some(Identity::Executor("exec-1".into()))
        );
        assert_eq!(
            Identity::from_uri("weir://client/ci-bot"),
            Some(Identity::Client("ci-bot".into()))
        );
        for bad in [
            "weir://driver/0",
            "weir://driver/x",
            "weir://driver/",
            "weir://admin/root",
            "https://driver/1",
            "weir://client/a/b",
            "weir://client/a b",
        ] {
            assert_eq!(Identity::from_uri(bad), None, "{bad}");
        }
        let long = format!("weir://client/{}", "a".repeat(MAX_NAME_BYTES + 1));
        assert_eq!(Identity::from_uri(&long), None);
        for id in [
            Identity::Driver(7),
            Identity::Executor("e".into()),
            Identity::Client("c".into()),
        ] {
            assert_eq!(Identity::from_uri(&id.to_string()), Some(id));
        }
    }
}
