//! HBase helpers for tests: the dev Thrift gateway's address and a client.

use std::time::Duration;
use weir_executor::hbase_thrift::HbaseClient;

/// The test HBase's Thrift gateway (`WEIR_HBASE_THRIFT`, `HOST:PORT`, set
/// by `deploy/dev/hbase.sh` through scripts/test.sh). `None` means skip —
/// but under `CI=true` a missing HBase fails the test instead.
pub fn hbase_thrift(test: &str) -> Option<String> {
    match std::env::var("WEIR_HBASE_THRIFT") {
        Ok(a) if !a.is_empty() => Some(a),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: WEIR_HBASE_THRIFT is not set under CI=true; start HBase with deploy/dev/hbase.sh start (scripts/test.sh does)")
        }
        _ => {
            eprintln!("SKIPPED {test}: WEIR_HBASE_THRIFT is not set; start HBase with deploy/dev/hbase.sh start");
            None
        }
    }
}

/// A client of the gateway at `addr`.
pub fn connect(addr: &str) -> HbaseClient {
    HbaseClient::connect(addr, Duration::from_secs(60))
        .expect("the Thrift gateway accepts connections")
}

/// A table name no other test run uses.
pub fn unique_table(name: &str) -> String {
    crate::postgres::unique_table(name)
}
