#!/usr/bin/env bash
# Start/stop a Weir cluster on this machine: 3 weir-driver replicas (one Raft
# group) and 3 weir-executor processes, all on loopback, plaintext without
# authentication (--insecure: a development cluster; docs/security.md shows
# the same cluster with TLS). Driver 1 listens on
# 127.0.0.1:7070, the weir CLI's default, so `weir submit/status/list/...`
# reach it without flags. See docs/dev-services.md.
#
#   deploy/dev/cluster.sh start|stop|status|restart|clean|bin-dir
#
# start   builds the release binaries with cargo (a no-op when they are up to
#         date), starts what is not running, and returns once a leader is
#         elected and the 3 executors are registered (`weir cluster --json`)
# stop    SIGTERM to every process, SIGKILL after WEIR_CLUSTER_STOP_TIMEOUT
# status  which processes run, and `weir cluster`; exits 0 only if all 6 run
# clean   stop, then delete the cluster's data (Raft logs, jobs, state, output)
# bin-dir print the directory of the binaries start uses (building them), e.g.
#         export PATH="$(deploy/dev/cluster.sh bin-dir):$PATH"
#
# Env: WEIR_DEV_DIR (default ~/.cache/weir/dev; the cluster lives in its
#      cluster/ directory), WEIR_CLUSTER_DRIVER_PORT (7070: drivers on 7070,
#      7071, 7072), WEIR_CLUSTER_EXECUTOR_PORT (7100: executors on 7100-7102),
#      WEIR_CLUSTER_PROFILE (release, or debug), WEIR_BIN_DIR (use the
#      weir, weir-driver and weir-executor binaries there; no cargo build),
#      WEIR_CLUSTER_START_TIMEOUT (60 s), WEIR_CLUSTER_STOP_TIMEOUT (30 s),
#      WEIR_LOG (the processes' log filter, default info).
set -euo pipefail

SERVICE=cluster
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REPO="$(cd "$DEV_SCRIPTS_DIR/../.." && pwd)"
CLUSTER_DIR="$WEIR_DEV_DIR/cluster"
DRIVER_PORT="${WEIR_CLUSTER_DRIVER_PORT:-7070}"
EXECUTOR_PORT="${WEIR_CLUSTER_EXECUTOR_PORT:-7100}"
PROFILE="${WEIR_CLUSTER_PROFILE:-release}"
START_TIMEOUT="${WEIR_CLUSTER_START_TIMEOUT:-60}"
STOP_TIMEOUT="${WEIR_CLUSTER_STOP_TIMEOUT:-30}"
CLUSTER_ID=weir-dev
ENV_FILE="$CLUSTER_DIR/cluster.env"
N=3

for v in DRIVER_PORT EXECUTOR_PORT START_TIMEOUT STOP_TIMEOUT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
case "$PROFILE" in
release | debug) ;;
*) die "WEIR_CLUSTER_PROFILE must be release or debug, got '$PROFILE'" ;;
esac

# The six processes, by name: driver-1..3 and executor-1..3.
NAMES=()
for i in $(seq 1 "$N"); do NAMES+=("driver-$i"); done
for i in $(seq 1 "$N"); do NAMES+=("executor-$i"); done

