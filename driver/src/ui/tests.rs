//! Every page against an in-memory source: what each shows, escaping,
//! charts and tables against the batches given, fragments, bounds and
//! failures.

use super::*;
use std::collections::BTreeMap;
use weir_proto::spec::parse_spec;

/// When batch 1 committed; batch `n` commits `n - 1` seconds later.
const T0: i64 = 1_796_683_727_000;

const SPEC: &str = "name: clicks
batch_interval: 1s
checkpoint_every: 2
state_partitions: 2
source:
  generator: { partitions: 3, keys: 37, rate: 0, total: 1000000, max_records_per_partition: 100, event_time_rate: 1000 }
pipeline:
  - filter: value > 1
  - key_by: key
  - aggregate: { count: {} }
sink:
  file: { path: /tmp/out }
";

/// A source held in memory; `failure` makes every call fail with it.
#[derive(Default)]
struct Memory {
    jobs: Vec<pb::JobStatus>,
    /// Per job, oldest first.
    batches: BTreeMap<String, Vec<pb::BatchCommit>>,
    plans: BTreeMap<(String, u64), pb::BatchPlan>,
    history: BTreeMap<String, Vec<pb::JobRecord>>,
    cluster: Option<pb::ClusterInfo>,
    failure: Option<String>,
}

impl Memory {
    fn fail(&self) -> Result<(), String> {
        self.failure.clone().map_or(Ok(()), Err)
    }
}

