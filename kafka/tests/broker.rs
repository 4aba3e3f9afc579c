//! Against a real broker (deploy/dev/kafka.sh; WEIR_KAFKA_BROKERS).

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::Duration;
use weir_kafka::markers::{self, Marker, COMMITS_TOPIC};
use weir_kafka::{client_config, ensure_topic, TopicOffsets};

mod common;
use common::unique;

fn brokers(test: &str) -> Option<String> {
    match std::env::var("WEIR_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: WEIR_KAFKA_BROKERS is not set under CI")
        }
        _ => {
            eprintln!("SKIPPED {test}: WEIR_KAFKA_BROKERS is not set (deploy/dev/kafka.sh start)");
            None
        }
    }
}

#[test]
fn high_watermark_is_the_last_stable_offset_and_markers_are_found() {
    let Some(b) = brokers("high_watermark_is_the_last_stable_offset") else {
        return;
    };
    let topic = unique("lso");
    ensure_topic(&b, [], &topic, 1, &[]).unwrap();
    let parts = markers::ensure_commits_topic(&b, []).unwrap();
    let job = unique("job");
    let producer: BaseProducer = client_config(&b, [])
        .set("transactional.id", format!("weir-test-{job}"))
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    let lister = TopicOffsets::new(&b, &topic, []).unwrap();
    // committed: 3 records + marker
    producer.begin_transaction().unwrap();
    for i in 0..3 {
        let v = format!("{i}");
        producer
            .send(BaseRecord::<str, str>::to(&topic).payload(&v))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let m = Marker {
        job: job.clone(),
        incarnation: 1,
        partition: 0,
        batch_id: 7,
        records: 3,
    };
    let key = Marker::key(&job, 0);
    let value = m.encode();
    producer
        .send(
            BaseRecord::to(COMMITS_TOPIC)
                .key(&key)
                .payload(&value)
                .partition(markers::control_partition(&job, 0, parts)),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    // The coordinator writes the commit markers just after the commit
    // returns: the found marker must not depend on that race.
    let found =
        markers::last_committed(&b, [], &job, 1, 0, parts, Duration::from_secs(20)).unwrap();
    assert_eq!(found, Some(7));
    let stable = |want: u64| {
        for _ in 0..100 {
            if lister.watermarks().unwrap()[0].high == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("high watermark never reached {want}");
    };
    stable(4); // 3 records and a commit marker
    let w = lister.watermarks().unwrap();
    assert_eq!(w[0].low, 0);
    // open: 2 more records, not committed
    producer.begin_transaction().unwrap();
    for _ in 0..2 {
        producer
            .send(BaseRecord::<str, str>::to(&topic).payload("x"))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let w = lister.watermarks().unwrap();
    assert_eq!(
        w[0].high, 4,
        "an open transaction holds the high watermark back"
    );
    let found =
        markers::last_committed(&b, [], &job, 1, 0, parts, Duration::from_secs(20)).unwrap();
    assert_eq!(found, Some(7));
    assert_eq!(
        markers::last_committed(&b, [], &job, 2, 0, parts, Duration::from_secs(20)).unwrap(),
        None,
        "another incarnation"
    );
    producer.abort_transaction(Duration::from_secs(30)).unwrap();
    stable(7);
}
