#!/usr/bin/env bash
# Runs a 3-member etcd 3.4 and a 3-member Shoal side by side on loopback,
# with the same settings (fsync on, default heartbeat and election timeouts),
# drives both with the same load generator, and writes benches/RESULTS.md.
#
#   benches/compare.sh                 the full comparison (about 30 minutes)
#   QUICK=1 benches/compare.sh         a short smoke run (2 s per point, small loads)
#
# Knobs (environment): DURATION (per point, default 10s), CLIENTS ("1 16 256"),
# MEMORY_KEYS ("100000 1000000"), FAILOVER_RUNS (5), BENCH_DIR (/var/tmp/shoal-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
export ETCDCTL_API=3

if [[ -n "${QUICK:-}" ]]; then
    DURATION="${DURATION:-2s}"; CLIENTS="${CLIENTS:-1 16}"; MEMORY_KEYS="${MEMORY_KEYS:-20000}"
    FAILOVER_RUNS="${FAILOVER_RUNS:-1}"; CHECK_LOADS="${CHECK_LOADS:-s}"
fi
DURATION="${DURATION:-10s}"
CLIENTS="${CLIENTS:-1 16 256}"
MEMORY_KEYS="${MEMORY_KEYS:-100000 1000000}"
FAILOVER_RUNS="${FAILOVER_RUNS:-5}"
CHECK_LOADS="${CHECK_LOADS:-s m l}"
WORK="${BENCH_DIR:-/var/tmp/shoal-bench}"
OUT="$WORK/results"

scripts/prereqs.sh test
cargo build --release -p shoal-store -p shoal-bench
BIN="$CARGO_TARGET_DIR/release"
rm -rf "$WORK"
mkdir -p "$OUT"

declare -A BASE=([etcd]=21000 [shoal]=23000)
declare -A EXE=([etcd]=/usr/bin/etcd [shoal]="$BIN/shoal")

client_url() { echo "http://127.0.0.1:$((BASE[$1] + $2 * 100))"; }
peer_url() { echo "http://127.0.0.1:$((BASE[$1] + $2 * 100 + 1))"; }
endpoints() { echo "$(client_url "$1" 0),$(client_url "$1" 1),$(client_url "$1" 2)"; }

start_member() { # system index
    local sys=$1 i=$2 cluster=""
    for j in 0 1 2; do cluster+="${cluster:+,}m$j=$(peer_url "$sys" "$j")"; done
    "${EXE[$sys]}" --name "m$i" --data-dir "$WORK/$sys/m$i" \
        --listen-client-urls "$(client_url "$sys" "$i")" --advertise-client-urls "$(client_url "$sys" "$i")" \
        --listen-peer-urls "$(peer_url "$sys" "$i")" --initial-advertise-peer-urls "$(peer_url "$sys" "$i")" \
        --initial-cluster "$cluster" --initial-cluster-token "bench-$sys" --initial-cluster-state new \
        >>"$WORK/$sys-m$i.log" 2>&1 &
    echo $! >"$WORK/$sys-m$i.pid"
}

wait_healthy() { # system
    for _ in $(seq 1 300); do
        if etcdctl --endpoints="$(endpoints "$1")" endpoint health >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "$1 did not become healthy" >&2; return 1
}

start_cluster() { for i in 0 1 2; do start_member "$1" "$i"; done; wait_healthy "$1"; }

