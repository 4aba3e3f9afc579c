//! A `weir-driver` process type-checks a whole spec at submit, whoever
//! submits it: a gRPC client that skips the CLI's own check gets
//! `INVALID_ARGUMENT` naming the step, and nothing is stored.

use std::time::Duration;
use tonic::Code;
use weir_proto::pb;
use weir_tests::cluster::LocalCluster;

#[test]
fn a_driver_refuses_a_spec_that_does_not_type_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 0);
    c.start_driver(1);
    c.wait_leader(Duration::from_secs(20));
    let spec = weir_proto::spec::parse_spec(
        "name: typo\nsource:\n  generator: { partitions: 1, keys: 3, rate: 0, total: 10 }\n\
         pipeline:\n  - filter: \"valeu > 1\"\nsink:\n  noop: {}\n",
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client =
            weir::remote::connect(
                &c.drivers[0].address,
                Duration::from_secs(10),
                &weir::remote::Access::insecure(),
            )
            .unwrap();
        for dry_run in [true, false] {
            let e = client
                .submit(pb::SubmitRequest {
                    spec: Some(spec.clone()),
                    dry_run,
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}\n{}", c.logs());
            assert!(
                e.message().starts_with(
                    "invalid job spec typo: pipeline[0].filter: unknown column 'valeu' in \"valeu > 1\""
                ),
                "{}",
                e.message()
            );
        }
        let jobs = client.list(pb::ListRequest {}).await.unwrap().into_inner();
        assert!(jobs.jobs.is_empty(), "{jobs:?}");
        let e = client
            .history(pb::HistoryRequest { job: "typo".into() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    });
}
