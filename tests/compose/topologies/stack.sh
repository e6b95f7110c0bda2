# shellcheck shell=bash disable=SC2034,SC2016 # DETAIL is read by check() in tests/compose/run;
# wait_until's expressions are single-quoted on purpose: it evaluates them afresh each round.
# Topology `stack`: the repository's docker-compose.yml as it is (dwh, etl, users, cards), sourced
# by tests/compose/run, which provides WORK (the copy), dc, check, stage, wait_for, wait_until, count_json, sql
# and the exported image variables.

# ---- checks (each returns 0 for PASS and may set DETAIL) -------------------------------------------

health_of() { docker inspect -f '{{.State.Health.Status}}' "$1"; }
least_rows() { sql 'SELECT least((SELECT count(*) FROM users), (SELECT count(*) FROM cards))'; }

stack_dwh_healthy() {
    local id
    id=$(container_of dwh)
    [ -n "$id" ] || { DETAIL="no dwh container"; return 1; }
    wait_until 120 '[ "$(health_of "$id")" = healthy ]'
    DETAIL="$(health_of "$id"), image $DWH_IMAGE"
    [ "$DETAIL" != "${DETAIL#healthy}" ]
}

readyz_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$HTTP/readyz" || true; }

stack_ready() {
    wait_until 120 '[ "$(readyz_code)" = 200 ]'
    DETAIL="/readyz $(readyz_code)"
    [ "$(readyz_code)" = 200 ]
}

produced() {
    echo $(($(count_json events/inbox/users) + $(count_json events/done/users) \
        + $(count_json events/inbox/cards) + $(count_json events/done/cards) \
        + $(count_json events/failed/cards)))
}

stack_producers_writing() {
    local before
    before=$(produced)
    wait_until 60 '[ "$(produced)" -gt $((before + 20)) ]'
    DETAIL="$before event files, then $(produced)"
    [ "$(produced)" -gt $((before + 20)) ]
}

stack_rows() {
    wait_until 60 '[ "$(least_rows)" -gt 0 ]'
    DETAIL="$(sql 'SELECT count(*) FROM users') users, $(sql 'SELECT count(*) FROM cards') cards"
    [ "$(least_rows)" -gt 0 ]
}

# The README's compose commands while it runs: `etl status` in the container, and psql from the
# host through the published port with the .env role (password from .env, never printed).
stack_status() {
    local out
    out=$(dc exec -T etl etl status 2>&1) || { DETAIL="etl status failed"; return 1; }
    DETAIL=$(grep -m1 -i 'cards' <<<"$out" | tr -s ' ')
    grep -qi users <<<"$out" && grep -qi cards <<<"$out"
}

stack_host_psql() {
    local n
    command -v psql >/dev/null 2>&1 || { DETAIL="no psql on the host"; return 1; }
    n=$(PGPASSWORD=$POSTGRES_PASSWORD psql -X -At -h 127.0.0.1 -p "${DWH_PORT:-54329}" -U "$POSTGRES_USER" \
        -d "$POSTGRES_DB" -c 'SELECT count(*) FROM cards' 2>&1) || { DETAIL="psql failed"; return 1; }
    DETAIL="$n cards"
    [[ "$n" =~ ^[0-9]+$ ]]
}

# A producer that is not ours, beside the stack, as the reference challenge runs one: its own
# container as HOST_UID:HOST_GID (not root), with ./data/events/inbox/users mounted at /app/events
# and ./data/logs/users at /app/logs. It writes three user events (dotfile, then rename) and a line
# per event to /app/logs/producer.log; the log folder exists beforehand (clean.sh's layout), so
# Docker does not create it as root and the write is allowed. Its events are loaded, its files
# end in done/users, and its log file is there, owned by HOST_UID.
FOREIGN_PRODUCER='
set -e
n=900000
for id in "$@"; do
    n=$((n + 1))
    printf "{\"metadata\": {\"type\": \"user\", \"event_at\": \"2024-05-01 12:00:00\", \"event_id\": \"%s\"},\n \"payload\": {\"id\": %s, \"name\": \"Foreign\", \"address\": \"Elsewhere 1\", \"job\": \"producer\", \"score\": 0.5}}\n" "$id" "$n" >"/app/events/.$id.tmp"
    mv "/app/events/.$id.tmp" "/app/events/$id.json"
    echo "$(date -u +%FT%TZ) wrote $id.json" >>/app/logs/producer.log
done
'

