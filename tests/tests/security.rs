//! TLS, identities and roles on real processes: a cluster with
//! certificates for every process and a tokens file, called by clients
//! without credentials, with too small a role, with a certificate of
//! another CA, and by processes claiming to be someone else.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Request};
use weir_driver::raft::{encode_message, Message, MessageType};
use weir_proto::pb;
use weir_proto::pb::executor_control_client::ExecutorControlClient;
use weir_proto::pb::executor_service_client::ExecutorServiceClient;
use weir_proto::pb::raft_transport_client::RaftTransportClient;
use weir_security::{Reloading, TlsFiles, Transport};
use weir_tests::binary;
use weir_tests::cluster::{assert_generator_counts, LocalCluster};
use weir_tests::pki::{Pki, ADMIN_TOKEN, OPERATOR_TOKEN, VIEWER_TOKEN};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn pki(c: &LocalCluster) -> &Pki {
    c.pki.as_ref().unwrap()
}

/// The mutual-TLS transport of the certificate `name` in `pki`.
fn as_cert(pki: &Pki, name: &str) -> Transport {
    Transport::mutual(std::sync::Arc::new(
        Reloading::load(
            TlsFiles {
                cert: pki.dir.join(format!("{name}.pem")),
                key: pki.dir.join(format!("{name}.key")),
                ca: pki.dir.join("ca.pem"),
            },
            None,
        )
        .unwrap(),
    ))
}

/// Calls `path` with an empty request (every field at its default) and
/// returns the status code.
async fn call(
    transport: &Transport,
    address: &str,
    path: &'static str,
    token: Option<&str>,
) -> Code {
    let channel = transport
        .channel(address, |e| e.timeout(Duration::from_secs(5)))
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        panic!("{path}: not ready: {e}");
    }
    let mut request = Request::new(());
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match grpc
        .unary::<(), (), _>(
            request,
            PathAndQuery::from_static(path),
            tonic_prost::ProstCodec::default(),
        )
        .await
    {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// The `WeirClient` methods, from the service descriptor.
fn client_methods() -> Vec<&'static str> {
    let pool = prost_reflect::DescriptorPool::decode(weir_proto::FILE_DESCRIPTOR_SET).unwrap();
    let service = pool.get_service_by_name("weir.v1.WeirClient").unwrap();
    service
        .methods()
        .map(|m| &*Box::leak(format!("/weir.v1.WeirClient/{}", m.name()).into_boxed_str()))
        .collect()
}

fn weir(c: &LocalCluster, credentials: &[&str], args: &[&str]) -> Output {
    Command::new(binary("weir"))
        .args(args)
        .args(["--drivers", &c.driver_list()])
        .args(credentials)
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap()
}

fn job(dir: &Path, name: &str, total: u64) -> String {
    let spec = dir.join(format!("{name}.yaml"));
    fs::write(
        &spec,
        format!(
            "name: {name}\nbatch_interval: 200ms\nstate_partitions: 4\n\
             source:\n  generator: {{ partitions: 2, keys: 13, rate: 20000, total: {total} }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\nsink:\n  file: {{ path: {} }}\n",
            dir.join(format!("{name}-out")).display()
        ),
    )
    .unwrap();
    spec.to_string_lossy().into_owned()
}

