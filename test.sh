#!/usr/bin/env bash
# The test command: installs what the test suite needs when it is missing, then runs every test
# (`cargo test --workspace`, with any arguments passed on). As root it installs Debian's
# packages and the Python readers by itself; otherwise it names what to install and exits 2.
# The tests start their own PostgreSQL and nats-server; nothing needs to be running.
set -euo pipefail
cd "$(dirname "$0")"

missing_apt=()
missing_pip=()

have_initdb() {
    command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_nats() {
    command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]
}

# PostgreSQL server binaries (and psql): every test starts its own throwaway cluster.
have_initdb || missing_apt+=(postgresql)
# The JetStream broker: the broker tests start their own nats-server processes.
have_nats || missing_apt+=(nats-server)
# The docs test runs the README's and the book's examples, which use jq and curl as a reader would.
command -v jq >/dev/null 2>&1 || missing_apt+=(jq)
command -v curl >/dev/null 2>&1 || missing_apt+=(curl)
# Independent readers of the Parquet lake, and the read API's OpenAPI validator and fuzzer.
python3 -c 'import pyarrow' >/dev/null 2>&1 || missing_pip+=(pyarrow)
python3 -c 'import duckdb' >/dev/null 2>&1 || missing_pip+=(duckdb)
python3 -c 'import openapi_spec_validator' >/dev/null 2>&1 || missing_pip+=(openapi-spec-validator)
python3 -c 'import schemathesis' >/dev/null 2>&1 || missing_pip+=(schemathesis)

if [ "${#missing_apt[@]}" -gt 0 ] || [ "${#missing_pip[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        if [ "${#missing_apt[@]}" -gt 0 ]; then
            echo "test.sh: installing ${missing_apt[*]} (Debian packages)"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_apt[@]}" >/dev/null
        fi
        if [ "${#missing_pip[@]}" -gt 0 ]; then
            echo "test.sh: installing ${missing_pip[*]} (PyPI)"
            python3 -m pip install --quiet "${missing_pip[@]}"
        fi
    else
        echo "test.sh: the tests need what this machine lacks; install it, then run ./test.sh again:" >&2
        [ "${#missing_apt[@]}" -eq 0 ] || echo "  sudo apt-get install -y ${missing_apt[*]}" >&2
        [ "${#missing_pip[@]}" -eq 0 ] || echo "  python3 -m pip install ${missing_pip[*]}" >&2
        exit 2
    fi
fi

exec cargo test --workspace "$@"