driver_addr() { echo "$DEV_HOST:$((DRIVER_PORT + $1 - 1))"; }
executor_addr() { echo "$DEV_HOST:$((EXECUTOR_PORT + $1 - 1))"; }
drivers_list() {
    local i out=()
    for i in $(seq 1 "$N"); do out+=("$(driver_addr "$i")"); done
    (IFS=,; echo "${out[*]}")
}
peers_list() {
    local i out=()
    for i in $(seq 1 "$N"); do out+=("$i=$(driver_addr "$i")"); done
    (IFS=,; echo "${out[*]}")
}
port_of() {
    local name="$1"
    case "$name" in
    driver-*) echo $((DRIVER_PORT + ${name#driver-} - 1)) ;;
    executor-*) echo $((EXECUTOR_PORT + ${name#executor-} - 1)) ;;
    esac
}

cpid_file() { echo "$CLUSTER_DIR/$1.pid"; }
clog_file() { echo "$CLUSTER_DIR/$1.log"; }

# proc_pid NAME: the pid of the running process NAME, or fails. Its command
# line must name this cluster's directory and its own id, so a recycled pid
# is never taken for it.
proc_pid() {
    local name="$1" pf pid cmd
    pf="$(cpid_file "$name")"
    [[ -s "$pf" ]] || return 1
    pid="$(<"$pf")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -r "/proc/$pid/cmdline" ]] || {
        echo "$pid"
        return 0
    }
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    case "$name" in
    driver-*) [[ "$cmd" == *weir-driver*" --id ${name#driver-} "*"$CLUSTER_DIR/"* ]] || return 1 ;;
    executor-*) [[ "$cmd" == *weir-executor*" --id exec-${name#executor-} "*"$CLUSTER_DIR/"* ]] || return 1 ;;
    esac
    echo "$pid"
}

# --- binaries -----------------------------------------------------------------

BIN_DIR=""

# target_dir: cargo's target directory for this workspace (CARGO_TARGET_DIR
# and cargo config included).
target_dir() {
    local t
    t="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    [[ -n "$t" ]] && echo "$t"
}

# find_binaries: sets BIN_DIR to a directory holding weir, weir-driver and
# weir-executor, building them with cargo unless WEIR_BIN_DIR names one.
find_binaries() {
    local b
    if [[ -n "${WEIR_BIN_DIR:-}" ]]; then
        # Absolute: the processes run in the cluster directory.
        BIN_DIR="$(cd "$WEIR_BIN_DIR" 2>/dev/null && pwd)" ||
            die "WEIR_BIN_DIR=$WEIR_BIN_DIR is not a directory"
    else
        if ! command -v cargo >/dev/null 2>&1; then
            [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
        fi
        command -v cargo >/dev/null 2>&1 ||
            die "cargo not found; install Rust with rustup (https://rustup.rs) and run scripts/bootstrap.sh, or set WEIR_BIN_DIR to a directory with weir, weir-driver and weir-executor"
        local target flags=()
        target="$(target_dir)" || die "cargo metadata did not name the target directory (run it in $REPO to see why)"
        [[ "$PROFILE" == release ]] && flags=(--release)
        # --bin, not -p: like the README's `cargo run --release --bin weir`
        # (and test.sh's `cargo build --workspace`), features are unified over
        # the whole workspace, so those builds' artifacts are reused as they are.
        info "building weir, weir-driver, weir-executor (cargo build ${flags[*]:-} --locked --bin ...; a first build takes minutes)"
        (cd "$REPO" && cargo build ${flags[@]+"${flags[@]}"} --locked --bin weir --bin weir-driver --bin weir-executor) ||
            die "cargo build failed (above); on a new Debian machine run scripts/bootstrap.sh first"
        BIN_DIR="$target/$PROFILE"
    fi
    for b in weir weir-driver weir-executor; do
        [[ -x "$BIN_DIR/$b" ]] || die "$BIN_DIR/$b not found or not executable${WEIR_BIN_DIR:+ (WEIR_BIN_DIR)}"
    done
}

# weir_cli ARGS...: the CLI against this cluster's drivers.
weir_cli() { "$BIN_DIR/weir" --drivers "$(drivers_list)" "$@"; }

# --- start ----------------------------------------------------------------------

# launch NAME ARGS...: runs ARGS in the background in its own session, with
# the cluster directory as working directory (relative sink paths of jobs,
# like examples/key-count.yaml's out/key-count, land there), output appended
# to NAME's log, and writes NAME's pid file.
launch() {
    local name="$1" log
    shift
    log="$(clog_file "$name")"
    {
        echo
        echo "===== $(date '+%Y-%m-%d %H:%M:%S') starting $name ====="
    } >>"$log"
    local -a session=()
    command -v setsid >/dev/null 2>&1 && session=(setsid)
    (cd "$CLUSTER_DIR" && exec nohup ${session[@]+"${session[@]}"} "$@" >>"$log" 2>&1 </dev/null) &
    echo $! >"$(cpid_file "$name")"
}

start_one() {
    local name="$1" i
    case "$name" in
    driver-*)
        i="${name#driver-}"
        mkdir -p "$CLUSTER_DIR/$name"
        launch "$name" "$BIN_DIR/weir-driver" --id "$i" --listen "$(driver_addr "$i")" \
            --data-dir "$CLUSTER_DIR/$name" --peers "$(peers_list)" --cluster-id "$CLUSTER_ID" --insecure
        ;;
    executor-*)
        i="${name#executor-}"
        mkdir -p "$CLUSTER_DIR/state"
        launch "$name" "$BIN_DIR/weir-executor" --id "exec-$i" --listen "$(executor_addr "$i")" \
            --drivers "$(drivers_list)" --state-root "$CLUSTER_DIR/state" --insecure
        ;;
    esac
}

