/* bert_arena.c - the activation arena: one allocation per (max batch, max sequence, mode). */
#include "bert_internal.h"

#include "tb/base/error.h"
#include "tb/model/ops.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

int tb_bert_threads_now(const tb_bert_model *m)
{
    return m->threads > 0 ? m->threads : omp_get_max_threads();
}

/* Hands out 64-byte aligned slices of `base`; with base == NULL it only counts. */
typedef struct cursor {
    float *base;
    size_t used;
} cursor;

static float *take(cursor *c, size_t n)
{
    float *p = c->base ? c->base + c->used : NULL;
    c->used += (n + 15) / 16 * 16;
    return p;
}

/* Assigns every buffer of the arena (or, with c->base == NULL, counts its floats). */
static void layout(tb_bert_model *m, tb_bert_arena *a, cursor *c)
{
    const tb_bert_config *cf = &m->config;
    const size_t B = (size_t)a->max_B, T = (size_t)a->max_T, N = B * T;
    const size_t C = (size_t)cf->hidden_size, F = (size_t)cf->intermediate_size;
    const size_t NH = (size_t)cf->num_attention_heads, V = (size_t)cf->vocab_size;
    const size_t S = B * NH * T * T;
    const int L = cf->num_hidden_layers;
    const int train = a->mode == TB_BERT_TRAIN;

    a->ids = (int32_t *)take(c, N);
    a->types = (int32_t *)take(c, N);
    a->emb_sum = take(c, N * C);
    a->e_mean = take(c, N);
    a->e_rstd = take(c, N);
    float *rot[2] = {NULL, NULL}; /* INFER: the two buffers of hidden states not kept */
    int have_rot[2] = {0, 0};
    for (int j = 0; j <= L; j++) {
        float *h;
        if (train || (j < 64 && (a->keep_hidden >> j & 1))) {
            h = take(c, N * C);
        } else {
            if (!have_rot[j % 2]) {
                rot[j % 2] = take(c, N * C);
                have_rot[j % 2] = 1;
            }
            h = rot[j % 2];
        }
        if (c->base) a->hidden[j] = h;
    }
    tb_bert_layer_act shared = {0};
    for (int l = 0; l < L; l++) {
        tb_bert_layer_act x;
        if (!train && l == 0) {
            /* One set of work buffers for every layer, aliased where lifetimes allow:
             * a (attention LayerNorm output) over ctx, res2 over res1, GELU in place. */
            x.qkv = take(c, N * 3 * C);
            x.scores = take(c, S);
            x.probs = take(c, S);
            x.ctx = take(c, N * C);
            x.res1 = take(c, N * C);
            x.a = x.ctx;
            x.a_mean = take(c, N);
            x.a_rstd = take(c, N);
            x.ffn_pre = take(c, N * F);
            x.ffn_act = x.ffn_pre;
            x.res2 = x.res1;
            x.o_mean = take(c, N);
            x.o_rstd = take(c, N);
            a->gelu_scratch = take(c, (size_t)TB_BERT_GELU_ROWS * F);
            shared = x;
            if (a->keep_scores & 1) x.scores = take(c, S);
        } else if (train) {
            x.qkv = take(c, N * 3 * C);
            x.scores = take(c, S);
            x.probs = take(c, S);
            x.ctx = take(c, N * C);
            x.res1 = take(c, N * C);
            x.a = take(c, N * C);
            x.a_mean = take(c, N);
            x.a_rstd = take(c, N);
            x.ffn_pre = take(c, N * F);
            x.ffn_act = take(c, N * F);
            x.res2 = take(c, N * C);
            x.o_mean = take(c, N);
            x.o_rstd = take(c, N);
        } else {
            x = shared;
            if (a->keep_scores >> l & 1) x.scores = take(c, S);
        }
        if (c->base) a->layer[l] = x;
    }
    if (cf->head != TB_HEAD_NONE) {
        a->cls_in = take(c, B * C);
        a->pooled = take(c, B * C);
        a->head_act = take(c, B * C);
        a->logits = take(c, B * (size_t)cf->num_labels);
    }
    if (a->mlm) {
        const size_t R = (size_t)a->mlm_max_rows;
        a->mlm_pre = take(c, R * C);
        a->mlm_act = take(c, R * C);
        a->mlm_ln = take(c, R * C);
        a->mlm_mean = take(c, R);
        a->mlm_rstd = take(c, R);
        a->mlm_logits = take(c, R * V);
        a->mlm_in = take(c, R * C);
    }
    a->cls_work = take(c, 12 * B * C + 4 * B * F + 4 * B);
    a->attn_scratch_floats = tb_attention_scratch_floats((int)T, (int)(C / NH), a->nthreads);
    a->attn_scratch = take(c, a->attn_scratch_floats);
    if (train) {
        a->gx = take(c, N * C);
        a->gy = take(c, N * C);
        a->gz = take(c, N * C);
        a->gw = take(c, N * C);
        a->gf1 = take(c, N * F);
        a->gf2 = take(c, N * F);
        a->gqkv = take(c, N * 3 * C);
        a->gb1 = take(c, B * C);
        a->gb2 = take(c, B * C);
        a->gb3 = take(c, B * C);
        if (cf->fit_size > 0) {
            a->fit_out = take(c, N * (size_t)cf->fit_size);
            a->fit_grad = take(c, N * (size_t)cf->fit_size);
            for (int j = 0; j <= L; j++) {
                float *p = take(c, N * C);
                if (c->base) a->dhidden[j] = p;
            }
            for (int l = 0; l < L; l++) {
                float *p = take(c, S);
                if (c->base) a->dscores[l] = p;
            }
        }
        if (cf->head != TB_HEAD_NONE) a->dlogits = take(c, B * (size_t)cf->num_labels);
    }
}

