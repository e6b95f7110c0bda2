# shellcheck shell=bash disable=SC2034,SC2016 # DETAIL is read by check() in tests/compose/run;
# wait_until's expressions are single-quoted on purpose: it evaluates them afresh each round.
# Topology `cluster`: docker-compose.yml layered with docker-compose.cluster.yml (dwh, nats,
# forward, the replicas etl-a and etl-b, users, cards; the single-host etl left out), sourced by
# tests/compose/run, which provides WORK (the copy), dc, check, stage, wait_for, wait_until, count_json, sql
# and the exported image variables (NATS_IMAGE: the nats-server stand-in). The broker is killed
# and restarted, a replica killed, the other cut off from the network for longer than the ack
# wait, and the warehouse must still equal the oracle from done/.

# The stack's checks and helpers (stack_dwh_healthy, stack_rows, stack_oracle, …).
# shellcheck source=tests/compose/topologies/stack.sh
. "$HERE/topologies/stack.sh"

# Short, so that the partition below outlasts it within seconds (the default is 30).
CLUSTER_ACK_WAIT=5
NATS_MONITOR=http://127.0.0.1:${NATS_MONITOR_PORT:-8222}
# The replicas' HTTP endpoints on the host.
declare -A REPLICA_HTTP=([etl-a]=http://127.0.0.1:${REPLICA_A_PORT:-9188} [etl-b]=http://127.0.0.1:${REPLICA_B_PORT:-9189})

# ---- helpers ---------------------------------------------------------------------------------------

http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true; }

