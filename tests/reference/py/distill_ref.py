#!/usr/bin/python3
"""Float64 PyTorch reference for one tb-distill step (the TinyBERT losses and student gradients).

Usage: distill_ref.py TEACHER_DIR STUDENT_DIR CHECK_DIR
  TEACHER_DIR, STUDENT_DIR: checkpoint folders (config.json + model.safetensors, Hugging Face names)
  CHECK_DIR: the output of `tb-distill --check`: losses.json (mode, weights, temperature) and
             grads.safetensors (input_ids, token_type_ids, attention_mask, labels of the batch, and
             "grad/<name>" for every parameter tb-distill trains in that mode)
Writes CHECK_DIR/ref.safetensors (f64): loss.att, loss.hidden, loss.emb, loss.pred, loss.total ([1]
each) and "grad/<name>" for every parameter of the student (the C test compares the trainable ones
and checks the frozen ones are absent from tb-distill's output).

The teacher's features are recomputed here from its checkpoint in float64: nothing of tb-emit or
tb-distill is used but the batch itself. Formulas: SPEC.md "Losses" (tbref.stage1_loss, soft_ce),
layer mapping student i <-> teacher i*k + k - 1 (attention), j <-> j*k (hidden), dropout off.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tbref  # noqa: E402

torch.set_default_dtype(torch.float64)

HEADS = {"none": "none", "relu": "tinybert", "hf": "hf"}


def load(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    cfg["head"] = HEADS[cfg.get("tinybert_head", "none")]
    cfg["mlm_head"] = 1 if cfg.get("tinybert_mlm_head", False) else 0
    cfg["fit_size"] = int(cfg.get("fit_size", 0) or 0)
    cfg.setdefault("layer_norm_eps", 1e-12)
    cfg.setdefault("pad_token_id", 0)
    tensors, _ = tbref.read_safetensors(os.path.join(d, "model.safetensors"))
    params = {n: torch.tensor(tensors[n].astype(np.float64), requires_grad=True) for n in tbref.param_names(cfg)}
    return tbref.TorchBert(cfg, params), params


def main(teacher_dir, student_dir, check_dir):
    with open(os.path.join(check_dir, "losses.json")) as f:
        run = json.load(f)
    batch, _ = tbref.read_safetensors(os.path.join(check_dir, "grads.safetensors"))
    ids = torch.from_numpy(batch["input_ids"].astype(np.int64))
    types = torch.from_numpy(batch["token_type_ids"].astype(np.int64))
    mask = torch.from_numpy(batch["attention_mask"].astype(np.int64))

    teacher, _ = load(teacher_dir)
    student, sp = load(student_dir)
    stage2 = run["mode"] == "task-stage2"
    with torch.no_grad():
        to = teacher.forward(ids, types, mask, logits=stage2)
    so = student.forward(ids, types, mask, logits=stage2)
    zero = torch.zeros(())
    att = hid = emb = pred = zero
    if stage2 and student.cfg.get("num_labels", 0) == 1:
        # regression: MSE of the single output against the gold value, not the teacher's
        gold = torch.from_numpy(batch["labels"].astype(np.float64))
        pred = tbref.mse(so["logits"][:, 0], gold)
        total = run["w_pred"] * pred
    elif stage2:
        pred = tbref.soft_ce(so["logits"], to["logits"], run["temperature"])
        total = run["w_pred"] * pred
    else:
        att, hid, emb = tbref.stage1_loss(student, teacher, so, to)
        total = run["w_att"] * att + run["w_hidden"] * hid
    names = list(sp)
    gs = torch.autograd.grad(total, [sp[n] for n in names], allow_unused=True)
    out = {f"loss.{k}": np.array([float(v)]) for k, v in
           (("att", att), ("hidden", hid), ("emb", emb), ("pred", pred), ("total", total))}
    for n, g in zip(names, gs):
        out["grad/" + n] = (g if g is not None else torch.zeros_like(sp[n])).detach().numpy()
    tbref.write_safetensors(os.path.join(check_dir, "ref.safetensors"), out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
