/* bert_backward.c - the BERT backward pass composed from tb/model/ops.h; fit_dense. */
#include "bert_internal.h"

#include "tb/base/error.h"
#include "tb/model/ops.h"
#include "tb/base/rng.h"

#include <string.h>

#define P(m, i) ((float *)(m)->params.items[(i)].value.data)
#define G(m, i) ((float *)(m)->params.items[(i)].grad.data)

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof *p); }

/* Returns the gradient before a dropout whose output gradient is `dout`: `dout` itself when the
 * dropout is off, otherwise `work` = dout * mask / (1 - p). That is the dropout applied to dout
 * with the same descriptor (the same mask), so the forward function writes it in one pass
 * (zeroing `work` and accumulating the backward into it gives the same values). */
static int dropout_back(const float **din, float *work, const float *dout, size_t n, const tb_dropout *d)
{
    if (d->p <= 0) {
        *din = dout;
        return TB_OK;
    }
    *din = work;
    return tb_dropout_forward(work, dout, n, d);
}

/* Attention core and fused QKV projection of layer l: a->gz holds d ctx [N, C]; adds d h into
 * a->gx. */
static int attention_qkv_backward(tb_bert_model *m, int l, const float *h, const float *dscores_extra)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    tb_bert_arena *a = m->arena;
    const tb_bert_layer_act *x = &a->layer[l];
    const tb_bert_layer_idx *p = &m->layer[l];
    const int B = a->B, T = a->T, N = B * T;
    const int C = cf->hidden_size, NH = cf->num_attention_heads;
    tb_dropout da = tb_bert_drop_desc(&a->run, cf->attention_probs_dropout_prob, l, TB_BERT_SITE_ATTN_PROBS);
    zero(a->gqkv, 3 * (size_t)N * C);
    TB_TRY(tb_attention_backward(a->gqkv, a->gqkv + C, a->gqkv + 2 * C, 3 * C, a->gz, dscores_extra,
                                 x->probs, x->qkv, x->qkv + C, x->qkv + 2 * C, 3 * C, B, T, NH,
                                 C / NH, da.p > 0 ? &da : NULL, a->attn_scratch,
                                 a->attn_scratch_floats));
    TB_TRY(tb_linear_backward(a->gx, G(m, p->qkv_w), G(m, p->qkv_b), a->gqkv, h, P(m, p->qkv_w),
                              N, C, 3 * C));
error:
    return rc;
}

/* out [B*T, w] = 0 except rows b*T = in [B, w]. */
static void scatter_cls(float *out, const float *in, int B, int T, int w)
{
    zero(out, (size_t)B * T * w);
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * T * w, in + (size_t)b * w, (size_t)w * sizeof(float));
}

/* The last layer when only the head reads h_L: its gradient is nonzero on the [CLS] rows only,
 * and rows stay independent up to the attention core, so the output LayerNorm, the FFN, the
 * attention LayerNorm and the attention output projection are differentiated on B rows instead
 * of B*T (exactly: the other rows contribute zeros). On entry a->gx holds dL/dh_L; on exit
 * dL/dh_{L-1}. */
