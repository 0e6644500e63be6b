#!/usr/bin/python3
"""PyTorch baseline for bench/bench_bert.c: the same cases, shapes and JSON lines.

Usage: bench_bert_torch.py --case a|b|c|d-teacher|d-student [--batch 32] [--seq 128]
                           [--threads N] [--iters N] [--warmup N]
Run with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS = N as well (scripts/bench-bert does). The model
is a plain float32 torch BERT (nn.Linear, F.layer_norm, erf GELU, softmax), the strongest
set-up Debian's torch 1.13 offers on this machine (no fused attention kernel in 1.13). Training
cases use dropout 0.1, the TinyBERT stage losses and torch.optim.AdamW (BertAdam's cost).
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Layer(nn.Module):
    def __init__(self, C, F_, NH, p):
        super().__init__()
        self.NH, self.p = NH, p
        self.qkv = nn.Linear(C, 3 * C)
        self.ao = nn.Linear(C, C)
        self.ln1 = nn.LayerNorm(C, eps=1e-12)
        self.i = nn.Linear(C, F_)
        self.o = nn.Linear(F_, C)
        self.ln2 = nn.LayerNorm(C, eps=1e-12)

    def forward(self, h, ext):
        B, T, C = h.shape
        HS = C // self.NH
        q, k, v = self.qkv(h).view(B, T, 3, self.NH, HS).permute(2, 0, 3, 1, 4)
        s = q @ k.transpose(-1, -2) / math.sqrt(HS) + ext
        p = F.dropout(torch.softmax(s, -1), self.p, self.training)
        ctx = (p @ v).transpose(1, 2).reshape(B, T, C)
        a = self.ln1(h + F.dropout(self.ao(ctx), self.p, self.training))
        h = self.ln2(a + F.dropout(self.o(F.gelu(self.i(a))), self.p, self.training))
        return h, s


class Bert(nn.Module):
    def __init__(self, L, C, F_, NH, V=30522, fit=0, labels=2, p=0.1):
        super().__init__()
        self.p = p
        self.word = nn.Embedding(V, C, padding_idx=0)
        self.pos = nn.Embedding(512, C)
        self.ttype = nn.Embedding(2, C)
        self.ln = nn.LayerNorm(C, eps=1e-12)
        self.layers = nn.ModuleList([Layer(C, F_, NH, p) for _ in range(L)])
        self.pool = nn.Linear(C, C)
        self.cls = nn.Linear(C, labels)
        self.fit = nn.Linear(C, fit) if fit else None

    def forward(self, ids, types, mask, logits=False):
        T = ids.shape[1]
        h = self.word(ids) + self.pos.weight[:T][None] + self.ttype(types)
        h = F.dropout(self.ln(h), self.p, self.training)
        ext = (1.0 - mask[:, None, None, :].float()) * -10000.0
        hidden, scores = [h], []
        for layer in self.layers:
            h, s = layer(h, ext)
            hidden.append(h)
            scores.append(s)
        z = self.cls(torch.relu(torch.tanh(self.pool(h[:, 0])))) if logits else None
        return hidden, scores, z


def att_loss(s, t):
    s = torch.where(s <= -100, torch.zeros_like(s), s)
    t = torch.where(t <= -100, torch.zeros_like(t), t)
    return F.mse_loss(s, t)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fwd_flops(L, C, F_, B, T):
    N = B * T
    return L * (2.0 * N * C * 3 * C + 4.0 * B * T * T * C + 2.0 * N * C * C + 4.0 * N * C * F_)


def inputs(B, T):
    i = torch.arange(B * T)
    ids = (1000 + (i * 7919) % 29000).view(B, T)
    types = ((i % T) >= T // 2).long().view(B, T)
    return ids, types, torch.ones(B, T, dtype=torch.long)


def emit(a, config, times, flops, cpu):
    """times: seconds of each timed iteration; the best one is the least disturbed estimate.
    cpu: process CPU seconds over the timed iterations."""
    secs, best, iters = sum(times), min(times), len(times)
    print(json.dumps({"bench": f"bert-{a.case}", "impl": "torch", "config": config, "batch": a.batch,
                      "seq": a.seq, "threads": a.threads, "iters": iters,
                      "samples_per_s": round(a.batch * iters / secs, 3),
                      "best_samples_per_s": round(a.batch / best, 3),
                      "gflops": round(flops * iters / secs / 1e9, 2), "best_gflops": round(flops / best / 1e9, 2),
                      "cpu_s_per_iter": round(cpu / iters, 4),
                      "peak_rss_mb": round(peak_rss_mb(), 1)}),
          flush=True)


def bench_teacher(a, L, C, F_, NH, M, name):
    m = Bert(L, C, F_, NH).eval()
    ids, types, mask = inputs(a.batch, a.seq)
    k = L // M
    with torch.no_grad():
        def run():
            hidden, scores, _ = m(ids, types, mask)
            return [hidden[j * k] for j in range(M + 1)], [scores[i * k + k - 1] for i in range(M)]
        for _ in range(a.warmup):
            run()
        times, cpu = [], 0.0
        for _ in range(a.iters):
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            times.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
    emit(a, name, times, fwd_flops(L, C, F_, a.batch, a.seq), cpu)


def bench_student(a, L, C, F_, NH, TL, TC, stage, name):
    m = Bert(L, C, F_, NH, fit=TC).train()
    ids, types, mask = inputs(a.batch, a.seq)
    B, T, k = a.batch, a.seq, TL // L
    th = [torch.rand(B, T, TC) for _ in range(L + 1)]
    ts = [torch.rand(B, NH, T, T) for _ in range(L)]
    tl = torch.rand(B, 2)
    if stage == 1:
        params = [p for n, p in m.named_parameters() if not n.startswith(("pool.", "cls."))]
    else:
        params = [p for n, p in m.named_parameters() if not n.startswith("fit.")]
    opt = torch.optim.AdamW(params, lr=5e-5, eps=1e-6, weight_decay=0.01)
    times, cpu = [], 0.0
    for it in range(a.warmup + a.iters):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=False)
        hidden, scores, z = m(ids, types, mask, logits=stage == 2)
        if stage == 1:
            loss = sum(att_loss(scores[i], ts[i]) for i in range(L))
            loss = loss + sum(F.mse_loss(m.fit(hidden[j]), th[j]) for j in range(L + 1))
        else:
            loss = (-torch.softmax(tl, -1) * torch.log_softmax(z, -1)).mean()
        loss.backward()
        for p in params:
            if p.grad is not None:
                torch.nn.utils.clip_grad_norm_([p], 1.0)
        opt.step()
        if it >= a.warmup:
            times.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
    emit(a, name, times, 3.0 * fwd_flops(L, C, F_, B, T), cpu)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="b")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.case == "a":
        bench_teacher(a, 12, 768, 3072, 12, 4, "bert-base forward, tinybert4 features")
    elif a.case == "b":
        bench_student(a, 4, 312, 1200, 12, 12, 768, 1, "tinybert4 stage-1 step")
    elif a.case == "c":
        bench_student(a, 4, 312, 1200, 12, 12, 768, 2, "tinybert4 stage-2 step")
    elif a.case == "d-teacher":
        bench_teacher(a, 4, 256, 1024, 4, 2, "small teacher forward 4L/256")
    elif a.case == "d-student":
        bench_student(a, 2, 128, 512, 4, 4, 256, 1, "small student stage-1 step 2L/128")
    else:
        raise SystemExit(f"unknown case {a.case}")


if __name__ == "__main__":
    main()
