# shellcheck shell=bash disable=SC2034 # DETAIL is read by check() in tests/compose/run
# ./rerun.sh as a developer runs it, sourced by tests/compose/run (same helpers as the topologies):
# with Docker for 60 s, its one message for a base image that cannot be pulled, and natively from
# the copy, which sits in a folder private to root; then the cluster topology (RERUN_TOPOLOGY=
# cluster) with Docker and natively.

# RERUN_MODE=docker RERUN_FOR=60 ./rerun.sh with the harness's image variables and
# BINARIES=prebuilt, the binaries given as a folder (PREBUILT_DIR) as a developer would: exit 0,
# events processed, nothing of the project left running.
rerun_docker() {
    local code=0 running
    (cd "$WORK" && env -u PREBUILT PREBUILT_DIR="$TARGET_DIR/release" RERUN_MODE=docker \
        RERUN_FOR=60 ./rerun.sh >"$HARNESS_DIR/rerun-docker.log" 2>&1) || code=$?
    running=$(docker ps -q --filter label=com.docker.compose.project=etl | wc -l)
    DETAIL="exit $code, $(count_json events/done/users) users and $(count_json events/done/cards) cards in done/, $running containers still running (log: rerun-docker.log)"
    [ "$code" = 0 ] && [ "$running" = 0 ] && [ "$(count_json events/done/cards)" -gt 0 ]
}

# A base image that is neither on the engine nor pullable (a registry address on loopback where
# nothing listens, so that nothing leaves the machine): one message naming the image, the variable
# and RERUN_MODE=native, within seconds, before any build.
rerun_missing_image() {
    local code=0 start=$SECONDS out missing=127.0.0.1:9/etl-missing:none
    out=$(cd "$WORK" && DWH_IMAGE=$missing RERUN_MODE=docker ./rerun.sh 2>&1) || code=$?
    DETAIL="exit $code after $((SECONDS - start))s: $(grep -m1 'base image' <<<"$out")"
    [ "$code" != 0 ] && [ $((SECONDS - start)) -lt 60 ] \
        && grep -q "base image $missing (DWH_IMAGE)" <<<"$out" \
        && grep -q 'RERUN_MODE=native' <<<"$out" && ! grep -q '== building' <<<"$out"
}

# RERUN_MODE=native RERUN_FOR=20 ./rerun.sh as root from the copy, whose folder the postgres user
# cannot enter: the cluster goes elsewhere, the system runs, and stopping removes the cluster.
rerun_native() {
    local code=0 before after
    [ "$(stat -c %a "$HARNESS_DIR")" = 700 ] || { DETAIL="$HARNESS_DIR is not private"; return 1; }
    if runuser -u postgres -- test -x "$WORK" 2>/dev/null; then
        DETAIL="postgres can enter $WORK: the check would prove nothing"
        return 1
    fi
    before=$(find /tmp -maxdepth 1 -name 'etl-rerun-pg.*' | wc -l)
    (cd "$WORK" && env -u BUILD_IMAGE -u RUNTIME_IMAGE -u DWH_IMAGE -u APP_IMAGE -u BINARIES \
        -u PREBUILT -u HOST_UID -u HOST_GID CARGO_TARGET_DIR="$TARGET_DIR" RERUN_MODE=native \
        RERUN_FOR=20 ./rerun.sh >"$HARNESS_DIR/rerun-native.log" 2>&1) || code=$?
    after=$(find /tmp -maxdepth 1 -name 'etl-rerun-pg.*' | wc -l)
    DETAIL="exit $code, $(count_json events/done/users) users and $(count_json events/done/cards) cards in done/, cluster folders in /tmp $before -> $after (log: rerun-native.log)"
    [ "$code" = 0 ] && [ "$(count_json events/done/cards)" -gt 0 ] && [ "$after" = "$before" ] \
        && [ -s "$WORK/data/logs/postgres.log" ] && [ ! -L "$WORK/data/logs/postgres.log" ]
}

# What the replicas of a cluster run acknowledged, from the `finished` lines of their own logs
# (data/replicas/<name>/logs/etl.log): "<etl-a> <etl-b>", 0 for a replica without one.
replicas_done() {
    local name n out=""
    for name in etl-a etl-b; do
        n=$(cat "$WORK/data/replicas/$name/logs/"etl.log.* 2>/dev/null \
            | sed -n 's/.* finished .*done=\([0-9]*\).*graceful=true.*/\1/p' | tail -n 1)
        out+="${n:-0} "
    done
    echo "${out% }"
}