#[test]
fn a_tls_cluster_runs_jobs_exactly_and_checks_every_caller() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::secure(dir.path(), 1, 2);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let address = c.drivers[0].address.clone();
    let ca_only = Transport::ca_only(Path::new(&pki(&c).ca())).unwrap();
    let rt = runtime();

    // Every client RPC refuses a call without credentials; a viewer may
    // read but not change anything.
    let methods = client_methods();
    assert!(methods.len() >= 9, "{methods:?}");
    for path in &methods {
        assert_eq!(
            rt.block_on(call(&ca_only, &address, path, None)),
            Code::Unauthenticated,
            "{path} without credentials"
        );
        assert_eq!(
            rt.block_on(call(&ca_only, &address, path, Some("not-a-token"))),
            Code::Unauthenticated,
            "{path} with an unknown token"
        );
        let as_viewer = rt.block_on(call(&ca_only, &address, path, Some(VIEWER_TOKEN)));
        let writes = ["Submit", "Stop", "AddDriver", "RemoveDriver"];
        if writes.iter().any(|w| path.ends_with(&format!("/{w}"))) {
            assert_eq!(as_viewer, Code::PermissionDenied, "{path} as a viewer");
        } else {
            assert!(
                !matches!(as_viewer, Code::PermissionDenied | Code::Unauthenticated),
                "{path} as a viewer: {as_viewer:?}"
            );
        }
    }
    // Plaintext is not served.
    assert_ne!(
        rt.block_on(call(
            &Transport::Insecure,
            &address,
            "/weir.v1.WeirClient/List",
            Some(ADMIN_TOKEN)
        )),
        Code::Ok
    );

    // The CLI: a viewer cannot submit (and is told the role it needs), an
    // operator can, but cannot purge.
    let spec = job(dir.path(), "secured", 30_000);
    let viewer = pki(&c).client_args(VIEWER_TOKEN);
    let viewer: Vec<&str> = viewer.iter().map(String::as_str).collect();
    let out = weir(&c, &viewer, &["submit", &spec]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("needs the operator role"), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(7),
        "the permission exit code: {stderr}"
    );
    let operator = pki(&c).client_args(OPERATOR_TOKEN);
    let operator: Vec<&str> = operator.iter().map(String::as_str).collect();
    let out = weir(&c, &operator, &["submit", &spec]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = weir(&c, &[], &["list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("may serve TLS; pass --tls-ca"),
        "plaintext CLI against a TLS cluster: {stderr}"
    );

    // The job runs with mutual TLS between driver and executors and
    // between executors (shuffle), and its output is exact per key.
    c.wait_finished("secured", Duration::from_secs(120));
    assert_generator_counts(&dir.path().join("secured-out"), 13, 30_000);
    // A finished job leaves the executors' memory.
    eventually("the finished job undeployed", || {
        c.executors.iter().all(|e| {
            fs::read_to_string(dir.path().join(format!("{}.log", e.id)))
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("job undeployed") && l.contains("secured"))
        })
    });
    let out = weir(&c, &operator, &["stop", "--purge", "--yes", "secured"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("needs the admin role"),
        "{stderr}"
    );

    // A client certificate with a role in the tokens file works; one
    // signed by another CA is refused at the handshake.
    let admin_cert = [
        "--tls-ca".to_string(),
        pki(&c).ca(),
        "--tls-cert".into(),
        pki(&c)
            .dir
            .join("client-admin.pem")
            .to_string_lossy()
            .into_owned(),
        "--tls-key".into(),
        pki(&c)
            .dir
            .join("client-admin.key")
            .to_string_lossy()
            .into_owned(),
    ];
    let admin_cert: Vec<&str> = admin_cert.iter().map(String::as_str).collect();
    let out = weir(&c, &admin_cert, &["-o", "json", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = Pki::new(&dir.path().join("other-ca"), 1, &[]).unwrap();
    let foreign = [
        "--tls-ca".to_string(),
        pki(&c).ca(),
        "--tls-cert".into(),
        other
            .dir
            .join("client-admin.pem")
            .to_string_lossy()
            .into_owned(),
        "--tls-key".into(),
        other
            .dir
            .join("client-admin.key")
            .to_string_lossy()
            .into_owned(),
    ];
    let foreign: Vec<&str> = foreign.iter().map(String::as_str).collect();
    let out = weir(&c, &foreign, &["list"]);
    assert!(
        !out.status.success(),
        "a certificate of another CA was accepted"
    );
    assert_ne!(
        rt.block_on(call(
            &as_cert(&other, "client-admin"),
            &address,
            "/weir.v1.WeirClient/List",
            Some(ADMIN_TOKEN)
        )),
        Code::Ok,
        "another CA's certificate, even with a good token"
    );

    // Each operator action leaves an audit line naming who did it.
    let log = fs::read_to_string(c.driver_log(1)).unwrap();
    assert!(
        log.lines().any(|l| l.contains("audit")
            && l.contains("oscar")
            && l.contains("submit")
            && l.contains("secured")),
        "no audit line for the submit:\n{log}"
    );
}

#[test]
fn processes_cannot_speak_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::secure(dir.path(), 1, 2);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let address = c.drivers[0].address.clone();
    let rt = runtime();
    // Both executors registered.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.weir_json(&["cluster"]).unwrap()["executors"]
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "executors did not register\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let term = |c: &LocalCluster| {
        c.weir_json(&["cluster"]).unwrap()["drivers"][0]["term"]
            .as_u64()
            .unwrap()
    };
    let term_before = term(&c);

    // A certificate naming a driver that is not a member, and a member's
    // certificate claiming another id: refused, and the term stays.
    pki(&c)
        .issue("driver-9", "URI:weir://driver/9,IP:127.0.0.1")
        .unwrap();
    pki(&c)
        .issue("driver-2", "URI:weir://driver/2,IP:127.0.0.1")
        .unwrap();
    let vote = |from: u64| {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgRequestVote);
        m.from = from;
        m.to = 1;
        m.term = term_before + 100;
        m.index = u64::MAX / 2;
        m.log_term = term_before + 100;
        pb::RaftBatch {
            cluster_id: "test".into(),
            from,
            messages: vec![encode_message(&m).unwrap()],
            from_address: "127.0.0.1:1".into(),
        }
    };
    let send = |transport: Transport, batch: pb::RaftBatch| {
        rt.block_on(async {
            let channel = transport
                .channel(&address, |e| e.timeout(Duration::from_secs(5)))
                .unwrap();
            RaftTransportClient::new(channel).send(batch).await
        })
    };
    let refused = send(as_cert(pki(&c), "driver-9"), vote(9)).unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("not a member"),
        "{}",
        refused.message()
    );
    let refused = send(as_cert(pki(&c), "driver-9"), vote(1)).unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = send(as_cert(pki(&c), "executor-exec-1"), vote(1)).unwrap_err();
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "an executor is not a driver"
    );
    let refused = send(as_cert(pki(&c), "client-admin"), vote(1)).unwrap_err();
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "an admin client is not a driver"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        term(&c),
        term_before,
        "a refused vote request changed the term"
    );

    // An executor registering under another executor's id is refused and
    // changes nothing.
    let exec1 = as_cert(pki(&c), "executor-exec-1");
    let register = rt.block_on(async {
        let channel = exec1
            .channel(&address, |e| e.timeout(Duration::from_secs(5)))
            .unwrap();
        ExecutorControlClient::new(channel)
            .register(pb::RegisterRequest {
                executor_id: "exec-2".into(),
                address: "127.0.0.1:1".into(),
                slots: 64,
                build_version: env!("CARGO_PKG_VERSION").into(),
                operators: vec![],
            })
            .await
    });
    let refused = register.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let cluster = c.weir_json(&["cluster"]).unwrap();
    let exec2 = cluster["executors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "exec-2")
        .cloned()
        .unwrap();
    assert_eq!(exec2["address"], c.executors[1].address, "{cluster}");
    // Tasks go to executors from drivers only.
    assert_eq!(
        rt.block_on(call(
            &exec1,
            &c.executors[1].address,
            "/weir.v1.ExecutorService/Deploy",
            None
        )),
        Code::PermissionDenied
    );
    assert_eq!(
        rt.block_on(call(
            &as_cert(pki(&c), "client-admin"),
            &c.executors[1].address,
            "/weir.v1.ExecutorService/FetchShuffle",
            None
        )),
        Code::PermissionDenied
    );
    // An executor's fetch must name the serving executor's current epoch.
    let fetch = rt.block_on(async {
        let channel = exec1
            .channel(&c.executors[1].address, |e| {
                e.timeout(Duration::from_secs(5))
            })
            .unwrap();
        ExecutorServiceClient::new(channel)
            .fetch_shuffle(pb::FetchShuffleRequest {
                job: "any".into(),
                epoch: 12_345,
                ..Default::default()
            })
            .await
    });
    let refused = fetch.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("epoch"), "{}", refused.message());
}

