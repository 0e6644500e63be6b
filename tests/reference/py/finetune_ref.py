#!/usr/bin/python3
"""finetune_ref.py DIR - float64 PyTorch reference of a few tb-finetune steps (dropout off).

Reads DIR/init/config.json + DIR/init/model.safetensors (the initial checkpoint, Hugging Face
names) and DIR/batches.safetensors, written by tests/reference/test_finetune_torch.c:
  b<k>.input_ids, b<k>.token_type_ids, b<k>.attention_mask  [B, T] i32
  b<k>.labels [B] i32 (classification), or b<k>.mlm_labels [B, T] i32 with the masked input in
  b<k>.input_ids (masked-LM); metadata: mode ("cls" | "mlm"), steps, lr, warmup, weight_decay.
Runs the steps: loss (cross-entropy on the classes, or on the masked positions), gradients by
autograd, then BertAdam written from the TinyBERT reference's optimization.py (per-tensor
clip_grad_norm_ to 1.0, no bias correction, eps 1e-6 outside the square root, decoupled weight
decay except biases and LayerNorm, warmup_linear evaluated before the step counter moves).
Writes DIR/ref_losses.txt (one loss per step, %.17g) and DIR/ref_final.safetensors (F64 weights).
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tbref  # noqa: E402

torch.set_default_dtype(torch.float64)
B1, B2, EPS, MAX_NORM = 0.9, 0.999, 1e-6, 1.0


def warmup_linear(step, t_total, warmup):
    x = step / t_total
    if x < warmup:
        return x / warmup
    return max((x - 1.0) / (warmup - 1.0), 0.0)


def model_config(path):
    with open(path) as f:
        c = json.load(f)
    c["head"] = {"relu": "tinybert", "hf": "hf", "none": "none"}[c.get("tinybert_head", "none")]
    c["mlm_head"] = 1 if c.get("tinybert_mlm_head") else 0
    c["fit_size"] = c.get("fit_size", 0) or 0
    c.setdefault("layer_norm_eps", 1e-12)
    c.setdefault("pad_token_id", 0)
    return c


def no_decay(name):
    return name.endswith(".bias") or "LayerNorm" in name


def main(d):
    cfg = model_config(os.path.join(d, "init", "config.json"))
    weights, _ = tbref.read_safetensors(os.path.join(d, "init", "model.safetensors"))
    batches, meta = tbref.read_safetensors(os.path.join(d, "batches.safetensors"))
    mode, steps = meta["mode"], int(meta["steps"])
    lr, warmup, wd = float(meta["lr"]), float(meta["warmup"]), float(meta["weight_decay"])
    names = tbref.param_names(cfg)
    params = {n: torch.tensor(weights[n].astype(np.float64), requires_grad=True) for n in names}
    m = {n: torch.zeros_like(p) for n, p in params.items()}
    v = {n: torch.zeros_like(p) for n, p in params.items()}
    model = tbref.TorchBert(cfg, params)
    losses = []
    for k in range(steps):
        def t(name):
            return torch.from_numpy(batches[f"b{k}.{name}"].astype(np.int64))
        ids, types, mask = t("input_ids"), t("token_type_ids"), t("attention_mask")
        if mode == "mlm":
            out = model.forward(ids, types, mask, mlm=True)
            loss = tbref.ce(out["mlm_logits"].reshape(-1, cfg["vocab_size"]), t("mlm_labels").reshape(-1))
        else:
            out = model.forward(ids, types, mask, logits=True)
            loss = tbref.ce(out["logits"], t("labels"))
        losses.append(loss.item())
        gs = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        rate = lr * warmup_linear(k, steps, warmup)
        with torch.no_grad():
            for n, g in zip(names, gs):
                p = params[n]
                g = torch.zeros_like(p) if g is None else g.clone()
                norm = g.norm()
                coef = MAX_NORM / (norm + 1e-6)
                if coef < 1:
                    g = g * coef
                m[n].mul_(B1).add_(g, alpha=1 - B1)
                v[n].mul_(B2).addcmul_(g, g, value=1 - B2)
                update = m[n] / (v[n].sqrt() + EPS)
                if not no_decay(n):
                    update = update + wd * p
                p.add_(-rate * update)
    with open(os.path.join(d, "ref_losses.txt"), "w") as f:
        for x in losses:
            f.write("%.17g\n" % x)
    tbref.write_safetensors(os.path.join(d, "ref_final.safetensors"),
                            {n: params[n].detach().numpy() for n in names})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
