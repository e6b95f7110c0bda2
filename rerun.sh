#!/usr/bin/env bash
# Builds, cleans (./clean.sh) and starts the whole system: the PostgreSQL warehouse, the etl daemon
# and the users and cards producers writing into data/events/inbox/. Prints where to look, then
# waits until Ctrl-C, which stops everything (etl gracefully, with SIGTERM).
#
# With a Docker engine (`docker info` answers, and `docker compose` or docker-compose exists): checks
# that the base images are on the engine or can be pulled (else stops at once, saying which and how
# to override it), builds the image with BuildKit, ./clean.sh, docker compose up (see
# docker-compose.yml).
# Without one, the same system natively (needs cargo and the postgresql package):
#   - cargo build --release -p etl -p services
#   - a private PostgreSQL cluster (initdb -A trust -U postgres) in data/pg/, or, when run as root,
#     as the postgres user in a fresh /tmp/etl-rerun-pg.* folder owned by it (a checkout may sit in
#     a folder that postgres cannot enter, e.g. under /root; ./clean.sh removes it), listening on
#     127.0.0.1:$RERUN_PG_PORT (default $DWH_PORT or 54329, so that it never clashes with a
#     system server on 5432) and on a socket in the cluster's folder, with a database `dwh`;
#   - `etl run`, `users` and `cards` in the background, pid files in data/run/, output in
#     data/logs/etl.stdout.log, users.log and cards.log (etl also writes data/logs/etl.log),
#     the server's log in data/logs/postgres.log.
#
# RERUN_TOPOLOGY=cluster: the multi-host topology instead, the producers' inbox read by an edge
# agent that publishes to a NATS JetStream broker, two etl replicas loading the warehouse from it.
# With Docker: docker-compose.yml layered with docker-compose.cluster.yml (services nats,
# forward, etl-a, etl-b; the single-host etl is left out). Natively (needs the nats-server
# package as well):
#   - nats-server -js -sd data/nats -a 127.0.0.1 -p $RERUN_NATS_PORT (default 4222, or the next
#     free port when 4222 is taken and RERUN_NATS_PORT is not set), log in data/logs/nats.log;
#   - `etl run --source jetstream` twice, etl-a and etl-b, with /readyz and /metrics on
#     127.0.0.1:$REPLICA_A_PORT and :$REPLICA_B_PORT (9188, 9189) and their own data folders data/replicas/etl-{a,b}/ (their
#     etl.log there); `etl forward` on the inbox, on ETL_HTTP_ADDR (127.0.0.1:9187), writing
#     data/logs/etl.log; output in data/logs/{nats,etl-a.stdout,etl-b.stdout,forward.stdout}.log.
#
# Environment:
#   RERUN_FOR=SECONDS          run that long, then stop everything as on Ctrl-C (tests, CI)
#   RERUN_TOPOLOGY=single|cluster
#                              what runs (default single: etl on the inbox)
#   RERUN_PG_PORT=PORT         port of the native cluster (default DWH_PORT, else 54329)
#   DWH_PORT HTTP_PORT         host ports of the warehouse (54329) and of etl's /readyz and /metrics
#                              (9187), under compose and natively; with Docker, a port already
#                              taken stops the run before anything is built, naming its variable
#                              (the cluster's REPLICA_A_PORT, REPLICA_B_PORT, NATS_MONITOR_PORT
#                              too: docker-compose.cluster.yml)
#   RERUN_NATS_PORT=PORT       port of the native broker (cluster; default 4222 or the next free)
#   RERUN_MODE=native|docker   skip the detection
#   ETL_*                      passed on to the daemon (ETL_HTTP_ADDR defaults to 127.0.0.1:9187)
#   BUILD_IMAGE RUNTIME_IMAGE DWH_IMAGE APP_IMAGE BINARIES PREBUILT PREBUILT_DIR NATS_IMAGE
#                              Docker only: the images and where the binaries come from (docs/src/deployment.md,
#                              "Images"; e.g. BINARIES=prebuilt takes target/release/)
#   HOST_UID HOST_GID          Docker only: the user the services run as (default: yours); as
#                              root, data/ is then handed to that user
#   IMAGE_LABEL=KEY=VALUE      Docker only: a label put on the images it builds or imports
#                              (tests/compose/run sets one to remove its dangling images)
#
# Exit status: 0 once everything stopped cleanly, 1 if a service failed or could not start.

