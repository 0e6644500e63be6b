/* tb/train/features.h - teacher-feature messages: what a student asks for, what the emitter sends.
 *
 * A feature message is a batch message (the tensors and fields of tb_batch_to_msg: input_ids,
 * token_type_ids, attention_mask, labels, example_ids, epoch, index, vocab_hash, label_order)
 * plus the teacher's features by name and metadata that let a receiver check it got what it
 * asked for, from the teacher it expected:
 *
 *   teacher.hidden.<j>       [B, T, C_t]     hidden state j of the teacher (j = 0: embedding
 *                                             output, j = N: last layer)
 *   teacher.attn.<l>         [B, NH, T, T]   pre-softmax attention scores of teacher layer l
 *                                             (0-based, QK^T/sqrt(d) + mask, mask = -10000)
 *   teacher.logits           [B, NL]         classification / regression output
 *   features.dtype           str             "f32" (<f4 on the wire) or "f16" (<f2)
 *   teacher.layers           int             N
 *   teacher.heads            int             NH
 *   teacher.hidden_size      int             C_t
 *   teacher.num_labels       int             NL (0: the teacher has no head)
 *   teacher.config_hash      str             tb_features_config_hash of the teacher's config
 *   teacher.dropout          bool            the teacher ran with dropout (masks keyed by the
 *                                             emitter's seed and the message's sequence number)
 *   label_order_hash         str             FNV-1a 64 of the batch's label_order (when it has one)
 * Every feature tensor of one message has the same dtype. vocab_hash and label_order come from
 * the token batch unchanged.
 *
 * A student's request travels in its stream hello (tb_stream_opts.hello) as
 *   features.student_layers  int   M > 0: "map me onto the teacher" - the emitter computes the
 *                                   TinyBERT mapping for its own depth N (k = N / M, hidden states
 *                                   j*k for j = 0..M, attention of teacher layers i*k + k - 1)
 *   features.hidden          str   explicit teacher hidden indices, "0,3,6,9,12" (may be "")
 *   features.attn            str   explicit teacher layers (0-based) whose scores it needs, "2,5"
 *   features.logits          bool  it needs teacher.logits
 *   features.student_heads   int   its head count (0: not checked); the attention loss needs the
 *                                   teacher's head count
 *   expect.config_hash / expect.vocab_hash / expect.label_order_hash / expect.hidden_size
 *                                   optional expectations; a mismatch is an error naming both
 * The explicit lists add to the mapping when both are given.
 *
 * Fan-out and the union. The emitter runs the teacher once per batch and sends ONE message - the
 * union of every student's request - to all students (tb/wire/stream.h fans one buffer out without
 * copying it). A student that needs fewer features receives the others anyway: the wire cost is
 * the union's size for every student (docs/emit.md has the numbers); per-student subsets would
 * need one encoded message per student and are not done.
 *
 * Limits: a teacher has at most TB_FEATURES_MAX_LAYERS layers (index sets are 64-bit masks).
 */
#ifndef TB_FEATURES_H
#define TB_FEATURES_H

#include "tb/model/bert.h"
#include "tb/wire/msg.h"
#include "tb/base/tensor.h"

#include <stddef.h>
#include <stdint.h>

#define TB_FEATURES_MAX_LAYERS 63
#define TB_FEATURES_HASH_MAX 40 /* "fnv1a64:" + 16 hex + NUL fits */

/* What one student needs (or, after tb_features_request_resolve, the exact index sets). */
typedef struct tb_features_request {
    int student_layers;     /* M > 0: TinyBERT mapping onto the teacher; 0: explicit sets only */
    uint64_t hidden;        /* bit j: teacher hidden state j (0..N) */
    uint64_t attn;          /* bit l: pre-softmax scores of teacher layer l (0..N-1) */
    int logits;             /* 1: teacher.logits */
    int student_heads;      /* 0: unchecked */
    int expect_hidden_size; /* 0: unchecked; else the teacher's hidden size must equal it */
    char expect_config_hash[TB_FEATURES_HASH_MAX];      /* "" : unchecked */
    char expect_vocab_hash[TB_FEATURES_HASH_MAX];       /* "" : unchecked */
    char expect_label_order_hash[TB_FEATURES_HASH_MAX]; /* "" : unchecked */
} tb_features_request;

/* What the emitter's teacher is; sent as the metadata of every feature message. */
typedef struct tb_features_meta {
    int layers, heads, hidden_size, num_labels;
    tb_dtype dtype;                               /* TB_F32 or TB_F16 */
    int dropout;                                  /* teacher dropout on */
    char config_hash[TB_FEATURES_HASH_MAX];
    char vocab_hash[TB_FEATURES_HASH_MAX];        /* "" when unknown (checked per batch instead) */
} tb_features_meta;

/* FNV-1a 64 of bytes, as "fnv1a64:<16 hex>" (the vocabulary hash's format). */
const char *tb_features_hash_str(const void *p, size_t n, char *buf, size_t bufn);

