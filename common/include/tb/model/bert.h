/* tb/model/bert.h - the BERT model: parameters, activation arena, forward and backward.
 *
 * A tb_bert_model owns
 *   - its configuration (tb/model/bert_config.h),
 *   - a parameter table (tb/model/params.h) with Hugging Face names: one value buffer, one gradient
 *     buffer, every tensor a view into them,
 *   - an activation arena sized once per (max batch, max sequence) by tb_bert_arena_reserve, so
 *     tb_bert_forward / tb_bert_backward never allocate.
 *
 * Conventions: fp32, row-major. B batch, T sequence, C hidden, NH heads, HS = C / NH,
 * F intermediate, V vocabulary, L layers, NL labels. Token ids, token types and attention masks
 * are int32. Linear weights are [out, in] as in PyTorch.
 *
 * Parameter layout (in this order; "<l>" is the 0-based layer index):
 *   bert.embeddings.word_embeddings.weight          [V, C]
 *   bert.embeddings.position_embeddings.weight      [max_position_embeddings, C]
 *   bert.embeddings.token_type_embeddings.weight    [type_vocab_size, C]
 *   bert.embeddings.LayerNorm.weight / .bias        [C]                     no_decay
 *   per layer, prefix bert.encoder.layer.<l>.
 *     attention.self.query.weight                   [C, C]  \ contiguous: read together they
 *     attention.self.key.weight                     [C, C]   | are the fused QKV weight [3C, C]
 *     attention.self.value.weight                   [C, C]  /
 *     attention.self.query.bias / key.bias / value.bias [C] contiguous ([3C]), no_decay
 *     attention.output.dense.weight                 [C, C]
 *     attention.output.dense.bias                   [C]                     no_decay
 *     attention.output.LayerNorm.weight / .bias     [C]                     no_decay
 *     intermediate.dense.weight                     [F, C]
 *     intermediate.dense.bias                       [F]                     no_decay
 *     output.dense.weight                           [C, F]
 *     output.dense.bias                             [C]                     no_decay
 *     output.LayerNorm.weight / .bias               [C]                     no_decay
 *   with a classification / regression head (config.head != TB_HEAD_NONE):
 *     bert.pooler.dense.weight [C, C], bert.pooler.dense.bias [C]
 *     classifier.weight [NL, C], classifier.bias [NL]
 *   with the MLM head (config.mlm_head):
 *     cls.predictions.transform.dense.weight [C, C], .bias [C]
 *     cls.predictions.transform.LayerNorm.weight / .bias [C]
 *     cls.predictions.bias [V]   (the decoder weight is the word embedding matrix, stored once;
 *                                 it receives both the lookup and the decoder gradient)
 *   a student (config.fit_size > 0):
 *     fit_dense.weight [fit_size, C], fit_dense.bias [fit_size]
 *   without a head but with config.pooler (last, so the other parameters keep their index and
 *   with it their random initialisation; the forward never runs it):
 *     bert.pooler.dense.weight [C, C], bert.pooler.dense.bias [C]
 * Every tensor starts 64-byte aligned except the key/value members of the fused QKV groups,
 * which follow the query member directly so that the group is one [3C, C] / [3C] block.
 *
 * Model, as computed (post-LayerNorm BERT, erf-GELU, LayerNorm eps from the config):
 *   h0 = dropout(LN(word[ids] + pos[t] + type[tt]))                              hidden state 0
 *   per layer: qkv = h W_qkv^T + b_qkv; per head S = Q K^T / sqrt(HS) + (1 - mask) * -10000
 *              (the saved "pre-softmax scores", [B, NH, T, T]); P = dropout(softmax(S));
 *              ctx = P V; a = LN(h + dropout(ctx W_o^T + b_o));
 *              h' = LN(a + dropout(gelu(a W_i^T + b_i) W_2^T + b_2))                hidden state l+1
 *   pooled = tanh(W_p h_L[:, 0] + b_p)
 *   TB_HEAD_TINYBERT: logits = W_c relu(pooled) + b_c         (no dropout)
 *   TB_HEAD_HF:       logits = W_c dropout(pooled) + b_c      (classifier_dropout)
 *   MLM: mlm_logits = LN(gelu(h_L W_t^T + b_t)) E^T + b_dec, E = word embeddings
 *   fit_dense (students): fit_j = h_j W_f^T + b_f, [B, T, fit_size]
 * The [PAD] row (pad_token_id) of the word embeddings gets no gradient from the lookup.
 *
 * Dropout: key = tb_rng_key_make(seed, TB_RNG_DROPOUT), stream = (batch sequence number,
 * layer * 16 + site), element index = position in the tensor; keep when uniform >= p, kept
 * values scaled by 1 / (1 - p). Sites (see TB_BERT_SITE_*): layer index L (one past the last
 * encoder layer) is used for the embedding output and the head.
 *
 * Threads: BLIS for the GEMMs (threads set by tb_bert_set_threads), OpenMP for elementwise
 * kernels and for the per-(batch, head) attention products, which use single-threaded BLIS.
 * For a fixed thread count results are bit-identical from run to run.
 */
