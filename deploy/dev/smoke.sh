#!/usr/bin/env bash
# Check that the dev services started by services.sh really work:
#   Kafka: create a topic, list it, produce 3 records, consume them back (also
#          over the SASL_SSL listener with SCRAM-SHA-512), delete it.
#   HDFS:  mkdir, put a file, list it, read it back, delete it.
#   Redis, PostgreSQL, HBase: their scripts' `check` (redis.sh check: PING
#          with and without the password, MGET, HMGET; postgres.sh check:
#          SELECT 1 and an upsert as weir, a wrong password refused;
#          hbase.sh check: a table created, versioned cells written and read
#          back, and deleted, through the Thrift gateway).
# Exits non-zero on the first failure.
#
#   deploy/dev/smoke.sh [kafka|hdfs|redis|postgres|hbase]...
#       (default: $WEIR_DEV_SERVICES, as services.sh, else all five)
set -euo pipefail

SERVICE=smoke
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_SH="$DEV_SCRIPTS_DIR/kafka.sh"
HDFS_SH="$DEV_SCRIPTS_DIR/hdfs.sh"
TAG="weir-smoke-$(date +%s)-$$"

smoke_kafka() {
    is_running kafka || die "kafka is not running (start it with deploy/dev/kafka.sh start)"
    local brokers
    brokers="$(sed -n 's/^WEIR_KAFKA_BROKERS=//p' "$(env_file kafka)")"
    [[ -n "$brokers" ]] || die "no WEIR_KAFKA_BROKERS in $(env_file kafka)"
    local topic="$TAG"
    info "kafka: create topic $topic on $brokers"
    "$KAFKA_SH" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" \
        --create --topic "$topic" --partitions 2 --replication-factor 1
    "$KAFKA_SH" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" \
        --list | grep -qx "$topic" || die "kafka: topic $topic not listed"
    info "kafka: produce 3 records"
    printf 'one\ntwo\nthree\n' | "$KAFKA_SH" tool org.apache.kafka.tools.ConsoleProducer \
        --bootstrap-server "$brokers" --topic "$topic"
    info "kafka: consume them back"
    local got
    got="$("$KAFKA_SH" tool org.apache.kafka.tools.consumer.ConsoleConsumer \
        --bootstrap-server "$brokers" --topic "$topic" --from-beginning \
        --max-messages 3 --timeout-ms 30000 2>/dev/null | sort | tr '\n' ' ')"
    [[ "$got" == "one three two " ]] || die "kafka: consumed '$got', expected one two three"
    smoke_kafka_sasl_ssl "$topic"
    "$KAFKA_SH" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" \
        --delete --topic "$topic"
    info "kafka: OK"
}

# smoke_kafka_sasl_ssl TOPIC: the 3 records of TOPIC again, through the
# SASL_SSL listener (TLS with the dev CA, SCRAM-SHA-512 user) of kafka.env.
smoke_kafka_sasl_ssl() {
    local topic="$1" env sasl_brokers ca user password config got
    env="$(env_file kafka)"
    sasl_brokers="$(sed -n 's/^WEIR_KAFKA_SASL_SSL_BROKERS=//p' "$env")"
    [[ -n "$sasl_brokers" ]] || die "no WEIR_KAFKA_SASL_SSL_BROKERS in $env (restart Kafka with this deploy/dev/kafka.sh)"
    ca="$(sed -n 's/^WEIR_KAFKA_CA=//p' "$env")"
    user="$(sed -n 's/^WEIR_KAFKA_SASL_USER=//p' "$env")"
    password="$(sed -n 's/^WEIR_KAFKA_SASL_PASSWORD=//p' "$env")"
    config="$(mktemp)"
    # shellcheck disable=SC2064
    trap "rm -f '$config'" RETURN
    cat >"$config" <<CONF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$user" password="$password";
ssl.truststore.type=PEM
ssl.truststore.location=$ca
CONF
    info "kafka: consume them over SASL_SSL ($sasl_brokers, SCRAM-SHA-512 user $user)"
    got="$("$KAFKA_SH" tool org.apache.kafka.tools.consumer.ConsoleConsumer \
        --bootstrap-server "$sasl_brokers" --consumer.config "$config" --topic "$topic" \
        --from-beginning --max-messages 3 --timeout-ms 30000 2>/dev/null | sort | tr '\n' ' ')"
    [[ "$got" == "one three two " ]] || die "kafka: consumed '$got' over SASL_SSL, expected one two three"
}

smoke_hdfs() {
    is_running hdfs || die "hdfs is not running (start it with deploy/dev/hdfs.sh start)"
    local dir="/$TAG" tmp
    tmp="$(mktemp)"
    # shellcheck disable=SC2064
    trap "rm -f '$tmp'" RETURN
    echo "hello from $TAG" >"$tmp"
    info "hdfs: mkdir $dir, put, ls, cat"
    "$HDFS_SH" dfs -mkdir -p "$dir"
    "$HDFS_SH" dfs -put "$tmp" "$dir/hello.txt"
    "$HDFS_SH" dfs -ls "$dir" | grep -q "$dir/hello.txt" || die "hdfs: $dir/hello.txt not listed"
    [[ "$("$HDFS_SH" dfs -cat "$dir/hello.txt")" == "hello from $TAG" ]] ||
        die "hdfs: read back different content"
    "$HDFS_SH" dfs -rm -r -skipTrash "$dir" >/dev/null
    info "hdfs: OK"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || read -r -a targets <<<"${WEIR_DEV_SERVICES:-kafka hdfs redis postgres hbase}"
for t in "${targets[@]}"; do
    case "$t" in
    kafka) smoke_kafka ;;
    hdfs) smoke_hdfs ;;
    redis | postgres | hbase) "$DEV_SCRIPTS_DIR/$t.sh" check ;;
    *) die "unknown service '$t' (kafka|hdfs|redis|postgres|hbase)" ;;
    esac
done
info "all OK: ${targets[*]}"
