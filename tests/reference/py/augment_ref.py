#!/usr/bin/python3
"""Reference for tinybert-c's tb-augment candidates (SPEC.md "Data augmentation"), written from
the specification, one sentence and one word at a time as the TinyBERT reference script does.

    augment_ref.py make-model DIR --vocab VOCAB [--layers L --hidden C --heads H --inter F
                              --max-pos P --seed S]
        writes a random Hugging Face BertForMaskedLM folder (config.json, model.safetensors with
        bert.* and cls.predictions.* names and the tied decoder weight stored too, vocab.txt)
    augment_ref.py candidates MODEL_DIR GLOVE STOPWORDS TSV N_SENTENCES M OUT
        candidates of every eligible word of the first N_SENTENCES rows of a GLUE SST-2 file:
        OUT gets one JSON line per word {"s", "k", "word", "kind", "cands", "scores"} where
        scores maps every vocabulary token / GloVe word to its logit / cosine for the tokens
        that matter in a comparison (the top 3M)
    augment_ref.py glove-neighbours GLOVE N M OUT
        the M nearest words by cosine (float64) of each of the first N GloVe words, itself left
        out, as JSON lines like `candidates` (s = the word's row, k = 0)
    augment_ref.py compare REF.jsonl C.tsv TOL
        C.tsv lines: sentence<TAB>token index<TAB>word<TAB>candidates separated by spaces;
        sets must be equal and the order the same, except where the reference's scores of two
        entries differ by less than TOL (relative); prints a summary, exit 1 on a mismatch
    augment_ref.py bench MODEL_DIR GLOVE STOPWORDS TSV N_SENTENCES M THREADS
        times the candidates of N_SENTENCES sentences, one word at a time (float32); prints JSON

The BERT forward is tbref.TorchBert (written from the BERT formulas, not from tinybert-c), the
tokenizer bench/bert_tokenization.py (a port of google-research/bert tokenization.py).
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "bench"))
import tbref  # noqa: E402
import bert_tokenization as bt  # noqa: E402


# ---- models ------------------------------------------------------------------------------------

def make_model(d, vocab_path, layers, hidden, heads, inter, max_pos, seed):
    torch.manual_seed(seed)
    with open(vocab_path, encoding="utf-8") as f:
        vocab_text = f.read()
    V = len(vocab_text.splitlines())
    C, F = hidden, inter
    std = 0.02

    def n(*shape, s=std):
        return (torch.randn(*shape, dtype=torch.float64) * s).float().numpy()

    p = {
        "bert.embeddings.word_embeddings.weight": n(V, C),
        "bert.embeddings.position_embeddings.weight": n(max_pos, C),
        "bert.embeddings.token_type_embeddings.weight": n(2, C),
        "bert.embeddings.LayerNorm.weight": np.ones(C, np.float32),
        "bert.embeddings.LayerNorm.bias": np.zeros(C, np.float32),
    }
    for l in range(layers):
        q = f"bert.encoder.layer.{l}."
        for nm in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            p[q + nm + ".weight"] = n(C, C)
            p[q + nm + ".bias"] = n(C)
        p[q + "attention.output.LayerNorm.weight"] = np.ones(C, np.float32)
        p[q + "attention.output.LayerNorm.bias"] = np.zeros(C, np.float32)
        p[q + "intermediate.dense.weight"] = n(F, C)
        p[q + "intermediate.dense.bias"] = n(F)
        p[q + "output.dense.weight"] = n(C, F)
        p[q + "output.dense.bias"] = n(C)
        p[q + "output.LayerNorm.weight"] = np.ones(C, np.float32)
        p[q + "output.LayerNorm.bias"] = np.zeros(C, np.float32)
    p["cls.predictions.transform.dense.weight"] = n(C, C)
    p["cls.predictions.transform.dense.bias"] = n(C)
    p["cls.predictions.transform.LayerNorm.weight"] = np.ones(C, np.float32)
    p["cls.predictions.transform.LayerNorm.bias"] = np.zeros(C, np.float32)
    p["cls.predictions.bias"] = n(V, s=0.05)
    p["cls.predictions.decoder.weight"] = p["bert.embeddings.word_embeddings.weight"]
    os.makedirs(d, exist_ok=True)
    tbref.write_safetensors(os.path.join(d, "model.safetensors"), p)
    cfg = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": V, "hidden_size": C,
           "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": F,
           "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
           "max_position_embeddings": max_pos, "type_vocab_size": 2, "initializer_range": std,
           "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute"}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write(vocab_text)


def load_model(d, dtype):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    t, _ = tbref.read_safetensors(os.path.join(d, "model.safetensors"))
    cfg = dict(cfg, head="none", mlm_head=1, fit_size=0)
    params = {k: torch.from_numpy(v.astype(np.float64)).to(dtype) for k, v in t.items()
              if k != "cls.predictions.decoder.weight"}
    return cfg, tbref.TorchBert(cfg, params)


# ---- the reference algorithm (SPEC.md) -----------------------------------------------------------

def load_stopwords(path):
    with open(path, encoding="utf-8") as f:
        return {ln.rstrip("\r\n") for ln in f if ln.strip() and not ln.startswith("#")}


def eligible(word, stop):
    return len(word) > 0 and all("a" <= ch <= "z" for ch in word) and word not in stop


def load_glove(path, max_rows=100000):
    words, vecs = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            items = line.strip().split()
            words.append(items[0])
            vecs.append([float(x) for x in items[1:]])
            if len(words) == max_rows:
                break
    vocab = {w: i for i, w in enumerate(words)}
    emb = np.zeros((len(words), len(vecs[0])))
    for w, i in vocab.items():
        if w != "<unk>":
            emb[i] = vecs[i]
    norm = np.sqrt((emb ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = (emb.T / norm).T
    return words, vocab, unit


class Reference:
    def __init__(self, model_dir, glove, stopwords, M, dtype=torch.float64):
        self.cfg, self.model = load_model(model_dir, dtype)
        self.dtype = dtype
        self.tok = bt.FullTokenizer(os.path.join(model_dir, "vocab.txt"), do_lower_case=True)
        self.inv = {i: t for t, i in self.tok.vocab.items()}
        self.stop = load_stopwords(stopwords)
        self.gwords, self.gvocab, self.gunit = load_glove(glove)
        self.M = M
        self.max_len = min(512, self.cfg["max_position_embeddings"])

    def mlm_scores(self, pieces, mask_idx):
        """Logits at the mask of [CLS] masked [SEP] pieces [SEP] (mask_idx: index in pieces)."""
        masked = ["[CLS]"] + pieces[:mask_idx] + ["[MASK]"] + pieces[mask_idx + 1:] + ["[SEP]"]
        tokens = masked + pieces + ["[SEP]"]
        types = [0] * len(masked) + [1] * (len(pieces) + 1)
        tokens, types = tokens[:self.max_len], types[:self.max_len]
        pos = 1 + mask_idx
        if pos >= self.max_len:
            return None
        ids = torch.tensor([self.tok.convert_tokens_to_ids(tokens)])
        tt = torch.tensor([types])
        with torch.no_grad():
            out = self.model.forward(ids, tt, torch.ones_like(ids), mlm=True)
        return out["mlm_logits"][0, pos].double().numpy()

    def sentence(self, text):
        """[(token index, word, kind, candidates, scores of the top 3M)] for every eligible word."""
        words = self.tok.basic_tokenizer.tokenize(text)
        pieces = self.tok.tokenize(text)
        start, count, k = {}, {}, -1
        for i, pc in enumerate(pieces):  # the reference's walk
            if "##" not in pc:
                k += 1
                start[k] = i
                count[k] = 0
            count[k] = count.get(k, 0) + 1
        out = []
        for k, w in enumerate(words):
            if not eligible(w, self.stop):
                continue
            n = count.get(k, 0)
            if n == 1:
                s = self.mlm_scores(pieces, start[k])
                if s is None:
                    out.append((k, w, "mlm", [w], {}))
                    continue
                order = np.argsort(-s, kind="stable")[: self.M]
                cands = [self.inv[int(i)] for i in order if not self.inv[int(i)].startswith("##")]
                wide = np.argsort(-s, kind="stable")[: 3 * self.M]
                scores = {self.inv[int(i)]: float(s[i]) for i in wide}
                out.append((k, w, "mlm", cands or [w], scores))
            elif n > 1:
                if w not in self.gvocab:
                    out.append((k, w, "vector", [w], {}))
                    continue
                i = self.gvocab[w]
                sim = self.gunit @ self.gunit[i]
                sim[i] = -np.inf
                sim = np.where(np.isnan(sim), -np.inf, sim)
                order = np.argsort(-sim, kind="stable")[: self.M]
                order = [j for j in order if np.isfinite(sim[j])]
                cands = [self.gwords[j] for j in order]
                wide = np.argsort(-sim, kind="stable")[: 3 * self.M]
                scores = {self.gwords[j]: float(sim[j]) for j in wide if np.isfinite(sim[j])}
                out.append((k, w, "vector", cands or [w], scores))
        return out


def read_sst2(path, n):
    texts = []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            texts.append(line.rstrip("\r\n").split("\t")[0])
            if len(texts) == n:
                break
    return texts


def candidates(model_dir, glove, stopwords, tsv, n, M, out_path):
    ref = Reference(model_dir, glove, stopwords, M)
    with open(out_path, "w", encoding="utf-8") as f:
        for s, text in enumerate(read_sst2(tsv, n)):
            for k, w, kind, cands, scores in ref.sentence(text):
                f.write(json.dumps({"s": s, "k": k, "word": w, "kind": kind, "cands": cands, "scores": scores}) + "\n")


def glove_neighbours(glove, n, M, out_path):
    words, vocab, unit = load_glove(glove)
    with open(out_path, "w", encoding="utf-8") as f:
        for i in range(min(n, len(words))):
            if vocab[words[i]] != i or not np.all(np.isfinite(unit[i])):
                continue  # an earlier duplicate or the zero <unk> row: not a query
            sim = unit @ unit[i]
            sim[i] = -np.inf
            sim = np.where(np.isnan(sim), -np.inf, sim)
            order = [j for j in np.argsort(-sim, kind="stable")[:M] if np.isfinite(sim[j])]
            wide = np.argsort(-sim, kind="stable")[:3 * M]
            scores = {words[j]: float(sim[j]) for j in wide if np.isfinite(sim[j])}
            f.write(json.dumps({"s": i, "k": 0, "word": words[i], "kind": "vector",
                                "cands": [words[j] for j in order], "scores": scores}) + "\n")


def compare(ref_path, c_path, tol):
    ref = {}
    with open(ref_path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            ref[(r["s"], r["k"])] = r
    got = {}
    with open(c_path, encoding="utf-8") as f:
        for line in f:
            s, k, w, c = line.rstrip("\n").split("\t")
            got[(int(s), int(k))] = (w, c.split(" ") if c else [])
    bad, ties, words = [], 0, 0
    for key in sorted(set(ref) | set(got)):
        if key not in ref or key not in got:
            bad.append(f"{key}: only in {'C' if key in got else 'the reference'}")
            continue
        r, (w, c) = ref[key], got[key]
        words += 1
        if w != r["word"]:
            bad.append(f"{key}: word {w!r} vs {r['word']!r}")
            continue
        if c == r["cands"]:
            continue
        sc = r["scores"]

        def close(a, b):
            return abs(a - b) <= tol * max(abs(a), abs(b), 1e-30)
        ok = True
        # entries in only one list must sit at the boundary within the tolerance
        edge = sc.get(r["cands"][-1]) if r["cands"] else None
        for x in set(c) ^ set(r["cands"]):
            if x not in sc or edge is None or not close(sc[x], edge):
                ok = False
        # the C order must follow the reference's scores up to near-ties
        for i in range(len(c) - 1):
            a, b = sc.get(c[i]), sc.get(c[i + 1])
            if a is None or b is None or (a < b and not close(a, b)):
                ok = False
        if ok:
            ties += 1
        else:
            bad.append(f"{key} {w}: C {c} vs reference {r['cands']}")
    print(json.dumps({"words": words, "equal_up_to_ties": ties, "mismatches": len(bad)}))
    for b in bad[:20]:
        print(b)
    return 1 if bad else 0


def bench(model_dir, glove, stopwords, tsv, n, M, threads):
    torch.set_num_threads(threads)
    ref = Reference(model_dir, glove, stopwords, M, dtype=torch.float32)
    texts = read_sst2(tsv, n)
    t0 = time.perf_counter()
    words = 0
    for text in texts:
        words += len(ref.sentence(text))
    dt = time.perf_counter() - t0
    print(json.dumps({"sentences": len(texts), "words": words, "seconds": dt, "sentences_per_s": len(texts) / dt}))


def main(argv):
    if len(argv) >= 2 and argv[1] == "make-model":
        d, kv = argv[2], dict(zip(argv[3::2], argv[4::2]))
        make_model(d, kv["--vocab"], int(kv.get("--layers", 2)), int(kv.get("--hidden", 64)),
                   int(kv.get("--heads", 4)), int(kv.get("--inter", 128)), int(kv.get("--max-pos", 512)),
                   int(kv.get("--seed", 1)))
        return 0
    if len(argv) == 9 and argv[1] == "candidates":
        candidates(argv[2], argv[3], argv[4], argv[5], int(argv[6]), int(argv[7]), argv[8])
        return 0
    if len(argv) == 6 and argv[1] == "glove-neighbours":
        glove_neighbours(argv[2], int(argv[3]), int(argv[4]), argv[5])
        return 0
    if len(argv) == 5 and argv[1] == "compare":
        return compare(argv[2], argv[3], float(argv[4]))
    if len(argv) == 9 and argv[1] == "bench":
        bench(argv[2], argv[3], argv[4], argv[5], int(argv[6]), int(argv[7]), int(argv[8]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