#ifndef TB_BERT_H
#define TB_BERT_H

#include "tb/model/bert_config.h"
#include "tb/model/params.h"

#include <stddef.h>
#include <stdint.h>

/* Dropout sites within a layer (stream_lo = layer * 16 + site). */
enum {
    TB_BERT_SITE_ATTN_PROBS = 0, /* attention probabilities of a layer */
    TB_BERT_SITE_ATTN_OUT = 1,   /* after the attention output projection */
    TB_BERT_SITE_FFN_OUT = 2,    /* after the FFN output projection */
    TB_BERT_SITE_EMB = 3,        /* layer L: embedding output (hidden state 0) */
    TB_BERT_SITE_HEAD = 4,       /* layer L: pooled output before the HF classifier */
};

/* One batch of inputs. All arrays are [B, T], row-major, int32. */
typedef struct tb_bert_batch {
    int B, T;
    const int32_t *input_ids;      /* 0 <= id < vocab_size */
    const int32_t *token_type_ids; /* NULL: all 0 */
    const int32_t *attention_mask; /* 1 attend, 0 padding; NULL: all 1 */
} tb_bert_batch;

/* What a forward pass computes and how. */
typedef struct tb_bert_run {
    int dropout;             /* 0: dropout off (exact, evaluation); 1: on, masks from (seed, seq) */
    uint64_t seed;           /* dropout key */
    uint64_t seq;            /* batch sequence number: the same number gives the same masks
                              * (its low 32 bits are the RNG stream, tb/model/ops.h tb_dropout) */
    uint64_t scores_layers;  /* bit l: keep layer l's pre-softmax scores for tb_bert_scores
                              * (always available in training arenas) */
    int logits;              /* 1: run pooler + classifier (needs a head) */
    int mlm;                 /* 1: run the MLM head (needs config.mlm_head and an MLM arena) */
    const int32_t *mlm_rows; /* with mlm: run the MLM head on these rows only (flattened b*T + t,
                              * strictly increasing, < B*T; must stay valid until the backward);
                              * NULL: on every row. Masked LM needs only the labelled rows (~15 %) */
    int mlm_count;           /* rows in mlm_rows */
    int cls_only;            /* 1: only the head reads h_L (logits, no MLM): the last layer runs
                              * its projections, LayerNorms and FFN on the [CLS] rows alone and
                              * tb_bert_hidden(L) is NULL; a backward then takes only dlogits and
                              * extra gradients of layers < L */
} tb_bert_run;

/* Arena modes. */
typedef enum tb_bert_mode {
    TB_BERT_INFER = 0,  /* forward only: per-layer work buffers reused, hidden states and
                         * requested scores kept */
    TB_BERT_TRAIN = 1,  /* everything the backward needs is kept */
} tb_bert_mode;

typedef struct tb_bert_layer_idx {
    int qkv_w, qkv_b;        /* indices of query.weight / query.bias (group of 3) */
    int ao_w, ao_b, aln_w, aln_b;
    int i_w, i_b, o_w, o_b, oln_w, oln_b;
} tb_bert_layer_idx;

typedef struct tb_bert_arena tb_bert_arena; /* opaque, defined in bert.c */

typedef struct tb_bert_model {
    tb_bert_config config;
    tb_param_table params;
    /* parameter indices (-1 when absent) */
    int word_w, pos_w, type_w, eln_w, eln_b;
    tb_bert_layer_idx *layer;   /* [num_hidden_layers] */
    int pool_w, pool_b, cls_w, cls_b;
    int mlm_w, mlm_b, mlm_ln_w, mlm_ln_b, mlm_dec_b;
    int fit_w, fit_b;
    int threads;                /* 0: library default */
    tb_bert_arena *arena;
    void *values_raw, *grads_raw; /* allocations behind params.values / params.grads */
} tb_bert_model;