impl UiSource for Memory {
    fn jobs(&self) -> Result<Vec<pb::JobStatus>, String> {
        self.fail()?;
        Ok(self.jobs.clone())
    }
    fn job(&self, name: &str) -> Result<Option<pb::JobStatus>, String> {
        self.fail()?;
        Ok(self.jobs.iter().find(|j| j.job == name).cloned())
    }
    fn batches(&self, job: &str, limit: usize) -> Result<Vec<pb::BatchCommit>, String> {
        self.fail()?;
        Ok(self
            .batches
            .get(job)
            .map(|b| b.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }
    fn plan(&self, job: &str, batch_id: u64) -> Result<Option<pb::BatchPlan>, String> {
        self.fail()?;
        Ok(self.plans.get(&(job.to_string(), batch_id)).cloned())
    }
    fn history(&self, job: &str) -> Result<Vec<pb::JobRecord>, String> {
        self.fail()?;
        Ok(self.history.get(job).cloned().unwrap_or_default())
    }
    fn cluster(&self) -> Option<pb::ClusterInfo> {
        self.cluster.clone()
    }
}

fn status(name: &str) -> pb::JobStatus {
    pb::JobStatus {
        job: name.into(),
        state: "running".into(),
        health: "healthy".into(),
        last_committed_batch: 30,
        totals: Some(pb::JobTotals {
            batches: 30,
            records_in: 30_000,
            records_out: 3_000,
            ..Default::default()
        }),
        pending_batch: Some(31),
        fingerprint: "abc123".into(),
        watermark_ms: T0,
        scheduling_delay_ms: 3,
        last_batch_ms: 120,
        overhead_p50_ms: 1.5,
        overhead_p99_ms: 4.0,
        overhead_batches: 30,
        partitions: (0..2)
            .map(|p| pb::PartitionOwner {
                partition: p,
                executor_id: format!("exec-{p}"),
                address: format!("10.0.0.{p}:7100"),
                epoch: 7,
            })
            .collect(),
        lag: (0..3)
            .map(|p| pb::SourceLag {
                partition: p,
                committed: 1_000,
                available: 1_050,
                lag: 50,
            })
            .collect(),
        lag_records: 150,
        lag_listed_at_ms: T0,
        state_sizes: (0..2)
            .map(|p| pb::PartitionSize {
                partition: p,
                keys: 37,
                bytes: 4_096,
                durable_version: 30,
            })
            .collect(),
        state_keys: 74,
        state_bytes: 8_192,
        ..Default::default()
    }
}

/// Batch `id`: 1000 records, a second after the batch before, state
/// checkpointed on even batches.
fn commit(job: &str, id: u64) -> pb::BatchCommit {
    let durable = id - id % 2;
    pb::BatchCommit {
        job: job.into(),
        batch_id: id,
        max_event_time_ms: T0,
        records_in: 1_000,
        records_out: 100,
        records_skipped: 1,
        records_late: 2,
        durable_versions: vec![durable, durable],
        committed_at_ms: T0 + (id as i64 - 1) * 1_000,
        duration_ms: 90,
        times: Some(pb::BatchTimes {
            planned_at_ms: T0 + (id as i64 - 1) * 1_000 - 100,
            scheduling_delay_us: 3_000,
            plan_us: 2_000,
            stage_a_us: 40_000,
            shuffle_us: 5_000,
            stage_b_us: 50_000,
            checkpoint_us: 8_000,
            commit_us: 6_000,
            ranges: 3,
        }),
        ..Default::default()
    }
}

fn plan(job: &str, id: u64) -> pb::BatchPlan {
    pb::BatchPlan {
        job: job.into(),
        batch_id: id,
        ranges: (0..3)
            .map(|p| pb::OffsetRange {
                partition: p,
                start: id * 100,
                end: id * 100 + 100,
            })
            .collect(),
        watermark_ms: T0,
        checkpoint: id % 2 == 0,
        planned_at_ms: T0 + (id as i64 - 1) * 1_000 - 100,
        ..Default::default()
    }
}

fn record(version: u32, spec: pb::JobSpec) -> pb::JobRecord {
    pb::JobRecord {
        spec: Some(spec),
        fingerprint: format!("fp{version}"),
        created_at_ms: T0,
        version,
        updated_at_ms: T0 + i64::from(version) * 60_000,
        ..Default::default()
    }
}

/// Job `clicks` with batches 1 to `batches` (the plans of the last ten
/// kept) and two spec versions; a three-driver cluster seen by its leader.
fn source(batches: u64) -> Memory {
    let mut m = Memory::default();
    let mut s = status("clicks");
    s.last_committed_batch = batches;
    s.pending_batch = Some(batches + 1);
    m.jobs.push(s);
    m.batches.insert(
        "clicks".into(),
        (1..=batches).map(|i| commit("clicks", i)).collect(),
    );
    for i in batches.saturating_sub(9)..=batches + 1 {
        m.plans.insert(("clicks".into(), i), plan("clicks", i));
    }
    let v1 = parse_spec(SPEC).expect("the test spec parses");
    let v2 = parse_spec(&SPEC.replace("batch_interval: 1s", "batch_interval: 2s"))
        .expect("the test spec parses");
    m.history
        .insert("clicks".into(), vec![record(1, v1), record(2, v2)]);
    m.cluster = Some(cluster("leader"));
    m
}

/// Three drivers seen by driver 1, whose role is `role`; driver 2 leads
/// unless driver 1 does.
fn cluster(role: &str) -> pb::ClusterInfo {
    let leader = if role == "leader" { 1 } else { 2 };
    pb::ClusterInfo {
        cluster_id: "prod".into(),
        leader_id: leader,
        drivers: (1..=3)
            .map(|id| pb::DriverInfo {
                id,
                address: format!("driver-{id}:7070"),
                role: if id == 1 {
                    role.into()
                } else if id == leader {
                    "leader".into()
                } else {
                    "follower".into()
                },
                term: if id == 1 { 4 } else { 0 },
                commit_index: if id == 1 { 100 } else { 0 },
                applied_index: if id == 1 { 99 } else { 0 },
                last_contact_ms: if id == 1 { 0 } else { 120 },
            })
            .collect(),
        executors: if role == "leader" {
            (0..2)
                .map(|i| pb::ExecutorInfo {
                    id: format!("exec-{i}"),
                    address: format!("10.0.0.{i}:7100"),
                    epoch: 7,
                    slots: 4,
                    build_version: "0.1.0".into(),
                    health: "alive".into(),
                    last_heartbeat_ms: 250,
                    partitions: vec![format!("clicks/{i}")],
                    operators: vec![],
                })
                .collect()
        } else {
            vec![]
        },
    }
}

fn request(target: &str) -> PageRequest {
    request_by(target, Caller::Open)
}

fn request_by(target: &str, caller: Caller) -> PageRequest {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    PageRequest {
        path: path.into(),
        query: query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                (n.to_string(), v.to_string())
            })
            .collect(),
        caller,
    }
}

