#!/usr/bin/python3
"""Float64 PyTorch reference for tb-predict and tinybert_logits: the logits of each text line.

Usage: predict_ref.py CHECKPOINT_DIR LINES TB_OUTPUT MAX_SEQ_LENGTH TOLERANCE
  LINES       one text per line, or text<TAB>text_b (a pair)
  TB_OUTPUT   tb-predict --logits output for LINES: "label<TAB>logit_0<TAB>..." per line, or one
              number per line for a regression model
Each line is tokenized by google-research/bert's FullTokenizer (bench/bert_tokenization.py),
encoded as BERT's convert_examples_to_features does ([CLS] a [SEP] (b [SEP]), _truncate_seq_pair
for pairs), and run alone (no padding) through tbref.TorchBert with the checkpoint's
model.safetensors and config.json. Prints "max_abs_diff X over N lines" and exits 0 when every
logit is within TOLERANCE and every printed label is the argmax of the reference logits (when
the two largest reference logits are further apart than 2 * TOLERANCE); else exits 1.
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "bench"))
import bert_tokenization  # noqa: E402
import tbref  # noqa: E402

torch.set_default_dtype(torch.float64)


def truncate_pair(a, b, max_len):
    """_truncate_seq_pair of the BERT reference: drop the last token of the longer list."""
    while len(a) + len(b) > max_len:
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()


def encode(tok, line, max_seq):
    parts = line.split("\t")
    a = tok.tokenize(parts[0])
    b = tok.tokenize(parts[1]) if len(parts) > 1 and parts[1] else None
    if b is not None:
        truncate_pair(a, b, max_seq - 3)
    else:
        a = a[:max_seq - 2]
    tokens = ["[CLS]"] + a + ["[SEP]"]
    types = [0] * len(tokens)
    if b:
        tokens += b + ["[SEP]"]
        types += [1] * (len(b) + 1)
    return tok.convert_tokens_to_ids(tokens), types


def model_of(ckpt):
    with open(os.path.join(ckpt, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    head = cfg.get("tinybert_head", "hf")
    cfg["head"] = "tinybert" if head == "relu" else "hf"
    cfg.setdefault("layer_norm_eps", 1e-12)
    tensors, _ = tbref.read_safetensors(os.path.join(ckpt, "model.safetensors"))
    params = {n: torch.tensor(a.astype(np.float64)) for n, a in tensors.items()}
    return tbref.TorchBert(cfg, params), cfg


def main(ckpt, lines_path, out_path, max_seq, tol):
    model, cfg = model_of(ckpt)
    tok = bert_tokenization.FullTokenizer(os.path.join(ckpt, "vocab.txt"), do_lower_case=True)
    with open(lines_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    with open(out_path, encoding="utf-8") as f:
        rows = [r.split("\t") for r in f.read().split("\n") if r]
    if len(rows) != len(lines):
        print(f"{len(lines)} input lines but {len(rows)} output lines")
        return 1
    worst, bad = 0.0, 0
    for i, (line, row) in enumerate(zip(lines, rows)):
        ids, types = encode(tok, line, max_seq)
        ids_t = torch.tensor([ids])
        out = model.forward(ids_t, torch.tensor([types]), torch.ones_like(ids_t), logits=True)
        ref = out["logits"][0].numpy()
        got = np.array([float(x) for x in (row if len(ref) == 1 else row[1:])])
        diff = float(np.max(np.abs(got - ref)))
        worst = max(worst, diff)
        if diff > tol:
            print(f"line {i + 1}: logits {got.tolist()} vs reference {ref.tolist()}")
            bad += 1
        if len(ref) > 1:
            top = np.sort(ref)[::-1]
            if top[0] - top[1] > 2 * tol and int(row[0]) != int(np.argmax(ref)):
                print(f"line {i + 1}: label {row[0]} but the reference's argmax is {int(np.argmax(ref))}")
                bad += 1
    print(f"max_abs_diff {worst:.3g} over {len(lines)} lines")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
