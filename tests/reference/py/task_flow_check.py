"""Checks tb-eval's metrics of a task against scikit-learn / SciPy, from the predictions TSV it
wrote and the gold labels read here from the task's own dev file (independently of tinybert-c's
readers).

    task_flow_check.py TASK DEV_FILE PREDICTIONS_TSV EVAL_JSON

TASK: mrpc (accuracy, F1 of class 1, their mean as the main metric), sts-b (Pearson, Spearman,
their mean; within 1e-6: the predictions are the exact floats) or simple (accuracy). Exit 0 when every
value agrees, 1 with the differences on stderr.
"""
import json
import sys

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score


def gold_of(task, path):
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().split("\n")
    if task in ("mrpc", "sts-b"):
        lines = lines[1:]  # the header
    rows = [l.rstrip("\r").split("\t") for l in lines if l.strip()]
    if task == "mrpc":
        return [int(r[0]) for r in rows]
    if task == "sts-b":
        return [float(r[-1]) for r in rows]
    return [int(r[-1]) for r in rows]


def predictions_of(path, regression):
    with open(path) as f:
        lines = f.read().split("\n")
    assert lines[0] == "index\tprediction", lines[0]
    out = {}
    for l in lines[1:]:
        if l:
            i, p = l.split("\t")
            out[int(i)] = float(p) if regression else int(p)
    return [out[i] for i in range(len(out))]


def main(task, dev, pred_path, json_path):
    regression = task == "sts-b"
    gold = gold_of(task, dev)
    pred = predictions_of(pred_path, regression)
    if len(pred) != len(gold):
        sys.exit("%d predictions for %d dev rows" % (len(pred), len(gold)))
    with open(json_path) as f:
        got = json.loads(f.readline())
    want, tol = {}, 1e-9
    if regression:
        p, s = pearsonr(pred, gold)[0], spearmanr(pred, gold)[0]
        want = {"pearson": p, "spearman": s, "corr": (p + s) / 2, "main": "corr"}
        tol = 1e-6  # the predictions are the floats exactly (%.9g); the sums run in double on both sides
    else:
        want = {"accuracy": accuracy_score(gold, pred), "main": "accuracy"}
        if task == "mrpc":
            f1 = f1_score(gold, pred, pos_label=1, zero_division=0)
            want.update({"f1": f1, "acc_and_f1": (want["accuracy"] + f1) / 2, "main": "acc_and_f1"})
    bad = []
    for k, v in want.items():
        if k == "main":
            if got.get("main") != v:
                bad.append("main: %r, want %r" % (got.get("main"), v))
        elif got.get(k) is None or not np.isfinite(got[k]) or not np.isfinite(v) or abs(got[k] - v) > tol:
            bad.append("%s: %r, want %r" % (k, got.get(k), v))
    if got.get("examples") != len(gold):
        bad.append("examples: %r, want %d" % (got.get("examples"), len(gold)))
    if bad:
        sys.exit("%s: %s" % (task, "; ".join(bad)))
    sys.stderr.write("%s: %s agree with scikit-learn / SciPy over %d rows\n"
                     % (task, ", ".join(k for k in want if k != "main"), len(gold)))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