static int layer_backward_cls(tb_bert_model *m, int l, const float *h, const float *dscores_extra)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    tb_bert_arena *a = m->arena;
    const tb_bert_layer_act *x = &a->layer[l];
    const tb_bert_layer_idx *p = &m->layer[l];
    const tb_bert_run *run = &a->run;
    const int B = a->B, T = a->T, C = cf->hidden_size, F = cf->intermediate_size;
    const size_t BC = (size_t)B * C, BF = (size_t)B * F;
    tb_dropout d1 = tb_bert_drop_desc(run, cf->hidden_dropout_prob, l, TB_BERT_SITE_ATTN_OUT);
    tb_dropout d2 = tb_bert_drop_desc(run, cf->hidden_dropout_prob, l, TB_BERT_SITE_FFN_OUT);
    tb_bert_cls_work w = tb_bert_cls_slices(a, B, C, F);

    tb_bert_gather_cls(w.dh, a->gx, B, T, C);
    if (!run->cls_only) { /* a full forward: take the [CLS] rows of its activations */
        tb_bert_gather_cls(w.r2, x->res2, B, T, C);
        tb_bert_gather_cls(w.om, x->o_mean, B, T, 1);
        tb_bert_gather_cls(w.orr, x->o_rstd, B, T, 1);
        tb_bert_gather_cls(w.fa, x->ffn_act, B, T, F);
        tb_bert_gather_cls(w.fp, x->ffn_pre, B, T, F);
        tb_bert_gather_cls(w.av, x->a, B, T, C);
        tb_bert_gather_cls(w.r1, x->res1, B, T, C);
        tb_bert_gather_cls(w.am, x->a_mean, B, T, 1);
        tb_bert_gather_cls(w.ar, x->a_rstd, B, T, 1);
        tb_bert_gather_cls(w.cx, x->ctx, B, T, C);
    }

    zero(w.dr2, BC);
    TB_TRY(tb_layernorm_backward(w.dr2, G(m, p->oln_w), G(m, p->oln_b), w.dh, w.r2, P(m, p->oln_w), w.om,
                                 w.orr, B, C));
    memcpy(w.da, w.dr2, BC * sizeof(float));
    tb_bert_dropout_cls(w.dp, w.dr2, B, T, C, d2.p, d2.key, d2.batch_seq, d2.site);
    zero(w.dfa, BF);
    TB_TRY(tb_linear_backward(w.dfa, G(m, p->o_w), G(m, p->o_b), w.dp, w.fa, P(m, p->o_w), B, F, C));
    zero(w.dfp, BF);
    TB_TRY(tb_gelu_backward(w.dfp, w.fp, w.dfa, BF));
    TB_TRY(tb_linear_backward(w.da, G(m, p->i_w), G(m, p->i_b), w.dfp, w.av, P(m, p->i_w), B, C, F));
    zero(w.dr1, BC);
    TB_TRY(tb_layernorm_backward(w.dr1, G(m, p->aln_w), G(m, p->aln_b), w.da, w.r1, P(m, p->aln_w), w.am,
                                 w.ar, B, C));
    scatter_cls(a->gx, w.dr1, B, T, C);
    tb_bert_dropout_cls(w.dp1, w.dr1, B, T, C, d1.p, d1.key, d1.batch_seq, d1.site);
    zero(w.dcx, BC);
    TB_TRY(tb_linear_backward(w.dcx, G(m, p->ao_w), G(m, p->ao_b), w.dp1, w.cx, P(m, p->ao_w), B, C, C));
    scatter_cls(a->gz, w.dcx, B, T, C);
    TB_TRY(attention_qkv_backward(m, l, h, dscores_extra));
error:
    return rc;
}

/* On entry a->gx holds dL/dh_{l+1}; on exit it holds dL/dh_l (without the caller's extra term). */
static int layer_backward(tb_bert_model *m, int l, const float *h, const float *dscores_extra)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    tb_bert_arena *a = m->arena;
    const tb_bert_layer_act *x = &a->layer[l];
    const tb_bert_layer_idx *p = &m->layer[l];
    const tb_bert_run *run = &a->run;
    const int B = a->B, T = a->T, N = B * T;
    const int C = cf->hidden_size, F = cf->intermediate_size;
    const size_t NC = (size_t)N * C, NF = (size_t)N * F;
    tb_dropout d1 = tb_bert_drop_desc(run, cf->hidden_dropout_prob, l, TB_BERT_SITE_ATTN_OUT);
    tb_dropout d2 = tb_bert_drop_desc(run, cf->hidden_dropout_prob, l, TB_BERT_SITE_FFN_OUT);
    const float *dproj;

    /* output LayerNorm: gy = d res2 */
    zero(a->gy, NC);
    TB_TRY(tb_layernorm_backward(a->gy, G(m, p->oln_w), G(m, p->oln_b), a->gx, x->res2,
                                 P(m, p->oln_w), x->o_mean, x->o_rstd, N, C));
    /* res2 = a + dropout(ffn_out): gz = d a (residual), dproj = d ffn_out */
    memcpy(a->gz, a->gy, NC * sizeof(float));
    TB_TRY(dropout_back(&dproj, a->gw, a->gy, NC, &d2));
    zero(a->gf1, NF);
    TB_TRY(tb_linear_backward(a->gf1, G(m, p->o_w), G(m, p->o_b), dproj, x->ffn_act, P(m, p->o_w),
                              N, F, C));
    zero(a->gf2, NF);
    TB_TRY(tb_gelu_backward(a->gf2, x->ffn_pre, a->gf1, NF));
    TB_TRY(tb_linear_backward(a->gz, G(m, p->i_w), G(m, p->i_b), a->gf2, x->a, P(m, p->i_w), N, C, F));
    /* attention LayerNorm: gy = d res1 */
    zero(a->gy, NC);
    TB_TRY(tb_layernorm_backward(a->gy, G(m, p->aln_w), G(m, p->aln_b), a->gz, x->res1,
                                 P(m, p->aln_w), x->a_mean, x->a_rstd, N, C));
    /* res1 = h + dropout(proj): gx = d h (residual), dproj = d proj */
    memcpy(a->gx, a->gy, NC * sizeof(float));
    TB_TRY(dropout_back(&dproj, a->gw, a->gy, NC, &d1));
    zero(a->gz, NC);
    TB_TRY(tb_linear_backward(a->gz, G(m, p->ao_w), G(m, p->ao_b), dproj, x->ctx, P(m, p->ao_w),
                              N, C, C));
    TB_TRY(attention_qkv_backward(m, l, h, dscores_extra));
