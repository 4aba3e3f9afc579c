//! Lookup steps against a real Redis (`WEIR_REDIS_URL`): records enriched
//! from hashes and JSON strings checked row by row against what the test
//! wrote to Redis, each `on_missing`, a wrong password failing the job with
//! Redis's reason, and an outage (a proxy in front of Redis cut for a
//! while) making the job degraded, then exact once Redis is back.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use weir_tests::cluster::LocalCluster;
use weir_tests::kafka::unique_topic;
use weir_tests::read_file_sink;
use weir_tests::redis::{connect, redis_url, Proxy, RedisTarget};

/// Generator keys `k0` .. `k19`; keys `k{i}` with `i % 5 == 0` are not in
/// Redis.
const KEYS: u64 = 20;

fn present(i: u64) -> bool {
    i % 5 != 0
}

/// What the test writes for key `k{i}`.
fn name(i: u64) -> String {
    format!("name-{i}")
}

/// Writes a hash `{prefix}:k{i}` and a JSON string `{prefix}:json:k{i}`
/// for every present key.
fn fill(url: &str, prefix: &str) {
    let mut con = connect(url).unwrap();
    for i in (0..KEYS).filter(|i| present(*i)) {
        let hash = format!("{prefix}:k{i}");
        redis::cmd("HSET")
            .arg(&hash)
            .arg("name")
            .arg(name(i))
            .arg("weight")
            .arg(i * 10)
            .arg("ratio")
            .arg(i as f64 / 4.0)
            .arg("even")
            .arg(if i % 2 == 0 { "true" } else { "false" })
            .query::<()>(&mut con)
            .unwrap();
        redis::cmd("EXPIRE")
            .arg(&hash)
            .arg(3600)
            .query::<()>(&mut con)
            .unwrap();
        let json = serde_json::json!({ "name": name(i), "weight": i * 10 }).to_string();
        redis::cmd("SET")
            .arg(format!("{prefix}:json:k{i}"))
            .arg(json)
            .arg("EX")
            .arg(3600)
            .query::<()>(&mut con)
            .unwrap();
    }
}

/// A job over the generator with `pipeline` (steps, one per line).
fn write_spec(dir: &Path, name: &str, total: u64, rate: u64, pipeline: &str) -> String {
    let spec = dir.join(format!("{name}.yaml"));
    fs::write(
        &spec,
        format!(
            "name: {name}\nbatch_interval: 200ms\nstate_partitions: 2\n\
             source:\n  generator: {{ partitions: 2, keys: {KEYS}, rate: {rate}, total: {total}, max_records_per_partition: 400 }}\n\
             pipeline:\n{pipeline}sink:\n  file: {{ path: {} }}\n",
            dir.join(name).display()
        ),
    )
    .unwrap();
    spec.to_string_lossy().into_owned()
}

/// The key index of a generator row (`"k7"` → 7).
fn index(row: &Value) -> u64 {
    row["key"].as_str().unwrap()[1..].parse().unwrap()
}

