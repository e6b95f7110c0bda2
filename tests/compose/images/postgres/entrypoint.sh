#!/bin/sh
# Entrypoint of the PostgreSQL stand-in image: on first start, initialise PGDATA with the
# superuser POSTGRES_USER (password POSTGRES_PASSWORD, required for TCP clients) and the database
# POSTGRES_DB, as the official image does; then run the server in the foreground as `postgres`.
# Local (socket) connections are trusted, as in the official image, so that
# `docker compose exec dwh psql -U "$POSTGRES_USER" -d "$POSTGRES_DB"` needs no password.
set -eu

POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

if [ "${1:-postgres}" != postgres ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    # A fresh named volume is root's: hand it to postgres, then drop root.
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "docker-entrypoint.sh: POSTGRES_PASSWORD must be set" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        # Sockets only while the database is created, so that no client sees a half-made server.
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres \
            -v db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    echo "docker-entrypoint.sh: initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
fi

if [ $# -gt 0 ]; then shift; fi
exec postgres -D "$PGDATA" "$@"
