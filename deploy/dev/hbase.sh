#!/usr/bin/env bash
# Start/stop a real HBase for Weir's integration tests: a MiniHBaseCluster
# (one master, one region server, its own ZooKeeper, data on the local file
# system) and HBase's Thrift gateway (thrift1) in one JVM, on loopback. Jars
# come from Maven Central via deploy/dev/minihbase/pom.xml; the small
# launcher in minihbase/src is compiled with javac and cached.
# See docs/dev-services.md.
#
#   deploy/dev/hbase.sh start|stop|status|restart|clean
#   deploy/dev/hbase.sh check     through the Thrift gateway: create a table,
#                                 write and read versioned cells, delete it
#
# Every start is a fresh, empty HBase: tables do not survive a stop.
#
# Env: WEIR_DEV_DIR (default ~/.cache/weir/dev), WEIR_HBASE_THRIFT_PORT
#      (19090), WEIR_HBASE_ZK_PORT (12181), WEIR_HBASE_HEAP (768m),
#      WEIR_HBASE_JIT (client: C1 only; full: the JVM's default),
#      WEIR_HBASE_START_TIMEOUT (180 seconds).
set -euo pipefail

SERVICE=hbase
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

export WEIR_HBASE_THRIFT_PORT="${WEIR_HBASE_THRIFT_PORT:-19090}"
export WEIR_HBASE_ZK_PORT="${WEIR_HBASE_ZK_PORT:-12181}"
HBASE_HEAP="${WEIR_HBASE_HEAP:-768m}"
START_TIMEOUT="${WEIR_HBASE_START_TIMEOUT:-180}"

HBASE_SRC="$DEV_SCRIPTS_DIR/minihbase"
HBASE_HOME="$WEIR_DEV_DIR/hbase"
HBASE_DATA="$HBASE_HOME/data"
HBASE_CP="$HBASE_HOME/classpath.txt"
HBASE_CLASSES="$HBASE_HOME/classes"
LOG="$(log_file hbase)"
ENV_FILE="$(env_file hbase)"
THRIFT_ADDR="$DEV_HOST:$WEIR_HBASE_THRIFT_PORT"
ZK_ADDR="$DEV_HOST:$WEIR_HBASE_ZK_PORT"
MAIN_CLASS=dev.weir.minihbase.WeirMiniHBase
CHECK_CLASS=dev.weir.minihbase.ThriftCheck

# What HBase's own bin/hbase passes on Java 11+: its shaded Netty and the
# off-heap code reflect into JDK internals.
JDK_OPENS=(
    -Dorg.apache.hbase.thirdparty.io.netty.tryReflectionSetAccessible=true
    --add-modules jdk.unsupported
    --add-opens java.base/java.nio=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.security.jgss/sun.security.krb5=ALL-UNNAMED
    --add-exports java.base/sun.net.dns=ALL-UNNAMED
    --add-exports java.base/sun.net.util=ALL-UNNAMED
)

# compile_launcher: javac the launcher against the resolved classpath, unless
# the classes are already there for this exact source + classpath.
compile_launcher() {
    local -a srcs
    mapfile -t srcs < <(find "$HBASE_SRC/src/main/java" -name '*.java' | sort)
    local want stamp="$HBASE_CLASSES.sha256"
    want="$(file_hash "${srcs[@]}" "$HBASE_CP")"
    if [[ -f "$stamp" && "$(<"$stamp")" == "$want" ]]; then return 0; fi
    require_javac
    info "compiling the MiniHBase launcher"
    rm -rf "$HBASE_CLASSES"
    mkdir -p "$HBASE_CLASSES"
    # Output only on failure: javac always warns about sun.misc.Signal.
    if ! javac -nowarn --release 17 -encoding UTF-8 -d "$HBASE_CLASSES" \
        -cp "$(<"$HBASE_CP")" "${srcs[@]}" >"$HBASE_CLASSES.javac.log" 2>&1; then
        cat "$HBASE_CLASSES.javac.log" >&2
        die "compiling $HBASE_SRC/src failed"
    fi
    echo "$want" >"$stamp"
}

