"""Compares two feature-message files (tb-emit's and tb-torch-emit's) and two tb-distill metrics
files: tests/integration/test_python_stages.c.

    compare_features.py features A.tbm B.tbm RTOL   same messages, same fields; tensors within RTOL
                                                    relative (max |a - b| / max |b| per tensor),
                                                    everything else equal
    compare_features.py losses A.jsonl B.jsonl N RTOL   the first N "step" losses agree within RTOL
Exit 0 when they agree; every difference on stderr otherwise.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from tinybert_stage import EndOfStream, Reader  # noqa: E402


def read_all(path):
    r = Reader(path)
    out = []
    while True:
        try:
            out.append(r.read())
        except EndOfStream:
            return out


def features(a_path, b_path, rtol):
    rtol = float(rtol)
    a, b = read_all(a_path), read_all(b_path)
    problems = []
    if len(a) != len(b):
        problems.append("%d messages vs %d" % (len(a), len(b)))
    worst = 0.0
    for i, (ma, mb) in enumerate(zip(a, b)):
        if set(ma) != set(mb):
            problems.append("message %d: fields differ: %s" % (i, sorted(set(ma) ^ set(mb))))
        for k in sorted(set(ma) & set(mb)):
            va, vb = ma[k], mb[k]
            if isinstance(va, np.ndarray) and va.dtype.kind == "f":
                if va.dtype != vb.dtype or va.shape != vb.shape:
                    problems.append("message %d %s: %s%s vs %s%s" % (i, k, va.dtype, va.shape, vb.dtype, vb.shape))
                    continue
                scale = float(np.max(np.abs(vb.astype(np.float64)))) or 1.0
                err = float(np.max(np.abs(va.astype(np.float64) - vb.astype(np.float64)))) / scale
                worst = max(worst, err)
                if err > rtol:
                    problems.append("message %d %s: relative difference %.3g > %g" % (i, k, err, rtol))
            elif isinstance(va, np.ndarray):
                if va.dtype != vb.dtype or not np.array_equal(va, vb):
                    problems.append("message %d %s: differs" % (i, k))
            elif va != vb:
                problems.append("message %d %s: %r vs %r" % (i, k, va, vb))
    sys.stderr.write("features: %d messages, largest relative difference %.3g\n" % (len(a), worst))
    return problems


def losses(a_path, b_path, n, rtol):
    n, rtol = int(n), float(rtol)

    def steps(path):
        return [json.loads(line)["loss"] for line in open(path) if '"event":"step"' in line]
    a, b = steps(a_path)[:n], steps(b_path)[:n]
    problems = []
    if len(a) < n or len(b) < n:
        problems.append("only %d and %d step losses, need %d" % (len(a), len(b), n))
    worst = 0.0
    for i, (x, y) in enumerate(zip(a, b)):
        err = abs(x - y) / max(abs(y), 1e-30)
        worst = max(worst, err)
        if err > rtol:
            problems.append("step %d: loss %.9g vs %.9g (relative %.3g > %g)" % (i + 1, x, y, err, rtol))
    sys.stderr.write("losses: %d steps, largest relative difference %.3g\n" % (min(len(a), len(b)), worst))
    return problems


if __name__ == "__main__":
    probs = {"features": features, "losses": losses}[sys.argv[1]](*sys.argv[2:])
    for p in probs:
        sys.stderr.write(p + "\n")
    sys.exit(1 if probs else 0)
