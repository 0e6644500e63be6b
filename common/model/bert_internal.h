/* bert_internal.h - the activation arena of tb_bert_model, shared by bert*.c (not installed). */
#ifndef TB_BERT_INTERNAL_H
#define TB_BERT_INTERNAL_H

#include "tb/model/bert.h"
#include "tb/model/ops.h"
#include "tb/base/rng.h"

/* Per-layer activations. In a TB_BERT_INFER arena every layer points at the same work buffers
 * (except scores of kept layers). */
typedef struct tb_bert_layer_act {
    float *qkv;        /* [N, 3C] */
    float *scores;     /* [B, NH, T, T] pre-softmax */
    float *probs;      /* [B, NH, T, T] softmax, before dropout */
    float *ctx;        /* [N, C] */
    float *res1;       /* [N, C] h + dropout(ctx W_o^T + b_o): input of the attention LayerNorm */
    float *a;          /* [N, C] attention LayerNorm output */
    float *a_mean, *a_rstd; /* [N] */
    float *ffn_pre;    /* [N, F] GELU input (bias added) */
    float *ffn_act;    /* [N, F] GELU output */
    float *res2;       /* [N, C] a + dropout(ffn W_2^T + b_2): input of the output LayerNorm */
    float *o_mean, *o_rstd; /* [N] */
} tb_bert_layer_act;

struct tb_bert_arena {
    int max_B, max_T;
    tb_bert_mode mode;
    uint64_t keep_scores;    /* layers whose scores survive the forward */
    uint64_t keep_hidden;    /* hidden states that survive the forward */
    int mlm;
    int nthreads;            /* attention scratch sized for this many threads */
    float *base;             /* the one allocation */
    size_t floats;
    /* last forward */
    int B, T;
    int have_forward;
    tb_bert_run run;
    int32_t *ids, *types;    /* [N] copies of the last forward's inputs (used by the backward) */
    /* activations */
    float *emb_sum;          /* [N, C] word + position + type (LayerNorm input) */
    float *e_mean, *e_rstd;  /* [N] */
    float **hidden;          /* [L + 1] pointers, each [N, C] */
    tb_bert_layer_act *layer;/* [L] */
    float *cls_in;           /* [B, C] hidden_L[:, 0] */
    float *pooled;           /* [B, C] tanh output */
    float *head_act;         /* [B, C] relu(pooled) or dropout(pooled) */
    float *logits;           /* [B, NL] */
    int64_t mlm_max_rows;    /* R: rows the MLM head has room for (<= max_B * max_T) */
    float *mlm_pre, *mlm_act, *mlm_ln, *mlm_mean, *mlm_rstd; /* [R, C] x3, [R] x2 */
    float *mlm_logits;       /* [R, V] */
    float *mlm_in;           /* [R, C]: the rows of h_L the MLM head reads (run.mlm_rows) */
    float *gelu_scratch;     /* INFER: [TB_BERT_GELU_ROWS, F], GELU output before it overwrites
                              * its input (ffn_act == ffn_pre there) */
    float *attn_scratch;
    size_t attn_scratch_floats;
    /* backward work buffers (TB_BERT_TRAIN) */
    float *gx, *gy, *gz, *gw;   /* [N, C] */
    float *gf1, *gf2;           /* [N, F] */
    float *gqkv;                /* [N, 3C] */
    float *gb1, *gb2, *gb3;     /* [B, C] */
    /* last layer restricted to the [CLS] rows (only the head reads h_L): see tb_bert_cls_work */
    float *cls_work;            /* 12 x [B, C] + 4 x [B, F] + 4 x [B] */
    /* distillation loss buffers (TB_BERT_TRAIN with fit_size > 0) */
    float *fit_out, *fit_grad;  /* [N, fit_size] */
    float **dhidden;            /* [L + 1] pointers, each [N, C] */
    float **dscores;            /* [L] pointers, each [B, NH, T, T] */
    float *dlogits;             /* [B, NL] */
    /* pointer arrays (small, separate allocation) */
    void *ptrs;
};

#define TB_BERT_GELU_ROWS 64

/* Slices of arena->cls_work: the last layer's activations (and their gradients) on the [CLS]
 * rows, [B, C] / [B, F] / [B]. The forward fills the activations when run.cls_only is set; the
 * backward otherwise gathers them from the full buffers. */
typedef struct tb_bert_cls_work {
    float *dh, *r2, *da, *dp, *av, *r1, *dr1, *dp1, *cx, *dcx, *dr2, *h;
    float *fa, *dfa, *fp, *dfp;
    float *om, *orr, *am, *ar;
} tb_bert_cls_work;

tb_bert_cls_work tb_bert_cls_slices(const tb_bert_arena *a, int B, int C, int F);

/* out [B, w] = rows b*T of x [B*T, w]. */
void tb_bert_gather_cls(float *out, const float *x, int B, int T, int w);

/* out [B, w] = dropout of rows b*T of a [B*T, w] tensor given those rows `in` [B, w] (assigns;
 * the same masks as tb_dropout_forward / _backward on the full tensor). Used for the forward
 * (in = values) and the backward (in = gradients) alike. */
void tb_bert_dropout_cls(float *out, const float *in, int B, int T, int w, float p, tb_rng_key key,
                         uint32_t batch_seq, uint32_t site);

/* The dropout descriptor of (layer, site) for a run: key (seed, TB_RNG_DROPOUT), stream
 * (batch sequence number, layer * 16 + site); p == 0 or dropout off gives an inactive one.
 * The forward and the backward both call this, so their masks are the same by construction. */
tb_dropout tb_bert_drop_desc(const tb_bert_run *run, float p, int layer, int site);


/* Thread count to use now (model setting or OpenMP default). */
int tb_bert_threads_now(const tb_bert_model *m);

#endif