stack_foreign_producer() {
    local ids=() id i code=0 list="" loaded log="$WORK/data/logs/users/producer.log" done=0
    for i in 1 2 3; do ids+=("$(cat /proc/sys/kernel/random/uuid)"); done
    # The mounts as compose would resolve ./data/... from the project's folder.
    docker run --rm --network none --user "$HOST_UID:$HOST_GID" \
        -v "$WORK/data/events/inbox/users:/app/events" -v "$WORK/data/logs/users:/app/logs" \
        --entrypoint sh "$APP_IMAGE" -c "$FOREIGN_PRODUCER" producer "${ids[@]}" \
        >"$HARNESS_DIR/foreign-producer.log" 2>&1 || code=$?
    for id in "${ids[@]}"; do list+="${list:+,}'$id'"; done
    wait_until 60 '[ "$(sql "SELECT count(*) FROM events WHERE event_id::text IN ($list)")" = 3 ]' || true
    loaded=$(sql "SELECT count(*) FROM events WHERE event_id::text IN ($list)")
    for id in "${ids[@]}"; do
        [ -z "$(finished_file "$WORK/data/events/done/users" "$id.json")" ] || done=$((done + 1))
    done
    DETAIL="producer exit $code ($(tail -n 1 "$HARNESS_DIR/foreign-producer.log")), $loaded of 3 events loaded, $done in done/users, log: $(stat -c '%U:%G %s bytes' "$log" 2>/dev/null || echo missing), data/logs/users owned by $(stat -c %u:%g "$WORK/data/logs/users")"
    [ "$code" = 0 ] && [ "$loaded" = 3 ] && [ "$done" = 3 ] && [ -s "$log" ] \
        && [ "$(stat -c %u:%g "$log")" = "$HOST_UID:$HOST_GID" ] \
        && [ "$(grep -c ' wrote ' "$log")" = 3 ]
}

# The warehouse as JSON lines for oracle.py.
dump() {
    sql "SELECT json_build_object('t', 'users', 'r', row_to_json(u)) FROM users u
         UNION ALL SELECT json_build_object('t', 'cards', 'r', row_to_json(c)) FROM cards c
         UNION ALL SELECT json_build_object('t', 'events', 'id', event_id) FROM events"
}

stack_oracle() {
    DETAIL=$(dump | python3 "$HERE/oracle.py" "$1" "$WORK/data") || return 1
}

inbox_leftovers() {
    find "$WORK/data/events/inbox" -type f ! -name .gitkeep
    find "$WORK/data/events" -name '.*' ! -name .gitkeep
}

# Producers stopped: waits until etl has finished every file of the inbox.
stack_drained() {
    wait_until 120 '[ -z "$(inbox_leftovers)" ]'
    local left
    left=$(inbox_leftovers | wc -l)
    DETAIL="$left files left in the inbox or under a temporary name"
    [ "$left" = 0 ] && DETAIL="inbox empty, no temporary names"
    [ "$left" = 0 ]
}

# The producers' bad cards (no user_id) in failed/cards, each with its reason file.
stack_bad_cards() {
    local f n=0 bad=0 reason
    while IFS= read -r f; do
        n=$((n + 1))
        reason="$f.error.json"
        if [ ! -f "$reason" ] || [ "$(jq -r .code "$reason")" != schema ] \
            || ! jq -e '.payload | has("user_id") | not' "$f" >/dev/null \
            || ! jq -r .reason "$reason" | grep -q user_id; then
            bad=$((bad + 1))
        fi
    done < <(finished_json "$WORK/data/events/failed/cards")
    DETAIL="$n rejected cards, $bad without the expected reason file"
    [ "$n" -gt 0 ] && [ "$bad" = 0 ]
}

# Exactly one `rejected` WARN line in `docker compose logs etl` per file in failed/, and the only
# other lines with the word are the ERROR "cannot move a rejected file" (none expected here). The
# word alone: the migration 0003_rejected_events, named on the start-up line, does not count.
stack_rejected_lines() {
    local logs files lines other
    logs=$(dc logs --no-color etl)
    files=$(find "$WORK/data/events/failed" -type f -name '*.json' ! -name '*.error.json' \
        -printf '%f\n' | sort)
    lines=$(grep -o ' WARN rejected file=[^ ]*' <<<"$logs" | sed 's|.*/||' | sort)
    other=$(grep -w rejected <<<"$logs" | grep -vc ' WARN rejected ' || true)
    DETAIL="$(grep -c . <<<"$files") failed files, $(grep -c . <<<"$lines") rejected lines, $other other lines with the word"
    [ -n "$files" ] && [ "$files" = "$lines" ] && [ "$other" = 0 ]
}

stack_owners() {
    local wrong
    wrong=$(find "$WORK/data" \( ! -uid "$HOST_UID" -o ! -gid "$HOST_GID" \) | wc -l)
    DETAIL="$(find "$WORK/data" | wc -l) paths, $wrong not owned by $HOST_UID:$HOST_GID"
    [ "$wrong" = 0 ]
}

