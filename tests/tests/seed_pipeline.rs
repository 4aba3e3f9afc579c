//! The seed's pipeline end to end on real services: clicks from Kafka,
//! each enriched with its user's region from a Redis hash (users without
//! one skipped), counted per region, the counts upserted into PostgreSQL
//! and written into HBase, and both tables checked row by row against the
//! counts computed from the input and the Redis data:
//!
//! - under `weir local` killed at each step of the commit protocol: stage
//!   A, after a pre-commit, before and after the driver records its
//!   decision, inside PostgreSQL's transaction (rows written, commit
//!   marker not yet), after the sink's commit and before the driver
//!   records the batch committed;
//! - in a cluster (a driver, two executors) running both jobs at once while
//!   Redis is stopped for 10 s (both jobs degraded, naming Redis, and no
//!   batch committed), PostgreSQL is restarted, and an executor is
//!   SIGKILLed.
//!
//! The second test stops shared dev services, so the two run one after the
//! other, in a test binary of their own.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_tests::cluster::LocalCluster;
use weir_tests::dev::Stopped;
use weir_tests::kafka::{create_topic, kafka_brokers, produce, unique_topic};
use weir_tests::local_job::LocalJob;
use weir_tests::{hbase, postgres, redis};

/// One test at a time: the second stops Redis and PostgreSQL.
static SERIAL: Mutex<()> = Mutex::new(());

const PARTITIONS: i32 = 4;
const USERS: u64 = 60;
const REGIONS: [&str; 5] = ["emea", "amer", "apac", "latam", "anz"];

/// User `u{j}`'s region in Redis; users with `j % 7 == 0` have none.
fn region(j: u64) -> Option<&'static str> {
    (j % 7 != 0).then(|| REGIONS[(j % REGIONS.len() as u64) as usize])
}

/// The services of one run: where they are and the names it uses.
struct Seed {
    brokers: String,
    redis: String,
    /// The Redis URL the jobs use: its password a secret reference.
    job_redis: String,
    pg: String,
    thrift: String,
    topic: String,
    prefix: String,
}

impl Seed {
    fn new(test: &str) -> Option<Seed> {
        let redis = redis::redis_url(test)?;
        let target = redis::RedisTarget::parse(&redis).unwrap();
        let password = target
            .password
            .as_ref()
            .map(|_| "${env:WEIR_REDIS_PASSWORD}");
        let seed = Seed {
            brokers: kafka_brokers(test)?,
            job_redis: target.url_at(&target.address, password),
            redis,
            pg: postgres::postgres_url(test)?,
            thrift: hbase::hbase_thrift(test)?,
            topic: unique_topic("seed-clicks"),
            prefix: unique_topic("seed-profile"),
        };
        create_topic(&seed.brokers, &seed.topic, PARTITIONS);
        Some(seed)
    }

    /// Writes every user's profile hash.
    fn fill_redis(&self) {
        let mut con = redis::connect(&self.redis).unwrap();
        for j in 0..USERS {
            if let Some(r) = region(j) {
                ::redis::cmd("HSET")
                    .arg(format!("{}:u{j}", self.prefix))
                    .arg("region")
                    .arg(r)
                    .arg("tier")
                    .arg(j % 3)
                    .query::<()>(&mut con)
                    .unwrap();
            }
        }
    }

    /// Produces clicks `from..to`: `{"user": "u<i % USERS>", "n": i}`.
    fn produce(&self, from: u64, to: u64) {
        let records: Vec<(i32, String, String)> = (from..to)
            .map(|i| {
                let user = format!("u{}", i % USERS);
                let value = format!(
                    "{{\"user\":\"{user}\",\"url\":\"/p/{}\",\"n\":{i}}}",
                    i % 13
                );
                ((i % PARTITIONS as u64) as i32, user, value)
            })
            .collect();
        produce(&self.brokers, &self.topic, &records);
    }

    /// What each region's row must hold after clicks `0..total`: the
    /// number of clicks and the sum of their `n`.
    fn want(&self, total: u64) -> BTreeMap<String, (i64, i64)> {
        let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for i in 0..total {
            if let Some(r) = region(i % USERS) {
                let e = want.entry(r.to_string()).or_default();
                e.0 += 1;
                e.1 += i as i64;
            }
        }
        want
    }