# shellcheck source=clean.sh disable=SC1091 # (followed when clean.sh is checked along, as .ci/run does)
source "$(dirname "${BASH_SOURCE[0]}")/clean.sh"
set -euo pipefail
cd "$ROOT"

RERUN_FOR=${RERUN_FOR:-}
TOPOLOGY=${RERUN_TOPOLOGY:-single}
PG_PORT=${RERUN_PG_PORT:-${DWH_PORT:-54329}}
DB_URL="postgres://postgres@127.0.0.1:$PG_PORT/dwh"
export ETL_HTTP_ADDR=${ETL_HTTP_ADDR-127.0.0.1:${HTTP_PORT:-9187}}
REPLICA_A_ADDR=127.0.0.1:${REPLICA_A_PORT:-9188}
REPLICA_B_ADDR=127.0.0.1:${REPLICA_B_PORT:-9189}
# IMAGE_LABEL as options of docker build (--label) and docker import (--change LABEL).
BUILD_LABEL=()
IMPORT_LABEL=()
if [ -n "${IMAGE_LABEL:-}" ]; then
    BUILD_LABEL=(--label "$IMAGE_LABEL")
    IMPORT_LABEL=(--change "LABEL $IMAGE_LABEL")
fi

STARTED=0 # set once the native run may have left something running

die() {
    say "rerun.sh: $*"
    [ "$STARTED" = 0 ] || stop_all
    exit 1
}

case "${1:-}" in
    "") ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "no arguments expected (see --help)" ;;
esac
if [ -n "$RERUN_FOR" ] && ! [[ "$RERUN_FOR" =~ ^[0-9]+$ ]]; then
    die "RERUN_FOR must be a whole number of seconds, got '$RERUN_FOR'"
fi
case "$TOPOLOGY" in
    single | cluster) ;;
    *) die "RERUN_TOPOLOGY must be single or cluster, got '$TOPOLOGY'" ;;
esac

# ------------------------------------------------------------------------------------------------
# Docker
# ------------------------------------------------------------------------------------------------

# Makes sure `image` (the value of the variable `var`) is on the engine, pulling it if it is not;
# stops with one message when it cannot be had.
need_image() {
    local var=$1 image=$2 out
    docker image inspect "$image" >/dev/null 2>&1 && return 0
    say "== pulling $image ($var)"
    if ! out=$(timeout 600 docker pull -q "$image" 2>&1); then
        out=$(printf '%s\n' "$out" | tail -n 1)
        die "base image $image ($var) is not on this Docker engine and cannot be pulled: ${out:-timed out}
  Point $var at an image this engine has or can pull (docs/src/deployment.md, \"Images\"), e.g. $var=<your mirror>/$image ./rerun.sh,
  or run without Docker: RERUN_MODE=native ./rerun.sh"
    fi
}

# The app image (APP_IMAGE), built with BuildKit from the Dockerfile, with the binaries compiled in
# Docker (BINARIES=build) or taken from outside (BINARIES=prebuilt: PREBUILT names a local image
# holding them, or else they are PREBUILT_DIR, default target/release, given as the named build
# context PREBUILT with the buildx plugin, or imported as an image for a builder without it).
build_image() {
    local binaries=${BINARIES:-build} prebuilt=${PREBUILT:-prebuilt} dir context=()
    case "$binaries" in
        build) need_image BUILD_IMAGE "$BUILD_IMAGE" ;;
        prebuilt)
            if ! docker image inspect "$prebuilt" >/dev/null 2>&1; then
                dir=${PREBUILT_DIR:-target/release}
                [ -x "$dir/etl" ] || die "BINARIES=prebuilt: no $dir/etl (cargo build --release -p etl -p services, or set PREBUILT_DIR)"
                if docker buildx version >/dev/null 2>&1; then
                    context=(--build-context "$prebuilt=$dir")
                else
                    prebuilt=etl-binaries:rerun
                    tar -C "$dir" -c etl users cards loadgen \
                        | docker import "${IMPORT_LABEL[@]}" - "$prebuilt" >/dev/null \
                        || die "cannot import the binaries of $dir as an image"
                fi
            fi
            ;;
        *) die "BINARIES must be build or prebuilt, got '$binaries'" ;;
    esac
    need_image RUNTIME_IMAGE "$RUNTIME_IMAGE"
    say "== building $APP_IMAGE (binaries: $binaries)"
    buildkit_build -t "$APP_IMAGE" --build-arg "BUILD_IMAGE=$BUILD_IMAGE" \
        --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" --build-arg "BINARIES=$binaries" \
        --build-arg "PREBUILT=$prebuilt" "${BUILD_LABEL[@]}" "${context[@]}" . \
        || die "the image build failed"
}

