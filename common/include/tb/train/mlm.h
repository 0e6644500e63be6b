/* tb/train/mlm.h - masked-language-model masking of token batches (BERT pre-training).
 *
 * Per sequence (row b of a [B, T] batch): the candidates are the positions with attention mask 1
 * whose id is not one of the special ids ([CLS], [SEP], [PAD], [MASK], [UNK] as the caller lists
 * them). k = max(1, floor(prob * n + 0.5)) of the n candidates are chosen (0 when n = 0), as the
 * BERT / TinyBERT pre-training data generators do (a fixed count per sequence, not a Bernoulli
 * draw per token). Of the chosen tokens, a fraction mask_frac becomes [MASK], random_frac becomes
 * a uniformly random id in [0, vocab_size), and the rest keep their id (80 / 10 / 10 by default).
 * labels[b, t] = the original id at chosen positions, TB_IGNORE_INDEX (-100) everywhere else.
 *
 * Randomness is keyed, never stateful: key = tb_rng_key_make(seed, TB_RNG_MLM), stream
 * (stream_hi, stream_lo) = (low 32 bits of the batch sequence number, row b). Element i < k
 * drives the i-th step of a partial Fisher-Yates shuffle of the candidate list (j = i + u mod
 * (n - i)); element 2^32 + i picks the fate of the i-th chosen token (uniform u = (w >> 8) 2^-24:
 * u < mask_frac -> [MASK], u < mask_frac + random_frac -> random); element 2^33 + i gives its
 * random id (w mod vocab_size). So a batch recomputed after a restart (same seed, same sequence
 * number) is masked identically, whatever happened before.
 */
#ifndef TB_MLM_H
#define TB_MLM_H

#include <stdint.h>

#define TB_MLM_MAX_SPECIAL 16

typedef struct tb_mlm_opts {
    double prob;          /* fraction of candidates chosen (0.15) */
    double mask_frac;     /* of those, replaced by [MASK] (0.8) */
    double random_frac;   /* of those, replaced by a random id (0.1); the rest are kept */
    int32_t mask_id;      /* id of [MASK] */
    int32_t vocab_size;   /* random ids are drawn from [0, vocab_size) */
    int n_special;        /* ids never chosen */
    int32_t special[TB_MLM_MAX_SPECIAL];
} tb_mlm_opts;

/* Defaults (0.15 / 0.8 / 0.1) with the given [MASK] id, vocabulary size and no special ids. */
tb_mlm_opts tb_mlm_opts_default(int32_t mask_id, int32_t vocab_size);

/* Adds an id to the special list (TB_EINVAL when full or out of the vocabulary). */
int tb_mlm_add_special(tb_mlm_opts *o, int32_t id);

/* Checks ranges: prob in (0, 1], fractions >= 0 with sum <= 1, ids within the vocabulary. */
int tb_mlm_opts_check(const tb_mlm_opts *o);

/* Masks a batch. ids, attention_mask (NULL: all 1): [B, T] int32; out_ids and labels: [B, T]
 * int32 written by the call (out_ids may equal ids for in-place masking). *chosen (may be NULL)
 * receives the number of positions with a label. An id outside [0, vocab_size) or an attention
 * mask value other than 0/1 is TB_EINVAL naming (row, position), with nothing written. */
int tb_mlm_mask(const tb_mlm_opts *o, uint64_t seed, uint64_t seq, int B, int T, const int32_t *ids,
                const int32_t *attention_mask, int32_t *out_ids, int32_t *labels, int64_t *chosen);
/* The most positions tb_mlm_mask can choose in a [B, T] batch: B * min(T, max(1, k(T))), k(n) =
 * floor(prob * n + 0.5) being the per-row count for n candidates (n <= T); 0 when B or T <= 0.
 * Sizes the MLM head's buffers (tb_bert_arena_spec.mlm_max_rows). */
int64_t tb_mlm_max_chosen(const tb_mlm_opts *o, int B, int T);

/* Unigram statistics for the initial MLM output bias. A randomly initialised BERT whose decoder
 * bias starts at 0 first learns the token frequencies, and with Adam it gets there fastest by
 * making every hidden state the same vector: the encoder collapses (all positions and inputs give
 * one output) and stays there for thousands of steps, which also makes it useless to fine-tune.
 * Starting the bias at the log frequencies gives the frequencies for free (the initial loss is the
 * unigram entropy), so training only has context left to learn.
 *
 * tb_mlm_count_candidates adds to counts[0..vocab_size) one per position that tb_mlm_mask could
 * choose (attention mask 1, id not special). Ids outside the vocabulary or mask values other than
 * 0/1 are TB_EINVAL naming (row, position), with counts untouched.
 * tb_mlm_unigram_bias writes bias[v] = log((counts[v] + 1) / (total + vocab_size)) for every id
 * (add-one smoothing; special ids have count 0). TB_EINVAL for a negative count. */
int tb_mlm_count_candidates(const tb_mlm_opts *o, int B, int T, const int32_t *ids, const int32_t *attention_mask,
                            int64_t *counts);
int tb_mlm_unigram_bias(const tb_mlm_opts *o, const int64_t *counts, float *bias);

#endif
