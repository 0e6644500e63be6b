/* bench_bert - throughput and peak memory of the BERT model (tb/model/bert.h), one case per process so
 * that the peak RSS belongs to that case alone. Run side by side with bench_bert_torch.py by
 * scripts/bench-bert. Prints one JSON object per line.
 *
 * Cases:
 *   a          BERT-base forward (12L/768/3072/12 heads) returning what a TinyBERT4 student
 *              needs: hidden states 0,3,6,9,12 and the pre-softmax scores of layers 2,5,8,11
 *   b          TinyBERT4 (4L/312/1200/12 heads, fit_dense 312->768) training step with the
 *              stage-1 loss (attention + hidden) against precomputed teacher features, BertAdam
 *   c          the same with the stage-2 loss (soft cross-entropy on 2 labels)
 *   d-teacher  small teacher forward (4L/256/1024/4 heads) returning the student's features
 *   d-student  small student (2L/128/512/4 heads, fit 128->256) stage-1 training step
 *   sgemm      raw BLIS sgemm GFLOPS at the model's GEMM shapes
 * Training cases run with dropout on (0.1), as distillation does.
 *
 * Usage: bench_bert --case a|b|c|d-teacher|d-student|sgemm [--batch 32] [--seq 128]
 *                   [--threads N] [--iters N] [--warmup N]
 */
#include "tb/model/bert.h"
#include "tb/base/error.h"
#include "tb/model/ops.h"
#include "tb/model/optim.h"
#include "tb/base/rng.h"

#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static tb_bert_config make_config(int L, int C, int F, int NH)
{
    tb_bert_config c = {0};
    c.vocab_size = 30522;
    c.hidden_size = C;
    c.num_hidden_layers = L;
    c.num_attention_heads = NH;
    c.intermediate_size = F;
    c.max_position_embeddings = 512;
    c.type_vocab_size = 2;
    c.layer_norm_eps = 1e-12f;
    c.hidden_dropout_prob = 0.1f;
    c.attention_probs_dropout_prob = 0.1f;
    c.initializer_range = 0.02f;
    c.pad_token_id = 0;
    c.classifier_dropout = 0.1f;
    return c;
}

typedef struct opts {
    const char *bcase;
    int batch, seq, threads, iters, warmup;
} opts;

static void fill_inputs(int32_t *ids, int32_t *types, int32_t *mask, int B, int T)
{
    for (int i = 0; i < B * T; i++) {
        ids[i] = 1000 + (int32_t)((i * 7919u) % 29000u);
        types[i] = (i % T) >= T / 2;
        mask[i] = 1;
    }
}

/* secs: total over the timed iterations; best: the fastest single iteration (the machine may be
 * shared, so the best iteration is the least disturbed estimate; both are reported). */
static void emit(const opts *o, const char *config, double secs, double best, double cpu, int iters,
                 double flops_per_iter, size_t arena_bytes)
{
    double sps = (double)o->batch * iters / secs;
    printf("{\"bench\":\"bert-%s\",\"impl\":\"tinybert-c\",\"config\":\"%s\",\"batch\":%d,\"seq\":%d,"
           "\"threads\":%d,\"iters\":%d,\"samples_per_s\":%.3f,\"best_samples_per_s\":%.3f,\"gflops\":%.2f,"
           "\"best_gflops\":%.2f,\"cpu_s_per_iter\":%.4f,\"peak_rss_mb\":%.1f,\"arena_mb\":%.1f}\n",
           o->bcase, config, o->batch, o->seq, o->threads, iters, sps, (double)o->batch / best,
           flops_per_iter * iters / secs / 1e9, flops_per_iter / best / 1e9, cpu / iters, peak_rss_mb(),
           (double)arena_bytes / 1e6);
    fflush(stdout);
}

