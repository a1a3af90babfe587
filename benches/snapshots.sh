#!/usr/bin/env bash
# Writes across Raft snapshots, Shoal beside etcd 3.4 in one run. Each
# system gets a fresh 3-member cluster with --snapshot-count SNAPSHOT_COUNT,
# is loaded with KEYS fresh keys by 64 clients, then has them overwritten
# for DURATION by 16 clients; both phases cross snapshots on every member.
# Prints throughput, p99, p99.9 and the slowest write of each phase, and
# how many snapshots each member took (with Shoal's build times), and
# writes the table into the "Writes across snapshots" section of
# benches/RESULTS.md.
#
#   benches/snapshots.sh       1M keys, snapshots every 20,000 entries (about 5 minutes)
#
# Both systems count Raft entries between snapshots; etcd's entry is one
# request, Shoal's may carry a batch of them, so Shoal takes fewer.
#
# Knobs (environment): KEYS (1000000), SNAPSHOT_COUNT (20000), DURATION
# (30s), SYSTEMS ("etcd shoal"), BENCH_DIR (/var/tmp/shoal-bench), NO_RESULTS=1, BIN_DIR=dir (as in
# stages.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
export ETCDCTL_API=3
KEYS="${KEYS:-1000000}"
SNAPSHOT_COUNT="${SNAPSHOT_COUNT:-20000}"
DURATION="${DURATION:-30s}"
SYSTEMS="${SYSTEMS:-etcd shoal}"
WORK="${BENCH_DIR:-/var/tmp/shoal-bench}/snapshots"
OUT="$WORK/results"

source benches/lib.sh
prepare_run
MEMBER_FLAGS="--snapshot-count $SNAPSHOT_COUNT"
trap 'stop_cluster etcd; stop_cluster shoal' EXIT

put_args=(put --key-size 16 --val-size 256 --key-space "$KEYS")
for sys in $SYSTEMS; do
    echo "== $sys"
    start_cluster "$sys"
    bench "$sys" load 64 --total "$KEYS" "${put_args[@]}" --sequential
    bench "$sys" overwrite 16 --duration "$DURATION" "${put_args[@]}"
    for i in $(member_indexes); do
        # etcd logs "saved snapshot at index N"; Shoal "built snapshot ... took_ms=N".
        grep -E "saved snapshot|built snapshot" "$WORK/$sys-m$i.log" >"$OUT/$sys-m$i.snapshots" || true
        # Shoal's RocksDB log, for write stalls (\`grep -i stall\`).
        cp "$WORK/$sys/m$i/member/db/LOG" "$OUT/$sys-m$i.rocksdb.LOG" 2>/dev/null || true
    done
    stop_cluster "$sys"
done

table=$(python3 - "$OUT" $SYSTEMS <<'PY'
import glob, json, os, re, sys
out, systems = sys.argv[1], sys.argv[2:]
print("| system | phase | clients | puts/s | p50 ms | p99 ms | p99.9 ms | max ms |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for phase, clients in (("load", 64), ("overwrite", 16)):
    for sys_ in systems:
        r = json.load(open(f"{out}/{phase}-{clients}-{sys_}.json"))
        l = r["latency_ms"]
        print(f"| {sys_} | {phase} | {clients} | {r['ops_per_sec']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {l['max']:.1f} |")
print()
for sys_ in systems:
    counts, took = [], []
    for path in sorted(glob.glob(f"{out}/{sys_}-m*.snapshots")):
        lines = open(path).read().splitlines()
        counts.append(len(lines))
        took += [int(m.group(1)) for line in lines for m in [re.search(r"took_ms=(\d+)", line)] if m]
    extra = f"; build time {min(took)}-{max(took)} ms" if took else ""
    print(f"- {sys_}: snapshots per member {', '.join(map(str, counts))}{extra}")
PY
)
echo "$table"

[[ -n "${NO_RESULTS:-}" ]] && exit 0
section="<!-- snapshots.sh -->
## Writes across snapshots

From \`benches/snapshots.sh\`, $(date -u +%F), $(nproc) cores: 3 members each, \`--snapshot-count $SNAPSHOT_COUNT\` (Raft entries; a Shoal entry may batch many writes);
$KEYS fresh 16-byte keys with 256-byte values loaded by 64 clients, then overwritten at random by 16
clients for $DURATION.

$table"
printf '%s\n' "$section" | python3 benches/section.py snapshots.sh
echo "wrote the Writes across snapshots section of benches/RESULTS.md"
