#!/usr/bin/env bash
# Start/stop a real PostgreSQL (Debian's server binaries) for Weir's
# integration tests: a throwaway cluster made with initdb, listening only on
# 127.0.0.1 on its own port (not 5432), with password (SCRAM-SHA-256)
# authentication for the user `weir` and its database `weir`.
# See docs/dev-services.md.
#
#   deploy/dev/postgres.sh start|stop|status|restart|clean
#   deploy/dev/postgres.sh check          SELECT 1 and an upsert as weir; a wrong password is refused
#   deploy/dev/postgres.sh psql [ARGS...] psql as weir on the database weir
#
# PostgreSQL refuses to run as root. Run by root, this script runs the
# server (and initdb, pg_ctl) as the system user WEIR_DEV_USER (weirdev),
# creating it if needed, and keeps the cluster in that user's home,
# /var/lib/weirdev/postgres-<hash of the dev dir>, because root's home is
# closed to other users; <devdir>/postgres/data is a symlink to it. Run by
# anyone else, the server runs as that user and the cluster is
# <devdir>/postgres/data itself.
#
# Env: WEIR_DEV_DIR (default ~/.cache/weir/dev), WEIR_POSTGRES_PORT (15432),
#      WEIR_POSTGRES_MAX_CONNECTIONS (200), WEIR_POSTGRES_BIN (the newest
#      /usr/lib/postgresql/*/bin), WEIR_DEV_USER (weirdev; only as root),
#      WEIR_POSTGRES_START_TIMEOUT (60 seconds).
set -euo pipefail

SERVICE=postgres
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PG_PORT="${WEIR_POSTGRES_PORT:-15432}"
PG_MAX_CONNECTIONS="${WEIR_POSTGRES_MAX_CONNECTIONS:-200}"
START_TIMEOUT="${WEIR_POSTGRES_START_TIMEOUT:-60}"
DEV_USER="${WEIR_DEV_USER:-weirdev}"

PG_HOME="$WEIR_DEV_DIR/postgres"
PG_DATA_LINK="$PG_HOME/data"
PASSWORD_FILE="$PG_HOME/password"             # the user weir's
ADMIN_PASSWORD_FILE="$PG_HOME/admin-password" # the superuser postgres's
LOG="$(log_file postgres)"
ENV_FILE="$(env_file postgres)"
ADDR="$DEV_HOST:$PG_PORT"
PG_USER=weir
PG_DB=weir
PG_ADMIN=postgres

if [[ "$(id -u)" -eq 0 ]]; then
    AS_ROOT=1
    # Absolute and canonical, so the same dev dir always maps to the same cluster.
    mkdir -p "$WEIR_DEV_DIR"
    DEV_KEY="$(cd "$WEIR_DEV_DIR" && pwd -P | sha256sum | cut -c1-12)"
    DEV_USER_HOME="/var/lib/$DEV_USER"
    PG_DATA="$DEV_USER_HOME/postgres-$DEV_KEY"
else
    AS_ROOT=0
    PG_DATA="$PG_DATA_LINK"
fi
# The postmaster keeps its command line, and -D names this dev dir's cluster.
SERVICE_MARKER=" -D $PG_DATA "

# find_pg_bin: the directory of initdb, pg_ctl, postgres, psql and pg_isready.
find_pg_bin() {
    local dir="${WEIR_POSTGRES_BIN:-}"
    if [[ -z "$dir" ]]; then
        dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
    fi
    [[ -n "$dir" ]] ||
        die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install them (Debian: apt-get install -y postgresql) or set WEIR_POSTGRES_BIN to the directory holding initdb and pg_ctl"
    local b
    for b in initdb pg_ctl postgres psql pg_isready; do
        [[ -x "$dir/$b" ]] ||
            die "$dir/$b not found (Debian: apt-get install -y postgresql, which brings the server and psql; or set WEIR_POSTGRES_BIN)"
    done
    PG_BIN="$dir"
}

# ensure_dev_user: as root, the unprivileged system user that runs the
# server, with a home directory for the clusters.
ensure_dev_user() {
    ((AS_ROOT)) || return 0
    command -v setpriv >/dev/null 2>&1 || die "setpriv not found (Debian: apt-get install -y util-linux)"
    if ! id -u "$DEV_USER" >/dev/null 2>&1; then
        command -v useradd >/dev/null 2>&1 || die "useradd not found; create a system user '$DEV_USER' by hand (or set WEIR_DEV_USER to an existing unprivileged user)"
        info "creating the system user $DEV_USER to run PostgreSQL (it refuses to run as root)"
        useradd --system --user-group --home-dir "$DEV_USER_HOME" --shell /usr/sbin/nologin "$DEV_USER" ||
            die "useradd $DEV_USER failed"
    fi
    [[ "$(id -u "$DEV_USER")" -ne 0 ]] || die "WEIR_DEV_USER=$DEV_USER is root; PostgreSQL needs an unprivileged user"
    mkdir -p "$DEV_USER_HOME"
    chown "$DEV_USER:" "$DEV_USER_HOME"
    chmod 700 "$DEV_USER_HOME"
}

