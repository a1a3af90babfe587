#!/usr/bin/env bash
# Watch-driven automation with any etcd client (here etcdctl): every name
# put under /greetings/ gets an answer under /replies/, and a deleted
# greeting takes its answer with it. It first answers what is already
# there, then watches from exactly the revision it read, so a change made
# between the two is never missed.
#
#   examples/greeter.sh [ENDPOINTS]    (default: $ENDPOINTS, else http://127.0.0.1:2379)
#   etcdctl put /greetings/ada Ada; etcdctl get /replies/ada    # hello, Ada
set -euo pipefail
endpoints=${1:-${ENDPOINTS:-http://127.0.0.1:2379}}
export ETCDCTL_API=3
ctl() { etcdctl --endpoints="$endpoints" "$@"; }

answer() {
    ctl put "/replies/$1" "hello, $2" >/dev/null
    echo "answered $1"
}

# The store's revision now: the listing is read at it, the watch starts after it.
rev=$(ctl get /greetings/ --prefix --keys-only -w json | grep -o '"revision":[0-9]*' | head -1 | cut -d: -f2)
while read -r key && read -r value; do
    answer "${key#/greetings/}" "$value"
done < <(ctl get /greetings/ --prefix --rev="$rev")
echo "watching /greetings/ from revision $((rev + 1))"

# etcdctl prints each event as three lines: PUT or DELETE, the key, the
# value (so values here are single lines; `-w json` would take any).
ctl watch /greetings/ --prefix --rev=$((rev + 1)) | while read -r event && read -r key && read -r value; do
    name=${key#/greetings/}
    case "$event" in
    PUT) answer "$name" "$value" ;;
    DELETE)
        ctl del "/replies/$name" >/dev/null
        echo "forgot $name"
        ;;
    esac
done