/* Teacher forward returning the features of a student with `student_layers`. */
static int bench_teacher(const opts *o, tb_bert_config c, int student_layers, const char *name)
{
    int rc = TB_OK;
    tb_bert_model m;
    const int B = o->batch, T = o->seq, L = c.num_hidden_layers, k = L / student_layers;
    int32_t *ids = malloc(sizeof(int32_t) * B * T), *types = malloc(sizeof(int32_t) * B * T),
            *mask = malloc(sizeof(int32_t) * B * T);
    uint64_t keep = 0;
    for (int i = 0; i < student_layers; i++) keep |= (uint64_t)1 << (i * k + k - 1);
    fill_inputs(ids, types, mask, B, T);
    TB_TRY(tb_bert_init(&m, &c));
    tb_bert_init_random(&m, 1);
    tb_bert_set_threads(&m, o->threads);
    uint64_t keep_hidden = 0;
    for (int j = 0; j <= student_layers; j++) keep_hidden |= (uint64_t)1 << (j * k);
    tb_bert_arena_spec spec = {B, T, TB_BERT_INFER, keep, keep_hidden, 0, 0};
    TB_TRY(tb_bert_arena_reserve_ex(&m, &spec));
    tb_bert_batch bt = {B, T, ids, types, mask};
    tb_bert_run run = {.dropout = 0, .scores_layers = keep};
    for (int i = 0; i < o->warmup; i++) TB_TRY(tb_bert_forward(&m, &bt, &run));
    double secs = 0, best = 1e30, cpu = 0;
    for (int i = 0; i < o->iters; i++) {
        double t0 = now(), c0 = cpu_now();
        TB_TRY(tb_bert_forward(&m, &bt, &run));
        double dt = now() - t0;
        cpu += cpu_now() - c0;
        secs += dt;
        if (dt < best) best = dt;
    }
    emit(o, name, secs, best, cpu, o->iters, tb_bert_forward_flops(&m, B, T, &run), tb_bert_arena_bytes(&m));
    tb_bert_free(&m);
error:
    free(ids);
    free(types);
    free(mask);
    return rc;
}

/* Student training step: forward, stage loss, backward, BertAdam. */
static int bench_student(const opts *o, tb_bert_config c, int teacher_layers, int teacher_hidden,
                         int teacher_heads, tb_distill_kind kind, const char *name)
{
    int rc = TB_OK;
    tb_bert_model m = {0};
    tb_adam adam = {0};
    const int B = o->batch, T = o->seq, M = c.num_hidden_layers, k = teacher_layers / M;
    int32_t *ids = malloc(sizeof(int32_t) * B * T), *types = malloc(sizeof(int32_t) * B * T),
            *mask = malloc(sizeof(int32_t) * B * T);
    const float **th = calloc((size_t)teacher_layers + 1, sizeof *th);
    const float **ts = calloc((size_t)teacher_layers, sizeof *ts);
    float *feat = NULL;
    fill_inputs(ids, types, mask, B, T);
    c.head = TB_HEAD_TINYBERT;
    c.num_labels = 2;
    c.fit_size = teacher_hidden;
    TB_TRY(tb_bert_init(&m, &c));
    tb_bert_init_random(&m, 2);
    tb_bert_set_threads(&m, o->threads);
    TB_TRY(tb_bert_arena_reserve(&m, B, T, TB_BERT_TRAIN, 0, 0));
    if (kind == TB_DISTILL_INTERMEDIATE) {
        tb_bert_set_trainable(&m, "bert.pooler.", 0);
        tb_bert_set_trainable(&m, "classifier.", 0);
    } else {
        tb_bert_set_trainable(&m, "fit_dense.", 0);
    }
    /* Precomputed teacher features (as a stream would deliver them), random values. */
    size_t nh = (size_t)B * T * teacher_hidden, ns = (size_t)B * teacher_heads * T * T;
    size_t total = (size_t)(M + 1) * nh + (size_t)M * ns + (size_t)B * 2;
    if (kind != TB_DISTILL_INTERMEDIATE) total = (size_t)B * 2;
    feat = tb_aligned_alloc(total * sizeof(float));
    TB_CHECK(feat, TB_ENOMEM, "out of memory for teacher features");
    tb_rng_uniform(tb_rng_key_make(3, TB_RNG_INIT), 0, 0, 0, feat, total);
    size_t off = 0;
    if (kind == TB_DISTILL_INTERMEDIATE) {
        for (int j = 0; j <= M; j++, off += nh) th[j * k] = feat + off;
        for (int i = 0; i < M; i++, off += ns) ts[i * k + k - 1] = feat + off;
    }
    tb_bert_teacher tf = {teacher_layers, teacher_hidden, th, ts, feat + off};
    tb_adam_options ao;
    tb_adam_options_default(&ao);
    ao.schedule = TB_SCHEDULE_CONSTANT;
    ao.t_total = -1;
    TB_TRY(tb_adam_init(&adam, &m.params, &ao));
    tb_bert_batch bt = {B, T, ids, types, mask};
    /* stage 2 reads only the logits: the last layer runs on the [CLS] rows alone */
    tb_bert_run run = {.dropout = 1, .seed = 42, .logits = kind == TB_DISTILL_PREDICTION,
                       .cls_only = kind == TB_DISTILL_PREDICTION};
    double secs = 0, best = 1e30, cpu = 0, phase[4] = {0}; /* CPU s: forward, loss, backward, adam */
    for (int i = 0; i < o->warmup + o->iters; i++) {
        double t0 = now(), c0 = cpu_now(), c[5];
        run.seq = (uint64_t)i;
        tb_bert_distill_losses dl;
        tb_bert_grads g;
        c[0] = c0;
        tb_bert_zero_grad(&m);
        TB_TRY(tb_bert_forward(&m, &bt, &run));
        c[1] = cpu_now();
        TB_TRY(tb_bert_distill_loss(&m, &tf, kind, 1.0f, NULL, &dl, &g));
        c[2] = cpu_now();
        TB_TRY(tb_bert_backward(&m, &g));
        c[3] = cpu_now();
        TB_TRY(tb_adam_step(&adam, &m.params));
        c[4] = cpu_now();
        double dt = now() - t0;
        if (i >= o->warmup) {
            cpu += c[4] - c0;
            for (int k = 0; k < 4; k++) phase[k] += c[k + 1] - c[k];
            secs += dt;
            if (dt < best) best = dt;
        }
    }
    emit(o, name, secs, best, cpu, o->iters, 3.0 * tb_bert_forward_flops(&m, B, T, &run), tb_bert_arena_bytes(&m));
    printf("{\"bench\":\"bert-%s-phases\",\"impl\":\"tinybert-c\",\"batch\":%d,\"seq\":%d,\"threads\":%d,"
           "\"cpu_s_per_iter\":{\"forward\":%.4f,\"loss\":%.4f,\"backward\":%.4f,\"adam\":%.4f}}\n",
           o->bcase, B, T, o->threads, phase[0] / o->iters, phase[1] / o->iters, phase[2] / o->iters,
           phase[3] / o->iters);
error:
    tb_adam_free(&adam);
    tb_bert_free(&m);
    tb_aligned_free(feat);
    free(th);
    free(ts);
    free(ids);
    free(types);
    free(mask);
    return rc;
}