/// Waits until `job` is `finished` or `failed`; returns its status.
fn wait_done(c: &LocalCluster, job: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = c.weir_json(&["status", job]).unwrap_or_default();
        if s["state"] == "finished" || s["state"] == "failed" {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{job} still running: {s}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The URL the jobs use: the test Redis, its password read from a file
/// through a secret reference.
fn job_url(target: &RedisTarget, address: &str, dir: &Path) -> String {
    match &target.password {
        Some(p) => {
            let file = dir.join("redis-password");
            fs::write(&file, format!("{p}\n")).unwrap();
            target.url_at(address, Some(&format!("${{file:{}}}", file.display())))
        }
        None => target.url_at(address, None),
    }
}

/// Checks a hash lookup's output row by row: every generator record once,
/// with the fields the test wrote for its key, NULL for a missing key.
fn check_hash_rows(rows: &[weir_tests::Row], total: u64) {
    let mut seen = BTreeSet::new();
    for r in rows {
        let v = &r.value;
        let g = v["value"].as_u64().unwrap();
        assert!(seen.insert(g), "record {g} twice: {v}");
        let i = index(v);
        assert_eq!(i, g % KEYS, "{v}");
        if present(i) {
            assert_eq!(v["name"], name(i), "{v}");
            assert_eq!(v["weight"].as_i64(), Some(i as i64 * 10), "{v}");
            assert_eq!(v["ratio"].as_f64(), Some(i as f64 / 4.0), "{v}");
            assert_eq!(v["even"].as_bool(), Some(i % 2 == 0), "{v}");
        } else {
            for f in ["name", "weight", "ratio", "even"] {
                assert!(v[f].is_null(), "{f} of a missing key: {v}");
            }
        }
    }
    assert_eq!(seen.len() as u64, total, "records in the output");
}

#[test]
fn lookups_add_the_values_of_redis_hashes_and_json_strings() {
    let test = "lookups_add_the_values_of_redis_hashes_and_json_strings";
    let Some(url) = redis_url(test) else {
        return;
    };
    let target = RedisTarget::parse(&url).unwrap();
    let prefix = unique_topic("weir-lookup");
    fill(&url, &prefix);
    let dir = tempfile::tempdir().unwrap();
    let jurl = job_url(&target, &target.address, dir.path());
    // A lookup of `{prefix}{infix}` + the record's key; `redis` and `more`
    // go into the step's `redis:` and outer maps.
    let lookup = |infix: &str, fields: &str, redis: &str, more: &str| {
        format!(
            "  - lookup: {{ redis: {{ url: \"{jurl}\", key: \"'{prefix}:{infix}' || key\", fields: {{ {fields} }}{redis} }}{more} }}\n"
        )
    };
    let all = "name: string, weight: bigint, ratio: double, even: boolean";
    let total = 4_000;
    let mut c = LocalCluster::new(dir.path(), 1, 1);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    // Hashes, NULL for missing keys, through a cache smaller than the keys.
    let hashes = write_spec(
        dir.path(),
        "hashes",
        total,
        0,
        &lookup("", all, "", ", cache: { ttl: 1m, max_entries: 8 }"),
    );
    // JSON strings; records with a missing key are skipped.
    let json = write_spec(
        dir.path(),
        "json",
        total,
        0,
        &lookup(
            "json:",
            "name: string, weight: bigint",
            ", hash: false",
            ", on_missing: skip",
        ),
    );
    // Before the stateful operator: a running sum per looked-up name.
    let summed = write_spec(
        dir.path(),
        "summed",
        total,
        0,
        &format!(
            "{}  - key_by: name\n  - aggregate: {{ n: {{}}, total: {{ sum: weight }} }}\n",
            lookup(
                "",
                "name: string, weight: bigint",
                "",
                ", cache: {}, on_missing: skip"
            )
        ),
    );
    let failing = write_spec(
        dir.path(),
        "failing",
        total,
        0,
        &lookup("", "name: string", "", ", on_missing: fail"),
    );
    for spec in [&hashes, &json, &summed, &failing] {
        c.weir_json(&["submit", spec]).unwrap();
    }

    let s = wait_done(&c, "hashes", Duration::from_secs(120));
    assert_eq!(s["state"], "finished", "{s}\n{}", c.logs());
    check_hash_rows(&read_file_sink(&dir.path().join("hashes")).unwrap(), total);

    let s = wait_done(&c, "json", Duration::from_secs(120));
    assert_eq!(s["state"], "finished", "{s}\n{}", c.logs());
    let rows = read_file_sink(&dir.path().join("json")).unwrap();
    let want: BTreeSet<u64> = (0..total).filter(|g| present(g % KEYS)).collect();
    let got: BTreeSet<u64> = rows
        .iter()
        .map(|r| r.value["value"].as_u64().unwrap())
        .collect();
    assert_eq!(got, want, "the records of present keys");
    assert_eq!(rows.len(), want.len(), "each once");
    for r in &rows {
        let i = index(&r.value);
        assert_eq!(r.value["name"], name(i), "{}", r.value);
        assert_eq!(r.value["weight"].as_i64(), Some(i as i64 * 10));
    }
    assert_eq!(
        s["totals"]["records_skipped"].as_u64(),
        Some(total - want.len() as u64),
        "records of missing keys are counted as skipped: {s}"
    );

    let s = wait_done(&c, "summed", Duration::from_secs(120));
    assert_eq!(s["state"], "finished", "{s}\n{}", c.logs());
    let rows = read_file_sink(&dir.path().join("summed")).unwrap();
    let mut latest: BTreeMap<String, Value> = BTreeMap::new();
    for r in rows {
        latest.insert(r.value["key"].as_str().unwrap().to_string(), r.value);
    }
    let per_key = total / KEYS;
    let want: BTreeMap<String, (u64, u64)> = (0..KEYS)
        .filter(|i| present(*i))
        .map(|i| (name(i), (per_key, per_key * i * 10)))
        .collect();
    assert_eq!(
        latest.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, (n, sum)) in want {
        assert_eq!(latest[&k]["n"].as_u64(), Some(n), "{k}");
        assert_eq!(latest[&k]["total"].as_u64(), Some(sum), "{k}");
    }

    let s = wait_done(&c, "failing", Duration::from_secs(120));
    assert_eq!(s["state"], "failed", "{s}");
    let error = s["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "key \"{prefix}:k0\" is not in the store (on_missing: fail)"
        )) || error.contains(&format!("key \"{prefix}:k5\" is not in the store")),
        "{error}"
    );
    assert!(error.contains("pipeline[0].lookup"), "{error}");
}