    /// The job's spec: the seed's steps into `sink`.
    fn spec(&self, name: &str, per_partition: u64, sink: &str) -> String {
        format!(
            "name: {name}\nbatch_interval: 100ms\nstate_partitions: 4\ncheckpoint_every: 2\n\
             source:\n  kafka: {{ brokers: \"{brokers}\", topic: {topic}, start: earliest, \
             max_records_per_partition: {per_partition}, format: json, \
             schema: {{ user: string, url: string, n: bigint }} }}\n\
             pipeline:\n\
             \x20 - lookup:\n\
             \x20     redis: {{ url: \"{redis}\", key: \"'{prefix}:' || user\", \
             fields: {{ region: string, tier: bigint }} }}\n\
             \x20     cache: {{ ttl: 1s, max_entries: 16 }}\n\
             \x20     on_missing: skip\n\
             \x20 - key_by: region\n\
             \x20 - aggregate: {{ clicks: {{}}, n_sum: {{ sum: n }} }}\n\
             sink:\n  {sink}\n",
            brokers = self.brokers,
            topic = self.topic,
            prefix = self.prefix,
            redis = self.job_redis,
        )
    }

    /// A PostgreSQL table for the counts and its sink.
    fn pg_sink(&self) -> (String, String) {
        let table = postgres::unique_table("seed_regions");
        postgres::connect(&self.pg)
            .batch_execute(&format!(
                "CREATE TABLE {table} (key text PRIMARY KEY, clicks bigint NOT NULL, n_sum bigint)"
            ))
            .unwrap();
        let sink = format!(
            "postgres: {{ url: \"${{env:WEIR_POSTGRES_URL}}\", table: {table}, key: [key] }}"
        );
        (table, sink)
    }

    /// An HBase table for the counts and its sink.
    fn hbase_sink(&self) -> (String, String) {
        let table = hbase::unique_table("seed_regions");
        hbase::connect(&self.thrift)
            .create_table(table.as_bytes(), &[(b"f", 1000)])
            .unwrap();
        let sink = format!(
            "hbase: {{ thrift: \"{}\", table: {table}, family: f, row_key: key }}",
            self.thrift
        );
        (table, sink)
    }

    fn pg_rows(&self, table: &str) -> BTreeMap<String, (i64, i64)> {
        postgres::connect(&self.pg)
            .query(&format!("SELECT key, clicks, n_sum FROM {table}"), &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect()
    }

    /// The newest cells of every row; checks that each row's versions are
    /// batch ids, one per batch, with the count growing.
    fn hbase_rows(&self, table: &str) -> BTreeMap<String, (i64, i64)> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut client = hbase::connect(&self.thrift);
        let mut got = BTreeMap::new();
        for r in client.scan(table.as_bytes(), &[b"f"]).unwrap() {
            let key = text(&r.row);
            let columns: Vec<String> = r.columns.iter().map(|(c, _)| text(c)).collect();
            assert_eq!(columns, ["f:clicks", "f:n_sum"], "row {key}'s cells");
            let value = |i: usize| -> i64 { text(&r.columns[i].1.value).parse().unwrap() };
            let versions = client
                .get_ver(table.as_bytes(), &r.row, b"f:clicks", 1000)
                .unwrap();
            let counts: Vec<(i64, i64)> = versions
                .iter()
                .map(|c| (c.timestamp, text(&c.value).parse().unwrap()))
                .collect();
            assert!(
                counts
                    .windows(2)
                    .all(|w| w[0].0 > w[1].0 && w[0].1 > w[1].1),
                "{key}: one version per batch id, newest first, the count growing: {counts:?}"
            );
            assert!(counts.iter().all(|(t, _)| (1..100_000).contains(t)));
            got.insert(key, (value(0), value(1)));
        }
        got
    }
}

#[test]
fn the_seed_flow_is_exact_in_postgres_and_hbase_across_kills_at_each_step() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let test = "the_seed_flow_is_exact_in_postgres_and_hbase_across_kills_at_each_step";
    let Some(seed) = Seed::new(test) else {
        return;
    };
    seed.fill_redis();
    // 24 000 clicks, 1 200 a batch: 20 batches.
    let total = 24_000;
    seed.produce(0, total);
    let want = seed.want(total);
    assert_eq!(want.len(), REGIONS.len());

    let dir = tempfile::tempdir().unwrap();
    let (pg_table, pg_sink) = seed.pg_sink();
    fs::create_dir(dir.path().join("pg")).unwrap();
    let mut job = LocalJob::new(
        &dir.path().join("pg"),
        "seed-pg",
        &seed.spec("seed-pg", 300, &pg_sink),
    );
    job.run_with_crashes(&[
        "stage-a@3",
        "after-precommit@3",
        "before-committing@2",
        "postgres-commit@2",
        "after-committing@2",
        "sink-commit@3",
        "after-committed@1",
    ]);
    assert_eq!(
        seed.pg_rows(&pg_table),
        want,
        "PostgreSQL's rows, region by region"
    );
    assert!(
        job.logs()
            .contains("re-running the batch to produce it again"),
        "a decided batch whose rows died with the process was produced again"
    );

    let (hbase_table, hbase_sink) = seed.hbase_sink();
    fs::create_dir(dir.path().join("hbase")).unwrap();
    let mut job = LocalJob::new(
        &dir.path().join("hbase"),
        "seed-hbase",
        &seed.spec("seed-hbase", 300, &hbase_sink),
    );
    job.run_with_crashes(&[
        "stage-a@3",
        "after-precommit@3",
        "before-committing@2",
        "after-committing@2",
        "sink-commit@3",
        "after-committed@1",
    ]);
    assert_eq!(
        seed.hbase_rows(&hbase_table),
        want,
        "HBase's rows, region by region"
    );
}

