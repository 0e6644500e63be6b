/* bench_ops: time of each tb/model/ops.h kernel and tb/model/loss.h loss at TinyBERT4 / BERT-base shapes
 * (batch 32, seq 128). Prints one JSON object per line: {"bench", "op", "config", "batch", "seq",
 * "threads", "ms", "samples_per_s", "gflops", "peak_rss_mb"} (samples/s = batch / time of one call).
 * Usage: bench_ops [threads] [reps] [0 = all | 1 = tinybert4 | 2 = bert-base | 3 = small student 2L/128, seq 64] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tb/base/error.h"
#include "tb/model/loss.h"
#include "tb/model/ops.h"
#include "tb/base/rng.h"
#include "tb/base/tensor.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *buf(size_t n, float lo, float hi, unsigned seed)
{
    float *p = tb_aligned_alloc(n * sizeof(float));
    if (!p) { fprintf(stderr, "bench_ops: out of memory (%zu floats)\n", n); exit(1); }
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = lo + (hi - lo) * (float)(s >> 8) * 0x1.0p-24f;
    }
    return p;
}

typedef struct { const char *config; int B, T, C, NH, F; } shape;

static int g_threads, g_reps;

static void report(const char *op, const shape *s, double sec, double flops)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"bench\": \"ops\", \"op\": \"%s\", \"config\": \"%s\", \"batch\": %d, \"seq\": %d, \"threads\": %d, "
           "\"ms\": %.3f, \"samples_per_s\": %.1f, \"gflops\": %.2f, \"peak_rss_mb\": %.1f}\n", op, s->config, s->B,
           s->T, g_threads, sec * 1e3, s->B / sec, flops > 0 ? flops / sec * 1e-9 : 0.0, ru.ru_maxrss / 1024.0);
    fflush(stdout);
}

#define TIME(op, s, flops, call)                                                        \
    do {                                                                                \
        if ((call) != TB_OK) { fprintf(stderr, "%s: %s\n", op, tb_err_msg()); exit(1); } \
        double t0 = now_s();                                                            \
        for (int r_ = 0; r_ < g_reps; r_++) (void)(call);                               \
        report(op, s, (now_s() - t0) / g_reps, flops);                                  \
    } while (0)

static void run(const shape *s)
{
    const int B = s->B, T = s->T, C = s->C, NH = s->NH, HS = C / NH, F = s->F, N = B * T;
    const size_t NC = (size_t)N * C, NF = (size_t)N * F, NS = (size_t)B * NH * T * T;
    float *x = buf(NC, -1, 1, 1), *y = buf(NC, -1, 1, 2), *w = buf((size_t)F * C, -0.05f, 0.05f, 3);
    float *b = buf(F > 3 * C ? F : 3 * C, -0.1f, 0.1f, 4), *h = buf(NF, -3, 3, 5), *h2 = buf(NF, -1, 1, 6);
    float *qkv = buf(3 * NC, -1, 1, 7), *dqkv = buf(3 * NC, 0, 0, 8), *sc = buf(NS, 0, 0, 9), *pr = buf(NS, 0, 0, 10);
    float *dsc = buf(NS, -0.01f, 0.01f, 11), *mean = buf(N, 0, 0, 12), *rstd = buf(N, 0, 0, 13);
    float *lw = buf(C, 0.9f, 1.1f, 14), *lb = buf(C, -0.1f, 0.1f, 15), *dw = buf((size_t)F * C, 0, 0, 16);
    int32_t *mask = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) mask[i] = (i % T) < T - (i / T) % 17;
    size_t nscr = tb_attention_scratch_floats(T, HS, g_threads);
    float *scr = buf(nscr, 0, 0, 17);
    tb_dropout d = {0.1f, tb_rng_key_make(1, TB_RNG_DROPOUT), 1, 2};
    double lin = 2.0 * N * C * F;
    TIME("linear_fwd C->F", s, lin, tb_linear_forward(h, x, w, b, N, C, F));
    TIME("linear_bwd C->F", s, 2 * lin, tb_linear_backward(x, dw, b, h, y, w, N, C, F));
    TIME("bias_gelu_fwd", s, 0, tb_bias_gelu_forward(h2, h, b, N, F));
    TIME("gelu_bwd", s, 0, tb_gelu_backward(h2, h, h, NF));
    TIME("layernorm_fwd", s, 0, tb_layernorm_forward(y, mean, rstd, x, lw, lb, N, C, 1e-12f));
    TIME("layernorm_bwd", s, 0, tb_layernorm_backward(x, lw, lb, y, x, lw, mean, rstd, N, C));
    TIME("dropout_fwd", s, 0, tb_dropout_forward(y, x, NC, &d));
    TIME("dropout_bwd", s, 0, tb_dropout_backward(y, x, NC, &d));
    double att = 4.0 * B * NH * (double)T * T * HS;
    TIME("attention_fwd", s, att, tb_attention_forward(x, sc, pr, qkv, qkv + C, qkv + 2 * C, 3 * C, mask, B, T, NH, HS, NULL, scr, nscr));
    TIME("attention_fwd_drop", s, att, tb_attention_forward(x, sc, pr, qkv, qkv + C, qkv + 2 * C, 3 * C, mask, B, T, NH, HS, &d, scr, nscr));
    TIME("rng_uniform [B,NH,T,T]", s, 0, (tb_rng_uniform(d.key, 1, 2, 0, pr, NS), TB_OK));
    /* probs again (the line above overwrote them) */
    tb_attention_forward(x, sc, pr, qkv, qkv + C, qkv + 2 * C, 3 * C, mask, B, T, NH, HS, NULL, scr, nscr);
    TIME("attention_bwd_drop", s, 2 * att, tb_attention_backward(dqkv, dqkv + C, dqkv + 2 * C, 3 * C, y, dsc, pr, qkv, qkv + C, qkv + 2 * C, 3 * C, B, T, NH, HS, &d, scr, nscr));
    TIME("attention_bwd", s, 2 * att, tb_attention_backward(dqkv, dqkv + C, dqkv + 2 * C, 3 * C, y, dsc, pr, qkv, qkv + C, qkv + 2 * C, 3 * C, B, T, NH, HS, NULL, scr, nscr));
    double l;
    TIME("loss_att_mse", s, 0, tb_loss_att_mse(&l, dsc, sc, pr, NS, 1.0f));
    TIME("loss_mse", s, 0, tb_loss_mse(&l, y, x, y, NC, 1.0f));
    float *all[] = {x, y, w, b, h, h2, qkv, dqkv, sc, pr, dsc, mean, rstd, lw, lb, dw, scr};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tb_aligned_free(all[i]);
    free(mask);
}

int main(int argc, char **argv)
{
    g_threads = argc > 1 ? atoi(argv[1]) : 2;
    g_reps = argc > 2 ? atoi(argv[2]) : 5;
    if (g_threads < 1 || g_reps < 1) { fprintf(stderr, "usage: bench_ops [threads >= 1] [reps >= 1]\n"); return 2; }
    if (tb_ops_set_threads(g_threads) != TB_OK) { fprintf(stderr, "%s\n", tb_err_msg()); return 1; }
    const shape shapes[] = {
        {"tinybert4", 32, 128, 312, 12, 1200},
        {"bert-base", 32, 128, 768, 12, 3072},
        {"small-student", 32, 64, 128, 4, 512},
    };
    int which = argc > 3 ? atoi(argv[3]) : 0;
    for (int i = 0; i < 3; i++)
        if (which == 0 || which == i + 1) run(&shapes[i]);
    return 0;
}
