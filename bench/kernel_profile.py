#!/usr/bin/env python3
"""Sums a cubecl kernel-profile log by kernel: how often each kernel ran and how much GPU
time it took, largest first.

cubecl writes one line per timed kernel, `| <duration> | <kernel name>`, when its profiling
logger is on (a `cubecl.toml` with `[profiling.logger] level = "basic"` and a `file`; see
bench/gpu_session.sh `profile`). Durations are Rust `Duration` debug strings (`12.5µs`,
`1.25ms`). Usage:

    bench/kernel_profile.py LOG [--steps N] [--top K] [--json OUT]

With `--steps`, per-step times are the totals divided by N.
"""
import argparse
import json
import re
import sys
from collections import defaultdict

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
LINE = re.compile(r"^\|\s*([0-9.]+)\s*(ns|µs|us|ms|s)\s*\|\s*(.+?)\s*$")


def parse(lines):
    """(name, milliseconds) for each timed kernel line; other lines (cubecl's own summary
    tables) are skipped."""
    for line in lines:
        match = LINE.match(line.strip())
        if match:
            value, unit, name = match.groups()
            yield name, float(value) * UNITS[unit]


def short(name):
    """A kernel name cut to its first and last parts: matmul names list every generic
    argument in between."""
    parts = name.split(" | ")
    return name if len(parts) <= 3 else f"{parts[0]} | … | {parts[-2]} | {parts[-1]}"


def summarise(records, steps):
    totals = defaultdict(lambda: [0, 0.0])
    for name, ms in records:
        totals[name][0] += 1
        totals[name][1] += ms
    whole = sum(t for _, t in totals.values()) or 1.0
    rows = [
        {
            "kernel": name,
            "launches": count,
            "total_ms": total,
            "ms_per_step": total / steps,
            "launches_per_step": count / steps,
            "share": total / whole,
        }
        for name, (count, total) in totals.items()
    ]
    rows.sort(key=lambda row: row["total_ms"], reverse=True)
    return rows, whole


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--steps", type=int, default=1, help="steps the log covers")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", help="write every row here as JSON")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    try:
        with open(args.log, encoding="utf-8", errors="replace") as log:
            rows, whole = summarise(parse(log), args.steps)
    except OSError as error:
        sys.exit(f"kernel_profile: cannot read {args.log}: {error}")
    if not rows:
        sys.exit(f"kernel_profile: no timed kernel lines in {args.log}")
    launches = sum(row["launches"] for row in rows)
    print(
        f"{whole / args.steps:.2f} ms of kernels per step, {launches / args.steps:.0f} launches "
        f"per step, {len(rows)} distinct kernels"
    )
    print(f"{'ms/step':>9} {'share':>6} {'launch/step':>11}  kernel")
    for row in rows[: args.top]:
        print(
            f"{row['ms_per_step']:9.3f} {row['share']:6.1%} {row['launches_per_step']:11.1f}  "
            f"{short(row['kernel'])[:150]}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"steps": args.steps, "rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
