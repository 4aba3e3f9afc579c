#!/usr/bin/env bash
# Start/stop every external service Weir's integration tests need: a Kafka
# broker (kafka.sh), an HDFS MiniDFS cluster (hdfs.sh), Redis (redis.sh),
# PostgreSQL (postgres.sh) and HBase with its Thrift gateway (hbase.sh).
# See docs/dev-services.md.
#
#   deploy/dev/services.sh start|stop|status|restart|clean
#
# After 'start', <devdir>/services.env holds every service's env file
# (WEIR_KAFKA_BROKERS, WEIR_HDFS_URL, WEIR_REDIS_URL, WEIR_POSTGRES_URL,
# WEIR_HBASE_THRIFT, ...); load it with:
#   set -a; . "$WEIR_DEV_DIR/services.env"; set +a
#
# Env: WEIR_DEV_SERVICES, a space-separated subset to act on (default: all
# of "kafka hdfs redis postgres hbase"), e.g. WEIR_DEV_SERVICES="redis postgres".
set -euo pipefail

SERVICE=services
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KNOWN=(kafka hdfs redis postgres hbase)
read -r -a ALL <<<"${WEIR_DEV_SERVICES:-${KNOWN[*]}}"
[[ ${#ALL[@]} -gt 0 ]] || die "WEIR_DEV_SERVICES is empty; name some of: ${KNOWN[*]}"
for s in "${ALL[@]}"; do
    [[ " ${KNOWN[*]} " == *" $s "* ]] || die "unknown service '$s' in WEIR_DEV_SERVICES (known: ${KNOWN[*]})"
done
ENV_FILE="$(env_file services)"

each() {
    local cmd="$1" s rc=0
    for s in "${ALL[@]}"; do
        "$DEV_SCRIPTS_DIR/$s.sh" "$cmd" || rc=1
    done
    return "$rc"
}

do_start() {
    local s
    # One after the other: three are JVMs and the machine may be busy.
    for s in "${ALL[@]}"; do
        "$DEV_SCRIPTS_DIR/$s.sh" start || die "$s did not start; the others are left as they are ('$0 stop' stops them)"
    done
    for s in "${ALL[@]}"; do cat "$(env_file "$s")"; done >"$ENV_FILE"
    info "all up (${ALL[*]}); env in $ENV_FILE:"
    # Passwords stay in the file.
    sed -e 's/^/  /' -e 's#://\([^:@/]*\):[^@]*@#://\1:***@#' -e 's/^\(  [A-Z_]*PASSWORD\)=.*/\1=***/' "$ENV_FILE" >&2
}

do_stop() {
    each stop || die "some service did not stop cleanly"
    rm -f "$ENV_FILE"
}

do_status() { each status; }

do_clean() { each clean; }

dev_main "$@"
