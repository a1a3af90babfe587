# Shared by compare.sh, ops.sh, stages.sh and snapshots.sh: etcd and Shoal
# clusters of MEMBERS members (3 unless set) on loopback, started and stopped
# by pid, and the load generator. Expects WORK and OUT to be set, and BIN (or
# a call of prepare_run); MEMBER_FLAGS, if set, is added to every member's
# command line (a flag both systems take).

MEMBERS="${MEMBERS:-3}"
member_indexes() { seq 0 $((MEMBERS - 1)); }

declare -A BASE=([etcd]=21000 [shoal]=23000)
declare -A EXE=([etcd]=/usr/bin/etcd [shoal]="${BIN:-}/shoal")

# For scripts that take BIN_DIR: installs what the runs need, builds the
# release `shoal` and `shoal-bench` (or, with BIN_DIR set, runs the ones
# found there, to compare builds), and empties WORK.
prepare_run() {
    scripts/prereqs.sh test
    if [[ -n "${BIN_DIR:-}" ]]; then
        BIN="$BIN_DIR"
    else
        cargo build --release -p shoal-store -p shoal-bench
        BIN="$CARGO_TARGET_DIR/release"
    fi
    EXE[shoal]="$BIN/shoal"
    rm -rf "$WORK"
    mkdir -p "$OUT"
}

client_url() { echo "http://127.0.0.1:$((BASE[$1] + $2 * 100))"; }
peer_url() { echo "http://127.0.0.1:$((BASE[$1] + $2 * 100 + 1))"; }
endpoints() { # system
    local list=""
    for i in $(member_indexes); do list+="${list:+,}$(client_url "$1" "$i")"; done
    echo "$list"
}

start_member() { # system index
    local sys=$1 i=$2 cluster=""
    for j in $(member_indexes); do cluster+="${cluster:+,}m$j=$(peer_url "$sys" "$j")"; done
    "${EXE[$sys]}" --name "m$i" --data-dir "$WORK/$sys/m$i" \
        --listen-client-urls "$(client_url "$sys" "$i")" --advertise-client-urls "$(client_url "$sys" "$i")" \
        --listen-peer-urls "$(peer_url "$sys" "$i")" --initial-advertise-peer-urls "$(peer_url "$sys" "$i")" \
        --initial-cluster "$cluster" --initial-cluster-token "bench-$sys" --initial-cluster-state new \
        ${MEMBER_FLAGS:-} >>"$WORK/$sys-m$i.log" 2>&1 &
    echo $! >"$WORK/$sys-m$i.pid"
}

wait_healthy() { # system
    for _ in $(seq 1 300); do
        if etcdctl --endpoints="$(endpoints "$1")" endpoint health >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "$1 did not become healthy" >&2; return 1
}

start_cluster() { for i in $(member_indexes); do start_member "$1" "$i"; done; wait_healthy "$1"; }

stop_cluster() { # system
    for i in $(member_indexes); do
        local pid; pid=$(cat "$WORK/$1-m$i.pid" 2>/dev/null || true)
        [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
    done
    for i in $(member_indexes); do
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
