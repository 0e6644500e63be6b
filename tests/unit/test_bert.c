/* Unit tests of the BERT model (tb/model/bert.h): parameter layout against hand-computed sizes, the
 * full backward (model + every loss) against central finite differences, determinism of
 * dropout, and rejection of bad inputs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fdcheck.h"
#include "tb/model/bert.h"
#include "tb/base/error.h"
#include "tb/model/loss.h"

/* ---- configurations ----------------------------------------------------------------------- */

static tb_bert_config tiny_config(void)
{
    tb_bert_config c = {0};
    c.vocab_size = 50;
    c.hidden_size = 16;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.intermediate_size = 32;
    c.max_position_embeddings = 16;
    c.type_vocab_size = 2;
    c.layer_norm_eps = 1e-12f;
    c.hidden_dropout_prob = 0.1f;
    c.attention_probs_dropout_prob = 0.1f;
    c.initializer_range = 0.02f;
    c.pad_token_id = 0;
    c.head = TB_HEAD_TINYBERT;
    c.num_labels = 3;
    c.classifier_dropout = 0.1f;
    c.mlm_head = 1;
    c.fit_size = 24;
    return c;
}

static tb_bert_config base_config(void)
{
    tb_bert_config c = tiny_config();
    c.vocab_size = 30522;
    c.hidden_size = 768;
    c.num_hidden_layers = 12;
    c.num_attention_heads = 12;
    c.intermediate_size = 3072;
    c.max_position_embeddings = 512;
    c.head = TB_HEAD_NONE;
    c.num_labels = 0;
    c.mlm_head = 0;
    c.fit_size = 0;
    return c;
}

/* ---- parameter layout ---------------------------------------------------------------------- */

Test(bert, bert_base_parameter_count_matches_hugging_face)
{
    /* Hugging Face BertModel (bert-base-uncased, with pooler) has 109,482,240 parameters:
     * embeddings 30522*768 + 512*768 + 2*768 + 2*768 = 23,837,184; per layer
     * 4*(768*768 + 768) + 2*768*3072 + 3072 + 768 + 4*768 = 7,087,872 (x12 = 85,054,464);
     * pooler 768*768 + 768 = 590,592. Without a head we have no pooler: 108,891,648. */
    tb_bert_config c = base_config();
    tb_bert_model m;
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    int64_t n = 0;
    for (int i = 0; i < m.params.count; i++) n += tb_tensor_numel(&m.params.items[i].value);
    cr_assert_eq(n, 108891648LL, "got %lld", (long long)n);
    cr_assert_eq(m.params.count, 5 + 12 * 16);
    tb_bert_free(&m);

    c.pooler = 1; /* a pooler without a head: exactly Hugging Face's BertModel */
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    n = 0;
    for (int i = 0; i < m.params.count; i++) n += tb_tensor_numel(&m.params.items[i].value);
    cr_assert_eq(n, 109482240LL, "got %lld", (long long)n);
    tb_bert_free(&m);
    c.pooler = 0;

    c.head = TB_HEAD_TINYBERT;
    c.num_labels = 2;
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    n = 0;
    for (int i = 0; i < m.params.count; i++) n += tb_tensor_numel(&m.params.items[i].value);
    cr_assert_eq(n, 109482240LL + 768 * 2 + 2, "got %lld", (long long)n);
    tb_bert_free(&m);
}

