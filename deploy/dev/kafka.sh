#!/usr/bin/env bash
# Start/stop a real single-node Apache Kafka broker (KRaft, broker+controller
# in one process) for Weir's integration tests. Jars come from Maven Central
# via deploy/dev/kafka/pom.xml. See docs/dev-services.md.
#
#   deploy/dev/kafka.sh start|stop|status|restart|clean
#   deploy/dev/kafka.sh tool MAIN_CLASS [ARGS...]   run a Kafka CLI class, e.g.
#       deploy/dev/kafka.sh tool org.apache.kafka.tools.TopicCommand \
#           --bootstrap-server 127.0.0.1:9092 --list
#
# Listeners: PLAINTEXT (9092), SSL with client certificates (9094) and
# SASL_SSL with SCRAM-SHA-512 and PLAIN (9095). The CA, the broker's and a
# client's certificate and the SASL user's password are made by this script
# on the first start (openssl, keytool) and kept in <devdir>/kafka/tls.
#
# Env: WEIR_DEV_DIR (default ~/.cache/weir/dev), WEIR_KAFKA_PORT (9092),
#      WEIR_KAFKA_CONTROLLER_PORT (9093), WEIR_KAFKA_SSL_PORT (9094),
#      WEIR_KAFKA_SASL_SSL_PORT (9095), WEIR_KAFKA_HEAP (512m),
#      WEIR_KAFKA_START_TIMEOUT (60 seconds).
set -euo pipefail

SERVICE=kafka
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_PORT="${WEIR_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${WEIR_KAFKA_CONTROLLER_PORT:-9093}"
SSL_PORT="${WEIR_KAFKA_SSL_PORT:-9094}"
SASL_SSL_PORT="${WEIR_KAFKA_SASL_SSL_PORT:-9095}"
KAFKA_HEAP="${WEIR_KAFKA_HEAP:-512m}"
START_TIMEOUT="${WEIR_KAFKA_START_TIMEOUT:-60}"

KAFKA_SRC="$DEV_SCRIPTS_DIR/kafka"
KAFKA_HOME="$WEIR_DEV_DIR/kafka"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_CONF="$KAFKA_HOME/server.properties"
KAFKA_CP="$KAFKA_HOME/classpath.txt"
LOG="$(log_file kafka)"
ENV_FILE="$(env_file kafka)"
BROKERS="$DEV_HOST:$KAFKA_PORT"
SSL_BROKERS="$DEV_HOST:$SSL_PORT"
SASL_SSL_BROKERS="$DEV_HOST:$SASL_SSL_PORT"

# TLS material and the SASL user, made once and kept across `clean` (which
# deletes only the data): a client configured once keeps working.
TLS_DIR="$KAFKA_HOME/tls"
CA_PEM="$TLS_DIR/ca.pem"
CLIENT_CERT="$TLS_DIR/client.pem"
CLIENT_KEY="$TLS_DIR/client.key"
BROKER_P12="$TLS_DIR/broker.p12"
SASL_USER=weir
SASL_PASSWORD_FILE="$TLS_DIR/sasl-password"
# The broker's keystore password; the keystore is readable only by its owner.
STORE_PASSWORD=weir-dev-store
# Marks a data directory whose SCRAM user exists (made at format time, or
# added after the start for storage formatted by an older script).
SCRAM_MARK="$KAFKA_DATA/.weir-scram-user"