void tb_bert_arena_release(tb_bert_model *m)
{
    if (!m || !m->arena) return;
    tb_aligned_free(m->arena->base);
    free(m->arena->ptrs);
    free(m->arena);
    m->arena = NULL;
}

int tb_bert_arena_reserve(tb_bert_model *m, int max_B, int max_T, tb_bert_mode mode,
                          uint64_t keep_scores, int mlm)
{
    tb_bert_arena_spec s = {max_B, max_T, mode, keep_scores, TB_BERT_ALL_LAYERS, mlm, 0};
    return tb_bert_arena_reserve_ex(m, &s);
}

int tb_bert_arena_reserve_ex(tb_bert_model *m, const tb_bert_arena_spec *spec)
{
    int rc = TB_OK;
    tb_bert_arena *a = NULL;
    TB_CHECK(m && m->params.values, TB_EINVAL, "tb_bert_arena_reserve: model is not initialised");
    TB_CHECK(spec, TB_EINVAL, "tb_bert_arena_reserve: spec is NULL");
    const int max_B = spec->max_B, max_T = spec->max_T, mlm = spec->mlm;
    const tb_bert_mode mode = spec->mode;
    uint64_t keep_scores = spec->keep_scores, keep_hidden = spec->keep_hidden;
    const tb_bert_config *cf = &m->config;
    const int L = cf->num_hidden_layers;
    TB_CHECK(max_B > 0 && max_T > 0, TB_EINVAL,
             "tb_bert_arena_reserve: batch %d and sequence %d must be > 0", max_B, max_T);
    TB_CHECK(max_T <= cf->max_position_embeddings, TB_EINVAL,
             "tb_bert_arena_reserve: sequence length %d exceeds max_position_embeddings %d", max_T,
             cf->max_position_embeddings);
    TB_CHECK(mode == TB_BERT_INFER || mode == TB_BERT_TRAIN, TB_EINVAL,
             "tb_bert_arena_reserve: unknown mode %d", (int)mode);
    TB_CHECK(!mlm || cf->mlm_head, TB_EINVAL,
             "tb_bert_arena_reserve: MLM logits requested but the model has no MLM head (config mlm_head = 0)");
    uint64_t all = L >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << L) - 1);
    uint64_t all_hidden = L + 1 >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << (L + 1)) - 1);
    if (mode == TB_BERT_TRAIN) {
        keep_scores = all;
        keep_hidden = all_hidden;
    }
    keep_scores &= all;
    keep_hidden &= all_hidden;
    int nt = tb_bert_threads_now(m);
    TB_CHECK(spec->mlm_max_rows >= 0, TB_EINVAL, "tb_bert_arena_reserve: mlm_max_rows %lld is negative",
             (long long)spec->mlm_max_rows);
    const int64_t all_rows = (int64_t)max_B * max_T;
    const int64_t mlm_rows = !mlm ? 0
                             : spec->mlm_max_rows > 0 && spec->mlm_max_rows < all_rows ? spec->mlm_max_rows : all_rows;

    tb_bert_arena *old = m->arena;
    if (old && old->max_B >= max_B && old->max_T >= max_T && old->mode == mode &&
        (old->keep_scores & keep_scores) == keep_scores &&
        (old->keep_hidden & keep_hidden) == keep_hidden && old->mlm >= (mlm != 0) &&
        old->mlm_max_rows >= mlm_rows && old->nthreads >= nt)
        return TB_OK;

    a = calloc(1, sizeof *a);
    TB_CHECK(a, TB_ENOMEM, "out of memory for the arena descriptor");
    a->max_B = max_B;
    a->max_T = max_T;
    a->mode = mode;
    a->keep_scores = keep_scores;
    a->keep_hidden = keep_hidden;
    a->mlm = mlm != 0;
    a->mlm_max_rows = mlm_rows;
    a->nthreads = nt;
    size_t np = (size_t)(L + 1) * 2 + (size_t)L;
    a->ptrs = calloc(1, np * sizeof(float *) + (size_t)L * sizeof(tb_bert_layer_act));
    TB_CHECK(a->ptrs, TB_ENOMEM, "out of memory for the arena descriptor");
    a->layer = (tb_bert_layer_act *)a->ptrs;
    a->hidden = (float **)(a->layer + L);
    a->dhidden = a->hidden + (L + 1);
    a->dscores = a->dhidden + (L + 1);

    cursor c = {NULL, 0};
    layout(m, a, &c);
    size_t floats = c.used;
    TB_CHECK(floats < ((size_t)1 << 40), TB_ENOMEM, "arena for batch %d x %d would be too large", max_B, max_T);
    a->base = tb_aligned_alloc(floats * sizeof(float));
    TB_CHECK(a->base, TB_ENOMEM,
             "out of memory for the activation arena (%.1f MB for batch %d x seq %d); use a smaller batch",
             floats * 4.0 / 1e6, max_B, max_T);
    a->floats = floats;
    c.base = a->base;
    c.used = 0;
    layout(m, a, &c);
    tb_bert_arena_release(m);
    m->arena = a;
    return TB_OK;