DC=() # the compose command with the topology's files

# Stops at once when a host port the compose files publish is taken (by a native run, another
# server, another checkout's stack), naming the variable that moves it. Not when this project's
# own containers run: ./clean.sh stops them before `up`, freeing their ports.
check_compose_ports() {
    local taken project
    project=$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' "$ROOT/.env")
    [ -z "$(docker ps -q --filter "label=com.docker.compose.project=${COMPOSE_PROJECT_NAME:-$project}")" ] \
        || return 0
    if taken=$(taken_compose_port "$TOPOLOGY"); then
        die "port ${taken#* } (127.0.0.1) is taken, and the compose files publish on it: set ${taken% *} to a free port, e.g. ${taken% *}=$((${taken#* } + 1)) ./rerun.sh"
    fi
}

run_docker() {
    local dc
    # The services write into ./data as the invoking user (or HOST_UID:HOST_GID), so that
    # ./clean.sh can remove it.
    HOST_UID=${HOST_UID:-$(id -u)}
    HOST_GID=${HOST_GID:-$(id -g)}
    export HOST_UID HOST_GID
    BUILD_IMAGE=${BUILD_IMAGE:-rust:1-bookworm}
    RUNTIME_IMAGE=${RUNTIME_IMAGE:-debian:bookworm-slim}
    DWH_IMAGE=${DWH_IMAGE:-postgres:16-bookworm}
    APP_IMAGE=${APP_IMAGE:-etl-app}
    NATS_IMAGE=${NATS_IMAGE:-nats:2.9}
    export BUILD_IMAGE RUNTIME_IMAGE DWH_IMAGE APP_IMAGE NATS_IMAGE
    find_compose || die "neither \`docker compose\` nor docker-compose is installed (or RERUN_MODE=native)"
    # The single topology is docker-compose.yml as compose finds it by itself; the cluster layers
    # docker-compose.cluster.yml on it.
    DC=("${COMPOSE[@]}")
    [ "$TOPOLOGY" = cluster ] && DC+=("${CLUSTER_FILES[@]}")
    dc="${DC[*]}"
    check_compose_ports
    need_image DWH_IMAGE "$DWH_IMAGE"
    [ "$TOPOLOGY" = cluster ] && need_image NATS_IMAGE "$NATS_IMAGE"
    build_image
    "$ROOT/clean.sh"
    if [ "$HOST_UID:$HOST_GID" != "$(id -u):$(id -g)" ]; then
        # Only root can hand data/ to another user; anyone else gets a clear refusal from chown.
        chown -R "$HOST_UID:$HOST_GID" "$DATA" || die "cannot hand data/ to $HOST_UID:$HOST_GID"
    fi
    # shellcheck source=.env
    . "$ROOT/.env" # the credentials, for the psql line
    say ""
    if [ "$TOPOLOGY" = cluster ]; then
        say "== Docker, cluster: warehouse, broker (nats), forward, replicas etl-a and etl-b, users and cards starting; Ctrl-C stops everything"
        say "  rejections: tail -F data/logs/etl.log | grep rejected   (forward rejects invalid files)"
        say "  reasons:    ls data/events/failed/cards/*/   (day folders; each rejected file has a <name>.error.json)"
        say "  warehouse:  $dc exec dwh psql -U $POSTGRES_USER -d $POSTGRES_DB -c 'SELECT count(*) FROM cards'"
        say "  broker:     curl -s '127.0.0.1:8222/jsz?consumers=true'"
        say "  readiness:  curl -s 127.0.0.1:${HTTP_PORT:-9187}/readyz (forward), :${REPLICA_A_PORT:-9188}/readyz (etl-a), :${REPLICA_B_PORT:-9189}/readyz (etl-b)"
        say "  dead letters: $dc exec etl-a etl dead-letters list"
        say "  logs:       $dc logs -f forward etl-a etl-b users cards"
    else
        say "== Docker: warehouse, etl, users and cards starting; Ctrl-C stops everything"
        say "  rejections: tail -F data/logs/etl.log | grep rejected"
        say "  reasons:    ls data/events/failed/cards/*/   (day folders; each rejected file has a <name>.error.json)"
        say "  warehouse:  $dc exec dwh psql -U $POSTGRES_USER -d $POSTGRES_DB -c 'SELECT count(*) FROM cards'"
        say "  status:     $dc exec etl etl status"
        say "  metrics:    curl -s http://127.0.0.1:${HTTP_PORT:-9187}/metrics"
        say "  producers:  $dc logs -f users cards"
    fi
    say ""
    trap '"${DC[@]}" stop; exit 0' INT TERM
    if [ -n "$RERUN_FOR" ]; then
        # SIGINT is what Ctrl-C sends: compose then stops the containers gracefully. --foreground
        # keeps compose in the terminal's process group, so that a real Ctrl-C reaches it too.
        timeout --foreground --signal=INT "$RERUN_FOR" "${DC[@]}" up --no-build || true
        "${DC[@]}" stop
    else
        "${DC[@]}" up --no-build
    fi
}