# AS_SERVER: the command prefix that runs a program as the user who owns
# the cluster. As root: setpriv, which execs (no fork, so a background
# server's pid is the postmaster's), then env -C into a directory that user
# may enter: initdb, pg_ctl and postgres fail in a working directory they
# cannot read, such as /root.
AS_SERVER=()
if ((AS_ROOT)); then
    AS_SERVER=(setpriv "--reuid=$DEV_USER" "--regid=$DEV_USER" --init-groups
        env -C "$DEV_USER_HOME" "HOME=$DEV_USER_HOME" "USER=$DEV_USER" "LOGNAME=$DEV_USER")
fi

# as_server CMD...: runs CMD as the user who owns the cluster.
as_server() { ${AS_SERVER[@]+"${AS_SERVER[@]}"} "$@"; }

weir_password() { random_secret "$PASSWORD_FILE"; }
admin_password() { random_secret "$ADMIN_PASSWORD_FILE"; }

# init_cluster: initdb, once per dev dir (until clean).
init_cluster() {
    [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
    info "initialising a cluster in $PG_DATA ($("$PG_BIN/postgres" --version))"
    local pwfile
    mkdir -p "$PG_HOME"
    if ((AS_ROOT)); then
        rm -rf "$PG_DATA"
        ln -sfn "$PG_DATA" "$PG_DATA_LINK"
        pwfile="$DEV_USER_HOME/.initdb-pw-$DEV_KEY"
    else
        pwfile="$PG_HOME/.initdb-pw"
    fi
    (
        umask 077
        admin_password >"$pwfile"
    )
    ((AS_ROOT)) && chown "$DEV_USER:" "$pwfile"
    # No locale (C collation, UTF-8): the same sort order on every machine.
    if ! as_server "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_ADMIN" --pwfile="$pwfile" \
        --auth=scram-sha-256 --encoding=UTF8 --no-locale >>"$LOG" 2>&1; then
        rm -f "$pwfile"
        log_tail "$LOG" 30
        die "initdb failed (see $LOG)"
    fi
    rm -f "$pwfile"
    # Settings live in weir-dev.conf, rewritten on every start.
    echo "include_if_exists = 'weir-dev.conf'" >>"$PG_DATA/postgresql.conf"
}

# write_config: the dev settings and the client authentication rules.
# Rewritten on every start, so a new port or limit applies.
write_config() {
    local tmp
    tmp="$(mktemp)"
    cat >"$tmp" <<CONF
# Generated by deploy/dev/postgres.sh; edits are overwritten on every start.
listen_addresses = '$DEV_HOST'
port = $PG_PORT
# TCP on loopback only: no Unix socket.
unix_socket_directories = ''
max_connections = $PG_MAX_CONNECTIONS
password_encryption = 'scram-sha-256'
# Everything to stderr, which postgres.sh appends to <devdir>/postgres.log.
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d '
CONF
    install_server_file "$tmp" "$PG_DATA/weir-dev.conf"
    cat >"$tmp" <<HBA
# Generated by deploy/dev/postgres.sh; edits are overwritten on every start.
# TYPE  DATABASE  USER  ADDRESS       METHOD
host    all       all   $DEV_HOST/32  scram-sha-256
HBA
    install_server_file "$tmp" "$PG_DATA/pg_hba.conf"
    rm -f "$tmp"
}

# install_server_file SRC DEST: copy SRC to DEST, owned by the server's user, mode 600.
install_server_file() {
    if ((AS_ROOT)); then
        install -m 600 -o "$DEV_USER" -g "$(id -gn "$DEV_USER")" "$1" "$2"
    else
        install -m 600 "$1" "$2"
    fi
}

# admin_sql: psql as the superuser on the database postgres, script on stdin.
admin_sql() {
    PGPASSWORD="$(admin_password)" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h "$DEV_HOST" -p "$PG_PORT" -U "$PG_ADMIN" -d postgres "$@"
}

# ensure_user_and_db: the user weir (with the password of its file, so a
# client configured from the env file keeps working) and its database.
ensure_user_and_db() {
    if ! admin_sql -v user="$PG_USER" -v db="$PG_DB" -v pw="$(weir_password)" >>"$LOG" 2>&1 <<'SQL'; then
SELECT format('CREATE ROLE %I', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
-- CREATEDB: a test may make a database of its own, to run beside others.
ALTER ROLE :"user" WITH LOGIN CREATEDB NOSUPERUSER PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
        log_tail "$LOG" 20
        die "creating the user $PG_USER and the database $PG_DB failed (see $LOG)"
    fi
}

pg_ready() {
    log_has "$LOG" 'database system is ready to accept connections' &&
        "$PG_BIN/pg_isready" -q -h "$DEV_HOST" -p "$PG_PORT"
}

url() { echo "postgres://$PG_USER:$(weir_password)@$ADDR/$PG_DB"; }

write_env() {
    cat >"$ENV_FILE" <<ENV
WEIR_POSTGRES_URL=$(url)
WEIR_POSTGRES_ADMIN_URL=postgres://$PG_ADMIN:$(admin_password)@$ADDR/postgres
WEIR_POSTGRES_HOST=$DEV_HOST
WEIR_POSTGRES_PORT=$PG_PORT
WEIR_POSTGRES_USER=$PG_USER
WEIR_POSTGRES_PASSWORD=$(weir_password)
WEIR_POSTGRES_DB=$PG_DB
ENV
}

do_start() {
    if is_running postgres; then
        info "already running (pid $(service_pid postgres)), $ADDR"
        write_env
        return 0
    fi
    [[ "$PG_MAX_CONNECTIONS" =~ ^[1-9][0-9]*$ ]] ||
        die "WEIR_POSTGRES_MAX_CONNECTIONS must be a positive integer, got '$PG_MAX_CONNECTIONS'"
    find_pg_bin
    ensure_dev_user
    ensure_ports_free "$PG_PORT"
    init_cluster
    write_config
    info "starting PostgreSQL on $ADDR (data $PG_DATA$( ((AS_ROOT)) && echo ", user $DEV_USER")), log $LOG"
    start_bg postgres "$LOG" ${AS_SERVER[@]+"${AS_SERVER[@]}"} "$PG_BIN/postgres" -D "$PG_DATA"
    wait_ready postgres "$START_TIMEOUT" pg_ready
    ensure_user_and_db
    write_env
    info "ready: WEIR_POSTGRES_URL=postgres://$PG_USER:***@$ADDR/$PG_DB (pid $(service_pid postgres))"
}

do_stop() {
    local pid
    if ! pid="$(service_pid postgres)"; then
        rm -f "$(pid_file postgres)" "$ENV_FILE"
        info "not running"
        return 0
    fi
    find_pg_bin
    info "stopping (pid $pid; pg_ctl stop -m fast)"
    # Fast: roll back open transactions, disconnect clients, checkpoint, exit.
    if ! as_server "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >>"$LOG" 2>&1; then
        info "pg_ctl stop failed; stopping immediately (SIGQUIT, then SIGKILL)"
        kill -QUIT "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 10))
        while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.3; done
        pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$(pid_file postgres)" "$ENV_FILE"
    info "stopped"
}

do_status() {
    if is_running postgres; then
        echo "postgres: running (pid $(service_pid postgres)), $ADDR, data $PG_DATA, log $LOG"
    else
        echo "postgres: not running"
        return 1
    fi
}

do_clean() {
    rm -rf "$PG_DATA"
    rm -f "$PG_DATA_LINK"
    info "deleted $PG_DATA (the passwords in $PG_HOME are kept)"
}

# psql_weir ARGS...: psql as weir on its database; the password goes
# through the environment, not the command line.
psql_weir() {
    PGPASSWORD="$(weir_password)" "$PG_BIN/psql" -X -h "$DEV_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" "$@"
}

# do_check: SELECT 1 as weir over TCP with its password, an upsert in a
# transaction, and a wrong password refused.
do_check() {
    is_running postgres || die "postgres is not running (start it with $0 start)"
    find_pg_bin
    local got
    got="$(psql_weir -A -t -v ON_ERROR_STOP=1 -c 'SELECT 1')" || die "check: SELECT 1 as $PG_USER failed"
    [[ "$got" == 1 ]] || die "check: SELECT 1 gave '$got'"
    got="$(psql_weir -A -t -q -v ON_ERROR_STOP=1 <<'SQL'
BEGIN;
CREATE TEMP TABLE weir_check (k int PRIMARY KEY, v text) ON COMMIT DROP;
INSERT INTO weir_check VALUES (1, 'a'), (2, 'b');
INSERT INTO weir_check VALUES (2, 'c') ON CONFLICT (k) DO UPDATE SET v = excluded.v;
SELECT string_agg(k || '=' || v, ',' ORDER BY k) || ' ' || current_user || '@' || current_database()
  FROM weir_check;
COMMIT;
SQL
    )" || die "check: the upsert as $PG_USER failed"
    [[ "$got" == "1=a,2=c weir@weir" ]] || die "check: the upsert gave '$got', expected '1=a,2=c weir@weir'"
    if PGPASSWORD=not-the-password "$PG_BIN/psql" -X -h "$DEV_HOST" -p "$PG_PORT" -U "$PG_USER" \
        -d "$PG_DB" -c 'SELECT 1' >/dev/null 2>&1; then
        die "check: a wrong password was accepted"
    fi
    info "check OK: $ADDR, SELECT 1 and an upsert as $PG_USER@$PG_DB (scram-sha-256), a wrong password refused"
}

EXTRA_COMMANDS=(check psql)
EXTRA_USAGE="check | psql [ARGS...]"
do_extra() {
    case "$1" in
    check) do_check ;;
    psql)
        shift
        find_pg_bin
        psql_weir "$@"
        ;;
    esac
}

dev_main "$@"