stop_cluster() { # system
    for i in 0 1 2; do
        local pid; pid=$(cat "$WORK/$1-m$i.pid" 2>/dev/null || true)
        [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
    done
    for i in 0 1 2; do
        local pid; pid=$(cat "$WORK/$1-m$i.pid" 2>/dev/null || true)
        while [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    rm -rf "${WORK:?}/$1"
}

leader_index() { # system
    etcdctl --endpoints="$(endpoints "$1")" endpoint status -w json | python3 -c '
import json, sys
for i, e in enumerate(json.load(sys.stdin)):
    if e["Status"]["leader"] == e["Status"]["header"]["member_id"]:
        print(e["Endpoint"].rsplit(":", 1)[1])' | while read -r port; do echo $(((port - BASE[$1]) / 100)); done
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

bench() { # system workload clients [args...]
    local sys=$1 workload=$2 clients=$3; shift 3
    local conns=$(( clients < 16 ? clients : 16 ))
    "$BIN/shoal-bench" --endpoints "$(endpoints "$sys")" --clients "$clients" --conns "$conns" --label "$sys" \
        --quiet --json "$OUT/$workload-$clients-$sys.json" "$@" | tail -n 1
}

trap 'stop_cluster etcd; stop_cluster shoal' EXIT

echo "== throughput and latency ($DURATION per point)"
start_cluster etcd
start_cluster shoal
for sys in etcd shoal; do   # keys for the range workloads
    "$BIN/shoal-bench" --endpoints "$(endpoints "$sys")" --clients 64 --conns 16 --total 100000 --quiet \
        put --sequential --key-space 100000 >/dev/null
done
for clients in $CLIENTS; do
    for sys in etcd shoal; do bench "$sys" put "$clients" --duration "$DURATION" put; done
    for sys in etcd shoal; do bench "$sys" range-linear "$clients" --duration "$DURATION" range; done
    for sys in etcd shoal; do bench "$sys" range-serial "$clients" --duration "$DURATION" range --serializable; done
    for sys in etcd shoal; do bench "$sys" txn-put "$clients" --duration "$DURATION" txn-put; done
    for sys in etcd shoal; do bench "$sys" lease-keepalive "$clients" --duration "$DURATION" lease-keepalive; done
    for sys in etcd shoal; do bench "$sys" watch "$clients" --duration "$DURATION" watch --watchers 100; done
done

echo "== etcdctl check perf"
for load in $CHECK_LOADS; do
    for sys in etcd shoal; do
        etcdctl --endpoints="$(endpoints "$sys")" check perf --load="$load" 2>&1 \
            | tr '\r' '\n' | grep -E '^(PASS|FAIL)' >"$OUT/checkperf-$load-$sys.txt" || true
        echo "$sys --load=$load: $(tr '\n' ' ' <"$OUT/checkperf-$load-$sys.txt")"
    done
done
stop_cluster etcd
stop_cluster shoal

echo "== memory (RSS of the largest member after loading 256-byte values)"
for sys in etcd shoal; do
    start_cluster "$sys"
    loaded=0
    for keys in $MEMORY_KEYS; do
        "$BIN/shoal-bench" --endpoints "$(endpoints "$sys")" --clients 64 --conns 16 --total $((keys - loaded)) --quiet \
            put --sequential --key-space "$keys" --val-size 256 --key-size 16 >/dev/null
        loaded=$keys
        max=0
        for i in 0 1 2; do r=$(rss_kib "$(cat "$WORK/$sys-m$i.pid")"); (( r > max )) && max=$r; done
        echo "{\"system\": \"$sys\", \"keys\": $keys, \"rss_kib\": $max}" >"$OUT/memory-$keys-$sys.json"
        echo "$sys $keys keys: ${max} KiB"
    done
    stop_cluster "$sys"
done

echo "== failover (kill -9 of the leader, $FAILOVER_RUNS runs)"
for sys in etcd shoal; do
    start_cluster "$sys"
    for run in $(seq 1 "$FAILOVER_RUNS"); do
        leader=$(leader_index "$sys")
        pid=$(cat "$WORK/$sys-m$leader.pid")
        "$BIN/shoal-bench" --endpoints "$(endpoints "$sys")" --conns 3 --label "$sys" --quiet \
            --json "$OUT/failover-$run-$sys.json" failover --kill-pid "$pid" | tail -n 1
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        start_member "$sys" "$leader"
        wait_healthy "$sys"
    done
    stop_cluster "$sys"
done

python3 benches/report.py "$OUT" "$DURATION" "$0${QUICK:+ (QUICK=1)}" >benches/RESULTS.md
cat benches/RESULTS.md