# ------------------------------------------------------------------------------------------------
# Native
# ------------------------------------------------------------------------------------------------

PIDS=()          # pids of the services (etl or nats, forward, etl-a, etl-b; users, cards), as started
declare -A NAME_OF=() # pid -> service name
TIMER=""         # pid of the RERUN_FOR sleep

start_cluster() {
    local bin=$1 sock conf
    if [ "$(id -u)" = 0 ]; then
        # The server runs as postgres, which may not be allowed into the checkout (e.g. under
        # /root, or a mktemp -d folder): the cluster and its log go to a folder of its own.
        PG_DIR=$(mktemp -d /tmp/etl-rerun-pg.XXXXXX) || die "cannot create a folder in /tmp"
        printf '%s\n' "$PG_DIR" >"$PG_DIR_FILE"
        PG_LOG="$PG_DIR/postgres.log"
        touch "$PG_LOG"
        ln -sfn "$PG_LOG" "$DATA/logs/postgres.log"
        chown -R postgres: "$PG_DIR"
        runuser -u postgres -- test -w "$PG_DIR" \
            || die "the postgres user cannot write to $PG_DIR"
    else
        PG_LOG="$DATA/logs/postgres.log"
        mkdir -p "$PG_DIR"
        touch "$PG_LOG"
    fi
    PG_DATA="$PG_DIR/data"
    sock="$PG_DIR/sock"
    as_pg mkdir -p "$sock"
    say "== PostgreSQL: initdb in $PG_DATA"
    as_pg "$bin/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
        || die "initdb failed, see $PG_DIR/initdb.log"
    # A socket path longer than sun_path (108 bytes) cannot be bound: TCP alone then.
    if [ ${#sock} -gt 90 ]; then
        sock=""
    fi
    conf="$PG_DATA/postgresql.conf"
    as_pg tee -a "$conf" >/dev/null <<EOF
# added by rerun.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sock'
EOF
    as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null \
        || die "PostgreSQL did not start, see data/logs/postgres.log"
    "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
        -c 'CREATE DATABASE dwh' || die "cannot create the database dwh"
}

# Starts `name` in the background, in a session of its own so that a Ctrl-C in the terminal
# reaches only this script, which then stops each service once, in order. Its output goes to
# data/logs/<log>, without colour codes.
start_service() {
    local name=$1 log=$2
    shift 2
    NO_COLOR=1 setsid "$@" </dev/null >"$DATA/logs/$log" 2>&1 &
    echo "$!" >"$RUN_DIR/$name.pid"
    PIDS+=("$!")
    NAME_OF[$!]=$name
}

# Waits until etl has migrated the warehouse, or fails if etl exits first.
wait_for_etl() {
    local etl_pid=$1 i
    for i in $(seq 1 600); do
        if [ "$("$PSQL" -X -At -d "$DB_URL" -c "SELECT to_regclass('cards') IS NOT NULL" 2>/dev/null)" = t ]; then
            return 0
        fi
        is_running "$etl_pid" etl || return 1
        [ "$i" -lt 600 ] && sleep 0.1
    done
    return 1
}

# Stops everything, reports how each service ended, and exits: 0 if each stopped with status 0 and
# `status` (1 when something already went wrong) is 0. `why` says what triggered it.
finish() {
    local why=$1 status=${2:-0} pid code
    trap '' INT TERM
    if [ -n "$TIMER" ]; then
        kill "$TIMER" 2>/dev/null || true
    fi
    say ""
    say "== stopping ($why)"
    stop_all
    for pid in "${PIDS[@]}"; do
        code=0
        wait "$pid" 2>/dev/null || code=$?
        # 127: bash no longer knows the child (its status was already collected).
        [ "$code" = 127 ] && continue
        say "${NAME_OF[$pid]} exited with status $code"
        [ "$code" = 0 ] || status=1
    done
    exit "$status"
}

# The single topology: `etl run` on the inbox, ready once it has migrated the warehouse.
start_single() {
    local target=$1
    say "== starting etl, users and cards"
    start_service etl etl.stdout.log "$target/etl" run
    wait_for_etl "$!" || finish "etl did not start, see data/logs/etl.stdout.log" 1
}

# nats-server on PATH, else where Debian's package puts it (/usr/sbin is not on every PATH).
nats_bin() {
    if command -v nats-server 2>/dev/null; then
        return 0
    fi
    [ -x /usr/sbin/nats-server ] || return 1
    echo /usr/sbin/nats-server
}

# Sets NATS_PORT: RERUN_NATS_PORT, else 4222 or the next free port after it.
choose_nats_port() {
    if [ -n "${RERUN_NATS_PORT:-}" ]; then
        [[ "$RERUN_NATS_PORT" =~ ^[0-9]+$ ]] || die "RERUN_NATS_PORT must be a port number, got '$RERUN_NATS_PORT'"
        NATS_PORT=$RERUN_NATS_PORT
        port_in_use "$NATS_PORT" && die "port $NATS_PORT is taken: set RERUN_NATS_PORT to a free port"
        return 0
    fi
    NATS_PORT=4222
    while port_in_use "$NATS_PORT"; do
        NATS_PORT=$((NATS_PORT + 1))
        [ "$NATS_PORT" -le 4322 ] || die "no free port in 4222-4322 for nats-server: set RERUN_NATS_PORT"
    done
    [ "$NATS_PORT" = 4222 ] || say "port 4222 is taken: nats-server will listen on 127.0.0.1:$NATS_PORT"
}

# The broker: JetStream, its files in data/nats/, on 127.0.0.1:$NATS_PORT; returns once it answers.
start_broker() {
    local nats=$1 pid i
    say "== nats-server: JetStream in data/nats, on 127.0.0.1:$NATS_PORT"
    start_service nats nats.log "$nats" -js -sd "$DATA/nats" -a 127.0.0.1 -p "$NATS_PORT"
    pid=$!
    for i in $(seq 1 100); do
        sleep 0.1
        port_in_use "$NATS_PORT" && return 0
        is_running "$pid" nats-server || break
    done
    finish "nats-server did not start on 127.0.0.1:$NATS_PORT, see data/logs/nats.log" 1
}

# The cluster topology: the broker, two replicas consuming its stream into the warehouse (the
# first one migrates it), and the edge agent publishing the inbox to it.
start_cluster_topology() {
    local target=$1 nats=$2
    start_broker "$nats"
    export ETL_NATS_URL="nats://127.0.0.1:$NATS_PORT"
    say "== starting etl-a and etl-b (etl run --source jetstream), forward (etl forward), users and cards"
    ETL_DATA_DIR="$DATA/replicas/etl-a" ETL_HTTP_ADDR=$REPLICA_A_ADDR \
        start_service etl-a etl-a.stdout.log "$target/etl" run --source jetstream
    wait_for_etl "$!" || finish "etl-a did not start, see data/logs/etl-a.stdout.log" 1
    ETL_DATA_DIR="$DATA/replicas/etl-b" ETL_HTTP_ADDR=$REPLICA_B_ADDR \
        start_service etl-b etl-b.stdout.log "$target/etl" run --source jetstream
    start_service forward forward.stdout.log "$target/etl" forward
}

run_native() {
    local bin target who code nats="" addr
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"
    bin=$(pg_bin_dir) || die "PostgreSQL server binaries not found: apt-get install -y postgresql"
    if [ "$TOPOLOGY" = cluster ]; then
        nats=$(nats_bin) || die "nats-server not found (RERUN_TOPOLOGY=cluster): apt-get install -y nats-server"
    fi
    PSQL=psql
    command -v psql >/dev/null 2>&1 || PSQL="$bin/psql"
    # `wait -n -p` below.
    [ "${BASH_VERSINFO[0]}${BASH_VERSINFO[1]}" -ge 51 ] || die "bash 5.1 or newer is needed"

    say "== building (cargo build --release -p etl -p services)"
    cargo build --release -p etl -p services
    target="${CARGO_TARGET_DIR:-target}/release"
    target=$(cd "$target" && pwd)

    "$ROOT/clean.sh"
    port_in_use "$PG_PORT" \
        && die "port $PG_PORT is taken (another PostgreSQL?): set RERUN_PG_PORT to a free port"
    if [ "$TOPOLOGY" = cluster ]; then
        choose_nats_port
        for addr in "$ETL_HTTP_ADDR" "$REPLICA_A_ADDR" "$REPLICA_B_ADDR"; do
            if [ -n "$addr" ] && port_in_use "${addr##*:}"; then
                say "warning: $addr is taken, the etl process meant for it will run without its HTTP endpoints"
            fi
        done
    elif [ -n "$ETL_HTTP_ADDR" ] && port_in_use "${ETL_HTTP_ADDR##*:}"; then
        say "warning: ${ETL_HTTP_ADDR} is taken, etl will run without its HTTP endpoints (set ETL_HTTP_ADDR)"
    fi
    mkdir -p "$RUN_DIR"

    trap 'finish interrupted' INT TERM
    STARTED=1
    start_cluster "$bin"

    export ETL_DATABASE_URL="$DB_URL" ETL_DATA_DIR="$DATA" ETL_SCHEMAS_DIR="$ROOT/schemas" \
        ETL_TYPES_DIR="$ROOT/types" ETL_MIGRATIONS_DIR="$ROOT/db/migrations"
    if [ "$TOPOLOGY" = cluster ]; then
        start_cluster_topology "$target" "$nats"
    else
        start_single "$target"
    fi
    start_service users users.log "$target/users" --events-dir "$DATA/events/inbox"
    start_service cards cards.log "$target/cards" --events-dir "$DATA/events/inbox" \
        --state-dir "$DATA/state"

    say ""
    say "== running natively${RERUN_TOPOLOGY:+ ($TOPOLOGY)}; Ctrl-C stops everything${RERUN_FOR:+ (or in ${RERUN_FOR}s: RERUN_FOR)}"
    if [ "$TOPOLOGY" = cluster ]; then
        say "  rejections: tail -F data/logs/etl.log | grep rejected   (forward's log: it rejects invalid files)"
        say "  reasons:    ls data/events/failed/cards/*/   (day folders; each rejected file has a <name>.error.json)"
        say "  warehouse:  $PSQL $DB_URL -c 'SELECT count(*) FROM cards'"
        say "  dead letters: ETL_DATABASE_URL=$DB_URL ${target#"$ROOT"/}/etl dead-letters list"
        say "  broker:     $ETL_NATS_URL, its files in data/nats/"
        say "  readiness:  curl -s ${ETL_HTTP_ADDR:-(forward: none)}/readyz (forward), $REPLICA_A_ADDR/readyz (etl-a), $REPLICA_B_ADDR/readyz (etl-b)"
        say "  logs:       data/logs/{forward.stdout,etl-a.stdout,etl-b.stdout,nats,users,cards,postgres}.log,"
        say "              data/logs/etl.log (forward), data/replicas/etl-{a,b}/logs/etl.log"
    else
        say "  rejections: tail -F data/logs/etl.log | grep rejected"
        say "  reasons:    ls data/events/failed/cards/*/   (day folders; each rejected file has a <name>.error.json)"
        say "  warehouse:  $PSQL $DB_URL -c 'SELECT count(*) FROM cards'"
        say "  status:     ETL_DATABASE_URL=$DB_URL ${target#"$ROOT"/}/etl status"
        [ -z "$ETL_HTTP_ADDR" ] || say "  metrics:    curl -s http://$ETL_HTTP_ADDR/metrics"
        say "  logs:       data/logs/{etl.stdout,users,cards,postgres}.log"
    fi
    say ""

    if [ -n "$RERUN_FOR" ]; then
        sleep "$RERUN_FOR" &
        TIMER=$!
    fi
    # Returns when the timer ends or a service exits; a signal runs the trap instead.
    code=0
    wait -n -p who "${PIDS[@]}" ${TIMER:+"$TIMER"} || code=$?
    if [ "$who" = "$TIMER" ]; then
        TIMER=""
        finish "RERUN_FOR=${RERUN_FOR}s elapsed"
    fi
    finish "${NAME_OF[$who]} stopped by itself with status $code, see data/logs/" 1
}

if docker_available; then
    run_docker
else
    [ "${RERUN_MODE:-}" = native ] || say "no Docker engine answers: running natively"
    run_native
fi
