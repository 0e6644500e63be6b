#!/usr/bin/python3
"""taskmetrics_ref.py OUT_DIR [MRPC_DEV SST2_DEV COLA_DEV] - reference values for tests/reference/test_taskmetrics_python.c.

Writes OUT_DIR/taskmetrics_cases.json: a list of cases, each
  {"name": str, "kind": "accuracy" | "acc_f1" | "mcc" | "corr", "labels": int,
   "logits": [[float32 ...] ...]  (classification: argmax gives the prediction)
   or "pred": [int ...] (classification) / [float32 ...] (regression),
   "gold": [...],
   "expect": {"accuracy": float, "f1": ..., "mcc": ..., "pearson": ..., "spearman": ... (null = NaN)}}
The expected values come from scikit-learn (accuracy_score, f1_score with pos_label=1 and
zero_division=0, matthews_corrcoef) and SciPy (pearsonr, spearmanr), never from tinybert-c.
Floats are float32 values written as exact decimal doubles, so C reads the same numbers.
With the three GLUE dev files (data/mrpc/dev.tsv, data/sst2/dev.tsv, data/cola/dev.tsv), cases on
their real labels are added: majority-class predictions on MRPC, SST-2 and CoLA dev, and CoLA dev with every fifth label flipped.
"""
import json
import os
import sys
import warnings

import numpy as np
import scipy.stats
import sklearn.metrics

warnings.simplefilter("ignore")  # constant-input warnings are expected in the degenerate cases
rng = np.random.default_rng(20261125)


def f32list(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def nan_to_none(v):
    v = float(v)
    return None if np.isnan(v) else v


def classification_expect(kind, pred, gold):
    e = {"accuracy": sklearn.metrics.accuracy_score(gold, pred)}
    if kind == "acc_f1":
        e["f1"] = sklearn.metrics.f1_score(gold, pred, pos_label=1, average="binary", zero_division=0)
    if kind == "mcc":
        e["mcc"] = sklearn.metrics.matthews_corrcoef(gold, pred)
    return {k: float(v) for k, v in e.items()}


def logits_case(name, kind, labels, n, skill, prior=None, ties=0):
    gold = rng.choice(labels, size=n, p=prior)
    logits = rng.normal(size=(n, labels)).astype(np.float32)
    logits[np.arange(n), gold] += np.float32(skill)
    # rows whose two largest logits are exactly equal: argmax must take the lower class id
    for i in rng.choice(n, size=ties, replace=False):
        top = np.argsort(-logits[i])[:2]
        logits[i, top.max()] = logits[i, top.min()]
    pred = np.argmax(logits, axis=1)  # numpy takes the first maximum
    return {"name": name, "kind": kind, "labels": labels, "logits": [f32list(r) for r in logits],
            "gold": [int(g) for g in gold], "expect": classification_expect(kind, pred, gold)}


def classes_case(name, kind, labels, pred, gold):
    pred, gold = np.asarray(pred), np.asarray(gold)
    return {"name": name, "kind": kind, "labels": labels, "pred": [int(p) for p in pred],
            "gold": [int(g) for g in gold], "expect": classification_expect(kind, pred, gold)}


def corr_case(name, pred, gold):
    pred = np.asarray(pred, dtype=np.float32).astype(np.float64)
    gold = np.asarray(gold, dtype=np.float32).astype(np.float64)
    p = scipy.stats.pearsonr(pred, gold)[0]
    s = scipy.stats.spearmanr(pred, gold)[0]
    return {"name": name, "kind": "corr", "labels": 1, "pred": f32list(pred), "gold": f32list(gold),
            "expect": {"pearson": nan_to_none(p), "spearman": nan_to_none(s)}}


def glue_labels(path, col, header):
    """Labels of a GLUE TSV (formats in data/README.md: MRPC starts with a BOM, CoLA has no header)."""
    with open(path, encoding="utf-8-sig") as f:
        rows = [line.split("\t") for line in f.read().split("\n") if line]
    return [int(r[col]) for r in rows[1 if header else 0:]]


def glue_cases(mrpc_dev, sst2_dev, cola_dev):
    mrpc = glue_labels(mrpc_dev, 0, True)
    sst2 = glue_labels(sst2_dev, -1, True)
    cola = glue_labels(cola_dev, 1, False)
    flipped = [1 - g if i % 5 == 0 else g for i, g in enumerate(cola)]
    return [
        classes_case("mrpc_dev_majority", "acc_f1", 2, [1] * len(mrpc), mrpc),
        classes_case("sst2_dev_majority", "accuracy", 2, [1] * len(sst2), sst2),
        classes_case("cola_dev_majority", "mcc", 2, [1] * len(cola), cola),
        classes_case("cola_dev_flipped", "mcc", 2, flipped, cola),
    ]


def main():
    if len(sys.argv) not in (2, 5):
        sys.exit("usage: taskmetrics_ref.py OUT_DIR [MRPC_DEV SST2_DEV COLA_DEV]")
    out = sys.argv[1]
    cases = [
        logits_case("mrpc_like", "acc_f1", 2, 873, 1.2, prior=[0.32, 0.68], ties=15),
        logits_case("qqp_like", "acc_f1", 2, 1500, 0.8, prior=[0.63, 0.37], ties=10),
        logits_case("cola_like", "mcc", 2, 1043, 0.9, prior=[0.3, 0.7], ties=10),
        logits_case("mnli_like", "mcc", 3, 2000, 1.0, ties=20),
        logits_case("mnli_accuracy", "accuracy", 3, 999, 0.7, ties=5),
        logits_case("sst2_like", "accuracy", 2, 872, 1.5, ties=5),
        classes_case("f1_nothing_positive", "acc_f1", 2, [0] * 50, [0] * 50),
        classes_case("f1_none_predicted", "acc_f1", 2, [0] * 50, [0] * 30 + [1] * 20),
        classes_case("f1_all_predicted", "acc_f1", 2, [1] * 50, [0] * 30 + [1] * 20),
        classes_case("mcc_constant_pred", "mcc", 2, [1] * 40, list(rng.integers(0, 2, 40))),
        classes_case("mcc_constant_gold", "mcc", 3, list(rng.integers(0, 3, 40)), [2] * 40),
    ]
    # STS-B-like: gold on a 0.2 grid in [0, 5] (many ties), predictions rounded to 0.05 (ties too)
    gold = np.round(rng.uniform(0, 5, 1500) * 5) / 5
    pred = np.round((gold + rng.normal(0, 0.9, 1500)) * 20) / 20
    cases.append(corr_case("stsb_like", pred, gold))
    # heavy ties on both sides: integer scores 0..5
    g = rng.integers(0, 6, 700)
    cases.append(corr_case("integer_scores", np.clip(g + rng.integers(-2, 3, 700), 0, 5), g))
    # anti-correlated, no ties
    x = rng.normal(size=300)
    cases.append(corr_case("anti", -x ** 3 + rng.normal(0, 0.1, 300), x))
    cases.append(corr_case("constant_gold", rng.normal(size=20), [3.0] * 20))
    if len(sys.argv) == 5:
        cases += glue_cases(*sys.argv[2:5])
    with open(os.path.join(out, "taskmetrics_cases.json"), "w") as f:
        json.dump(cases, f)


if __name__ == "__main__":
    main()