# The broker's view of the stream and the shared consumer: "<messages> <last_seq> <consumers>
# <pending> <ack_pending> <ack_wait_s>" (empty when the broker does not answer or has no stream).
jsz() {
    curl -s -m 2 "$NATS_MONITOR/jsz?consumers=true&config=true" 2>/dev/null | jq -r '
        [.account_details[]?.stream_detail[]? | select(.name == "EVENTS")] | first // empty
        | (.consumer_detail // []) as $c | ([$c[] | select(.name == "etl")] | first) as $etl
        | "\(.state.messages) \(.state.last_seq) \($c | length) \($etl.num_pending // "-")"
          + " \($etl.num_ack_pending // "-") \(($etl.config.ack_wait // 0) / 1000000000)"' \
        2>/dev/null || true
}

# Events in the raw zone: one row per event loaded, whichever replica loaded it. Polled often:
# through the published port with the host's psql when there is one (milliseconds, where
# `compose exec` takes a second or more).
loaded() {
    if command -v psql >/dev/null 2>&1; then
        PGPASSWORD=$POSTGRES_PASSWORD psql -X -At -h 127.0.0.1 -p "${DWH_PORT:-54329}" -U "$POSTGRES_USER" \
            -d "$POSTGRES_DB" -c 'SELECT count(*) FROM events' 2>/dev/null || echo 0
    else
        sql 'SELECT count(*) FROM events' 2>/dev/null || echo 0
    fi
}

# A series of a replica's /metrics, summed over the lines that start with it (0 when absent or
# unreachable).
metric() {
    curl -s -m 2 "${REPLICA_HTTP[$1]}/metrics" 2>/dev/null \
        | awk -v m="$2" 'index($1, m) == 1 { s += $2 } END { print s + 0 }'
}
# Messages a replica received, acknowledged after their commit, and received redelivered.
RECEIVED='etl_broker_messages_total{outcome="received"}'
ACKED='etl_broker_messages_total{outcome="acknowledged"}'
REDELIVERED='etl_broker_messages_total{outcome="redelivered"}'

# A backlog of BURST events dropped into the inbox at once (loadgen in the forward container, as
# its user, into a staging folder on the same file system, then renamed in): the producers alone
# trickle a few events a second, too few for a replica to be caught holding a batch.
BURST=1500
burst() {
    # shellcheck disable=SC2016 # expanded by the container's shell
    dc exec -T forward sh -c 'set -e; rm -rf /data/staging
        loadgen --users 200 --card-events 1300 --seed "$1" --out /data/staging >/dev/null
        for t in users cards; do
            find /data/staging/$t -name "*.json" -exec mv -t /data/events/inbox/$t {} +
        done
        rm -rf /data/staging' burst "$1"
}

# A session in dwh holding a SHARE lock on `events` (reads pass, the replicas' inserts wait) until
# released: the replicas' commits wait, so they hold what they fetched (and keep it theirs with
# progress acknowledgements, as in any database stall).
LOCK_APP=harness-lock
lock_events() {
    dc exec -T dwh psql -X -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
        -c "SET application_name = '$LOCK_APP'" -c 'BEGIN' -c 'LOCK TABLE events IN SHARE MODE' \
        -c 'SELECT pg_sleep(300)' -c 'COMMIT' >/dev/null 2>&1 &
    LOCK_PID=$!
    wait_until 30 '[ "$(lock_sessions)" = 1 ]'
}
lock_sessions() {
    sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$LOCK_APP' AND wait_event = 'PgSleep'"
}
release_events() {
    sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$LOCK_APP'" >/dev/null
    wait "$LOCK_PID" 2>/dev/null || true
}

# Messages etl-b received and has not acknowledged (0 when unknown).
held_by_b() { echo $(($(metric etl-b "$RECEIVED") - $(metric etl-b "$ACKED"))); }

# The compose network a container is on.
network_of() {
    docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' "$1" \
        | awk '{ print $1 }'
}

# ---- checks (each returns 0 for PASS and may set DETAIL) --------------------------------------------

cluster_single_etl_absent() {
    local services
    services=$(docker ps --filter label=com.docker.compose.project=etl \
        --format '{{.Label "com.docker.compose.service"}}' | sort)
    DETAIL="running: $(tr '\n' ' ' <<<"$services")"
    ! grep -qx etl <<<"$services" && grep -qx forward <<<"$services"
}

cluster_nats_up() {
    wait_until 60 '[ "$(http_code "$NATS_MONITOR/healthz")" = 200 ]'
    local store
    store=$(curl -s -m 2 "$NATS_MONITOR/jsz" | jq -r '.config.store_dir // empty' 2>/dev/null || true)
    DETAIL="/healthz $(http_code "$NATS_MONITOR/healthz"), JetStream store ${store:-none}, image $NATS_IMAGE"
    [ "$(http_code "$NATS_MONITOR/healthz")" = 200 ] && [ "${store#/data}" != "$store" ]
}

# /readyz 200 on each replica: database, broker and source (the consumer) up.
replicas_ready() {
    local name
    for name in etl-a etl-b; do
        [ "$(http_code "${REPLICA_HTTP[$name]}/readyz")" = 200 ] || return 1
    done
}

cluster_replicas_ready() {
    wait_for 120 replicas_ready
    DETAIL="etl-a :9188 /readyz $(http_code "${REPLICA_HTTP[etl-a]}/readyz"), etl-b :9189 /readyz $(http_code "${REPLICA_HTTP[etl-b]}/readyz")"
    replicas_ready
}

cluster_forward_ready() {
    wait_until 60 '[ "$(readyz_code)" = 200 ]'
    DETAIL="forward :9187 /readyz $(readyz_code): $(curl -s -m 2 "$HTTP/readyz" | tr '\n' ' ')"
    [ "$(readyz_code)" = 200 ]
}

cluster_stream_exists() {
    local s
    wait_until 60 '[ -n "$(jsz)" ]'
    s=$(jsz)
    read -r _ _ consumers _ _ ack_wait <<<"${s:-- - 0 - - 0}"
    DETAIL="stream EVENTS: ${s:-missing} (messages last_seq consumers pending ack_pending ack_wait)"
    [ -n "$s" ] && [ "$consumers" = 1 ] && [ "$ack_wait" = "$CLUSTER_ACK_WAIT" ]
}

# The events table grows by more than `n` within `secs`.
loading() {
    local secs=$1 n=$2 before
    before=$(loaded)
    wait_until "$secs" '[ "$(loaded)" -gt $((before + n)) ]'
    LOADED="$before -> $(loaded) events"
    [ "$(loaded)" -gt $((before + n)) ]
}

cluster_rows_arriving() {
    loading 60 20
    DETAIL="$LOADED; $(sql 'SELECT count(*) FROM users') users, $(sql 'SELECT count(*) FROM cards') cards"
    [ "$(loaded)" -gt 20 ]
}

# Both replicas load messages from the shared consumer.
both_acked() { [ "$(metric etl-a "$ACKED")" -gt 0 ] && [ "$(metric etl-b "$ACKED")" -gt 0 ]; }

cluster_both_consume() {
    wait_for 60 both_acked
    DETAIL="acknowledged after commit: etl-a $(metric etl-a "$ACKED"), etl-b $(metric etl-b "$ACKED")"
    both_acked
}

# `docker compose kill nats` (SIGKILL): while it is down the forwarder stops acknowledging files
# (they wait in the inbox, its /readyz says so); `up -d nats` on the same volume: the stream and the
# consumer are still there, its sequence goes on from where it was, and loading resumes.
cluster_broker_down() {
    BEFORE_KILL=$(jsz)
    dc kill nats >/dev/null 2>&1
    wait_until 30 '[ "$(readyz_code)" != 200 ]'
    local code body
    code=$(readyz_code)
    body=$(curl -s -m 2 "$HTTP/readyz" | grep broker || true)
    DETAIL="forward /readyz $code (${body:-no answer}) with the broker killed, $(($(count_json events/inbox/users) + $(count_json events/inbox/cards))) files in the inbox; before the kill: ${BEFORE_KILL:-no stream}"
    [ "$code" != 200 ]
}

cluster_broker_back() {
    local before_seq after after_seq consumers resumed=0
    read -r _ before_seq _ _ _ _ <<<"${BEFORE_KILL:-- 0 - - - -}"
    dc up -d --no-build nats >/dev/null 2>&1
    wait_until 60 '[ -n "$(jsz)" ]'
    after=$(jsz)
    read -r _ after_seq consumers _ _ _ <<<"${after:-- 0 0 - - -}"
    loading 90 20 && resumed=1
    DETAIL="stream after the restart: ${after:-missing} (last_seq was $before_seq before the kill); $LOADED"
    [ "$resumed" = 1 ] && [ "$consumers" = 1 ] && [ "$before_seq" -gt 0 ] \
        && [ "$after_seq" -ge "$before_seq" ]
}

cluster_survivor_loads() {
    local before_b after_b resumed=0 a
    a=$(docker inspect -f '{{.State.Status}}' "$(container_of etl-a)" 2>/dev/null || echo gone)
    before_b=$(metric etl-b "$ACKED")
    loading 60 20 && resumed=1
    after_b=$(metric etl-b "$ACKED")
    DETAIL="etl-a $a: $LOADED, etl-b acknowledged $before_b -> $after_b"
    [ "$resumed" = 1 ] && [ "$a" != running ] && [ "$after_b" -gt "$before_b" ]
}

cluster_replica_back() {
    dc up -d --no-build etl-a >/dev/null 2>&1
    wait_for 90 replicas_ready
    DETAIL="etl-a :9188 /readyz $(http_code "${REPLICA_HTTP[etl-a]}/readyz")"
    replicas_ready
}

# etl-b cut off from the compose network (broker and warehouse) while it holds messages, for
# more than twice the ack wait: the broker hands what it held to etl-a, which receives those
# messages redelivered and loads them. To be sure that etl-b holds some when it is cut (the
# replicas finish a batch in milliseconds), `events` is locked while a burst goes through forward,
# and released once etl-b is cut off. etl-b may still commit its batch once reconnected (its
# transaction stays open meanwhile): the drained warehouse must equal the oracle all the same.
cluster_partition() {
    local id net before_a redelivered_a held=0 before_events secs=$((CLUSTER_ACK_WAIT * 2 + 2))
    id=$(container_of etl-b)
    net=$(network_of "$id")
    [ -n "$net" ] || { DETAIL="etl-b is on no network"; return 1; }
    before_a=$(metric etl-a "$ACKED")
    redelivered_a=$(metric etl-a "$REDELIVERED")
    lock_events || { release_events; DETAIL="cannot lock events"; return 1; }
    burst 7 || { release_events; DETAIL="loadgen burst failed"; return 1; }
    wait_until 60 '[ "$(held_by_b)" -gt 0 ]' || true
    held=$(held_by_b)
    before_events=$(loaded)
    docker network disconnect "$net" "$id" || { release_events; DETAIL="cannot disconnect etl-b from $net"; return 1; }
    sleep 1
    release_events
    sleep "$secs"
    LOADED="$before_events -> $(loaded) events"
    docker network connect "$net" "$id" || { DETAIL="cannot reconnect etl-b to $net"; return 1; }
    DETAIL="burst of $BURST events, events locked: etl-b held $held messages when cut off $net for ${secs}s (ack wait ${CLUSTER_ACK_WAIT}s); $LOADED; etl-a acknowledged $before_a -> $(metric etl-a "$ACKED"), received redelivered $redelivered_a -> $(metric etl-a "$REDELIVERED")"
    [ "$held" -gt 0 ] && [ "$(metric etl-a "$REDELIVERED")" -gt "$redelivered_a" ] \
        && [ "$(metric etl-a "$ACKED")" -gt "$before_a" ] && [ "$(loaded)" -gt "$before_events" ]
}

cluster_partition_healed() {
    wait_for 120 replicas_ready
    local before_b
    before_b=$(metric etl-b "$ACKED")
    wait_until 60 '[ "$(metric etl-b "$ACKED")" -gt "$before_b" ]'
    DETAIL="etl-b :9189 /readyz $(http_code "${REPLICA_HTTP[etl-b]}/readyz"), acknowledged $before_b -> $(metric etl-b "$ACKED") since"
    replicas_ready && [ "$(metric etl-b "$ACKED")" -gt "$before_b" ]
}

# Producers stopped: the inbox empty (forward published everything) and the stream's consumer
# with nothing pending or unacknowledged (the replicas loaded and acknowledged everything).
stream_drained() {
    local s pending ack_pending
    s=$(jsz)
    read -r _ _ _ pending ack_pending _ <<<"${s:-- - - x x -}"
    [ "$pending" = 0 ] && [ "$ack_pending" = 0 ]
}

cluster_drained() {
    wait_until 120 '[ -z "$(inbox_leftovers)" ]'
    wait_for 120 stream_drained
    local left
    left=$(inbox_leftovers | wc -l)
    DETAIL="$left files left in the inbox or under a temporary name; stream: $(jsz) (messages last_seq consumers pending ack_pending ack_wait)"
    [ "$left" = 0 ] && stream_drained
}

# Invalid files never reach the broker: forward puts them in failed/ locally, and the replicas
# dead-letter nothing.
cluster_no_dead_letters() {
    local n
    n=$(sql 'SELECT count(*) FROM rejected_events')
    DETAIL="$n rows in rejected_events, $(count_json events/failed/cards) files in failed/cards"
    [ "$n" = 0 ]
}

# `docker compose stop`: forward and both replicas exit 0 within their stop_grace_period, the
# broker (stop_signal SIGINT) too.
cluster_clean_stop() {
    local start took name id code codes="" bad=0
    declare -A ids=()
    for name in forward etl-a etl-b nats; do
        ids[$name]=$(container_of "$name")
    done
    start=$SECONDS
    dc stop >/dev/null 2>&1
    took=$((SECONDS - start))
    for name in forward etl-a etl-b nats; do
        id=${ids[$name]}
        code=$(docker inspect -f '{{.State.ExitCode}}' "$id" 2>/dev/null || echo none)
        codes+="$name $code, "
        [ "$code" = 0 ] || bad=1
        if [ "$name" != nats ] && ! docker logs "$id" 2>&1 | tail -n 20 | grep -q 'finished .*graceful=true'; then
            codes+="($name not graceful) "
            bad=1
        fi
    done
    DETAIL="compose stop took ${took}s; exit status: ${codes%, }"
    [ "$bad" = 0 ] && [ "$took" -le 25 ]
}

cluster_logs() {
    local f missing=""
    for f in data/logs/etl.log data/replicas/etl-a/logs/etl.log data/replicas/etl-b/logs/etl.log; do
        [ -s "$WORK/$f" ] || missing+=" $f"
    done
    DETAIL="forward's log data/logs/etl.log, replicas' data/replicas/etl-{a,b}/logs/etl.log${missing:+; missing or empty:$missing}"
    [ -z "$missing" ]
}

# ---- the topology ----------------------------------------------------------------------------------

topology_cluster() {
    # Every dc of this topology (and of the stack helpers it reuses) reads both files; the ack
    # wait is set by the first replica on the shared consumer.
    export COMPOSE_FILE=docker-compose.yml:docker-compose.cluster.yml
    export ETL_NATS_ACK_WAIT_SECS=$CLUSTER_ACK_WAIT

    stage "cluster up (+ docker-compose.cluster.yml)"
    fresh_up
    check "dwh healthy" stack_dwh_healthy
    check "the single-host etl is not started (profile disabled)" cluster_single_etl_absent
    check "nats up with JetStream on its volume (127.0.0.1:8222)" cluster_nats_up
    check "etl-a and etl-b ready on :9188 and :9189 (/readyz: database, broker, source)" cluster_replicas_ready
    check "forward ready on $HTTP/readyz" cluster_forward_ready
    check "stream EVENTS with the shared consumer etl (ack wait ${CLUSTER_ACK_WAIT}s)" cluster_stream_exists

    stage "cluster checks"
    check "producers writing into the inbox" stack_producers_writing
    check "rows arriving in the warehouse through the broker" cluster_rows_arriving
    check "rows in users and cards" stack_rows
    check "both replicas take messages from the shared consumer" cluster_both_consume
    check "docker compose kill nats: forward's /readyz says the broker is down" cluster_broker_down
    check "docker compose up -d nats: stream kept on its volume, loading resumes" cluster_broker_back
    dc kill etl-a >/dev/null 2>&1
    check "etl-a killed: etl-b keeps loading" cluster_survivor_loads
    check "etl-a ready again after docker compose up -d etl-a" cluster_replica_back
    check "etl-b cut off holding messages, past the ack wait: etl-a gets them redelivered" cluster_partition
    check "etl-b ready and loading again after docker network connect" cluster_partition_healed
    # Bad cards are about 5% of new cards: wait for a few before stopping the producers.
    wait_until 90 '[ "$(count_json events/failed/cards)" -ge 3 ]' || true
    dc stop users cards >/dev/null 2>&1
    check "inbox and stream drained after the producers stopped" cluster_drained
    check "every file in done/ has its event_id in events" stack_oracle events
    check "warehouse equals the oracle from done/" stack_oracle warehouse
    check "bad cards in failed/cards with reason files (rejected by forward)" stack_bad_cards
    check "no dead letters: nothing invalid reached the replicas" cluster_no_dead_letters
    check "logs: forward in data/logs/, each replica in data/replicas/<name>/logs/" cluster_logs
    check "every path under data/ owned by $HOST_UID:$HOST_GID" stack_owners

    stage "cluster stop and clean"
    check "docker compose stop: forward, etl-a, etl-b and nats exit 0 within their grace period" cluster_clean_stop
    check "./clean.sh leaves no container, network or volume of any topology" stack_clean_sh
    unset COMPOSE_FILE ETL_NATS_ACK_WAIT_SECS
}
