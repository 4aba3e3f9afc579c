#!/usr/bin/env bash
# Runs Weir's whole test suite on this machine, installing what is missing:
# Debian packages (the build's, from scripts/bootstrap.sh, and for the dev
# services a JDK, Maven, Redis and PostgreSQL), then the Kafka, HDFS and
# HBase jars from Maven Central (deploy/dev/), then starts the dev services
# (Kafka, HDFS, Redis, PostgreSQL, HBase), checks formatting and lints,
# builds, runs every test (tests/dev-cluster.sh included:
# deploy/dev/cluster.sh end to end), and stops the services.
#
#   scripts/test.sh
#
# CARGO_TARGET_DIR is honoured (CI points it at a cache outside the clone).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n==> %s\n' "$*" >&2; }

step "checking tools (scripts/bootstrap.sh)"
# The build's Debian packages are listed once, in scripts/bootstrap.sh; the
# dev services' JDK and Maven are added here when their commands are missing.
services_packages=()
command -v javac >/dev/null 2>&1 || services_packages+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || services_packages+=(maven)
# openssl makes the test certificates (deploy/dev/certs.sh).
command -v openssl >/dev/null 2>&1 || services_packages+=(openssl)
# Headless Chromium drives the web UI test (tests/tests/ui.rs).
command -v chromium >/dev/null 2>&1 || services_packages+=(chromium)
# Redis and PostgreSQL servers for the lookup and sink tests
# (deploy/dev/redis.sh, postgres.sh). redis-server brings redis-cli, and
# postgresql the server binaries under /usr/lib/postgresql/*/bin and psql.
command -v redis-server >/dev/null 2>&1 || services_packages+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || services_packages+=(postgresql)
scripts/bootstrap.sh ${services_packages[@]+"${services_packages[@]}"}
if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || {
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs) and rerun" >&2
    exit 1
}
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "starting Kafka, HDFS, Redis, PostgreSQL and HBase (deploy/dev/services.sh)"
trap 'deploy/dev/services.sh stop >/dev/null 2>&1 || true' EXIT
# A fresh broker for every run. The control topic weir-commits is compacted
# with one-hour segments: in a broker whose topic is older than that, a
# segment can roll in the middle of a run and the cleaner then drops the
# run's earlier commit markers, which the chaos verifier reads one by one.
deploy/dev/kafka.sh clean
# Fresh Redis and PostgreSQL data too (HBase is always fresh): a table, a
# commit marker or a lookup key left by an earlier run must not change
# what this run's tests see.
deploy/dev/redis.sh clean
deploy/dev/postgres.sh clean
deploy/dev/services.sh start
set -a
# shellcheck disable=SC1091
. "${WEIR_DEV_DIR:-$HOME/.cache/weir/dev}/services.env"
set +a
deploy/dev/smoke.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo deny: licences, bans and sources (deny.toml)"
# Installed once per machine from crates.io (about 5 minutes on 2 cores).
# The advisory check needs the RustSec database from GitHub, which the
# test machines cannot reach: run `cargo deny check advisories` where it is.
if ! command -v cargo-deny >/dev/null 2>&1; then
    cargo install cargo-deny --locked --version 0.20.2
fi
cargo deny --locked check licenses bans sources

step "cargo build (binaries used by the integration tests)"
cargo build --workspace --bins --locked

step "Helm chart and Dockerfile checks (deploy/helm/check.sh)"
deploy/helm/check.sh

step "cargo test"
# Every test target runs even after one fails, so one run reports them all.
cargo test --workspace --locked --no-fail-fast

step "local cluster script (tests/dev-cluster.sh, on the debug binaries)"
tests/dev-cluster.sh

step "stopping the dev services"
deploy/dev/services.sh stop
trap - EXIT
step "all tests passed"