/// Waits until `rows()` equals `want` (at most 3 minutes), then checks it
/// still does 2 s later: nothing applied twice after the end.
fn wait_exact(
    what: &str,
    want: &BTreeMap<String, (i64, i64)>,
    c: &LocalCluster,
    rows: impl Fn() -> BTreeMap<String, (i64, i64)>,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = rows();
        if &got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the rows never matched the input\n got {got:?}\nwant {want:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(&rows(), want, "{what}: the rows 2 s later");
}

#[test]
fn the_seed_flow_rides_out_redis_stopped_and_postgres_restarted() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let test = "the_seed_flow_rides_out_redis_stopped_and_postgres_restarted";
    let Some(seed) = Seed::new(test) else {
        return;
    };
    seed.fill_redis();
    let first = 20_000;
    seed.produce(0, first);
    let dir = tempfile::tempdir().unwrap();
    let (pg_table, pg_sink) = seed.pg_sink();
    let (hbase_table, hbase_sink) = seed.hbase_sink();
    let mut c = LocalCluster::new(dir.path(), 1, 2);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    for (name, sink) in [("seed-pg", &pg_sink), ("seed-hbase", &hbase_sink)] {
        let path = dir.path().join(format!("{name}.yaml"));
        // 400 clicks a batch: the jobs are still reading when Redis stops.
        fs::write(&path, seed.spec(name, 100, sink)).unwrap();
        c.weir_json(&["submit", &path.to_string_lossy()]).unwrap();
    }
    c.wait_committed_beyond("seed-pg", 3, Duration::from_secs(60));
    c.wait_committed_beyond("seed-hbase", 3, Duration::from_secs(60));

    // Redis stopped for 10 s: both jobs degraded, naming Redis; no batch
    // commits without its lookups.
    let mut redis_down = Stopped::stop("redis.sh");
    let stopped = Instant::now();
    let mut before = BTreeMap::new();
    for job in ["seed-pg", "seed-hbase"] {
        let s = c.wait_degraded(job, stopped);
        let reason = s["degraded_reason"].as_str().unwrap_or_default();
        assert!(reason.contains("Redis at"), "{job}: {s}");
        assert!(
            !reason.contains(&seed.redis),
            "the reason never shows the URL: {s}"
        );
        before.insert(job, c.committed(job));
    }
    std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
    for (job, at) in &before {
        assert!(
            c.committed(job) <= at + 1,
            "{job}: batches committed while Redis was stopped"
        );
    }
    redis_down.start();
    for job in ["seed-pg", "seed-hbase"] {
        c.wait_committed_beyond(job, before[job] + 2, Duration::from_secs(60));
    }

    // PostgreSQL restarted, more clicks arrive, an executor is SIGKILLed.
    let mut db_down = Stopped::stop("postgres.sh");
    std::thread::sleep(Duration::from_secs(3));
    db_down.start();
    let total = 30_000;
    seed.produce(first, total);
    c.kill_executor(1);
    std::thread::sleep(Duration::from_secs(2));
    c.start_executor(1);

    let want = seed.want(total);
    wait_exact("PostgreSQL", &want, &c, || seed.pg_rows(&pg_table));
    wait_exact("HBase", &want, &c, || seed.hbase_rows(&hbase_table));
    for job in ["seed-pg", "seed-hbase"] {
        let s = c.weir_json(&["status", job]).unwrap();
        assert_eq!(s["state"], "running", "{s}");
        assert_ne!(s["health"], "degraded", "{s}");
        // The lookups of the whole run (one leader): every user's key
        // looked up, in requests of many keys.
        let l = &s["lookups"][0];
        assert_eq!(l["step"], "pipeline[0].lookup", "{s}");
        let keys = l["hits"].as_u64().unwrap() + l["misses"].as_u64().unwrap();
        let requests = l["requests"].as_u64().unwrap();
        assert!(keys >= USERS && requests >= 1 && requests < keys, "{s}");
        let text = c.weir(&["status", job]).unwrap();
        assert!(
            text.contains("lookup pipeline[0].lookup: ") && text.contains("% from the cache"),
            "{text}"
        );
    }
}
