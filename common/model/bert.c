/* bert.c - BERT model: configuration checks, the parameter table, random initialisation. */
#include "bert_internal.h"

#include "tb/base/error.h"
#include "tb/base/rng.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tb_bert_config_check(const tb_bert_config *c)
{
    int rc = TB_OK;
    TB_CHECK(c != NULL, TB_EINVAL, "bert config is NULL");
    TB_CHECK(c->vocab_size > 0, TB_EINVAL, "config vocab_size must be > 0, got %d", c->vocab_size);
    TB_CHECK(c->hidden_size > 0, TB_EINVAL, "config hidden_size must be > 0, got %d", c->hidden_size);
    TB_CHECK(c->num_hidden_layers > 0 && c->num_hidden_layers <= 48, TB_EINVAL,
             "config num_hidden_layers must be in 1..48, got %d", c->num_hidden_layers);
    TB_CHECK(c->num_attention_heads > 0, TB_EINVAL, "config num_attention_heads must be > 0, got %d",
             c->num_attention_heads);
    TB_CHECK(c->hidden_size % c->num_attention_heads == 0, TB_EINVAL,
             "config hidden_size %d is not divisible by num_attention_heads %d", c->hidden_size,
             c->num_attention_heads);
    TB_CHECK(c->intermediate_size > 0, TB_EINVAL, "config intermediate_size must be > 0, got %d",
             c->intermediate_size);
    TB_CHECK(c->max_position_embeddings > 0, TB_EINVAL,
             "config max_position_embeddings must be > 0, got %d", c->max_position_embeddings);
    TB_CHECK(c->type_vocab_size > 0, TB_EINVAL, "config type_vocab_size must be > 0, got %d",
             c->type_vocab_size);
    TB_CHECK(c->layer_norm_eps > 0.0f, TB_EINVAL, "config layer_norm_eps must be > 0, got %g",
             (double)c->layer_norm_eps);
    TB_CHECK(c->hidden_dropout_prob >= 0.0f && c->hidden_dropout_prob < 1.0f, TB_EINVAL,
             "config hidden_dropout_prob must be in [0, 1), got %g", (double)c->hidden_dropout_prob);
    TB_CHECK(c->attention_probs_dropout_prob >= 0.0f && c->attention_probs_dropout_prob < 1.0f,
             TB_EINVAL, "config attention_probs_dropout_prob must be in [0, 1), got %g",
             (double)c->attention_probs_dropout_prob);
    TB_CHECK(c->classifier_dropout >= 0.0f && c->classifier_dropout < 1.0f, TB_EINVAL,
             "config classifier_dropout must be in [0, 1), got %g", (double)c->classifier_dropout);
    TB_CHECK(c->pad_token_id >= -1 && c->pad_token_id < c->vocab_size, TB_EINVAL,
             "config pad_token_id %d is outside -1..vocab_size-1 (%d)", c->pad_token_id,
             c->vocab_size - 1);
    TB_CHECK(c->head == TB_HEAD_NONE || c->head == TB_HEAD_TINYBERT || c->head == TB_HEAD_HF,
             TB_EINVAL, "config head kind %d is unknown", (int)c->head);
    TB_CHECK(c->head == TB_HEAD_NONE || c->num_labels >= 1, TB_EINVAL,
             "config with a classification head needs num_labels >= 1 (1 = regression), got %d",
             c->num_labels);
    TB_CHECK(c->fit_size >= 0, TB_EINVAL, "config fit_size must be >= 0, got %d", c->fit_size);
error:
    return rc;
}

/* ---- parameter table ------------------------------------------------------------------------ */

typedef struct pspec {
    int64_t shape[2];
    int ndim;
    int no_decay;
    int follow; /* 1: placed directly after the previous tensor (fused QKV groups) */
} pspec;

typedef struct pbuild {
    tb_param *items;
    pspec *spec;
    int count, cap;
} pbuild;

