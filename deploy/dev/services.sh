#!/usr/bin/env bash
# Start/stop every external service Weir's integration tests need: a Kafka
# broker (kafka.sh) and an HDFS MiniDFS cluster (hdfs.sh). See docs/dev-services.md.
#
#   deploy/dev/services.sh start|stop|status|restart|clean
#
# After 'start', <devdir>/services.env holds WEIR_KAFKA_BROKERS and
# WEIR_HDFS_URL; load it with:  set -a; . "$WEIR_DEV_DIR/services.env"; set +a
set -euo pipefail

SERVICE=services
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ALL=(kafka hdfs)
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
    # One after the other: both are JVMs and the machine may be busy.
    for s in "${ALL[@]}"; do
        "$DEV_SCRIPTS_DIR/$s.sh" start || die "$s did not start; the others are left as they are ('$0 stop' stops them)"
    done
    for s in "${ALL[@]}"; do cat "$(env_file "$s")"; done >"$ENV_FILE"
    info "all up; env in $ENV_FILE:"
    sed 's/^/  /' "$ENV_FILE" >&2
}

do_stop() {
    each stop || die "some service did not stop cleanly"
    rm -f "$ENV_FILE"
}

do_status() { each status; }

do_clean() { each clean; }

dev_main "$@"