Test(bert, layout_names_shapes_flags_and_fused_qkv)
{
    tb_bert_config c = tiny_config();
    tb_bert_model m;
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    struct { const char *name; int64_t d0, d1; int no_decay; } want[] = {
        {"bert.embeddings.word_embeddings.weight", 50, 16, 0},
        {"bert.embeddings.position_embeddings.weight", 16, 16, 0},
        {"bert.embeddings.token_type_embeddings.weight", 2, 16, 0},
        {"bert.embeddings.LayerNorm.weight", 16, 0, 1},
        {"bert.embeddings.LayerNorm.bias", 16, 0, 1},
        {"bert.encoder.layer.1.attention.self.key.weight", 16, 16, 0},
        {"bert.encoder.layer.1.attention.self.value.bias", 16, 0, 1},
        {"bert.encoder.layer.0.attention.output.dense.weight", 16, 16, 0},
        {"bert.encoder.layer.0.attention.output.LayerNorm.bias", 16, 0, 1},
        {"bert.encoder.layer.0.intermediate.dense.weight", 32, 16, 0},
        {"bert.encoder.layer.0.intermediate.dense.bias", 32, 0, 1},
        {"bert.encoder.layer.1.output.dense.weight", 16, 32, 0},
        {"bert.encoder.layer.1.output.LayerNorm.weight", 16, 0, 1},
        {"bert.pooler.dense.weight", 16, 16, 0},
        {"classifier.weight", 3, 16, 0},
        {"classifier.bias", 3, 0, 1},
        {"cls.predictions.transform.dense.weight", 16, 16, 0},
        {"cls.predictions.transform.LayerNorm.weight", 16, 0, 1},
        {"cls.predictions.bias", 50, 0, 1},
        {"fit_dense.weight", 24, 16, 0},
        {"fit_dense.bias", 24, 0, 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        tb_param *p = NULL;
        for (int k = 0; k < m.params.count; k++)
            if (strcmp(m.params.items[k].name, want[i].name) == 0) p = &m.params.items[k];
        cr_assert(p, "missing %s", want[i].name);
        cr_assert_eq(p->value.ndim, want[i].d1 ? 2 : 1, "%s", want[i].name);
        cr_assert_eq(p->value.shape[0], want[i].d0, "%s", want[i].name);
        if (want[i].d1) cr_assert_eq(p->value.shape[1], want[i].d1, "%s", want[i].name);
        cr_assert_eq(p->no_decay, want[i].no_decay, "%s", want[i].name);
        cr_assert_eq(p->trainable, 1);
        ptrdiff_t off = (float *)p->grad.data - m.params.grads;
        cr_assert_eq((float *)p->value.data - m.params.values, off, "grad and value share offsets");
    }
    /* No decoder weight: it is tied to the word embeddings. */
    for (int k = 0; k < m.params.count; k++)
        cr_assert(strcmp(m.params.items[k].name, "cls.predictions.decoder.weight") != 0);
    /* q, k, v weights and biases are contiguous ([3C, C] and [3C]). */
    for (int l = 0; l < 2; l++) {
        tb_param *q = &m.params.items[m.layer[l].qkv_w];
        cr_assert(strstr(q->name, "query.weight"));
        cr_assert_eq((float *)m.params.items[m.layer[l].qkv_w + 1].value.data, (float *)q->value.data + 256);
        cr_assert_eq((float *)m.params.items[m.layer[l].qkv_w + 2].value.data, (float *)q->value.data + 512);
        tb_param *qb = &m.params.items[m.layer[l].qkv_b];
        cr_assert(strstr(qb->name, "query.bias"));
        cr_assert_eq((float *)m.params.items[m.layer[l].qkv_b + 2].value.data, (float *)qb->value.data + 32);
    }
    /* Views never overlap and stay inside the buffer. */
    for (int k = 0; k < m.params.count; k++) {
        float *a0 = m.params.items[k].value.data;
        size_t n = (size_t)tb_tensor_numel(&m.params.items[k].value);
        cr_assert(a0 >= m.params.values && a0 + n <= m.params.values + m.params.total);
        if (k + 1 < m.params.count) cr_assert((float *)m.params.items[k + 1].value.data >= a0 + n);
    }
    cr_assert_eq(tb_bert_set_trainable(&m, "fit_dense.", 0), 2);
    cr_assert_eq(tb_bert_set_trainable(&m, "", 1), 2);
    tb_bert_free(&m);
}

Test(bert, pooler_without_head_comes_last_and_leaves_the_other_draws_alone)
{
    tb_bert_config c = tiny_config();
    c.head = TB_HEAD_NONE;
    c.num_labels = 0;
    tb_bert_model a, b;
    cr_assert_eq(tb_bert_init(&a, &c), TB_OK, "%s", tb_err_msg());
    c.pooler = 1;
    cr_assert_eq(tb_bert_init(&b, &c), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(&a, 11);
    tb_bert_init_random(&b, 11);
    cr_assert_eq(b.params.count, a.params.count + 2);
    cr_assert(a.pool_w < 0 && a.pool_b < 0, "no pooler without the flag");
    cr_assert_eq(b.pool_w, a.params.count);
    cr_assert_eq(b.pool_b, a.params.count + 1);
    cr_assert_str_eq(b.params.items[b.pool_w].name, "bert.pooler.dense.weight");
    cr_assert_str_eq(b.params.items[b.pool_b].name, "bert.pooler.dense.bias");
    cr_assert(b.params.items[b.pool_w].value.shape[0] == 16 && b.params.items[b.pool_w].value.shape[1] == 16);
    cr_assert(b.params.items[b.pool_b].value.ndim == 1 && b.params.items[b.pool_b].value.shape[0] == 16);
    for (int i = 0; i < a.params.count; i++) {
        const tb_param *pa = &a.params.items[i], *pb = &b.params.items[i];
        cr_assert_str_eq(pa->name, pb->name);
        cr_assert_eq(memcmp(pa->value.data, pb->value.data, (size_t)tb_tensor_numel(&pa->value) * sizeof(float)), 0,
                     "%s changed when the pooler was added", pa->name);
    }
    const float *pw = b.params.items[b.pool_w].value.data, *pbias = b.params.items[b.pool_b].value.data;
    int nonzero = 0;
    for (int i = 0; i < 256; i++) nonzero += pw[i] != 0.0f && fabsf(pw[i]) < 0.02f * 6;
    cr_assert_eq(nonzero, 256, "pooler weight is not a small random draw");
    for (int i = 0; i < 16; i++) cr_assert_eq(pbias[i], 0.0f);
    tb_bert_free(&a);
    tb_bert_free(&b);
}

Test(bert, random_init_statistics_and_fixed_values)
{
    tb_bert_config c = tiny_config();
    c.vocab_size = 2000; /* enough samples for the statistics */
    tb_bert_model m;
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(&m, 7);
    const float *w = m.params.items[m.word_w].value.data;
    double s = 0, s2 = 0;
    size_t n = 2000 * 16;
    for (size_t i = 16; i < n; i++) { s += w[i]; s2 += (double)w[i] * w[i]; }
    double mean = s / (double)(n - 16), sd = sqrt(s2 / (double)(n - 16) - mean * mean);
    cr_assert_lt(fabs(mean), 5 * 0.02 / sqrt((double)n), "mean %g", mean);
    cr_assert_lt(fabs(sd - 0.02) / 0.02, 0.02, "std %g", sd);
    for (int i = 0; i < 16; i++) cr_assert_eq(w[i], 0.0f, "[PAD] row is zero");
    const float *lnw = m.params.items[m.eln_w].value.data, *lnb = m.params.items[m.eln_b].value.data;
    for (int i = 0; i < 16; i++) { cr_assert_eq(lnw[i], 1.0f); cr_assert_eq(lnb[i], 0.0f); }
    const float *qb = m.params.items[m.layer[1].qkv_b].value.data;
    for (int i = 0; i < 48; i++) cr_assert_eq(qb[i], 0.0f);
    /* Same seed, same values; another seed, other values. */
    tb_bert_model m2;
    cr_assert_eq(tb_bert_init(&m2, &c), TB_OK);
    tb_bert_init_random(&m2, 7);
    cr_assert_eq(memcmp(m.params.values, m2.params.values, m.params.total * sizeof(float)), 0);
    tb_bert_init_random(&m2, 8);
    cr_assert_neq(memcmp(m.params.values, m2.params.values, m.params.total * sizeof(float)), 0);
    tb_bert_free(&m2);
    tb_bert_free(&m);
}

/* ---- finite differences ---------------------------------------------------------------------- */

enum { B_ = 2, T_ = 7, TL_ = 4 /* teacher layers */, DT_ = 24, NL_ = 3 };

typedef enum objective {
    OBJ_CE,        /* cross-entropy on the classification logits */
    OBJ_REG,       /* MSE on a regression output (num_labels 1) */
    OBJ_MLM,       /* MLM cross-entropy (tied decoder) */
    OBJ_INTER,     /* TinyBERT attention + hidden (fit_dense) loss */
    OBJ_PRED,      /* TinyBERT soft cross-entropy */
} objective;

typedef struct fd_ctx {
    tb_bert_model m;
    objective obj;
    tb_bert_batch batch;
    tb_bert_run run;
    int32_t ids[B_ * T_], types[B_ * T_], mask[B_ * T_], labels[B_], mlm_labels[B_ * T_];
    float gold[B_];
    float t_hidden[TL_ + 1][B_ * T_ * DT_], t_scores[TL_][B_ * 4 * T_ * T_], t_logits[B_ * NL_];
    const float *th[TL_ + 1], *ts[TL_];
    tb_bert_teacher teacher;
    float dlogits[B_ * NL_];
    float *dmlm;
} fd_ctx;

/* Runs forward + loss; with grads = 1 also the backward (into m.params.grads, zeroed first). */
static double run_objective(fd_ctx *x, int grads)
{
    tb_bert_model *m = &x->m;
    double loss = 0;
    if (grads) tb_bert_zero_grad(m);
    cr_assert_eq(tb_bert_forward(m, &x->batch, &x->run), TB_OK, "%s", tb_err_msg());
    tb_bert_grads g = {0};
    const int NL = m->config.num_labels, V = m->config.vocab_size;
    switch (x->obj) {
    case OBJ_CE:
        memset(x->dlogits, 0, sizeof x->dlogits);
        cr_assert_eq(tb_loss_ce(&loss, grads ? x->dlogits : NULL, tb_bert_logits(m), x->labels, B_, NL,
                                TB_IGNORE_INDEX, 1.0f, NULL), TB_OK, "%s", tb_err_msg());
        g.dlogits = x->dlogits;
        break;
    case OBJ_REG:
        memset(x->dlogits, 0, sizeof x->dlogits);
        cr_assert_eq(tb_loss_mse(&loss, grads ? x->dlogits : NULL, tb_bert_logits(m), x->gold, B_, 1.0f),
                     TB_OK, "%s", tb_err_msg());
        g.dlogits = x->dlogits;
        break;
    case OBJ_MLM:
        memset(x->dmlm, 0, sizeof(float) * B_ * T_ * (size_t)V);
        cr_assert_eq(tb_loss_ce(&loss, grads ? x->dmlm : NULL, tb_bert_mlm_logits(m), x->mlm_labels,
                                B_ * T_, V, TB_IGNORE_INDEX, 1.0f, NULL), TB_OK, "%s", tb_err_msg());
        g.dmlm_logits = x->dmlm;
        break;
    case OBJ_INTER:
    case OBJ_PRED: {
        tb_bert_distill_losses dl;
        /* The distillation loss accumulates fit_dense gradients: only let it when asked. */
        float *saved = NULL;
        if (!grads) {
            saved = malloc(m->params.total * sizeof(float));
            memcpy(saved, m->params.grads, m->params.total * sizeof(float));
        }
        cr_assert_eq(tb_bert_distill_loss(m, &x->teacher,
                                          x->obj == OBJ_INTER ? TB_DISTILL_INTERMEDIATE : TB_DISTILL_PREDICTION,
                                          1.0f, x->gold, &dl, &g), TB_OK, "%s", tb_err_msg());
        if (saved) {
            memcpy(m->params.grads, saved, m->params.total * sizeof(float));
            free(saved);
        }
        loss = dl.total;
        break;
    }
    }
    if (grads) cr_assert_eq(tb_bert_backward(m, &g), TB_OK, "%s", tb_err_msg());
    return loss;
}

static double objective_fn(void *ctx) { return run_objective(ctx, 0); }

static void fd_setup(fd_ctx *x, objective obj, tb_bert_config c, int dropout)
{
    memset(x, 0, sizeof *x);
    x->obj = obj;
    cr_assert_eq(tb_bert_init(&x->m, &c), TB_OK, "%s", tb_err_msg());
    tb_bert_set_threads(&x->m, 1);
    tb_bert_init_random(&x->m, 11);
    /* Larger random values everywhere than a fresh init (LayerNorm weights around 1, biases
     * nonzero) so that every parameter influences the loss visibly. */
    for (int i = 0; i < x->m.params.count; i++) {
        tb_param *p = &x->m.params.items[i];
        size_t n = (size_t)tb_tensor_numel(&p->value);
        float *v = p->value.data;
        if (strstr(p->name, "LayerNorm.weight"))
            tb_fd_fill(v, n, 100 + i, 0.6f, 1.4f);
        else
            tb_fd_fill(v, n, 100 + i, -0.25f, 0.25f);
    }
    cr_assert_eq(tb_bert_arena_reserve(&x->m, B_, T_, TB_BERT_TRAIN, 0, c.mlm_head), TB_OK, "%s", tb_err_msg());
    for (int i = 0; i < B_ * T_; i++) {
        x->ids[i] = 1 + (i * 17 + 3) % (c.vocab_size - 1); /* never [PAD]: see the padding test */
        x->types[i] = (i % T_) >= 4;
        x->mask[i] = !(i / T_ == 1 && i % T_ >= 5); /* the second sequence has 2 padding positions */
        x->mlm_labels[i] = (i % 3 == 0) ? (i * 7) % c.vocab_size : TB_IGNORE_INDEX;
    }
    x->labels[0] = 2;
    x->labels[1] = 0;
    x->gold[0] = 0.7f;
    x->gold[1] = -1.3f;
    x->batch = (tb_bert_batch){B_, T_, x->ids, x->types, x->mask};
    x->run = (tb_bert_run){.dropout = dropout, .seed = 5, .seq = 3, .logits = c.head != TB_HEAD_NONE,
                           .mlm = obj == OBJ_MLM};
    for (int j = 0; j <= TL_; j++) {
        tb_fd_fill(x->t_hidden[j], sizeof x->t_hidden[j] / sizeof(float), 500 + j, -1.0f, 1.0f);
        x->th[j] = x->t_hidden[j];
    }
    for (int l = 0; l < TL_; l++) {
        tb_fd_fill(x->t_scores[l], sizeof x->t_scores[l] / sizeof(float), 600 + l, -1.0f, 1.0f);
        x->ts[l] = x->t_scores[l];
    }
    tb_fd_fill(x->t_logits, B_ * NL_, 700, -2.0f, 2.0f);
    x->teacher = (tb_bert_teacher){TL_, DT_, x->th, x->ts, x->t_logits};
    x->dmlm = calloc((size_t)B_ * T_ * c.vocab_size, sizeof(float));
}

/* Checks every parameter tensor of the model; returns the number checked. Parameters that the
 * objective does not reach must have an exactly zero analytic gradient. */
static int fd_check_all(fd_ctx *x, const char *what)
{
    tb_bert_model *m = &x->m;
    run_objective(x, 1);
    float *g = malloc(m->params.total * sizeof(float));
    memcpy(g, m->params.grads, m->params.total * sizeof(float));
    int checked = 0;
    for (int i = 0; i < m->params.count; i++) {
        tb_param *p = &m->params.items[i];
        size_t n = (size_t)tb_tensor_numel(&p->value);
        const float *gi = g + ((float *)p->value.data - m->params.values);
        /* Step 1e-2 on values of size ~0.25: the fp32 forward has relative rounding ~1e-7 on a loss
         * of O(1), i.e. ~1e-5 error in a difference quotient; the O(h^2) truncation term is ~1e-4
         * relative for these smooth functions. A tolerance of 2e-3 on the per-tensor relative error
         * leaves room for both yet catches any wrong term (those show errors of O(1)).
         * The pooler feeds relu(tanh(.)) directly: a step of 1e-2 on its weights moves pooled
         * values by up to ~3e-2 and can cross the relu kink, so it takes 1e-3 (its gradient is
         * large, ~0.1, so the larger relative rounding noise of the smaller step stays < 1e-3). */
        float h = strncmp(p->name, "bert.pooler.", 12) == 0 ? 1e-3f : 1e-2f;
        tb_fd_result r = tb_fdcheck(objective_fn, x, p->value.data, gi, n, h, 24);
        if (x->obj != OBJ_INTER && strstr(p->name, "attention.self.key.bias")) {
            /* Exactly zero in exact arithmetic when no loss reads the scores: q . b_k is the same
             * for every key of a softmax row, and softmax is invariant to a constant shift.
             * Finite differences only see rounding noise here, so check the analytic value is at
             * rounding level instead. (The attention loss does see it, through the scores.) */
            double gmax = 0;
            for (size_t k = 0; k < n; k++) gmax = fmax(gmax, fabs(gi[k]));
            cr_expect_lt(gmax, 1e-5, "%s: %s must be ~0, got %g", what, p->name, gmax);
            continue;
        }
        if (r.norm_ref < 1e-9) {
            double gmax = 0;
            for (size_t k = 0; k < n; k++) gmax = fmax(gmax, fabs(gi[k]));
            cr_expect_lt(gmax, 1e-7, "%s: %s gets no gradient by finite differences but %g analytically",
                         what, p->name, gmax);
            continue;
        }
        cr_expect_lt(r.rel_err, 2e-3, "%s: %s rel err %.3g (max abs %.3g, |g| %.3g)", what, p->name,
                     r.rel_err, r.max_abs, r.norm_ref);
        checked++;
    }
    free(g);
    return checked;
}

static void fd_teardown(fd_ctx *x)
{
    free(x->dmlm);
    tb_bert_free(&x->m);
}

Test(bert_fd, cross_entropy_tinybert_head)
{
    static fd_ctx x;
    fd_setup(&x, OBJ_CE, tiny_config(), 0);
    int n = fd_check_all(&x, "CE");
    /* Everything but the MLM head (5), fit_dense (2) and the key biases (2, checked to be ~0)
     * is reached by finite differences (the tied word embeddings are). */
    cr_assert_eq(n, x.m.params.count - 5 - 2 - 2, "checked %d", n);
    fd_teardown(&x);
}

Test(bert_fd, regression_hf_head_with_dropout_on)
{
    static fd_ctx x;
    tb_bert_config c = tiny_config();
    c.head = TB_HEAD_HF;
    c.num_labels = 1;
    c.classifier_dropout = 0.3f;
    c.hidden_dropout_prob = 0.2f;
    c.attention_probs_dropout_prob = 0.2f;
    fd_setup(&x, OBJ_REG, c, 1);
    int n = fd_check_all(&x, "regression + dropout");
    cr_assert_eq(n, x.m.params.count - 5 - 2 - 2, "checked %d", n);
    fd_teardown(&x);
}

Test(bert_fd, mlm_cross_entropy_tied_decoder)
{
    static fd_ctx x;
    fd_setup(&x, OBJ_MLM, tiny_config(), 0);
    x.run.logits = 0;
    int n = fd_check_all(&x, "MLM");
    cr_assert_eq(n, x.m.params.count - 4 - 2 - 2, "checked %d", n); /* no pooler/classifier, no fit_dense */
    fd_teardown(&x);
}

Test(bert_fd, tinybert_intermediate_loss_with_dropout_on)
{
    static fd_ctx x;
    fd_setup(&x, OBJ_INTER, tiny_config(), 1);
    x.run.logits = 0;
    int n = fd_check_all(&x, "attention + hidden");
    /* All but pooler/classifier (4) and the MLM head (5). */
    cr_assert_eq(n, x.m.params.count - 4 - 5, "checked %d", n);
    fd_teardown(&x);
}

Test(bert_fd, tinybert_prediction_loss)
{
    static fd_ctx x;
    fd_setup(&x, OBJ_PRED, tiny_config(), 0);
    int n = fd_check_all(&x, "soft CE");
    cr_assert_eq(n, x.m.params.count - 5 - 2 - 2, "checked %d", n);
    fd_teardown(&x);
}

/* ---- determinism ------------------------------------------------------------------------------ */

typedef struct snapshot {
    float *hidden, *scores, *logits, *grads;
    size_t nh, ns, nl, ng;
} snapshot;

/* Forward (dropout on, batch number `seq`) + CE backward; copies every output and gradient. */
static snapshot run_snapshot(fd_ctx *x, uint64_t seq)
{
    snapshot s = {0};
    tb_bert_model *m = &x->m;
    const int L = m->config.num_hidden_layers, C = m->config.hidden_size;
    x->run.seq = seq;
    run_objective(x, 1);
    s.nh = (size_t)(L + 1) * B_ * T_ * C;
    s.ns = (size_t)L * B_ * 4 * T_ * T_;
    s.nl = B_ * NL_;
    s.ng = m->params.total;
    s.hidden = malloc(s.nh * sizeof(float));
    s.scores = malloc(s.ns * sizeof(float));
    s.logits = malloc(s.nl * sizeof(float));
    s.grads = malloc(s.ng * sizeof(float));
    for (int j = 0; j <= L; j++)
        memcpy(s.hidden + (size_t)j * B_ * T_ * C, tb_bert_hidden(m, j), sizeof(float) * B_ * T_ * C);
    for (int l = 0; l < L; l++)
        memcpy(s.scores + (size_t)l * B_ * 4 * T_ * T_, tb_bert_scores(m, l), sizeof(float) * B_ * 4 * T_ * T_);
    memcpy(s.logits, tb_bert_logits(m), s.nl * sizeof(float));
    memcpy(s.grads, m->params.grads, s.ng * sizeof(float));
    return s;
}

static int snapshot_equal(const snapshot *a, const snapshot *b)
{
    return memcmp(a->hidden, b->hidden, a->nh * sizeof(float)) == 0 &&
           memcmp(a->scores, b->scores, a->ns * sizeof(float)) == 0 &&
           memcmp(a->logits, b->logits, a->nl * sizeof(float)) == 0 &&
           memcmp(a->grads, b->grads, a->ng * sizeof(float)) == 0;
}

static void snapshot_free(snapshot *s)
{
    free(s->hidden);
    free(s->scores);
    free(s->logits);
    free(s->grads);
}

Test(bert, dropout_is_deterministic_and_recomputable)
{
    static fd_ctx x;
    tb_bert_config c = tiny_config();
    c.head = TB_HEAD_HF;
    fd_setup(&x, OBJ_CE, c, 1);
    tb_bert_set_threads(&x.m, 2);
    cr_assert_eq(tb_bert_arena_reserve(&x.m, B_, T_, TB_BERT_TRAIN, 0, 1), TB_OK, "%s", tb_err_msg());
    snapshot a = run_snapshot(&x, 3);
    snapshot b = run_snapshot(&x, 3);
    cr_assert(snapshot_equal(&a, &b), "same seed, batch number and inputs must give bit-identical results");
    snapshot other = run_snapshot(&x, 4);
    cr_assert(memcmp(a.hidden, other.hidden, a.nh * sizeof(float)) != 0, "another batch number, other masks");
    snapshot again = run_snapshot(&x, 3);
    cr_assert(snapshot_equal(&a, &again), "a recomputed batch (same number) gets the same masks");
    x.run.seed = 6;
    snapshot seed6 = run_snapshot(&x, 3);
    cr_assert(memcmp(a.hidden, seed6.hidden, a.nh * sizeof(float)) != 0, "another seed, other masks");

    /* Dropout off vs on at the embedding output: kept values scaled by 1/(1-p), ~p dropped. */
    x.run.dropout = 0;
    snapshot off = run_snapshot(&x, 3);
    size_t n0 = (size_t)B_ * T_ * 16, dropped = 0;
    for (size_t i = 0; i < n0; i++) {
        if (a.hidden[i] == 0.0f) {
            dropped++;
            continue;
        }
        cr_assert_float_eq(a.hidden[i], off.hidden[i] / 0.9f, 1e-6f * fabsf(off.hidden[i]) + 1e-7f);
    }
    /* 224 elements at p = 0.1: expect 22.4 (sd 4.5). */
    cr_assert(dropped >= 6 && dropped <= 45, "dropped %zu of %zu", dropped, n0);
    snapshot_free(&a);
    snapshot_free(&b);
    snapshot_free(&other);
    snapshot_free(&again);
    snapshot_free(&seed6);
    snapshot_free(&off);
    fd_teardown(&x);
}

Test(bert, inference_arena_matches_training_arena_and_is_smaller)
{
    static fd_ctx x;
    fd_setup(&x, OBJ_CE, tiny_config(), 0);
    tb_bert_model *m = &x.m;
    cr_assert_eq(tb_bert_forward(m, &x.batch, &x.run), TB_OK, "%s", tb_err_msg());
    size_t train_bytes = tb_bert_arena_bytes(m);
    float h2[B_ * T_ * 16], s1[B_ * 4 * T_ * T_], lg[B_ * NL_];
    memcpy(h2, tb_bert_hidden(m, 2), sizeof h2);
    memcpy(s1, tb_bert_scores(m, 1), sizeof s1);
    memcpy(lg, tb_bert_logits(m), sizeof lg);

    tb_bert_model inf;
    cr_assert_eq(tb_bert_init(&inf, &m->config), TB_OK);
    memcpy(inf.params.values, m->params.values, m->params.total * sizeof(float));
    tb_bert_set_threads(&inf, 1);
    cr_assert_eq(tb_bert_arena_reserve(&inf, B_, T_, TB_BERT_INFER, 1u << 1, 0), TB_OK, "%s", tb_err_msg());
    cr_assert_lt(tb_bert_arena_bytes(&inf), train_bytes);
    tb_bert_run run = x.run;
    run.scores_layers = 1u << 1;
    cr_assert_eq(tb_bert_forward(&inf, &x.batch, &run), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(memcmp(h2, tb_bert_hidden(&inf, 2), sizeof h2), 0);
    cr_assert_eq(memcmp(s1, tb_bert_scores(&inf, 1), sizeof s1), 0);
    cr_assert_eq(memcmp(lg, tb_bert_logits(&inf), sizeof lg), 0);
    cr_assert_null(tb_bert_scores(&inf, 0), "layer 0 scores were not kept");
    /* Requesting scores the arena does not keep, or a backward, is an error. */
    run.scores_layers = 1u;
    cr_assert_eq(tb_bert_forward(&inf, &x.batch, &run), TB_EINVAL);
    tb_bert_grads g = {0};
    cr_assert_eq(tb_bert_backward(&inf, &g), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "TB_BERT_TRAIN"), "%s", tb_err_msg());
    tb_bert_free(&inf);
    fd_teardown(&x);
}

/* ---- bad input --------------------------------------------------------------------------------- */

Test(bert, bad_configs_and_inputs_are_rejected_with_clear_errors)
{
    tb_bert_config c = tiny_config();
    tb_bert_model m;
    c.num_attention_heads = 5;
    cr_assert_eq(tb_bert_init(&m, &c), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "not divisible"), "%s", tb_err_msg());
    c = tiny_config();
    c.hidden_dropout_prob = 1.0f;
    cr_assert_eq(tb_bert_init(&m, &c), TB_EINVAL);
    c = tiny_config();
    c.head = TB_HEAD_HF;
    c.num_labels = 0;
    cr_assert_eq(tb_bert_init(&m, &c), TB_EINVAL);

    c = tiny_config();
    c.mlm_head = 0;
    cr_assert_eq(tb_bert_init(&m, &c), TB_OK, "%s", tb_err_msg());
    int32_t ids[B_ * T_] = {0}, mask[B_ * T_], types[B_ * T_] = {0};
    for (int i = 0; i < B_ * T_; i++) mask[i] = 1;
    tb_bert_batch bt = {B_, T_, ids, types, mask};
    tb_bert_run run = {.logits = 1};
    cr_assert_eq(tb_bert_forward(&m, &bt, &run), TB_EINVAL, "no arena yet");
    cr_assert(strstr(tb_err_msg(), "arena"), "%s", tb_err_msg());
    cr_assert_eq(tb_bert_arena_reserve(&m, B_, 17, TB_BERT_TRAIN, 0, 0), TB_EINVAL, "T > max positions");
    cr_assert_eq(tb_bert_arena_reserve(&m, B_, T_, TB_BERT_TRAIN, 0, 1), TB_EINVAL, "no MLM head");
    cr_assert_eq(tb_bert_arena_reserve(&m, B_, T_, TB_BERT_TRAIN, 0, 0), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_bert_forward(&m, &bt, &run), TB_OK, "%s", tb_err_msg());
    ids[9] = 50;
    cr_assert_eq(tb_bert_forward(&m, &bt, &run), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "input_ids[1][2] = 50"), "%s", tb_err_msg());
    ids[9] = -1;
    cr_assert_eq(tb_bert_forward(&m, &bt, &run), TB_EINVAL);
    ids[9] = 3;
    types[4] = 2;
    cr_assert_eq(tb_bert_forward(&m, &bt, &run), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "token_type_ids"), "%s", tb_err_msg());
    types[4] = 0;
    mask[3] = 7;
    cr_assert_eq(tb_bert_forward(&m, &bt, &run), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "attention_mask"), "%s", tb_err_msg());
    mask[3] = 1;
    tb_bert_batch big = {B_ + 1, T_, ids, types, mask};
    cr_assert_eq(tb_bert_forward(&m, &big, &run), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "exceeds the arena"), "%s", tb_err_msg());
    run.mlm = 1;
    cr_assert_eq(tb_bert_forward(&m, &bt, &run), TB_EINVAL);
    run.mlm = 0;
    cr_assert_eq(tb_bert_forward(&m, &bt, &run), TB_OK, "%s", tb_err_msg());
    float dmlm[4] = {0};
    tb_bert_grads g = {.dmlm_logits = dmlm};
    cr_assert_eq(tb_bert_backward(&m, &g), TB_EINVAL);
    /* Distillation with a teacher whose layer count is not a multiple of the student's. */
    tb_bert_teacher t = {3, 24, NULL, NULL, NULL};
    tb_bert_distill_losses dl;
    cr_assert_eq(tb_bert_distill_loss(&m, &t, TB_DISTILL_INTERMEDIATE, 1.0f, NULL, &dl, &g), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "multiple"), "%s", tb_err_msg());
    t.num_layers = 4;
    t.hidden_size = 20;
    const float *th[5] = {0}, *ts[4] = {0};
    t.hidden = th;
    t.scores = ts;
    cr_assert_eq(tb_bert_distill_loss(&m, &t, TB_DISTILL_INTERMEDIATE, 1.0f, NULL, &dl, &g), TB_ESHAPE);
    t.hidden_size = 24;
    cr_assert_eq(tb_bert_distill_loss(&m, &t, TB_DISTILL_INTERMEDIATE, 1.0f, NULL, &dl, &g), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "missing"), "%s", tb_err_msg());
    tb_bert_free(&m);
    tb_bert_free(&m); /* freeing twice is safe */
}

