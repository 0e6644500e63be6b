#!/usr/bin/python3
"""sst2_compare.py - the PyTorch side of the SST-2 fine-tuning comparison (bench/finetune_sst2.sh).

Fine-tunes the checkpoint --init (a tb-finetune OUTPUT/step-0 folder: config.json +
model.safetensors, the exact starting point of the C run) on the batches of the message file
--train, in file order, one BertAdam update per batch, dropout off, then reports the dev accuracy
on --dev. The model is tests/reference/py/tbref.py's TorchBert (BERT from its formulas), in
float32 (float64 with --double); BertAdam as in the TinyBERT reference (per-tensor clipping 1.0,
no bias correction, eps 1e-6, decoupled weight decay except biases/LayerNorm, warmup_linear
evaluated before the step counter moves). Message files are read from docs/protocol.md section 6
(records of msgpack maps, tensors in the msgpack-numpy convention).

Prints one JSON line: {"impl":"torch","steps":..,"dev_accuracy":..,"final_loss":..,"seconds":..}
and writes it to --out when given.
"""
import argparse
import json
import os
import struct
import sys
import time

import msgpack
import msgpack_numpy
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "py"))
import tbref  # noqa: E402

B1, B2, EPS = 0.9, 0.999, 1e-6


def read_messages(path):
    """Yields the message maps of a tinybert-c message file."""
    with open(path, "rb") as f:
        head = f.read(16)
        if head[:8] != b"TBSTRM\r\n":
            raise ValueError(f"{path}: not a tinybert-c message file")
        while True:
            h = f.read(24)
            if len(h) < 24:
                raise ValueError(f"{path}: truncated (no end record)")
            marker, kind, length, _pcrc, _hcrc = struct.unpack("<IIQII", h)
            if marker != 0x31524254:
                raise ValueError(f"{path}: bad record marker")
            payload = f.read(length)
            if kind == 2:
                return
            yield msgpack.unpackb(payload, object_hook=msgpack_numpy.decode, raw=False)


def count_messages(path):
    n = 0
    with open(path, "rb") as f:
        f.read(16)
        while True:
            h = f.read(24)
            marker, kind, length, _p, _h = struct.unpack("<IIQII", h)
            if kind == 2:
                return n
            f.seek(length, 1)
            n += 1


def warmup_linear(step, t_total, warmup):
    x = step / t_total
    if x < warmup:
        return x / warmup
    return max((x - 1.0) / (warmup - 1.0), 0.0)


def model_config(path):
    with open(path) as f:
        c = json.load(f)
    c["head"] = {"relu": "tinybert", "hf": "hf", "none": "none"}[c.get("tinybert_head", "none")]
    c["mlm_head"] = 0
    c["fit_size"] = 0
    c.setdefault("layer_norm_eps", 1e-12)
    c.setdefault("pad_token_id", 0)
    return c


def batch_tensors(m):
    def t(k):
        return torch.from_numpy(np.asarray(m[k]).astype(np.int64))
    return t("input_ids"), t("token_type_ids"), t("attention_mask"), t("labels")


def evaluate(model, path):
    correct = total = 0
    with torch.no_grad():
        for m in read_messages(path):
            ids, types, mask, labels = batch_tensors(m)
            logits = model.forward(ids, types, mask, logits=True)["logits"]
            correct += int((logits.argmax(-1) == labels).sum())
            total += labels.shape[0]
    return correct / total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--double", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float64 if a.double else torch.float32
    cfg = model_config(os.path.join(a.init, "config.json"))
    weights, _ = tbref.read_safetensors(os.path.join(a.init, "model.safetensors"))
    names = tbref.param_names(cfg)
    params = {n: torch.tensor(weights[n], dtype=dtype, requires_grad=True) for n in names}
    mom = {n: torch.zeros_like(p) for n, p in params.items()}
    var = {n: torch.zeros_like(p) for n, p in params.items()}
    model = tbref.TorchBert(cfg, params)
    t_total = count_messages(a.train)
    if a.max_steps > 0:
        t_total = min(t_total, a.max_steps)
    t0 = time.time()
    step, loss_v = 0, float("nan")
    for m in read_messages(a.train):
        if step >= t_total:
            break
        ids, types, mask, labels = batch_tensors(m)
        logits = model.forward(ids, types, mask, logits=True)["logits"]
        loss = tbref.ce(logits, labels)
        loss_v = loss.item()
        gs = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        rate = a.lr * warmup_linear(step, t_total, a.warmup)
        with torch.no_grad():
            for n, g in zip(names, gs):
                p = params[n]
                g = torch.zeros_like(p) if g is None else g
                if a.max_grad_norm > 0:
                    coef = a.max_grad_norm / (float(g.norm()) + 1e-6)
                    if coef < 1:
                        g = g * coef
                mom[n].mul_(B1).add_(g, alpha=1 - B1)
                var[n].mul_(B2).addcmul_(g, g, value=1 - B2)
                update = mom[n] / (var[n].sqrt() + EPS)
                if not (n.endswith(".bias") or "LayerNorm" in n):
                    update = update + a.weight_decay * p
                p.add_(-rate * update)
        step += 1
    seconds = time.time() - t0
    acc = evaluate(model, a.dev)
    res = {"impl": "torch", "dtype": str(dtype).replace("torch.", ""), "steps": step, "dev_accuracy": acc,
           "final_loss": loss_v, "seconds": round(seconds, 1), "steps_per_s": round(step / max(seconds, 1e-9), 3)}
    line = json.dumps(res)
    print(line)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
