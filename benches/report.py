#!/usr/bin/env python3
"""Turns the JSON files of one benches/compare.sh run into benches/RESULTS.md."""

import glob
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import date

out, duration, command = sys.argv[1], sys.argv[2], sys.argv[3]


def load(pattern):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, pattern)))]


def first_line(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def mem_gib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            return int(line.split()[1]) / 1024 / 1024
    return 0


def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"


print("# Benchmark results: Shoal and etcd 3.4, side by side\n")
print(f"- Date: {date.today().isoformat()}")
print(f"- Machine: {os.cpu_count()} cores ({cpu()}), {mem_gib():.0f} GiB RAM, {platform.system()} {platform.release()}")
shoal = os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/shoal-target"), "release", "shoal")
print(f"- Shoal: `{first_line([shoal, '--version'])}` (release build); etcd: `{first_line(['etcd', '--version'])}`")
print("- Topology: two 3-member clusters on loopback, same disk, fsync on, default heartbeat (100 ms) "
      "and election timeout (1000 ms), both running during the whole run; runs alternate between them.")
print(f"- Command: `{command}` ({duration} per point; `shoal-bench --conns min(clients, 16)`, "
      "8-byte keys, 256-byte incompressible values, 100,000-key space).\n")

print("## Throughput and latency\n")
print("Ratios are Shoal/etcd: above 1 means Shoal does more operations per second; "
      "for latency, below 1 means Shoal is faster.\n")
print("| workload | clients | etcd ops/s | Shoal ops/s | ops ratio | etcd p50 ms | Shoal p50 ms | etcd p99 ms | Shoal p99 ms | p99 ratio | errors (etcd/Shoal) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
points = {}
for r in load("*-*-*.json"):
    if r.get("workload") is None or r.get("unavailable_ms") is not None:
        continue
    points.setdefault((r["workload"], r["clients"]), {})[r["label"]] = r
order = ["put", "range-linear", "range-serial", "txn-put", "lease-keepalive", "watch-100w"]
for (workload, clients) in sorted(points, key=lambda k: (order.index(k[0]) if k[0] in order else 99, k[1])):
    e, s = points[(workload, clients)].get("etcd"), points[(workload, clients)].get("shoal")
    if not e or not s:
        continue
    el, sl = e["latency_ms"], s["latency_ms"]
    print(f"| {workload} | {clients} | {e['ops_per_sec']:.0f} | {s['ops_per_sec']:.0f} | {ratio(s['ops_per_sec'], e['ops_per_sec'])} "
          f"| {el['p50']:.2f} | {sl['p50']:.2f} | {el['p99']:.2f} | {sl['p99']:.2f} | {ratio(sl['p99'], el['p99'])} "
          f"| {e['errors']}/{s['errors']} |")
print("\nFor `watch-100w`, ops/s are events delivered per second to 100 watchers on one member, and the latency "
      "is from a write's acknowledgement to its delivery.\n")

print("## etcdctl check perf\n")
print("| load | etcd | Shoal |")
print("|---|---|---|")
for load_name in ["s", "m", "l"]:
    cells = []
    for sysname in ["etcd", "shoal"]:
        path = os.path.join(out, f"checkperf-{load_name}-{sysname}.txt")
        cells.append("<br>".join(open(path).read().split("\n")).strip("<br>") if os.path.exists(path) else "not run")
    if cells != ["not run", "not run"]:
        print(f"| {load_name} | {cells[0]} | {cells[1]} |")

print("\n## Memory\n")
print("Resident memory of the largest member after loading the keys (256-byte values, 16-byte keys).\n")
print("| keys | etcd RSS MiB | Shoal RSS MiB | Shoal/etcd |")
print("|---:|---:|---:|---:|")
mem = {}
for m in load("memory-*.json"):
    mem.setdefault(m["keys"], {})[m["system"]] = m["rss_kib"]
for keys in sorted(mem):
    e, s = mem[keys].get("etcd", 0), mem[keys].get("shoal", 0)
    print(f"| {keys:,} | {e / 1024:.0f} | {s / 1024:.0f} | {ratio(s, e)} |")

print("\n## Failover\n")
print("Write-unavailability window after `kill -9` of the leader: from the kill to the first write acknowledged "
      "after it, one client writing continuously and moving to another member on failure.\n")
print("| system | runs (ms) | median ms |")
print("|---|---|---:|")
medians = {}
for sysname in ["etcd", "shoal"]:
    runs = [r["unavailable_ms"] for r in load(f"failover-*-{sysname}.json") if r.get("unavailable_ms") is not None]
    if runs:
        medians[sysname] = statistics.median(runs)
        print(f"| {sysname} | {', '.join(f'{x:.0f}' for x in runs)} | {medians[sysname]:.0f} |")
if len(medians) == 2:
    print(f"\nShoal/etcd median ratio: {ratio(medians['shoal'], medians['etcd'])}")
