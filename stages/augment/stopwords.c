/* stages/augment/stopwords.c - see stopwords.h. */
#include "stopwords.h"

#include "tb/base/error.h"
#include "tb/text/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int push_word(tb_stopwords *s, int *cap, const char *w, size_t len)
{
    if (s->count == *cap) {
        int nc = *cap ? 2 * *cap : 256;
        char **nw = realloc(s->words, (size_t)nc * sizeof *nw);
        if (!nw) return TB_ERR(TB_ENOMEM, "stop words: out of memory");
        s->words = nw;
        *cap = nc;
    }
    char *copy = malloc(len + 1);
    if (!copy) return TB_ERR(TB_ENOMEM, "stop words: out of memory");
    memcpy(copy, w, len);
    copy[len] = 0;
    s->words[s->count++] = copy;
    return TB_OK;
}

int tb_stopwords_load(tb_stopwords *s, const char *path)
{
    int rc = TB_OK, cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    long long lineno = 0;
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "rb");
    TB_CHECK(f, TB_EIO, "stop words: cannot open '%s'", path);
    ssize_t n;
    while ((n = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (len == 0 || line[0] == '#') continue;
        size_t bad;
        TB_CHECK(tb_utf8_check(line, len, &bad) == TB_OK, TB_EFORMAT, "%s:%lld: invalid UTF-8 at byte %zu", path,
                 lineno, bad);
        TB_CHECK(!memchr(line, ' ', len) && !memchr(line, '\t', len), TB_EFORMAT,
                 "%s:%lld: a stop word has no space or tab (one word a line)", path, lineno);
        TB_TRY(push_word(s, &cap, line, len));
    }
    TB_CHECK(!ferror(f), TB_EIO, "stop words: read error in '%s'", path);
    TB_CHECK(s->count > 0, TB_EFORMAT, "stop words: '%s' has no words", path);
    qsort(s->words, (size_t)s->count, sizeof *s->words, cmp_str);
    int u = 0;
    for (int i = 0; i < s->count; i++) {
        if (u > 0 && strcmp(s->words[u - 1], s->words[i]) == 0) {
            free(s->words[i]);
            continue;
        }
        s->words[u++] = s->words[i];
    }
    s->count = u;
error:
    free(line);
    if (f) fclose(f);
    if (rc) tb_stopwords_free(s);
    return rc;
}

void tb_stopwords_free(tb_stopwords *s)
{
    for (int i = 0; i < s->count; i++) free(s->words[i]);
    free(s->words);
    memset(s, 0, sizeof *s);
}

int tb_stopwords_has(const tb_stopwords *s, const char *w, size_t len)
{
    int lo = 0, hi = s->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const char *m = s->words[mid];
        int c = strncmp(m, w, len);
        if (c == 0) c = m[len] != 0; /* m longer than w: m > w */
        if (c == 0) return 1;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

/* Decodes one UTF-8 code point of w[0..len) (valid UTF-8 assumed); returns its length. */
static size_t utf8_one(const char *w, size_t len, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)w;
    if (u[0] < 0x80 || len < 2) {
        *cp = u[0];
        return 1;
    }
    if ((u[0] & 0xE0) == 0xC0) {
        *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
        return 2;
    }
    if ((u[0] & 0xF0) == 0xE0 && len >= 3) {
        *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    if (len >= 4) {
        *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) |
              (u[3] & 0x3F);
        return 4;
    }
    *cp = u[0];
    return 1;
}

/* The reference tokenizer's _is_chinese_char blocks. */
static int is_cjk_ideograph(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

int tb_augment_is_cjk_char(const char *w, size_t len)
{
    uint32_t cp;
    return len > 0 && utf8_one(w, len, &cp) == len && is_cjk_ideograph(cp);
}

int tb_augment_is_cjk_text_char(const char *w, size_t len)
{
    uint32_t cp;
    if (len == 0 || utf8_one(w, len, &cp) != len) return 0;
    return is_cjk_ideograph(cp) || (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFF00 && cp <= 0xFFEF);
}

int tb_augment_eligible(const tb_stopwords *s, const char *w, size_t len, int cjk)
{
    if (len == 0) return 0;
    if (cjk && tb_augment_is_cjk_char(w, len)) return !s || !tb_stopwords_has(s, w, len);
    for (size_t i = 0; i < len; i++)
        if (w[i] < 'a' || w[i] > 'z') return 0;
    return !s || !tb_stopwords_has(s, w, len);
}
