#!/usr/bin/env bash
# Control-plane measurements with real processes: a 3-member store and two
# controllers (`shoal up` without agents), plus two agents started here as
# two nodes, each offering room for 1,100 pods. Then, with shoal-cp-bench:
#   - pod startup latency, create to Running, over 100 pods;
#   - scheduling throughput, 1,000 pods on the 2 agents;
#   - a node's death: its pods Running on the other node.
# Prints the results and writes them to $OUT (default /var/tmp/shoal-cp-bench.md),
# to be copied into benches/RESULTS.md. Needs root (the agents run containers).
#
#   benches/control-plane.sh
#   HOLLOW=1000 PODS=1000 benches/control-plane.sh
#                  the scale mode: one `shoal-agent --hollow N` process instead
#                  of the two agents (nodes hollow-0 ... with 4 CPUs, 32Gi and
#                  110 pods each, heartbeat TTL 40s), then only the scheduling
#                  throughput over $PODS pods. Needs no root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
BIN="$CARGO_TARGET_DIR/release"
OUT=${OUT:-/var/tmp/shoal-cp-bench.md}
scripts/prereqs.sh build
cargo build --release --bin shoal --bin shoal-controllers --bin shoal-agent --bin shoal-cp-bench

WORK=$(mktemp -d /var/tmp/shoal-cp.XXXXXX)
# shoal up runs the agents it finds next to itself: give it none.
mkdir -p "$WORK/bin"
cp "$BIN/shoal" "$BIN/shoal-controllers" "$WORK/bin/"
OFFSET=7
ENDPOINTS="http://127.0.0.1:$((2379 + OFFSET)),http://127.0.0.1:$((22379 + OFFSET)),http://127.0.0.1:$((32379 + OFFSET))"
"$WORK/bin/shoal" up --data-dir "$WORK/up" --port-offset $OFFSET >"$WORK/up.log" 2>&1 &
UP=$!
declare -A AGENT
start_agent() { # index
    "$BIN/shoal-agent" --node-name "bench-$1" --address "127.0.77.$1" --max-pods 1100 \
        --endpoints "$ENDPOINTS" --data-dir "$WORK/agent-$1" --stop-pods-on-exit \
        >>"$WORK/agent-$1.log" 2>&1 &
    AGENT[$1]=$!
}
finish() {
    for i in 1 2; do [[ -n "${AGENT[$i]:-}" ]] && kill "${AGENT[$i]}" 2>/dev/null || true; done
    for i in 1 2; do
        for _ in $(seq 1 150); do kill -0 "${AGENT[$i]:-0}" 2>/dev/null || break; sleep 0.2; done
    done
    kill -INT $UP 2>/dev/null || true
    wait $UP 2>/dev/null || true
    echo "logs and data in $WORK"
}
trap finish EXIT
healthy=""
for _ in $(seq 1 300); do
    etcdctl --endpoints="$ENDPOINTS" endpoint health >/dev/null 2>&1 && healthy=1 && break
    sleep 0.2
done
[[ -n "$healthy" ]] || { echo "the store did not become healthy; see $WORK/up.log" >&2; exit 1; }
HOLLOW=${HOLLOW:-0}
if ((HOLLOW > 0)); then
    "$BIN/shoal-agent" --hollow "$HOLLOW" --node-name hollow --cpus 4 --memory 32Gi --max-pods 110 \
        --heartbeat-ttl 40s --endpoints "$ENDPOINTS" --data-dir "$WORK/hollow" >>"$WORK/hollow.log" 2>&1 &
    AGENT[1]=$!
    WANT=$HOLLOW PREFIX=hollow-
else
    start_agent 1
    start_agent 2
    WANT=2 PREFIX=bench-
fi
nodes=""
for _ in $(seq 1 600); do
    [[ $(etcdctl --endpoints="$ENDPOINTS" get /registry/leases/ --prefix --keys-only | grep -c "$PREFIX") -eq $WANT ]] && nodes=1 && break
    sleep 0.2
done
[[ -n "$nodes" ]] || { echo "the agents did not register; see $WORK/*.log" >&2; exit 1; }

bench() { "$BIN/shoal-cp-bench" --endpoints "$ENDPOINTS" "$@" | tee -a "$WORK/results.txt"; }
if ((HOLLOW > 0)); then
    bench schedule --pods "${PODS:-1000}"
    {
        echo "## Control plane at scale"
        echo
        echo "- Date: $(date -u +%Y-%m-%d); machine: $(nproc) cores; \`HOLLOW=$HOLLOW PODS=${PODS:-1000} benches/control-plane.sh\` (release build; 3 members, 2 controllers, $HOLLOW hollow nodes in one \`shoal-agent --hollow\` process)"
        echo
        grep -v '^{' "$WORK/results.txt" | sed 's/^/- /'
    } >"$OUT"
    cat "$OUT"
    exit 0
fi
bench startup --pods 100
bench schedule --pods 1000
bench node-death --node bench-2 --pid "${AGENT[2]}" --replicas 10
# The dead node's agent comes back and kills what it ran for pods now elsewhere.
start_agent 2

{
    echo "## Control plane"
    echo
    echo "- Date: $(date -u +%Y-%m-%d); machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
    echo "- Command: \`benches/control-plane.sh\` (release build; 3 members, 2 controllers, 2 agents on one machine; pods run \`/bin/sleep\` on the host image)"
    echo
    grep -v '^{' "$WORK/results.txt" | sed 's/^/- /'
} >"$OUT"
cat "$OUT"
