//! `source.kafka.report_group`: after each committed batch, its end
//! offsets are committed to a consumer group that only monitoring reads
//! (Burrow, Kafka UI, KEDA), off the batch's path on a thread of the job.
//! Only the newest offsets are kept while a report is in flight: they
//! cover the older ones. A failure is logged and never fails the job.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{debug, warn};
use weir_kafka::{resolve_properties, GroupReporter};
use weir_proto::pb;

/// How often a failing report is logged.
const WARN_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Slot {
    latest: Option<Vec<(u32, u64)>>,
    stop: bool,
}

/// The reporting thread of one job; dropping it stops the thread after the
/// report in flight.
pub struct GroupReport {
    shared: Arc<(Mutex<Slot>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl GroupReport {
    /// The reporter of `job`'s Kafka source, if it names a report group.
    pub fn start(job: &str, source: &pb::KafkaSource) -> Option<GroupReport> {
        if source.report_group.is_empty() {
            return None;
        }
        let shared = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let (name, source, inner) = (job.to_string(), source.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("report-{job}"))
            .spawn(move || run(&name, &source, &inner));
        match thread {
            Ok(thread) => Some(GroupReport {
                shared,
                thread: Some(thread),
            }),
            Err(e) => {
                warn!(job = %job, error = %e, "cannot start the report_group thread; offsets are not reported");
                None
            }
        }
    }

    /// Reports `offsets` (partition, next offset to read) once the
    /// reports before it are done, or instead of them.
    pub fn offer(&self, offsets: Vec<(u32, u64)>) {
        let (slot, wake) = &*self.shared;
        slot.lock().unwrap_or_else(|p| p.into_inner()).latest = Some(offsets);
        wake.notify_one();
    }
}

impl Drop for GroupReport {
    fn drop(&mut self) {
        let (slot, wake) = &*self.shared;
        slot.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(job: &str, source: &pb::KafkaSource, shared: &(Mutex<Slot>, Condvar)) {
    let (slot, wake) = shared;
    let mut reporter: Option<GroupReporter> = None;
    let mut warned: Option<Instant> = None;
    loop {
        let offsets = {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if s.stop {
                    return;
                }
                if let Some(o) = s.latest.take() {
                    break o;
                }
                s = wake.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        };
        let result = match reporter.as_ref() {
            Some(r) => r.report(&offsets),
            None => resolve_properties("source.kafka.properties", &source.properties, "driver")
                .and_then(|props| {
                    GroupReporter::new(
                        &source.brokers,
                        &source.topic,
                        &source.report_group,
                        props.iter(),
                    )
                })
                .and_then(|r| {
                    let done = r.report(&offsets);
                    reporter = Some(r);
                    done
                }),
        };
        match result {
            Ok(()) => debug!(job, group = %source.report_group, "offsets reported"),
            Err(e) => {
                // A new client next time (credentials may have rotated).
                reporter = None;
                if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    warn!(job, group = %source.report_group, error = %e, "cannot report offsets to the report_group (monitoring only; the job goes on)");
                }
            }
        }
    }
}
