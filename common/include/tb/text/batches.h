/* tb/text/batches.h - a dataset tokenized once, and addressable batches cut from it (batches.c).
 *
 * A dataset is tokenized once (tb_encoded); a tb_batcher then cuts it into batches that are
 * addressable: (seed, epoch, index) alone fixes a batch's content. Order within an epoch:
 * identity when shuffle is off; otherwise a Fisher-Yates shuffle of 0..n-1 where, for
 * i = n-1 down to 1, j = r mod (i + 1) with r the 64-bit number (hi << 32 | lo), hi and lo being
 * elements 2k and 2k+1 (k = n-1-i) of the Philox4x32-10 stream tb_rng_u32(tb_rng_key_make(seed,
 * TB_RNG_SHUFFLE), epoch >> 32, epoch & 0xffffffff, .) (bias below 2^-32 for n < 2^32).
 * Batch `index` holds positions [index * batch_size, ...) of that order; with drop_last a final
 * partial batch is left out (the reference drops it in training), otherwise it is shorter.
 * Padding is to max_seq_length by default (the reference's losses average over padded
 * positions, so the padded length is part of the loss scale); pad_to_longest pads to the
 * longest sequence of the batch instead (a documented deviation, for evaluation speed).
 * Tensors: input_ids, token_type_ids, attention_mask int32 [B, L]; labels int32 [B] (class) or
 * f32 [B] (regression); example_ids int64 [B] (index of the example in the dataset).
 */
#ifndef TB_BATCHES_H
#define TB_BATCHES_H

#include "tb/base/tensor.h"
#include "tb/text/examples.h"
#include "tb/text/tokenizer.h"

#include <stdint.h>

/* A dataset tokenized once: example i is ids[off[i] .. off[i+1]) (with [CLS]/[SEP]). */
typedef struct tb_encoded {
    int32_t *ids, *types;
    int64_t *off;
    int32_t *labels;    /* class ids (classification) */
    float *targets;     /* regression targets */
    int64_t count;
    int max_seq_length;
    int regression;
    int32_t n_labels;
    int32_t pad_id;
    int64_t truncated;  /* examples that lost tokens to max_seq_length */
    uint64_t vocab_hash;
} tb_encoded;

/* Tokenizes every example (single or pair, see tb_tokenizer_encode). */
int tb_encoded_build(tb_encoded *e, const tb_dataset *ds, const tb_tokenizer *t, int max_seq_length);
/* Packs a corpus for MLM pre-training: within each document, consecutive lines' WordPiece tokens
 * are concatenated into sequences of at most max_seq_length - 2 tokens, each sequence
 * [CLS] tokens [SEP] (types 0, label -1). A line that does not fit in the current sequence starts
 * the next one; a line longer than max_seq_length - 2 tokens on its own is cut into consecutive
 * chunks of max_seq_length - 2 tokens (nothing is dropped). Sequences never cross documents.
 * e->count is the number of sequences; example ids then number sequences. */
int tb_encoded_build_packed(tb_encoded *e, const tb_dataset *corpus, const tb_tokenizer *t, int max_seq_length);
void tb_encoded_free(tb_encoded *e);

typedef struct tb_batch_opts {
    int batch_size;      /* >= 1 */
    uint64_t seed;       /* data seed */
    int shuffle;         /* 1: shuffle every epoch (training); 0: file order */
    int drop_last;       /* 1: leave out a final partial batch */
    int pad_to_longest;  /* 0 (default): pad to max_seq_length */
} tb_batch_opts;

typedef struct tb_batch {
    tb_tensor input_ids, token_type_ids, attention_mask; /* i32 [B, L] */
    tb_tensor labels;                                    /* i32 [B] or f32 [B] */
    tb_tensor example_ids;                               /* i64 [B] */
    uint64_t epoch;
    int64_t index;
} tb_batch;

typedef struct tb_batcher {
    const tb_encoded *enc;
    tb_batch_opts opts;
    int64_t *order;       /* order of the cached epoch */
    uint64_t order_epoch;
    int order_valid;
} tb_batcher;

/* `enc` must outlive the batcher. */
int tb_batcher_init(tb_batcher *b, const tb_encoded *enc, const tb_batch_opts *opts);
void tb_batcher_free(tb_batcher *b);
/* Batches per epoch. */
int64_t tb_batcher_count(const tb_batcher *b);
/* Example order of an epoch (n entries) written to `order`. */
int tb_batcher_order(const tb_batcher *b, uint64_t epoch, int64_t *order);
/* Makes batch `index` of `epoch` into `out` (freed first; out must be zeroed or a batch). */
int tb_batcher_get(tb_batcher *b, uint64_t epoch, int64_t index, tb_batch *out);
void tb_batch_free(tb_batch *batch);

#endif
