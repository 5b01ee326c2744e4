#!/usr/bin/python3
"""torch_checkpoint_bench.py - torch.save and torch.load of the tensors
adadelta-mpi-bench --checkpoint saves, against write() + fsync of the same
bytes, timed in the same process in alternating rounds.

    /usr/bin/python3 tools/torch_checkpoint_bench.py [--elements N]
        [--rounds K] [--dir D]

The state: a float32 variable of N elements and its four slots (Adadelta's
two accumulators, the EMA, the gradient accumulator), iterations and the
loss-scale counters, as one dict (what a PyTorch user saves with the
optimizer's state_dict). torch.save writes to an open file, which is then
flushed and fsync'ed, as adadelta_save does; torch.load reads it back
(weights_only=True) from the page cache, just written. Prints one JSON
line: torch_save_seconds, torch_load_seconds, dd_seconds (medians over the
rounds) and their MB/s.
"""

import argparse
import json
import os
import statistics
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--elements", type=int, default=1 << 24)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=".")
    return p.parse_args(argv)


def state(torch, n):
    g = torch.Generator().manual_seed(0)
    t = {name: torch.rand(n, generator=g, dtype=torch.float32)
         for name in ("dense/kernel", "accumulated_grad", "accumulated_delta_var",
                      "average", "gradient_accumulator")}
    t["iterations"] = torch.tensor(3, dtype=torch.int64)
    t["dynamic_scale"] = torch.tensor(32768.0)
    t["step_counter"] = torch.tensor(3, dtype=torch.int64)
    return t


def save(torch, obj, path):
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def dd(path, nbytes):
    block = bytes(16 << 20)
    with open(path, "wb", buffering=0) as f:
        done = 0
        while done < nbytes:
            done += f.write(block[:min(len(block), nbytes - done)])
        os.fsync(f.fileno())


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv):
    args = parse_args(argv)
    import torch
    torch.set_num_threads(1)
    obj = state(torch, args.elements)
    path = os.path.join(args.dir, "torch_bench_%d.pt" % os.getpid())
    dd_path = path + ".dd"
    save(torch, obj, path)  # warm
    torch.load(path, weights_only=True)
    nbytes = os.path.getsize(path)
    t_save, t_load, t_dd = [], [], []
    for r in range(args.rounds):
        if r % 2 == 0:
            t_dd.append(timed(lambda: dd(dd_path, nbytes)))
        t_save.append(timed(lambda: save(torch, obj, path)))
        t_load.append(timed(lambda: torch.load(path, weights_only=True)))
        if r % 2 == 1:
            t_dd.append(timed(lambda: dd(dd_path, nbytes)))
    for p in (path, dd_path):
        os.unlink(p)
    s, l, d = (statistics.median(x) for x in (t_save, t_load, t_dd))
    mb = nbytes / 1e6
    print(json.dumps({"path": "torch_checkpoint", "elements": args.elements,
                      "file_bytes": nbytes, "rounds": args.rounds,
                      "torch_save_seconds": round(s, 4), "torch_load_seconds": round(l, 4),
                      "dd_seconds": round(d, 4), "torch_save_mb_s": round(mb / s, 1),
                      "torch_load_mb_s": round(mb / l, 1), "dd_mb_s": round(mb / d, 1),
                      "torch_version": torch.__version__}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
