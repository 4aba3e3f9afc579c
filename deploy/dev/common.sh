# shellcheck shell=bash
# Shared helpers for deploy/dev/{kafka,hdfs,redis,postgres,hbase,services}.sh.
# Source it; don't run it.
#
# Layout of the dev dir (WEIR_DEV_DIR, default ~/.cache/weir/dev):
#   <name>.pid  <name>.log  <name>.env     one set per service
#   <name>/                                 classpath, config and data of that service

WEIR_DEV_DIR="${WEIR_DEV_DIR:-$HOME/.cache/weir/dev}"
# shellcheck disable=SC2034 # used by the scripts that source this file
DEV_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Loopback only: nothing started here may listen on another address.
DEV_HOST=127.0.0.1

info() { echo "[${SERVICE:-dev}] $*" >&2; }
die() {
    echo "[${SERVICE:-dev}] error: $*" >&2
    exit 1
}

# require_tools: java (17 or newer) and mvn must be on PATH.
require_tools() {
    command -v java >/dev/null 2>&1 ||
        die "java not found on PATH; install a JDK 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)"
    command -v mvn >/dev/null 2>&1 ||
        die "mvn not found on PATH; install Maven 3.6+ (Debian: apt-get install -y maven)"
    local v major
    v="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
    major="${v%%.*}"
    if [[ "$major" == 1 ]]; then major="$(echo "$v" | cut -d. -f2)"; fi
    [[ "$major" =~ ^[0-9]+$ ]] || die "cannot tell the Java version from 'java -version' (got '$v')"
    ((major >= 17)) || die "Java 17+ is required, found $v (set PATH/JAVA_HOME to a newer JDK)"
}

# require_javac: for services compiled from source here.
require_javac() {
    command -v javac >/dev/null 2>&1 ||
        die "javac not found on PATH; a full JDK is needed, not only a JRE (Debian: apt-get install -y openjdk-17-jdk-headless)"
}

pid_file() { echo "$WEIR_DEV_DIR/$1.pid"; }
log_file() { echo "$WEIR_DEV_DIR/$1.log"; }
env_file() { echo "$WEIR_DEV_DIR/$1.env"; }

# service_pid NAME: prints the pid of the running service NAME, or fails.
# The process's command line (its arguments joined by spaces, with a
# trailing space) must contain SERVICE_MARKER, so a recycled pid that now
# belongs to another process is not mistaken for the service. The JVMs
# started by start_java carry -Dweir.dev.service=NAME, the default marker; a
# script that runs another kind of process sets SERVICE_MARKER to something
# only that process's command line holds (e.g. its config file's path).
service_pid() {
    local name="$1" pf pid marker cmdline
    marker="${SERVICE_MARKER:--Dweir.dev.service=$name }"
    pf="$(pid_file "$name")"
    [[ -s "$pf" ]] || return 1
    pid="$(<"$pf")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        # Matched in bash, not with grep -q in a pipe: under pipefail, grep
        # exiting early could make tr's SIGPIPE fail the test.
        cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
        [[ "$cmdline" == *"$marker"* ]] || return 1
    fi
    echo "$pid"
}

is_running() { service_pid "$1" >/dev/null; }

# pid_alive PID: the process exists and has not exited. A service started
# with start_bg is reparented to pid 1 once its script returns, and an init
# that reaps lazily leaves it a zombie for a while after it exits, which
# kill -0 still finds.
pid_alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)"
    [[ "$state" != Z ]]
}

# port_open PORT: something accepts TCP connections on DEV_HOST:PORT.
port_open() {
    local port="$1"
    if command -v timeout >/dev/null 2>&1; then
        timeout 2 bash -c "exec 3<>/dev/tcp/$DEV_HOST/$port" 2>/dev/null
    else
        (exec 3<>"/dev/tcp/$DEV_HOST/$port") 2>/dev/null
    fi
}

# ensure_ports_free PORT...: fail if another process already listens there.
ensure_ports_free() {
    local p
    for p in "$@"; do
        if port_open "$p"; then
            die "port $DEV_HOST:$p is already in use by another process (not started by these scripts); free it or pick another port"
        fi
    done
}

log_tail() {
    local f="$1" n="${2:-60}"
    if [[ -f "$f" ]]; then
        echo "----- last $n lines of $f -----" >&2
        tail -n "$n" "$f" >&2
        echo "-----" >&2
    else
        echo "(no log file at $f)" >&2
    fi
}

# start_bg NAME LOGFILE CMD...: runs CMD in the background, detached from
# stdin, with stdout/stderr appended to LOGFILE after a "===== <time>
# starting NAME =====" line, and writes the pid file. CMD must exec the
# service itself (no fork), so that the pid is the service's.
start_bg() {
    local name="$1" log="$2"
    shift 2
    mkdir -p "$WEIR_DEV_DIR"
    {
        echo
        echo "===== $(date '+%Y-%m-%d %H:%M:%S') starting $name ====="
    } >>"$log"
    nohup "$@" >>"$log" 2>&1 </dev/null &
    echo $! >"$(pid_file "$name")"
}

# start_java NAME LOGFILE JAVA_ARGS...: start_bg for a JVM, marked with
# -Dweir.dev.service=NAME (see service_pid).
start_java() {
    local name="$1" log="$2"
    shift 2
    start_bg "$name" "$log" java "-Dweir.dev.service=$name" "$@"
}