/* Raw sgemm C[M,N] = A[M,K] B[K,N]^T-free row-major, threaded as the model runs it. */
static void bench_sgemm(const opts *o)
{
    struct { int M, N, K; const char *what; } shapes[] = {
        {o->batch * o->seq, 3 * 768, 768, "bert-base qkv"},
        {o->batch * o->seq, 3072, 768, "bert-base ffn1"},
        {o->batch * o->seq, 768, 3072, "bert-base ffn2"},
        {o->batch * o->seq, 1200, 312, "tinybert4 ffn1"},
        {o->batch * o->seq, 3 * 312, 312, "tinybert4 qkv"},
    };
    tb_ops_set_threads(o->threads);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        float *a = tb_aligned_alloc(sizeof(float) * (size_t)M * K), *b = tb_aligned_alloc(sizeof(float) * (size_t)N * K),
              *c = tb_aligned_alloc(sizeof(float) * (size_t)M * N);
        if (!a || !b || !c) {
            fprintf(stderr, "bench_bert: out of memory for sgemm %dx%dx%d\n", M, N, K);
            tb_aligned_free(a);
            tb_aligned_free(b);
            tb_aligned_free(c);
            continue;
        }
        tb_rng_uniform(tb_rng_key_make(1, TB_RNG_INIT), 0, 0, 0, a, (size_t)M * K);
        tb_rng_uniform(tb_rng_key_make(1, TB_RNG_INIT), 0, 1, 0, b, (size_t)N * K);
        tb_linear_forward(c, a, b, NULL, M, K, N);
        int iters = o->iters * 3;
        double t0 = now();
        for (int i = 0; i < iters; i++) tb_linear_forward(c, a, b, NULL, M, K, N);
        double secs = now() - t0;
        printf("{\"bench\":\"sgemm\",\"impl\":\"tinybert-c\",\"config\":\"%s %dx%dx%d\",\"batch\":%d,\"seq\":%d,"
               "\"threads\":%d,\"samples_per_s\":null,\"gflops\":%.2f,\"peak_rss_mb\":%.1f}\n",
               shapes[s].what, M, N, K, o->batch, o->seq, o->threads, 2.0 * M * N * K * iters / secs / 1e9,
               peak_rss_mb());
        tb_aligned_free(a);
        tb_aligned_free(b);
        tb_aligned_free(c);
    }
    /* The per-head attention product, single-threaded BLIS (as run inside the (batch, head) loop). */
    int T = o->seq, HS = 26;
    float *q = tb_aligned_alloc(sizeof(float) * (size_t)T * HS), *s = tb_aligned_alloc(sizeof(float) * (size_t)T * T);
    tb_rng_uniform(tb_rng_key_make(1, TB_RNG_INIT), 0, 2, 0, q, (size_t)T * HS);
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(1, &rntm);
    float one = 1.0f, zero = 0.0f;
    int iters = 2000;
    double t0 = now();
    for (int i = 0; i < iters; i++)
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, T, T, HS, &one, q, HS, 1, q, HS, 1, &zero, s, T, 1,
                     NULL, &rntm);
    double secs = now() - t0;
    printf("{\"bench\":\"sgemm\",\"impl\":\"tinybert-c\",\"config\":\"attention QK^T %dx%dx%d 1 thread\","
           "\"batch\":1,\"seq\":%d,\"threads\":1,\"samples_per_s\":null,\"gflops\":%.2f,\"peak_rss_mb\":%.1f}\n",
           T, T, HS, T, 2.0 * T * T * HS * iters / secs / 1e9, peak_rss_mb());
    tb_aligned_free(q);
    tb_aligned_free(s);
}