#[test]
fn a_wrong_password_fails_the_job_with_redis_s_reason() {
    let test = "a_wrong_password_fails_the_job_with_redis_s_reason";
    let Some(url) = redis_url(test) else {
        return;
    };
    let target = RedisTarget::parse(&url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong = target.url_at(&target.address, Some("not-the-password"));
    let mut c = LocalCluster::new(dir.path(), 1, 1);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let spec = write_spec(
        dir.path(),
        "wrongpass",
        1_000,
        0,
        &format!("  - lookup: {{ redis: {{ url: \"{wrong}\", key: key, fields: {{ name: string }} }} }}\n"),
    );
    c.weir_json(&["submit", &spec]).unwrap();
    let s = wait_done(&c, "wrongpass", Duration::from_secs(60));
    assert_eq!(s["state"], "failed", "{s}");
    let error = s["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "Redis at {} refused the client: AUTH refused",
            target.address
        )),
        "{error}"
    );
    if target.password.is_some() {
        assert!(error.contains("WRONGPASS"), "Redis's own reason: {error}");
    }
    assert!(!error.contains("not-the-password"), "{error}");
    assert!(
        read_file_sink(&dir.path().join("wrongpass"))
            .unwrap()
            .is_empty(),
        "nothing published"
    );
    if target.password.is_none() {
        return;
    }
    // No password where Redis needs one: refused by the first read.
    let spec = write_spec(
        dir.path(),
        "nopass",
        1_000,
        0,
        &format!(
            "  - lookup: {{ redis: {{ url: \"{}\", key: key, fields: {{ name: string }} }} }}\n",
            target.url_at(&target.address, None)
        ),
    );
    c.weir_json(&["submit", &spec]).unwrap();
    let s = wait_done(&c, "nopass", Duration::from_secs(60));
    assert_eq!(s["state"], "failed", "{s}");
    let error = s["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("refused the client: NOAUTH"),
        "Redis's own reason: {error}"
    );
}

#[test]
fn a_redis_outage_degrades_the_job_which_then_completes_exactly() {
    let test = "a_redis_outage_degrades_the_job_which_then_completes_exactly";
    let Some(url) = redis_url(test) else {
        return;
    };
    let target = RedisTarget::parse(&url).unwrap();
    let prefix = unique_topic("weir-lookup-outage");
    fill(&url, &prefix);
    let proxy = Proxy::start(&target.address).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jurl = job_url(&target, &proxy.address, dir.path());
    let mut c = LocalCluster::new(dir.path(), 1, 1);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    // 2000 records a second for 12 s: the outage falls in the middle.
    let total = 24_000;
    let spec = write_spec(
        dir.path(),
        "outage",
        total,
        2_000,
        &format!(
            "  - lookup: {{ redis: {{ url: \"{jurl}\", key: \"'{prefix}:' || key\", fields: {{ name: string, weight: bigint, ratio: double, even: boolean }} }}, cache: {{ ttl: 1s, max_entries: 4 }} }}\n"
        ),
    );
    c.weir_json(&["submit", &spec]).unwrap();
    c.wait_committed_beyond("outage", 3, Duration::from_secs(60));

    proxy.cut();
    let cut = Instant::now();
    let degraded = c.wait_degraded("outage", cut);
    let reason = degraded["degraded_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("Redis at {} is unavailable", proxy.address)),
        "{degraded}"
    );
    let before = c.committed("outage");
    std::thread::sleep(Duration::from_secs(8).saturating_sub(cut.elapsed()));
    assert!(
        c.committed("outage") <= before + 1,
        "batches committed while Redis was unreachable"
    );
    proxy.restore();

    let s = wait_done(&c, "outage", Duration::from_secs(180));
    assert_eq!(s["state"], "finished", "{s}\n{}", c.logs());
    assert_ne!(s["health"], "degraded", "{s}");
    check_hash_rows(&read_file_sink(&dir.path().join("outage")).unwrap(), total);
}
