"""A BERT teacher as a PyTorch module, loaded from a tinybert-c / Hugging Face checkpoint folder
(config.json + *.safetensors with Hugging Face parameter names), for python/stages/tb-torch-emit.

forward(input_ids, token_type_ids, attention_mask) returns {"hidden": [N + 1 tensors [B, T, C]],
"scores": [N tensors [B, NH, T, T]] (pre-softmax, QK^T / sqrt(d) - 10000 on padding), "logits":
[B, NL] or None}: the features tb-emit sends (docs/emit.md). Any module with this forward and the
attributes `config` (the config.json dict) and `num_labels` can be the teacher (--module).
Dropout is never applied (teacher dropout off, tb-emit's default).
"""
import glob
import json
import math
import os
import struct

import numpy as np
import torch

_ST = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    """{name: numpy array} of a safetensors file (struct + json + numpy only)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError("%s: header length %d exceeds the file" % (path, n))
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        if e["dtype"] not in _ST:
            raise ValueError("%s: tensor %s has dtype %s, which this reader does not know" % (path, name, e["dtype"]))
        out[name] = np.frombuffer(data[b:end], dtype=np.dtype(_ST[e["dtype"]]).newbyteorder("<")).reshape(e["shape"])
    return out


def head_kind(config):
    h = config.get("tinybert_head", "none")
    if h not in ("none", "relu", "hf"):
        raise ValueError("config.json: tinybert_head must be none, relu or hf, got %r" % h)
    return h


def num_labels(config):
    if head_kind(config) == "none":
        return 0
    n = int(config.get("num_labels", 0) or 0) or len(config.get("id2label") or {})
    if config.get("problem_type") == "regression":
        n = 1
    return n


class TorchBert(torch.nn.Module):
    """BERT (post-LayerNorm, erf GELU) with Hugging Face parameter names, float32."""

    def __init__(self, config, tensors):
        super().__init__()
        self.config = config
        self.num_labels = num_labels(config)
        self.head = head_kind(config)
        self.p = {}
        for name, a in tensors.items():
            if a.dtype.kind == "f":
                self.p[name] = torch.from_numpy(np.array(a, dtype=np.float32))
        need = ["bert.embeddings.word_embeddings.weight"]
        if self.head != "none":
            need += ["bert.pooler.dense.weight", "classifier.weight"]
        for n in need:
            if n not in self.p:
                raise ValueError("checkpoint lacks %s" % n)

    def linear(self, x, name):
        return x @ self.p[name + ".weight"].T + self.p[name + ".bias"]

    @staticmethod
    def layer_norm(x, w, b, eps):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * w + b

    @torch.no_grad()
    def forward(self, ids, types, mask):
        c, p = self.config, self.p
        B, T = ids.shape
        C, NH = c["hidden_size"], c["num_attention_heads"]
        HS = C // NH
        eps = float(c.get("layer_norm_eps", 1e-12))
        x = (p["bert.embeddings.word_embeddings.weight"][ids]
             + p["bert.embeddings.position_embeddings.weight"][torch.arange(T)][None]
             + p["bert.embeddings.token_type_embeddings.weight"][types])
        h = self.layer_norm(x, p["bert.embeddings.LayerNorm.weight"], p["bert.embeddings.LayerNorm.bias"], eps)
        hidden, scores = [h], []
        ext = (1.0 - mask.to(h.dtype))[:, None, None, :] * -10000.0
        for l in range(c["num_hidden_layers"]):
            pre = "bert.encoder.layer.%d." % l

            def heads(t):
                return t.view(B, T, NH, HS).permute(0, 2, 1, 3)
            q = heads(self.linear(h, pre + "attention.self.query"))
            k = heads(self.linear(h, pre + "attention.self.key"))
            v = heads(self.linear(h, pre + "attention.self.value"))
            s = q @ k.transpose(-1, -2) / math.sqrt(HS) + ext
            scores.append(s)
            ctx = (torch.softmax(s, dim=-1) @ v).permute(0, 2, 1, 3).reshape(B, T, C)
            a = self.layer_norm(self.linear(ctx, pre + "attention.output.dense") + h,
                                p[pre + "attention.output.LayerNorm.weight"],
                                p[pre + "attention.output.LayerNorm.bias"], eps)
            f = self.linear(a, pre + "intermediate.dense")
            f = 0.5 * f * (1.0 + torch.erf(f / math.sqrt(2.0)))
            h = self.layer_norm(self.linear(f, pre + "output.dense") + a, p[pre + "output.LayerNorm.weight"],
                                p[pre + "output.LayerNorm.bias"], eps)
            hidden.append(h)
        logits = None
        if self.head != "none":
            pooled = torch.tanh(self.linear(h[:, 0], "bert.pooler.dense"))
            logits = self.linear(torch.relu(pooled) if self.head == "relu" else pooled, "classifier")
        return {"hidden": hidden, "scores": scores, "logits": logits}


def load(folder):
    """The TorchBert of a checkpoint folder (config.json and one *.safetensors)."""
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    if not files:
        raise ValueError("%s: no *.safetensors file" % folder)
    tensors = {}
    for path in files:
        tensors.update(read_safetensors(path))
    return TorchBert(config, tensors)
