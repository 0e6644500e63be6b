/* tb/text/tokenizer.h - BERT's FullTokenizer (google-research/bert tokenization.py), exactly.
 *
 * Basic tokenization (tb/text/basic.h), then WordPiece per word: greedy longest match first with
 * "##" continuations; a word longer than max_input_chars_per_word code points, or one that cannot
 * be covered, becomes [UNK]. Then encoding of a sentence or a pair into [CLS] a [SEP] (b [SEP]).
 * Implemented in basic.c (basic tokenization), wordpiece.c (WordPiece, full tokenization of a
 * text) and tokenizer.c (set-up, encoding, padding).
 *
 * A tokenizer is read-only after tb_tokenizer_init and may be shared by threads; all scratch
 * memory lives in the caller's tb_words / tb_ids / tb_encoding.
 */
#ifndef TB_TOKENIZER_H
#define TB_TOKENIZER_H

#include "tb/text/basic.h"
#include "tb/text/vocab.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tb_tokenizer {
    tb_vocab vocab;
    tb_tokenizer_opts opts;
    char *unk_literal;  /* owned copy of opts.unk_literal */
} tb_tokenizer;

/* WordPiece ids; `words` is scratch. */
typedef struct tb_ids {
    int32_t *ids;
    int32_t count, cap;
    tb_words words;
} tb_ids;

/* One encoded example: [CLS] a [SEP] (b [SEP]), not padded. */
typedef struct tb_encoding {
    int32_t *input_ids, *token_type_ids;
    int32_t len, cap;
    int32_t n_a, n_b;        /* tokens of a and b kept after truncation */
    int32_t full_a, full_b;  /* tokens before truncation */
    tb_ids a, b;             /* scratch */
} tb_encoding;

void tb_ids_init(tb_ids *ids);
void tb_ids_free(tb_ids *ids);
void tb_encoding_init(tb_encoding *e);
void tb_encoding_free(tb_encoding *e);

/* Loads vocab.txt and checks that it has [UNK] (and, for encoding, [CLS] and [SEP]).
 * `opts` NULL means the defaults. max_input_chars_per_word must be >= 1. */
int tb_tokenizer_init(tb_tokenizer *t, const char *vocab_path, const tb_tokenizer_opts *opts);
/* Same, taking over an already built vocabulary (`v` is reset on success). */
int tb_tokenizer_init_vocab(tb_tokenizer *t, tb_vocab *v, const tb_tokenizer_opts *opts);
void tb_tokenizer_free(tb_tokenizer *t);

/* Full tokenization: WordPiece ids of text[0..len) appended to `out` after clearing it. */
int tb_tokenizer_tokenize(const tb_tokenizer *t, const char *text, size_t len, tb_ids *out);

/* WordPiece of one basic-tokenized word (UTF-8 bytes, n_chars code points), appended to `out`. */
int tb_wordpiece_word(const tb_tokenizer *t, const char *word, size_t len, size_t n_chars, tb_ids *out);

/* Encodes a sentence (b == NULL) or a pair the way the TinyBERT / BERT reference
 * (convert_examples_to_features) does:
 *   single: tokens_a cut to max_seq_length - 2; [CLS] a [SEP]; types all 0;
 *   pair (b != NULL and blen > 0; an empty b counts as no b, as the reference's `if text_b`):
 *     longest-first truncation to max_seq_length - 3 (_truncate_seq_pair: drop the last token
 *     of the longer list, of b when equal), [CLS] a [SEP] b [SEP], types 0 for [CLS] a [SEP],
 *     1 for b [SEP]; when b tokenizes to nothing the reference appends no second [SEP], nor
 *     do we.
 * max_seq_length must be >= 2 (single) or >= 3 (pair). `out` is not padded; see tb_encoding_pad. */
int tb_tokenizer_encode(const tb_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                        int max_seq_length, tb_encoding *out);

/* Writes one padded row of length `width` (>= e->len): ids and types then pad_id / 0, and the
 * attention mask 1 for real tokens, 0 for padding. Any output pointer may be NULL. */
int tb_encoding_pad(const tb_encoding *e, int32_t pad_id, int width, int32_t *input_ids,
                    int32_t *token_type_ids, int32_t *attention_mask);

#endif
