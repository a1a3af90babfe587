#!/usr/bin/env bash
# Operations side by side with etcd 3.4: how long saving and restoring a
# snapshot take and how much memory they use, and how much a
# defragmentation stalls writes. Rewrites the "Operations" section at the
# end of benches/RESULTS.md.
#
#   benches/ops.sh                       (about 5 minutes)
#   RESTORE_KEYS=1000000 benches/ops.sh  (the 1M-key figures, about 15 minutes)
#
# Knobs (environment): RESTORE_KEYS (100000), RESTORE_RUNS (3),
# DEFRAG_KEYS (100000), DEFRAG_SECONDS (12), SKIP_DEFRAG (unset),
# BENCH_DIR (/var/tmp/shoal-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
export ETCDCTL_API=3
RESTORE_KEYS="${RESTORE_KEYS:-100000}"
RESTORE_RUNS="${RESTORE_RUNS:-3}"
DEFRAG_SECONDS="${DEFRAG_SECONDS:-12}"
DEFRAG_KEYS="${DEFRAG_KEYS:-100000}"
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

load_keys() { # system [count]
    local count=${2:-$RESTORE_KEYS}
    "$BIN/shoal-bench" --endpoints "$(endpoints "$1")" --clients 64 --conns 16 --total "$count" --quiet \
        put --sequential --key-space "$count" --val-size 256 >/dev/null
}

restore() { # tool file data-dir; the restoring process's peak RSS goes to $WORK/restore.rss
    local flags=(--name m0 --initial-cluster m0=http://127.0.0.1:1 --initial-advertise-peer-urls http://127.0.0.1:1
        --data-dir "$3")
    local tool=("$BIN/shoalctl")
    [[ $1 == etcd ]] && tool=(etcdctl)
    /usr/bin/time -f %M -o "$WORK/restore.rss" "${tool[@]}" snapshot restore "$2" "${flags[@]}" >/dev/null 2>&1
}

peak_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# Restores FILE with TOOL RESTORE_RUNS times; prints "ms,ms,... peak_kib".
time_restores() { # tool file
    local runs=() peak=0
    for run in $(seq 1 "$RESTORE_RUNS"); do
        rm -rf "$WORK/restored"
        local start; start=$(now_ms)
        restore "$1" "$2" "$WORK/restored"
        runs+=($(( $(now_ms) - start )))
        local kib; kib=$(tail -1 "$WORK/restore.rss")
        (( kib > peak )) && peak=$kib
    done
    rm -rf "$WORK/restored"
    echo "$(IFS=,; echo "${runs[*]}") $peak"
}

echo "== snapshot save and restore of $RESTORE_KEYS keys ($RESTORE_RUNS runs)"
for sys in etcd shoal; do
    start_cluster "$sys"
    load_keys "$sys"
    pid=$(cat "$WORK/$sys-m0.pid")
    saves=() save_peak=0
    for run in $(seq 1 "$RESTORE_RUNS"); do
        rm -f "$WORK/$sys.db"
        echo 5 >"/proc/$pid/clear_refs"   # restart the peak RSS count
        start=$(now_ms)
        etcdctl --endpoints="$(client_url "$sys" 0)" snapshot save "$WORK/$sys.db" >/dev/null 2>&1
        saves+=($(( $(now_ms) - start )))
        kib=$(peak_kib "$pid")
        (( kib > save_peak )) && save_peak=$kib
    done
    rss_after=$(rss_kib "$pid")
    stop_cluster "$sys"
    read -r runs restore_peak < <(time_restores "$sys" "$WORK/$sys.db")
    size=$(stat -c %s "$WORK/$sys.db")
    echo "{\"system\": \"$sys\", \"keys\": $RESTORE_KEYS, \"file_bytes\": $size, \"runs_ms\": [$runs],
      \"restore_peak_kib\": $restore_peak, \"save_runs_ms\": [$(IFS=,; echo "${saves[*]}")],
      \"save_server_peak_kib\": $save_peak, \"server_rss_after_kib\": $rss_after}" >"$OUT/restore-$sys.json"
    echo "$sys: save ${saves[*]} ms (server peak ${save_peak} KiB), restore $runs ms (peak ${restore_peak} KiB), $size bytes"
