/* tb/text/vocab_build.h - word counts and learning a WordPiece vocabulary (vocab_build.c).
 *
 * tb_vocab_learn makes a WordPiece vocabulary from word counts (words as the basic tokenizer
 * gives them, see tb_word_counts_add_text below):
 *   1. [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4);
 *   2. the alphabet: every character seen, both as a word start ("c") and as a continuation
 *      ("##c"), most frequent first (a form never seen last), so any word made of known
 *      characters can be covered by the greedy longest-match tokenizer;
 *   3. merges, BPE style: repeatedly the most frequent adjacent pair of pieces in the corpus
 *      (counted over word occurrences; ties: the pair whose pieces were seen first in the word
 *      counts) is merged into a new piece ("ab" from "a" + "##b", "##ab" from "##a" + "##b"),
 *      until vocab_size pieces exist or no pair occurs min_frequency times.
 * When vocab_size is too small for the whole alphabet, the rarest characters are left out (their
 * words become [UNK]). The result is a standard vocab.txt (tb_vocab_save) that this tokenizer
 * and Hugging Face's BertTokenizer read.
 */
#ifndef TB_VOCAB_BUILD_H
#define TB_VOCAB_BUILD_H

#include "tb/text/basic.h"
#include "tb/text/vocab.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tb_word_counts {
    char **words;     /* NUL-terminated, owned */
    int64_t *counts;
    int32_t count, cap;
    int32_t *slots;   /* hash table: index + 1, 0 empty */
    uint32_t mask;
    int64_t total;    /* word occurrences added */
} tb_word_counts;

void tb_word_counts_init(tb_word_counts *wc);
void tb_word_counts_free(tb_word_counts *wc);
/* Adds `count` occurrences of word w[0..len) (UTF-8, no NUL). */
int tb_word_counts_add(tb_word_counts *wc, const char *w, size_t len, int64_t count);
/* Basic-tokenizes text[0..len) with `opts` and counts its words into `wc` (the unk literal is
 * not counted); `scratch` is reused between calls. */
int tb_word_counts_add_text(tb_word_counts *wc, const tb_tokenizer_opts *opts, const char *text, size_t len,
                            tb_words *scratch);

typedef struct tb_vocab_learn_opts {
    int32_t vocab_size;       /* total size including the 5 special tokens; >= 6 */
    int64_t min_frequency;    /* a merge needs a pair seen at least this often (0: the default, 2) */
    int max_chars_per_word;   /* longer words are left out (they are [UNK] anyway); 0: 100 */
} tb_vocab_learn_opts;

int tb_vocab_learn(tb_vocab *out, const tb_word_counts *wc, const tb_vocab_learn_opts *opts);

#endif