/// Replaces `to` with a copy of `from` by a rename, as cert-manager and
/// kubelet do, so a reader never sees half a file.
fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("rotating");
    fs::copy(from, &tmp).unwrap();
    fs::rename(&tmp, to).unwrap();
}

/// Retries `f` for up to 10 s (files are looked at once a second).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn certificates_cas_and_tokens_rotate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::secure(dir.path(), 1, 2);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let pki = pki(&c).clone();
    let next = Pki::new(
        &dir.path().join("next-ca"),
        1,
        &["exec-1".into(), "exec-2".into()],
    )
    .unwrap();
    let address = c.drivers[0].address.clone();
    let rt = runtime();
    let list = "/weir.v1.WeirClient/List";
    let next_client = as_cert(&next, "client-admin");
    assert_ne!(
        rt.block_on(call(&next_client, &address, list, None)),
        Code::Ok,
        "the next CA is not trusted yet"
    );

    // 1. Every process trusts both CAs: the bundle replaces ca.pem.
    let bundle = dir.path().join("bundle.pem");
    fs::write(
        &bundle,
        [
            fs::read(pki.dir.join("ca.pem")).unwrap(),
            fs::read(next.dir.join("ca.pem")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    replace(&bundle, &pki.dir.join("ca.pem"));
    // A client with a certificate of the next CA, trusting both.
    let next_client = Transport::mutual(std::sync::Arc::new(
        Reloading::load(
            TlsFiles {
                cert: next.dir.join("client-admin.pem"),
                key: next.dir.join("client-admin.key"),
                ca: bundle.clone(),
            },
            None,
        )
        .unwrap(),
    ));
    eventually("a client of the next CA accepted", || {
        rt.block_on(call(&next_client, &address, list, None)) == Code::Ok
    });

    // 2. Each process moves to a certificate of the next CA (key first,
    // then certificate, as a rotation writes them).
    let mut names = vec!["driver-1".to_string()];
    names.extend(c.executors.iter().map(|e| format!("executor-{}", e.id)));
    for name in &names {
        replace(
            &next.dir.join(format!("{name}.key")),
            &pki.dir.join(format!("{name}.key")),
        );
        replace(
            &next.dir.join(format!("{name}.pem")),
            &pki.dir.join(format!("{name}.pem")),
        );
    }
    let only_next = Transport::ca_only(&next.dir.join("ca.pem")).unwrap();
    eventually("the driver presents its new certificate", || {
        rt.block_on(call(&only_next, &address, list, Some(ADMIN_TOKEN))) == Code::Ok
    });

    // 3. A token added to the tokens file works at once.
    let tokens = fs::read_to_string(pki.tokens()).unwrap();
    let added = dir.path().join("tokens.yaml");
    fs::write(
        &added,
        format!(
            "{tokens}- {{ name: rotated, role: viewer, sha256: {} }}\n",
            weir_security::tokens::token_hash("rotated-token")
        ),
    )
    .unwrap();
    replace(&added, Path::new(&pki.tokens()));
    eventually("the new token accepted", || {
        rt.block_on(call(&only_next, &address, list, Some("rotated-token"))) == Code::Ok
    });

    // The processes never restarted, and still run jobs exactly over the
    // rotated certificates (driver to executors, executor to executor).
    let spec = job(dir.path(), "rotated", 20_000);
    c.weir_json(&["submit", &spec]).unwrap();
    c.wait_finished("rotated", Duration::from_secs(120));
    assert_generator_counts(&dir.path().join("rotated-out"), 13, 20_000);
    for e in &c.executors {
        let log = fs::read_to_string(dir.path().join(format!("{}.log", e.id))).unwrap();
        assert!(
            log.contains("TLS certificates reloaded"),
            "{}: no reload\n{log}",
            e.id
        );
        assert_eq!(
            log.matches("executor starting").count(),
            1,
            "{} restarted",
            e.id
        );
    }
    let log = fs::read_to_string(c.driver_log(1)).unwrap();
    assert_eq!(log.matches("driver replica started").count(), 1);
}

/// A job spec of about 870 KiB (the cap is 1 MiB): 110 filters, each with
/// a string literal of 7900 bytes.
fn big_spec(dir: &Path, name: &str) -> String {
    let literal = format!("{name}-{}", "x".repeat(7_900));
    let mut text = format!(
        "name: {name}\nbatch_interval: 1s\nsource:\n  generator: {{ partitions: 1, keys: 3, rate: 0, total: 10 }}\npipeline:\n"
    );
    for _ in 0..110 {
        text.push_str(&format!("  - filter: \"key <> '{literal}'\"\n"));
    }
    text.push_str("sink:\n  noop: {}\n");
    let path = dir.join(format!("{name}.yaml"));
    fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Metadata larger than any one gRPC message (six specs of 870 KiB, over
/// 5 MiB) still reaches a replica that needs a snapshot: the snapshot goes
/// in chunks, and log entries go in batches bounded by bytes.
#[test]
fn a_snapshot_larger_than_a_message_reaches_a_rejoining_replica() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::secure(dir.path(), 3, 0);
    for id in 1..=3 {
        c.start_driver_with(id, &[("WEIR_SNAPSHOT_THRESHOLD", "4")]);
    }
    let leader = c.wait_leader(Duration::from_secs(20));
    for i in 0..6 {
        let spec = big_spec(dir.path(), &format!("big-{i}"));
        c.weir_json(&["submit", &spec]).unwrap();
    }
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    c.remove_and_wipe_driver(victim);
    // More entries after the removal, so the log is compacted past what the
    // rejoining replica could be sent entry by entry.
    for i in 6..8 {
        let spec = big_spec(dir.path(), &format!("big-{i}"));
        c.weir_json(&["submit", &spec]).unwrap();
    }
    c.rejoin_driver(victim);
    if let Err(v) = c.wait_caught_up(victim, Duration::from_secs(60)) {
        let snapshot_lines: Vec<String> = (1..=3)
            .flat_map(|id| {
                fs::read_to_string(c.driver_log(id))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("snapshot") || l.contains("raft peer"))
                    .map(|l| format!("driver {id}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        panic!(
            "replica {victim} did not catch up: {v}\n{}",
            snapshot_lines.join("\n")
        );
    }
    let log = fs::read_to_string(c.driver_log(victim)).unwrap();
    let received = log
        .lines()
        .find(|l| l.contains("snapshot received in chunks"))
        .unwrap_or_else(|| panic!("no chunked snapshot:\n{log}"));
    let bytes: u64 = received
        .split("bytes=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        bytes > 5 * 1024 * 1024,
        "the snapshot was {bytes} bytes: {received}"
    );
    // Every job is still there.
    let jobs = c.weir_json(&["list"]).unwrap();
    assert_eq!(jobs.as_array().map_or(0, Vec::len), 8, "{jobs}");
}
