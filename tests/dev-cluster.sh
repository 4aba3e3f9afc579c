#!/usr/bin/env bash
# Checks deploy/dev/cluster.sh end to end, in about 15 s: start (3 drivers,
# 3 executors), start again (a no-op), status, submit examples/key-count.yaml
# and wait for it to finish, check its output (the last batch holds every
# one of the 100 keys at its final count, 2000 each: 200,000 records, once),
# stop, and check that nothing is left running.
#
#   tests/dev-cluster.sh
#
# It uses already built binaries, debug by default (scripts/test.sh builds
# them with `cargo build --workspace --bins`; WEIR_BIN_DIR picks others), a
# temporary WEIR_DEV_DIR and ports 17070-17072 / 17100-17102, so that it
# neither builds nor touches a dev cluster of yours on 7070.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { echo "[dev-cluster test] $*" >&2; }
fail() {
    echo "[dev-cluster test] FAILED: $*" >&2
    exit 1
}

if [[ -z "${WEIR_BIN_DIR:-}" ]]; then
    target="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    [[ -n "$target" ]] || fail "cargo metadata did not name the target directory"
    export WEIR_BIN_DIR="$target/debug"
fi
for b in weir weir-driver weir-executor; do
    [[ -x "$WEIR_BIN_DIR/$b" ]] ||
        fail "$WEIR_BIN_DIR/$b is not built; run 'cargo build --workspace --bins' first (or set WEIR_BIN_DIR)"
done

WEIR_DEV_DIR="$(mktemp -d "${TMPDIR:-/tmp}/weir-dev-cluster.XXXXXX")"
export WEIR_DEV_DIR
export WEIR_CLUSTER_DRIVER_PORT=17070 WEIR_CLUSTER_EXECUTOR_PORT=17100
export WEIR_DRIVERS=127.0.0.1:17070,127.0.0.1:17071,127.0.0.1:17072
CLUSTER=deploy/dev/cluster.sh
WEIR="$WEIR_BIN_DIR/weir"
finish() {
    local rc=$?
    "$CLUSTER" stop >/dev/null 2>&1 || true
    if ((rc != 0)); then
        for f in "$WEIR_DEV_DIR"/cluster/*.log; do
            [[ -f "$f" ]] || continue
            echo "----- last 15 lines of $f -----" >&2
            tail -n 15 "$f" >&2
        done
    fi
    rm -rf "$WEIR_DEV_DIR"
}
trap finish EXIT
t0=$SECONDS

say "start"
"$CLUSTER" start 2>"$WEIR_DEV_DIR/start.out" || {
    cat "$WEIR_DEV_DIR/start.out" >&2
    fail "cluster.sh start"
}
grep -q 'up: leader elected, 3 executors registered' "$WEIR_DEV_DIR/start.out" ||
    fail "start did not report a ready cluster: $(cat "$WEIR_DEV_DIR/start.out")"

say "start again (must be a no-op)"
out="$("$CLUSTER" start 2>&1)" || fail "second start failed: $out"
[[ "$out" == *"already running; nothing to start"* ]] || fail "second start did not say it was running: $out"

say "status"
out="$("$CLUSTER" status 2>&1)" || fail "status exited non-zero while all run: $out"
[[ "$(grep -c ' running (pid ' <<<"$out")" == 6 ]] || fail "status does not show 6 running processes: $out"

say "submit examples/key-count.yaml"
"$WEIR" submit examples/key-count.yaml >/dev/null || fail "weir submit"
deadline=$((SECONDS + 40))
until [[ "$("$WEIR" status key-count --json 2>/dev/null || true)" =~ \"state\"[[:space:]]*:[[:space:]]*\"finished\" ]]; do
    ((SECONDS < deadline)) || fail "key-count did not finish within 40 s: $("$WEIR" status key-count 2>&1 || true)"
    sleep 0.5
done

out_dir="$WEIR_DEV_DIR/cluster/out/key-count"
last="$(find "$out_dir" -name 'batch-*-part-*.jsonl' | sed 's/.*batch-\([0-9]*\)-part-.*/\1/' | sort -n | tail -n 1)"
[[ -n "$last" ]] || fail "no output files in $out_dir"
keys="$(cat "$out_dir"/batch-"$last"-part-*.jsonl | grep -c '"count":2000,' || true)"
[[ "$keys" == 100 ]] || fail "batch $last has $keys keys at count 2000, expected 100 (files in $out_dir)"
"$WEIR" batches key-count >/dev/null || fail "weir batches"

say "stop"
"$CLUSTER" stop 2>/dev/null || fail "cluster.sh stop"
if "$CLUSTER" status >/dev/null 2>&1; then fail "status exits 0 after stop"; fi
left="$(pgrep -f -- "$WEIR_DEV_DIR/cluster/" || true)"
[[ -z "$left" ]] || fail "processes left after stop: $left"

say "passed in $((SECONDS - t0)) s"