static int pb_add(pbuild *pb, int *idx, int follow, int no_decay, int64_t d0, int64_t d1,
                  const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static int pb_add(pbuild *pb, int *idx, int follow, int no_decay, int64_t d0, int64_t d1,
                  const char *fmt, ...)
{
    if (pb->count == pb->cap) {
        int cap = pb->cap ? pb->cap * 2 : 64;
        tb_param *items = realloc(pb->items, (size_t)cap * sizeof *items);
        if (!items) return TB_ERR(TB_ENOMEM, "out of memory building the parameter table");
        pb->items = items;
        pspec *spec = realloc(pb->spec, (size_t)cap * sizeof *spec);
        if (!spec) return TB_ERR(TB_ENOMEM, "out of memory building the parameter table");
        pb->spec = spec;
        pb->cap = cap;
    }
    tb_param *p = &pb->items[pb->count];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof p->name)
        return TB_ERR(TB_EINVAL, "parameter name too long (max %d characters)", TB_PARAM_NAME_MAX - 1);
    p->no_decay = no_decay;
    p->trainable = 1;
    pspec *s = &pb->spec[pb->count];
    s->ndim = d1 > 0 ? 2 : 1;
    s->shape[0] = d0;
    s->shape[1] = d1 > 0 ? d1 : 0;
    s->no_decay = no_decay;
    s->follow = follow;
    if (idx) *idx = pb->count;
    pb->count++;
    return TB_OK;
}

static int build_specs(tb_bert_model *m, pbuild *pb)
{
    int rc = TB_OK;
    const tb_bert_config *c = &m->config;
    const int64_t C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    TB_TRY(pb_add(pb, &m->word_w, 0, 0, V, C, "bert.embeddings.word_embeddings.weight"));
    TB_TRY(pb_add(pb, &m->pos_w, 0, 0, c->max_position_embeddings, C,
                  "bert.embeddings.position_embeddings.weight"));
    TB_TRY(pb_add(pb, &m->type_w, 0, 0, c->type_vocab_size, C,
                  "bert.embeddings.token_type_embeddings.weight"));
    TB_TRY(pb_add(pb, &m->eln_w, 0, 1, C, 0, "bert.embeddings.LayerNorm.weight"));
    TB_TRY(pb_add(pb, &m->eln_b, 0, 1, C, 0, "bert.embeddings.LayerNorm.bias"));
    for (int l = 0; l < c->num_hidden_layers; l++) {
        tb_bert_layer_idx *x = &m->layer[l];
        const char *pre = "bert.encoder.layer";
        TB_TRY(pb_add(pb, &x->qkv_w, 0, 0, C, C, "%s.%d.attention.self.query.weight", pre, l));
        TB_TRY(pb_add(pb, NULL, 1, 0, C, C, "%s.%d.attention.self.key.weight", pre, l));
        TB_TRY(pb_add(pb, NULL, 1, 0, C, C, "%s.%d.attention.self.value.weight", pre, l));
        TB_TRY(pb_add(pb, &x->qkv_b, 0, 1, C, 0, "%s.%d.attention.self.query.bias", pre, l));
        TB_TRY(pb_add(pb, NULL, 1, 1, C, 0, "%s.%d.attention.self.key.bias", pre, l));
        TB_TRY(pb_add(pb, NULL, 1, 1, C, 0, "%s.%d.attention.self.value.bias", pre, l));
        TB_TRY(pb_add(pb, &x->ao_w, 0, 0, C, C, "%s.%d.attention.output.dense.weight", pre, l));
        TB_TRY(pb_add(pb, &x->ao_b, 0, 1, C, 0, "%s.%d.attention.output.dense.bias", pre, l));
        TB_TRY(pb_add(pb, &x->aln_w, 0, 1, C, 0, "%s.%d.attention.output.LayerNorm.weight", pre, l));
        TB_TRY(pb_add(pb, &x->aln_b, 0, 1, C, 0, "%s.%d.attention.output.LayerNorm.bias", pre, l));
        TB_TRY(pb_add(pb, &x->i_w, 0, 0, F, C, "%s.%d.intermediate.dense.weight", pre, l));
        TB_TRY(pb_add(pb, &x->i_b, 0, 1, F, 0, "%s.%d.intermediate.dense.bias", pre, l));
        TB_TRY(pb_add(pb, &x->o_w, 0, 0, C, F, "%s.%d.output.dense.weight", pre, l));
        TB_TRY(pb_add(pb, &x->o_b, 0, 1, C, 0, "%s.%d.output.dense.bias", pre, l));
        TB_TRY(pb_add(pb, &x->oln_w, 0, 1, C, 0, "%s.%d.output.LayerNorm.weight", pre, l));
        TB_TRY(pb_add(pb, &x->oln_b, 0, 1, C, 0, "%s.%d.output.LayerNorm.bias", pre, l));
    }
    if (c->head != TB_HEAD_NONE) {
        TB_TRY(pb_add(pb, &m->pool_w, 0, 0, C, C, "bert.pooler.dense.weight"));
        TB_TRY(pb_add(pb, &m->pool_b, 0, 1, C, 0, "bert.pooler.dense.bias"));
        TB_TRY(pb_add(pb, &m->cls_w, 0, 0, c->num_labels, C, "classifier.weight"));
        TB_TRY(pb_add(pb, &m->cls_b, 0, 1, c->num_labels, 0, "classifier.bias"));
    }
    if (c->mlm_head) {
        TB_TRY(pb_add(pb, &m->mlm_w, 0, 0, C, C, "cls.predictions.transform.dense.weight"));
        TB_TRY(pb_add(pb, &m->mlm_b, 0, 1, C, 0, "cls.predictions.transform.dense.bias"));
        TB_TRY(pb_add(pb, &m->mlm_ln_w, 0, 1, C, 0, "cls.predictions.transform.LayerNorm.weight"));
        TB_TRY(pb_add(pb, &m->mlm_ln_b, 0, 1, C, 0, "cls.predictions.transform.LayerNorm.bias"));
        TB_TRY(pb_add(pb, &m->mlm_dec_b, 0, 1, V, 0, "cls.predictions.bias"));
    }
    if (c->fit_size > 0) {
        TB_TRY(pb_add(pb, &m->fit_w, 0, 0, c->fit_size, C, "fit_dense.weight"));
        TB_TRY(pb_add(pb, &m->fit_b, 0, 1, c->fit_size, 0, "fit_dense.bias"));
    }
    if (c->head == TB_HEAD_NONE && c->pooler) {
        TB_TRY(pb_add(pb, &m->pool_w, 0, 0, C, C, "bert.pooler.dense.weight"));
        TB_TRY(pb_add(pb, &m->pool_b, 0, 1, C, 0, "bert.pooler.dense.bias"));
    }
error:
    return rc;
}

