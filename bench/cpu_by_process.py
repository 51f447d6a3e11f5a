#!/usr/bin/env python3
"""CPU used by each process name, a line a second, while a process runs.

Usage: cpu_by_process.py PID NAME [NAME ...]
Prints, each second until PID exits: EPOCH_MS NAME=cores ... other=cores (cores: CPU
seconds a second over that second; "other" is every other process). The NAME
"generator" is PID itself (the load generator), apart from the rest of its name (its
own API processes). Read from /proc,
so processes that start or end within a second count from or until then.
Usage: cpu_by_process.py --mean FROM_MS TO_MS FILE: the mean of the lines in [FROM, TO].
"""
import os
import sys
import time


def snapshot(generator=None):
    ticks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = "generator" if pid == generator else stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[pid] = (name, int(fields[11]) + int(fields[12]))  # utime + stime
    return ticks


def sample(pid, names):
    hz = os.sysconf("SC_CLK_TCK")
    generator = pid if "generator" in names else None
    before, at = snapshot(generator), time.monotonic()
    while os.path.exists(f"/proc/{pid}"):
        time.sleep(1)
        after, now = snapshot(generator), time.monotonic()
        used = {n: 0 for n in names + ["other"]}
        for p, (name, t) in after.items():
            spent = t - before[p][1] if p in before else t
            used[name if name in names else "other"] += spent
        line = " ".join(f"{n}={used[n] / hz / (now - at):.3f}" for n in used)
        print(f"{int(time.time() * 1000)} {line}", flush=True)
        before, at = after, now


def mean(start, end, path):
    rows = []
    for line in open(path):
        ms, *pairs = line.split()
        if start <= int(ms) <= end:
            rows.append({k: float(v) for k, v in (p.split("=") for p in pairs)})
    if not rows:
        sys.exit(f"no samples between {start} and {end} in {path}")
    print(" ".join(f"{k}={sum(r[k] for r in rows) / len(rows):.3f}" for k in rows[0]))


if sys.argv[1] == "--mean":
    mean(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
else:
    sample(sys.argv[1], sys.argv[2:])
