#!/usr/bin/python3
"""Loads a tinybert-c checkpoint into a PyTorch module laid out as Hugging Face's BertModel
(add_pooling_layer=True) with load_state_dict(strict=True), as a strict Hugging Face loader does.

Usage: hf_strict_load.py CHECKPOINT_DIR
The checkpoint's "bert." prefix is removed (BertModel's base_model_prefix) and its student
projection fit_dense.* is left out (not part of BertModel; Hugging Face reports it as unused).
Every other tensor must match a BertModel parameter by name and shape and every BertModel
parameter must be present. Prints "ok" and exits 0 when the load succeeds, else exits 1.
"""
import json
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tbref  # noqa: E402


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = nn.Module()
        self.self.query, self.self.key, self.self.value = (nn.Linear(c, c) for _ in range(3))
        self.output = nn.Module()
        self.output.dense = nn.Linear(c, c)
        self.output.LayerNorm = nn.LayerNorm(c)


class Layer(nn.Module):
    def __init__(self, c, f):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(c, f)
        self.output = nn.Module()
        self.output.dense = nn.Linear(f, c)
        self.output.LayerNorm = nn.LayerNorm(c)


class BertModel(nn.Module):
    """The parameter tree of transformers.BertModel(config, add_pooling_layer=True)."""

    def __init__(self, cfg):
        super().__init__()
        c, f = cfg["hidden_size"], cfg["intermediate_size"]
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(cfg["vocab_size"], c)
        self.embeddings.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], c)
        self.embeddings.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], c)
        self.embeddings.LayerNorm = nn.LayerNorm(c)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(Layer(c, f) for _ in range(cfg["num_hidden_layers"]))
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(c, c)


def main(d):
    with open(os.path.join(d, "config.json")) as fh:
        cfg = json.load(fh)
    tensors, _ = tbref.read_safetensors(os.path.join(d, "model.safetensors"))
    state = {}
    for name, value in tensors.items():
        if name.startswith("fit_dense."):
            continue
        key = name[len("bert."):] if name.startswith("bert.") else name
        state[key] = torch.from_numpy(np.ascontiguousarray(value))
    model = BertModel(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        print(f"strict load of {d} failed: {e}", file=sys.stderr)
        return 1
    w = model.pooler.dense.weight.detach().numpy()
    if not np.array_equal(w, tensors["bert.pooler.dense.weight"]):
        print("pooler weight not loaded as stored", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
