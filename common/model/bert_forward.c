/* bert_forward.c - the BERT forward pass composed from tb/model/ops.h, and its outputs. */
#include "bert_internal.h"

#include "tb/base/error.h"
#include "tb/model/ops.h"
#include "tb/base/rng.h"

#include <string.h>

#define P(m, i) ((float *)(m)->params.items[(i)].value.data)

static int check_inputs(const tb_bert_model *m, const tb_bert_batch *bt, const tb_bert_run *run)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    const tb_bert_arena *a = m->arena;
    TB_CHECK(bt && run, TB_EINVAL, "tb_bert_forward: batch or run is NULL");
    TB_CHECK(a, TB_EINVAL, "tb_bert_forward: no activation arena; call tb_bert_arena_reserve first");
    TB_CHECK(bt->B > 0 && bt->T > 0, TB_EINVAL, "tb_bert_forward: batch %d x seq %d must be positive",
             bt->B, bt->T);
    TB_CHECK(bt->B <= a->max_B && bt->T <= a->max_T, TB_EINVAL,
             "tb_bert_forward: batch %d x seq %d exceeds the arena (%d x %d); reserve a larger arena",
             bt->B, bt->T, a->max_B, a->max_T);
    TB_CHECK(bt->input_ids, TB_EINVAL, "tb_bert_forward: input_ids is NULL");
    const int64_t N = (int64_t)bt->B * bt->T;
    for (int64_t i = 0; i < N; i++) {
        TB_CHECK(bt->input_ids[i] >= 0 && bt->input_ids[i] < cf->vocab_size, TB_EINVAL,
                 "tb_bert_forward: input_ids[%ld][%ld] = %d is outside the vocabulary 0..%d",
                 (long)(i / bt->T), (long)(i % bt->T), bt->input_ids[i], cf->vocab_size - 1);
        if (bt->token_type_ids)
            TB_CHECK(bt->token_type_ids[i] >= 0 && bt->token_type_ids[i] < cf->type_vocab_size,
                     TB_EINVAL, "tb_bert_forward: token_type_ids[%ld][%ld] = %d is outside 0..%d",
                     (long)(i / bt->T), (long)(i % bt->T), bt->token_type_ids[i],
                     cf->type_vocab_size - 1);
        if (bt->attention_mask)
            TB_CHECK(bt->attention_mask[i] == 0 || bt->attention_mask[i] == 1, TB_EINVAL,
                     "tb_bert_forward: attention_mask[%ld][%ld] = %d must be 0 or 1",
                     (long)(i / bt->T), (long)(i % bt->T), bt->attention_mask[i]);
    }
    TB_CHECK(!run->logits || cf->head != TB_HEAD_NONE, TB_EINVAL,
             "tb_bert_forward: logits requested but the model has no classification head");
    TB_CHECK(!run->mlm || a->mlm, TB_EINVAL,
             "tb_bert_forward: MLM logits requested but the arena has no room for them "
             "(tb_bert_arena_reserve with mlm = 1, on a model with mlm_head)");
    TB_CHECK(!run->mlm_rows || (run->mlm && run->mlm_count >= 0 && run->mlm_count <= N), TB_EINVAL,
             "tb_bert_forward: mlm_rows needs mlm and 0 <= mlm_count <= B*T (%ld), got %d", (long)N, run->mlm_count);
    for (int i = 0; run->mlm_rows && i < run->mlm_count; i++)
        TB_CHECK(run->mlm_rows[i] >= 0 && run->mlm_rows[i] < N && (i == 0 || run->mlm_rows[i] > run->mlm_rows[i - 1]),
                 TB_EINVAL, "tb_bert_forward: mlm_rows[%d] = %d is not increasing within 0..%ld", i,
                 (int)run->mlm_rows[i], (long)N - 1);
    TB_CHECK(!run->mlm || (run->mlm_rows ? run->mlm_count : N) <= a->mlm_max_rows, TB_EINVAL,
             "tb_bert_forward: the MLM head would run on %ld rows, but the arena has room for %lld "
             "(tb_bert_arena_spec.mlm_max_rows)", run->mlm_rows ? (long)run->mlm_count : (long)N,
             (long long)a->mlm_max_rows);
    TB_CHECK(!run->cls_only || (run->logits && !run->mlm), TB_EINVAL,
             "tb_bert_forward: cls_only needs logits and no MLM head output (the MLM head reads every row)");
    TB_CHECK((run->scores_layers & ~a->keep_scores) == 0, TB_EINVAL,
             "tb_bert_forward: scores of layers 0x%llx requested but the arena keeps only 0x%llx",
             (unsigned long long)run->scores_layers, (unsigned long long)a->keep_scores);