int main(int argc, char **argv)
{
    opts o = {"b", 32, 128, 2, 3, 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_bert: option %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--case")) o.bcase = v;
        else if (!strcmp(a, "--batch")) o.batch = atoi(v);
        else if (!strcmp(a, "--seq")) o.seq = atoi(v);
        else if (!strcmp(a, "--threads")) o.threads = atoi(v);
        else if (!strcmp(a, "--iters")) o.iters = atoi(v);
        else if (!strcmp(a, "--warmup")) o.warmup = atoi(v);
        else {
            fprintf(stderr, "bench_bert: unknown option %s (see the comment at the top of bench/bench_bert.c)\n", a);
            return 2;
        }
    }
    if (o.batch <= 0 || o.seq <= 0 || o.seq > 512 || o.threads <= 0 || o.iters <= 0 || o.warmup < 0) {
        fprintf(stderr, "bench_bert: batch, threads, iters must be > 0, seq in 1..512\n");
        return 2;
    }
    int rc = TB_OK;
    if (!strcmp(o.bcase, "a"))
        rc = bench_teacher(&o, make_config(12, 768, 3072, 12), 4, "bert-base forward, tinybert4 features");
    else if (!strcmp(o.bcase, "b"))
        rc = bench_student(&o, make_config(4, 312, 1200, 12), 12, 768, 12, TB_DISTILL_INTERMEDIATE,
                           "tinybert4 stage-1 step");
    else if (!strcmp(o.bcase, "c"))
        rc = bench_student(&o, make_config(4, 312, 1200, 12), 12, 768, 12, TB_DISTILL_PREDICTION,
                           "tinybert4 stage-2 step");
    else if (!strcmp(o.bcase, "d-teacher"))
        rc = bench_teacher(&o, make_config(4, 256, 1024, 4), 2, "small teacher forward 4L/256");
    else if (!strcmp(o.bcase, "d-student"))
        rc = bench_student(&o, make_config(2, 128, 512, 4), 4, 256, 4, TB_DISTILL_INTERMEDIATE,
                           "small student stage-1 step 2L/128");
    else if (!strcmp(o.bcase, "sgemm"))
        bench_sgemm(&o);
    else {
        fprintf(stderr, "bench_bert: unknown case '%s' (a, b, c, d-teacher, d-student, sgemm)\n", o.bcase);
        return 2;
    }
    if (rc != TB_OK) {
        fprintf(stderr, "bench_bert: %s\n", tb_err_msg());
        return 1;
    }
    return 0;
}
