#!/usr/bin/python3
"""optim_ref.py OUT_DIR - the BertAdam reference for tests/reference/test_optim_torch.c.

Writes OUT_DIR/optim_case.safetensors holding, for a small parameter table:
  init.<name>            the initial values (F32)
  grad.<step>.<name>     the gradient fed at each step 0..STEPS-1 (F32; norms above and below 1)
  ref.<step>.<name>      the weights after that step, from a float64 torch run (F64)
  lr.<step>              the learning rate used at that step (F64 scalar)
and "__metadata__" with the hyper-parameters. The optimiser below is written from the reference's
formulas (huawei-noah/Pretrained-Language-Model TinyBERT/transformer/optimization.py, BertAdam
with WarmupLinearSchedule), using torch.nn.utils.clip_grad_norm_ per tensor as the reference does.
"""
import importlib.machinery
import importlib.util
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_loader(
    "check_safetensors",
    importlib.machinery.SourceFileLoader("check_safetensors", os.path.join(HERE, "..", "..", "..", "scripts", "check-safetensors")))
st = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(st)

STEPS = 20
LR, B1, B2, EPS, WD, MAX_NORM, WARMUP, T_TOTAL = 1e-2, 0.9, 0.999, 1e-6, 0.01, 1.0, 0.1, 20

# name, shape, no_decay, trainable
TABLE = [
    ("bert.encoder.layer.0.attention.self.query.weight", (8, 16), 0, 1),
    ("bert.encoder.layer.0.attention.self.query.bias", (8,), 1, 1),
    ("bert.encoder.layer.0.output.LayerNorm.weight", (16,), 1, 1),
    ("classifier.weight", (3, 16), 0, 0),
    ("fit_dense.weight", (24, 16), 0, 1),
]


def warmup_linear(step):
    x = step / T_TOTAL
    if x < WARMUP:
        return x / WARMUP
    return max((x - 1.0) / (WARMUP - 1.0), 0.0)


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(20240611)
    init = {n: rng.standard_normal(s).astype(np.float32) for n, s, _, _ in TABLE}
    grads = []
    for step in range(STEPS):
        g = {}
        for i, (n, s, _, _) in enumerate(TABLE):
            # alternate small (no clipping) and large (clipped) gradient norms
            scale = 0.02 if (step + i) % 3 == 0 else 0.8
            g[n] = (rng.standard_normal(s) * scale).astype(np.float32)
        grads.append(g)

    params = {n: torch.tensor(init[n], dtype=torch.float64) for n, _, _, _ in TABLE}
    m = {n: torch.zeros_like(p) for n, p in params.items()}
    v = {n: torch.zeros_like(p) for n, p in params.items()}
    refs, lrs = [], []
    for step in range(STEPS):
        lr = LR * warmup_linear(step)
        lrs.append(lr)
        for n, _, no_decay, trainable in TABLE:
            if not trainable:
                continue
            p = params[n]
            p.grad = torch.tensor(grads[step][n], dtype=torch.float64)
            torch.nn.utils.clip_grad_norm_(p, MAX_NORM)
            g = p.grad
            m[n].mul_(B1).add_(g, alpha=1 - B1)
            v[n].mul_(B2).addcmul_(g, g, value=1 - B2)
            update = m[n] / (v[n].sqrt() + EPS)
            if not no_decay:
                update = update + WD * p.data
            p.data.add_(-lr * update)
        refs.append({n: params[n].detach().numpy().copy() for n in params})

    tensors = []
    for n, s, _, _ in TABLE:
        tensors.append((f"init.{n}", "F32", list(s), init[n].tobytes()))
    for step in range(STEPS):
        for n, s, _, _ in TABLE:
            tensors.append((f"grad.{step}.{n}", "F32", list(s), grads[step][n].tobytes()))
        for n, s, _, _ in TABLE:
            tensors.append((f"ref.{step}.{n}", "F64", list(s), refs[step][n].astype("<f8").tobytes()))
        tensors.append((f"lr.{step}", "F64", [], np.float64(lrs[step]).tobytes()))
    meta = {"lr": repr(LR), "warmup": repr(WARMUP), "t_total": str(T_TOTAL), "steps": str(STEPS)}
    st.write_safetensors(os.path.join(out, "optim_case.safetensors"), tensors, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