Test(bert, pad_row_gets_no_lookup_gradient)
{
    static fd_ctx x;
    tb_bert_config c = tiny_config();
    c.mlm_head = 0;
    fd_setup(&x, OBJ_CE, c, 0);
    x.ids[5] = 0;
    x.ids[12] = 0;
    run_objective(&x, 1);
    const float *g = x.m.params.items[x.m.word_w].grad.data;
    for (int i = 0; i < 16; i++) cr_assert_eq(g[i], 0.0f, "[PAD] row, element %d", i);
    double other = 0;
    for (int i = 16; i < 50 * 16; i++) other += fabs(g[i]);
    cr_assert_gt(other, 0.0);
    fd_teardown(&x);
}

Test(bert, inference_arena_with_few_kept_states_matches_training_bit_for_bit)
{
    /* 12 x 7 = 84 rows: the in-place GELU of the inference arena runs in two row blocks. */
    enum { BB = 12, TT = 7 };
    tb_bert_config c = tiny_config();
    c.num_hidden_layers = 4;
    tb_bert_model tr, inf;
    cr_assert_eq(tb_bert_init(&tr, &c), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_bert_init(&inf, &c), TB_OK, "%s", tb_err_msg());
    tb_bert_init_random(&tr, 3);
    for (int i = 0; i < tr.params.count; i++) { /* nonzero biases everywhere */
        tb_param *p = &tr.params.items[i];
        if (p->value.ndim == 1 && !strstr(p->name, "LayerNorm.weight"))
            tb_fd_fill(p->value.data, (size_t)tb_tensor_numel(&p->value), 40 + i, -0.2f, 0.2f);
    }
    memcpy(inf.params.values, tr.params.values, tr.params.total * sizeof(float));
    tb_bert_set_threads(&tr, 2);
    tb_bert_set_threads(&inf, 2);
    int32_t ids[BB * TT], mask[BB * TT];
    for (int i = 0; i < BB * TT; i++) {
        ids[i] = 1 + (i * 13) % 49;
        mask[i] = (i % TT) < 3 + (i / TT) % 5;
    }
    tb_bert_batch bt = {BB, TT, ids, NULL, mask};
    tb_bert_run run = {.dropout = 1, .seed = 9, .seq = 2, .logits = 1, .scores_layers = 0xA};
    cr_assert_eq(tb_bert_arena_reserve(&tr, BB, TT, TB_BERT_TRAIN, 0, 0), TB_OK, "%s", tb_err_msg());
    tb_bert_arena_spec spec = {BB, TT, TB_BERT_INFER, 0xA, (1u << 0) | (1u << 2) | (1u << 4), 0, 0};
    cr_assert_eq(tb_bert_arena_reserve_ex(&inf, &spec), TB_OK, "%s", tb_err_msg());
    cr_assert_lt(tb_bert_arena_bytes(&inf), tb_bert_arena_bytes(&tr) / 2);
    cr_assert_eq(tb_bert_forward(&tr, &bt, &run), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(tb_bert_forward(&inf, &bt, &run), TB_OK, "%s", tb_err_msg());
    const size_t nh = (size_t)BB * TT * 16, ns = (size_t)BB * 4 * TT * TT;
    for (int j = 0; j <= 4; j++) {
        if (j % 2) {
            cr_assert_null(tb_bert_hidden(&inf, j), "hidden state %d was not kept", j);
            continue;
        }
        cr_assert_eq(memcmp(tb_bert_hidden(&tr, j), tb_bert_hidden(&inf, j), nh * sizeof(float)), 0, "hidden %d", j);
    }
    for (int l = 1; l < 4; l += 2)
        cr_assert_eq(memcmp(tb_bert_scores(&tr, l), tb_bert_scores(&inf, l), ns * sizeof(float)), 0, "scores %d", l);
    cr_assert_null(tb_bert_scores(&inf, 0));
    cr_assert_eq(memcmp(tb_bert_logits(&tr), tb_bert_logits(&inf), BB * 3 * sizeof(float)), 0);
    tb_bert_free(&tr);
    tb_bert_free(&inf);
}

/* ---- [CLS]-only last layer ----------------------------------------------------------------- */

Test(bert_fd, cls_only_last_layer_with_dropout_on)
{
    static fd_ctx x;
    tb_bert_config c = tiny_config();
    c.head = TB_HEAD_HF;
    c.classifier_dropout = 0.2f;
    fd_setup(&x, OBJ_CE, c, 1);
    x.run.cls_only = 1;
    int n = fd_check_all(&x, "CE, cls_only");
    cr_assert_eq(n, x.m.params.count - 5 - 2 - 2, "checked %d", n);
    fd_teardown(&x);
}

/* Every parameter gradient of m matches `ref` (a copy of params.grads): 1e-5 relative, key biases
 * (~0 either way, softmax shift invariance) 1e-6 absolute. */
static void expect_grads_match(const tb_bert_model *m, const float *ref)
{
    double mx;
    for (int i = 0; i < m->params.count; i++) {
        const tb_param *p = &m->params.items[i];
        size_t n = (size_t)tb_tensor_numel(&p->grad), off = (size_t)((float *)p->grad.data - m->params.grads);
        double r = tb_rel_err(p->grad.data, ref + off, n, &mx);
        if (strstr(p->name, "key.bias"))
            cr_assert_lt(mx, 1e-6, "%s", p->name);
        else
            cr_assert_lt(r, 1e-5, "%s: rel %g", p->name, r);
    }
}

Test(bert, cls_only_matches_the_full_last_layer)
{
    static fd_ctx x;
    tb_bert_config c = tiny_config();
    c.head = TB_HEAD_HF;
    fd_setup(&x, OBJ_CE, c, 1);
    tb_bert_model *m = &x.m;
    run_objective(&x, 1);
    float logits[B_ * NL_], *g_full = malloc(m->params.total * sizeof(float));
    memcpy(logits, tb_bert_logits(m), sizeof logits);
    memcpy(g_full, m->params.grads, m->params.total * sizeof(float));
    cr_assert_not_null(tb_bert_hidden(m, 2));

    x.run.cls_only = 1;
    run_objective(&x, 1);
    double mx;
    cr_assert_lt(tb_rel_err(tb_bert_logits(m), logits, B_ * NL_, &mx), 1e-6, "logits");
    expect_grads_match(m, g_full);
    cr_assert_null(tb_bert_hidden(m, 2), "h_L is not computed in full with cls_only");
    cr_assert_not_null(tb_bert_hidden(m, 1));
    /* A gradient on h_L cannot be taken after a cls_only forward; MLM output is refused. */
    float dh[B_ * T_ * 16] = {0};
    const float *dhs[3] = {NULL, NULL, dh};
    tb_bert_grads g = {.dlogits = x.dlogits, .dhidden = dhs};
    cr_assert_eq(tb_bert_backward(m, &g), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "cls_only"), "%s", tb_err_msg());
    x.run.mlm = 1;
    cr_assert_eq(tb_bert_forward(m, &x.batch, &x.run), TB_EINVAL);
    x.run.mlm = 0;
    x.run.logits = 0;
    cr_assert_eq(tb_bert_forward(m, &x.batch, &x.run), TB_EINVAL);
    free(g_full);
    fd_teardown(&x);
}

