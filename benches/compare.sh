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

source benches/lib.sh

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
            | tr '\r' '\n' | grep -E '^(PASS|FAIL|Slowest|Stddev)' >"$OUT/checkperf-$load-$sys.txt" || true
        echo "$sys --load=$load: $(tr '\n' ' ' <"$OUT/checkperf-$load-$sys.txt")"
    done
done
stop_cluster etcd
stop_cluster shoal

echo "== memory (RSS of the largest member after loading 256-byte values)"
for sys in etcd shoal; do
    start_cluster "$sys"
    for keys in $MEMORY_KEYS; do
        # Sequential keys start from the first each time: rewriting the
        # earlier ones is what makes `keys` distinct keys in the store.
        "$BIN/shoal-bench" --endpoints "$(endpoints "$sys")" --clients 64 --conns 16 --total "$keys" --quiet \
            put --sequential --key-space "$keys" --val-size 256 --key-size 16 >/dev/null
        max=0
        for i in $(member_indexes); do r=$(rss_kib "$(cat "$WORK/$sys-m$i.pid")"); (( r > max )) && max=$r; done
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

# The sections other scripts own (stages.sh, ops.sh) and the hand-kept
# write-path notes start with a `<!-- name -->` marker and are kept.
ops_section=$(sed -n '/^<!-- [a-z.-]* -->/,$p' benches/RESULTS.md 2>/dev/null || true)
python3 benches/report.py "$OUT" "$DURATION" "$0${QUICK:+ (QUICK=1)}" >benches/RESULTS.md
if [[ -n "$ops_section" ]]; then printf '\n%s\n' "$ops_section" >>benches/RESULTS.md; fi
cat benches/RESULTS.md