prepare() {
    require_tools
    resolve_classpath "$HBASE_SRC/pom.xml" "$HBASE_CP"
}

hbase_ready() { log_has "$LOG" '^Ready!$' && port_open "$WEIR_HBASE_THRIFT_PORT"; }

write_env() {
    cat >"$ENV_FILE" <<ENV
WEIR_HBASE_THRIFT=$THRIFT_ADDR
WEIR_HBASE_ZOOKEEPER=$ZK_ADDR
ENV
}

do_start() {
    if is_running hbase; then
        info "already running (pid $(service_pid hbase)), Thrift $THRIFT_ADDR"
        write_env
        return 0
    fi
    ensure_ports_free "$WEIR_HBASE_THRIFT_PORT" "$WEIR_HBASE_ZK_PORT"
    prepare
    compile_launcher
    # A fresh cluster every time: what a stop (or a kill) left is deleted.
    rm -rf "$HBASE_DATA"
    mkdir -p "$HBASE_DATA"
    # C1 only, as for the MiniDFS: fewer compiler threads competing with
    # the tests for the two cores. WEIR_HBASE_JIT=full keeps the default.
    local -a JIT=(-XX:TieredStopAtLevel=1)
    if [[ "${WEIR_HBASE_JIT:-client}" == full ]]; then JIT=(); fi
    info "starting MiniHBaseCluster and the Thrift gateway on $THRIFT_ADDR (ZooKeeper $ZK_ADDR), log $LOG"
    WEIR_HBASE_BASEDIR="$HBASE_DATA" start_java hbase "$LOG" \
        "-Xms128m" "-Xmx$HBASE_HEAP" "${JIT[@]}" -Djava.awt.headless=true \
        -Djava.net.preferIPv4Stack=true \
        "-Dlog4j2.configurationFile=$HBASE_SRC/log4j2.properties" \
        "${JDK_OPENS[@]}" \
        -cp "$HBASE_CLASSES:$(<"$HBASE_CP")" "$MAIN_CLASS"
    wait_ready hbase "$START_TIMEOUT" hbase_ready
    write_env
    info "ready: WEIR_HBASE_THRIFT=$THRIFT_ADDR (pid $(service_pid hbase); $(grep -E '^Startup took' "$LOG" | tail -n 1))"
}

do_stop() {
    stop_service hbase 60
    rm -f "$ENV_FILE"
}

do_status() {
    if is_running hbase; then
        echo "hbase: running (pid $(service_pid hbase)), Thrift $THRIFT_ADDR, ZooKeeper $ZK_ADDR, log $LOG"
    else
        echo "hbase: not running"
        return 1
    fi
}

do_clean() {
    rm -rf "$HBASE_DATA"
    info "deleted $HBASE_DATA"
}

EXTRA_COMMANDS=(check)
EXTRA_USAGE="check"
do_extra() {
    case "$1" in
    check)
        is_running hbase || die "hbase is not running (start it with $0 start)"
        prepare
        # The running server loads classes from $HBASE_CLASSES: recompiling
        # (after an edit) would delete them under it. The next start does it.
        [[ -f "$HBASE_CLASSES.sha256" ]] || compile_launcher
        local out
        out="$(java -Xmx128m -XX:TieredStopAtLevel=1 \
            "-Dlog4j2.configurationFile=$HBASE_SRC/log4j2.properties" \
            -cp "$HBASE_CLASSES:$(<"$HBASE_CP")" "$CHECK_CLASS" "$DEV_HOST" "$WEIR_HBASE_THRIFT_PORT")" ||
            die "check failed: the Thrift gateway on $THRIFT_ADDR did not do what it should (server log: $LOG)"
        info "check OK: $out"
        ;;
    esac
}

dev_main "$@"
