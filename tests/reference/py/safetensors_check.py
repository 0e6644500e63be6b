#!/usr/bin/python3
"""safetensors_check.py - the Python side of tests/reference/test_safetensors_python.c.

  verify-c FILE       FILE was written by tinybert-c: it must pass scripts/check-safetensors
                      (strict: 8-byte padding, "format": "pt", header order == offset order) and
                      hold the tensors of `reference_tensors()` bit for bit
  write FILE          writes `reference_tensors()` with the spec-written Python writer
  make-torch-bin DIR  writes DIR/pytorch_model.bin (torch.save of a small BERT state dict under
                      OLD names: LayerNorm.gamma/beta, no "bert." prefix, a tied decoder, NSP head),
                      DIR/config.json (Hugging Face keys only) and DIR/vocab.txt
  verify-ckpt DIR     DIR is a tinybert-c checkpoint folder: its model.safetensors passes the strict
                      checker and loads with strict=True into a torch module tree whose parameter
                      names and shapes are those of Hugging Face BertForSequenceClassification
                      (+ MLM head, + fit_dense) built from DIR/config.json, with the values of
                      `bert_value`
Values are formulas exact in binary floating point, so both languages compute them independently.
"""
import importlib.machinery
import importlib.util
import json
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


def reference_tensors():
    """(name, dtype, shape, little-endian bytes); the same formulas are in the C test."""
    i = np.arange(24)
    return [
        ("f32", "F32", [2, 3, 4], ((i - 7) * 0.375).astype("<f4").tobytes()),
        ("f64", "F64", [3], (np.arange(3) * 1e300 - 2.5).astype("<f8").tobytes()),
        ("i32", "I32", [5], (np.arange(5) * -100000 + 7).astype("<i4").tobytes()),
        ("i64", "I64", [2, 2], (np.arange(4) * 10**12 - 5).astype("<i8").tobytes()),
        ("u8", "U8", [6], (np.arange(6) * 51).astype("u1").tobytes()),
        ("bool", "BOOL", [4], np.array([1, 0, 0, 1], dtype="u1").tobytes()),
        ("f16", "F16", [3], (np.arange(3, dtype="<u2") * 31 + 0x3c00).astype("<u2").tobytes()),
        ("bf16", "BF16", [2], np.array([0x3f80, 0xc040], dtype="<u2").tobytes()),
        ("scalar", "F32", [], np.float32(-0.75).astype("<f4").tobytes()),
        ("empty", "F32", [0, 5], b""),
    ]


def bert_names(cfg):
    """Hugging Face BertForSequenceClassification (+ cls.predictions, + fit_dense) names and shapes."""
    V, H, I = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    P, T, L = cfg["max_position_embeddings"], cfg["type_vocab_size"], cfg["num_hidden_layers"]
    out = [("bert.embeddings.word_embeddings.weight", [V, H]),
           ("bert.embeddings.position_embeddings.weight", [P, H]),
           ("bert.embeddings.token_type_embeddings.weight", [T, H]),
           ("bert.embeddings.LayerNorm.weight", [H]), ("bert.embeddings.LayerNorm.bias", [H])]
    for l in range(L):
        p = f"bert.encoder.layer.{l}."
        for m in ("query", "key", "value"):
            out += [(p + f"attention.self.{m}.weight", [H, H]), (p + f"attention.self.{m}.bias", [H])]
        out += [(p + "attention.output.dense.weight", [H, H]), (p + "attention.output.dense.bias", [H]),
                (p + "attention.output.LayerNorm.weight", [H]), (p + "attention.output.LayerNorm.bias", [H]),
                (p + "intermediate.dense.weight", [I, H]), (p + "intermediate.dense.bias", [I]),
                (p + "output.dense.weight", [H, I]), (p + "output.dense.bias", [H]),
                (p + "output.LayerNorm.weight", [H]), (p + "output.LayerNorm.bias", [H])]
    out += [("bert.pooler.dense.weight", [H, H]), ("bert.pooler.dense.bias", [H])]
    if cfg.get("tinybert_head", "none") != "none":
        n = cfg["num_labels"]
        out += [("classifier.weight", [n, H]), ("classifier.bias", [n])]
    if cfg.get("tinybert_mlm_head"):
        out += [("cls.predictions.transform.dense.weight", [H, H]), ("cls.predictions.transform.dense.bias", [H]),
                ("cls.predictions.transform.LayerNorm.weight", [H]), ("cls.predictions.transform.LayerNorm.bias", [H]),
                ("cls.predictions.bias", [V])]
    if cfg.get("fit_size", 0):
        out += [("fit_dense.weight", [cfg["fit_size"], H]), ("fit_dense.bias", [cfg["fit_size"]])]
    return out


