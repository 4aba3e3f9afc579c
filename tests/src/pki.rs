//! Certificates and tokens for a test cluster with TLS on, made by
//! deploy/dev/certs.sh: a CA, one certificate per driver and executor, a
//! client certificate, and a tokens file with one token per role.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The bearer tokens of the tokens file, by role.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
/// A viewer's token.
pub const VIEWER_TOKEN: &str = "viewer-token-for-tests";
/// An operator's token.
pub const OPERATOR_TOKEN: &str = "operator-token-for-tests";

/// A test cluster's PKI in one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
}

fn certs(args: &[&str]) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/dev/certs.sh");
    let out = Command::new("bash").arg(script).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "deploy/dev/certs.sh {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn sha256(text: &str) -> anyhow::Result<String> {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

impl Pki {
    /// A CA in `dir` and certificates for drivers `1..=drivers` and
    /// `executors` (ids), the client `admin`, and the tokens file.
    pub fn new(dir: &Path, drivers: u64, executors: &[String]) -> anyhow::Result<Pki> {
        let d = dir.to_string_lossy().into_owned();
        certs(&["ca", &d])?;
        for id in 1..=drivers {
            certs(&[
                "issue",
                &d,
                &format!("driver-{id}"),
                &format!("URI:weir://driver/{id},IP:127.0.0.1,DNS:localhost"),
            ])?;
        }
        for id in executors {
            certs(&[
                "issue",
                &d,
                &format!("executor-{id}"),
                &format!("URI:weir://executor/{id},IP:127.0.0.1,DNS:localhost"),
            ])?;
        }
        certs(&["issue", &d, "client-admin", "URI:weir://client/admin"])?;
        let tokens = format!(
            "# Test tokens: only their SHA-256 is here.\n\
             - {{ name: ada, role: admin, sha256: {} }}\n\
             - {{ name: oscar, role: operator, sha256: {} }}\n\
             - {{ name: val, role: viewer, sha256: {} }}\n\
             - {{ name: admin, role: admin }}\n",
            sha256(ADMIN_TOKEN)?,
            sha256(OPERATOR_TOKEN)?,
            sha256(VIEWER_TOKEN)?
        );
        std::fs::write(dir.join("tokens.yaml"), tokens)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// Issues (or reissues) a certificate named `name` with `san`.
    pub fn issue(&self, name: &str, san: &str) -> anyhow::Result<()> {
        certs(&["issue", &self.path(""), name, san])
    }

    /// The CA certificate.
    pub fn ca(&self) -> String {
        self.path("ca.pem")
    }

    /// The tokens file.
    pub fn tokens(&self) -> String {
        self.path("tokens.yaml")
    }

    /// `weir-driver` flags of replica `id`.
    pub fn driver_args(&self, id: u64) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path(&format!("driver-{id}.pem")),
            "--tls-key".into(),
            self.path(&format!("driver-{id}.key")),
            "--tls-ca".into(),
            self.ca(),
            "--tokens".into(),
            self.tokens(),
        ]
    }

    /// `weir-executor` flags of executor `id` (the tokens file gives its
    /// HTTP port roles).
    pub fn executor_args(&self, id: &str) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path(&format!("executor-{id}.pem")),
            "--tls-key".into(),
            self.path(&format!("executor-{id}.key")),
            "--tls-ca".into(),
            self.ca(),
            "--tokens".into(),
            self.tokens(),
        ]
    }

    /// `weir` flags of a client with `token`.
    pub fn client_args(&self, token: &str) -> Vec<String> {
        vec!["--tls-ca".into(), self.ca(), "--token".into(), token.into()]
    }
}