# The cards producer's id counter is in data/state/, and nothing but event files in the inbox.
stack_id_counter() {
    local others
    others=$(find "$WORK/data/events" -type f ! -name '*.json' ! -name .gitkeep | wc -l)
    DETAIL="data/state: $(cd "$WORK/data/state" && find . -type f ! -name .gitkeep -printf '%f ' ); $others other files under events/"
    [ -f "$WORK/data/state/cards_id_counter" ] && [ "$others" = 0 ]
}

# The operator's fix: user_id no longer required, etl restarted (schemas are read at start-up),
# then `etl replay --type cards`: failed/cards/ empties and the cards load.
stack_fix_and_replay() {
    local schema="$WORK/schemas/cards.schema.json" ids n
    cp "$schema" "$HARNESS_DIR/cards.schema.json.orig"
    jq '.properties.payload.required -= ["user_id"]' "$HARNESS_DIR/cards.schema.json.orig" >"$schema"
    ids=$(finished_json "$WORK/data/events/failed/cards" | while IFS= read -r f; do
        jq -r .metadata.event_id "$f"
    done | sort)
    n=$(grep -c . <<<"$ids")
    dc restart etl >/dev/null 2>&1
    wait_until 60 '[ "$(readyz_code)" = 200 ]' || { DETAIL="etl not ready after the restart"; return 1; }
    dc exec -T etl etl replay --type cards >/dev/null
    wait_until 60 '[ "$(count_json events/failed/cards)" = 0 ]'
    wait_until 60 '[ -z "$(inbox_leftovers)" ]'
    local left loaded
    left=$(count_json events/failed/cards)
    local id list=""
    for id in $ids; do list+="${list:+,}'$id'"; done
    loaded=$(sql "SELECT count(*) FROM events WHERE event_id::text IN ($list)")
    DETAIL="$n cards replayed, $left still in failed/cards, $loaded of them in events"
    [ "$left" = 0 ] && [ "$loaded" = "$n" ]
}

# A type added as data through the bind mounts: the transactions example's schema, declaration
# and migration copied into the host's schemas/, types/ and db/migrations/, etl restarted; a
# transaction dropped into its new inbox folder lands in its new table.
stack_new_type() {
    local example="$WORK/examples/transactions" id rows
    cp "$example/transactions.schema.json" "$WORK/schemas/"
    cp "$example/transactions.toml" "$WORK/types/"
    cp "$example/migrations/1000_transactions.sql" "$WORK/db/migrations/"
    dc restart etl >/dev/null 2>&1
    wait_until 60 '[ "$(readyz_code)" = 200 ]' || { DETAIL="etl not ready after the restart"; return 1; }
    id=$(cat /proc/sys/kernel/random/uuid)
    # Written inside the container, as its user, dotfile then rename like a producer.
    dc exec -T etl sh -c "cat > /data/events/inbox/transactions/.t.json && \
        mv /data/events/inbox/transactions/.t.json /data/events/inbox/transactions/$id.json" <<EOF
{"payload": {"id": 1, "card_id": 7, "amount": 12.35, "currency": "EUR", "merchant": "Cafe",
 "status": "settled", "updated_at": "2024-05-01 12:00:09"},
 "metadata": {"type": "transaction", "event_at": "2024-05-01 12:00:09", "event_id": "$id"}}
EOF
    wait_until 30 '[ "$(sql "SELECT count(*) FROM transactions")" = 1 ]'
    rows=$(sql "SELECT amount::text || ' ' || status FROM transactions WHERE id = 1")
    DETAIL="transactions row: '$rows'; migration recorded: $(sql "SELECT count(*) FROM schema_migrations WHERE version = '1000_transactions'")"
    [ "$rows" = "12.35 settled" ] && [ -n "$(finished_file "$WORK/data/events/done/transactions" "$id.json")" ]
}

# The README's reason-file claims, from the daemon itself: an id that is not an integer fails at
# /$defs/entity_id/type, an integer beyond 64 bits with code `schema`.
stack_reason_claims() {
    local dir="$WORK/data/events/inbox/cards" id1 id2 r1 r2
    id1=$(cat /proc/sys/kernel/random/uuid)
    id2=$(cat /proc/sys/kernel/random/uuid)
    hostile_card "$id1" '"five"' >"$dir/.$id1.tmp"
    hostile_card "$id2" '18446744073709551616' >"$dir/.$id2.tmp"
    chown "$HOST_UID:$HOST_GID" "$dir/.$id1.tmp" "$dir/.$id2.tmp"
    mv "$dir/.$id1.tmp" "$dir/$id1.json"
    mv "$dir/.$id2.tmp" "$dir/$id2.json"
    local failed="$WORK/data/events/failed/cards"
    wait_until 60 '[ -n "$(finished_file "$failed" "$id1.json.error.json")" ] \
        && [ -n "$(finished_file "$failed" "$id2.json.error.json")" ]' \
        || { DETAIL="not rejected within 60 s"; return 1; }
    r1=$(finished_file "$failed" "$id1.json.error.json")
    r2=$(finished_file "$failed" "$id2.json.error.json")
    DETAIL="\"five\": $(jq -r '.code + " " + .schema_location' "$r1"); 2^64: $(jq -r '.code + " " + .schema_location' "$r2")"
    [ "$(jq -r .schema_location "$r1")" = "/\$defs/entity_id/type" ] && [ "$(jq -r .code "$r2")" = schema ]
}

