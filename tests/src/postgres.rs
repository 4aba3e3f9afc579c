//! PostgreSQL helpers for tests: the dev database's URL and a client.

/// The test database (`WEIR_POSTGRES_URL`, set by `deploy/dev/postgres.sh`
/// through scripts/test.sh). `None` means skip — but under `CI=true` a
/// missing database fails the test instead.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("WEIR_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: WEIR_POSTGRES_URL is not set under CI=true; start PostgreSQL with deploy/dev/postgres.sh start (scripts/test.sh does)")
        }
        _ => {
            eprintln!("SKIPPED {test}: WEIR_POSTGRES_URL is not set; start PostgreSQL with deploy/dev/postgres.sh start");
            None
        }
    }
}

/// A client of `url`.
pub fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("the test database accepts connections")
}

/// A table name no other test run uses (lower case, for SQL).
pub fn unique_table(name: &str) -> String {
    crate::kafka::unique_topic(name)
        .to_lowercase()
        .replace(['-', '.'], "_")
}
