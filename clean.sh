#!/usr/bin/env bash
# Stops whatever ./rerun.sh started and resets data/ to the empty, versioned folder layout.
#
#   ./clean.sh              stop everything, then remove data/ and recreate its empty layout
#   ./clean.sh --stop-only  stop everything, keep data/ (what rerun.sh does on Ctrl-C)
#
# What it stops, whichever topology (RERUN_TOPOLOGY=single or cluster) ran:
#   - the native run: the processes recorded in data/run/<name>.pid (cards, users, forward, the
#     replicas etl-a and etl-b, etl, each with SIGTERM so it finishes gracefully, then the broker
#     nats-server with SIGINT; SIGKILL only past a deadline), then the private PostgreSQL cluster
#     (pg_ctl stop -m fast): in data/pg/, or, for a run as root, in the /tmp/etl-rerun-pg.* folder
#     named by data/run/pg.dir, which is then removed (its log is kept as data/logs/postgres.log);
#   - the Docker run: `docker compose down -v --remove-orphans` for each topology's compose files
#     (containers, network, the warehouse and broker volumes), when a Docker engine answers (with
#     the Compose plugin, or the standalone docker-compose).
#
# rerun.sh sources this file for the same functions, so starting and stopping share one definition
# of the layout, the pid files and the cluster; run as a command, it calls main at the bottom.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA="$ROOT/data"

