"""Shared Python reference pieces for tinybert-c tests (Debian python3-torch, /usr/bin/python3).

- read_safetensors / write_safetensors: the safetensors format written out by hand from its
  specification (8-byte little-endian header length, JSON header with dtype / shape /
  data_offsets and "__metadata__", then the byte buffer), with struct + json + numpy only.
- TorchBert: BERT (post-LayerNorm, erf-GELU, learned positions, token types) in torch from the
  formulas of the BERT paper / Hugging Face BertModel, with Hugging Face parameter names, the
  TinyBERT classification head (relu, no dropout) or the Hugging Face one, the MLM head with the
  decoder tied to the word embeddings, and fit_dense. Dropout is not modelled (references run
  with dropout off).
- The TinyBERT losses as SPEC.md and the reference code define them.

Nothing here imports tinybert-c code: it is an independent reference.
"""
import json
import math
import struct

import numpy as np
import torch

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_NP_TO_ST = {np.dtype(v).str: k for k, v in _ST_DTYPES.items()}


def read_safetensors(path):
    """Returns ({name: numpy array}, {metadata})."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = np.dtype(_ST_DTYPES[e["dtype"]]).newbyteorder("<")
        a = np.frombuffer(data[b:end], dtype=dt).reshape(e["shape"])
        out[name] = a.copy()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: numpy array} (C order, little-endian) with string metadata."""
    header = {"__metadata__": dict({"format": "pt"}, **(metadata or {}))}
    blobs = []
    off = 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        st = _NP_TO_ST[a.dtype.newbyteorder("<").str if a.dtype.byteorder != "|" else a.dtype.str]
        b = a.tobytes()
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def param_names(cfg):
    """Hugging Face parameter names of a model with this config, in tinybert-c's order."""
    names = ["bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
             "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
             "bert.embeddings.LayerNorm.bias"]
    for l in range(cfg["num_hidden_layers"]):
        p = f"bert.encoder.layer.{l}."
        names += [p + s for s in (
            "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
            "attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",
            "attention.output.dense.weight", "attention.output.dense.bias",
            "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
            "intermediate.dense.weight", "intermediate.dense.bias",
            "output.dense.weight", "output.dense.bias",
            "output.LayerNorm.weight", "output.LayerNorm.bias")]
    if cfg.get("head", "none") != "none":
        names += ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"]
    if cfg.get("mlm_head", 0):
        names += ["cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
                  "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
                  "cls.predictions.bias"]
    if cfg.get("fit_size", 0) > 0:
        names += ["fit_dense.weight", "fit_dense.bias"]
    return names


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class TorchBert:
    """BERT from its formulas. `params` maps Hugging Face names to torch tensors (leaf tensors
    with requires_grad for gradient checks); `cfg` is a dict with the config.json fields plus
    "head" ("none", "tinybert", "hf"), "mlm_head" and "fit_size"."""

    def __init__(self, cfg, params):
        self.cfg = cfg
        self.p = params

    def linear(self, x, name):
        return x @ self.p[name + ".weight"].T + self.p[name + ".bias"]

    def forward(self, ids, types, mask, logits=False, mlm=False):
        """ids, types, mask: int64 [B, T]. Returns dict with "hidden" (L+1 tensors [B,T,C]),
        "scores" (L tensors [B,NH,T,T], pre-softmax incl. the additive mask), and optionally
        "pooled", "logits", "mlm_logits"."""
        c, p = self.cfg, self.p
        B, T = ids.shape
        C, NH = c["hidden_size"], c["num_attention_heads"]
        HS = C // NH
        eps = c["layer_norm_eps"]
        pos = torch.arange(T)
        # padding_idx: the [PAD] row gets no gradient from the lookup (torch.nn.Embedding semantics)
        pad = c.get("pad_token_id", 0)
        word = torch.nn.functional.embedding(ids, p["bert.embeddings.word_embeddings.weight"],
                                             padding_idx=pad if pad >= 0 else None)
        x = (word + p["bert.embeddings.position_embeddings.weight"][pos][None]
             + p["bert.embeddings.token_type_embeddings.weight"][types])
        h = layer_norm(x, p["bert.embeddings.LayerNorm.weight"], p["bert.embeddings.LayerNorm.bias"], eps)
        hidden, scores = [h], []
        ext = (1.0 - mask.to(h.dtype))[:, None, None, :] * -10000.0
        for l in range(c["num_hidden_layers"]):
            pre = f"bert.encoder.layer.{l}."

            def heads(t):
                return t.view(B, T, NH, HS).permute(0, 2, 1, 3)
            q = heads(self.linear(h, pre + "attention.self.query"))
            k = heads(self.linear(h, pre + "attention.self.key"))
            v = heads(self.linear(h, pre + "attention.self.value"))
            s = q @ k.transpose(-1, -2) / math.sqrt(HS) + ext
            scores.append(s)
            prob = torch.softmax(s, dim=-1)
            ctx = (prob @ v).permute(0, 2, 1, 3).reshape(B, T, C)
            a = layer_norm(self.linear(ctx, pre + "attention.output.dense") + h,
                           p[pre + "attention.output.LayerNorm.weight"], p[pre + "attention.output.LayerNorm.bias"], eps)
            f = gelu(self.linear(a, pre + "intermediate.dense"))
            h = layer_norm(self.linear(f, pre + "output.dense") + a,
                           p[pre + "output.LayerNorm.weight"], p[pre + "output.LayerNorm.bias"], eps)
            hidden.append(h)
        out = {"hidden": hidden, "scores": scores}
        if logits:
            pooled = torch.tanh(self.linear(h[:, 0], "bert.pooler.dense"))
            z = torch.relu(pooled) if c["head"] == "tinybert" else pooled
            out["pooled"] = pooled
            out["logits"] = self.linear(z, "classifier")
        if mlm:
            t = gelu(self.linear(h, "cls.predictions.transform.dense"))
            t = layer_norm(t, p["cls.predictions.transform.LayerNorm.weight"],
                           p["cls.predictions.transform.LayerNorm.bias"], eps)
            out["mlm_logits"] = t @ p["bert.embeddings.word_embeddings.weight"].T + p["cls.predictions.bias"]
        return out

    def fit(self, h):
        return self.linear(h, "fit_dense")