/* Zeroed, 64-byte aligned memory from calloc: large blocks come as fresh zero pages that cost no
 * resident memory until written (an inference-only model never touches its gradients). */
static float *zalloc_aligned(size_t bytes, void **raw)
{
    *raw = calloc(1, bytes + TB_ALIGN);
    if (!*raw) return NULL;
    return (float *)(((uintptr_t)*raw + TB_ALIGN - 1) & ~(uintptr_t)(TB_ALIGN - 1));
}

int tb_bert_init(tb_bert_model *m, const tb_bert_config *cfg)
{
    int rc = TB_OK;
    pbuild pb = {0};
    size_t *off = NULL;
    memset(m, 0, sizeof *m);
    m->word_w = m->pos_w = m->type_w = m->eln_w = m->eln_b = -1;
    m->pool_w = m->pool_b = m->cls_w = m->cls_b = -1;
    m->mlm_w = m->mlm_b = m->mlm_ln_w = m->mlm_ln_b = m->mlm_dec_b = -1;
    m->fit_w = m->fit_b = -1;
    TB_TRY(tb_bert_config_check(cfg));
    m->config = *cfg;
    m->layer = calloc((size_t)cfg->num_hidden_layers, sizeof *m->layer);
    TB_CHECK(m->layer, TB_ENOMEM, "out of memory for %d layer descriptors", cfg->num_hidden_layers);
    TB_TRY(build_specs(m, &pb));

    off = malloc((size_t)pb.count * sizeof *off);
    TB_CHECK(off, TB_ENOMEM, "out of memory building the parameter table");
    size_t total = 0, prev_end = 0;
    for (int i = 0; i < pb.count; i++) {
        size_t n = (size_t)pb.spec[i].shape[0] * (size_t)(pb.spec[i].ndim == 2 ? pb.spec[i].shape[1] : 1);
        size_t o = pb.spec[i].follow ? prev_end : (total + 15) / 16 * 16;
        off[i] = o;
        prev_end = o + n;
        total = prev_end;
    }
    total = (total + 15) / 16 * 16;
    TB_CHECK(total < ((size_t)1 << 40), TB_ENOMEM, "model too large: %zu parameters", total);
    m->params.values = zalloc_aligned(total * sizeof(float), &m->values_raw);
    m->params.grads = zalloc_aligned(total * sizeof(float), &m->grads_raw);
    TB_CHECK(m->params.values && m->params.grads, TB_ENOMEM,
             "out of memory for %zu parameters (%.1f MB twice)", total, total * 4.0 / 1e6);
    m->params.total = total;
    m->params.items = pb.items;
    m->params.count = pb.count;
    pb.items = NULL;
    for (int i = 0; i < m->params.count; i++) {
        tb_param *p = &m->params.items[i];
        TB_TRY(tb_tensor_borrow(&p->value, TB_F32, pb.spec[i].ndim, pb.spec[i].shape, m->params.values + off[i]));
        TB_TRY(tb_tensor_borrow(&p->grad, TB_F32, pb.spec[i].ndim, pb.spec[i].shape, m->params.grads + off[i]));
    }
    free(off);
    free(pb.spec);
    return TB_OK;
error:
    free(off);
    free(pb.items);
    free(pb.spec);
    tb_bert_free(m);
    return rc;
}