/* The labelled positions of x's MLM batch: rows[] (flattened b*T + t, increasing) and, when
 * labels is not NULL, their labels compacted in the same order. Returns their count. */
static int labelled_rows(const fd_ctx *x, int32_t *rows, int32_t *labels)
{
    int M = 0;
    for (int i = 0; i < B_ * T_; i++)
        if (x->mlm_labels[i] != TB_IGNORE_INDEX) {
            if (labels) labels[M] = x->mlm_labels[i];
            rows[M++] = i;
        }
    return M;
}

/* The MLM head on the labelled rows only (run.mlm_rows) gives the full head's loss, the same
 * logits on those rows and the same parameter gradients. */
Test(bert, mlm_rows_match_the_full_head)
{
    static fd_ctx x;
    fd_setup(&x, OBJ_MLM, tiny_config(), 1);
    tb_bert_model *m = &x.m;
    const int V = m->config.vocab_size;
    double full_loss = run_objective(&x, 1);
    float *full_logits = malloc(sizeof(float) * B_ * T_ * (size_t)V), *g_full = malloc(m->params.total * sizeof(float));
    memcpy(full_logits, tb_bert_mlm_logits(m), sizeof(float) * B_ * T_ * (size_t)V);
    memcpy(g_full, m->params.grads, m->params.total * sizeof(float));

    int32_t rows[B_ * T_], labels[B_ * T_];
    const int M = labelled_rows(&x, rows, labels);
    cr_assert(M > 1 && M < B_ * T_, "the test needs some labelled and some unlabelled rows (%d)", M);
    x.run.mlm_rows = rows;
    x.run.mlm_count = M;
    tb_bert_zero_grad(m);
    cr_assert_eq(tb_bert_forward(m, &x.batch, &x.run), TB_OK, "%s", tb_err_msg());
    const float *lg = tb_bert_mlm_logits(m);
    double mx;
    for (int i = 0; i < M; i++)
        cr_assert_lt(tb_rel_err(lg + (size_t)i * V, full_logits + (size_t)rows[i] * V, (size_t)V, &mx), 1e-6,
                     "logits of row %d", rows[i]);
    double loss;
    memset(x.dmlm, 0, sizeof(float) * (size_t)M * V);
    cr_assert_eq(tb_loss_ce(&loss, x.dmlm, lg, labels, M, V, TB_IGNORE_INDEX, 1.0f, NULL), TB_OK, "%s", tb_err_msg());
    cr_assert(fabs(loss - full_loss) <= 1e-6 * fabs(full_loss), "loss %.9g vs %.9g", loss, full_loss);
    tb_bert_grads g = {.dmlm_logits = x.dmlm};
    cr_assert_eq(tb_bert_backward(m, &g), TB_OK, "%s", tb_err_msg());
    expect_grads_match(m, g_full);
    /* rows out of order or out of range are refused */
    int32_t bad[2] = {3, 3};
    x.run.mlm_rows = bad;
    x.run.mlm_count = 2;
    cr_assert_eq(tb_bert_forward(m, &x.batch, &x.run), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "mlm_rows[1]"), "%s", tb_err_msg());
    bad[1] = B_ * T_;
    cr_assert_eq(tb_bert_forward(m, &x.batch, &x.run), TB_EINVAL);
    free(full_logits);
    free(g_full);
    fd_teardown(&x);
}

