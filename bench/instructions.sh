#!/usr/bin/env bash
# Instructions per event of a drain, counted by callgrind: unlike events/s, the count does not
# depend on the machine's load, so two binaries measured on a busy machine compare exactly
# (within the ±3 % that batching and start-up timing move it from run to run).
#
#   ETL_DATABASE_URL=postgres://user@host/empty_db bench/instructions.sh [BIN_DIR]
#
# The backlog is `loadgen --users 100 --card-events 9900 --seed 5` (10,000 files, 1,116 of them
# rejected by the shipped schema), drained by `etl run --drain` with one worker and one reader
# into the named database, which must be empty (it is migrated first; events already there would
# be duplicates and cost less). BIN_DIR holds `etl` and `loadgen` (default: target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}
: "${ETL_DATABASE_URL:?set ETL_DATABASE_URL to an empty scratch database}"
if ! command -v valgrind >/dev/null 2>&1; then
    echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/loadgen" --users 100 --card-events 9900 --seed 5 --out "$work/data/events/inbox" >/dev/null
files=$(find "$work/data/events/inbox" -name '*.json' | wc -l)
export ETL_DATA_DIR="$work/data" ETL_HTTP_ADDR=""
"$bin/etl" migrate >/dev/null
ETL_WORKERS=1 ETL_READERS=1 ETL_SETTLE_MS=0 valgrind --tool=callgrind \
    --callgrind-out-file="$work/callgrind.out" "$bin/etl" run --drain >"$work/etl.log" 2>&1
total=$(awk '/^summary:/ { print $2 }' "$work/callgrind.out")
echo "$total instructions, $files event files, $((total / files)) per file"
