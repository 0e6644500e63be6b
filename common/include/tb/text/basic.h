/* tb/text/basic.h - BERT's BasicTokenizer (google-research/bert tokenization.py), exactly.
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
 * Unicode data (categories, case mappings, decompositions, combining classes) comes from
 * utf8proc. Python's Cased and Case_Ignorable properties (used only by the final-sigma rule) are
 * derived from utf8proc categories and case mappings plus the Word_Break MidLetter/MidNumLet/
 * Single_Quote characters (Unicode 15 DerivedCoreProperties definition).
 *
 * Invalid UTF-8 is refused with TB_EFORMAT naming the byte offset; the readers in
 * tb/text/readers.h check every line first and name file:line.
 *
 * All scratch memory lives in the caller's tb_words.
 */
#ifndef TB_BASIC_H
#define TB_BASIC_H

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

void tb_words_init(tb_words *w);
void tb_words_free(tb_words *w);

/* Basic tokenization (steps 1-5 above) of text[0..len) into `out` (cleared first). A word equal
 * to the unk literal comes out with len -1 (and its text as given). `opts` NULL: the defaults. */
int tb_basic_tokenize(const tb_tokenizer_opts *opts, const char *text, size_t len, tb_words *out);

/* 1 when basic tokenization always makes code point `cp` a word of its own (a CJK ideograph or
 * punctuation), so it never appears as a "##" continuation. */
int tb_char_stands_alone(uint32_t cp);

/* Checks that s[0..len) is valid UTF-8; on failure returns TB_EFORMAT and sets *bad_offset. */
int tb_utf8_check(const char *s, size_t len, size_t *bad_offset);

#endif