# make_tls: a CA, a broker certificate for $DEV_HOST (SAN IP and
# localhost, as librdkafka checks the host name by default), a client
# certificate for the SSL listener, the broker's PKCS#12 keystore, and a
# random SASL password. Does nothing when the files exist.
make_tls() {
    [[ -s "$BROKER_P12" && -s "$CLIENT_KEY" && -s "$SASL_PASSWORD_FILE" ]] && return 0
    command -v openssl >/dev/null 2>&1 || die "openssl not found on PATH (Debian: apt-get install -y openssl)"
    command -v keytool >/dev/null 2>&1 || die "keytool not found on PATH; it comes with the JDK"
    info "making a CA and certificates in $TLS_DIR"
    rm -rf "$TLS_DIR"
    mkdir -p "$TLS_DIR"
    chmod 700 "$TLS_DIR"
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=weir-dev-ca" \
            -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=$DEV_HOST" \
            -keyout broker.key -out broker.csr 2>/dev/null
        printf 'subjectAltName=IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' "$DEV_HOST" >broker.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 3650 -extfile broker.ext -out broker.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=weir-dev-client" \
            -keyout client.key -out client.csr 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 3650 -extfile client.ext -out client.pem 2>/dev/null
        openssl pkcs12 -export -name broker -in broker.pem -inkey broker.key \
            -certfile ca.pem -passout "pass:$STORE_PASSWORD" -out broker.p12.tmp
        # The keystore as the JDK writes it, so any JDK 17+ reads it.
        keytool -importkeystore -noprompt -srckeystore broker.p12.tmp -srcstoretype PKCS12 \
            -srcstorepass "$STORE_PASSWORD" -destkeystore broker.p12 -deststoretype PKCS12 \
            -deststorepass "$STORE_PASSWORD" >/dev/null 2>&1
        rm -f broker.p12.tmp ./*.csr ./*.ext ./*.srl
        head -c 18 /dev/urandom | base64 | tr '+/' '-_' >sasl-password.tmp
        mv sasl-password.tmp sasl-password
    ) || die "making the TLS material in $TLS_DIR failed"
    chmod 600 "$TLS_DIR"/*.key "$BROKER_P12" "$SASL_PASSWORD_FILE"
}

sasl_password() { cat "$SASL_PASSWORD_FILE"; }

write_env() {
    # A broker started by an older script has no secured listeners.
    if ! grep -q "SASL_SSL://" "$KAFKA_CONF" 2>/dev/null; then
        echo "WEIR_KAFKA_BROKERS=$BROKERS" >"$ENV_FILE"
        return 0
    fi
    cat >"$ENV_FILE" <<ENV
WEIR_KAFKA_BROKERS=$BROKERS
WEIR_KAFKA_SSL_BROKERS=$SSL_BROKERS
WEIR_KAFKA_SASL_SSL_BROKERS=$SASL_SSL_BROKERS
WEIR_KAFKA_CA=$CA_PEM
WEIR_KAFKA_CLIENT_CERT=$CLIENT_CERT
WEIR_KAFKA_CLIENT_KEY=$CLIENT_KEY
WEIR_KAFKA_SASL_USER=$SASL_USER
WEIR_KAFKA_SASL_PASSWORD=$(sasl_password)
ENV
}

write_config() {
    mkdir -p "$KAFKA_HOME"
    cat >"$KAFKA_CONF" <<CONF
# Generated by deploy/dev/kafka.sh; edits are overwritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$DEV_HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$DEV_HOST:$KAFKA_PORT,CONTROLLER://$DEV_HOST:$CONTROLLER_PORT,SSL://$SSL_BROKERS,SASL_SSL://$SASL_SSL_BROKERS
advertised.listeners=PLAINTEXT://$BROKERS,SSL://$SSL_BROKERS,SASL_SSL://$SASL_SSL_BROKERS
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
log.dirs=$KAFKA_DATA

# TLS (both secured listeners): the broker's key and certificate, signed by
# the script's CA; the same CA verifies client certificates.
ssl.keystore.type=PKCS12
ssl.keystore.location=$BROKER_P12
ssl.keystore.password=$STORE_PASSWORD
ssl.key.password=$STORE_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$CA_PEM
# SSL listener: mutual TLS, a client certificate signed by the CA is required.
listener.name.ssl.ssl.client.auth=required
# SASL_SSL listener: SCRAM-SHA-512 (users stored in the cluster metadata)
# and PLAIN (the one user below), over TLS without client certificates.
listener.name.sasl_ssl.ssl.client.auth=none
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$(sasl_password)";

# Tests create their topics explicitly (partition count is part of a test).
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# Single node: internal topics have one replica and few partitions (fast start).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# No wait before the first consumer-group rebalance.
group.initial.rebalance.delay.ms=0
CONF
}

broker_ready() {
    port_open "$KAFKA_PORT" && log_has "$LOG" "Kafka Server started"
}

do_start() {
    if is_running kafka; then
        info "already running (pid $(service_pid kafka)), brokers $BROKERS"
        write_env
        return 0
    fi
    require_tools
    ensure_ports_free "$KAFKA_PORT" "$CONTROLLER_PORT" "$SSL_PORT" "$SASL_SSL_PORT"
    resolve_classpath "$KAFKA_SRC/pom.xml" "$KAFKA_CP"
    make_tls
    write_config
    local cp
    cp="$(<"$KAFKA_CP")"
    local -a jvm=(
        "-Xms128m" "-Xmx$KAFKA_HEAP"
        -XX:+UseG1GC -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$KAFKA_SRC/log4j2.properties"
        -cp "$cp"
    )
    if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
        local cluster_id
        # A Kafka cluster id is 16 random bytes in URL-safe base64, unpadded.
        cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        info "formatting storage in $KAFKA_DATA (cluster id $cluster_id)"
        mkdir -p "$KAFKA_DATA"
        # The SCRAM user is part of the initial cluster metadata.
        if ! java "${jvm[@]}" kafka.tools.StorageTool format \
            -t "$cluster_id" -c "$KAFKA_CONF" \
            --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$(sasl_password)]" >>"$LOG" 2>&1; then
            log_tail "$LOG" 40
            die "formatting Kafka storage failed (see $LOG)"
        fi
        touch "$SCRAM_MARK"
    fi
    info "starting broker on $BROKERS (controller $DEV_HOST:$CONTROLLER_PORT), log $LOG"
    start_java kafka "$LOG" "${jvm[@]}" kafka.Kafka "$KAFKA_CONF"
    wait_ready kafka "$START_TIMEOUT" broker_ready
    if [[ ! -f "$SCRAM_MARK" ]]; then
        info "adding SCRAM-SHA-512 user $SASL_USER (storage formatted without it)"
        java "${jvm[@]}" kafka.admin.ConfigCommand --bootstrap-server "$BROKERS" --alter \
            --add-config "SCRAM-SHA-512=[password=$(sasl_password)]" \
            --entity-type users --entity-name "$SASL_USER" >>"$LOG" 2>&1 ||
            die "adding the SCRAM user failed (see $LOG)"
        touch "$SCRAM_MARK"
    fi
    write_env
    info "ready: WEIR_KAFKA_BROKERS=$BROKERS, SSL $SSL_BROKERS, SASL_SSL $SASL_SSL_BROKERS (pid $(service_pid kafka))"
}

do_stop() {
    stop_service kafka 30
    rm -f "$ENV_FILE"
}

do_status() {
    if is_running kafka; then
        echo "kafka: running (pid $(service_pid kafka)), brokers $BROKERS (SSL $SSL_BROKERS, SASL_SSL $SASL_SSL_BROKERS), log $LOG"
    else
        echo "kafka: not running"
        return 1
    fi
}

do_clean() {
    rm -rf "$KAFKA_DATA"
    info "deleted $KAFKA_DATA"
}

EXTRA_COMMANDS=(tool)
EXTRA_USAGE="tool MAIN_CLASS [ARGS...]"
do_extra() {
    case "$1" in
    tool)
        shift
        [[ $# -ge 1 ]] || die "usage: $0 tool MAIN_CLASS [ARGS...]"
        require_tools
        resolve_classpath "$KAFKA_SRC/pom.xml" "$KAFKA_CP"
        java -Xmx256m "-Dlog4j2.configurationFile=$KAFKA_SRC/tools-log4j2.properties" \
            -cp "$(<"$KAFKA_CP")" "$@"
        ;;
    esac
}

dev_main "$@"