error:
    return rc;
}

/* The rest of the last layer after the attention core, on the [CLS] rows only (run.cls_only):
 * activations go to the arena's cls_work slices (the backward reads them there), the [CLS] rows
 * of hout are written, its other rows are left as they were. */
static int last_layer_cls_forward(tb_bert_model *m, int l, const float *h, float *hout, int B, int T,
                                  const tb_bert_run *run)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    tb_bert_arena *a = m->arena;
    const tb_bert_layer_act *x = &a->layer[l];
    const tb_bert_layer_idx *p = &m->layer[l];
    const int C = cf->hidden_size, F = cf->intermediate_size;
    const size_t BC = (size_t)B * C;
    const float eps = cf->layer_norm_eps;
    tb_dropout d1 = tb_bert_drop_desc(run, cf->hidden_dropout_prob, l, TB_BERT_SITE_ATTN_OUT);
    tb_dropout d2 = tb_bert_drop_desc(run, cf->hidden_dropout_prob, l, TB_BERT_SITE_FFN_OUT);
    tb_bert_cls_work w = tb_bert_cls_slices(a, B, C, F);

    tb_bert_gather_cls(w.cx, x->ctx, B, T, C);
    tb_bert_gather_cls(w.h, h, B, T, C);
    TB_TRY(tb_linear_forward(w.r1, w.cx, P(m, p->ao_w), P(m, p->ao_b), B, C, C));
    tb_bert_dropout_cls(w.r1, w.r1, B, T, C, d1.p, d1.key, d1.batch_seq, d1.site);
    TB_TRY(tb_add_forward(w.r1, w.r1, w.h, BC));
    TB_TRY(tb_layernorm_forward(w.av, w.am, w.ar, w.r1, P(m, p->aln_w), P(m, p->aln_b), B, C, eps));
    TB_TRY(tb_linear_forward(w.fp, w.av, P(m, p->i_w), NULL, B, C, F));
    TB_TRY(tb_bias_gelu_forward(w.fa, w.fp, P(m, p->i_b), B, F));
    TB_TRY(tb_linear_forward(w.r2, w.fa, P(m, p->o_w), P(m, p->o_b), B, F, C));
    tb_bert_dropout_cls(w.r2, w.r2, B, T, C, d2.p, d2.key, d2.batch_seq, d2.site);
    TB_TRY(tb_add_forward(w.r2, w.r2, w.av, BC));
    /* the LayerNorm output of the [CLS] rows goes to dh's slice first, then into hout */
    TB_TRY(tb_layernorm_forward(w.dh, w.om, w.orr, w.r2, P(m, p->oln_w), P(m, p->oln_b), B, C, eps));
    for (int b = 0; b < B; b++)
        memcpy(hout + (size_t)b * T * C, w.dh + (size_t)b * C, (size_t)C * sizeof(float));
error:
    return rc;
}

