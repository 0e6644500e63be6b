/* stages/augment/cands.h - replacement candidates for the eligible words of sentences
 * (SPEC.md "Data augmentation", the TinyBERT reference's data_augmentation.py).
 *
 * Per sentence: basic tokens (lower-cased, punctuation split off) and the sentence's WordPiece
 * pieces; basic token k owns the pieces of the k-th run that starts with a piece without "##"
 * (the reference's walk). Per eligible token (stopwords.h):
 *   - one piece at piece index i: the MLM input is [CLS] pieces-with-piece-i-as-[MASK] [SEP]
 *     pieces [SEP], types 0 up to and including the first [SEP], 1 after, cut to
 *     max_len = min(512, the model's max_position_embeddings) positions; the mask sits at
 *     position 1 + i, and a mask at >= max_len gets no candidates. Candidates: the M token ids
 *     with the highest MLM logits at the mask (equal logits: lower id first), then every token
 *     starting with "##" removed (so fewer than M may remain). Dropout off.
 *   - several pieces: the M nearest words by cosine among the word vectors (vectors.h), the word
 *     itself left out; a word without a vector gets none. Vector source GloVe: the word's own
 *     row. Source "teacher": the mean of the word's pieces' input embeddings, against every
 *     whole-word vocabulary entry (not "##..." and not "[...]"), see tb_cands_teacher_vectors.
 *   - a word with no candidate keeps itself as its only candidate.
 *
 * Speed: the MLM inputs of many sentences run together, sorted by length, in batches of up to
 * `batch` sequences and `tokens` padded positions, padded to the batch's longest (rounded up to
 * a multiple of 8); a batch that has 1,024 positions already takes no longer sequence (less
 * padding). The MLM head runs on the mask rows only (tb_bert_run.mlm_rows). `one_at_a_time`
 * runs each input alone, unpadded (the reference's way; for tests and benchmarks). Vector
 * neighbours of the words not yet cached are one matrix product; results are cached per word.
 * Batching never changes which candidates come out beyond float rounding of the logits.
 */
#ifndef TB_AUG_CANDS_H
#define TB_AUG_CANDS_H

#include "stopwords.h"
#include "vectors.h"
#include "tb/model/bert.h"
#include "tb/text/tokenizer.h"

#include <stdint.h>

/* One sentence and its candidates. */
typedef struct tb_aug_sentence {
    tb_words words;        /* basic tokens */
    int32_t n_elig;        /* eligible tokens */
    int32_t *elig;         /* [n_elig] their token indices */
    int32_t *cand_off;     /* [n_elig + 1]: candidates of eligible token e are cand[cand_off[e] ..) */
    const char **cand;     /* vocabulary tokens, vector words, or the word itself (borrowed) */
    int32_t *kind;         /* [n_elig]: TB_CAND_* source of the candidates */
    tb_ids pieces;         /* WordPiece ids of the sentence */
    int32_t *piece_start;  /* [words.count]: first piece of each token, -1: none */
    int32_t *piece_count;  /* [words.count] */
    int32_t elig_cap, cand_cap, word_cap;
    int cjk_join;          /* new sentences: no space beside a CJK character (set by --cjk) */
} tb_aug_sentence;

enum { TB_CAND_NONE = 0, TB_CAND_MLM = 1, TB_CAND_VECTOR = 2 };

void tb_aug_sentence_init(tb_aug_sentence *s);
void tb_aug_sentence_free(tb_aug_sentence *s);

typedef struct tb_cands_opts {
    int M;               /* candidates per word (15) */
    int batch;           /* MLM sequences per forward pass, at most (64) */
    int tokens;          /* padded positions (B x T) per forward pass, at most (8192) */
    int one_at_a_time;   /* 1: every MLM input alone, unpadded */
    int cjk;             /* single CJK ideographs are eligible too */
    int threads;         /* OpenMP threads for the per-sentence work (0: default) */
} tb_cands_opts;

/* The engine. Borrowed: tokenizer, model (with an MLM head), stop words, vectors (may be NULL:
 * multi-piece words then keep themselves). */
typedef struct tb_cands_cache tb_cands_cache;
typedef struct tb_cands {
    tb_cands_opts opts;
    const tb_tokenizer *tok;
    tb_bert_model *model;
    const tb_stopwords *stop;
    const tb_vectors *vec;
    const float *query_emb;  /* teacher source: the word embeddings [V, C] the queries average, else NULL */
    int max_len;
    int arena_B, arena_T;
    tb_cands_cache *cache;
    /* statistics since tb_cands_init */
    int64_t sentences, eligible, mlm_words, vec_words, vec_found, no_candidate, mlm_forwards, mlm_positions;
} tb_cands;

/* Checks that the model has an MLM head and the tokenizer's vocabulary size (TB_EINVAL with a
 * clear message otherwise) and sets up the engine. */
int tb_cands_init(tb_cands *c, const tb_tokenizer *tok, tb_bert_model *model, const tb_stopwords *stop,
                  const tb_vectors *vec, const tb_cands_opts *opts);
/* Uses `vec` (made by tb_cands_teacher_vectors) with queries that average the pieces' embeddings. */
void tb_cands_use_teacher_queries(tb_cands *c, const tb_vectors *vec);
void tb_cands_free(tb_cands *c);

/* Vectors from a model's input word embeddings: one row per whole-word vocabulary entry (not
 * starting with "##", not "[...]"), its embedding row. */
int tb_cands_teacher_vectors(tb_vectors *v, const tb_tokenizer *tok, const tb_bert_model *model);

/* Tokenizes text[0..len) into s (basic tokens, pieces, eligible tokens); candidates not yet set. */
int tb_cands_prepare(const tb_cands *c, tb_aug_sentence *s, const char *text, size_t len);

/* Sets the candidates of n prepared sentences (batched as described above). */
int tb_cands_compute(tb_cands *c, tb_aug_sentence *const *s, int n);

#endif