def bert_value(name, shape):
    """Element k of tensor `name`: ((7k + len(name)) mod 29 - 14) / 16, exact in f32 (as in C)."""
    n = int(np.prod(shape)) if shape else 1
    k = np.arange(n, dtype=np.int64)
    return (((7 * k + len(name)) % 29 - 14) / 16.0).astype(np.float32).reshape(shape)


SMALL_CFG = {"architectures": ["BertForPreTraining"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
             "hidden_dropout_prob": 0.1, "hidden_size": 8, "initializer_range": 0.02, "intermediate_size": 12,
             "max_position_embeddings": 16, "num_attention_heads": 2, "num_hidden_layers": 2, "type_vocab_size": 2,
             "vocab_size": 11}


def old_name(name):
    """The names older BERT checkpoints use for the same tensor."""
    if name.endswith("LayerNorm.weight"):
        name = name[: -len("weight")] + "gamma"
    elif name.endswith("LayerNorm.bias"):
        name = name[: -len("bias")] + "beta"
    if name.startswith("bert.encoder.") or name.startswith("bert.pooler."):
        name = name[len("bert."):]
    return name


def make_torch_bin(d):
    cfg = dict(SMALL_CFG, num_labels=3, tinybert_head="relu", tinybert_mlm_head=True, fit_size=16)
    state = {}
    for name, shape in bert_names(cfg):
        state[old_name(name)] = torch.from_numpy(bert_value(name, shape).copy())
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    state["cls.seq_relationship.weight"] = torch.zeros(2, 8)
    state["cls.seq_relationship.bias"] = torch.zeros(2)
    state["bert.embeddings.position_ids"] = torch.arange(16).unsqueeze(0)  # int64 buffer of older transformers
    os.makedirs(d, exist_ok=True)
    torch.save(state, os.path.join(d, "pytorch_model.bin"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(SMALL_CFG, f)
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("".join(f"tok{i}\n" for i in range(11)))
    return 0


def module_tree(names):
    """A torch module tree with exactly these parameter names/shapes (what load_state_dict checks)."""
    root = torch.nn.Module()
    for name, shape in names:
        parts = name.split(".")
        m = root
        for p in parts[:-1]:
            if not hasattr(m, p):
                m.add_module(p, torch.nn.Module())
            m = getattr(m, p)
        m.register_parameter(parts[-1], torch.nn.Parameter(torch.zeros(shape)))
    return root


def verify_ckpt(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act", "model_type"):
        if k not in cfg:
            print(f"config.json lacks Hugging Face key {k!r}")
            return 1
    path = os.path.join(d, "model.safetensors")
    names = bert_names(cfg)
    problems = st.check(path, names=[n for n, _ in names], expect_dtype="F32")
    if problems:
        print("\n".join(problems))
        return 1
    _, tensors = st.read_safetensors(path)
    sd = {n: torch.from_numpy(np.frombuffer(raw, dtype="<f4").reshape(shape).copy()) for n, _, shape, raw in tensors}
    module_tree(names).load_state_dict(sd, strict=True)  # raises on any missing/unexpected/wrong-shaped name
    for n, shape in names:
        if not np.array_equal(sd[n].numpy(), bert_value(n, shape)):
            print(f"tensor {n!r} values differ")
            return 1
    return 0


def main():
    cmd, arg = sys.argv[1], sys.argv[2]
    if cmd == "write":
        st.write_safetensors(arg, reference_tensors(), {"format": "pt", "writer": "python"})
        return 0
    if cmd == "verify-c":
        problems = st.check(arg)
        if problems:
            print("\n".join(problems))
            return 1
        meta, got = st.read_safetensors(arg)
        want = reference_tensors()
        if [(n, d, s) for n, d, s, _ in got] != [(n, d, s) for n, d, s, _ in want]:
            print(f"names/dtypes/shapes differ: {[(n, d, s) for n, d, s, _ in got]}")
            return 1
        for (n, _, _, a), (_, _, _, b) in zip(got, want):
            if a != b:
                print(f"tensor {n!r} bytes differ")
                return 1
        if meta.get("format") != "pt" or meta.get("writer") != "tinybert-c":
            print(f"metadata {meta}")
            return 1
        return 0
    if cmd == "make-torch-bin":
        return make_torch_bin(arg)
    if cmd == "verify-ckpt":
        return verify_ckpt(arg)
    print(f"unknown command {cmd}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