/* Checks a configuration (sizes > 0, hidden divisible by heads, head/labels consistent);
 * TB_EINVAL with the offending field otherwise. */
int tb_bert_config_check(const tb_bert_config *cfg);

/* Builds the parameter table for `cfg` (values and gradients zeroed, everything trainable).
 * Pair with tb_bert_free. */
int tb_bert_init(tb_bert_model *m, const tb_bert_config *cfg);
/* Releases parameters and arena; safe on a zeroed or already freed model. */
void tb_bert_free(tb_bert_model *m);

/* Weights N(0, initializer_range) (stream (0, parameter index) of TB_RNG_INIT keyed by seed),
 * the [PAD] embedding row 0, biases 0, LayerNorm weight 1 / bias 0. */
void tb_bert_init_random(tb_bert_model *m, uint64_t seed);

/* Sets trainable = on for every parameter whose name starts with `prefix` ("" = all);
 * returns the number of parameters changed. */
int tb_bert_set_trainable(tb_bert_model *m, const char *prefix, int on);

/* Sets the thread count used by forward / backward (BLIS and OpenMP); 0 = library default. */
void tb_bert_set_threads(tb_bert_model *m, int threads);

/* Sizes the activation arena for batches of up to max_B x max_T (one allocation; pair with
 * tb_bert_free). TB_BERT_TRAIN keeps everything the backward needs, including the pre-softmax
 * scores of every layer; TB_BERT_INFER keeps the hidden states and the scores of the layers in
 * `keep_scores` (bit l = layer l) and reuses one set of work buffers for all layers. `mlm`: also
 * room for MLM logits [B, T, V]. Reserving again with the same or smaller sizes is free; a
 * student (fit_size > 0) in TB_BERT_TRAIN also gets the buffers of tb_bert_distill_loss. */
int tb_bert_arena_reserve(tb_bert_model *m, int max_B, int max_T, tb_bert_mode mode,
                          uint64_t keep_scores, int mlm);
/* The same with every option: in TB_BERT_INFER, `keep_hidden` (bit j = hidden state j, j = 0..L)
 * selects the hidden states that survive the forward (the others share two work buffers and
 * tb_bert_hidden returns NULL for them), and the per-layer work buffers are shared further, so an
 * emitter that sends a few layers needs far less memory. TB_BERT_TRAIN keeps everything.
 * tb_bert_arena_reserve(m, B, T, mode, s, mlm) = this with keep_hidden = TB_BERT_ALL_LAYERS. */
#define TB_BERT_ALL_LAYERS (~(uint64_t)0)
typedef struct tb_bert_arena_spec {
    int max_B, max_T;
    tb_bert_mode mode;
    uint64_t keep_scores;  /* bit l: layer l's pre-softmax scores (INFER) */
    uint64_t keep_hidden;  /* bit j: hidden state j (INFER) */
    int mlm;               /* room for MLM logits */
    int64_t mlm_max_rows;  /* with mlm: rows the MLM head may run on, at most (0 = every row,
                            * max_B * max_T); a forward with more rows (run.mlm_count, or B * T
                            * without run.mlm_rows) is TB_EINVAL. A masked-LM trainer passes
                            * tb_mlm_max_chosen: MLM logits are [rows, V], the largest buffer of
                            * a model with a big vocabulary. */
} tb_bert_arena_spec;
int tb_bert_arena_reserve_ex(tb_bert_model *m, const tb_bert_arena_spec *spec);

/* Bytes held by the arena. */
size_t tb_bert_arena_bytes(const tb_bert_model *m);
/* Frees the activation arena (the parameters stay); the next tb_bert_arena_reserve allocates anew. */
void tb_bert_arena_release(tb_bert_model *m);

/* Forward pass. Checks every input (ids in range, shapes within the arena, requests consistent
 * with the model) before computing. */
int tb_bert_forward(tb_bert_model *m, const tb_bert_batch *batch, const tb_bert_run *run);

/* Results of the last forward (pointers into the arena, valid until the next forward):
 * hidden state j = 0..L [B, T, C] (NULL if j is out of range or not kept by an INFER arena);
 * pre-softmax scores of layer l [B, NH, T, T] (NULL if not kept);
 * logits [B, NL]; mlm logits [B, T, V] ([mlm_count, V] with run.mlm_rows); pooled [B, C]. */