error:
    return rc;
}

/* Adds the head's gradient into a->gx (rows b*T, the [CLS] positions). */
static int head_backward(tb_bert_model *m, const float *dlogits)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    tb_bert_arena *a = m->arena;
    const int B = a->B, T = a->T, C = cf->hidden_size, L = cf->num_hidden_layers;
    const size_t BC = (size_t)B * C;
    zero(a->gb1, BC);
    TB_TRY(tb_linear_backward(a->gb1, G(m, m->cls_w), G(m, m->cls_b), dlogits, a->head_act,
                              P(m, m->cls_w), B, C, cf->num_labels));
    zero(a->gb2, BC);
    if (cf->head == TB_HEAD_TINYBERT) {
        TB_TRY(tb_relu_backward(a->gb2, a->head_act, a->gb1, BC));
    } else {
        tb_dropout d = tb_bert_drop_desc(&a->run, cf->classifier_dropout, L, TB_BERT_SITE_HEAD);
        if (d.p > 0)
            TB_TRY(tb_dropout_backward(a->gb2, a->gb1, BC, &d));
        else
            memcpy(a->gb2, a->gb1, BC * sizeof(float));
    }
    zero(a->gb1, BC);
    TB_TRY(tb_tanh_backward(a->gb1, a->pooled, a->gb2, BC));
    zero(a->gb3, BC);
    TB_TRY(tb_linear_backward(a->gb3, G(m, m->pool_w), G(m, m->pool_b), a->gb1, a->cls_in,
                              P(m, m->pool_w), B, C, C));
    for (int b = 0; b < B; b++)
        TB_TRY(tb_accumulate(a->gx + (size_t)b * T * C, a->gb3 + (size_t)b * C, (size_t)C));
error:
    return rc;
}

/* Adds the MLM head's gradient into a->gx (through a->gw and a scatter when the head ran on
 * run.mlm_rows only). */
static int mlm_backward(tb_bert_model *m, const float *dmlm)
{
    int rc = TB_OK;
    const tb_bert_config *cf = &m->config;
    tb_bert_arena *a = m->arena;
    const int32_t *rows = a->run.mlm_rows;
    const int N = rows ? a->run.mlm_count : a->B * a->T, C = cf->hidden_size, L = cf->num_hidden_layers;
    const size_t NC = (size_t)N * C;
    if (N == 0) return TB_OK;
    zero(a->gy, NC);
    TB_TRY(tb_linear_backward(a->gy, G(m, m->word_w), G(m, m->mlm_dec_b), dmlm, a->mlm_ln,
                              P(m, m->word_w), N, C, cf->vocab_size));
    zero(a->gz, NC);
    TB_TRY(tb_layernorm_backward(a->gz, G(m, m->mlm_ln_w), G(m, m->mlm_ln_b), a->gy, a->mlm_act,
                                 P(m, m->mlm_ln_w), a->mlm_mean, a->mlm_rstd, N, C));
    zero(a->gy, NC);
    TB_TRY(tb_gelu_backward(a->gy, a->mlm_pre, a->gz, NC));
    if (!rows) {
        TB_TRY(tb_linear_backward(a->gx, G(m, m->mlm_w), G(m, m->mlm_b), a->gy, a->hidden[L],
                                  P(m, m->mlm_w), N, C, C));
    } else {
        zero(a->gw, NC);
        TB_TRY(tb_linear_backward(a->gw, G(m, m->mlm_w), G(m, m->mlm_b), a->gy, a->mlm_in, P(m, m->mlm_w), N, C, C));
        for (int i = 0; i < N; i++) {
            float *dst = a->gx + (size_t)rows[i] * C;
            const float *src = a->gw + (size_t)i * C;
            for (int c = 0; c < C; c++) dst[c] += src[c];
        }
    }
error:
    return rc;
}