/* Hash of everything in a config that shapes the features: vocab, sizes, layers, heads,
 * positions, token types, LayerNorm eps, pad id, head kind and labels (not dropout rates or
 * initialisation). FNV-1a 64 of the text "tinybert-c-config-v1 vocab_size=.. hidden_size=.. ...",
 * written into buf ("fnv1a64:..."). */
const char *tb_features_config_hash(const tb_bert_config *c, char *buf, size_t n);

/* Fills `meta` from a teacher model (dtype TB_F32, dropout 0, no vocab hash). */
void tb_features_meta_from_model(tb_features_meta *meta, const tb_bert_model *teacher);

/* Index sets <-> "0,3,6" text. Parsing rejects anything but comma-separated decimal indices
 * below 64 (TB_EFORMAT naming `what`); duplicates are fine. */
int tb_features_mask_parse(const char *s, const char *what, uint64_t *out);
const char *tb_features_mask_format(uint64_t mask, char *buf, size_t n);

/* Request <-> hello fields (see above). Decoding accepts a hello without any features.* field as
 * an empty request; it rejects mistyped fields and bad index lists. */
int tb_features_request_to_hello(const tb_features_request *r, tb_msg *hello);
int tb_features_request_from_hello(const tb_msg *hello, tb_features_request *r);

/* Resolves a request against a teacher: adds the TinyBERT mapping for student_layers (N % M must
 * be 0), checks every index against N, logits against the teacher's head, the head count when
 * attention is asked for, and every expectation against `meta` (vocab only when meta knows it).
 * `out` gets the exact sets (student_layers set to 0) and the expectations. `who` names the
 * student in messages. TB_EINVAL / TB_ESHAPE / TB_EFORMAT with a message saying what to fix. */
int tb_features_request_resolve(const tb_features_request *r, const tb_features_meta *meta, const char *who,
                                tb_features_request *out);

/* acc |= r for the feature sets (expectations are not merged). */
void tb_features_request_union(tb_features_request *acc, const tb_features_request *r);

/* Bytes of the feature tensors of one batch of B x T for a resolved request (payloads only). */
uint64_t tb_features_bytes(const tb_features_request *r, const tb_features_meta *meta, int64_t B, int64_t T);

/* The bert run flags the teacher forward needs for a resolved request (scores_layers, logits). */
void tb_features_run_flags(const tb_features_request *r, tb_bert_run *run);

/* Adds the features of the teacher's LAST forward (tb_bert_forward with tb_features_run_flags) and
 * the metadata to `m` (which already holds the token batch of that forward, B x T). With
 * meta->dtype == TB_F32 the tensors are BORROWED from the teacher's arena: encode or send `m`
 * before the teacher runs again. With TB_F16 they are converted into tensors owned by `m`.
 * `label_order` is the batch's label order string (NULL: none) for label_order_hash. */
int tb_features_add(tb_msg *m, const tb_bert_model *teacher, const tb_features_request *r,
                    const tb_features_meta *meta, int B, int T, const char *label_order);

/* f32 <-> f16 conversion of n values, round to nearest even, the same bits as tb_f32_to_f16 /
 * tb_f16_to_f32 (NaN stays NaN, quiet). Uses the F16C instructions when the CPU has them (checked
 * at run time; the build stays portable), else the scalar conversion. */
void tb_features_f32_to_f16(uint16_t *dst, const float *src, int64_t n);
void tb_features_f16_to_f32(float *dst, const uint16_t *src, int64_t n);

/* The features of a received message, ready for tb_bert_distill_loss. f16 tensors are converted
 * to f32 (owned by the view); f32 ones are used in place (the message must outlive the view). */
typedef struct tb_features_view {
    int B, T;
    tb_features_meta meta;                         /* as the message says (vocab_hash included) */
    const float *hidden[TB_FEATURES_MAX_LAYERS + 1]; /* NULL where not carried */
    const float *scores[TB_FEATURES_MAX_LAYERS];     /* NULL where not carried */
    const float *logits;                            /* NULL when not carried */
    tb_bert_teacher teacher;                        /* points at the arrays above */
    tb_tensor *owned;                               /* converted tensors */
    int n_owned;
} tb_features_view;

/* Validates `m` against a student's request (resolved against the message's own teacher
 * metadata when it uses student_layers): every requested tensor present, with the declared
 * dtype and the shape implied by input_ids [B, T] and the metadata; the metadata fields typed
 * and in range; every expectation of `r` met. Errors name the field, what was expected and what
 * came (TB_ENOTFOUND missing, TB_ESHAPE shape/dtype, TB_EFORMAT bad metadata / hash mismatch).
 * On success fills `v` (pair with tb_features_view_free); on error `v` is empty. */
int tb_features_view_init(tb_features_view *v, const tb_msg *m, const tb_features_request *r);
void tb_features_view_free(tb_features_view *v);

#endif