done
# etcd's own file into Shoal: the offline migration.
read -r runs peak < <(time_restores shoal "$WORK/etcd.db")
echo "{\"runs_ms\": [$runs], \"restore_peak_kib\": $peak}" >"$OUT/restore-etcd-into-shoal.json"
echo "etcd's snapshot restored by shoalctl: $runs ms (peak $peak KiB)"

echo "== defragmentation under a write load (${DEFRAG_SECONDS}s of puts, 16 clients)"
for sys in etcd shoal; do
    [[ -n "${SKIP_DEFRAG:-}" ]] && break
    start_cluster "$sys"
    load_keys "$sys" "$DEFRAG_KEYS"
    load_keys "$sys" "$DEFRAG_KEYS"   # overwrite every key: half the data is history to compact away
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

section=$(python3 - "$OUT" "$RESTORE_KEYS" "$DEFRAG_SECONDS" "$DEFRAG_KEYS" <<'PY'
import json, os, statistics, sys
out, keys, seconds, defrag_keys = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None
print("<!-- ops.sh -->")
print("## Operations\n")
import datetime
print(f"From `RESTORE_KEYS={keys} benches/ops.sh`, {datetime.date.today()}, on the same machine (2 cores, "
      f"24 GiB; {keys:,} keys of 256-byte values loaded into 3 members). "
      "Save: `etcdctl snapshot save` from member 0, with that member's peak RSS during the saves (VmHWM, reset "
      "before each). Restore: `etcdctl snapshot restore` and `shoalctl snapshot restore` of the saved file into "
      "one member's data dir, with the restoring process's peak RSS. Both systems' files are in etcd's format.\n")
print("| system | snapshot bytes | save runs (ms) | server peak RSS during save | restore runs (ms) | restore peak RSS |")
print("|---|---:|---|---:|---|---:|")
med, save = {}, {}
mib = lambda kib: f"{kib / 1024:.0f} MiB" if kib else "-"
for s in ["etcd", "shoal"]:
    r = load(f"restore-{s}.json")
    if r:
        med[s] = statistics.median(r["runs_ms"])
        save[s] = statistics.median(r.get("save_runs_ms") or [0])
        print(f"| {s} | {r['file_bytes']:,} | {', '.join(map(str, r.get('save_runs_ms', [])))} "
              f"| {mib(r.get('save_server_peak_kib', 0))} | {', '.join(map(str, r['runs_ms']))} "
              f"| {mib(r.get('restore_peak_kib', 0))} |")
cross = load("restore-etcd-into-shoal.json")
if cross:
    print(f"| etcd's file, restored by shoalctl | | | | {', '.join(map(str, cross['runs_ms']))} "
          f"| {mib(cross['restore_peak_kib'])} |")
if len(med) == 2 and med["etcd"] and save["etcd"]:
    print(f"\nShoal/etcd median save time: {save['shoal'] / save['etcd']:.2f}; restore time: "
          f"{med['shoal'] / med['etcd']:.2f}\n")
print(f"Defragmentation: `etcdctl defrag` of all three members after {defrag_keys:,} keys were written twice and the "
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
import os, sys
path = "benches/RESULTS.md"
text = open(path).read() if os.path.exists(path) else ""
head, _, rest = text.partition("<!-- ops.sh -->")
# The sections after this one stay: the next "## " heading after its own.
after = rest.find("\n## ", rest.find("## Operations") + 1) if rest else -1
tail = rest[after:] if after >= 0 else ""
head = head.rstrip()
open(path, "w").write((head + "\n\n" if head else "") + sys.argv[1] + "\n" + tail)
PY
sed -n '/^<!-- ops.sh -->/,$p' benches/RESULTS.md
