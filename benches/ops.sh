#!/usr/bin/env bash
# Operations side by side with etcd 3.4: how long restoring a snapshot
# takes, and how much a defragmentation stalls writes. Rewrites the
# "Operations" section at the end of benches/RESULTS.md.
#
#   benches/ops.sh         (about 5 minutes)
#
# Knobs (environment): RESTORE_KEYS (100000), RESTORE_RUNS (3),
# DEFRAG_SECONDS (12), BENCH_DIR (/var/tmp/shoal-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
export ETCDCTL_API=3
RESTORE_KEYS="${RESTORE_KEYS:-100000}"
RESTORE_RUNS="${RESTORE_RUNS:-3}"
DEFRAG_SECONDS="${DEFRAG_SECONDS:-12}"
WORK="${BENCH_DIR:-/var/tmp/shoal-bench}/ops"
OUT="$WORK/results"

scripts/prereqs.sh test
cargo build --release -p shoal-store -p shoal-ctl -p shoal-bench
BIN="$CARGO_TARGET_DIR/release"
rm -rf "$WORK"
mkdir -p "$OUT"
source benches/lib.sh
trap 'stop_cluster etcd; stop_cluster shoal' EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

load_keys() { # system
    "$BIN/shoal-bench" --endpoints "$(endpoints "$1")" --clients 64 --conns 16 --total "$RESTORE_KEYS" --quiet \
        put --sequential --key-space "$RESTORE_KEYS" --val-size 256 >/dev/null
}

restore() { # system file data-dir
    local flags=(--name m0 --initial-cluster m0=http://127.0.0.1:1 --initial-advertise-peer-urls http://127.0.0.1:1
        --data-dir "$3")
    if [[ $1 == etcd ]]; then
        etcdctl snapshot restore "$2" "${flags[@]}" >/dev/null 2>&1
    else
        "$BIN/shoalctl" snapshot restore "$2" "${flags[@]}" >/dev/null
    fi
}

echo "== snapshot restore of $RESTORE_KEYS keys ($RESTORE_RUNS runs)"
for sys in etcd shoal; do
    start_cluster "$sys"
    load_keys "$sys"
    etcdctl --endpoints="$(client_url "$sys" 0)" snapshot save "$WORK/$sys.db" >/dev/null 2>&1
    stop_cluster "$sys"
    runs=()
    for run in $(seq 1 "$RESTORE_RUNS"); do
        rm -rf "$WORK/restored"
        start=$(now_ms)
        restore "$sys" "$WORK/$sys.db" "$WORK/restored"
        runs+=($(( $(now_ms) - start )))
    done
    rm -rf "$WORK/restored"
    size=$(stat -c %s "$WORK/$sys.db")
    echo "{\"system\": \"$sys\", \"keys\": $RESTORE_KEYS, \"file_bytes\": $size, \"runs_ms\": [$(IFS=,; echo "${runs[*]}")]}" \
        >"$OUT/restore-$sys.json"
    echo "$sys: ${runs[*]} ms ($size bytes)"
done

echo "== defragmentation under a write load (${DEFRAG_SECONDS}s of puts, 16 clients)"
for sys in etcd shoal; do
    start_cluster "$sys"
    load_keys "$sys"
    load_keys "$sys"   # overwrite every key: half the data is history to compact away
    rev=$(etcdctl --endpoints="$(client_url "$sys" 0)" endpoint status -w json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
    etcdctl --endpoints="$(client_url "$sys" 0)" compaction --physical "$rev" >/dev/null
    bench "$sys" defrag-baseline 16 --duration "${DEFRAG_SECONDS}s" put
    bench "$sys" defrag-during 16 --duration "${DEFRAG_SECONDS}s" put &
    loader=$!
    sleep 2
    start=$(now_ms)
    etcdctl --endpoints="$(endpoints "$sys")" --command-timeout=60s defrag >/dev/null
    took=$(( $(now_ms) - start ))
    wait "$loader"
    echo "{\"system\": \"$sys\", \"defrag_ms\": $took}" >"$OUT/defrag-time-$sys.json"
    echo "$sys: defragmenting 3 members took $took ms"
    stop_cluster "$sys"
done

section=$(python3 - "$OUT" "$RESTORE_KEYS" "$DEFRAG_SECONDS" <<'PY'
import json, os, statistics, sys
out, keys, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None
print("<!-- ops.sh -->")
print("## Operations\n")
print(f"From `benches/ops.sh` on the same machine. Restore: `etcdctl snapshot restore` and `shoalctl snapshot "
      f"restore` of a snapshot of {keys:,} keys (256-byte values) saved with `etcdctl snapshot save`, into one "
      "member's data dir.\n")
print("| system | snapshot bytes | restore runs (ms) | median ms |")
print("|---|---:|---|---:|")
med = {}
for s in ["etcd", "shoal"]:
    r = load(f"restore-{s}.json")
    if r:
        med[s] = statistics.median(r["runs_ms"])
        print(f"| {s} | {r['file_bytes']:,} | {', '.join(map(str, r['runs_ms']))} | {med[s]:.0f} |")
if len(med) == 2 and med["etcd"]:
    print(f"\nShoal/etcd restore time: {med['shoal'] / med['etcd']:.2f}\n")
print(f"Defragmentation: `etcdctl defrag` of all three members after {keys:,} keys were written twice and the "
      f"history compacted, while 16 clients put for {seconds}s; the baseline is the same load without it.\n")
print("| system | defrag of 3 members ms | baseline p99 / max ms | during defrag p99 / max ms | ops/s baseline / during |")
print("|---|---:|---:|---:|---:|")
for s in ["etcd", "shoal"]:
    base, during, took = load(f"defrag-baseline-16-{s}.json"), load(f"defrag-during-16-{s}.json"), load(f"defrag-time-{s}.json")
    if base and during and took:
        bl, dl = base["latency_ms"], during["latency_ms"]
        print(f"| {s} | {took['defrag_ms']} | {bl['p99']:.1f} / {bl['max']:.1f} | {dl['p99']:.1f} / {dl['max']:.1f} "
              f"| {base['ops_per_sec']:.0f} / {during['ops_per_sec']:.0f} |")
PY
)
python3 - "$section" <<'PY'
import sys
path = "benches/RESULTS.md"
text = open(path).read() if __import__("os").path.exists(path) else ""
head = text.split("<!-- ops.sh -->")[0].rstrip()
open(path, "w").write((head + "\n\n" if head else "") + sys.argv[1] + "\n")
PY
sed -n '/^<!-- ops.sh -->/,$p' benches/RESULTS.md
