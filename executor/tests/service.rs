//! The executor service started in-process on port 0 against a fake pair
//! of drivers: a follower that points at the leader, and the leader. The
//! executor must find the leader, and its tasks must be fenced by epoch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use weir_executor::config::Config;
use weir_executor::FailureClass;
use weir_proto::pb::executor_control_server::{ExecutorControl, ExecutorControlServer};
use weir_proto::pb::executor_service_client::ExecutorServiceClient;
use weir_proto::pb::{
    self, HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse,
};
use weir_proto::wire;

/// A driver that leads (answers with `epoch`) or points at `leader`.
struct FakeDriver {
    leader: Option<String>,
    epoch: u64,
    registrations: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl ExecutorControl for FakeDriver {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        if let Some(l) = &self.leader {
            return Err(wire::not_leader(Some(l)));
        }
        let r = request.into_inner();
        assert_eq!(r.build_version, env!("CARGO_PKG_VERSION"));
        assert!(r.operators.is_empty());
        self.registrations.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(RegisterResponse {
            epoch: self.epoch,
            heartbeat_timeout_ms: 3_000,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        if request.get_ref().epoch != self.epoch {
            return Err(Status::failed_precondition("stale epoch"));
        }
        Ok(Response::new(HeartbeatResponse {}))
    }
}

async fn serve_driver(driver: FakeDriver) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ExecutorControlServer::new(driver))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_leader_and_fences_tasks_by_epoch() {
    let registrations = Arc::new(AtomicU64::new(0));
    let leader = serve_driver(FakeDriver {
        leader: None,
        epoch: 7,
        registrations: registrations.clone(),
    })
    .await;
    let follower = serve_driver(FakeDriver {
        leader: Some(leader.clone()),
        epoch: 0,
        registrations: registrations.clone(),
    })
    .await;
    let state = tempfile::tempdir().unwrap();
    let config = Config {
        id: "e1".into(),
        listen: "127.0.0.1:0".into(),
        drivers: vec![follower],
        state_root: state.path().to_string_lossy().into_owned(),
        slots: 1,
        heartbeat_interval: Duration::from_millis(200),
        insecure: true,
        ..Config::default()
    };
    config.validate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(weir_executor::service::run(config, listener, async move {
        let _ = stopped.await;
    }));
    for _ in 0..100 {
        if registrations.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        registrations.load(Ordering::SeqCst),
        1,
        "registered once, with the leader"
    );

    let mut client = ExecutorServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let record = |yaml: &str| {
        let spec = weir_proto::spec::parse_spec(yaml).unwrap();
        pb::JobRecord {
            fingerprint: weir_proto::spec::fingerprint(&spec),
            spec: Some(spec),
            created_at_ms: 0,
            ..Default::default()
        }
    };
    let job = record(
        "name: j\nstate_partitions: 1\nsource:\n  generator: { partitions: 1, keys: 3, rate: 0, total: 10 }\n\
         pipeline:\n  - key_by: key\n  - aggregate: { n: {} }\nsink:\n  noop: {}\n",
    );
    // The driver counted the registration before the executor read its
    // answer: wait until the executor holds epoch 7.
    let mut accepted = false;
    for _ in 0..250 {
        let r = client
            .deploy(pb::DeployRequest {
                epoch: 7,
                job: Some(job.clone()),
            })
            .await;
        if r.is_ok() {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(accepted, "the executor never accepted its epoch 7");
    let stale = client
        .deploy(pb::DeployRequest {
            epoch: 6,
            job: Some(job),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    // "stale epoch 6, current 7", or, when a loaded machine delayed the
    // heartbeat past the lease, "stale epoch 6: ... lease expired": fenced
    // either way.
    assert!(
        stale.message().starts_with("stale epoch 6"),
        "{}",
        stale.message()
    );
    assert_eq!(
        wire::class(&stale),
        None,
        "an epoch rejection is no task error"
    );

    // A task error arrives with its failure class.
    let missing = client
        .stage_a(pb::StageARequest {
            epoch: 7,
            task: Some(pb::StageATask {
                job: "nope".into(),
                batch_id: 1,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(wire::class(&missing), Some(FailureClass::Internal));
    assert!(missing.message().contains("job nope is not deployed"));

    // Stage A keeps its blocks here; they are served as Arrow IPC.
    client
        .stage_a(pb::StageARequest {
            epoch: 7,
            task: Some(pb::StageATask {
                job: "j".into(),
                batch_id: 1,
                range: Some(pb::OffsetRange {
                    partition: 0,
                    start: 0,
                    end: 10,
                }),
                watermark_ms: i64::MIN,
                replay: false,
            }),
        })
        .await
        .unwrap();
    let fetch = |batch_id, end| pb::FetchShuffleRequest {
        job: "j".into(),
        batch_id,
        source_partition: 0,
        partition: 0,
        start: 0,
        end,
        watermark_ms: i64::MIN,
        epoch: 7,
    };
    let mut stream = client
        .fetch_shuffle(fetch(1, 10))
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        bytes.extend(chunk.data);
    }
    let block = weir_executor::shuffle::ipc::decode(&bytes, 1).unwrap();
    assert_eq!(
        block.keys.len(),
        3,
        "three keys in the only state partition"
    );
    assert_eq!(block.slots.iter().sum::<u64>(), 10);
    let gone = client.fetch_shuffle(fetch(2, 10)).await.unwrap_err();
    assert_eq!(wire::missing_shuffle(&gone), Some(0));
    // Another plan's range of the same batch is not this output.
    let other = client.fetch_shuffle(fetch(1, 9)).await.unwrap_err();
    assert_eq!(wire::missing_shuffle(&other), Some(0));
    // A fetch planned for another incarnation gets nothing.
    let stale = client
        .fetch_shuffle(pb::FetchShuffleRequest {
            epoch: 6,
            ..fetch(1, 10)
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition, "{stale:?}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
