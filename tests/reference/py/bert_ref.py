#!/usr/bin/python3
"""Float64 PyTorch reference for the whole BERT model of tinybert-c (tb/model/bert.h) and its losses.

Usage: bert_ref.py DIR
Reads DIR/in.safetensors, written by tests/reference/test_bert_torch.c:
  metadata "configs": JSON {"teacher": cfg, "student": cfg, "sreg": cfg}
  "<model>/<Hugging Face parameter name>" f32 for each model,
  input_ids, token_type_ids, attention_mask [B, T] i32, labels [B] i32, mlm_labels [B, T] i32,
  gold [B] f32.
Writes DIR/out.safetensors (f64) with, for dropout off:
  teacher.hidden.<j>, teacher.scores.<l>, teacher.pooled, teacher.logits, teacher.mlm_logits,
  student.hidden.<j>, student.scores.<l>, student.logits, sreg.logits,
  loss.teacher.ce, loss.teacher.mlm   (fine-tuning CE on labels + MLM CE), grad.teacher_ft/<name>
  loss.s1.att, loss.s1.hidden, loss.s1.emb  (stage 1 vs the teacher), grad.s1/<name>
  loss.s2.soft                               (stage 2 soft CE, T = 1), grad.s2/<name>
  loss.reg                                   (MSE to gold, num_labels 1), grad.reg/<name>
Each grad.<case>/<name> is d(loss of the case)/d(parameter) for every parameter of that model.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tbref  # noqa: E402

torch.set_default_dtype(torch.float64)


def params_of(tensors, model, cfg):
    return {n: torch.tensor(tensors[f"{model}/{n}"].astype(np.float64), requires_grad=True)
            for n in tbref.param_names(cfg)}


def grads(loss, params):
    names = list(params)
    gs = torch.autograd.grad(loss, [params[n] for n in names], retain_graph=True, allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(params[n])) for n, g in zip(names, gs)}


def main(d):
    tensors, meta = tbref.read_safetensors(os.path.join(d, "in.safetensors"))
    cfgs = json.loads(meta["configs"])
    ids = torch.from_numpy(tensors["input_ids"].astype(np.int64))
    types = torch.from_numpy(tensors["token_type_ids"].astype(np.int64))
    mask = torch.from_numpy(tensors["attention_mask"].astype(np.int64))
    labels = torch.from_numpy(tensors["labels"].astype(np.int64))
    mlm_labels = torch.from_numpy(tensors["mlm_labels"].astype(np.int64))
    gold = torch.from_numpy(tensors["gold"].astype(np.float64))
    out = {}

    def put(name, t):
        out[name] = t.detach().numpy().astype(np.float64)

    # Teacher: forward features, then fine-tuning CE + MLM CE and their gradients.
    tp = params_of(tensors, "teacher", cfgs["teacher"])
    teacher = tbref.TorchBert(cfgs["teacher"], tp)
    to = teacher.forward(ids, types, mask, logits=True, mlm=True)
    for j, h in enumerate(to["hidden"]):
        put(f"teacher.hidden.{j}", h)
    for l, s in enumerate(to["scores"]):
        put(f"teacher.scores.{l}", s)
    put("teacher.pooled", to["pooled"])
    put("teacher.logits", to["logits"])
    put("teacher.mlm_logits", to["mlm_logits"])
    l_ce = tbref.ce(to["logits"], labels)
    l_mlm = tbref.ce(to["mlm_logits"].reshape(-1, cfgs["teacher"]["vocab_size"]), mlm_labels.reshape(-1))
    put("loss.teacher.ce", l_ce)
    put("loss.teacher.mlm", l_mlm)
    for n, g in grads(l_ce + l_mlm, tp).items():
        put(f"grad.teacher_ft/{n}", g)
    tfeat = {"hidden": [h.detach() for h in to["hidden"]], "scores": [s.detach() for s in to["scores"]]}
    tlogits = to["logits"].detach()

    # Student: stage 1 (attention + hidden incl. embedding) and stage 2 (soft CE).
    sp = params_of(tensors, "student", cfgs["student"])
    student = tbref.TorchBert(cfgs["student"], sp)
    so = student.forward(ids, types, mask, logits=True)
    for j, h in enumerate(so["hidden"]):
        put(f"student.hidden.{j}", h)
    for l, s in enumerate(so["scores"]):
        put(f"student.scores.{l}", s)
    put("student.logits", so["logits"])
    att, hid, emb = tbref.stage1_loss(student, teacher, so, tfeat)
    put("loss.s1.att", att)
    put("loss.s1.hidden", hid)
    put("loss.s1.emb", emb)
    for n, g in grads(att + hid, sp).items():
        put(f"grad.s1/{n}", g)
    soft = tbref.soft_ce(so["logits"], tlogits, 1.0)
    put("loss.s2.soft", soft)
    for n, g in grads(soft, sp).items():
        put(f"grad.s2/{n}", g)

    # Regression student: MSE of the single output against the gold values.
    rp = params_of(tensors, "sreg", cfgs["sreg"])
    sreg = tbref.TorchBert(cfgs["sreg"], rp)
    ro = sreg.forward(ids, types, mask, logits=True)
    put("sreg.logits", ro["logits"])
    reg = tbref.mse(ro["logits"][:, 0], gold)
    put("loss.reg", reg)
    for n, g in grads(reg, rp).items():
        put(f"grad.reg/{n}", g)

    tbref.write_safetensors(os.path.join(d, "out.safetensors"), out)


if __name__ == "__main__":
    main(sys.argv[1])