hostile_card() {
    printf '{"metadata": {"type": "card", "event_at": "2024-05-01 12:00:00", "event_id": "%s"},\n' "$1"
    printf ' "payload": {"id": %s, "user_id": 1, "created_by_name": "x", "updated_at": "2024-05-01 12:00:00",\n' "$2"
    printf '  "created_at": "2024-05-01 12:00:00", "active": true}}\n'
}

# `docker compose stop`: etl ends with status 0 (past its stop_grace_period compose would SIGKILL
# it: 137) and logs its graceful end.
stack_clean_stop() {
    local id start took code logs
    id=$(container_of etl)
    start=$SECONDS
    dc stop >/dev/null 2>&1
    took=$((SECONDS - start))
    code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
    logs=$(docker logs "$id" 2>&1 | tail -n 20)
    DETAIL="compose stop took ${took}s, etl exit status $code"
    [ "$code" = 0 ] && [ "$took" -le 20 ] \
        && grep -q 'SIGTERM: finishing what is in flight' <<<"$logs" \
        && grep -q 'finished .*graceful=true' <<<"$logs"
}

stack_clean_sh() {
    (cd "$WORK" && ./clean.sh >/dev/null 2>&1)
    local left
    left=$(project_leftovers | wc -l)
    DETAIL="$left containers, networks or volumes of project etl left"
    [ "$left" = 0 ]
}

# ---- the topology ----------------------------------------------------------------------------------

topology_stack() {
    stage "stack up (docker compose up -d)"
    fresh_up
    check "dwh healthy" stack_dwh_healthy
    check "etl ready on $HTTP/readyz" stack_ready

    stage "stack checks"
    check "producers writing into the inbox" stack_producers_writing
    check "rows in users and cards" stack_rows
    check "a foreign producer as $HOST_UID:$HOST_GID with ./data/events/inbox/users:/app/events and ./data/logs/users:/app/logs" stack_foreign_producer
    check "docker compose exec etl etl status" stack_status
    check "psql from the host on 127.0.0.1:${DWH_PORT:-54329} as the .env role" stack_host_psql
    dc restart etl >/dev/null 2>&1
    check "etl ready again after docker compose restart etl (mid-stream)" stack_ready
    sleep 5
    dc kill -s SIGKILL etl >/dev/null 2>&1
    dc up -d --no-build etl >/dev/null 2>&1
    check "etl ready again after SIGKILL and docker compose up -d etl" stack_ready
    # Bad cards are about 5% of new cards: wait for a few before stopping the producers.
    wait_until 90 '[ "$(count_json events/failed/cards)" -ge 3 ]' || true
    dc stop users cards >/dev/null 2>&1
    check "inbox drained after the producers stopped" stack_drained
    check "every file in done/ has its event_id in events" stack_oracle events
    check "warehouse equals the oracle from done/" stack_oracle warehouse
    check "bad cards in failed/cards with reason files" stack_bad_cards
    check "one rejected WARN line per failed file in compose logs etl" stack_rejected_lines
    check "every path under data/ owned by $HOST_UID:$HOST_GID" stack_owners
    check "cards producer's id counter in data/state, not in the inbox" stack_id_counter
    check "fix and replay: relaxed card schema, restart, replay" stack_fix_and_replay
    check "warehouse equals the oracle after the replay" stack_oracle warehouse
    check "new type through the mounted schemas/, types/, db/migrations/: transactions" stack_new_type
    cp "$HARNESS_DIR/cards.schema.json.orig" "$WORK/schemas/cards.schema.json"
    dc restart etl >/dev/null 2>&1
    wait_until 60 '[ "$(readyz_code)" = 200 ]' || true
    check "reason files: schema_location and code as the README says" stack_reason_claims
    check "every path under data/ owned by $HOST_UID:$HOST_GID (end)" stack_owners

    stage "stack stop and clean"
    check "docker compose stop: etl exits 0 within stop_grace_period, gracefully" stack_clean_stop
    check "./clean.sh leaves no container, network or volume" stack_clean_sh
}
