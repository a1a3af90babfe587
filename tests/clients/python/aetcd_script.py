"""Drives the asyncio client `aetcd` through a fixed sequence against one
cluster and prints one line per answer, so that Shoal's answers can be
compared with etcd 3.4's line by line (tests/it/python_clients.rs).

    python aetcd_script.py HOST PORT

Lines hold what a user sees, never what differs between two clusters by
design (lease and member ids, raft terms).
"""

import asyncio
import json
import sys

import aetcd


async def main():
    host, port = sys.argv[1], int(sys.argv[2])
    lines = []

    def log(what, value):
        lines.append(f"{what}: {json.dumps(value, default=repr)}")

    async def outcome(call):
        try:
            return {"ok": await call}
        except Exception as e:  # the answer is the error's kind and text
            return {"error": f"{type(e).__name__}: {e}"}

    def kv(got):
        return None if got is None else [got.key.decode(), got.value.decode(), got.create_revision, got.mod_revision, got.version]

    async with aetcd.Client(host=host, port=port) as client:
        # KV
        put = await client.put(b"a", b"1")
        log("put a", put.header.revision)
        again = await client.put(b"a", b"2", prev_kv=True)
        log("put a, previous", kv(again.prev_kv))
        for k, v in [(b"p/1", b"x"), (b"p/2", b"y"), (b"p/3", b"z")]:
            await client.put(k, v)
        log("get a", kv(await client.get(b"a")))
        log("get missing", kv(await client.get(b"missing")))
        log("prefix", [kv(item) for item in await client.get_prefix(b"p/")])
        log("range p/1..p/3", [kv(item) for item in await client.get_range(b"p/1", b"p/3")])
        log("all", [item.key.decode() for item in await client.get_all()])
        log("replace matching", await client.replace(b"a", b"2", b"3"))
        log("replace stale", await client.replace(b"a", b"2", b"4"))
        tx = client.transactions
        done = await client.transaction(
            compare=[tx.value(b"a") == b"3", tx.version(b"p/1") > 0],
            success=[tx.put(b"t", b"1"), tx.get(b"a")],
            failure=[tx.put(b"f", b"1")],
        )
        log("transaction taken", done[0])
        not_taken = await client.transaction(compare=[tx.mod(b"a") < 2], success=[tx.put(b"t", b"2")], failure=[tx.delete(b"t")])
        log("transaction not taken", not_taken[0])
        log("t after both", kv(await client.get(b"t")))
        deleted = await client.delete(b"p/2", prev_kv=True)
        log("delete p/2", [deleted.deleted, kv(deleted.prev_kv)])
        log("delete prefix", (await client.delete_prefix(b"p/")).deleted)
        log("compact to 3", await outcome(client.compact(3)))
        log("compact to 3 again", await outcome(client.compact(3)))
        log("compact to a future revision", await outcome(client.compact(1000)))
        log("put an empty key", await outcome(client.put(b"", b"v")))

        # Watch
        revision = (await client.put(b"w/0", b"zero")).header.revision
        watch = await client.watch(b"w/", range_end=b"w0", prev_kv=True, start_revision=revision + 1)
        for k, v in [(b"w/1", b"one"), (b"w/1", b"uno")]:
            await client.put(k, v)
        await client.delete(b"w/0")
        seen = []

        async def drain(stream, into, n):
            async for event in stream:
                into.append([kind_of(event), event.kv.key.decode(), event.kv.value.decode(), event.prev_kv.value.decode() if event.prev_kv else None])
                if len(into) == n:
                    return

        await asyncio.wait_for(drain(watch, seen, 3), timeout=10)
        await watch.cancel()
        log("watched", seen)
        history = []
        resumed = await client.watch(b"w/", range_end=b"w0", start_revision=revision)
        await asyncio.wait_for(drain(resumed, history, 4), timeout=10)
        await resumed.cancel()
        log("watched from an earlier revision", history)
        log("watch_once from an earlier revision", await outcome(_once(client, revision)))

        # Leases
        lease = await client.lease(60)
        await client.put(b"leased", b"v", lease=lease)
        remaining = await lease.remaining_ttl()
        log("lease ttl within 60", 50 < remaining <= 60 and await lease.granted_ttl() == 60)
        keys = await lease.keys()
        log("lease keys", [k.decode() for k in keys])
        refreshed = await lease.refresh()
        log("refreshed ttl", refreshed.TTL)
        await lease.revoke()
        log("after revoke", kv(await client.get(b"leased")))
        log("revoke again", await outcome(lease.revoke()))
        log("put with an unknown lease", await outcome(client.put(b"x", b"1", lease=1234567)))

        # Locks
        lock = client.lock(b"l", ttl=30)
        await lock.acquire()
        log("locked", await lock.is_acquired())
        other = client.lock(b"l", ttl=30)
        waiting = asyncio.ensure_future(other.acquire())
        held_off = await outcome(asyncio.wait_for(asyncio.shield(waiting), timeout=1))
        log("second lock still waits after 1 s", "error" in held_off)
        await lock.release()
        await asyncio.wait_for(waiting, timeout=10)
        log("second lock after release", await other.is_acquired())
        await other.release()

        # Cluster
        status = await client.status()
        log("status version is set", bool(status.version))
        members = [m async for m in client.members()]
        log("every member has a name and URLs", all(m.name and m.peer_urls and m.client_urls for m in members))

    print("\n".join(lines))


def kind_of(event):
    kind = event.kind
    return getattr(kind, "name", str(kind))


async def _once(client, revision):
    event = await client.watch_once(b"w/1", timeout=10, start_revision=revision + 1)
    return [kind_of(event), event.kv.key.decode(), event.kv.value.decode()]


if __name__ == "__main__":
    asyncio.run(main())