# The folders the daemon and the producers expect (the shipped ones kept in git by .gitkeep
# files): for every type declared in types/*.toml, its inbox, done/ and failed/ folders and a log
# folder logs/<type>/ for its producers (a producer beside the stack mounts, e.g.,
# ./data/events/inbox/users at /app/events and ./data/logs/users at /app/logs: folders that exist
# beforehand keep their owner, where Docker would create missing ones as root).
declared_types() {
    local f
    for f in "$ROOT"/types/*.toml; do
        if [ -f "$f" ]; then basename "$f" .toml; fi
    done
}
LAYOUT=(logs state)
while IFS= read -r layout_type; do
    LAYOUT+=("events/inbox/$layout_type" "events/done/$layout_type" "events/failed/$layout_type"
        "logs/$layout_type")
done < <(declared_types)
unset layout_type
# Native processes, in the order they are stopped: producers first, so the daemon (or the
# forwarder) still ingests their last files before it stops itself; the replicas before the
# broker, so that they can still acknowledge what they committed.
SERVICES=(cards users forward etl-a etl-b etl nats)
# Seconds a process gets to stop after SIGTERM. etl's own bound is shutdown_timeout_secs (10 by
# default); this leaves it room.
STOP_TIMEOUT_SECS=20

RUN_DIR="$DATA/run"
# The native cluster: data/pg/, unless a run as root put it elsewhere (data/run/pg.dir says where).
PG_DIR_FILE="$RUN_DIR/pg.dir"
PG_DIR="$DATA/pg"

say() { printf '%s\n' "$*" >&2; }

# The compose files of each topology (`docker compose -f … -f …`). docker-compose.prebuilt.yml
# only changes how the image is built, not which services run: the single topology covers it.
SINGLE_FILES=(-f docker-compose.yml)
CLUSTER_FILES=(-f docker-compose.yml -f docker-compose.cluster.yml)

# The compose command, found once: the Compose plugin (`docker compose`), else the standalone
# docker-compose (1.29 in Debian bookworm), which reads the same docker-compose.yml.
COMPOSE=()
find_compose() {
    [ "${#COMPOSE[@]}" -gt 0 ] && return 0
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        return 1
    fi
}

# Whether a Docker engine answers and compose is available: then the system runs in containers.
# RERUN_MODE=native|docker forces the choice (e.g. to try the native path on a Docker machine).
docker_available() {
    case "${RERUN_MODE:-}" in
        native) return 1 ;;
        docker) return 0 ;;
    esac
    command -v docker >/dev/null 2>&1 \
        && docker info >/dev/null 2>&1 \
        && find_compose
}

# `docker build ARGS...` with BuildKit, which the Dockerfile needs: through the buildx plugin when
# there is one, else with a docker client older than 23.0 on PATH (BuildKit built in, switched on
# by DOCKER_BUILDKIT=1); newer clients without buildx only have the legacy builder. Status 3 when
# no client can.
buildkit_build() {
    local client version dir dirs
    if docker buildx version >/dev/null 2>&1; then
        docker buildx build --load "$@"
        return
    fi
    # Every docker on PATH (`type -aP` reports only the hashed one once docker has run).
    IFS=: read -ra dirs <<<"$PATH"
    for dir in "${dirs[@]}"; do
        client="${dir:-.}/docker"
        [ -x "$client" ] || continue
        version=$("$client" version --format '{{.Client.Version}}' 2>/dev/null </dev/null) || continue
        if [[ "$version" =~ ^([0-9]+)\. ]] && [ "${BASH_REMATCH[1]}" -lt 23 ]; then
            DOCKER_BUILDKIT=1 "$client" build "$@"
            return
        fi
    done
    say "no BuildKit builder: install the docker buildx plugin (docker-buildx) or use a docker client older than 23.0"
    return 3
}

# Whether something already listens on 127.0.0.1:PORT (a connection is accepted).
port_in_use() {
    (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null
}

# The host ports the compose files publish, as "VARIABLE PORT" lines (the environment's value, or
# the default of docker-compose.yml and docker-compose.cluster.yml); with `cluster`, the cluster
# topology's as well.
compose_ports() {
    printf 'DWH_PORT %s\nHTTP_PORT %s\n' "${DWH_PORT:-54329}" "${HTTP_PORT:-9187}"
    if [ "${1:-}" = cluster ]; then
        printf 'REPLICA_A_PORT %s\nREPLICA_B_PORT %s\nNATS_MONITOR_PORT %s\n' \
            "${REPLICA_A_PORT:-9188}" "${REPLICA_B_PORT:-9189}" "${NATS_MONITOR_PORT:-8222}"
    fi
}

# The first of those ports that something already listens on, as "VARIABLE PORT"; status 1 if
# they are all free.
taken_compose_port() {
    local var port
    while read -r var port; do
        if port_in_use "$port"; then
            printf '%s %s\n' "$var" "$port"
            return 0
        fi
    done < <(compose_ports "$@")
    return 1
}

# The directory holding initdb, pg_ctl and postgres: PATH first, then the newest Debian/Ubuntu
# version under /usr/lib/postgresql (the postgresql package does not put the server on PATH).
pg_bin_dir() {
    local initdb dir
    if initdb=$(command -v initdb); then
        dirname "$(readlink -f "$initdb")"
        return 0
    fi
    dir=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null \
        | sort -V | tail -n 1)
    [ -n "$dir" ] || return 1
    dirname "$dir"
}

# PostgreSQL refuses to run as root: server commands then run as the `postgres` user (from /, since
# it may not be allowed into the current directory; every path given is absolute).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Whether `pid` is a live (not zombie) process whose program is called `name`. The name check
# keeps a stale pid file from ever signalling an unrelated process that reused the pid.
is_running() {
    local pid=$1 name=$2 argv0 state
    [ -r "/proc/$pid/cmdline" ] || return 1
    argv0=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | head -n 1)
    [ "$(basename "$argv0")" = "$name" ] || return 1
    # Field 3 of /proc/PID/stat is the state; a zombie has exited and only awaits its parent.
    read -r _ _ state _ 2>/dev/null <"/proc/$pid/stat" || return 1
    [ "$state" != Z ]
}

# The program a native service runs (what is_running expects), and the signal that stops it
# gracefully: nats-server exits 0 on SIGINT (1 on SIGTERM).
program_of() {
    case "$1" in
        forward | etl-*) echo etl ;;
        nats) echo nats-server ;;
        *) echo "$1" ;;
    esac
}
stop_signal_of() {
    case "$1" in
        nats) echo INT ;;
        *) echo TERM ;;
    esac
}

# The graceful signal to the process recorded in data/run/<name>.pid, wait for it, SIGKILL past
# the deadline.
stop_service() {
    local name=$1 pidfile="$RUN_DIR/$1.pid" pid waited=0 program
    [ -f "$pidfile" ] || return 0
    pid=$(<"$pidfile")
    program=$(program_of "$name")
    if is_running "$pid" "$program"; then
        say "stopping $name (pid $pid)"
        kill -"$(stop_signal_of "$name")" "$pid" 2>/dev/null || true
        while is_running "$pid" "$program"; do
            if [ "$waited" -ge $((STOP_TIMEOUT_SECS * 10)) ]; then
                say "$name did not stop within ${STOP_TIMEOUT_SECS}s: killing it"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    rm -f "$pidfile"
}

stop_cluster() {
    local bin dir=$PG_DIR
    [ -f "$PG_DIR_FILE" ] && dir=$(<"$PG_DIR_FILE")
    if [ -f "$dir/data/postmaster.pid" ]; then
        bin=$(pg_bin_dir) || { say "cannot find pg_ctl to stop the cluster in $dir/data"; return 1; }
        say "stopping PostgreSQL ($dir/data)"
        as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ -f "$PG_DIR_FILE" ]; then
        # A cluster outside data/ (a run as root): keep its log in data/logs/, drop the rest.
        if [ -f "$dir/postgres.log" ] && [ -d "$DATA/logs" ]; then
            cp --remove-destination "$dir/postgres.log" "$DATA/logs/postgres.log" 2>/dev/null || true
        fi
        case "$dir" in
            /tmp/etl-rerun-pg.*) rm -rf "$dir" ;;
        esac
        rm -f "$PG_DIR_FILE"
    fi
}

# Stops everything a native run or the compose project may have left running. Under compose: the
# single topology first (its services, the warehouse volume, and any cluster container, an orphan
# to that file), then the cluster's files (the broker's volume, which the first does not know).
stop_all() {
    local name status=0
    for name in "${SERVICES[@]}"; do
        stop_service "$name"
    done
    stop_cluster
    if docker_available && find_compose; then
        (cd "$ROOT" && "${COMPOSE[@]}" "${SINGLE_FILES[@]}" down -v --remove-orphans) || status=1
        (cd "$ROOT" && "${COMPOSE[@]}" "${CLUSTER_FILES[@]}" down -v --remove-orphans) || status=1
    fi
    return "$status"
}

# Removes data/ and recreates the empty layout with its .gitkeep files.
reset_data() {
    local dir
    rm -rf "$DATA"
    for dir in "${LAYOUT[@]}"; do
        mkdir -p "$DATA/$dir"
        touch "$DATA/$dir/.gitkeep"
    done
}

main() {
    set -euo pipefail
    case "${1:-}" in
        "") stop_all; reset_data; say "data/ is empty again" ;;
        --stop-only) stop_all ;;
        -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" ;;
        *) say "usage: $0 [--stop-only]"; return 2 ;;
    esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
