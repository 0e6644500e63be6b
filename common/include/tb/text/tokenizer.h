/* tb/text/tokenizer.h - BERT's FullTokenizer (google-research/bert tokenization.py), exactly.
 *
 * Basic tokenization, in the reference's order:
 *   1. clean: drop U+0000, U+FFFD and control characters (categories Cc, Cf, except \t \n \r);
 *      whitespace (space, \t, \n, \r, category Zs) becomes a space;
 *   2. CJK ideographs (the reference's _is_chinese_char blocks) get a space on each side;
 *   3. split on whitespace (Python str.split(): after cleaning that is space, U+2028, U+2029);
 *   4. per word, when do_lower_case: Python str.lower() (full lower-case mapping: U+0130 becomes
 *      "i" + U+0307, and the final-sigma rule), then canonical decomposition (NFD, not NFKD: "ß"
 *      and "ﬁ" stay) and removal of nonspacing marks (Mn);
 *   5. split off every punctuation character (ASCII 33-47, 58-64, 91-96, 123-126, any P*).
 * Then WordPiece per word: greedy longest match first with "##" continuations; a word longer
 * than max_input_chars_per_word code points, or one that cannot be covered, becomes [UNK].
 * Unicode data (categories, case mappings, decompositions, combining classes) comes from
 * utf8proc. Python's Cased and Case_Ignorable properties (used only by the final-sigma rule) are
 * derived from utf8proc categories and case mappings plus the Word_Break MidLetter/MidNumLet/
 * Single_Quote characters (Unicode 15 DerivedCoreProperties definition).
 *
 * Invalid UTF-8: the tokenizer refuses it with TB_EFORMAT naming the byte offset; the readers in
 * tb/text/dataset.h check every line first and name file:line.
 *
 * A tokenizer is read-only after tb_tokenizer_init and may be shared by threads; all scratch
 * memory lives in the caller's tb_words / tb_ids / tb_encoding.
 */
#ifndef TB_TOKENIZER_H
#define TB_TOKENIZER_H

#include "tb/text/vocab.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tb_tokenizer_opts {
    int do_lower_case;            /* 1 (default, uncased vocabularies) or 0 (cased) */
    int max_input_chars_per_word; /* default 100 (Hugging Face, TinyBERT); Google's original: 200 */
    /* When not NULL: a whitespace-delimited word exactly equal to this string (before any
     * lower-casing) becomes [UNK] itself, e.g. "<unk>" for WikiText. NULL (default): off. */
    const char *unk_literal;
} tb_tokenizer_opts;

/* The defaults above: lower-case, 100 characters per word, no unk literal. */
tb_tokenizer_opts tb_tokenizer_opts_default(void);

typedef struct tb_tokenizer {
    tb_vocab vocab;
    tb_tokenizer_opts opts;
    char *unk_literal;  /* owned copy of opts.unk_literal */
} tb_tokenizer;

/* A list of words: word i is buf[off[i] .. off[i] + len[i]), NUL-terminated. Word -1 length
 * marks "this word is the unk literal". Also holds scratch space reused between calls. */
typedef struct tb_words {
    char *buf;
    size_t buf_len, buf_cap;
    int32_t *off, *len;
    int32_t count, cap;
    uint32_t *cps;      /* scratch: code points */
    size_t cps_cap;
    uint32_t *word;     /* scratch: one word's code points */
    size_t word_cap;
} tb_words;

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

void tb_words_init(tb_words *w);
void tb_words_free(tb_words *w);
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

/* Basic tokenization (steps 1-5 above) of text[0..len) into `out` (cleared first). A word equal
 * to the unk literal comes out with len -1 (and its text as given). */
int tb_basic_tokenize(const tb_tokenizer_opts *opts, const char *text, size_t len, tb_words *out);

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

/* Basic-tokenizes text[0..len) with `opts` and counts its words into `wc` (for tb_vocab_learn);
 * `scratch` is reused between calls. */
int tb_word_counts_add_text(tb_word_counts *wc, const tb_tokenizer_opts *opts, const char *text, size_t len,
                            tb_words *scratch);

/* 1 when basic tokenization always makes code point `cp` a word of its own (a CJK ideograph or
 * punctuation), so it never appears as a "##" continuation. */
int tb_char_stands_alone(uint32_t cp);

/* Checks that s[0..len) is valid UTF-8; on failure returns TB_EFORMAT and sets *bad_offset. */
int tb_utf8_check(const char *s, size_t len, size_t *bad_offset);

#endif
