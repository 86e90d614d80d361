#!/usr/bin/env python3
"""Reads the report of `cargo build --timings` and says where a build's time went.

    python3 bench/build_timings.py TARGET_DIR/cargo-timings/cargo-timing.html [CRATES...]

Prints the build's wall time, the CPU-seconds of its units (each unit's duration; a unit
can use more than one core while LLVM generates code, so this is a lower bound), the time
when fewer units ran than there are cores, the slowest units, and, when crate names are
given, the summed duration of those crates' units (for example the crates that a feature
alone brings in).
"""

import json
import re
import sys
from collections import defaultdict


def units(report: str) -> list[dict]:
    """The UNIT_DATA array cargo embeds in its timings HTML."""
    match = re.search(r"const UNIT_DATA = (\[.*?\]);\n", report, re.S)
    if not match:
        sys.exit("no UNIT_DATA in the report: is it cargo's --timings HTML?")
    return json.loads(match.group(1))


def under_used(data: list[dict], cores: int) -> float:
    """Seconds during which fewer than `cores` units were running."""
    edges = []
    for unit in data:
        edges.append((unit["start"], 1))
        edges.append((unit["start"] + unit["duration"], -1))
    edges.sort()
    running, last, idle = 0, 0.0, 0.0
    for time, change in edges:
        if running < cores:
            idle += time - last
        running += change
        last = time
    return idle


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    report = open(sys.argv[1], encoding="utf-8").read()
    data = units(report)
    cores_match = re.search(r"<td>Max \(global\) jobs:</td><td>(\d+)", report)
    cores = int(cores_match.group(1)) if cores_match else 2
    wall = max(u["start"] + u["duration"] for u in data)
    by_crate: dict[str, float] = defaultdict(float)
    for unit in data:
        by_crate[unit["name"]] += unit["duration"]
    total = sum(by_crate.values())
    print(f"units: {len(data)}, crates: {len(by_crate)}, jobs: {cores}")
    print(f"wall: {wall:.0f} s; unit time: {total:.0f} s")
    print(f"fewer than {cores} units running: {under_used(data, cores):.0f} s")
    print("slowest crates (all their units):")
    for name, seconds in sorted(by_crate.items(), key=lambda kv: -kv[1])[:30]:
        print(f"  {seconds:7.1f} s  {name}")
    wanted = set(sys.argv[2:])
    if wanted:
        chosen = sum(s for n, s in by_crate.items() if n in wanted)
        missing = sorted(wanted - set(by_crate))
        print(f"the {len(wanted)} named crates: {chosen:.0f} s of unit time")
        if missing:
            print(f"  not in this build: {' '.join(missing)}")


if __name__ == "__main__":
    main()