error:
    if (a) {
        free(a->ptrs);
        free(a);
    }
    return rc;
}

size_t tb_bert_arena_bytes(const tb_bert_model *m)
{
    return m && m->arena ? m->arena->floats * sizeof(float) : 0;
}

tb_bert_cls_work tb_bert_cls_slices(const tb_bert_arena *a, int B, int C, int F)
{
    const size_t BC = (size_t)B * C, BF = (size_t)B * F;
    float *w = a->cls_work;
    tb_bert_cls_work s;
    s.dh = w;
    s.r2 = w + BC;
    s.da = w + 2 * BC;
    s.dp = w + 3 * BC;
    s.av = w + 4 * BC;
    s.r1 = w + 5 * BC;
    s.dr1 = w + 6 * BC;
    s.dp1 = w + 7 * BC;
    s.cx = w + 8 * BC;
    s.dcx = w + 9 * BC;
    s.dr2 = w + 10 * BC;
    s.h = w + 11 * BC;
    s.fa = w + 12 * BC;
    s.dfa = s.fa + BF;
    s.fp = s.dfa + BF;
    s.dfp = s.fp + BF;
    s.om = s.dfp + BF;
    s.orr = s.om + B;
    s.am = s.orr + B;
    s.ar = s.am + B;
    return s;
}

void tb_bert_gather_cls(float *out, const float *x, int B, int T, int w)
{
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * w, x + (size_t)b * T * w, (size_t)w * sizeof(float));
}

void tb_bert_dropout_cls(float *out, const float *in, int B, int T, int w, float p, tb_rng_key key,
                         uint32_t batch_seq, uint32_t site)
{
    if (p <= 0) {
        if (out != in) memcpy(out, in, (size_t)B * w * sizeof(float));
        return;
    }
    const float scale = 1.0f / (1.0f - p);
    float u[256];
    for (int b = 0; b < B; b++) {
        uint64_t first = (uint64_t)b * T * w;
        for (int c0 = 0; c0 < w; c0 += 256) {
            int n = w - c0 < 256 ? w - c0 : 256;
            tb_rng_uniform(key, batch_seq, site, first + (uint64_t)c0, u, (size_t)n);
            for (int i = 0; i < n; i++) {
                float g = in[(size_t)b * w + c0 + i];
                out[(size_t)b * w + c0 + i] = u[i] >= p ? g * scale : 0.0f;
            }
        }
    }
}