int tb_bert_backward(tb_bert_model *m, const tb_bert_grads *g)
{
    int rc = TB_OK;
    TB_CHECK(m && m->params.values && g, TB_EINVAL, "tb_bert_backward: model or grads is NULL");
    tb_bert_arena *a = m->arena;
    TB_CHECK(a && a->mode == TB_BERT_TRAIN, TB_EINVAL,
             "tb_bert_backward: needs a TB_BERT_TRAIN arena (tb_bert_arena_reserve)");
    TB_CHECK(a->have_forward, TB_EINVAL, "tb_bert_backward: no forward pass to differentiate");
    TB_CHECK(!g->dlogits || a->run.logits, TB_EINVAL,
             "tb_bert_backward: dlogits given but the forward did not compute logits");
    TB_CHECK(!g->dmlm_logits || a->run.mlm, TB_EINVAL,
             "tb_bert_backward: dmlm_logits given but the forward did not compute MLM logits");
    const tb_bert_config *cf = &m->config;
    const int B = a->B, T = a->T, N = B * T, C = cf->hidden_size, L = cf->num_hidden_layers;
    const size_t NC = (size_t)N * C;
    TB_TRY(tb_ops_set_threads(tb_bert_threads_now(m)));

    zero(a->gx, NC);
    if (g->dhidden && g->dhidden[L]) TB_TRY(tb_accumulate(a->gx, g->dhidden[L], NC));
    if (g->dlogits) TB_TRY(head_backward(m, g->dlogits));
    if (g->dmlm_logits) TB_TRY(mlm_backward(m, g->dmlm_logits));
    /* Only the head reads h_L: the last layer's row-wise parts need the [CLS] rows alone. */
    const int cls_only = g->dlogits && !g->dmlm_logits && !(g->dhidden && g->dhidden[L]);
    TB_CHECK(!a->run.cls_only || cls_only, TB_EINVAL,
             "tb_bert_backward: the forward ran with cls_only, so the only gradient it accepts at the "
             "last layer is dlogits (no dmlm_logits, no dhidden[%d])", L);
    for (int l = L - 1; l >= 0; l--) {
        const float *ds = g->dscores ? g->dscores[l] : NULL;
        if (l == L - 1 && cls_only)
            TB_TRY(layer_backward_cls(m, l, a->hidden[l], ds));
        else
            TB_TRY(layer_backward(m, l, a->hidden[l], ds));
        if (g->dhidden && g->dhidden[l]) TB_TRY(tb_accumulate(a->gx, g->dhidden[l], NC));
    }
    /* hidden 0 = dropout(LN(emb_sum)) */
    tb_dropout de = tb_bert_drop_desc(&a->run, cf->hidden_dropout_prob, L, TB_BERT_SITE_EMB);
    const float *dln;
    TB_TRY(dropout_back(&dln, a->gy, a->gx, NC, &de));
    zero(a->gz, NC);
    TB_TRY(tb_layernorm_backward(a->gz, G(m, m->eln_w), G(m, m->eln_b), dln, a->emb_sum,
                                 P(m, m->eln_w), a->e_mean, a->e_rstd, N, C));
    TB_TRY(tb_embedding_backward(G(m, m->word_w), G(m, m->pos_w), G(m, m->type_w), a->gz, a->ids,
                                 a->types, B, T, C, cf->vocab_size, cf->max_position_embeddings,
                                 cf->type_vocab_size, cf->pad_token_id));
error:
    return rc;
}

int tb_bert_fit_forward(const tb_bert_model *m, float *out, const float *in, int64_t N)
{
    int rc = TB_OK;
    TB_CHECK(m && m->fit_w >= 0, TB_EINVAL, "tb_bert_fit_forward: the model has no fit_dense (fit_size = 0)");
    TB_CHECK(N > 0 && N <= 0x7fffffff, TB_EINVAL, "tb_bert_fit_forward: row count %ld out of range", (long)N);
    TB_TRY(tb_linear_forward(out, in, P(m, m->fit_w), P(m, m->fit_b), (int)N, m->config.hidden_size,
                             m->config.fit_size));
error:
    return rc;
}

int tb_bert_fit_backward(tb_bert_model *m, float *din, const float *dout, const float *in, int64_t N)
{
    int rc = TB_OK;
    TB_CHECK(m && m->fit_w >= 0, TB_EINVAL, "tb_bert_fit_backward: the model has no fit_dense (fit_size = 0)");
    TB_CHECK(N > 0 && N <= 0x7fffffff, TB_EINVAL, "tb_bert_fit_backward: row count %ld out of range", (long)N);
    TB_TRY(tb_linear_backward(din, G(m, m->fit_w), G(m, m->fit_b), dout, in, P(m, m->fit_w), (int)N,
                              m->config.hidden_size, m->config.fit_size));
error:
    return rc;
}