/// The response at `target`, which must exist, and its body.
fn get(source: &dyn UiSource, target: &str) -> (u16, String) {
    let page = page(source, &request(target)).unwrap_or_else(|| panic!("{target} is a page"));
    (
        page.status,
        String::from_utf8(page.body).expect("pages are UTF-8"),
    )
}

/// A page that must render with 200.
fn ok(source: &dyn UiSource, target: &str) -> String {
    let (status, body) = get(source, target);
    assert_eq!(status, 200, "{target}:\n{body}");
    body
}

/// The content of the page's `<main>`.
fn main_of(body: &str) -> &str {
    let start = body.find("<main").expect("a main element");
    let open = start + body[start..].find('>').expect("main's tag ends") + 1;
    let end = body.rfind("</main>").expect("main ends");
    &body[open..end]
}

/// The text between `from` and the next `to` after it.
fn section<'a>(body: &'a str, from: &str, to: &str) -> &'a str {
    let start = body
        .find(from)
        .unwrap_or_else(|| panic!("{from} in the page"));
    let rest = &body[start..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

#[test]
fn every_page_renders_in_the_frame() {
    let m = source(30);
    for target in [
        "/",
        "/jobs",
        "/jobs/clicks",
        "/jobs/clicks?batches=10",
        "/jobs/clicks/batches/30",
        "/jobs/clicks/batches/1",
        "/jobs/clicks/batches/31",
        "/jobs/clicks/history",
        "/cluster",
    ] {
        let page = page(&m, &request(target)).expect("a page");
        assert_eq!(page.content_type, "text/html; charset=utf-8", "{target}");
        let body = String::from_utf8(page.body).expect("UTF-8");
        assert_eq!(page.status, 200, "{target}:\n{body}");
        assert!(body.starts_with("<!doctype html>"), "{target}");
        assert!(body.contains("<link rel=\"stylesheet\" href=\"/assets/weir.css\">"));
        // The one script is the embedded file: no inline script, which
        // the port's Content-Security-Policy would block anyway.
        assert_eq!(body.matches("<script").count(), 1, "{target}");
        assert!(body.contains("<script src=\"/assets/weir.js\" defer></script>"));
        assert!(
            body.contains("<a href=\"/cluster\">Cluster</a>"),
            "{target}"
        );
        assert!(body.ends_with("</main>\n</body></html>\n"), "{target}");
    }
    let jobs = ok(&m, "/");
    assert!(jobs.contains("<a href=\"/jobs/clicks\">clicks</a>"));
    assert!(jobs.contains("150"), "the lag");
    assert!(jobs.contains("8.0 KiB"), "the state size");
    let job = ok(&m, "/jobs/clicks");
    for part in [
        "Batch timeline",
        "Input rate",
        "Processing time",
        "Scheduling delay",
        "Total delay",
        "exec-1",
        "10.0.0.1:7100",
        "<tr class=\"lag\">",
        "<a href=\"/jobs/clicks/history\">",
    ] {
        assert!(job.contains(part), "{part} on the job page");
    }
    assert_eq!(
        section(&job, "id=\"state\"", "</table>")
            .matches("<tr class=\"partition\">")
            .count(),
        2
    );
    assert_eq!(
        section(&job, "id=\"lag\"", "</table>")
            .matches("<tr class=\"lag\">")
            .count(),
        3
    );
}

#[test]
fn assets_are_embedded_and_nothing_else_is_under_assets() {
    let m = Memory::default();
    let js = page(&m, &request("/assets/weir.js")).expect("the script");
    assert_eq!(js.content_type, "text/javascript; charset=utf-8");
    let js = String::from_utf8(js.body).expect("UTF-8");
    assert!(js.contains("fragment") && js.contains("visibilitychange"));
    let css = page(&m, &request("/assets/weir.css")).expect("the stylesheet");
    assert_eq!(css.content_type, "text/css; charset=utf-8");
    assert!(page(&m, &request("/assets/other.js")).is_none());
    assert!(page(&m, &request("/assets/../weir.js")).is_none());
}

#[test]
fn text_from_the_data_is_escaped_everywhere() {
    const SCRIPT: &str = "<script>alert(1)</script>";
    let mut m = source(3);
    let mut bad = status(SCRIPT);
    bad.state = "failed".into();
    bad.error = format!("sink refused {SCRIPT}");
    bad.health = "degraded".into();
    bad.degraded_reason = "<img src=x onerror=alert(2)>".into();
    bad.partitions[0].executor_id = SCRIPT.into();
    m.jobs.push(bad);
    m.jobs[0].error = format!("failed: {SCRIPT}");
    m.jobs[0].health = "degraded".into();
    m.jobs[0].degraded_reason = SCRIPT.into();
    m.jobs[0].partitions[1].address = SCRIPT.into();
    if let Some(h) = m.history.get_mut("clicks") {
        if let Some(spec) = h[1].spec.as_mut() {
            spec.name = SCRIPT.into();
        }
        h[1].fingerprint = SCRIPT.into();
    }
    if let Some(c) = m.cluster.as_mut() {
        c.cluster_id = SCRIPT.into();
        c.executors[0].id = SCRIPT.into();
        c.executors[0].partitions.push(SCRIPT.into());
        c.drivers[1].address = SCRIPT.into();
    }
    for target in [
        "/",
        "/jobs/clicks",
        "/jobs/clicks/history",
        "/jobs/clicks/batches/3",
        "/cluster",
    ] {
        let body = ok(&m, target);
        assert_eq!(body.matches("<script").count(), 1, "{target}:\n{body}");
        assert!(!body.contains("<img"), "{target}");
    }
    assert!(ok(&m, "/").contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(ok(&m, "/").contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(ok(&m, "/jobs/clicks/history").contains("&lt;script&gt;"));
    // The name cannot be a job's, so its link leads nowhere.
    assert!(page(&m, &request(&format!("/jobs/{SCRIPT}"))).is_none());
    // A signed-in client's name too.
    let caller = Caller::Client {
        name: SCRIPT.into(),
        role: weir_security::Role::Viewer,
    };
    let body = String::from_utf8(
        page(&m, &request_by("/", caller))
            .expect("the jobs page")
            .body,
    )
    .expect("UTF-8");
    assert_eq!(body.matches("<script").count(), 1);
    assert!(body.contains("action=\"/logout\""));
}

#[test]
fn charts_have_one_point_per_batch_and_the_table_one_row() {
    let m = source(30);
    for (target, shown) in [("/jobs/clicks?batches=20", 20u64), ("/jobs/clicks", 30)] {
        let body = ok(&m, target);
        let charts: Vec<&str> = body.split("<figure class=\"chart\">").skip(1).collect();
        assert_eq!(charts.len(), 5, "four line charts and the phases");
        for chart in &charts[..4] {
            assert_eq!(chart.matches("<circle").count() as u64, shown, "{target}");
        }
        assert_eq!(charts[4].matches("<g class=\"bar\">").count() as u64, shown);
        let table = section(&body, "<table class=\"batches\">", "</table>");
        let rows: Vec<&str> = table.split("<tr class=\"batch\">").skip(1).collect();
        assert_eq!(rows.len() as u64, shown, "{target}");
        // Newest first, exactly the newest `shown` batches.
        for (row, id) in rows.iter().zip((30 - shown + 1..=30).rev()) {
            assert!(
                row.contains(&format!("<a href=\"/jobs/clicks/batches/{id}\">{id}</a>")),
                "batch {id} in {row}"
            );
        }
    }
}

#[test]
fn batch_rows_derive_rate_delays_and_checkpoints() {
    let b1 = commit("j", 1);
    let b2 = commit("j", 2);
    let r = batches::row(&b2, Some(&b1), None, None);
    // 1000 records over the second since batch 1 committed.
    assert!((r.input_rate - 1_000.0).abs() < 1e-9);
    // Stage B's shuffle and checkpoint shown apart from the rest of it;
    // the stages took 90 ms of which A and B account for exactly that.
    assert_eq!(
        r.phases,
        Some([2_000, 40_000, 5_000, 37_000, 8_000, 6_000, 0])
    );
    assert_eq!(r.processing_us, 98_000);
    assert_eq!(r.total_delay_us(), 101_000);
    // Without the plan: batch 2 moved the durable versions.
    assert_eq!(r.checkpoint, Some(true));
    assert_eq!(
        batches::row(&commit("j", 3), Some(&b2), None, None).checkpoint,
        Some(false)
    );
    // The plan's flag wins while the plan is kept.
    assert_eq!(
        batches::row(&b2, Some(&b1), Some(false), None).checkpoint,
        Some(false)
    );
    // Nothing to compare with, or no state at all.
    assert_eq!(batches::row(&b2, None, None, None).checkpoint, None);
    let stateless = pb::BatchCommit {
        durable_versions: vec![],
        ..b2.clone()
    };
    assert_eq!(
        batches::row(&stateless, Some(&b1), Some(true), None).checkpoint,
        None
    );
    // Without the batch before: over the typical time between batches,
    // else over its own processing time.
    let first = batches::row(&b1, None, None, Some(500.0));
    assert!((first.input_rate - 2_000.0).abs() < 1e-9);
    let first = batches::row(&b1, None, None, None);
    assert!((first.input_rate - 1_000.0 * 1_000.0 / 98.0).abs() < 1e-6);
    let (b4, b9) = (commit("j", 4), commit("j", 9));
    assert_eq!(batches::typical_gap_ms(&[&b4, &b9]), Some(5_000.0));
    assert_eq!(batches::typical_gap_ms(&[&b4]), None);
    assert_eq!(batches::typical_gap_ms(&[]), None);
    // An old record without phases.
    let old = pb::BatchCommit {
        times: None,
        ..b2.clone()
    };
    let r = batches::row(&old, Some(&b1), None, None);
    assert_eq!(
        (r.phases, r.processing_us, r.scheduling_delay_us),
        (None, 90_000, None)
    );
}

#[test]
fn a_fragment_is_the_main_content_alone() {
    let m = source(12);
    for target in ["/", "/jobs/clicks", "/jobs/clicks/batches/5", "/cluster"] {
        let whole = ok(&m, target);
        let sep = if target.contains('?') { '&' } else { '?' };
        let fragment = ok(&m, &format!("{target}{sep}fragment=1"));
        assert_eq!(fragment, main_of(&whole), "{target}");
        for frame in ["<html", "<head", "<header", "<script", "<main"] {
            assert!(
                !fragment.contains(frame),
                "{frame} in the fragment of {target}"
            );
        }
    }
    // Pages that change refresh themselves; a committed batch does not.
    assert!(ok(&m, "/jobs/clicks").contains("<main id=\"main\" data-live=\"2000\">"));
    assert!(ok(&m, "/jobs/clicks/batches/5").contains("<main id=\"main\">"));
    assert!(
        ok(&m, "/jobs/clicks/batches/13").contains("data-live"),
        "in flight"
    );
}

#[test]
fn inputs_are_bounded() {
    let m = source(150);
    let rows = |target: &str| ok(&m, target).matches("<tr class=\"batch\">").count();
    assert_eq!(rows("/jobs/clicks?batches=0"), 1);
    assert_eq!(rows("/jobs/clicks?batches=1"), 1);
    assert_eq!(rows("/jobs/clicks?batches=100"), 100);
    assert_eq!(rows("/jobs/clicks?batches=101"), 100);
    assert_eq!(rows("/jobs/clicks?batches=100000"), 100);
    assert_eq!(rows("/jobs/clicks?batches=99999999999999999999999999"), 100);
    assert_eq!(rows("/jobs/clicks?batches=-5"), 100);
    assert_eq!(rows("/jobs/clicks?batches=abc"), 100);
    assert_eq!(rows("/jobs/clicks"), 100);
    for path in [
        "",
        "jobs",
        "/nope",
        "/jobs/",
        "/jobs/clicks/",
        "/jobs/..",
        "/jobs/.hidden",
        "/jobs/-x",
        "/jobs/a b",
        "/jobs/a/b",
        "/jobs/clicks/nope",
        "/jobs/clicks/batches",
        "/jobs/clicks/batches/",
        "/jobs/clicks/batches/abc",
        "/jobs/clicks/batches/-1",
        "/jobs/clicks/batches/+1",
        "/jobs/clicks/batches/0",
        "/jobs/clicks/batches/1/x",
        "/jobs/clicks/batches/99999999999999999999999",
        "/jobs/clicks/history/x",
        "/cluster/x",
    ] {
        assert!(page(&m, &request(path)).is_none(), "{path:?} is no page");
    }
    let long = format!("/jobs/{}", "a".repeat(129));
    assert!(page(&m, &request(&long)).is_none());
    // Well-formed but missing: a 404 page that says what is missing.
    for (target, says) in [
        ("/jobs/other", "There is no job named other."),
        ("/jobs/other/history", "There is no job named other."),
        ("/jobs/other/batches/1", "There is no job named other."),
        (
            "/jobs/clicks/batches/18446744073709551615",
            "has not been planned yet",
        ),
        ("/jobs/clicks/batches/9999", "has not been planned yet"),
    ] {
        let (status, body) = get(&m, target);
        assert_eq!(status, 404, "{target}");
        assert!(body.contains(says), "{target}: {body}");
    }
}

#[test]
fn a_failing_source_gives_a_503_page_with_its_message() {
    let m = Memory {
        failure: Some("sled: <io error>".into()),
        ..source(3)
    };
    for target in [
        "/",
        "/jobs/clicks",
        "/jobs/clicks/history",
        "/jobs/clicks/batches/1",
        "/jobs/clicks?fragment=1",
    ] {
        let (status, body) = get(&m, target);
        assert_eq!(status, 503, "{target}");
        assert!(body.contains("sled: &lt;io error&gt;"), "{target}: {body}");
    }
    // The cluster view is the replica's own and does not fail.
    assert_eq!(get(&m, "/cluster").0, 200);
}

#[test]
fn the_batch_page_shows_ranges_phases_and_durable_versions() {
    let mut m = source(30);
    let body = ok(&m, "/jobs/clicks/batches/30");
    assert_eq!(body.matches("<tr class=\"range\">").count(), 3);
    for part in [
        "stage B checkpoints state",
        "Checkpoint: yes",
        "svg class=\"strip\"",
        "98.0 ms",
        "<a href=\"/jobs/clicks/batches/29\">",
        "<a href=\"/jobs/clicks/batches/31\">",
    ] {
        assert!(body.contains(part), "{part} in\n{body}");
    }
    // An old batch: the plan is gone, which the page says.
    let old = ok(&m, "/jobs/clicks/batches/3");
    assert!(old.contains("is no longer kept") && old.contains("read 3 source ranges"));
    assert!(old.contains("Checkpoint: no"));
    // A record from before phase times.
    if let Some(b) = m.batches.get_mut("clicks") {
        b[1].times = None;
    }
    let body = ok(&m, "/jobs/clicks/batches/2");
    assert!(body.contains("before phase times were recorded"));
    let job = ok(&m, "/jobs/clicks");
    let row = section(&job, "<a href=\"/jobs/clicks/batches/2\">2</a>", "</tr>");
    assert_eq!(row.matches("<td class=\"n\">–</td>").count(), 9, "{row}");
    // The in-flight batch shows its plan.
    let body = ok(&m, "/jobs/clicks/batches/31");
    assert!(body.contains("in flight") && body.contains("<tr class=\"range\">"));
    // A committed batch whose record is gone but whose plan is kept.
    let mut m = source(150);
    m.plans.insert(("clicks".into(), 20), plan("clicks", 20));
    let body = ok(&m, "/jobs/clicks/batches/20");
    assert!(
        body.contains("its commit record is no longer kept"),
        "{body}"
    );
    assert!(!body.contains("in flight") && !body.contains("data-live"));
    assert_eq!(body.matches("<tr class=\"range\">").count(), 3);
}

#[test]
fn the_history_shows_each_change_and_the_spec() {
    let m = source(3);
    let body = ok(&m, "/jobs/clicks/history");
    let v2 = body.find("Version 2").expect("version 2");
    let v1 = body.find("Version 1").expect("version 1");
    assert!(v2 < v1, "newest first");
    assert!(body[v2..v1].contains("current"));
    let change = section(&body, "<tr class=\"change\">", "</tr>");
    for part in ["batch_interval", "1s", "2s", "compatible"] {
        assert!(change.contains(part), "{part} in {change}");
    }
    assert!(body[v1..].contains("Created."));
    assert!(body.contains("value &gt; 1"), "the spec, escaped");
}

#[test]
fn the_cluster_page_marks_the_leader_and_this_replica() {
    let m = source(3);
    let body = ok(&m, "/cluster");
    assert!(body.contains("<tr class=\"driver leader\">"));
    assert!(body.contains("1 (this replica)"));
    assert_eq!(body.matches("<tr class=\"executor\">").count(), 2);
    assert!(!body.contains("alert info"), "the leader needs no notice");

    // A follower says where live health is shown, on every page.
    let mut follower = source(3);
    follower.cluster = Some(cluster("follower"));
    follower.jobs[0].health.clear();
    for target in ["/", "/jobs/clicks", "/cluster"] {
        let body = ok(&follower, target);
        assert!(
            body.contains("is a follower") && body.contains("driver 2 at driver-2:7070"),
            "{target}"
        );
    }
    assert!(ok(&follower, "/").contains("Open the leader's UI"));
    assert!(ok(&follower, "/cluster").contains("Executors register with the leader"));

    // `weir local`: no cluster, no link to one.
    let local = Memory {
        cluster: None,
        ..source(3)
    };
    let body = ok(&local, "/cluster");
    assert!(body.contains("weir local"));
    assert!(!ok(&local, "/").contains("href=\"/cluster\""));
}

#[test]
fn an_empty_replica_renders() {
    let m = Memory::default();
    assert!(ok(&m, "/").contains("No jobs yet"));
    let mut m = source(0);
    m.jobs[0].lag.clear();
    m.jobs[0].partitions.clear();
    m.jobs[0].state_sizes.clear();
    let body = ok(&m, "/jobs/clicks");
    assert!(body.contains("No committed batches yet"));
    assert!(body.contains("Not listed yet"));
    assert!(!body.contains("<figure"));
}

#[test]
fn figures_at_the_edges_of_their_types_render() {
    let mut m = source(3);
    if let Some(b) = m.batches.get_mut("clicks") {
        b[0].committed_at_ms = i64::MIN;
        b[1].batch_id = u64::MAX;
        b[1].duration_ms = u64::MAX;
        b[1].records_in = u64::MAX;
        b[1].times = Some(pb::BatchTimes {
            planned_at_ms: i64::MAX,
            scheduling_delay_us: u64::MAX,
            plan_us: u64::MAX,
            stage_a_us: u64::MAX,
            shuffle_us: u64::MAX,
            stage_b_us: u64::MAX,
            checkpoint_us: u64::MAX,
            commit_us: u64::MAX,
            ranges: u32::MAX,
        });
        b[2].committed_at_ms = i64::MAX;
    }
    m.jobs[0].last_committed_batch = u64::MAX;
    m.jobs[0].pending_batch = None;
    m.jobs[0].watermark_ms = i64::MIN;
    m.jobs[0].lag_listed_at_ms = i64::MIN;
    m.jobs[0].degraded_since_ms = i64::MAX;
    m.jobs[0].health = "degraded".into();
    for target in [
        "/",
        "/jobs/clicks",
        "/jobs/clicks/batches/18446744073709551615",
        "/jobs/clicks/batches/3",
    ] {
        ok(&m, target);
    }
}