# random_secret FILE: prints the secret kept in FILE, making a random one
# (18 random bytes, URL-safe base64: safe in URLs and config files) the
# first time. FILE is readable by its owner only.
random_secret() {
    local f="$1"
    if [[ ! -s "$f" ]]; then
        mkdir -p "$(dirname "$f")"
        (
            umask 077
            head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$f.tmp"
        )
        mv "$f.tmp" "$f"
    fi
    cat "$f"
}

# wait_ready NAME TIMEOUT_S CHECK_CMD...: polls CHECK_CMD until it succeeds.
# Fails (with the log tail) when the process dies or the timeout passes;
# on timeout the half-started process is stopped again.
wait_ready() {
    local name="$1" timeout_s="$2"
    shift 2
    local log deadline
    log="$(log_file "$name")"
    deadline=$((SECONDS + timeout_s))
    local pid
    pid="$(cat "$(pid_file "$name")" 2>/dev/null || true)"
    while true; do
        # Only liveness here: right after the fork the child's command line
        # is still this script's, so the -Dweir.dev.service check of
        # is_running could mistake a starting service for a dead one.
        if [[ -z "$pid" ]] || ! pid_alive "$pid"; then
            log_tail "$log"
            rm -f "$(pid_file "$name")"
            die "$name exited during startup (see $log)"
        fi
        if "$@"; then return 0; fi
        if ((SECONDS >= deadline)); then
            log_tail "$log"
            stop_service "$name" 20 || true
            die "$name did not become ready within ${timeout_s}s (see $log)"
        fi
        sleep 0.5
    done
}

# log_has FILE PATTERN: PATTERN (grep -E) occurs in FILE after the last
# "===== ... starting" marker, i.e. in the output of the current run.
log_has() {
    local f="$1" pat="$2"
    [[ -f "$f" ]] || return 1
    # Linear in the log's size: services log a lot, and the log is kept
    # across restarts.
    local start
    start="$(grep -n -E '^===== .* starting ' "$f" | tail -n 1 | cut -d: -f1 || true)"
    # grep reads to the end (no -q): no SIGPIPE for tail under pipefail.
    tail -n +"${start:-1}" "$f" | grep -E -- "$pat" >/dev/null
}

# stop_service NAME [TIMEOUT_S]: SIGTERM, wait, then SIGKILL if needed.
stop_service() {
    local name="$1" timeout_s="${2:-30}" pid deadline
    if ! pid="$(service_pid "$name")"; then
        rm -f "$(pid_file "$name")"
        info "not running"
        return 0
    fi
    info "stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + timeout_s))
    while pid_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            info "still running after ${timeout_s}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.3
    done
    rm -f "$(pid_file "$name")"
    info "stopped"
}

# file_hash FILE...: one hash over the given files' contents.
file_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }

# resolve_classpath POM OUT_FILE: writes the runtime classpath of POM's
# dependencies to OUT_FILE, downloading them into ~/.m2 with Maven. Cached:
# Maven runs again only when the pom changed or a jar disappeared from ~/.m2.
resolve_classpath() {
    local pom="$1" out="$2" stamp want jar ok=1 mlog
    stamp="$out.sha256"
    want="$(file_hash "$pom")"
    if [[ -s "$out" && -f "$stamp" && "$(<"$stamp")" == "$want" ]]; then
        local -a jars
        IFS=: read -r -a jars <"$out" || true # no trailing newline
        for jar in "${jars[@]}"; do
            [[ -e "$jar" ]] || {
                ok=0
                break
            }
        done
        ((ok)) && return 0
    fi
    info "resolving jars with Maven (first run downloads them into ~/.m2)"
    mkdir -p "$(dirname "$out")"
    mlog="$out.mvn.log"
    if ! mvn -B -q -Dstyle.color=never -f "$pom" \
        dependency:build-classpath -Dmdep.includeScope=runtime \
        "-Dmdep.outputFile=$out.tmp" >"$mlog" 2>&1; then
        log_tail "$mlog" 40
        die "Maven could not resolve the dependencies of $pom (full output: $mlog)"
    fi
    [[ -s "$out.tmp" ]] || die "Maven wrote an empty classpath for $pom (see $mlog)"
    mv "$out.tmp" "$out"
    echo "$want" >"$stamp"
}

# dev_main "$@": dispatch start|stop|status|restart|clean to the calling
# script's do_start / do_stop / do_status / do_clean functions. A script may
# add commands: list them in EXTRA_COMMANDS (and EXTRA_USAGE) and define
# do_extra CMD ARGS...
dev_main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    restart)
        do_stop
        do_start
        ;;
    clean)
        do_stop
        do_clean
        ;;
    *)
        local c
        for c in ${EXTRA_COMMANDS[@]+"${EXTRA_COMMANDS[@]}"}; do
            if [[ "$cmd" == "$c" ]]; then
                do_extra "$cmd" "$@"
                return
            fi
        done
        echo "usage: $0 start|stop|status|restart|clean${EXTRA_USAGE:+ | $EXTRA_USAGE}" >&2
        echo "  clean = stop and delete this service's data (next start is a fresh cluster)" >&2
        exit 2
        ;;
    esac
}