const float *tb_bert_hidden(const tb_bert_model *m, int j);
const float *tb_bert_scores(const tb_bert_model *m, int l);
const float *tb_bert_logits(const tb_bert_model *m);
const float *tb_bert_mlm_logits(const tb_bert_model *m);
const float *tb_bert_pooled(const tb_bert_model *m);

/* Gradients flowing into a backward pass. Every pointer may be NULL (no gradient there).
 * Arrays of pointers may be NULL as a whole. */
typedef struct tb_bert_grads {
    const float *dlogits;          /* [B, NL] */
    const float *dmlm_logits;      /* [B, T, V] ([mlm_count, V] when the forward had mlm_rows) */
    const float *const *dhidden;   /* [L + 1] pointers, each [B, T, C] */
    const float *const *dscores;   /* [L] pointers, each [B, NH, T, T], into the pre-softmax scores */
} tb_bert_grads;

/* Backward pass of the last forward (needs a TB_BERT_TRAIN arena). ACCUMULATES (+=) into the
 * parameter gradients (params.grads); callers zero them (tb_bert_zero_grad). Gradients of
 * parameters the given losses do not reach stay untouched. When only the head reads h_L (dlogits
 * without dmlm_logits or dhidden[L]), the row-wise parts of the last layer are differentiated on
 * the B [CLS] rows alone (the other rows have zero gradient), which saves about a third of that
 * layer's backward. */
int tb_bert_backward(tb_bert_model *m, const tb_bert_grads *g);

/* Zeroes the whole gradient buffer. */
void tb_bert_zero_grad(tb_bert_model *m);

/* fit_dense of a student: out[N, fit_size] = in[N, C] W_f^T + b_f. */
int tb_bert_fit_forward(const tb_bert_model *m, float *out, const float *in, int64_t N);
/* Backward of fit_dense: din[N, C] += dout W_f (din may be NULL); dW_f, db_f += (accumulate). */
int tb_bert_fit_backward(tb_bert_model *m, float *din, const float *dout, const float *in, int64_t N);

/* ---- TinyBERT distillation losses of a student ------------------------------------------------
 * Teacher features for one batch (the teacher has N layers, the student M, k = N / M an integer;
 * both have the same number of heads). Student layer i (0-based) is compared with teacher layer
 * i*k + k - 1 (attention); student hidden state j with teacher hidden state j*k (j = 0..M). */
typedef struct tb_bert_teacher {
    int num_layers;               /* N */
    int hidden_size;              /* must equal the student's fit_size */
    const float *const *hidden;   /* [N + 1] pointers, [B, T, hidden_size]; entries j*k are read */
    const float *const *scores;   /* [N] pointers, [B, NH, T, T] pre-softmax; entries i*k+k-1 read */
    const float *logits;          /* [B, NL] */
} tb_bert_teacher;

typedef enum tb_distill_kind {
    TB_DISTILL_INTERMEDIATE = 1,  /* attention + hidden (incl. embedding) MSE: general distillation
                                   * and task stage 1 */
    TB_DISTILL_PREDICTION = 2,    /* soft cross-entropy on logits (MSE to the gold value for
                                   * regression, num_labels = 1): task stage 2 */
} tb_distill_kind;

typedef struct tb_bert_distill_losses {
    double att, hidden, pred;     /* att and hidden summed over layers; hidden includes j = 0 */
    double emb;                   /* the j = 0 term alone (already inside `hidden`) */
    double total;
} tb_bert_distill_losses;

/* Computes the stage loss of the last forward (a TB_BERT_TRAIN arena of a student; the forward
 * must have run with logits for TB_DISTILL_PREDICTION) against the teacher, and points *g at
 * the loss gradients (buffers in the arena), ready for tb_bert_backward. fit_dense gradients are
 * accumulated here (TB_DISTILL_INTERMEDIATE). `gold` [B] holds regression targets (num_labels
 * == 1), else it is ignored. `temperature` > 0 for the soft cross-entropy. */
int tb_bert_distill_loss(tb_bert_model *m, const tb_bert_teacher *t, tb_distill_kind kind,
                         float temperature, const float *gold, tb_bert_distill_losses *out,
                         tb_bert_grads *g);

/* Number of floating-point operations of one forward pass (GEMMs and attention products) for
 * (B, T) with the given request; the backward costs about twice that. */
double tb_bert_forward_flops(const tb_bert_model *m, int B, int T, const tb_bert_run *run);

#endif
