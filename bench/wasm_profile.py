#!/usr/bin/env python3
"""Where a wasm module's code bytes go, by crate: reads the function bodies (code section)
and their names (the `name` custom section), demangles the names with `c++filt`, and sums
the body sizes by the first known path in each name.

    python3 bench/wasm_profile.py $CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/frontend.wasm

Use the module cargo writes (before wasm-bindgen and wasm-opt, which drop the names).
"""
import collections
import re
import subprocess
import sys

GROUPS = [
    "app::pages::", "app::widgets::", "app::runs", "app::classroom", "app::quiz", "app::",
    "run_protocol", "serde_json", "reactive_graph", "tachys", "leptos_router", "leptos_server",
    "server_fn", "leptos::", "wasm_bindgen", "web_sys", "js_sys", "core::fmt", "alloc::", "core::",
]


def leb128(data, pos):
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def main(path):
    data = open(path, "rb").read()
    pos, imported, names, bodies = 8, 0, {}, []
    while pos < len(data):
        section, pos = data[pos], pos + 1
        size, pos = leb128(data, pos)
        start, pos = pos, pos + size
        if section == 2:  # imports: functions among them take the first indices
            p = start
            count, p = leb128(data, p)
            for _ in range(count):
                for _ in range(2):
                    length, p = leb128(data, p)
                    p += length
                kind, p = data[p], p + 1
                if kind == 0:
                    _, p = leb128(data, p)
                    imported += 1
                elif kind == 1:
                    p += 1
                    flags, p = leb128(data, p)
                    _, p = leb128(data, p)
                    if flags & 1:
                        _, p = leb128(data, p)
                elif kind == 2:
                    flags, p = leb128(data, p)
                    _, p = leb128(data, p)
                    if flags & 1:
                        _, p = leb128(data, p)
                elif kind == 3:
                    p += 2
        elif section == 10:  # code
            p = start
            count, p = leb128(data, p)
            for i in range(count):
                length, p = leb128(data, p)
                bodies.append((imported + i, length))
                p += length
        elif section == 0:  # custom: the name section's function names
            p = start
            length, p = leb128(data, p)
            if data[p:p + length] != b"name":
                continue
            p += length
            while p < start + size:
                kind, p = data[p], p + 1
                length, p = leb128(data, p)
                if kind == 1:
                    q = p
                    count, q = leb128(data, q)
                    for _ in range(count):
                        index, q = leb128(data, q)
                        n, q = leb128(data, q)
                        names[index] = data[q:q + n].decode("utf8", "replace")
                        q += n
                p += length
    order = [index for index, _ in bodies]
    demangled = subprocess.run(
        ["c++filt"], input="\n".join(names.get(i, "?") for i in order), capture_output=True, text=True
    ).stdout.split("\n")
    by_group, count = collections.Counter(), collections.Counter()
    for (index, length), name in zip(bodies, demangled):
        group = next((g for g in GROUPS if g in name), re.split(r"::|\[|<", name.lstrip("<"))[0] or "?")
        by_group[group] += length
        count[group] += 1
    total = sum(by_group.values())
    print(f"{len(bodies)} functions, {total} bytes of code, {len(names)} named")
    for group, length in by_group.most_common(30):
        print(f"{length:10d} {100 * length / total:5.1f}% {count[group]:6d}  {group}")


if __name__ == "__main__":
    main(sys.argv[1])