# RERUN_TOPOLOGY=cluster RERUN_MODE=docker RERUN_FOR=60 ./rerun.sh: broker, forward and both
# replicas under compose; files in done/ (the broker has them), both replicas finished gracefully
# having loaded events, nothing of the project left running.
rerun_cluster_docker() {
    local code=0 running a b
    (cd "$WORK" && env -u PREBUILT PREBUILT_DIR="$TARGET_DIR/release" RERUN_TOPOLOGY=cluster \
        RERUN_MODE=docker RERUN_FOR=60 ./rerun.sh >"$HARNESS_DIR/rerun-cluster-docker.log" 2>&1) || code=$?
    running=$(docker ps -q --filter label=com.docker.compose.project=etl | wc -l)
    read -r a b <<<"$(replicas_done)"
    DETAIL="exit $code, $(count_json events/done/cards) cards in done/, replicas acknowledged etl-a $a etl-b $b, $running containers still running (log: rerun-cluster-docker.log)"
    [ "$code" = 0 ] && [ "$running" = 0 ] && [ "$(count_json events/done/cards)" -gt 0 ] \
        && [ $((a + b)) -gt 0 ]
}

# RERUN_TOPOLOGY=cluster RERUN_MODE=native RERUN_FOR=30 ./rerun.sh as root from the private copy:
# nats-server, forward, two replicas and the producers as processes; every one exits 0 (the
# replicas gracefully, having loaded events), the broker's files in data/nats/, no pid file left.
rerun_cluster_native() {
    local code=0 a b left
    (cd "$WORK" && env -u BUILD_IMAGE -u RUNTIME_IMAGE -u DWH_IMAGE -u APP_IMAGE -u BINARIES \
        -u PREBUILT -u HOST_UID -u HOST_GID -u NATS_IMAGE CARGO_TARGET_DIR="$TARGET_DIR" \
        RERUN_TOPOLOGY=cluster RERUN_MODE=native RERUN_FOR=30 ./rerun.sh \
        >"$HARNESS_DIR/rerun-cluster-native.log" 2>&1) || code=$?
    read -r a b <<<"$(replicas_done)"
    left=$(find "$WORK/data/run" -name '*.pid' 2>/dev/null | wc -l)
    DETAIL="exit $code, $(count_json events/done/cards) cards in done/, replicas acknowledged etl-a $a etl-b $b, $(grep -c 'exited with status 0' "$HARNESS_DIR/rerun-cluster-native.log") processes exited 0, $left pid files left (log: rerun-cluster-native.log)"
    [ "$code" = 0 ] && [ "$(count_json events/done/cards)" -gt 0 ] && [ $((a + b)) -gt 0 ] \
        && [ "$left" = 0 ] && [ -d "$WORK/data/nats/jetstream" ] \
        && [ "$(grep -c 'exited with status 0' "$HARNESS_DIR/rerun-cluster-native.log")" = 6 ]
}

rerun_checks() {
    stage "rerun.sh (docker 60 s, missing image, native from a private folder)"
    check "RERUN_MODE=docker RERUN_FOR=60 ./rerun.sh runs and stops cleanly" rerun_docker
    (cd "$WORK" && ./clean.sh >/dev/null 2>&1) || true
    check "./rerun.sh stops at once when a base image cannot be pulled" rerun_missing_image
    check "RERUN_MODE=native ./rerun.sh as root from a folder private to root" rerun_native
    (cd "$WORK" && RERUN_MODE=native ./clean.sh >/dev/null 2>&1) || true

    stage "rerun.sh cluster (docker 60 s, native 30 s)"
    check "RERUN_TOPOLOGY=cluster RERUN_MODE=docker RERUN_FOR=60 ./rerun.sh runs and stops cleanly" rerun_cluster_docker
    (cd "$WORK" && ./clean.sh >/dev/null 2>&1) || true
    check "RERUN_TOPOLOGY=cluster RERUN_MODE=native RERUN_FOR=30 ./rerun.sh: broker, forward, two replicas" rerun_cluster_native
    (cd "$WORK" && RERUN_MODE=native ./clean.sh >/dev/null 2>&1) || true
}
