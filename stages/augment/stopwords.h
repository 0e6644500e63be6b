/* stages/augment/stopwords.h - the stop-word list and the eligibility rule of augmentation.
 *
 * A word (a basic token, already lower-cased) is eligible for replacement when it matches
 * ^[a-z]+$ and is not in the stop-word list (SPEC.md "Data augmentation"; the reference's
 * StopWordsList is NLTK's English list plus 's and 're: data/augment/stopwords-en.txt).
 * With `cjk` set (tinybert-c's option for Chinese text, not in the reference) a word that is a
 * single CJK ideograph (the tokenizer makes every ideograph a word of its own) is eligible too.
 */
#ifndef TB_AUG_STOPWORDS_H
#define TB_AUG_STOPWORDS_H

#include <stddef.h>

typedef struct tb_stopwords {
    char **words;  /* sorted (strcmp), unique */
    int count;
} tb_stopwords;

/* Reads one word a line (UTF-8; "\r\n" accepted); blank lines and lines starting with '#' are
 * skipped. An empty list or a word with a space or tab is an error naming file:line. */
int tb_stopwords_load(tb_stopwords *s, const char *path);
void tb_stopwords_free(tb_stopwords *s);
/* 1 when w[0..len) is in the list. */
int tb_stopwords_has(const tb_stopwords *s, const char *w, size_t len);

/* 1 when w[0..len) is exactly one CJK ideograph (the reference tokenizer's _is_chinese_char blocks). */
int tb_augment_is_cjk_char(const char *w, size_t len);

/* 1 when w[0..len) is exactly one character that needs no space beside it in Chinese text: a CJK
 * ideograph, CJK punctuation (U+3000-U+303F) or a fullwidth form (U+FF00-U+FFEF). */
int tb_augment_is_cjk_text_char(const char *w, size_t len);

/* 1 when the basic token w[0..len) may be replaced (see above); `s` may be NULL (no stop words). */
int tb_augment_eligible(const tb_stopwords *s, const char *w, size_t len, int cjk);

#endif