/* One forward + MLM loss + backward on the labelled rows; copies the logits and the gradients. */
static void mlm_rows_step(fd_ctx *x, const int32_t *rows, const int32_t *labels, int M, float *logits, float *grads)
{
    tb_bert_model *m = &x->m;
    const int V = m->config.vocab_size;
    double loss;
    x->run.mlm_rows = rows;
    x->run.mlm_count = M;
    tb_bert_zero_grad(m);
    cr_assert_eq(tb_bert_forward(m, &x->batch, &x->run), TB_OK, "%s", tb_err_msg());
    memcpy(logits, tb_bert_mlm_logits(m), sizeof(float) * (size_t)M * V);
    memset(x->dmlm, 0, sizeof(float) * (size_t)M * V);
    cr_assert_eq(tb_loss_ce(&loss, x->dmlm, logits, labels, M, V, TB_IGNORE_INDEX, 1.0f, NULL), TB_OK, "%s",
                 tb_err_msg());
    tb_bert_grads g = {.dmlm_logits = x->dmlm};
    cr_assert_eq(tb_bert_backward(m, &g), TB_OK, "%s", tb_err_msg());
    memcpy(grads, m->params.grads, m->params.total * sizeof(float));
}

/* An arena with room for the labelled rows only (tb_bert_arena_spec.mlm_max_rows) gives the same
 * logits and gradients as a full MLM arena, bit for bit, in fewer bytes, and refuses a forward
 * with more rows. */