static int layer_forward(tb_bert_model *m, int l, const float *h, float *hout,
                         const int32_t *mask, int B, int T, const tb_bert_run *run)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    tb_bert_arena *a = m->arena;
    tb_bert_layer_act *x = &a->layer[l];
    const tb_bert_layer_idx *p = &m->layer[l];
    const int C = cf->hidden_size, F = cf->intermediate_size, NH = cf->num_attention_heads;
    const int N = B * T;
    const float eps = cf->layer_norm_eps;
    tb_dropout da = tb_bert_drop_desc(run, cf->attention_probs_dropout_prob, l, TB_BERT_SITE_ATTN_PROBS);
    tb_dropout d1 = tb_bert_drop_desc(run, cf->hidden_dropout_prob, l, TB_BERT_SITE_ATTN_OUT);
    tb_dropout d2 = tb_bert_drop_desc(run, cf->hidden_dropout_prob, l, TB_BERT_SITE_FFN_OUT);

    TB_TRY(tb_linear_forward(x->qkv, h, P(m, p->qkv_w), P(m, p->qkv_b), N, C, 3 * C));
    TB_TRY(tb_attention_forward(x->ctx, x->scores, x->probs, x->qkv, x->qkv + C, x->qkv + 2 * C,
                                3 * C, mask, B, T, NH, C / NH, da.p > 0 ? &da : NULL,
                                a->attn_scratch, a->attn_scratch_floats));
    if (run->cls_only && l == cf->num_hidden_layers - 1)
        return last_layer_cls_forward(m, l, h, hout, B, T, run);
    TB_TRY(tb_linear_forward(x->res1, x->ctx, P(m, p->ao_w), P(m, p->ao_b), N, C, C));
    if (d1.p > 0) TB_TRY(tb_dropout_forward(x->res1, x->res1, (size_t)N * C, &d1));
    TB_TRY(tb_add_forward(x->res1, x->res1, h, (size_t)N * C));
    TB_TRY(tb_layernorm_forward(x->a, x->a_mean, x->a_rstd, x->res1, P(m, p->aln_w), P(m, p->aln_b),
                                N, C, eps));
    TB_TRY(tb_linear_forward(x->ffn_pre, x->a, P(m, p->i_w), NULL, N, C, F));
    if (x->ffn_act != x->ffn_pre) {
        TB_TRY(tb_bias_gelu_forward(x->ffn_act, x->ffn_pre, P(m, p->i_b), N, F));
    } else {
        /* INFER arena: GELU in place, a block of rows at a time through a small scratch (the same
         * kernel as training, so both arenas give bit-identical results). */
        for (int r = 0; r < N; r += TB_BERT_GELU_ROWS) {
            int rows = N - r < TB_BERT_GELU_ROWS ? N - r : TB_BERT_GELU_ROWS;
            float *blk = x->ffn_pre + (size_t)r * F;
            TB_TRY(tb_bias_gelu_forward(a->gelu_scratch, blk, P(m, p->i_b), rows, F));
            memcpy(blk, a->gelu_scratch, (size_t)rows * F * sizeof(float));
        }
    }
    TB_TRY(tb_linear_forward(x->res2, x->ffn_act, P(m, p->o_w), P(m, p->o_b), N, F, C));
    if (d2.p > 0) TB_TRY(tb_dropout_forward(x->res2, x->res2, (size_t)N * C, &d2));
    TB_TRY(tb_add_forward(x->res2, x->res2, x->a, (size_t)N * C));
    TB_TRY(tb_layernorm_forward(hout, x->o_mean, x->o_rstd, x->res2, P(m, p->oln_w), P(m, p->oln_b),
                                N, C, eps));
error:
    return rc;
}

static int head_forward(tb_bert_model *m, int B, int T, const tb_bert_run *run)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    tb_bert_arena *a = m->arena;
    const int C = cf->hidden_size, L = cf->num_hidden_layers;
    const float *hL = a->hidden[L];
    for (int b = 0; b < B; b++)
        memcpy(a->cls_in + (size_t)b * C, hL + (size_t)b * T * C, (size_t)C * sizeof(float));
    TB_TRY(tb_linear_forward(a->pooled, a->cls_in, P(m, m->pool_w), P(m, m->pool_b), B, C, C));
    TB_TRY(tb_tanh_forward(a->pooled, a->pooled, (size_t)B * C));
    if (cf->head == TB_HEAD_TINYBERT) {
        TB_TRY(tb_relu_forward(a->head_act, a->pooled, (size_t)B * C));
    } else {
        tb_dropout d = tb_bert_drop_desc(run, cf->classifier_dropout, L, TB_BERT_SITE_HEAD);
        if (d.p > 0)
            TB_TRY(tb_dropout_forward(a->head_act, a->pooled, (size_t)B * C, &d));
        else
            memcpy(a->head_act, a->pooled, (size_t)B * C * sizeof(float));
    }
    TB_TRY(tb_linear_forward(a->logits, a->head_act, P(m, m->cls_w), P(m, m->cls_b), B, C,
                             cf->num_labels));
error:
    return rc;
}

/* The MLM head on every row of h_L, or on the rows run.mlm_rows (gathered into mlm_in first). */
static int mlm_forward(tb_bert_model *m, const tb_bert_run *run, int N)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    tb_bert_arena *a = m->arena;
    const int C = cf->hidden_size, L = cf->num_hidden_layers;
    const float *in = a->hidden[L];
    if (run->mlm_rows) {
        N = run->mlm_count;
        if (N == 0) return TB_OK;
        for (int i = 0; i < N; i++)
            memcpy(a->mlm_in + (size_t)i * C, in + (size_t)run->mlm_rows[i] * C, (size_t)C * sizeof(float));
        in = a->mlm_in;
    }
    TB_TRY(tb_linear_forward(a->mlm_pre, in, P(m, m->mlm_w), NULL, N, C, C));
    TB_TRY(tb_bias_gelu_forward(a->mlm_act, a->mlm_pre, P(m, m->mlm_b), N, C));
    TB_TRY(tb_layernorm_forward(a->mlm_ln, a->mlm_mean, a->mlm_rstd, a->mlm_act, P(m, m->mlm_ln_w),
                                P(m, m->mlm_ln_b), N, C, cf->layer_norm_eps));
    TB_TRY(tb_linear_forward(a->mlm_logits, a->mlm_ln, P(m, m->word_w), P(m, m->mlm_dec_b), N, C,
                             cf->vocab_size));