# ---- TinyBERT losses (SPEC.md "Losses") -----------------------------------------------------------

def att_loss(student, teacher):
    """MSE of pre-softmax scores with entries <= -100 replaced by 0 in both."""
    s = torch.where(student <= -100, torch.zeros_like(student), student)
    t = torch.where(teacher <= -100, torch.zeros_like(teacher), teacher)
    return ((s - t) ** 2).mean()


def mse(a, b):
    return ((a - b) ** 2).mean()


def soft_ce(student_logits, teacher_logits, temperature=1.0):
    """mean over batch x classes of -softmax(t/T) * log_softmax(s/T)."""
    return (-torch.softmax(teacher_logits / temperature, -1)
            * torch.log_softmax(student_logits / temperature, -1)).mean()


def ce(logits, labels, ignore_index=-100):
    keep = labels != ignore_index
    lp = torch.log_softmax(logits[keep], -1)
    return -lp[torch.arange(lp.shape[0]), labels[keep]].mean()


def layer_map(n_teacher, n_student):
    """(attention pairs [(student i, teacher i*k+k-1)], hidden pairs [(student j, teacher j*k)])."""
    k = n_teacher // n_student
    return [(i, i * k + k - 1) for i in range(n_student)], [(j, j * k) for j in range(n_student + 1)]


def stage1_loss(student, teacher, s_out, t_out):
    """Returns (att, hidden, emb) for student/teacher forward outputs."""
    att_pairs, hid_pairs = layer_map(teacher.cfg["num_hidden_layers"], student.cfg["num_hidden_layers"])
    att = sum(att_loss(s_out["scores"][i], t_out["scores"][j]) for i, j in att_pairs)
    terms = [mse(student.fit(s_out["hidden"][i]), t_out["hidden"][j]) for i, j in hid_pairs]
    return att, sum(terms), terms[0]
