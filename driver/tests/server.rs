//! A driver started in-process with `weir_driver::server::run` on port 0:
//! it leads its group of one, takes a job over gRPC, refuses a spec that
//! does not type-check, and stops when its shutdown future completes. A
//! driver started again on the same data directory has the job.

use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;
use weir_driver::config::{DriverArgs, DriverConfig};
use weir_driver::server::ServerError;
use weir_proto::pb;
use weir_proto::pb::weir_client_client::WeirClientClient;

/// A driver running in this process.
struct Driver {
    client: WeirClientClient<Channel>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), ServerError>>,
}

impl Driver {
    /// Starts replica 1 of a one-replica group on a free port and waits
    /// until it leads.
    async fn start(data_dir: &Path) -> Driver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let config = DriverConfig::load(DriverArgs {
            id: Some(1),
            listen: Some(address.clone()),
            data_dir: Some(data_dir.to_path_buf()),
            cluster_id: Some("test".into()),
            insecure: true,
            ..Default::default()
        })
        .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(weir_driver::server::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let mut client = match WeirClientClient::connect(format!("http://{address}")).await {
            Ok(c) => c,
            Err(e) if server.is_finished() => {
                panic!("{e}: the driver stopped: {:?}", server.await.unwrap())
            }
            Err(e) => panic!("{e}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = client
                .cluster(pb::ClusterRequest {})
                .await
                .unwrap()
                .into_inner();
            if info.leader_id == 1 && info.drivers.iter().any(|d| d.role == "leader") {
                break;
            }
            assert!(Instant::now() < deadline, "no leader: {info:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Driver {
            client,
            stop,
            server,
        }
    }

    /// Completes the shutdown future and waits for `run` to return. A job
    /// thread that began to deploy before the shutdown waits for an
    /// executor first (`RemoteOptions::wait_for_executors`, 10 s): there
    /// are none here.
    async fn shut_down(self) {
        drop(self.client);
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.server)
            .await
            .expect("run returns after its shutdown future completes")
            .unwrap()
            .unwrap();
    }
}

fn spec(filter: &str) -> pb::JobSpec {
    weir_proto::spec::parse_spec(&format!(
        "name: counts\nstate_partitions: 2\n\
         source:\n  generator: {{ partitions: 1, keys: 3, rate: 0, total: 10 }}\n\
         pipeline:\n  - filter: \"{filter}\"\n  - key_by: key\n  - aggregate: {{ n: {{}} }}\nsink:\n  noop: {{}}\n"
    ))
    .unwrap()
}

fn submit(spec: pb::JobSpec) -> pb::SubmitRequest {
    pb::SubmitRequest {
        spec: Some(spec),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_in_process_takes_a_job_and_stops_on_its_shutdown_future() {
    let dir = tempfile::tempdir().unwrap();
    let mut driver = Driver::start(dir.path()).await;

    let e = driver
        .client
        .submit(submit(spec("valeu > 1")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .starts_with("invalid job spec counts: pipeline[0].filter: unknown column 'valeu'"),
        "{}",
        e.message()
    );
    let listed = driver.client.list(pb::ListRequest {}).await.unwrap();
    assert!(listed.into_inner().jobs.is_empty());

    let r = driver
        .client
        .submit(submit(spec("value > 1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.job.as_str(), r.verdict.as_str(), r.version),
        ("counts", "new", 1)
    );
    driver.shut_down().await;

    // The job is in the metadata the next driver on this directory reads.
    let mut driver = Driver::start(dir.path()).await;
    let versions = driver
        .client
        .history(pb::HistoryRequest {
            job: "counts".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].fingerprint, r.fingerprint);
    driver.shut_down().await;
}
