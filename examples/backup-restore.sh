#!/usr/bin/env bash
# Backup and restore of a `shoal up` cluster, step by step.
#
#   examples/backup-restore.sh save FILE [ENDPOINTS]
#       Saves a point-in-time snapshot of the whole store (every key, with
#       its revisions, and every lease) from one member. Any etcd client
#       can do the same: etcdctl snapshot save FILE.
#
#   examples/backup-restore.sh restore FILE DATA_DIR [PORT_OFFSET]
#       Builds a new 3-member store from FILE in DATA_DIR, laid out as
#       `shoal up` lays out its members (infra1, infra2, infra3), then:
#           shoal up --data-dir DATA_DIR [--port-offset PORT_OFFSET]
#       starts it with the controllers and the agents. The Deployments in
#       the snapshot come back to their desired state; agents whose data dir
#       (DATA_DIR/agent-N) still records running containers adopt them.
#
# A restore refuses a truncated or modified file before writing anything,
# and never overwrites a member's existing data dir: move it away first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shoalctl=${SHOALCTL:-$(command -v shoalctl || echo "${CARGO_TARGET_DIR:-/var/tmp/shoal-target}/release/shoalctl")}

case "${1:-}" in
save)
    file=${2:?usage: backup-restore.sh save FILE [ENDPOINTS]}
    endpoints=${3:-${ENDPOINTS:-http://127.0.0.1:2379}}
    # One member is enough: the snapshot is a consistent copy of the whole
    # store. Each is tried in turn, in case one is down.
    IFS=, read -ra members <<<"$endpoints"
    for member in "${members[@]}"; do
        if "$shoalctl" --endpoints="$member" snapshot save "$file"; then
            "$shoalctl" snapshot status "$file"
            exit 0
        fi
    done
    echo "no member could save a snapshot" >&2
    exit 1
    ;;
restore)
    file=${2:?usage: backup-restore.sh restore FILE DATA_DIR [PORT_OFFSET]}
    dir=${3:?usage: backup-restore.sh restore FILE DATA_DIR [PORT_OFFSET]}
    offset=${4:-0}
    # shoal up's members: name and peer port (before the offset).
    members=(infra1:2380 infra2:22380 infra3:32380)
    cluster=""
    for m in "${members[@]}"; do
        cluster+="${cluster:+,}${m%%:*}=http://127.0.0.1:$((${m##*:} + offset))"
    done
    mkdir -p "$dir"
    for m in "${members[@]}"; do
        name=${m%%:*}
        "$shoalctl" snapshot restore "$file" --name "$name" --data-dir "$dir/$name" \
            --initial-cluster "$cluster" \
            --initial-advertise-peer-urls "http://127.0.0.1:$((${m##*:} + offset))" \
            --initial-cluster-token shoal-up
    done
    echo "restored; start it with: shoal up --data-dir $dir --port-offset $offset"
    ;;
*)
    sed -n '2,19p' "$here/backup-restore.sh" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
