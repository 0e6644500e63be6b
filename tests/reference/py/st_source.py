#!/usr/bin/python3
"""st_source.py - the Python side of tests/reference/test_convert_st.c: a small BERT as newer
Hugging Face / sentence-transformers packages ship it, for scripts/convert-pytorch-bin.

  make DIR    DIR/model.safetensors (written with the spec-written writer of
              scripts/check-safetensors): BertModel names WITHOUT the "bert." prefix, a pooler,
              no heads, the int64 buffer embeddings.position_ids [1, P], F32 values of
              safetensors_check.bert_value; DIR/config.json (Hugging Face keys only), DIR/vocab.txt
  both DIR    as make, plus a pytorch_model.bin beside it (an ambiguous source folder)
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_check as sc  # noqa: E402


def make(d):
    cfg = dict(sc.SMALL_CFG, architectures=["BertModel"])
    items = []
    for name, shape in sc.bert_names(cfg):
        items.append((name[len("bert."):], "F32", shape, sc.bert_value(name, shape).astype("<f4").tobytes()))
    P = cfg["max_position_embeddings"]
    items.insert(0, ("embeddings.position_ids", "I64", [1, P], np.arange(P, dtype="<i8").tobytes()))
    os.makedirs(d, exist_ok=True)
    sc.st.write_safetensors(os.path.join(d, "model.safetensors"), items, {"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        import json
        json.dump(cfg, f)
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("".join(f"tok{i}\n" for i in range(cfg["vocab_size"])))
    return 0


def both(d):
    make(d)
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(11, 8)}, os.path.join(d, "pytorch_model.bin"))
    return 0


if __name__ == "__main__":
    sys.exit({"make": make, "both": both}[sys.argv[1]](sys.argv[2]))
