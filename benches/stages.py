#!/usr/bin/env python3
"""One point of benches/stages.sh as Markdown: Shoal's write stages beside
etcd's disk and network histograms, from /metrics scraped before and after.

    stages.py OUT POINT MEMBERS
"""

import json
import os
import re
import sys

out, point, members = sys.argv[1], sys.argv[2], int(sys.argv[3])
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(path):
    """{(name, labels without le): {"buckets": {le: n}, "sum": x, "count": n}}"""
    series = {}
    for line in open(path):
        m = SAMPLE.match(line.strip())
        if not m or line.startswith("#"):
            continue
        name, labels, value = m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                le = labels.pop("le", None)
                key = (base, tuple(sorted(labels.items())))
                entry = series.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
                if suffix == "_bucket":
                    entry["buckets"][float(le)] = value
                else:
                    entry[suffix[1:]] = value
                break
    return series


def proc(path):
    return {k: float(v) for k, v in (line.split() for line in open(path))}


def delta(system):
    """Histogram deltas summed over the members, and /proc deltas."""
    total, cpu_s, switches = {}, 0.0, 0.0
    for i in range(members):
        before = parse(f"{out}/{point}-{system}-m{i}.before.metrics")
        after = parse(f"{out}/{point}-{system}-m{i}.after.metrics")
        for key, a in after.items():
            b = before.get(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
            t = total.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
            for le, n in a["buckets"].items():
                t["buckets"][le] = t["buckets"].get(le, 0.0) + n - b["buckets"].get(le, 0.0)
            t["sum"] += a["sum"] - b["sum"]
            t["count"] += a["count"] - b["count"]
        pb, pa = proc(f"{out}/{point}-{system}-m{i}.before.proc"), proc(f"{out}/{point}-{system}-m{i}.after.proc")
        cpu_s += (pa["cpu_ticks"] - pb["cpu_ticks"]) / pa["ticks_per_second"]
        switches += pa["ctxt_switches"] - pb["ctxt_switches"]
    return total, cpu_s, switches


def quantile(h, q):
    """Linear interpolation inside the bucket that holds the q-quantile."""
    count = h["count"]
    if count <= 0:
        return None
    target, lower, seen = q * count, 0.0, 0.0
    for le in sorted(h["buckets"]):
        n = h["buckets"][le]
        if n >= target:
            if le == float("inf"):
                return lower
            width = n - seen
            return lower + (le - lower) * ((target - seen) / width if width else 1.0)
        lower, seen = le, n
    return lower


def ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


def row(label, h, writes):
    count = h["count"]
    if count <= 0:
        return None
    mean = h["sum"] / count
    per_write = f"{count / writes:.2f}" if writes else "-"
    return f"| {label} | {count:.0f} | {per_write} | {ms(mean)} | {ms(quantile(h, 0.5))} | {ms(quantile(h, 0.99))} |"


def report(system):
    path = f"{out}/put-{point}-{point.split('-c')[1]}-{system}.json"
    return json.load(open(path)) if os.path.exists(path) else None


clients = point.split("-c")[1]
print(f"### {members} member{'s' if members > 1 else ''}, {clients} client{'s' if clients != '1' else ''}\n")
summary = []
for system in ("etcd", "shoal"):
    r = report(system)
    _, cpu_s, switches = delta(system)
    if r and r["ops"]:
        summary.append(
            f"{system}: {r['ops_per_sec']:.0f} puts/s, mean {r['latency_ms']['mean']:.3f} ms, "
            f"p99 {r['latency_ms']['p99']:.2f} ms, {cpu_s * 1000 / r['ops']:.3f} ms CPU and "
            f"{switches / r['ops']:.1f} context switches per write"
        )
print("; ".join(summary) + ".\n")
print("Percentiles are interpolated inside histogram buckets: coarse for etcd's own histograms and Shoal's "
      "etcd-named ones, whose buckets start at 1 ms; their means are exact.\n")
print("| histogram | observations | per write | mean ms | p50 ms | p99 ms |")
print("|---|---:|---:|---:|---:|---:|")
shoal, _, _ = delta("shoal")
etcd, _, _ = delta("etcd")
shoal_writes = (report("shoal") or {}).get("ops", 0)
etcd_writes = (report("etcd") or {}).get("ops", 0)
order = ["queued", "proposed_to_appended", "appended_to_fsynced", "appended_to_committed", "committed_to_applied",
         "applied_to_answered", "total", "received_to_appended", "fsynced_to_answered", "forwarded",
         "forwarded_to_applied_here", "applied_here_before_answer"]
stages = {dict(labels).get("stage"): (dict(labels).get("role"), h)
          for (name, labels), h in shoal.items() if name == "shoal_write_stage_duration_seconds"}
rows = []
for stage in order:
    if stage in stages:
        role, h = stages[stage]
        rows.append(row(f"Shoal {role} {stage}", h, shoal_writes))
for name, label in [("etcd_disk_wal_fsync_duration_seconds", "Shoal log fsync"),
                    ("etcd_disk_backend_commit_duration_seconds", "Shoal state machine write"),
                    ("shoal_wal_fsync_batch_entries", "Shoal entries per fsync (not ms)"),
                    ("shoal_apply_batch_entries", "Shoal entries per apply (not ms)"),
                    ("shoal_entry_writes", "Shoal writes per entry (not ms)")]:
    h = shoal.get((name, ()))
    if h:
        r = row(label, h, shoal_writes)
        if r and "(not ms)" in label:
            # Counts, not durations: undo the milliseconds scaling.
            mean = h["sum"] / h["count"]
            r = f"| {label} | {h['count']:.0f} | {h['count'] / shoal_writes:.2f} | {mean:.2f} | " \
                f"{quantile(h, 0.5):.1f} | {quantile(h, 0.99):.1f} |" if shoal_writes else None
        rows.append(r)
for name, label in [("etcd_disk_wal_fsync_duration_seconds", "etcd WAL fsync"),
                    ("etcd_disk_backend_commit_duration_seconds", "etcd backend commit")]:
    h = etcd.get((name, ()))
    if h:
        rows.append(row(label, h, etcd_writes))
for system, data, writes in (("Shoal", shoal, shoal_writes), ("etcd", etcd, etcd_writes)):
    rtt = {"buckets": {}, "sum": 0.0, "count": 0.0}
    for (name, _), h in data.items():
        if name == "etcd_network_peer_round_trip_time_seconds":
            for le, n in h["buckets"].items():
                rtt["buckets"][le] = rtt["buckets"].get(le, 0.0) + n
            rtt["sum"] += h["sum"]
            rtt["count"] += h["count"]
    rows.append(row(f"{system} peer round trip", rtt, writes))
print("\n".join(r for r in rows if r))
print()