error:
    return rc;
}

int tb_bert_forward(tb_bert_model *m, const tb_bert_batch *bt, const tb_bert_run *run)
{
    int rc = TB_OK;
    TB_CHECK(m && m->params.values, TB_EINVAL, "tb_bert_forward: model is not initialised");
    TB_TRY(check_inputs(m, bt, run));
    tb_bert_arena *a = m->arena;
    const tb_bert_config *cf = &m->config;
    const int B = bt->B, T = bt->T, N = B * T, C = cf->hidden_size, L = cf->num_hidden_layers;
    a->have_forward = 0;
    TB_TRY(tb_ops_set_threads(tb_bert_threads_now(m)));
    memcpy(a->ids, bt->input_ids, (size_t)N * sizeof(int32_t));
    if (bt->token_type_ids)
        memcpy(a->types, bt->token_type_ids, (size_t)N * sizeof(int32_t));
    else
        memset(a->types, 0, (size_t)N * sizeof(int32_t));

    TB_TRY(tb_embedding_forward(a->emb_sum, a->ids, a->types, P(m, m->word_w), P(m, m->pos_w),
                                P(m, m->type_w), B, T, C, cf->vocab_size,
                                cf->max_position_embeddings, cf->type_vocab_size));
    TB_TRY(tb_layernorm_forward(a->hidden[0], a->e_mean, a->e_rstd, a->emb_sum, P(m, m->eln_w),
                                P(m, m->eln_b), N, C, cf->layer_norm_eps));
    tb_dropout de = tb_bert_drop_desc(run, cf->hidden_dropout_prob, L, TB_BERT_SITE_EMB);
    if (de.p > 0) TB_TRY(tb_dropout_forward(a->hidden[0], a->hidden[0], (size_t)N * C, &de));
    for (int l = 0; l < L; l++)
        TB_TRY(layer_forward(m, l, a->hidden[l], a->hidden[l + 1], bt->attention_mask, B, T, run));
    if (run->logits) TB_TRY(head_forward(m, B, T, run));
    if (run->mlm) TB_TRY(mlm_forward(m, run, N));
    a->B = B;
    a->T = T;
    a->run = *run;
    a->have_forward = 1;
error:
    return rc;
}

const float *tb_bert_hidden(const tb_bert_model *m, int j)
{
    if (!m || !m->arena || !m->arena->have_forward || j < 0 || j > m->config.num_hidden_layers)
        return NULL;
    if (j >= 64 || !(m->arena->keep_hidden >> j & 1)) return NULL;
    if (j == m->config.num_hidden_layers && m->arena->run.cls_only) return NULL;
    return m->arena->hidden[j];
}

const float *tb_bert_scores(const tb_bert_model *m, int l)
{
    if (!m || !m->arena || !m->arena->have_forward || l < 0 || l >= m->config.num_hidden_layers)
        return NULL;
    if (!(m->arena->keep_scores >> l & 1)) return NULL;
    return m->arena->layer[l].scores;
}

const float *tb_bert_logits(const tb_bert_model *m)
{
    if (!m || !m->arena || !m->arena->have_forward || !m->arena->run.logits) return NULL;
    return m->arena->logits;
}

const float *tb_bert_mlm_logits(const tb_bert_model *m)
{
    if (!m || !m->arena || !m->arena->have_forward || !m->arena->run.mlm) return NULL;
    return m->arena->mlm_logits;
}

const float *tb_bert_pooled(const tb_bert_model *m)
{
    if (!m || !m->arena || !m->arena->have_forward || !m->arena->run.logits) return NULL;
    return m->arena->pooled;
}

double tb_bert_forward_flops(const tb_bert_model *m, int B, int T, const tb_bert_run *run)
{
    const tb_bert_config *cf = &m->config;
    const double N = (double)B * T, C = cf->hidden_size, F = cf->intermediate_size;
    double per_layer = 2.0 * N * C * 3 * C   /* QKV */
                     + 2.0 * 2.0 * B * T * T * C /* QK^T and PV over all heads */
                     + 2.0 * N * C * C       /* attention output */
                     + 2.0 * 2.0 * N * C * F; /* FFN */
    double f = per_layer * cf->num_hidden_layers;
    if (run && run->logits && cf->head != TB_HEAD_NONE)
        f += 2.0 * B * C * C + 2.0 * B * C * cf->num_labels;
    const double M = run && run->mlm_rows ? (double)run->mlm_count : N;
    if (run && run->mlm && cf->mlm_head) f += 2.0 * M * C * C + 2.0 * M * C * cf->vocab_size;
    return f;
}
