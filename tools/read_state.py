#!/usr/bin/env python3
"""Print the tensors and config of an adadelta saved state (state-format.md).

Needs numpy only: a safetensors file is an 8-byte little-endian header
length, a JSON header, then raw little-endian data.

    python3 tools/read_state.py checkpoint.safetensors [--values]
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def crc32c(data):
    """CRC-32C (Castagnoli), bitwise; fine for checkpoints of a few MB."""
    table = crc32c.table
    if table is None:
        table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            table.append(c)
        crc32c.table = table
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


crc32c.table = None


def read_state(path):
    """Returns (tensors: dict name -> numpy array, metadata: dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, desc in header.items():
        begin, end = desc["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=DTYPES[desc["dtype"]])
        tensors[name] = arr.reshape(desc["shape"])
    if "checksum" in meta and len(data) <= 64 << 20:
        got = "%08x" % crc32c(data)
        if got != meta["checksum"]:
            raise ValueError(f"{path}: checksum {meta['checksum']} but data gives {got}")
    return tensors, meta


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip())
        return 2
    tensors, meta = read_state(argv[1])
    print(f"format {meta.get('format')} version {meta.get('version')}")
    print("variables", json.loads(meta.get("variables", "[]")))
    print("config", json.dumps(json.loads(meta.get("config", "{}")), sort_keys=False))
    for name, arr in tensors.items():
        line = f"{name} {arr.dtype} {list(arr.shape)}"
        if arr.size:
            line += f" min {arr.min():.6g} max {arr.max():.6g} mean {arr.mean():.6g}"
        print(line)
        if "--values" in argv:
            print(arr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
