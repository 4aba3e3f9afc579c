//! HDFS helpers for tests: unique directories on the test HDFS and reading
//! a file sink's output back through `hdfs-native`.

use crate::{parse_sink_file, Row};
use anyhow::{bail, Context};
use hdfs_native::{Client, ClientBuilder};

/// A URL under the test HDFS `base` that no other test run uses:
/// `<base>/weir-it/<name>-<pid>-<nanos>`.
pub fn unique_dir(base: &str, name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}/weir-it/{name}-{}-{nanos}",
        base.trim_end_matches('/'),
        std::process::id()
    )
}

/// Every row of every visible (committed) file of a file sink writing to
/// `url` (`hdfs://host:port/path`), read through `hdfs-native`; file names
/// must follow `batch-<id>-part-<p>.jsonl`. A missing directory has no rows.
pub fn read_file_sink(url: &str) -> anyhow::Result<Vec<Row>> {
    let (authority, path) = split_url(url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = ClientBuilder::new()
            .with_url(&authority)
            .build()
            .with_context(|| format!("HDFS client for {authority}"))?;
        read_dir(&client, &path)
            .await
            .with_context(|| format!("reading the file sink output at {url}"))
    })
}

async fn read_dir(client: &Client, dir: &str) -> anyhow::Result<Vec<Row>> {
    let statuses = match client.list_status(dir, false).await {
        Ok(statuses) => statuses,
        Err(hdfs_native::HdfsError::FileNotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut rows = Vec::new();
    for status in statuses {
        let name = status.path.rsplit('/').next().unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if status.isdir {
            bail!("unexpected directory {name} in sink directory {dir}");
        }
        let reader = client.read(&status.path).await?;
        let bytes = reader.read_range(0, reader.file_length()).await?;
        let text =
            String::from_utf8(bytes.to_vec()).with_context(|| format!("{name}: not UTF-8"))?;
        rows.extend(parse_sink_file(name, &text)?);
    }
    rows.sort_by_key(|r| (r.batch, r.partition));
    Ok(rows)
}

/// `hdfs://authority` and the absolute path of a URL.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let Some(rest) = url.strip_prefix("hdfs://") else {
        bail!("not an hdfs:// URL: {url}");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    Ok((format!("hdfs://{authority}"), path.to_owned()))
}
