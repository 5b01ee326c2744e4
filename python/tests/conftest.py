"""Shared fixtures of the adadelta package tests (run by run_pytest.sh and
run_mpi.sh from `make check`, or by hand: see run_pytest.sh)."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
TOP = os.path.dirname(os.path.dirname(HERE))

DATA = os.environ.get("ADADELTA_TEST_DATA", os.path.join(TOP, "tests", "data"))
REPLAY = os.environ.get("ADADELTA_REPLAY", os.path.join(TOP, "tools", "adadelta-replay"))
DIGITS = os.environ.get("ADADELTA_DIGITS", os.path.join(TOP, "examples", "data", "digits.csv.gz"))
EXAMPLES = os.path.dirname(DIGITS) if os.path.isdir(os.path.dirname(DIGITS)) else None


def case_dirs():
    """Every conformance case folder (tests/data/keras/*, tests/data/torch/*,
    the float64, float16 and bfloat16 (and mixed) tests/data/f64/*, f16/*,
    bf16/*)."""
    out = []
    for suite in ("keras", "torch", "f64", "f16", "bf16"):
        d = os.path.join(DATA, suite)
        if os.path.isdir(d):
            out += [os.path.join(d, c) for c in sorted(os.listdir(d))
                    if os.path.isfile(os.path.join(d, c, "case.json"))]
    return out


def load_case(d):
    """(case.json, config.json) of a case folder."""
    with open(os.path.join(d, "case.json")) as f:
        case = json.load(f)
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    return case, config


def run_replay(d, out, threads=None):
    """tools/adadelta-replay on a case folder, writing `out`."""
    if not os.access(REPLAY, os.X_OK):
        pytest.skip("no replay driver at %s (set ADADELTA_REPLAY)" % REPLAY)
    case, _ = load_case(d)
    args = [REPLAY, "--params", os.path.join(d, "params.safetensors"),
            "--grads", os.path.join(d, "grads.safetensors"),
            "--config", os.path.join(d, "config.json"), "--out", out]
    if threads:
        args += ["--threads", str(threads)]
    if case.get("finalize"):
        args.append("--finalize")
    if case.get("exclude_from_weight_decay"):
        args += ["--exclude-from-weight-decay", ",".join(case["exclude_from_weight_decay"])]
    subprocess.run(args, check=True, stderr=subprocess.PIPE)
