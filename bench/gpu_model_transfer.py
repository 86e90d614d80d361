#!/usr/bin/env python3
"""Halves a safetensors checkpoint for a size-limited transfer, and restores it on arrival.

The lent GPU machines of this workplace take at most 64 MiB of files per call, and
all-MiniLM-L6-v2's fp32 weights are 87 MiB. `shrink` stores every F32 tensor as F16 (other
dtypes unchanged); `restore` widens every F16 tensor back to F32. The round trip rounds each
weight to 11 significant bits (relative error under 2^-11), which is far below what
fine-tuning changes; docs/benchmarks.md says which runs started from such weights.

    python3 bench/gpu_model_transfer.py shrink  model.safetensors small.safetensors
    python3 bench/gpu_model_transfer.py restore small.safetensors model.safetensors

Standard library only, so it runs with any python3.
"""
import array
import json
import struct
import sys

WIDTH = {"F16": 2, "F32": 4}


def read(path):
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        body = f.read()
    return header, body


def write(path, header, chunks):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for chunk in chunks:
            f.write(chunk)


def convert(src, dst, from_dtype, to_dtype):
    header, body = read(src)
    meta = header.pop("__metadata__", None)
    out_header, chunks, offset = {}, [], 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        start, end = info["data_offsets"]
        data = body[start:end]
        dtype = info["dtype"]
        if dtype == from_dtype:
            count = (end - start) // WIDTH[from_dtype]
            if from_dtype == "F32":
                values = array.array("f")
                values.frombytes(data)
                data = struct.pack(f"<{count}e", *values)
            else:
                values = struct.unpack(f"<{count}e", data)
                data = array.array("f", values).tobytes()
            dtype = to_dtype
        out_header[name] = {"dtype": dtype, "shape": info["shape"],
                            "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        chunks.append(data)
    if meta is not None:
        out_header["__metadata__"] = meta
    write(dst, out_header, chunks)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("shrink", "restore"):
        sys.exit(__doc__)
    verb, src, dst = sys.argv[1:]
    if verb == "shrink":
        convert(src, dst, "F32", "F16")
    else:
        convert(src, dst, "F16", "F32")


if __name__ == "__main__":
    main()
