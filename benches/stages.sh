#!/usr/bin/env bash
# Where a write's time goes, Shoal beside etcd 3.4 in one run: puts at each
# client count against both (alternating), with every member's /metrics
# scraped before and after each point and its CPU time and context switches
# read from /proc. Prints, per point, Shoal's write stages (from
# shoal_write_stage_duration_seconds) beside etcd's own disk and network
# histograms, and writes the tables into the "Write stages" section of
# benches/RESULTS.md.
#
#   benches/stages.sh                  1- and 3-member clusters, 1/16/256 clients (about 4 minutes)
#
# Knobs (environment): TOPOLOGIES ("1 3"), CLIENTS ("1 16 256"), DURATION
# (per point, default 5s), BENCH_DIR (/var/tmp/shoal-bench), NO_RESULTS=1
# to print without touching RESULTS.md, BIN_DIR=dir to run the `shoal` and
# `shoal-bench` found there instead of building them (to compare builds).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
export ETCDCTL_API=3
TOPOLOGIES="${TOPOLOGIES:-1 3}"
CLIENTS="${CLIENTS:-1 16 256}"
DURATION="${DURATION:-5s}"
WORK="${BENCH_DIR:-/var/tmp/shoal-bench}/stages"
OUT="$WORK/results"

source benches/lib.sh
prepare_run
trap 'stop_cluster etcd; stop_cluster shoal' EXIT

# Every member's metrics and /proc counters, into $OUT/<point>-<sys>-m<i>.<when>.
scrape() { # system point when
    local sys=$1 point=$2 when=$3
    for i in $(member_indexes); do
        local pid; pid=$(cat "$WORK/$sys-m$i.pid")
        curl -sf "$(client_url "$sys" "$i")/metrics" >"$OUT/$point-$sys-m$i.$when.metrics"
        {
            awk '{print "cpu_ticks", $14 + $15}' "/proc/$pid/stat"
            cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print "ctxt_switches", n}'
            echo "ticks_per_second $(getconf CLK_TCK)"
        } >"$OUT/$point-$sys-m$i.$when.proc"
    done
}

for members in $TOPOLOGIES; do
    MEMBERS=$members
    echo "== $members member(s)"
    start_cluster etcd
    start_cluster shoal
    for clients in $CLIENTS; do
        point="m$members-c$clients"
        for sys in etcd shoal; do
            scrape "$sys" "$point" before
            bench "$sys" "put-$point" "$clients" --duration "$DURATION" put
            scrape "$sys" "$point" after
        done
        python3 benches/stages.py "$OUT" "$point" "$members" | tee "$OUT/$point.md"
    done
    stop_cluster etcd
    stop_cluster shoal
done

[[ -n "${NO_RESULTS:-}" ]] && exit 0
section="<!-- stages.sh -->
## Write stages

From \`benches/stages.sh\` ($DURATION per point, puts of 256-byte values, \`shoal-bench --conns min(clients, 16)\`),
$(date -u +%F), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo).
Per point: Shoal's stages of a write (means and percentiles estimated from the histogram buckets, summed over the
members), beside etcd's own fsync, backend commit and peer round-trip histograms for the same run, and each
system's CPU time and context switches per write (all members together).
$(for f in "$OUT"/m*-c*.md; do echo; cat "$f"; done)
"
printf '%s\n' "$section" | python3 benches/section.py stages.sh
echo "wrote the Write stages section of benches/RESULTS.md"
