#!/usr/bin/python3
"""Float64 PyTorch reference for the operations and losses of tinybert-c (tb/model/ops.h, tb/model/loss.h).

Usage: ops_ref.py DIR
DIR/manifest.json lists cases {"name", "op", "params", "inputs": {name: {"dtype", "shape"}}};
each input is DIR/<case>__<input>.bin (raw little-endian f32 or i32). For every case this script
computes the forward outputs and, by autograd from the given upstream gradients, the input and
parameter gradients in float64, and writes each as DIR/<case>__<output>.ref (raw little-endian
f64). torch's own layers are used where they exist (linear, layer_norm, gelu, embedding,
softmax, mse_loss, cross_entropy); the rest is written out from the definitions (Hugging Face
BERT self-attention, the TinyBERT losses), independently of the C code.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
DT = {"f32": np.float32, "i32": np.int32}


def load(d, case):
    out = {}
    for name, meta in case["inputs"].items():
        a = np.fromfile(os.path.join(d, f'{case["name"]}__{name}.bin'), dtype=DT[meta["dtype"]])
        a = a.reshape(meta["shape"])
        t = torch.from_numpy(a.astype(np.float64) if meta["dtype"] == "f32" else a.astype(np.int64))
        if meta["dtype"] == "f32":
            t.requires_grad_(True)
        out[name] = t
    return out


def grads(outs_and_douts, wrt):
    """Backward of sum(<out, dout>) for the given pairs; returns {name: grad}."""
    total = sum((o * g).sum() for o, g in outs_and_douts)
    total.backward()
    return {k: (v.grad if v.grad is not None else torch.zeros_like(v)) for k, v in wrt.items()}


def op_linear(x, p):
    out = F.linear(x["x"], x["w"], x.get("b"))
    g = grads([(out, x["dout"])], {"dx": x["x"], "dw": x["w"], **({"db": x["b"]} if "b" in x else {})})
    return {"out": out, **g}


def op_layernorm(x, p):
    out = F.layer_norm(x["x"], x["x"].shape[-1:], x["w"], x["b"], p["eps"])
    return {"out": out, **grads([(out, x["dout"])], {"dx": x["x"], "dw": x["w"], "db": x["b"]})}


def op_gelu(x, p):
    out = F.gelu(x["x"], approximate="none")  # exact erf form, as Hugging Face BERT
    return {"out": out, **grads([(out, x["dout"])], {"dx": x["x"]})}


def op_tanh(x, p):
    out = torch.tanh(x["x"])
    return {"out": out, **grads([(out, x["dout"])], {"dx": x["x"]})}


def op_relu(x, p):
    out = torch.clamp(x["x"], min=0.0)
    return {"out": out, **grads([(out, x["dout"])], {"dx": x["x"]})}


def op_dropout(x, p):
    out = x["x"] * x["keep"].to(torch.float64) / (1.0 - p["p"])
    return {"out": out, **grads([(out, x["dout"])], {"dx": x["x"]})}


def op_embedding(x, p):
    ids, types = x["ids"], x["types"]
    T = ids.shape[1]
    word = F.embedding(ids, x["wte"], padding_idx=p["pad_id"])
    pos = F.embedding(torch.arange(T).unsqueeze(0).expand_as(ids), x["wpe"])
    typ = F.embedding(types, x["wtt"])
    out = word + pos + typ
    return {"out": out, **grads([(out, x["dout"])], {"dwte": x["wte"], "dwpe": x["wpe"], "dwtt": x["wtt"]})}


def op_attention(x, p):
    """Hugging Face BertSelfAttention core on a fused [B, T, 3C] q|k|v tensor."""
    B, T, C3 = x["qkv"].shape
    C, NH = C3 // 3, p["NH"]
    HS = C // NH
    q, k, v = x["qkv"].split(C, dim=-1)
    heads = lambda t: t.view(B, T, NH, HS).permute(0, 2, 1, 3)
    ext = (1.0 - x["mask"].to(torch.float64))[:, None, None, :] * -10000.0
    scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(HS) + ext
    probs = torch.softmax(scores, dim=-1)
    dropped = probs * x["keep"].to(torch.float64) / (1.0 - p["p"]) if "keep" in x else probs
    ctx = (dropped @ heads(v)).permute(0, 2, 1, 3).reshape(B, T, C)
    g = grads([(ctx, x["dctx"]), (scores, x["dscores"])], {"dqkv": x["qkv"]})
    return {"scores": scores, "probs": probs, "ctx": ctx, **g}


def op_loss_att_mse(x, p):
    s, t = x["student"], x["teacher"]
    s2 = torch.where(s <= -1e2, torch.zeros_like(s), s)
    t2 = torch.where(t <= -1e2, torch.zeros_like(t), t)
    loss = F.mse_loss(s2, t2)
    loss.backward()
    return {"loss": loss.reshape(1), "dstudent": s.grad}


def op_loss_mse(x, p):
    loss = F.mse_loss(x["student"], x["target"])
    loss.backward()
    return {"loss": loss.reshape(1), "dstudent": x["student"].grad}


def op_loss_soft_ce(x, p):
    T = p["temp"]
    s, t = x["student"], x["teacher"]
    loss = (-torch.softmax(t / T, dim=-1) * torch.log_softmax(s / T, dim=-1)).mean()
    loss.backward()
    return {"loss": loss.reshape(1), "dstudent": s.grad}


def op_loss_ce(x, p):
    loss = F.cross_entropy(x["logits"], x["labels"], ignore_index=-100)
    loss.backward()
    return {"loss": loss.reshape(1), "dlogits": x["logits"].grad}


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "manifest.json")) as f:
        manifest = json.load(f)
    for case in manifest["cases"]:
        res = globals()["op_" + case["op"]](load(d, case), case.get("params", {}))
        for name, t in res.items():
            t.detach().numpy().astype("<f8").tofile(os.path.join(d, f'{case["name"]}__{name}.ref'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
