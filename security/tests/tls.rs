//! TLS between real sockets with certificates made by deploy/dev/certs.sh:
//! who is accepted, who is refused, what identity a certificate names,
//! and certificates rotated on disk under a running server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use weir_security::{incoming, Identity, Reloading, TlsFiles, Transport};

fn certs(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/dev/certs.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certs.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join("ca.pem"),
    }
}

/// A CA in `dir` with a driver, an executor and a client certificate.
fn pki(dir: &Path) {
    certs(&["ca", dir.to_str().unwrap()]);
    certs(&[
        "issue",
        dir.to_str().unwrap(),
        "driver-1",
        "URI:weir://driver/1,IP:127.0.0.1",
    ]);
    certs(&[
        "issue",
        dir.to_str().unwrap(),
        "exec-1",
        "URI:weir://executor/exec-1,IP:127.0.0.1",
    ]);
    certs(&[
        "issue",
        dir.to_str().unwrap(),
        "alice",
        "URI:weir://client/alice",
    ]);
}

/// Serves the health service with TLS on `files` until the test ends.
async fn serve(files: TlsFiles) -> String {
    let material = Arc::new(Reloading::load(files, Some(Identity::Driver(1))).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (health, service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming(listener, Some(material))),
    );
    address
}

async fn check(transport: &Transport, address: &str) -> Result<(), String> {
    let channel = transport
        .channel(address, |e| {
            e.connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(3))
        })
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

fn mutual(files: TlsFiles) -> Transport {
    Transport::mutual(Arc::new(Reloading::load(files, None).unwrap()))
}

#[test]
fn certificates_name_weir_identities() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    for (name, identity) in [
        ("driver-1", Identity::Driver(1)),
        ("exec-1", Identity::Executor("exec-1".into())),
        ("alice", Identity::Client("alice".into())),
    ] {
        let material = Reloading::load(files(dir.path(), name), Some(identity.clone())).unwrap();
        assert_eq!(material.current().identity, Some(identity));
    }
    let wrong = Reloading::load(
        files(dir.path(), "exec-1"),
        Some(Identity::Executor("exec-2".into())),
    )
    .unwrap_err()
    .to_string();
    assert!(
        wrong.contains("names weir://executor/exec-1") && wrong.contains("weir://executor/exec-2"),
        "{wrong}"
    );
    let mismatched = TlsFiles {
        key: dir.path().join("alice.key"),
        ..files(dir.path(), "driver-1")
    };
    let e = Reloading::load(mismatched, None).unwrap_err().to_string();
    assert!(e.contains("does not match --tls-cert"), "{e}");
    let missing = TlsFiles {
        ca: dir.path().join("nope.pem"),
        ..files(dir.path(), "driver-1")
    };
    let e = Reloading::load(missing, None).unwrap_err().to_string();
    assert!(e.contains("--tls-ca") && e.contains("nope.pem"), "{e}");
}

#[tokio::test]
async fn only_peers_of_the_same_ca_get_through() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    pki(ours.path());
    pki(theirs.path());
    let address = serve(files(ours.path(), "driver-1")).await;

    check(&mutual(files(ours.path(), "exec-1")), &address)
        .await
        .unwrap();
    check(
        &Transport::ca_only(&ours.path().join("ca.pem")).unwrap(),
        &address,
    )
    .await
    .unwrap();
    // A certificate signed by another CA is refused at the handshake.
    let foreign = TlsFiles {
        ca: ours.path().join("ca.pem"),
        ..files(theirs.path(), "exec-1")
    };
    assert!(check(&mutual(foreign), &address).await.is_err());
    // A client that trusts another CA does not trust this server.
    assert!(check(&mutual(files(theirs.path(), "exec-1")), &address)
        .await
        .is_err());
    // Plaintext is not spoken on a TLS port.
    assert!(check(&Transport::Insecure, &address).await.is_err());
}

#[tokio::test]
async fn certificates_and_cas_rotate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let next = tempfile::tempdir().unwrap();
    pki(dir.path());
    pki(next.path());
    let address = serve(files(dir.path(), "driver-1")).await;
    let old_client = mutual(files(dir.path(), "exec-1"));
    let new_client = mutual(files(next.path(), "exec-1"));
    check(&old_client, &address).await.unwrap();
    assert!(check(&new_client, &address).await.is_err());

    // The server's files move to the next CA, as cert-manager would.
    for name in ["ca.pem", "driver-1.key", "driver-1.pem"] {
        let tmp: PathBuf = dir.path().join(format!("{name}.tmp"));
        std::fs::copy(next.path().join(name), &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join(name)).unwrap();
    }
    tokio::time::sleep(weir_security::material::RELOAD_CHECK + Duration::from_millis(200)).await;
    let mut accepted = false;
    for _ in 0..20 {
        if check(&new_client, &address).await.is_ok() {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        accepted,
        "the rotated certificate and CA were not picked up"
    );
    assert!(check(&mutual(files(next.path(), "alice")), &address)
        .await
        .is_ok());
}

#[tokio::test]
async fn a_dialer_can_require_the_identity_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let address = serve(files(dir.path(), "driver-1")).await;
    let client = mutual(files(dir.path(), "exec-1"));
    let to = |expect| {
        let channel = client
            .channel_to(&address, expect, |e| e.timeout(Duration::from_secs(3)))
            .unwrap();
        async move {
            HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
        }
    };
    to(Some(Identity::Driver(1))).await.unwrap();
    to(None).await.unwrap();
    // An address that leads to another process than the one it was given
    // for is not called.
    let e = to(Some(Identity::Executor("exec-1".into())))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(to(Some(Identity::Driver(2))).await.is_err());
}