Test(bert, mlm_arena_with_room_for_the_labelled_rows_only)
{
    static fd_ctx x;
    fd_setup(&x, OBJ_MLM, tiny_config(), 1);
    tb_bert_model *m = &x.m;
    const int V = m->config.vocab_size;
    int32_t rows[B_ * T_ + 1], labels[B_ * T_];
    const int M = labelled_rows(&x, rows, labels);
    cr_assert(M > 1 && M < B_ * T_ - 1, "the test needs some labelled and some unlabelled rows (%d)", M);
    const size_t np = m->params.total;
    float *want = malloc(sizeof(float) * (size_t)M * V), *got = malloc(sizeof(float) * (size_t)M * V);
    float *want_g = malloc(np * sizeof(float)), *got_g = malloc(np * sizeof(float));
    mlm_rows_step(&x, rows, labels, M, want, want_g);
    const size_t full_bytes = tb_bert_arena_bytes(m);

    tb_bert_arena_release(m);
    tb_bert_arena_spec spec = {.max_B = B_, .max_T = T_, .mode = TB_BERT_TRAIN, .keep_hidden = TB_BERT_ALL_LAYERS,
                               .mlm = 1, .mlm_max_rows = M};
    cr_assert_eq(tb_bert_arena_reserve_ex(m, &spec), TB_OK, "%s", tb_err_msg());
    cr_assert_lt(tb_bert_arena_bytes(m), full_bytes - (size_t)(B_ * T_ - M) * V * sizeof(float) + 1,
                 "the capped arena should save the logits of the %d unlabelled rows", B_ * T_ - M);
    mlm_rows_step(&x, rows, labels, M, got, got_g);
    cr_assert(memcmp(want, got, sizeof(float) * (size_t)M * V) == 0, "logits differ from the full arena's");
    cr_assert(memcmp(want_g, got_g, np * sizeof(float)) == 0, "gradients differ from the full arena's");

    /* one row more than reserved, or the full head, is refused and says why */
    cr_assert_lt(rows[M - 1], B_ * T_ - 1, "the test appends the last position, which must be unlabelled");
    rows[M] = B_ * T_ - 1;
    x.run.mlm_count = M + 1;
    cr_assert_eq(tb_bert_forward(m, &x.batch, &x.run), TB_EINVAL);
    cr_assert(strstr(tb_err_msg(), "room for"), "%s", tb_err_msg());
    x.run.mlm_rows = NULL;
    x.run.mlm_count = 0;
    cr_assert_eq(tb_bert_forward(m, &x.batch, &x.run), TB_EINVAL);
    free(want);
    free(got);
    free(want_g);
    free(got_g);
    fd_teardown(&x);
}
