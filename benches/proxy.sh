#!/usr/bin/env bash
# What the node proxy costs: the same backend pod reached at its own address
# and through its Service's cluster IP, from the host, in one run.
#   - `shoal up` (3 members, 2 controllers, 2 agents with pod networks and
#     proxies), then one pod running `shoal-tcp-bench serve` behind a
#     ClusterIP Service;
#   - for each target: connection setup (connect, one byte each way, close)
#     with 1 and 16 clients, 64-byte request/answer latency on one
#     connection, and throughput of one and of 4 streams.
# Prints a Markdown table with the ratios (cluster IP / pod IP) and writes
# it to $OUT (default /var/tmp/shoal-proxy-bench.md), to be copied into
# benches/RESULTS.md. Needs root (the agents run containers).
#
#   benches/proxy.sh                 SECONDS_EACH=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
BIN="$CARGO_TARGET_DIR/release"
OUT=${OUT:-/var/tmp/shoal-proxy-bench.md}
EACH=${SECONDS_EACH:-5}
scripts/prereqs.sh up
cargo build --release --bin shoal --bin shoal-controllers --bin shoal-agent --bin shoalctl --bin shoal-tcp-bench

WORK=$(mktemp -d /var/tmp/shoal-proxy.XXXXXX)
OFFSET=9
ENDPOINTS="http://127.0.0.1:$((2379 + OFFSET))"
"$BIN/shoal" up --data-dir "$WORK/up" --port-offset $OFFSET \
    --pod-cidrs 10.89.1.0/24,10.89.2.0/24 --service-cluster-ip-range 10.97.0.0/24 >"$WORK/up.log" 2>&1 &
UP=$!
finish() {
    kill -INT $UP 2>/dev/null || true
    wait $UP 2>/dev/null || true
    echo "logs and data in $WORK"
}
trap finish EXIT
ctl() { "$BIN/shoalctl" --endpoints "$ENDPOINTS" "$@"; }
until_true() { # seconds what command...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq 1 $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "timed out waiting for $what; see $WORK" >&2
    exit 1
}
two_nodes() { [[ $(ctl get nodes 2>/dev/null | grep -c ' Ready') -eq 2 ]]; }
until_true 120 "two Ready nodes" two_nodes

cat >"$WORK/tcp-bench.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: tcp-bench
  labels: {app: tcp-bench}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    command: ["$BIN/shoal-tcp-bench", "serve", "--port", "8080"]
    ports: [{name: tcp, containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: tcp}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata:
  name: tcp-bench
spec:
  selector: {app: tcp-bench}
  ports: [{port: 80, targetPort: tcp}]
EOF
ctl apply -f "$WORK/tcp-bench.yaml"
ready() { ctl get endpoints tcp-bench -o json | python3 -c '
import json, sys
subsets = json.load(sys.stdin).get("subsets") or []
sys.exit(0 if any(s.get("addresses") for s in subsets) else 1)'; }
until_true 60 "the backend to be ready" ready
POD_IP=$(ctl get pod tcp-bench -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["podIP"])')
CLUSTER_IP=$(ctl get svc tcp-bench -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["clusterIP"])')
served() { "$BIN/shoal-tcp-bench" connect --target "$CLUSTER_IP:80" --seconds 1 | grep -q '"errors":0'; }
until_true 30 "the proxy to serve $CLUSTER_IP:80" served
echo "pod IP $POD_IP:8080, cluster IP $CLUSTER_IP:80"

# name mode clients field
CASES=("connect, 1 client|connect|1|per_second" "connect, 16 clients|connect|16|per_second"
    "64 B request/answer, 1 connection|rr|1|per_second" "stream, 1 connection|stream|1|mib_per_second"
    "stream, 4 connections|stream|4|mib_per_second")
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
{
    echo "From \`benches/proxy.sh\`, $(date -u +%F), $(nproc) cores: one backend pod (\`shoal-tcp-bench serve\`), reached from the host at its pod IP and at its Service's cluster IP (the node proxy, in user space, forwarding to the pod IP), ${EACH} s per case, release build."
    echo
    echo "| case | pod IP | cluster IP | cluster/pod | p50 ms pod / cluster | p99 ms pod / cluster |"
    echo "|---|---:|---:|---:|---:|---:|"
} >"$OUT"
for case in "${CASES[@]}"; do
    IFS='|' read -r name mode clients key <<<"$case"
    direct=$("$BIN/shoal-tcp-bench" "$mode" --target "$POD_IP:8080" --clients "$clients" --seconds "$EACH")
    proxied=$("$BIN/shoal-tcp-bench" "$mode" --target "$CLUSTER_IP:80" --clients "$clients" --seconds "$EACH")
    d=$(field "$direct" "$key")
    p=$(field "$proxied" "$key")
    unit=$([[ $key == per_second ]] && echo "/s" || echo " MiB/s")
    latency() { [[ $mode == stream ]] && echo "-" || echo "$(field "$direct" "$1") / $(field "$proxied" "$1")"; }
    ratio=$(python3 -c "print(f'{float(\"$p\") / float(\"$d\"):.2f}')")
    errors="$(field "$direct" errors)/$(field "$proxied" errors)"
    [[ $errors == 0/0 ]] || echo "errors (pod/cluster) in $name: $errors" >&2
    echo "| $name | $d$unit | $p$unit | $ratio | $(latency p50_ms) | $(latency p99_ms) |" >>"$OUT"
done
cat "$OUT"
