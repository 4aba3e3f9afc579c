//! The wire codec, the log bridge and config validation.

use raft::prelude::{Entry, Message, MessageType};

use crate::raft::{decode_message, encode_message, tracing_logger, RaftConfig};

#[test]
fn messages_round_trip_through_the_raft_codec() {
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgAppend);
    msg.from = 1;
    msg.to = 2;
    msg.term = 7;
    let mut e = Entry::default();
    e.index = 5;
    e.term = 7;
    e.data = b"payload".to_vec().into();
    msg.mut_entries().push(e);
    let bytes = encode_message(&msg).unwrap();
    assert_eq!(decode_message(&bytes).unwrap(), msg);
    assert!(decode_message(&[0xff, 0xff, 0xff]).is_err());
}

#[test]
fn slog_records_reach_tracing_without_panicking() {
    let logger = tracing_logger().new(slog::o!("raft_id" => 3u64));
    slog::info!(logger, "became leader"; "term" => 4u64);
    slog::crit!(logger, "critical {}", 1);
    slog::trace!(logger, "trace");
}

#[test]
fn config_defaults_validate_and_bad_values_are_refused() {
    let config = RaftConfig::default();
    assert_eq!((config.election_tick, config.heartbeat_tick), (10, 2));
    config.validate(1).unwrap();
    assert!(config.validate(0).is_err());
    let bad = RaftConfig {
        election_tick: 2,
        heartbeat_tick: 2,
        ..RaftConfig::default()
    };
    assert!(bad.validate(1).is_err());
    let bad = RaftConfig {
        snapshot_threshold: 0,
        ..RaftConfig::default()
    };
    assert!(bad.validate(1).is_err());
    let raft = config.to_raft(1, 0);
    assert!(raft.check_quorum && raft.pre_vote);
}
