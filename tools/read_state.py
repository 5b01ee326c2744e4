#!/usr/bin/env python3
"""Print the tensors and config of an adadelta saved state (docs/state-format.md).

Needs numpy only: a safetensors file is an 8-byte little-endian header
length, a JSON header, then raw little-endian data. The checksum is
verified: version 1 covers the data, version 2 the whole file with its own
eight hex digits read as '0'. bfloat16 tensors are converted to float32
(numpy has no bfloat16: the 16 bits are a float32's upper half).
"""
import argparse
import json
import struct
import sys

import numpy as np

VERSION = "0.1.0"
DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
          "BF16": np.uint16}


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli), table-driven; fine for checkpoints of a few MB."""
    table = crc32c.table
    if table is None:
        table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            table.append(c)
        crc32c.table = table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


crc32c.table = None

KEY = b'"checksum":"'


def file_checksum(raw, header_end):
    """The version-2 checksum: CRC-32C of the file, its digits read as '0'."""
    header = raw[:header_end]
    if header.count(KEY) != 1:
        raise ValueError("the header must hold exactly one checksum entry")
    at = header.index(KEY) + len(KEY)
    return crc32c(raw[:at] + b"00000000" + raw[at + 8:])


# float32 values that were bfloat16 in the file (the dtype says so)
BF16_AS_F32 = np.dtype(np.float32, metadata={"stored": "bfloat16"})


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(BF16_AS_F32)


def dtype_label(arr):
    """numpy's name of the dtype; 'bfloat16' for converted bfloat16."""
    meta = arr.dtype.metadata or {}
    return meta.get("stored", str(arr.dtype))


def read_state(path, verify=True, max_check=64 << 20):
    """Returns (tensors: dict name -> numpy array, metadata: dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, desc in header.items():
        begin, end = desc["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=DTYPES[desc["dtype"]])
        if desc["dtype"] == "BF16":
            arr = bf16_to_f32(arr)
        tensors[name] = arr.reshape(desc["shape"])
    if verify and "checksum" in meta and len(raw) <= max_check:
        version = meta.get("version")
        got = "%08x" % (file_checksum(raw, 8 + n) if version == "2" else crc32c(data))
        if got != meta["checksum"]:
            raise ValueError(f"{path}: checksum {meta['checksum']} but the "
                             f"{'file' if version == '2' else 'data'} gives {got}")
    return tensors, meta


def main(argv):
    p = argparse.ArgumentParser(
        prog="read_state.py", description=__doc__.strip().split("\n")[0],
        epilog="Prints the format and version, the variables in order, the optimizer's "
               "Keras config, then one line per tensor (dtype, shape, min, max, mean).")
    p.add_argument("state", help="a file written by adadelta_save or the replay drivers")
    p.add_argument("--values", action="store_true", help="also print every tensor's values")
    p.add_argument("--no-verify", action="store_true", help="skip the checksum")
    p.add_argument("--version", action="version", version=f"read_state.py {VERSION}")
    a = p.parse_args(argv[1:])
    try:
        tensors, meta = read_state(a.state, verify=not a.no_verify)
    except (OSError, ValueError, KeyError, struct.error) as e:
        print(f"read_state.py: {e}", file=sys.stderr)
        return 3
    print(f"format {meta.get('format')} version {meta.get('version')}")
    print("variables", json.loads(meta.get("variables", "[]")))
    print("config", json.dumps(json.loads(meta.get("config", "{}")), sort_keys=False))
    for name, arr in tensors.items():
        line = f"{name} {dtype_label(arr)} {list(arr.shape)}"
        if arr.size:
            line += f" min {arr.min():.6g} max {arr.max():.6g} mean {arr.mean():.6g}"
        print(line)
        if a.values:
            print(arr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
