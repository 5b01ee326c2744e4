"""A tiny safetensors reader for the tests: the JSON header and numpy
views of the tensors, in the order of their data (as the C reader sorts
them)."""

import json
import struct

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
          "BF16": np.uint16, "U8": np.uint8}


def read(path):
    """(metadata dict, {name: array}) with the names in data order."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = memoryview(blob)[8 + n:]
    tensors = {}
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = t["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
        tensors[name] = arr
    return meta, tensors