# ready: a leader is elected and every executor is registered with it and
# alive. Reads `weir cluster --json` without jq: the executors are flat JSON
# objects (no nested objects), so each ends at the first "}".
ready() {
    local out i objs
    out="$(weir_cli cluster --json 2>/dev/null)" || return 1
    [[ "$out" =~ \"leader_id\"[[:space:]]*:[[:space:]]*[1-9] ]] || return 1
    [[ "$out" == *'"executors"'* ]] || return 1
    objs="$(tr -d ' \n' <<<"${out#*\"executors\"}" | tr '}' '\n')"
    local alive=0 obj
    while IFS= read -r obj; do
        for i in $(seq 1 "$N"); do
            [[ "$obj" == *"\"id\":\"exec-$i\""* && "$obj" == *'"health":"alive"'* ]] && alive=$((alive + 1))
        done
    done <<<"$objs"
    ((alive == N))
}

do_start() {
    local name pid to_start=()
    mkdir -p "$CLUSTER_DIR"
    for name in "${NAMES[@]}"; do
        if pid="$(proc_pid "$name")"; then
            info "$name already running (pid $pid)"
        else
            to_start+=("$name")
        fi
    done
    find_binaries
    if [[ ${#to_start[@]} -gt 0 ]]; then
        for name in "${to_start[@]}"; do
            port_open "$(port_of "$name")" &&
                die "port $DEV_HOST:$(port_of "$name") (for $name) is in use by another process; free it, or set WEIR_CLUSTER_DRIVER_PORT / WEIR_CLUSTER_EXECUTOR_PORT"
        done
        info "starting ${to_start[*]} (binaries: $BIN_DIR)"
        for name in "${to_start[@]}"; do start_one "$name"; done
    fi

    local deadline=$((SECONDS + START_TIMEOUT))
    while ! ready; do
        for name in "${to_start[@]}"; do
            if ! proc_pid "$name" >/dev/null; then
                log_tail "$(clog_file "$name")" 30
                do_stop
                die "$name exited during startup (log above: $(clog_file "$name")); stopped the cluster"
            fi
        done
        if ((SECONDS >= deadline)); then
            weir_cli cluster >&2 || true
            do_stop
            die "no leader with $N registered executors within ${START_TIMEOUT}s (logs: $CLUSTER_DIR/*.log); stopped the cluster"
        fi
        sleep 0.5
    done
    echo "WEIR_DRIVERS=$(drivers_list)" >"$ENV_FILE"
    if [[ ${#to_start[@]} -eq 0 ]]; then
        info "already running; nothing to start"
    else
        info "up: leader elected, $N executors registered"
    fi
    weir_cli cluster >&2 || true
    info "logs: $CLUSTER_DIR/{driver,executor}-{1..$N}.log"
    info "relative sink paths (out/...) are under $CLUSTER_DIR, the executors' working directory"
    if [[ "$DRIVER_PORT" == 7070 ]]; then
        info "weir commands reach it without flags (driver 1 is on $(driver_addr 1), the CLI's default)"
    else
        info "for weir commands: export WEIR_DRIVERS=$(drivers_list)  (also in $ENV_FILE)"
    fi
}

# --- stop, status, clean -------------------------------------------------------

do_stop() {
    local name pid pids=() names=()
    for name in "${NAMES[@]}"; do
        if pid="$(proc_pid "$name")"; then
            pids+=("$pid")
            names+=("$name")
        fi
        rm -f "$(cpid_file "$name")"
    done
    rm -f "$ENV_FILE"
    if [[ ${#pids[@]} -eq 0 ]]; then
        info "not running"
        return 0
    fi
    info "stopping ${names[*]} (SIGTERM; SIGKILL after ${STOP_TIMEOUT}s)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT)) left
    while true; do
        left=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
        [[ ${#left[@]} -eq 0 ]] && break
        if ((SECONDS >= deadline)); then
            info "still running after ${STOP_TIMEOUT}s: pids ${left[*]}; sending SIGKILL"
            kill -KILL "${left[@]}" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.3
    done
    info "stopped"
}

do_status() {
    local name pid running=0
    for name in "${NAMES[@]}"; do
        if pid="$(proc_pid "$name")"; then
            running=$((running + 1))
            printf '%-11s running (pid %s) on %s, log %s\n' "$name" "$pid" "$DEV_HOST:$(port_of "$name")" "$(clog_file "$name")"
        else
            printf '%-11s not running\n' "$name"
        fi
    done
    if ((running > 0)); then
        # The CLI that start used; status builds nothing.
        BIN_DIR="${WEIR_BIN_DIR:-$(target_dir 2>/dev/null || true)/$PROFILE}"
        if [[ -x "$BIN_DIR/weir" ]]; then
            echo
            weir_cli cluster || true
        fi
    fi
    ((running == ${#NAMES[@]}))
}

do_clean() {
    info "deleting $CLUSTER_DIR (Raft logs, jobs, state, job output, logs)"
    rm -rf "$CLUSTER_DIR"
}

# bin-dir: prints the directory of the weir binaries that start uses
# (building them first), for PATH="$(deploy/dev/cluster.sh bin-dir):$PATH".
# shellcheck disable=SC2034 # read by dev_main in common.sh
EXTRA_COMMANDS=(bin-dir)
# shellcheck disable=SC2034
EXTRA_USAGE="bin-dir"
do_extra() {
    find_binaries
    echo "$BIN_DIR"
}

dev_main "$@"
