"""Drives the `etcd3gw` client, which speaks only etcd's JSON gateway,
through a fixed sequence against one cluster and prints one line per answer,
so that Shoal's answers can be compared with etcd 3.4's line by line
(tests/it/python_clients.rs).

    python etcd3gw_script.py HOST PORT

Lines hold what a user sees, never what differs between two clusters by
design (lease and member ids, raft terms).
"""

import json
import sys
import threading

import etcd3gw


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    client = etcd3gw.client(host=host, port=port)
    lines = []

    def log(what, value):
        lines.append(f"{what}: {json.dumps(value, default=repr)}")

    def outcome(call):
        try:
            return {"ok": call()}
        except Exception as e:  # the answer is the error's kind and text
            return {"error": f"{type(e).__name__}: {e}"}

    def text(b):
        return b.decode() if isinstance(b, bytes) else b

    # KV
    log("put a", client.put("a", "1"))
    log("put a again", client.put("a", "2"))
    for k, v in [("p/1", "x"), ("p/2", "y"), ("p/3", "z")]:
        client.put(k, v)
    log("get a", [text(v) for v in client.get("a")])
    _, meta = client.get("a", metadata=True)[0]
    log("a's metadata", {k: meta[k] for k in ("create_revision", "mod_revision", "version")})
    log("get a at revision 1", [text(v) for v in client.get("a", revision=1)])
    log("get missing", client.get("missing"))
    log("prefix", [(text(v), text(m["key"])) for v, m in client.get_prefix("p/")])
    log("prefix by value descending", [text(v) for v, _ in client.get_prefix("p/", "descend", "value")])
    log("keys only, limit 2", [text(v) for v in client.get("p/", range_end="p0", keys_only=True, limit=2)])
    log("get_all", sorted(text(m["key"]) for _, m in client.get_all()))
    log("create when absent", client.create("c", "1"))
    log("create when present", client.create("c", "2"))
    log("replace matching", client.replace("c", "1", "3"))
    log("replace stale", client.replace("c", "1", "4"))
    log("c", [text(v) for v in client.get("c")])
    txn = {
        "compare": [{"key": "YQ==", "result": "EQUAL", "target": "VALUE", "value": "Mg=="}],
        "success": [{"request_put": {"key": "dA==", "value": "MQ=="}}, {"request_range": {"key": "YQ=="}}],
        "failure": [{"request_put": {"key": "Zg==", "value": "MQ=="}}],
    }
    answer = client.transaction(txn)
    log("transaction", [answer.get("succeeded"), [sorted(r.keys()) for r in answer.get("responses", [])]])
    log("delete p/2", client.delete("p/2"))
    log("delete missing", client.delete("missing"))
    log("delete prefix", client.delete_prefix("p/"))
    log("get a future revision", outcome(lambda: client.get("a", revision=1000)))
    log("put an empty key", outcome(lambda: client.put("", "v")))

    # Watch: a watcher on a thread of its own sees the puts that follow
    # (from the next revision on, however soon its stream is up).
    revision = int(client.status()["header"]["revision"])
    events, cancel = client.watch_prefix("w/", start_revision=revision + 1)
    seen = []

    def drain():
        for event in events:
            kv = event["kv"]
            seen.append([event.get("type", "PUT"), text(kv["key"]), text(kv.get("value", b""))])
            if len(seen) == 3:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    client.put("w/1", "one")
    client.put("w/2", "two")
    client.delete("w/1")
    reader.join(timeout=10)
    cancel()
    log("watched", seen)
    once = client.watch_once("w/2", timeout=10, start_revision=revision + 1)
    log("watch_once from an earlier revision", [text(once["kv"]["key"]), text(once["kv"]["value"])])

    # Leases
    lease = client.lease(60)
    client.put("leased", "v", lease=lease)
    log("leased key", [text(v) for v in client.get("leased")])
    log("lease ttl within 60", 50 < int(lease.ttl()) <= 60)
    log("lease keys", [text(k) for k in lease.keys()])
    log("refresh", int(lease.refresh()))
    log("revoke", lease.revoke())
    log("after revoke", client.get("leased"))
    log("revoked lease ttl", int(lease.ttl()))
    log("refresh a revoked lease", outcome(lambda: int(lease.refresh())))

    # Locks
    lock = client.lock("l", ttl=30)
    log("acquire", lock.acquire())
    log("is acquired", lock.is_acquired())
    other = client.lock("l", ttl=30)
    log("second acquire while held", other.acquire())
    log("release", lock.release())
    log("second acquire after release", other.acquire())
    log("release again", other.release())

    # Cluster
    status = client.status()
    # The fields etcd 3.4 answers with (later releases add more).
    fields = ("dbSize", "dbSizeInUse", "header", "leader", "raftIndex", "raftTerm", "version")
    log("status fields", [k for k in fields if k in status])
    members = client.members()
    log("every member has", sorted({k for m in members for k in m if k != "isLearner"}))

    print("\n".join(lines))


if __name__ == "__main__":
    main()