void tb_bert_free(tb_bert_model *m)
{
    if (!m) return;
    tb_bert_arena_release(m);
    free(m->values_raw);
    free(m->grads_raw);
    free(m->params.items);
    free(m->layer);
    memset(m, 0, sizeof *m);
}

static int is_layernorm(const char *name) { return strstr(name, "LayerNorm.") != NULL; }

void tb_bert_init_random(tb_bert_model *m, uint64_t seed)
{
    tb_rng_key key = tb_rng_key_make(seed, TB_RNG_INIT);
    for (int i = 0; i < m->params.count; i++) {
        tb_param *p = &m->params.items[i];
        float *v = p->value.data;
        size_t n = (size_t)tb_tensor_numel(&p->value);
        const char *name = p->name;
        size_t len = strlen(name);
        int is_weight = len >= 7 && strcmp(name + len - 7, ".weight") == 0;
        if (is_layernorm(name)) {
            float x = is_weight ? 1.0f : 0.0f;
            for (size_t k = 0; k < n; k++) v[k] = x;
        } else if (is_weight) {
            tb_rng_normal(key, 0, (uint32_t)i, 0.0f, m->config.initializer_range, v, n);
        } else {
            memset(v, 0, n * sizeof *v);
        }
    }
    int pad = m->config.pad_token_id;
    if (pad >= 0 && m->word_w >= 0) {
        const int64_t C = m->config.hidden_size;
        memset((float *)m->params.items[m->word_w].value.data + (int64_t)pad * C, 0, (size_t)C * sizeof(float));
    }
}

int tb_bert_set_trainable(tb_bert_model *m, const char *prefix, int on)
{
    int changed = 0;
    size_t n = prefix ? strlen(prefix) : 0;
    for (int i = 0; i < m->params.count; i++) {
        tb_param *p = &m->params.items[i];
        if (n == 0 || strncmp(p->name, prefix, n) == 0) {
            if (p->trainable != (on != 0)) changed++;
            p->trainable = on != 0;
        }
    }
    return changed;
}

void tb_bert_set_threads(tb_bert_model *m, int threads) { m->threads = threads > 0 ? threads : 0; }

void tb_bert_zero_grad(tb_bert_model *m)
{
    if (m->params.grads) memset(m->params.grads, 0, m->params.total * sizeof(float));
}

tb_dropout tb_bert_drop_desc(const tb_bert_run *run, float p, int layer, int site)
{
    tb_dropout d = {0};
    d.p = run->dropout ? p : 0.0f;
    d.key = tb_rng_key_make(run->seed, TB_RNG_DROPOUT);
    d.batch_seq = (uint32_t)run->seq;
    d.site = (uint32_t)(layer * 16 + site);
    return d;
}
