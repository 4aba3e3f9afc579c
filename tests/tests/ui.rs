//! The web UI of a running job in headless Chromium (Debian's `chromium`,
//! which the test command installs): the job page's batch table matches
//! `weir batches`, its timeline charts have a point per batch shown and
//! include the newest committed one, a batch's page shows its ranges, and
//! the cluster page its executors. Screenshots of the main pages are saved
//! (into `WEIR_UI_SCREENSHOTS` when set: `docs/images` for the docs).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use weir_tests::cluster::LocalCluster;

/// Debian's headless browser; `None` (the test is skipped) when missing,
/// except under `CI=true`, where that fails the test.
fn chromium(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("chromium"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: chromium is not installed under CI=true; scripts/test.sh installs it");
        }
        eprintln!("SKIPPED {test}: chromium is not installed (apt-get install chromium)");
    }
    found
}

/// Runs headless Chromium on `url` with `args`, a fresh profile, and
/// enough virtual time for the page's script to run.
fn browse(browser: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=2500",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of each cell of each `<tr class="batch">` row of `dom`.
fn batch_rows(dom: &str) -> Vec<Vec<String>> {
    dom.split("<tr class=\"batch\">")
        .skip(1)
        .map(|row| {
            let row = row.split("</tr>").next().unwrap_or_default();
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = cell.split_once('>').map_or("", |(_, r)| r);
                    let inner = inner.split("</td>").next().unwrap_or_default();
                    strip_tags(inner).trim().to_string()
                })
                .collect()
        })
        .collect()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn number(text: &str) -> u64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("a number, got {text:?}"))
}

fn is_png(path: &Path) -> bool {
    fs::read(path).is_ok_and(|b| b.len() > 10_000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn a_running_jobs_pages_in_a_browser_match_weir_batches() {
    let Some(browser) = chromium("a_running_jobs_pages_in_a_browser_match_weir_batches") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 2);
    c.start_all();
    c.wait_leader(Duration::from_secs(30));
    let spec = dir.path().join("clicks.yaml");
    fs::write(
        &spec,
        format!(
            "name: clicks\nbatch_interval: 400ms\nstate_partitions: 4\ncheckpoint_every: 2\n\
             source:\n  generator: {{ partitions: 3, keys: 50, rate: 3000 }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}}, total: {{ sum: value }} }}\n\
             sink:\n  file: {{ path: {} }}\n",
            dir.path().join("out").display()
        ),
    )
    .unwrap();
    c.weir_json(&["submit", &spec.to_string_lossy()]).unwrap();
    c.wait_committed_beyond("clicks", 8, Duration::from_secs(60));

    let base = format!("http://{}", c.drivers[0].http);
    let profile = dir.path().join("chromium");
    let before = c.committed("clicks");
    let dom = browse(
        &browser,
        &profile,
        &format!("{base}/jobs/clicks"),
        &["--dump-dom"],
    );
    let after = c.committed("clicks");
    let batches = c
        .weir_json(&["batches", "clicks", "--limit", "100"])
        .unwrap();
    let by_id: BTreeMap<u64, &serde_json::Value> = batches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["batch_id"].as_u64().unwrap(), b))
        .collect();

    // The batch table: newest first, consecutive, and what weir batches says.
    let rows = batch_rows(&dom);
    assert!(rows.len() >= 8, "{} rows in\n{dom}", rows.len());
    let ids: Vec<u64> = rows.iter().map(|r| number(&r[0])).collect();
    let newest = ids[0];
    assert!(
        (before..=after).contains(&newest),
        "the table's newest batch {newest} was committed while the page was open ({before}..={after})"
    );
    assert!(
        ids.windows(2).all(|w| w[0] == w[1] + 1),
        "consecutive, newest first: {ids:?}"
    );
    for row in &rows {
        let id = number(&row[0]);
        let b = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("batch {id} of the page is not in weir batches"));
        // Cells: batch, committed at, ranges, in, out, skipped, late, lost, phases...
        assert_eq!(number(&row[2]), 3, "batch {id} read 3 ranges");
        assert_eq!(
            number(&row[3]),
            b["records_in"].as_u64().unwrap(),
            "batch {id} in"
        );
        assert_eq!(
            number(&row[4]),
            b["records_out"].as_u64().unwrap(),
            "batch {id} out"
        );
        assert_eq!(
            number(&row[5]),
            b["records_skipped"].as_u64().unwrap(),
            "batch {id} skipped"
        );
    }

    // The timeline: four charts with a point per batch shown, the newest
    // committed one among them.
    let points = dom.matches("<circle class=\"pt\"").count();
    assert_eq!(
        points,
        4 * rows.len(),
        "chart points for {} batches",
        rows.len()
    );
    assert!(
        dom.contains(&format!("<title>batch {newest}: ")),
        "the timeline has batch {newest}"
    );
    assert!(
        dom.contains("/assets/weir.js"),
        "the live refresh script is loaded"
    );

    // A batch's page shows the ranges of its plan; the cluster page the
    // executors.
    let detail = browse(
        &browser,
        &profile,
        &format!("{base}/jobs/clicks/batches/{newest}"),
        &["--dump-dom"],
    );
    for p in 0..3 {
        assert!(
            detail.contains(&format!(">{p}</td>")),
            "partition {p}'s range on batch {newest}'s page"
        );
    }
    let cluster = browse(
        &browser,
        &profile,
        &format!("{base}/cluster"),
        &["--dump-dom"],
    );
    for e in &c.executors {
        assert!(
            cluster.contains(&e.id),
            "executor {} on the cluster page",
            e.id
        );
    }

    // Screenshots of the main pages.
    let shots = std::env::var_os("WEIR_UI_SCREENSHOTS")
        .map_or_else(|| dir.path().join("screenshots"), PathBuf::from);
    fs::create_dir_all(&shots).unwrap();
    for (name, path, height) in [
        ("ui-jobs", "/".to_string(), 700),
        ("ui-job", "/jobs/clicks?batches=40".to_string(), 2200),
        ("ui-batch", format!("/jobs/clicks/batches/{newest}"), 1300),
        ("ui-cluster", "/cluster".to_string(), 800),
    ] {
        let file = shots.join(format!("{name}.png"));
        browse(
            &browser,
            &profile,
            &format!("{base}{path}"),
            &[
                &format!("--screenshot={}", file.display()),
                &format!("--window-size=1280,{height}"),
            ],
        );
        assert!(is_png(&file), "{} is a screenshot", file.display());
    }
    eprintln!("screenshots in {}", shots.display());
}
